"""A unit of work: what one request or background duty acts with, as one typed object.

It carries the transaction's session, the moment the work acts at (read once from `ains.core.clock`, so a
test that moves the clock moves every rule it decides) and the settings it acts under; through the
transaction's state it gathers what the commit sets off: wake-ups, after-commit hooks, and the rows the
domains already locked or read. Services take a `Work` and never commit; whoever opened it (a router, a duty)
owns the transaction, so a state change and its events, trust and audit rows commit together or not at all.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from ains.core import signals
from ains.core.config import Settings
from ains.core.transaction_state import AfterCommit, Memo, TransactionState, state_of

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Work:
    session: AsyncSession
    now: datetime
    settings: Settings
    # Whether every change another process makes reaches this one now (PostgreSQL's wake-up link is up), so
    # what the process keeps in memory (the webhook directory, say) may be trusted.
    listening: bool = False

    @property
    def state(self) -> TransactionState:
        return state_of(self.session)

    def at(self, moment: datetime) -> Work:
        """The same work acting at another moment (a deadline it settles, say)."""
        return dataclasses.replace(self, now=moment)

    def after_commit(self, hook: AfterCommit) -> None:
        """Run `hook` once the transaction has committed (never on rollback)."""
        self.state.after_commit.append(hook)

    def memo(self, key: Memo[T]) -> T:
        """What a domain keeps under `key` for the rest of this transaction (locked rows, rows read)."""
        return self.state.memo(key)

    def announce_task(self, capability: str) -> None:
        """A task needing `capability` becomes claimable at commit: wake one claim waiting for it."""
        signals.announce_task(self.session, capability)

    def announce_deadline(self, kind: str, at: datetime) -> None:
        """A deadline of `kind` at `at` is set at commit: the duty watching that kind looks again by then."""
        signals.announce_deadline(self.session, kind, at)

    def announce_cancel(self, agent_id: str) -> None:
        """A task `agent_id` holds is cancelled at commit: its waiting heartbeat answers at once."""
        signals.announce_cancel(self.session, agent_id)

    def announce_key(self, principal_id: str) -> None:
        """A key of `principal_id` changed: every process forgets what it verified (sent inside the commit)."""
        signals.announce_key(self.session, principal_id)

    def announce_webhooks(self) -> None:
        """Some webhook changed: every process forgets who hears what (sent inside the commit)."""
        signals.announce_webhooks(self.session)
