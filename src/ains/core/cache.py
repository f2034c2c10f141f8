"""Cache-aside for agent records and task status (SPEC 10).

Readers fill the cache after a database read; every transaction that changed an
agent or a task invalidates their entries after it commits (never before: a reader
could refill the old row). A reader may still have read the old row before that
commit and come to fill after the invalidation: so a reader takes a ticket when it
misses (`lookup`), and its fill is dropped if the key was invalidated since
(`fill`). Entries also expire (`agent_cache_ttl_seconds`,
`task_cache_ttl_seconds`) and the in-process cache is LRU-bounded. With
`AINS_REDIS_URL` the cache is Redis, shared by every process, under
`redis_prefix`; without it, it lives in this process only. A cache that fails
degrades to the database: the error is counted, logged once, and the request
goes on as a miss.

An invalidation Redis did not take (down, slow, refusing) would leave a stale entry that other reads could
return for the rest of its TTL. So the process remembers the keys it failed to invalidate, retries them in the
background every `cache_stale_bound_seconds` / 5 (at most every second), and reads nothing from the shared
cache (every read is a miss, nothing is written) until they all went through: its own reads never see a
stale entry, and once Redis is back the entry is gone within the bound (SPEC 16). If too many keys pile up,
the list is dropped and the process stays off the cache for the longest TTL instead, after Redis answers
again, so that everything it could not delete has expired.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Collection, Iterable
from typing import Any, Protocol, TypeVar

from cachetools import TTLCache
from pydantic import BaseModel

from ains.core.config import Settings
from ains.core.metrics import CACHE_ERRORS, CACHE_HITS, CACHE_MISSES

log = logging.getLogger("ains.cache")

AGENT = "agent"
TASK = "task"
# The counters' children per kind, looked up once: `labels()` checks and locks on every call, and a cached
# read counts one hit.
_HITS = {kind: CACHE_HITS.labels(kind) for kind in (AGENT, TASK)}
_MISSES = {kind: CACHE_MISSES.labels(kind) for kind in (AGENT, TASK)}

M = TypeVar("M", bound=BaseModel)


class Cache(Protocol):
    """What the rest of AINS may ask of a cache, in-process (`MemoryCache`) or shared (`RedisCache`)."""

    shared: bool  # every process sees one cache (Redis), so another process's change needs no wake-up

    async def lookup(self, kind: str, key: str) -> tuple[dict[str, Any] | None, Any]:
        """The cached record, or None and a ticket for `fill` (taken before the database is read)."""
        ...

    async def fill(self, kind: str, key: str, value: dict[str, Any], ticket: Any) -> None:
        """Cache `value`, read from the database after `lookup` gave `ticket`, unless the key was invalidated
        since: the value may predate that change."""
        ...

    async def invalidate(self, kind: str, keys: Collection[str]) -> None: ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


# The most readers between a miss and a fill that MemoryCache keeps tickets for.
_MAX_FILLING = 10_000


class MemoryCache:
    """This process's own cache. With several processes on PostgreSQL, the others' changes reach it as
    wake-ups (`drop`); while that link is down, `usable()` is false and every read goes to the database."""

    shared = False

    def __init__(self, settings: Settings) -> None:
        self._stores: dict[str, TTLCache | None] = {
            AGENT: _ttl_cache(settings.cache_max_agents, settings.agent_cache_ttl_seconds),
            TASK: _ttl_cache(settings.cache_max_tasks, settings.task_cache_ttl_seconds),
        }
        self.usable: Callable[[], bool] = lambda: True
        # The ticket of the latest reader of each key still between its miss and its fill; an invalidation takes
        # it away. Only keys being read are here, so it stays as small as the reads in flight.
        self._filling: dict[str, dict[str, object]] = {AGENT: {}, TASK: {}}

    def drop(self, kind: str, keys: str) -> None:
        """Another process changed these rows of `kind` (`keys` comma-separated); kind `*`: anything may have."""
        if kind == "*":
            for store in self._stores.values():
                if store is not None:
                    store.clear()
            for filling in self._filling.values():
                filling.clear()
            return
        if kind in self._stores:
            self._forget(kind, keys.split(","))

    def _forget(self, kind: str, keys: Iterable[str]) -> None:
        store, filling = self._stores[kind], self._filling[kind]
        for key in keys:
            if store is not None:
                store.pop(key, None)
            filling.pop(key, None)

    async def lookup(self, kind: str, key: str) -> tuple[dict[str, Any] | None, Any]:
        store = self._stores[kind]
        value = store.get(key) if store is not None and self.usable() else None
        (_HITS if value is not None else _MISSES)[kind].inc()
        if value is not None or store is None:
            return value, None
        filling = self._filling[kind]
        if len(filling) >= _MAX_FILLING:  # readers that never filled (a 404): dropping tickets only skips fills
            filling.clear()
        ticket = filling[key] = object()
        return None, ticket

    async def fill(self, kind: str, key: str, value: dict[str, Any], ticket: Any) -> None:
        store, filling = self._stores[kind], self._filling[kind]
        if ticket is not None and filling.get(key) is ticket:
            del filling[key]
            if store is not None:
                store[key] = value

    async def invalidate(self, kind: str, keys: Collection[str]) -> None:
        self._forget(kind, keys)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        pass


def _ttl_cache(maxsize: int, ttl: float) -> TTLCache | None:
    return TTLCache(maxsize=maxsize, ttl=ttl) if ttl > 0 else None


# An invalidated key holds a tombstone (this prefix and a random id) until the entry's TTL has passed.
_TOMBSTONE = b"~invalidated:"
_FILL_IF_UNCHANGED = """
local seen = redis.call('GET', KEYS[1])
if (seen == false and ARGV[1] == '') or seen == ARGV[1] then
    redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
