"""Schedule rules: create, read, list, change, delete, and submitting the task of a due tick (SPEC 17).

Each tick submits its task with the idempotency key `schedule:<schedule_id>:<tick time>`: the unique
(client_id, idempotency_key) of tasks makes a second submission of one tick impossible, in any process, and
the duty advances `next_run_at` in the same transaction, under the schedule's row lock. A schedule found due
after a time nothing ran submits only the latest tick it missed, then waits for the next one.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ains.core.clock import new_id
from ains.core.config import Settings
from ains.core.errors import AinsError, NotFound, Unprocessable
from ains.core.pagination import newest_first, split_page
from ains.core.principal import Principal
from ains.core.schemas import json_size
from ains.core.work import Work
from ains.schedules import cron
from ains.schedules.models import Schedule
from ains.schedules.schemas import ScheduleCreate, ScheduleUpdate
from ains.tasks.submission import resolve_client_id

log = logging.getLogger("ains.schedules")

DEADLINE_SCHEDULE = "schedule"
# Task fields a schedule does not keep: the owner is the schedule's, the key is the tick's, and the time is now.
_NOT_KEPT = {"client_id", "idempotency_key", "depends_on", "run_at", "delay_seconds"}


def _check_cron(expression: str, timezone: str) -> None:
    try:
        cron.check(expression, timezone)
    except cron.CronError as exc:
        raise Unprocessable(exc.field, exc.message) from exc


def _task_body(task: dict[str, Any], client_id: str, settings: Settings) -> dict[str, Any]:
    """The schedule's task, checked as a submission would check it, without the fields a tick sets itself."""

    from ains.tasks.schemas import TaskSubmit

    try:
        body = TaskSubmit.model_validate({key: value for key, value in task.items() if key not in _NOT_KEPT})
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise Unprocessable(f"task.{where}" if where else "task", str(error["msg"])) from exc
    size = json_size(body.input_data)
    if size > settings.max_input_bytes:
        from ains.core.errors import PayloadTooLarge

        raise PayloadTooLarge(f"task.input_data is larger than {settings.max_input_bytes} bytes")
    return body.model_dump(mode="json", exclude=_NOT_KEPT, exclude_none=True)


async def create(work: Work, principal: Principal, body: ScheduleCreate) -> Schedule:
    session, now, settings = work.session, work.now, work.settings
    client_id = resolve_client_id(principal, body.client_id)
    _check_cron(body.cron, body.timezone)
    task = _task_body(body.task, client_id, settings)
    schedule = Schedule(
        schedule_id=new_id("sched"),
        client_id=client_id,
        name=body.name,
        cron=body.cron.strip(),
        timezone=body.timezone,
        task=task,
        active=body.active,
        next_run_at=cron.next_tick(body.cron, body.timezone, now) if body.active else None,
        last_run_at=None,
        last_task_id=None,
        created_at=now,
        updated_at=now,
    )
    session.add(schedule)
    if schedule.next_run_at is not None:
        work.announce_deadline(DEADLINE_SCHEDULE, schedule.next_run_at)
    return schedule


async def get(session: AsyncSession, principal: Principal, schedule_id: str, *, lock: bool = False) -> Schedule:
    query = select(Schedule).where(Schedule.schedule_id == schedule_id)
    if lock:
        query = query.with_for_update()
    schedule = await session.scalar(query)
    if schedule is None or not (principal.is_admin or schedule.client_id == principal.id):
        raise NotFound(f"Schedule {schedule_id} not found")
    return schedule


async def update(work: Work, principal: Principal, schedule_id: str, body: ScheduleUpdate) -> Schedule:
    now, settings = work.now, work.settings
    schedule = await get(work.session, principal, schedule_id, lock=True)
    expression = body.cron if body.cron is not None else schedule.cron
    timezone = body.timezone if body.timezone is not None else schedule.timezone
    _check_cron(expression, timezone)
    if body.task is not None:
        schedule.task = _task_body(body.task, schedule.client_id, settings)
    if body.name is not None:
        schedule.name = body.name
    retimed = body.cron is not None or body.timezone is not None or (body.active and not schedule.active)
    schedule.cron = expression.strip()
    schedule.timezone = timezone
    if body.active is not None:
        schedule.active = body.active
    if not schedule.active:
        schedule.next_run_at = None
    elif retimed or schedule.next_run_at is None:
        schedule.next_run_at = cron.next_tick(expression, timezone, now)
        work.announce_deadline(DEADLINE_SCHEDULE, schedule.next_run_at)
    schedule.updated_at = now
    return schedule


async def delete(session: AsyncSession, principal: Principal, schedule_id: str) -> None:
    schedule = await get(session, principal, schedule_id, lock=True)
    await session.delete(schedule)


async def list_schedules(
    session: AsyncSession, principal: Principal, *, client_id: str | None, limit: int, cursor: str | None
) -> tuple[list[Schedule], str | None]:
    query = select(Schedule)
    if not principal.is_admin:
        query = query.where(Schedule.client_id == principal.id)
    if client_id:
        query = query.where(Schedule.client_id == client_id)
    query = newest_first(query, Schedule.created_at, Schedule.schedule_id, cursor, limit)
    rows = list(await session.scalars(query))
    return split_page(rows, limit, lambda s: (s.created_at.isoformat(), s.schedule_id))


def tick_key(schedule_id: str, tick: datetime) -> str:
    from ains.webhooks.outbox import iso

    return f"schedule:{schedule_id}:{iso(tick)}"


async def run_tick(work: Work, schedule: Schedule) -> str | None:
    """Submit the task of the latest due tick of a locked, due schedule and move `next_run_at` past now."""
    from ains.tasks import submission
    from ains.tasks.schemas import TaskSubmit

    now = work.now
    tick = cron.latest_tick(schedule.cron, schedule.timezone, now)
    if schedule.next_run_at is not None and tick < schedule.next_run_at:
        tick = schedule.next_run_at  # (the expression changed meanwhile: the tick that was due)
    task_id = None
    try:
        body = TaskSubmit.model_validate(schedule.task | {"idempotency_key": tick_key(schedule.schedule_id, tick)})
        principal = Principal(kind="client", id=schedule.client_id)
        task, _created = await submission.submit(work, principal, body)
        task_id = task.task_id
    except (AinsError, ValidationError) as exc:  # a quota or a body that no longer passes: skip this tick
        log.warning("schedule tick not submitted", extra={"schedule_id": schedule.schedule_id, "error": str(exc)})
    schedule.last_run_at = tick
    if task_id is not None:
        schedule.last_task_id = task_id
    schedule.next_run_at = cron.next_tick(schedule.cron, schedule.timezone, now)
    schedule.updated_at = now
    return task_id
