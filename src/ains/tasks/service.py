"""Task business rules: submit, read, list, start, complete, fail, and releasing an agent's tasks.

Functions here work inside the caller's transaction and never commit.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import and_, func, insert, or_, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from ains.audit import service as audit
from ains.auth import quota
from ains.auth.principal import Principal
from ains.core.cache import TASK as TASK_CACHE
from ains.core.cache import read_through
from ains.core.clock import new_id
from ains.core.config import Settings
from ains.core.database import after_commit
from ains.core.errors import AinsError, Conflict, Forbidden, NotFound, PayloadTooLarge, Unprocessable
from ains.core.metrics import RETRIES_SCHEDULED, TASKS_FAILED
from ains.core.pagination import InvalidCursor, decode_cursor, split_page
from ains.core.signals import announce_task
from ains.tasks import lifecycle, retry
from ains.tasks.models import Task, TaskAttempt
from ains.tasks.schemas import TaskOut, TaskSubmit
from ains.trust import service as trust
from ains.webhooks import outbox


def json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def resolve_client_id(principal: Principal, requested: str | None) -> str:
    if principal.is_admin:
        if requested is None:
            raise Unprocessable("client_id", "client_id is required when the admin submits")
        return requested
    if requested is not None and requested != principal.id:
        raise Forbidden(f"client_id must be your own id ({principal.id})")
    return principal.id


async def submit(
    session: AsyncSession,
    principal: Principal,
    body: TaskSubmit,
    *,
    now: datetime,
    settings: Settings,
    signals: Any,
) -> tuple[Task, bool]:
    """Store a new task, or return the first one for a repeated idempotency key. True when created."""
    client_id = resolve_client_id(principal, body.client_id)
    if json_size(body.input_data) > settings.max_input_bytes:
        raise PayloadTooLarge(f"input_data is larger than {settings.max_input_bytes} bytes")

    if body.idempotency_key is not None:
        existing = await _by_idempotency_key(session, client_id, body.idempotency_key)
        if existing is not None:
            return existing, False

    await quota.reserve(session, client_id, 1, settings)  # max_pending_tasks_per_client (SPEC 18)
    task = _new_task(client_id, body, now, settings)
    task.submitter_trusted = await trust.submitter_trusted(session, principal)
    if body.idempotency_key is None:
        await _insert(session, [task])
    elif not await _insert_unless_duplicate(session, task):
        # A concurrent request with the same key won the insert: answer with its task.
        existing = await _by_idempotency_key(session, client_id, body.idempotency_key)
        if existing is None:
            raise Conflict(f"idempotency_key {body.idempotency_key!r} is being used by another request; send it again")
        return existing, False
    await _after_submit(session, principal, task, now, signals)
    return task, True


def _new_task(client_id: str, body: TaskSubmit, now: datetime, settings: Settings) -> Task:
    """The new task's row, as an object the answer and the outbox read (it is inserted by `_insert`)."""
    return Task(
        task_id=new_id("task"),
        client_id=client_id,
        task_type=body.task_type,
        capability_required=body.capability_required,
        input_data=body.input_data,
        priority=body.priority,
        max_retries=body.max_retries,
        retry_policy=body.retry_policy,
        retry_jitter=body.retry_jitter,
        timeout_seconds=body.timeout_seconds,
        idempotency_key=body.idempotency_key,
        task_metadata=body.metadata,
        min_trust_score=body.min_trust_score,
        status=lifecycle.PENDING,
        attempt=0,
        retry_count=0,
        created_at=now,
        updated_at=now,
        available_at=now,
        queue_position=lifecycle.queue_position(now, body.priority, settings),
    )


# (attribute, column name) of every task column: new tasks are written by one Core INSERT of many rows, not
# by the unit of work, which cost a submission more than its statement (py-spy: 13 % of a submit in flush).
_TASK_COLUMNS = [(attribute.key, attribute.columns[0].name) for attribute in sa_inspect(Task).column_attrs]


def _row(task: Task) -> dict[str, Any]:
    return {column: getattr(task, attribute) for attribute, column in _TASK_COLUMNS}


async def _insert(session: AsyncSession, tasks: list[Task]) -> None:
    if tasks:
        await session.execute(insert(Task.__table__), [_row(task) for task in tasks])


async def _insert_unless_duplicate(session: AsyncSession, task: Task) -> bool:
    """Insert a task with an idempotency key; False when the client already has a task with that key."""
    dialect_insert = postgresql_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
    statement = (
        dialect_insert(Task.__table__)
        .values(_row(task))
        .on_conflict_do_nothing(index_elements=["client_id", "idempotency_key"])
    )
    return (await session.execute(statement)).rowcount == 1


