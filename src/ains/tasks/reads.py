"""Reading tasks: who may see which, one task, a page of tasks, attempts, and the queue's figures.

Functions here work inside the caller's transaction and never commit.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from ains.core.cache import TASK as TASK_CACHE
from ains.core.clock import utcnow
from ains.core.config import Settings
from ains.core.context import AppContext
from ains.core.errors import NotFound
from ains.core.pagination import InvalidCursor, decode_cursor, split_page
from ains.core.principal import Principal
from ains.core.work import Work
from ains.tasks import answers, queries
from ains.tasks.models import Task, TaskAttempt
from ains.tasks.schemas import HELD_STATUSES, TaskStatus


def visible_to(principal: Principal) -> Any:
    """The SQL condition for the tasks a principal may see."""
    if principal.is_admin:
        return True
    if principal.kind == "agent":
        return or_(Task.client_id == principal.id, Task.assigned_agent_id == principal.id)
    return Task.client_id == principal.id


def can_see(principal: Principal, task: Any) -> bool:
    if principal.is_admin or task.client_id == principal.id:
        return True
    return principal.kind == "agent" and task.assigned_agent_id == principal.id


async def get_visible(session: AsyncSession, principal: Principal, task_id: str, *, for_update: bool = False) -> Task:
    query = select(Task).where(Task.task_id == task_id)
    if for_update:
        query = query.with_for_update()
    task = await session.scalar(query)
    if task is None or not can_see(principal, task):
        raise NotFound(f"Task {task_id} not found")
    return task


async def list_tasks(
    session: AsyncSession,
    principal: Principal,
    *,
    status: str | None,
    client_id: str | None,
    capability: str | None,
    priority: int | None,
    limit: int,
    cursor: str | None,
    workflow_id: str | None = None,
) -> tuple[list[Any], str | None]:
    """A page of rows with the task's attribute names (`queries.TASK_SELECT`), newest first."""
    query = select(*queries.TASK_SELECT).where(visible_to(principal))
    if status:
        query = query.where(Task.status == status)
    if client_id:
        query = query.where(Task.client_id == client_id)
    if capability:
        query = query.where(Task.capability_required == capability)
    if priority is not None:
        query = query.where(Task.priority == priority)
    if workflow_id:
        query = query.where(Task.workflow_id == workflow_id)
    if cursor:
        created_iso, last_id = decode_cursor(cursor, 2)
        try:
            created = datetime.fromisoformat(created_iso)
        except (TypeError, ValueError) as exc:
            raise InvalidCursor() from exc
        query = query.where(
            or_(Task.created_at < created, and_(Task.created_at == created, Task.task_id < str(last_id)))
        )
    query = query.order_by(Task.created_at.desc(), Task.task_id.desc()).limit(limit + 1)
    rows = list(await session.execute(query))
    return split_page(rows, limit, lambda task: (task.created_at.isoformat(), task.task_id))


async def attempts(session: AsyncSession, task: Task) -> list[TaskAttempt]:
    query = select(TaskAttempt).where(TaskAttempt.task_id == task.task_id).order_by(TaskAttempt.attempt)
    return list(await session.scalars(query))


async def held_tasks(session: AsyncSession, agent_id: str) -> list[Task]:
    """Every task an agent holds (ASSIGNED or ACTIVE), locked."""
    rows = await session.scalars(
        select(Task).where(Task.assigned_agent_id == agent_id, Task.status.in_(HELD_STATUSES)).with_for_update()
    )
    return list(rows)


def effective_priority(task: Any, now: datetime, settings: Settings) -> float:
    """SPEC 6: base priority plus one step per aging interval waited while claimable; shown rounded, at most 10."""
    return answers.effective_priority(task.status, task.priority, task.available_at, now, settings)


async def read_task(ctx: AppContext, principal: Principal, task_id: str) -> dict[str, Any]:
    """A task as its owner, holder or the admin sees it (`TaskOut`'s shape), from the cache when it can (SPEC 10).

    A read transaction is opened only when the cache does not have the task."""
    cache, settings, now = ctx.cache, ctx.settings, utcnow()
    record, ticket = await cache.lookup(TASK_CACHE, task_id)
    if record is None:
        async with ctx.db.read() as session:
            row = (await session.execute(queries.READ_TASK, {"task_id": task_id})).first()
        if row is None:
            raise NotFound(f"Task {task_id} not found")
        record = answers.task_answer(row, now, settings)
        await cache.fill(TASK_CACHE, task_id, record, ticket)
    else:
        record = answers.refresh_priority(dict(record), now, settings)
    if not (
        principal.is_admin
        or record["client_id"] == principal.id
        or (principal.kind == "agent" and record["assigned_agent_id"] == principal.id)
    ):
        raise NotFound(f"Task {task_id} not found")
    return record


async def queue_metrics(work: Work, principal: Principal) -> dict[str, Any]:
    """SPEC 6 queue figures, over all tasks for the admin and over the caller's own tasks otherwise."""
    session, now, settings = work.session, work.now, work.settings
    scope = [] if principal.is_admin else [Task.client_id == principal.id]
    open_rows = await session.execute(
        select(Task.priority, func.count())
        .where(Task.status.in_((TaskStatus.PENDING, *HELD_STATUSES)), *scope)
        .group_by(Task.priority)
    )
    # The mean of available_at comes from the stored queue position: within one priority,
    # epoch(available_at) = queue_position + priority * aging_interval_seconds.
    claimable_rows = await session.execute(
        select(Task.priority, func.count(), func.avg(Task.queue_position))
        .where(Task.status == TaskStatus.PENDING, Task.available_at <= now, *scope)
        .group_by(Task.priority)
    )
    scheduled = await session.scalar(
        select(func.count()).select_from(Task).where(Task.status == TaskStatus.PENDING, Task.available_at > now, *scope)
    )
    oldest = await session.scalar(select(func.min(Task.created_at)).where(Task.status == TaskStatus.PENDING, *scope))
    depth: dict[str, int] = {}
    waits: dict[str, float] = {}
    for priority, count, mean_position in claimable_rows:
        mean_available = float(mean_position) + priority * settings.aging_interval_seconds
        depth[str(priority)] = count
        waits[str(priority)] = round(max(0.0, now.timestamp() - mean_available), 3)
    return {
        "tasks_by_priority": {str(p): c for p, c in sorted(open_rows, reverse=True)},
        "queue_depth_by_priority": dict(sorted(depth.items(), key=lambda kv: -int(kv[0]))),
        "avg_wait_time_by_priority": dict(sorted(waits.items(), key=lambda kv: -int(kv[0]))),
        "scheduled_retries": scheduled or 0,
        "oldest_pending_age_seconds": round((now - oldest).total_seconds(), 3) if oldest else 0.0,
    }