"""


class RedisCache:
    shared = True

    def __init__(self, settings: Settings) -> None:
        from redis.asyncio import Redis

        assert settings.redis_url, "a RedisCache is made only when redis_url is set"
        self._redis = Redis.from_url(
            settings.redis_url,
            socket_timeout=settings.redis_timeout_seconds,
            socket_connect_timeout=settings.redis_timeout_seconds,
            retry_on_timeout=False,
        )
        self._prefix = settings.redis_prefix
        self._ttls = {AGENT: settings.agent_cache_ttl_seconds, TASK: settings.task_cache_ttl_seconds}
        self._failing = False
        # Redis keys whose invalidation failed: while any is left, this process does not use the cache.
        # Each with a count of its failures: a retry in flight forgets a key only if it did not fail again meanwhile.
        self._pending: dict[str, int] = {}
        self._overflowed = False  # too many pending keys: stay off the cache for the longest TTL once Redis is back
        self._blind_until = 0.0
        self._retry_every = max(0.05, min(1.0, settings.cache_stale_bound_seconds / 5))
        self._retry_task: asyncio.Task | None = None
        # Writes the entry only if the key still holds what the reader's lookup saw (nothing, or a tombstone).
        self._fill_script = self._redis.register_script(_FILL_IF_UNCHANGED)

    def _key(self, kind: str, key: str) -> str:
        return f"{self._prefix}{kind}:{key}"

    def _failed(self, exc: Exception) -> None:
        CACHE_ERRORS.inc()
        if not self._failing:
            self._failing = True
            log.warning("cache unavailable; reading from the database", extra={"error": f"{type(exc).__name__}: {exc}"})

    MAX_PENDING = 100_000

    def usable(self) -> bool:
        """False while an invalidation of this process has not gone through (SPEC 16)."""
        return not self._pending and not self._overflowed and time.monotonic() >= self._blind_until

    def _remember(self, names: list[str]) -> None:
        for name in names:
            self._pending[name] = self._pending.get(name, 0) + 1
        if len(self._pending) > self.MAX_PENDING:
            self._pending.clear()
            self._overflowed = True
        if self._retry_task is None or self._retry_task.done():
            self._retry_task = asyncio.get_running_loop().create_task(self._retry_pending())

    async def _retry_pending(self) -> None:
        while self._pending or self._overflowed:
            await asyncio.sleep(self._retry_every)
            tried = dict(self._pending)
            names = list(tried)
            try:
                if names:
                    await self._bury(names, max(self._ttls.values()))
                else:
                    await self._redis.ping()
            except Exception as exc:
                self._failed(exc)
                continue
            for name, failures in tried.items():
                if self._pending.get(name) == failures:
                    del self._pending[name]
            if self._overflowed and not self._pending:
                self._overflowed = False
                self._blind_until = time.monotonic() + max(self._ttls.values())
        log.warning("pending cache invalidations went through")

    def _succeeded(self) -> None:
        if self._failing:
            self._failing = False
            log.warning("cache available again")

    async def lookup(self, kind: str, key: str) -> tuple[dict[str, Any] | None, Any]:
        if self._ttls[kind] <= 0:
            return None, None
        if not self.usable():
            _MISSES[kind].inc()
            return None, None
        try:
            raw: bytes | None = await self._redis.get(self._key(kind, key))  # type: ignore[assignment]
        except Exception as exc:  # any Redis failure is a miss, never an error
            self._failed(exc)
            _MISSES[kind].inc()
            return None, None
        self._succeeded()
        if raw is None or raw.startswith(_TOMBSTONE):
            _MISSES[kind].inc()
            return None, raw or b""  # the ticket: what the key held, which a fill expects to find unchanged
        _HITS[kind].inc()
        return json.loads(raw), None

    async def fill(self, kind: str, key: str, value: dict[str, Any], ticket: Any) -> None:
        ttl = self._ttls[kind]
        if ticket is None or ttl <= 0 or not self.usable():
            return
        try:
            await self._fill_script(
                keys=[self._key(kind, key)], args=[ticket, json.dumps(value, default=str), int(ttl * 1000)]
            )
        except Exception as exc:
            self._failed(exc)

    async def invalidate(self, kind: str, keys: Collection[str]) -> None:
        if not keys:
            return
        names = [self._key(kind, key) for key in keys]
        try:
            await self._bury(names, self._ttls[kind])
        except Exception as exc:  # retried until it goes through; meanwhile this process reads no cache
            self._failed(exc)
            self._remember(names)

    async def _bury(self, names: list[str], ttl: float) -> None:
        """Replace the entries with a tombstone, not a deletion: a reader in any process that missed before it
        was written finds the key changed and does not fill it. It lasts the entry's TTL; only a read slower
        than that could still fill the value it read."""
        tombstone = _TOMBSTONE + os.urandom(8).hex().encode()
        async with self._redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.set(name, tombstone, px=max(1, int(ttl * 1000)))
            await pipe.execute()

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except Exception:
            return False

    async def close(self) -> None:
        if self._retry_task is not None:
            self._retry_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._retry_task
        await self._redis.aclose()


async def read_through(cache: Cache, kind: str, key: str, model: type[M], load: Callable[[], Awaitable[M]]) -> M:
    """The cached record as `model`, or `load()`'s answer, which is then cached (cache-aside)."""
    record, ticket = await cache.lookup(kind, key)
    if record is not None:
        return model.model_validate(record)
    value = await load()
    await cache.fill(kind, key, value.model_dump(mode="json"), ticket)
    return value


def make_cache(settings: Settings) -> MemoryCache | RedisCache:
    return RedisCache(settings) if settings.redis_url else MemoryCache(settings)
