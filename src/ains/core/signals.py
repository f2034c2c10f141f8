"""In-process wake-ups: for long-polling claims, and for background duties when a nearer deadline appears.

A claim that finds nothing parks on an event for each capability it serves;
whatever makes a task claimable calls `notify(capability)` after its commit.
One waiter is woken per notification, the highest trust score first; a woken
claimer that finds nothing it may take passes the wake-up on. Waiters also look
again now and then on their own, so a lost wake-up only costs time.

Likewise a duty sleeping until its next known deadline is told, through
`deadline(kind, at)`, of a deadline set in this process after it went to sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime


@dataclass(eq=False)
class _Waiter:
    event: asyncio.Event
    rank: float
    order: int


class TaskAvailability:
    def __init__(self) -> None:
        self._waiters: dict[str, set[_Waiter]] = defaultdict(set)
        self._deadline_watchers: dict[str, list[Callable[[datetime], None]]] = defaultdict(list)
        self._order = itertools.count()

    def watch_deadlines(self, kind: str, callback: Callable[[datetime], None]) -> None:
        self._deadline_watchers[kind].append(callback)

    def deadline(self, kind: str, at: datetime) -> None:
        for callback in self._deadline_watchers.get(kind, ()):
            callback(at)

    def notify(self, capability: str) -> None:
        """A task for `capability` became claimable: wake the best-ranked waiter not already woken."""
        idle = [w for w in self._waiters.get(capability, ()) if not w.event.is_set()]
        if idle:
            max(idle, key=lambda w: (w.rank, -w.order)).event.set()

    def pass_on(self, capabilities: Iterable[str]) -> None:
        """A woken waiter found nothing it may take: hand the wake-up to the next one."""
        for capability in capabilities:
            self.notify(capability)

    def has_waiters(self) -> bool:
        return bool(self._waiters)

    @contextlib.contextmanager
    def subscribe(self, capabilities: Iterable[str], rank: float = 0.0) -> Iterator[asyncio.Event]:
        """Wait for tasks of these capabilities; higher `rank` (the trust score) is woken first, then FIFO."""
        waiter = _Waiter(asyncio.Event(), rank, next(self._order))
        capabilities = list(capabilities)
        for capability in capabilities:
            self._waiters[capability].add(waiter)
        try:
            yield waiter.event
        finally:
            for capability in capabilities:
                waiters = self._waiters.get(capability)
                if waiters is not None:
                    waiters.discard(waiter)
                    if not waiters:
                        del self._waiters[capability]