async def _after_submit(session: AsyncSession, principal: Principal, task: Task, now: datetime, signals: Any) -> None:
    if principal.is_admin:
        audit.record(session, principal, "task.submit", "task", task.task_id, {"client_id": task.client_id})
    await outbox.emit(session, outbox.TASK_CREATED, task, now=now, agent_id=None, signals=signals)
    announce_task(session, task.capability_required)


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"]) or "body"
    return f"{field}: {error['msg']}"


async def submit_batch(
    session: AsyncSession,
    principal: Principal,
    items: list[dict[str, Any]],
    *,
    atomic: bool,
    now: datetime,
    settings: Settings,
    signals: Any,
) -> tuple[list[tuple[int, Task]], list[tuple[int, str]]]:
    """SPEC 5: validate every item first; store the valid ones (or, atomic, all or none) in this transaction."""
    valid: list[tuple[int, TaskSubmit]] = []
    failed: list[tuple[int, str]] = []
    for index, item in enumerate(items):
        try:
            body = TaskSubmit.model_validate(item)
            resolve_client_id(principal, body.client_id)
            if json_size(body.input_data) > settings.max_input_bytes:
                raise PayloadTooLarge(f"input_data: larger than {settings.max_input_bytes} bytes")
        except ValidationError as exc:
            failed.append((index, _first_error(exc)))
        except AinsError as exc:
            failed.append((index, exc.detail if isinstance(exc.detail, str) else str(exc.detail)))
        else:
            valid.append((index, body))
    if atomic and failed:
        return [], failed
    # Items without an idempotency key go in one INSERT; the others one by one, each checked for its key.
    plain = [
        (index, _new_task(resolve_client_id(principal, body.client_id), body, now, settings))
        for index, body in valid
        if body.idempotency_key is None
    ]
    await quota.reserve_many(session, [task.client_id for _, task in plain], settings)  # the pending cap (SPEC 18)
    trusted = await trust.submitter_trusted(session, principal) if plain else True
    for _, task in plain:
        task.submitter_trusted = trusted
    await _insert(session, [task for _, task in plain])
    submitted = []
    for index, task in plain:
        await _after_submit(session, principal, task, now, signals)
        submitted.append((index, task))
    for index, body in valid:
        if body.idempotency_key is not None:
            task, _created = await submit(session, principal, body, now=now, settings=settings, signals=signals)
            submitted.append((index, task))
    return sorted(submitted, key=lambda pair: pair[0]), failed


async def _by_idempotency_key(session: AsyncSession, client_id: str, key: str) -> Task | None:
    return await session.scalar(select(Task).where(Task.client_id == client_id, Task.idempotency_key == key))


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
) -> tuple[list[Task], str | None]:
    query = select(Task).where(visible_to(principal))
    if status:
        query = query.where(Task.status == status)
    if client_id:
        query = query.where(Task.client_id == client_id)
    if capability:
        query = query.where(Task.capability_required == capability)
    if priority is not None:
        query = query.where(Task.priority == priority)
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
    rows = list(await session.scalars(query))
    return split_page(rows, limit, lambda task: (task.created_at.isoformat(), task.task_id))


async def attempts(session: AsyncSession, task: Task) -> list[TaskAttempt]:
    query = select(TaskAttempt).where(TaskAttempt.task_id == task.task_id).order_by(TaskAttempt.attempt)
    return list(await session.scalars(query))


async def held_by_agent(session: AsyncSession, principal: Principal, task_id: str) -> Task:
    """The task, locked, if the calling agent holds it; 409 if it held an earlier attempt; else 404."""
    if principal.kind != "agent":
        raise Forbidden("Only the assigned agent may report on a task")
    # Lock order everywhere: the agent row before its task rows (the trust change needs both).
    await trust.lock_agent(session, principal.id)
    task = session.info.get("locked_tasks", {}).get(task_id)
    if task is None:
        task = await session.scalar(select(Task).where(Task.task_id == task_id).with_for_update())
    if task is None:
        raise NotFound(f"Task {task_id} not found")
    if task.assigned_agent_id != principal.id:
        earlier = await session.scalar(
            select(TaskAttempt.attempt)
            .where(TaskAttempt.task_id == task_id, TaskAttempt.agent_id == principal.id)
            .limit(1)
        )
        if earlier is None:
            raise NotFound(f"Task {task_id} not found")
        raise Conflict(f"Task {task_id} is {task.status} and no longer assigned to you")
    return task


