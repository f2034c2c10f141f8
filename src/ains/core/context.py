"""What a running AINS process shares between requests and background duties."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from fastapi import Request

from ains.core.cache import Cache
from ains.core.clock import utcnow
from ains.core.config import Settings
from ains.core.database import Database, NotPlainSQL
from ains.core.listener import WakeupListener
from ains.core.signals import Wakeups
from ains.core.transaction_state import take_state
from ains.core.work import Work

T = TypeVar("T")
log = logging.getLogger("ains.database")


class VerifiedKeys(Protocol):
    """Keys this process has verified, by hash (ains.auth.key_cache.KeyCache)."""

    generation: int

    def get(self, digest: str) -> Any: ...

    def put(self, digest: str, principal: Any, generation: int) -> None: ...

    def forget(self, principal_id: str, _value: str = "") -> None: ...


@dataclass
class AppContext:
    settings: Settings
    db: Database
    admin_key_hash: str
    signals: Wakeups
    keys: VerifiedKeys
    listener: WakeupListener | None = None  # the link to the other processes (PostgreSQL only)
    limiter: Any = None  # per-key rate limits (ains.auth.ratelimit.RateLimiter)

    @property
    def cache(self) -> Cache:
        """The cache the database invalidates after each commit (ains.core.cache)."""
        assert self.db.cache is not None, "the app sets the database's cache when it starts"
        return self.db.cache

    @contextlib.asynccontextmanager
    async def work(self, now: datetime | None = None, *, lean: bool = False) -> AsyncIterator[Work]:
        """One write transaction as a unit of work, committed when the block ends without an error.

        "Now" is read once the transaction has begun (on SQLite, once this process's write turn has come).
        `lean`: on PostgreSQL the transaction runs on the driver's own connection, for a hot path all of whose
        statements are plain SQL (`ains.core.database.DriverSession`).
        """
        async with self.db.transaction(lean=lean) as session:
            yield Work(session, now or utcnow(), self.settings, self.listening)

    async def run(self, action: Callable[[Work], Awaitable[T]], *, lean: bool = False) -> T:
        """`action` in one unit of work, committed when it returns. `lean`: first in a lean transaction (PostgreSQL),
        and, when it meets a statement that is not plain SQL, again in a session: the lean one rolled back, so
        nothing of the first try is kept, and nothing it announced is sent."""
        if lean and not self.db.is_sqlite:
            acted = False
            try:
                async with self.work(lean=True) as work:
                    result = await action(work)
                    acted = True
                return result
            except NotPlainSQL as exc:
                if acted:  # raised once the action was done (by what follows its commit): never run it twice
                    raise
                log.debug("lean transaction needs a session", extra={"reason": str(exc)})
        async with self.work() as work:
            return await action(work)

    @contextlib.asynccontextmanager
    async def reading(self, now: datetime | None = None) -> AsyncIterator[Work]:
        """One read-only transaction (a replica's, when one is configured) as a unit of work. It commits nothing,
        so nothing may wait for its commit: an after-commit hook or a wake-up announced in it is a mistake."""
        async with self.db.read() as session:
            yield Work(session, now or utcnow(), self.settings, self.listening)
            state = take_state(session)
            assert not (state.after_commit or state.announcements), "a read-only unit of work sets nothing off"

    @property
    def listening(self) -> bool:
        """Every change another process makes reaches this one now: in-process memory may be trusted."""
        return self.listener is not None and self.signals.connected

    async def close(self) -> None:
        if self.listener is not None:
            await self.listener.stop()
        await self.cache.close()
        if self.limiter is not None:
            await self.limiter.close()
        await self.db.dispose()


async def get_context(request: Request) -> AppContext:
    # async: FastAPI runs a plain function dependency in a worker thread, a hop that cost every request ~0.2 ms.
    return context_of(request)


def context_of(request: Request) -> AppContext:
    """The app's context, for the hot routes that take the `Request` instead of the `Ctx` dependency."""
    ctx: AppContext = request.app.state.ctx
    return ctx
