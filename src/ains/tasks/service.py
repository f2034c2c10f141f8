"""Task business rules: submit, read, list, start, complete, fail, and releasing an agent's tasks.

Functions here work inside the caller's transaction and never commit.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any, cast

from pydantic import ValidationError
from sqlalchemy import CursorResult, and_, func, or_, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from ains.audit import service as audit
from ains.auth import quota
from ains.core.cache import TASK as TASK_CACHE
from ains.core.clock import new_id
from ains.core.config import Settings
from ains.core.database import after_commit, dialect_name, table_of
from ains.core.errors import AinsError, Conflict, Forbidden, NotFound, PayloadTooLarge, Unprocessable
from ains.core.metrics import RETRIES_SCHEDULED, TASKS_FAILED
from ains.core.pagination import InvalidCursor, decode_cursor, split_page
from ains.core.principal import Principal
from ains.core.signals import announce_task
from ains.tasks import answers, dependencies, lifecycle, queries, reports, retry
from ains.tasks.models import Task, TaskAttempt
from ains.tasks.schemas import TaskSubmit
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
    if body.depends_on:
        await _wait_for_dependencies(session, task, body.depends_on, now)
    if body.idempotency_key is None:
        await _insert(session, [task])
    elif not await _insert_unless_duplicate(session, task):
        # A concurrent request with the same key won the insert: answer with its task.
        existing = await _by_idempotency_key(session, client_id, body.idempotency_key)
        if existing is None:
            raise Conflict(f"idempotency_key {body.idempotency_key!r} is being used by another request; send it again")
        return existing, False
    if task.depends_on:
        await dependencies.insert_edges(session, [(task.task_id, dep) for dep in task.depends_on])
    await _after_submit(session, principal, task, now, signals)
    return task, True


async def _wait_for_dependencies(session: AsyncSession, task: Task, depends_on: list[str], now: datetime) -> None:
    """SPEC 17: lock and read the dependencies (422 for unknown or other clients' ids). All COMPLETED: the task is
    PENDING; one FAILED or CANCELLED: the task is CANCELLED at once; otherwise it is WAITING for the rest."""
    found = await dependencies.check_dependencies(session, task.client_id, depends_on)
    task.depends_on = found.task_ids
    if found.ended is not None:
        task.status = lifecycle.CANCELLED
        task.cancelled_at = now
        task.cancelled_by = dependencies.CASCADE_BY
        task.cancellation_reason = dependencies.dependency_reason(*found.ended)
    elif found.pending:
        task.status = lifecycle.WAITING
        task.pending_dependencies = found.pending


def _available_at(body: TaskSubmit, now: datetime) -> datetime:
    """When a new task may first be claimed (SPEC 17): `run_at`, now + `delay_seconds`, or now."""
    if body.run_at is not None:
        return body.run_at
    if body.delay_seconds:
        return now + timedelta(seconds=body.delay_seconds)
    return now


def _new_task(client_id: str, body: TaskSubmit, now: datetime, settings: Settings) -> Task:
    """The new task's row, as an object the answer and the outbox read (it is inserted by `_insert`)."""
    available_at = _available_at(body, now)
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
        available_at=available_at,
        queue_position=lifecycle.queue_position(available_at, body.priority, settings),
        depends_on=None,
        pending_dependencies=0,
        workflow_id=None,
        step_key=None,
    )


# (attribute, column name) of every task column: new tasks are written by one Core INSERT of many rows, not
# by the unit of work, which cost a submission more than its statement (py-spy: 13 % of a submit in flush).
_TASK_COLUMNS = [(attribute.key, attribute.columns[0].name) for attribute in sa_inspect(Task).column_attrs]


def _row(task: Task) -> dict[str, Any]:
    return {column: getattr(task, attribute) for attribute, column in _TASK_COLUMNS}


async def _insert(session: AsyncSession, tasks: list[Task]) -> None:
    if tasks:
        await session.execute(queries.INSERT_TASKS, [_row(task) for task in tasks])


async def _insert_unless_duplicate(session: AsyncSession, task: Task) -> bool:
    """Insert a task with an idempotency key; False when the client already has a task with that key."""
    dialect_insert = postgresql_insert if dialect_name(session) == "postgresql" else sqlite_insert
    statement = (
        dialect_insert(table_of(Task))
        .values(_row(task))
        .on_conflict_do_nothing(index_elements=["client_id", "idempotency_key"])
    )
    return cast(CursorResult, await session.execute(statement)).rowcount == 1


async def _after_submit(session: AsyncSession, principal: Principal, task: Task, now: datetime, signals: Any) -> None:
    await _after_submit_many(session, principal, [task], now)


async def _after_submit_many(session: AsyncSession, principal: Principal, tasks: list[Task], now: datetime) -> None:
    """The audit entries (admin), the `task.created` events (one INSERT each for events and deliveries), wake-ups."""
    for task in tasks:
        if principal.is_admin:
            audit.record(session, principal, "task.submit", "task", task.task_id, {"client_id": task.client_id})
        if task.status == lifecycle.PENDING:
            announce_task(session, task.capability_required)
    events = [(outbox.TASK_CREATED, task, None, None) for task in tasks]
    # A task whose dependency had already failed or been cancelled is cancelled at once (SPEC 17).
    events += [(outbox.TASK_CANCELLED, task, None, None) for task in tasks if task.status == lifecycle.CANCELLED]
    await outbox.emit_many(session, events, now=now)