class AlreadyReported(Exception):
    """The same report again for the task's current attempt (its answer was lost): answer with the task as it is."""

    def __init__(self, task: Task) -> None:
        self.task = task


async def held_for_move(
    session: AsyncSession, principal: Principal, task_id: str, to: str, attempt: int | None
) -> Task:
    """The calling agent's task, locked, once the move and the attempt number (fencing) check out.

    Raises `AlreadyReported` instead of 409 when the move is a repeat of the report that already ended (or, for
    a start, started) the task's current attempt by this agent: reports are idempotent per attempt (SPEC 14).
    """
    try:
        task = await held_by_agent(session, principal, task_id)
        lifecycle.check_move(task, to)
        lifecycle.check_attempt(task, attempt)
    except Conflict:
        if await _is_repeat(session, principal, task_id, to, attempt):
            raise AlreadyReported(await session.get(Task, task_id)) from None
        raise
    return task


# The attempt outcome each report writes: a repeat must find the same one.
_REPORTED_OUTCOME = {lifecycle.COMPLETED: lifecycle.OUTCOME_COMPLETED, lifecycle.FAILED: lifecycle.OUTCOME_FAILED}


async def _is_repeat(session: AsyncSession, principal: Principal, task_id: str, to: str, attempt: int | None) -> bool:
    task = await session.get(Task, task_id)  # locked by held_by_agent
    if task is None or task.attempt == 0 or (attempt is not None and attempt != task.attempt):
        return False
    if to == lifecycle.ACTIVE:
        return task.status == lifecycle.ACTIVE and task.assigned_agent_id == principal.id
    outcome = await session.scalar(
        select(TaskAttempt.outcome).where(
            TaskAttempt.task_id == task_id, TaskAttempt.attempt == task.attempt, TaskAttempt.agent_id == principal.id
        )
    )
    return outcome is not None and outcome == _REPORTED_OUTCOME.get(to)


async def held_tasks(session: AsyncSession, agent_id: str) -> list[Task]:
    """Every task an agent holds (ASSIGNED or ACTIVE), locked."""
    rows = await session.scalars(
        select(Task)
        .where(Task.assigned_agent_id == agent_id, Task.status.in_(lifecycle.HELD_STATUSES))
        .with_for_update()
    )
    return list(rows)


async def start(
    session: AsyncSession,
    principal: Principal,
    task_id: str,
    attempt: int | None,
    *,
    now: datetime,
    settings: Settings,
    signals: Any,
) -> Task:
    try:
        task = await held_for_move(session, principal, task_id, lifecycle.ACTIVE, attempt)
    except AlreadyReported as repeat:
        return repeat.task
    await lifecycle.move(session, task, lifecycle.ACTIVE, now=now, settings=settings, signals=signals)
    return task


async def check_complete(
    session: AsyncSession,
    principal: Principal,
    task_id: str,
    attempt: int | None,
    result_data: dict[str, Any],
    settings: Settings,
) -> Task:
    """The task the calling agent may complete now, locked; raises before anything is written."""
    if json_size(result_data) > settings.max_input_bytes:
        raise PayloadTooLarge(f"result_data is larger than {settings.max_input_bytes} bytes")
    return await held_for_move(session, principal, task_id, lifecycle.COMPLETED, attempt)


async def complete(
    session: AsyncSession,
    principal: Principal,
    task_id: str,
    attempt: int | None,
    result_data: dict[str, Any],
    *,
    now: datetime,
    settings: Settings,
    signals: Any,
) -> Task:
    try:
        task = await check_complete(session, principal, task_id, attempt, result_data, settings)
    except AlreadyReported as repeat:
        return repeat.task
    await lifecycle.move(
        session, task, lifecycle.COMPLETED, now=now, settings=settings, signals=signals, result_data=result_data
    )
    return task


async def fail(
    session: AsyncSession,
    principal: Principal,
    task_id: str,
    attempt: int | None,
    error_message: str,
    *,
    retryable: bool,
    retry_after_seconds: float | None,
    now: datetime,
    settings: Settings,
    signals: Any,
) -> Task:
    try:
        task = await held_for_move(session, principal, task_id, lifecycle.FAILED, attempt)
    except AlreadyReported as repeat:
        return repeat.task
    await fail_attempt(
        session,
        task,
        error_message,
        retryable=retryable,
        now=now,
        settings=settings,
        signals=signals,
        retry_after_seconds=retry_after_seconds,
    )
    return task


