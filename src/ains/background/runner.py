"""Runs every background duty in its own loop, inside `ains serve` or alone as `ains worker`.

Each loop sleeps until the duty's next known deadline or its interval, whichever
comes first, and goes again at once when a pass filled a whole batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from datetime import datetime, timedelta

from ains.background.duty import BATCH, Duty
from ains.core.clock import utcnow
from ains.core.context import AppContext
from ains.core.metrics import DUTY_RUNS

log = logging.getLogger("ains.background")

# Never spin: even a deadline that is already due waits this long before the next pass.
MIN_SLEEP_SECONDS = 0.02


class DutyRunner:
    def __init__(self, ctx: AppContext, duties: list[Duty]) -> None:
        self.ctx = ctx
        self.duties = duties
        self._tasks: list[asyncio.Task] = []
        self._stopping = asyncio.Event()
        self._wake = {duty.name: asyncio.Event() for duty in self.duties}
        self._planned_wake: dict[str, datetime] = {}
        for duty in self.duties:
            if duty.deadline_kind:
                ctx.signals.watch_deadlines(duty.deadline_kind, functools.partial(self._nearer, duty.name))

    def _nearer(self, name: str, at: datetime) -> None:
        planned = self._planned_wake.get(name)
        if planned is None or at < planned:
            self._wake[name].set()

    def start(self) -> None:
        for duty in self.duties:
            self._tasks.append(asyncio.create_task(self._loop(duty), name=f"duty:{duty.name}"))
        log.info("background duties started", extra={"duties": [d.name for d in self.duties]})

    async def stop(self) -> None:
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for duty in self.duties:
            if duty.close is not None:
                await duty.close()

    async def wait(self) -> None:
        await self._stopping.wait()

    async def _loop(self, duty: Duty) -> None:
        while not self._stopping.is_set():
            interval = duty.interval(self.ctx)
            # Cleared before the pass: a deadline announced during it still cuts the next sleep short.
            self._wake[duty.name].clear()
            try:
                result = await duty.run(self.ctx)
                DUTY_RUNS.labels(duty.name).inc()
            except asyncio.CancelledError:
                raise
            except Exception:  # a failing pass (database down, …) must not end the loop
                log.exception("background duty failed", extra={"duty": duty.name})
                await self._sleep(duty.name, interval)
                continue
            if result.handled >= BATCH:
                continue
            delay = interval
            if result.next_due is not None:
                delay = min(delay, (result.next_due - utcnow()).total_seconds())
            await self._sleep(duty.name, max(delay, MIN_SLEEP_SECONDS))

    async def _sleep(self, name: str, seconds: float) -> None:
        """Sleep until the time is up, a nearer deadline is announced, or the runner stops."""
        wake = self._wake[name]
        self._planned_wake[name] = utcnow() + timedelta(seconds=seconds)
        waiters = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(self._stopping.wait())]
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            self._planned_wake.pop(name, None)