def _detail(detail: Any) -> str:
    """A 422's detail list as one line: "field: message"."""
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        where = ".".join(str(part) for part in detail[0].get("loc", [])[1:])
        return f"{where}: {detail[0].get('msg')}" if where else str(detail[0].get("msg"))
    return str(detail)


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
    checked = []
    for index, body in valid:  # dependencies (SPEC 17): an unknown or foreign id fails its item alone
        try:
            if body.depends_on:
                owner = resolve_client_id(principal, body.client_id)
                await dependencies.check_dependencies(session, owner, body.depends_on)
        except AinsError as exc:
            failed.append((index, exc.detail if isinstance(exc.detail, str) else _detail(exc.detail)))
        else:
            checked.append((index, body))
    valid = checked
    failed.sort()
    if atomic and failed:
        return [], failed
    # Items without an idempotency key go in one INSERT; the others one by one, each checked for its key.
    plain = [
        (index, _new_task(resolve_client_id(principal, body.client_id), body, now, settings))
        for index, body in valid
        if body.idempotency_key is None and not body.depends_on
    ]
    await quota.reserve_many(session, [task.client_id for _, task in plain], settings)  # the pending cap (SPEC 18)
    trusted = await trust.submitter_trusted(session, principal) if plain else True
    for _, task in plain:
        task.submitter_trusted = trusted
    await _insert(session, [task for _, task in plain])
    await _after_submit_many(session, principal, [task for _, task in plain], now)
    submitted = list(plain)
    for index, body in valid:
        if body.idempotency_key is not None or body.depends_on:
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
        select(Task)
        .where(Task.assigned_agent_id == agent_id, Task.status.in_(lifecycle.HELD_STATUSES))
        .with_for_update()
    )
    return list(rows)


async def _report_one(
    session: AsyncSession, principal: Principal, to: str, item: reports.Report, *, now: datetime, settings: Settings
) -> Any:
    (answer,) = await reports.report(session, principal, to, [item], now=now, settings=settings)
    if isinstance(answer, AinsError):
        raise answer
    return answer


async def start(
    session: AsyncSession,
    principal: Principal,
    task_id: str,
    attempt: int | None,
    *,
    now: datetime,
    settings: Settings,
    signals: Any = None,
) -> Any:
    """`/start`: the task as a row (see `ains.tasks.reports`)."""
    item = reports.Report(task_id, attempt)
    return await _report_one(session, principal, lifecycle.ACTIVE, item, now=now, settings=settings)


async def complete(
    session: AsyncSession,
    principal: Principal,
    task_id: str,
    attempt: int | None,
    result_data: dict[str, Any],
    *,
    now: datetime,
    settings: Settings,
    signals: Any = None,
) -> Any:
    item = reports.Report(task_id, attempt, result_data=result_data)
    return await _report_one(session, principal, lifecycle.COMPLETED, item, now=now, settings=settings)


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
    signals: Any = None,
) -> Any:
    item = reports.Report(
        task_id, attempt, error_message=error_message, retryable=retryable, retry_after_seconds=retry_after_seconds
    )
    return await _report_one(session, principal, lifecycle.FAILED, item, now=now, settings=settings)


def _batch_results(answers: list[Any], items: list[Any]) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    for item, answer in zip(items, answers, strict=True):
        if isinstance(answer, AinsError):
            detail = answer.detail if isinstance(answer.detail, str) else str(answer.detail)
            results.append({"task_id": item.task_id, "error": detail, "status_code": answer.status_code})
        else:
            results.append({"task_id": item.task_id, "status": answer.status})
    return results


async def complete_many(
    session: AsyncSession,
    principal: Principal,
    items: list[Any],
    *,
    now: datetime,
    settings: Settings,
    signals: Any = None,
) -> list[dict[str, Any]]:
    """`POST /ains/tasks/complete-batch`: items with task_id, attempt and result_data."""
    batch = [reports.Report(item.task_id, item.attempt, result_data=item.result_data) for item in items]
    answers = await reports.report(session, principal, lifecycle.COMPLETED, batch, now=now, settings=settings)
    return _batch_results(answers, items)


async def fail_many(
    session: AsyncSession,
    principal: Principal,
    items: list[Any],
    *,
    now: datetime,
    settings: Settings,
    signals: Any = None,
) -> list[dict[str, Any]]:
    """`POST /ains/tasks/fail-batch`: items as the body of `/fail`, each with its task_id; retry rules as `/fail`."""
    batch = [
        reports.Report(
            item.task_id,
            item.attempt,
            error_message=item.error_message,
            retryable=item.retryable,
            retry_after_seconds=item.retry_after_seconds,
        )
        for item in items
    ]
    answers = await reports.report(session, principal, lifecycle.FAILED, batch, now=now, settings=settings)
    return _batch_results(answers, items)


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
    return answers.effective_priority(task.status, task.priority, task.available_at, now, settings)


async def read_task(
    db: Any, cache: Any, principal: Principal, task_id: str, *, now: datetime, settings: Settings
) -> dict[str, Any]:
    """A task as its owner, holder or the admin sees it (`TaskOut`'s shape), from the cache when it can (SPEC 10)."""
    record = await cache.get(TASK_CACHE, task_id)
    if record is None:
        async with db.read() as session:
            row = (await session.execute(queries.READ_TASK, {"task_id": task_id})).first()
        if row is None:
            raise NotFound(f"Task {task_id} not found")
        record = answers.task_answer(row, now, settings)
        await cache.set(TASK_CACHE, task_id, record)
    else:
        record = answers.refresh_priority(dict(record), now, settings)
    if not (
        principal.is_admin
        or record["client_id"] == principal.id
        or (principal.kind == "agent" and record["assigned_agent_id"] == principal.id)
    ):
        raise NotFound(f"Task {task_id} not found")
    return record


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
