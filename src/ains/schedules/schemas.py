"""Request and response bodies of the schedule endpoints (SPEC 17)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, StrictBool

from ains.core.schemas import ApiModel, ClientId, RequestModel, UTCTime

CronText = Annotated[str, Field(min_length=1, max_length=200)]
ZoneName = Annotated[str, Field(min_length=1, max_length=64)]


class ScheduleCreate(RequestModel):
    client_id: ClientId | None = Field(None, description="The caller's own id; the admin creates for anyone")
    name: Annotated[str, Field(min_length=1, max_length=200)]
    cron: CronText = Field(description="Five fields (minute hour day month weekday) or @hourly, @daily, …")
    timezone: ZoneName = "UTC"
    task: dict[str, Any] = Field(description="The task each tick submits: the body of POST /ains/tasks")
    active: StrictBool = True


class ScheduleUpdate(RequestModel):
    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    cron: CronText | None = None
    timezone: ZoneName | None = None
    task: dict[str, Any] | None = None
    active: StrictBool | None = None


class ScheduleOut(ApiModel):
    schedule_id: str
    client_id: str
    name: str
    cron: str
    timezone: str
    task: dict[str, Any]
    active: bool
    next_run_at: UTCTime | None
    last_run_at: UTCTime | None
    last_task_id: str | None
    created_at: UTCTime
    updated_at: UTCTime


class ScheduleList(ApiModel):
    schedules: list[ScheduleOut]
    next_cursor: str | None