async def complete_many(
    session: AsyncSession, principal: Principal, items: list[Any], *, now: datetime, settings: Settings, signals: Any
) -> list[dict[str, Any]]:
    """`POST /ains/tasks/complete-batch`: items with task_id, attempt and result_data."""

    async def check(item: Any) -> Task:
        return await check_complete(session, principal, item.task_id, item.attempt, item.result_data, settings)

    async def apply(task: Task, item: Any) -> None:
        await lifecycle.move(
            session,
            task,
            lifecycle.COMPLETED,
            now=now,
            settings=settings,
            signals=signals,
            result_data=item.result_data,
        )

    return await report_each(session, principal, items, check, apply)


async def fail_many(
    session: AsyncSession, principal: Principal, items: list[Any], *, now: datetime, settings: Settings, signals: Any
) -> list[dict[str, Any]]:
    """`POST /ains/tasks/fail-batch`: items as the body of `/fail`, each with its task_id; retry rules as `/fail`."""

    async def check(item: Any) -> Task:
        return await held_for_move(session, principal, item.task_id, lifecycle.FAILED, item.attempt)

    async def apply(task: Task, item: Any) -> None:
        await fail_attempt(
            session,
            task,
            item.error_message,
            retryable=item.retryable,
            now=now,
            settings=settings,
            signals=signals,
            retry_after_seconds=item.retry_after_seconds,
        )

    return await report_each(session, principal, items, check, apply)


async def fail_attempt(
    session: AsyncSession,
    task: Task,
    error_message: str,
    *,
    retryable: bool,
    now: datetime,
    settings: Settings,
    signals: Any,
    outcome: str = lifecycle.OUTCOME_FAILED,
    retry_after_seconds: float | None = None,
) -> None:
    """A failed attempt: back to the queue after the retry delay while retries are left (SPEC 4), else FAILED."""
    if retryable and task.retry_count < task.max_retries:
        delay = retry.retry_delay(
            task.retry_policy,
            task.retry_count,
            retry.RetryBases.from_settings(settings),
            requested_seconds=retry_after_seconds,
            jitter=task.retry_jitter,
        )
        retry_at = now + timedelta(seconds=delay)
        task.retry_count += 1
        task.last_error = error_message
        await lifecycle.move(
            session,
            task,
            lifecycle.PENDING,
            now=now,
            settings=settings,
            signals=signals,
            outcome=outcome,
            error=error_message,
            available_at=retry_at,
            retry=True,
        )
        after_commit(session, RETRIES_SCHEDULED.inc)
    else:
        await lifecycle.move(
            session, task, lifecycle.FAILED, now=now, settings=settings, outcome=outcome, error=error_message
        )
        after_commit(session, TASKS_FAILED.labels(outcome).inc)


async def release_agent_tasks(
    session: AsyncSession, agent_id: str, *, now: datetime, settings: Settings, signals: Any
) -> int:
    """Put every task an agent holds back in the queue without using a retry (deregistration)."""
    held = await held_tasks(session, agent_id)
    for task in held:
        await lifecycle.move(
            session,
            task,
            lifecycle.PENDING,
            now=now,
            settings=settings,
            signals=signals,
            outcome=lifecycle.OUTCOME_RELEASED,
        )
    return len(held)


def require_owner(principal: Principal, task: Task, action: str) -> None:
    """Cancelling and re-prioritising belong to the task's client (or the admin), not to the agent running it."""
    if not (principal.is_admin or task.client_id == principal.id):
        raise Forbidden(f"Only the task's owner or an admin may {action} it")


async def cancel(
    session: AsyncSession,
    principal: Principal,
    task_id: str,
    reason: str,
    *,
    now: datetime,
    settings: Settings,
    signals: Any,
) -> Task:
    task = await get_visible(session, principal, task_id, for_update=True)
    require_owner(principal, task, "cancel")
    await lifecycle.move(
        session,
        task,
        lifecycle.CANCELLED,
        now=now,
        settings=settings,
        signals=signals,
        cancelled_by=principal.id,
        cancellation_reason=reason,
    )
    audit.record(
        session,
        principal,
        "task.cancel",
        "task",
        task.task_id,
        {"reason": reason, "assigned_agent_id": task.assigned_agent_id},
    )
    return task


async def set_priority(
    session: AsyncSession, principal: Principal, task_id: str, priority: int, *, now: datetime, settings: Settings
) -> Task:
    task = await get_visible(session, principal, task_id, for_update=True)
    require_owner(principal, task, "re-prioritise")
    if task.status in lifecycle.FINAL_STATUSES:
        raise Conflict(f"Task {task_id} is {task.status}; its priority can no longer change")
    previous = task.priority
    task.priority = priority
    task.queue_position = lifecycle.queue_position(task.available_at, priority, settings)
    task.updated_at = now
    if principal.is_admin:
        audit.record(session, principal, "task.priority", "task", task_id, {"from": previous, "to": priority})
    return task


