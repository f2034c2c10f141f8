"""Task duties: fail ACTIVE tasks past their deadline, requeue ASSIGNED tasks past their lease,
and wake long polls when retry delays end."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import func, select

from ains.agents.models import Agent
from ains.background.duty import BATCH, Duty, PassResult
from ains.core.clock import utcnow
from ains.core.context import AppContext
from ains.core.metrics import LEASES_EXPIRED, TASK_TIMEOUTS
from ains.tasks import lifecycle
from ains.tasks.models import Task
from ains.tasks.schemas import TaskStatus

log = logging.getLogger("ains.tasks")


async def _earliest(ctx: AppContext, column, status: str, after: datetime | None = None) -> datetime | None:
    query = select(func.min(column)).where(Task.status == status)
    if after is not None:
        query = query.where(column > after)
    async with ctx.db.read() as session:
        value = await session.scalar(query)
    return value


async def fail_timed_out(ctx: AppContext) -> PassResult:
    """SPEC 7: ACTIVE past started_at + timeout_seconds → FAILED, never retried."""
    now = utcnow()
    earliest = await _earliest(ctx, Task.deadline_at, TaskStatus.ACTIVE)
    if earliest is None or earliest > now:
        return PassResult(0, earliest)
    async with ctx.work(now) as work:
        session = work.session
        candidates = (
            await session.execute(
                select(Task.task_id, Task.assigned_agent_id)
                .where(Task.status == TaskStatus.ACTIVE, Task.deadline_at <= now)
                .order_by(Task.deadline_at)
                .limit(BATCH)
            )
        ).all()
        # Agents first, in one order, as every path does: the trust change locks the agent anyway.
        agent_ids = sorted({agent_id for _, agent_id in candidates if agent_id})
        await session.execute(
            select(Agent.agent_id).where(Agent.agent_id.in_(agent_ids)).order_by(Agent.agent_id).with_for_update()
        )
        due = list(
            await session.scalars(
                select(Task)
                .where(
                    Task.task_id.in_([task_id for task_id, _ in candidates]),
                    Task.status == TaskStatus.ACTIVE,
                    Task.deadline_at <= now,
                )
                .order_by(Task.deadline_at)
                .with_for_update(skip_locked=True)
            )
        )
        for task in due:
            await lifecycle.fail(
                work,
                task,
                outcome=lifecycle.OUTCOME_TIMEOUT,
                error=f"Task timed out after {task.timeout_seconds} seconds",
            )
        ids = [task.task_id for task in due]
        work.after_commit(lambda: _report(ids, "task timed out", TASK_TIMEOUTS))
    return PassResult(len(due), await _earliest(ctx, Task.deadline_at, TaskStatus.ACTIVE, after=now))


async def requeue_expired_leases(ctx: AppContext) -> PassResult:
    """SPEC 3: ASSIGNED and not started within assign_lease_seconds → PENDING, no retry used."""
    now = utcnow()
    earliest = await _earliest(ctx, Task.lease_expires_at, TaskStatus.ASSIGNED)
    if earliest is None or earliest > now:
        return PassResult(0, earliest)
    async with ctx.work(now) as work:
        due = list(
            await work.session.scalars(
                select(Task)
                .where(Task.status == TaskStatus.ASSIGNED, Task.lease_expires_at <= now)
                .order_by(Task.lease_expires_at)
                .limit(BATCH)
                .with_for_update(skip_locked=True)
            )
        )
        for task in due:
            await lifecycle.requeue(work, task, outcome=lifecycle.OUTCOME_LEASE_EXPIRED)
        ids = [task.task_id for task in due]
        work.after_commit(lambda: _report(ids, "task lease expired", LEASES_EXPIRED))
    return PassResult(len(due), await _earliest(ctx, Task.lease_expires_at, TaskStatus.ASSIGNED, after=now))


def _report(task_ids: list[str], message: str, counter) -> None:
    counter.inc(len(task_ids))
    for task_id in task_ids:
        log.info(message, extra={"task_id": task_id})


class _RetryWakeups:
    """Per process: wake this process's long polls for tasks whose retry delay has ended.

    Nothing is written, so every process runs it for itself; doing it twice is harmless.
    """

    def __init__(self) -> None:
        self.checked_until: dict[int, datetime] = {}

    async def __call__(self, ctx: AppContext) -> PassResult:
        now = utcnow()
        since = self.checked_until.get(id(ctx), now)
        self.checked_until[id(ctx)] = now
        if ctx.signals.has_waiters():
            async with ctx.db.read() as session:
                # One wake-up per task that became claimable: each wakes one waiting claim.
                capabilities = await session.scalars(
                    select(Task.capability_required)
                    .where(Task.status == TaskStatus.PENDING, Task.available_at > since, Task.available_at <= now)
                    .limit(BATCH)
                )
                for capability in capabilities:
                    ctx.signals.notify(capability)
        return PassResult(0, await _earliest(ctx, Task.available_at, TaskStatus.PENDING, after=now))


TIMEOUTS = Duty("timeouts", fail_timed_out, lambda ctx: ctx.settings.timeout_check_seconds, lifecycle.DEADLINE_TIMEOUT)
EXPIRED_LEASES = Duty(
    "leases", requeue_expired_leases, lambda ctx: ctx.settings.timeout_check_seconds, lifecycle.DEADLINE_LEASE
)
RETRY_WAKEUPS = Duty("retry_wakeups", _RetryWakeups(), lambda ctx: ctx.settings.timeout_check_seconds)
