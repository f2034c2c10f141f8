"""In-process wake-ups: for long-polling claims, and for background duties when a nearer deadline appears.

A claim that finds nothing parks on an event for each capability it serves;
whatever makes a task claimable calls `notify(capability)` after its commit.
Woken claimers race for the task through the normal claim transaction, and a
loser simply parks again, so a lost or extra wake-up is harmless.

Likewise a duty sleeping until its next known deadline is told, through
`deadline(kind, at)`, of a deadline set in this process after it went to sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime


class TaskAvailability:
    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._deadline_watchers: dict[str, list[Callable[[datetime], None]]] = defaultdict(list)

    def watch_deadlines(self, kind: str, callback: Callable[[datetime], None]) -> None:
        self._deadline_watchers[kind].append(callback)

    def deadline(self, kind: str, at: datetime) -> None:
        for callback in self._deadline_watchers.get(kind, ()):
            callback(at)

    def notify(self, capability: str) -> None:
        for waiter in self._waiters.get(capability, ()):
            waiter.set()

    def has_waiters(self) -> bool:
        return bool(self._waiters)

    def notify_all(self) -> None:
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.set()

    @contextlib.contextmanager
    def subscribe(self, capabilities: Iterable[str]) -> Iterator[asyncio.Event]:
        event = asyncio.Event()
        capabilities = list(capabilities)
        for capability in capabilities:
            self._waiters[capability].add(event)
        try:
            yield event
        finally:
            for capability in capabilities:
                waiters = self._waiters.get(capability)
                if waiters is not None:
                    waiters.discard(event)
                    if not waiters:
                        del self._waiters[capability]