async def take_cancelled_for_agent(session: AsyncSession, agent_id: str, now: datetime) -> list[str]:
    """Ids of the agent's tasks cancelled since it was last told; each is told once."""
    rows = list(
        await session.scalars(
            select(Task)
            .where(
                Task.assigned_agent_id == agent_id,
                Task.status == lifecycle.CANCELLED,
                Task.cancel_acknowledged_at.is_(None),
            )
            .order_by(Task.cancelled_at)
            .with_for_update()
        )
    )
    for task in rows:
        task.cancel_acknowledged_at = now
    return [task.task_id for task in rows]


def effective_priority(task: Any, now: datetime, settings: Settings) -> float:
    """SPEC 6: base priority plus one step per aging interval waited while claimable; shown rounded, at most 10."""
    if task.status != lifecycle.PENDING:
        return float(task.priority)
    waited = max(0.0, (now - task.available_at).total_seconds())
    return round(min(10.0, task.priority + waited / settings.aging_interval_seconds), 1)


async def read_task(db: Any, cache: Any, principal: Principal, task_id: str) -> TaskOut:
    """A task as its owner, holder or the admin sees it, from the cache when it can (SPEC 10)."""

    async def load() -> TaskOut:
        async with db.read() as session:
            task = await session.get(Task, task_id)
            if task is None:
                raise NotFound(f"Task {task_id} not found")
            return TaskOut.model_validate(task)

    out = await read_through(cache, TASK_CACHE, task_id, TaskOut, load)
    if not can_see(principal, out):
        raise NotFound(f"Task {task_id} not found")
    return out


async def queue_metrics(
    session: AsyncSession, principal: Principal, *, now: datetime, settings: Settings
) -> dict[str, Any]:
    """SPEC 6 queue figures, over all tasks for the admin and over the caller's own tasks otherwise."""
    scope = [] if principal.is_admin else [Task.client_id == principal.id]
    open_rows = await session.execute(
        select(Task.priority, func.count())
        .where(Task.status.in_((lifecycle.PENDING, *lifecycle.HELD_STATUSES)), *scope)
        .group_by(Task.priority)
    )
    # The mean of available_at comes from the stored queue position: within one priority,
    # epoch(available_at) = queue_position + priority * aging_interval_seconds.
    claimable_rows = await session.execute(
        select(Task.priority, func.count(), func.avg(Task.queue_position))
        .where(Task.status == lifecycle.PENDING, Task.available_at <= now, *scope)
        .group_by(Task.priority)
    )
    scheduled = await session.scalar(
        select(func.count()).select_from(Task).where(Task.status == lifecycle.PENDING, Task.available_at > now, *scope)
    )
    oldest = await session.scalar(select(func.min(Task.created_at)).where(Task.status == lifecycle.PENDING, *scope))
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


async def lock_tasks(session: AsyncSession, task_ids: list[str]) -> list[Task]:
    """Lock many tasks in one statement (in task_id order, so two batches never wait on each other in a circle)."""
    tasks = list(
        await session.scalars(
            select(Task).where(Task.task_id.in_(sorted(set(task_ids)))).order_by(Task.task_id).with_for_update()
        )
    )
    session.info.setdefault("locked_tasks", {}).update((task.task_id, task) for task in tasks)
    return tasks


async def report_each(
    session: AsyncSession,
    principal: Principal,
    items: list[Any],
    check: Callable[[Any], Awaitable[Task]],
    apply: Callable[[Task, Any], Awaitable[None]],
) -> list[dict[str, Any]]:
    """A batch of reports from one agent, each item answered on its own.

    `check(item)` raises before anything is written for the item, so a refused
    item changes nothing without needing a savepoint; `apply` then moves the task.
    The agent and all the tasks are locked and the current attempts read up
    front, so fifty items cost a few statements, not fifty times a few.
    """
    await trust.lock_agent(session, principal.id)  # lock order: the agent before its tasks
    await lifecycle.load_current_attempts(session, await lock_tasks(session, [item.task_id for item in items]))
    results: list[dict[str, Any]] = []
    for item in items:
        try:
            task = await check(item)
        except AlreadyReported as repeat:
            results.append({"task_id": item.task_id, "status": repeat.task.status})
            continue
        except AinsError as exc:
            detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
            results.append({"task_id": item.task_id, "error": detail, "status_code": exc.status_code})
            continue
        await apply(task, item)
        results.append({"task_id": item.task_id, "status": task.status})
    return results
