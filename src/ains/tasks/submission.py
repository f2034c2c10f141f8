"""Submitting tasks: one (`POST /ains/tasks`) or a batch, with idempotency keys, dependencies and run_at.

Functions here work inside the caller's transaction and never commit.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

from pydantic import ValidationError
from sqlalchemy import CursorResult, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from ains.audit import service as audit
from ains.auth import quota
from ains.core import signals
from ains.core.clock import new_id, utcnow
from ains.core.config import Settings
from ains.core.context import AppContext
from ains.core.database import dialect_name, driver_connection, table_of
from ains.core.errors import AinsError, Conflict, Forbidden, PayloadTooLarge, Unprocessable
from ains.core.metrics import DB_STATEMENTS
from ains.core.principal import Principal
from ains.core.schemas import json_size
from ains.core.work import Work
from ains.tasks import dependencies, lifecycle, queries
from ains.tasks.answers import TaskRow
from ains.tasks.models import Task
from ains.tasks.schemas import TaskStatus, TaskSubmit
from ains.trust import service as trust
from ains.webhooks import outbox
from ains.webhooks.schemas import EventName


def resolve_client_id(principal: Principal, requested: str | None) -> str:
    if principal.is_admin:
        if requested is None:
            raise Unprocessable("client_id", "client_id is required when the admin submits")
        return requested
    if requested is not None and requested != principal.id:
        raise Forbidden(f"client_id must be your own id ({principal.id})")
    return principal.id


async def submit_one(ctx: AppContext, principal: Principal, body: TaskSubmit) -> tuple[Task | TaskRow, bool]:
    """`POST /ains/tasks`: `submit` in a transaction of its own, or, for a client's plain task on PostgreSQL, one
    statement (`_submit_alone`). True when created."""
    task = await _submit_alone(ctx, principal, body)
    if task is not None:
        return task, True
    async with ctx.work() as work:
        return await submit(work, principal, body)


async def _submit_alone(ctx: AppContext, principal: Principal, body: TaskSubmit) -> TaskRow | None:
    """PostgreSQL: a client's task without an idempotency key or dependencies, which no webhook hears created, is
    stored with its allowance taken in one autocommitted statement (`queries.SUBMIT_ALONE`), without SQLAlchemy's
    transaction around it: BEGIN, the allowance, the INSERT and COMMIT were four round trips and two thirds of a
    submission's CPU (benchmarks/PROFILE.md). None when the task needs the general path: something else to read or
    write, or an allowance used up (which only the general path recounts)."""
    if ctx.db.is_sqlite or principal.kind != "client" or body.idempotency_key is not None or body.depends_on:
        return None
    if not ctx.listening:  # the webhook directory may be stale: only a transaction can ask who hears the task
        return None
    engine, settings, now = ctx.db.engine, ctx.settings, utcnow()
    client_id = resolve_client_id(principal, body.client_id)
    _check_size(body, settings)
    if quota.refused_lately(engine, client_id, now) or await outbox.created_may_be_heard(ctx.db, client_id):
        return None
    task = _new_task(client_id, body, now, settings)
    row = queries.INSERT_TASKS.parameter([_row(task)])
    async with driver_connection(engine) as connection:
        DB_STATEMENTS.labels("write").inc()
        inserted = await connection.execute(queries.SUBMIT_ALONE, client_id, 1, row)
    if inserted != "INSERT 0 1":
        return None
    quota.taken(engine, client_id)
    if ctx.db.wakeups is not None:
        ctx.db.wakeups.committed([(signals.TASK, task.capability_required, "")])
    return task


def _check_size(body: TaskSubmit, settings: Settings) -> None:
    if json_size(body.input_data) > settings.max_input_bytes:
        raise PayloadTooLarge(f"input_data is larger than {settings.max_input_bytes} bytes")


async def submit(work: Work, principal: Principal, body: TaskSubmit) -> tuple[Task | TaskRow, bool]:
    """Store a new task, or return the first one for a repeated idempotency key. True when created."""
    session, now, settings = work.session, work.now, work.settings
    client_id = resolve_client_id(principal, body.client_id)
    _check_size(body, settings)

    if body.idempotency_key is not None:
        existing = await _by_idempotency_key(session, client_id, body.idempotency_key)
        if existing is not None:
            return existing, False

    await quota.reserve(work, client_id, 1)  # max_pending_tasks_per_client (SPEC 18)
    task = _new_task(client_id, body, now, settings)
    task.submitter_trusted = await trust.submitter_trusted(session, principal)
    if body.depends_on:
        await _wait_for_dependencies(work, task, body.depends_on)
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
    await _after_submit(work, principal, task)
    return task, True


async def _wait_for_dependencies(work: Work, task: TaskRow, depends_on: list[str]) -> None:
    """SPEC 17: lock and read the dependencies (422 for unknown or other clients' ids). All COMPLETED: the task is
    PENDING; one FAILED or CANCELLED: the task is CANCELLED at once; otherwise it is WAITING for the rest."""
    found = await dependencies.check_dependencies(work.session, task.client_id, depends_on)
    task.depends_on = found.task_ids
    if found.ended is not None:
        task.status = TaskStatus.CANCELLED
        task.cancelled_at = work.now
        task.cancelled_by = dependencies.CASCADE_BY
        task.cancellation_reason = dependencies.dependency_reason(*found.ended)
    elif found.pending:
        task.status = TaskStatus.WAITING
        task.pending_dependencies = found.pending


def _available_at(body: TaskSubmit, now: datetime) -> datetime:
    """When a new task may first be claimed (SPEC 17): `run_at`, now + `delay_seconds`, or now."""
    if body.run_at is not None:
        return body.run_at
    if body.delay_seconds:
        return now + timedelta(seconds=body.delay_seconds)
    return now


def _new_task(client_id: str, body: TaskSubmit, now: datetime, settings: Settings) -> TaskRow:
    """The new task's row by attribute name, which the answer and the outbox read (it is inserted by `_insert`).
    Not a `Task` object: building one and reading its instrumented attributes back cost a batch of a hundred
    more than its INSERT (py-spy: 8 % of an end-to-end run)."""
    available_at = _available_at(body, now)
    return TaskRow(
        _UNSET,
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
        status=TaskStatus.PENDING,
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
        submitter_trusted=True,
    )


# (attribute, column name) of every task column: new tasks are written by one Core INSERT of many rows, not
# by the unit of work, which cost a submission more than its statement (py-spy: 13 % of a submit in flush).
_TASK_COLUMNS = [(attribute.key, attribute.columns[0].name) for attribute in sa_inspect(Task).column_attrs]
# The columns a new task leaves empty (the assignee, the times of later moves, the result…).
_UNSET = dict.fromkeys((attribute for attribute, _ in _TASK_COLUMNS), None)


def _row(task: TaskRow) -> dict[str, Any]:
    return {column: task[attribute] for attribute, column in _TASK_COLUMNS}


async def _insert(session: AsyncSession, tasks: list[TaskRow]) -> None:
    if tasks:
        await queries.INSERT_TASKS.run(session, [_row(task) for task in tasks])


async def _insert_unless_duplicate(session: AsyncSession, task: TaskRow) -> bool:
    """Insert a task with an idempotency key; False when the client already has a task with that key."""
    dialect_insert = postgresql_insert if dialect_name(session) == "postgresql" else sqlite_insert
    statement = (
        dialect_insert(table_of(Task))
        .values(_row(task))
        .on_conflict_do_nothing(index_elements=["client_id", "idempotency_key"])
    )
    return cast(CursorResult, await session.execute(statement)).rowcount == 1


async def _after_submit(work: Work, principal: Principal, task: TaskRow) -> None:
    await _after_submit_many(work, principal, [task])


async def _after_submit_many(work: Work, principal: Principal, tasks: list[TaskRow]) -> None:
    """The audit entries (admin), the `task.created` events (one INSERT each for events and deliveries), wake-ups."""
    for task in tasks:
        if principal.is_admin:
            audit.record(work, principal, "task.submit", "task", task.task_id, {"client_id": task.client_id})
        if task.status == TaskStatus.PENDING:
            work.announce_task(task.capability_required)
    events = [(EventName.TASK_CREATED, task, None, None) for task in tasks]
    # A task whose dependency had already failed or been cancelled is cancelled at once (SPEC 17).
    events += [(EventName.TASK_CANCELLED, task, None, None) for task in tasks if task.status == TaskStatus.CANCELLED]
    await outbox.emit_many(work, events)


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
    work: Work, principal: Principal, items: list[dict[str, Any]], *, atomic: bool
) -> tuple[list[tuple[int, Task | TaskRow]], list[tuple[int, str]]]:
    """SPEC 5: validate every item first; store the valid ones (or, atomic, all or none) in this transaction."""
    session, now, settings = work.session, work.now, work.settings
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
    await quota.reserve_many(work, [task.client_id for _, task in plain])  # the pending cap (SPEC 18)
    trusted = await trust.submitter_trusted(session, principal) if plain else True
    for _, task in plain:
        task.submitter_trusted = trusted
    await _insert(session, [task for _, task in plain])
    await _after_submit_many(work, principal, [task for _, task in plain])
    submitted: list[tuple[int, Task | TaskRow]] = list(plain)
    for index, body in valid:
        if body.idempotency_key is not None or body.depends_on:
            stored, _created = await submit(work, principal, body)
            submitted.append((index, stored))
    return sorted(submitted, key=lambda pair: pair[0]), failed


async def _by_idempotency_key(session: AsyncSession, client_id: str, key: str) -> Task | None:
    return await session.scalar(select(Task).where(Task.client_id == client_id, Task.idempotency_key == key))
