"""The schedules duty: submit the task of every due tick, once, whichever process gets there first.

One pass locks due schedules with `FOR UPDATE SKIP LOCKED` (on SQLite the write lock serialises passes),
submits each one's latest due tick and moves its `next_run_at` past now, in one transaction. A second process
either skips the locked rows or, after the commit, no longer finds them due; and were a tick submitted twice,
its idempotency key would return the first task.
"""

from __future__ import annotations

import logging

from sqlalchemy import func, select

from ains.background.duty import BATCH, Duty, PassResult
from ains.core.clock import moved_by_tests, utcnow
from ains.core.context import AppContext
from ains.schedules import service
from ains.schedules.models import Schedule

log = logging.getLogger("ains.schedules")


async def _earliest(ctx: AppContext):
    async with ctx.db.read() as session:
        return await session.scalar(select(func.min(Schedule.next_run_at)).where(Schedule.active.is_(True)))


async def run_due_schedules(ctx: AppContext) -> PassResult:
    now = utcnow()
    earliest = await _earliest(ctx)
    test_clock = moved_by_tests()  # the runner sleeps by the real clock: no deadline from a fake one
    if earliest is None or earliest > now:
        return PassResult(0, None if test_clock else earliest)
    async with ctx.work(now) as work:
        due = list(
            await work.session.scalars(
                select(Schedule)
                .where(Schedule.active.is_(True), Schedule.next_run_at <= now)
                .order_by(Schedule.next_run_at)
                .limit(BATCH)
                .with_for_update(skip_locked=True)
            )
        )
        for schedule in due:
            await service.run_tick(work, schedule)
    next_due = None if test_clock else await _earliest(ctx)
    return PassResult(len(due), next_due)


SCHEDULES = Duty(
    "schedules",
    run_due_schedules,
    lambda ctx: min(ctx.settings.timeout_check_seconds, 30.0),
    service.DEADLINE_SCHEDULE,
)
