"""What one write transaction gathers as it runs, typed: kept on its session, read once it has committed.

A transaction collects what its commit must set off (after-commit hooks, the
cached rows it changed, the wake-ups it announces), and the domains memoise what
they already read or locked in it (attempt rows, locked agents, webhook
subscribers) under typed `Memo` keys, so no module reaches into `session.info`
with a string of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")

AfterCommit = Callable[[], Any]

_KEY = "ains_transaction_state"


class Memo(Generic[T]):
    """A typed slot for what a domain keeps for the rest of one transaction; `factory` makes its empty value."""

    def __init__(self, name: str, factory: Callable[[], T]) -> None:
        self.name = name
        self.factory = factory

    def __repr__(self) -> str:
        return f"Memo({self.name!r})"


@dataclass
class TransactionState:
    after_commit: list[AfterCommit] = field(default_factory=list)
    # Cached rows this transaction changed, by cache kind (see ains.core.cache).
    cache_changed: dict[str, set[str]] = field(default_factory=dict)
    # Wake-ups to deliver once committed: (kind, subject) → value (see ains.core.signals).
    announcements: dict[tuple[str, str], str] = field(default_factory=dict)
    _memos: dict[Memo[Any], Any] = field(default_factory=dict)

    def memo(self, key: Memo[T]) -> T:
        if key not in self._memos:
            self._memos[key] = key.factory()
        value: T = self._memos[key]
        return value


def state_of(session: Any) -> TransactionState:
    """The state of the transaction `session` runs (a new one at its first use)."""
    info = session.info
    state = info.get(_KEY)
    if state is None:
        state = info[_KEY] = TransactionState()
    return state


def take_state(session: Any) -> TransactionState:
    """The state, removed from the session: what the commit acts on."""
    state = session.info.pop(_KEY, None)
    return state if state is not None else TransactionState()
