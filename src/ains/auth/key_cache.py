"""Verified API keys kept in the process, so a request needs no database round trip to know its caller.

An entry is the principal a key hash resolved to. It lives until a key of that
principal is revoked (or otherwise changed): the change announces the principal
(`ains.core.signals.announce_key`), which reaches this process at once when it
made the change and through the wake-up link otherwise. While that link is
down the cache is not used. Only hashes are kept, as in the database.
"""

from __future__ import annotations

from collections import defaultdict

from cachetools import LRUCache

from ains.core.principal import Principal
from ains.core.signals import EVERYTHING


class KeyCache:
    def __init__(self, maxsize: int = 100_000) -> None:
        self._entries: LRUCache[str, Principal] = LRUCache(maxsize=maxsize)
        self._by_principal: dict[str, set[str]] = defaultdict(set)
        # Bumped by every change, so a lookup that started before a revocation cannot store what it read.
        self.generation = 0

    def get(self, digest: str) -> Principal | None:
        return self._entries.get(digest)

    def put(self, digest: str, principal: Principal, generation: int) -> None:
        """Remember a key read from the database, unless a change was announced since the read began."""
        if generation != self.generation:
            return
        self._entries[digest] = principal
        self._by_principal[principal.id].add(digest)

    def forget(self, principal_id: str, _value: str = "") -> None:
        """A key of this principal changed (`*`: any key may have)."""
        self.generation += 1
        if principal_id == EVERYTHING:
            self._entries.clear()
            self._by_principal.clear()
            return
        for digest in self._by_principal.pop(principal_id, ()):
            self._entries.pop(digest, None)
