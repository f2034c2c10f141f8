"""Wake-ups: what one transaction's commit tells waiting claims, sleeping duties and caches, in any process.

A transaction announces what others must hear of (`announce_task`,
`announce_deadline`, `announce_cancel`, `announce_key`); once it has committed,
the database hands the announcements to this process's `Wakeups`, which wakes
its own waiters at once and publishes them to the other processes (see
`ains.core.listener`). What arrives from another process is delivered the same
way, so waiters never care where a change happened.

A claim that finds nothing parks on an event for each capability it serves.
One waiter is woken per task, the highest trust score first; a woken claimer that
finds nothing it may take passes the wake-up on to the next one down. Waiters
also look again every `wakeup_fallback_seconds`, so a lost wake-up costs only time.
A duty sleeping until its next known deadline is woken early by a nearer one.
An agent's waiting heartbeat parks on an event of its own, set when one of the
tasks it holds is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ains.core.transaction_state import TransactionState, state_of

# Kinds of wake-up, as they travel between processes.
TASK = "task"  # subject: a capability whose task became claimable
DEADLINE = "deadline"  # subject: a deadline kind; value: the epoch seconds of the deadline
CANCEL = "cancel"  # subject: the agent whose held task was cancelled
KEY = "key"  # subject: the principal whose keys changed
CACHE = "cache"  # subject: a cache kind; value: the changed keys, comma-separated
WEBHOOKS = "webhooks"  # some webhook was created, changed or deleted (no subject)

# Kinds that must never be lost (a process would go on trusting what it keeps): the database sends them inside
# the transaction that made the change, not after its commit.
SENT_IN_TRANSACTION = frozenset({KEY, WEBHOOKS})

Announcement = tuple[str, str, str]  # (kind, subject, value)

# The subject that means "anything of this kind may have changed" (after a gap in the link).
EVERYTHING = "*"


def _pending(session: Any) -> dict[tuple[str, str], str]:
    return state_of(session).announcements


def announce_task(session: Any, capability: str) -> None:
    """A task needing `capability` becomes claimable when this transaction commits."""
    _pending(session)[(TASK, capability)] = ""


def announce_deadline(session: Any, kind: str, at: datetime) -> None:
    """A deadline of `kind` at `at` is set when this transaction commits (only the nearest per kind travels)."""
    pending = _pending(session)
    value = f"{at.timestamp():.6f}"
    earlier = pending.get((DEADLINE, kind))
    if earlier is None or float(value) < float(earlier):
        pending[(DEADLINE, kind)] = value


def announce_cancel(session: Any, agent_id: str) -> None:
    """A task `agent_id` holds is cancelled when this transaction commits."""
    _pending(session)[(CANCEL, agent_id)] = ""


def announce_key(session: Any, principal_id: str) -> None:
    """A key of `principal_id` is revoked (or otherwise changed) when this transaction commits.

    Unlike the others this one must never be lost (a revoked key would keep working in another process), so
    the database sends it inside the transaction itself (see `Database.transaction`).
    """
    _pending(session)[(KEY, principal_id)] = ""


def announce_webhooks(session: Any) -> None:
    """Some webhook is created, changed or deleted when this transaction commits (sent inside it, like keys)."""
    _pending(session)[(WEBHOOKS, "")] = ""


def announcements_of(state: TransactionState) -> list[Announcement]:
    return [(kind, subject, value) for (kind, subject), value in state.announcements.items()]


@dataclass(eq=False)
class _Waiter:
    event: asyncio.Event
    rank: float
    order: int

    @property
    def key(self) -> tuple[float, int]:
        return (self.rank, -self.order)


class Wakeups:
    """This process's waiters and watchers, and its link to the other processes (when there are any)."""

    def __init__(self) -> None:
        self._waiters: dict[str, set[_Waiter]] = defaultdict(set)
        self._watchers: dict[str, list[Callable[[str, str], None]]] = defaultdict(list)
        self._cancel_waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._order = itertools.count()
        self._deadline_kinds: set[str] = set()
        # Set by the listener: sends announcements to the other processes. None: this process is alone.
        self.publish: Callable[[list[Announcement]], None] | None = None
        # False while the link to the other processes is down, so what they announce may be missed.
        self.connected = True
        # The longest any duty sleeps (`timeout_check_seconds`): deadlines further out are not published.
        self.deadline_horizon_seconds = float("inf")
        # Set when the server begins to stop: every long poll answers at once (see ains.core.long_poll).
        self.stopping = asyncio.Event()

    # -- delivery -------------------------------------------------------------------------------------------

    def committed(self, announcements: list[Announcement], *, remote_only: Iterable[Announcement] = ()) -> None:
        """A transaction of this process committed: wake here at once, and tell the other processes.

        Key and webhook announcements already went to the others inside the transaction; `remote_only` is what this
        process has already dealt with itself (its own cache invalidations).
        """
        self.deliver(announcements)
        if self.publish is not None:
            outgoing = [a for a in announcements if a[0] not in SENT_IN_TRANSACTION and self._worth_sending(a)]
            outgoing += remote_only
            if outgoing:
                self.publish(outgoing)

    def _worth_sending(self, announcement: Announcement) -> bool:
        # Duties elsewhere never sleep longer than the horizon, so a later deadline would wake nobody early.
        kind, _subject, value = announcement
        return kind != DEADLINE or float(value) < time.time() + self.deadline_horizon_seconds

    def deliver(self, announcements: Iterable[Announcement]) -> None:
        for kind, subject, value in announcements:
            if kind == TASK:
                self.notify(subject)
            elif kind == CANCEL:
                self._wake_cancel_waiters(subject)
            for watcher in self._watchers.get(kind, ()):
                watcher(subject, value)

    def watch(self, kind: str, callback: Callable[[str, str], None]) -> None:
        """Call `callback(subject, value)` for every announcement of `kind`, from this process or another."""
        self._watchers[kind].append(callback)

    def watch_deadlines(self, kind: str, callback: Callable[[datetime], None]) -> None:
        self._deadline_kinds.add(kind)

        def on_deadline(subject: str, value: str) -> None:
            if subject == kind:
                callback(datetime.fromtimestamp(float(value), UTC))

        self.watch(DEADLINE, on_deadline)

    def deadline(self, kind: str, at: datetime) -> None:
        """A deadline set in this process outside a transaction (or to be seen only here)."""
        self.deliver([(DEADLINE, kind, f"{at.timestamp():.6f}")])

    def missed_some(self) -> None:
        """The link to the other processes was down: anything may have happened, so everyone looks again."""
        for waiters in list(self._waiters.values()):
            for waiter in waiters:
                waiter.event.set()
        now = f"{datetime.now(UTC).timestamp():.6f}"
        self.deliver([(DEADLINE, kind, now) for kind in self._deadline_kinds])
        self.deliver([(kind, EVERYTHING, "") for kind in (KEY, WEBHOOKS, CACHE, CANCEL)])

    # -- long-polling claims --------------------------------------------------------------------------------

    def notify(self, capability: str) -> None:
        """A task for `capability` became claimable: wake the best-ranked waiter not already woken."""
        self._wake_best(capability, below=None)

    def pass_on(self, capabilities: Iterable[str], passer: asyncio.Event | None = None) -> None:
        """A woken waiter found nothing it may take: hand the wake-up to the next one down the ranking.

        Only waiters ranked below the passer are candidates, so a wake-up walks down the ranking once
        instead of returning to a waiter that already declined it.
        """
        below = None
        if passer is not None:
            below = next((w.key for waiters in self._waiters.values() for w in waiters if w.event is passer), None)
        for capability in capabilities:
            self._wake_best(capability, below=below)

    def _wake_best(self, capability: str, below: tuple[float, int] | None) -> None:
        idle = [
            w for w in self._waiters.get(capability, ()) if not w.event.is_set() and (below is None or w.key < below)
        ]
        if idle:
            max(idle, key=lambda w: w.key).event.set()

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

    def stop(self) -> None:
        self.stopping.set()

    # -- waiting heartbeats ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def subscribe_cancels(self, agent_id: str) -> Iterator[asyncio.Event]:
        """Wait for a cancellation of a task `agent_id` holds (set, never cleared, by the first one)."""
        event = asyncio.Event()
        self._cancel_waiters[agent_id].add(event)
        try:
            yield event
        finally:
            waiters = self._cancel_waiters.get(agent_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._cancel_waiters[agent_id]

    def _wake_cancel_waiters(self, agent_id: str) -> None:
        if agent_id == EVERYTHING:
            groups = list(self._cancel_waiters.values())
        else:
            groups = [self._cancel_waiters.get(agent_id, set())]
        for events in groups:
            for event in events:
                event.set()
