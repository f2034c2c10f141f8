"""Schedule endpoints (SPEC 17)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from ains.auth.dependencies import CurrentPrincipal, requires
from ains.core.context import AppContext, get_context
from ains.schedules import service
from ains.schedules.schemas import ScheduleCreate, ScheduleList, ScheduleOut, ScheduleUpdate

router = APIRouter(tags=["schedules"])
Ctx = Annotated[AppContext, Depends(get_context)]


@router.post(
    "/ains/schedules",
    status_code=status.HTTP_201_CREATED,
    response_model=ScheduleOut,
    dependencies=[requires("schedules:write")],
)
async def create_schedule(body: ScheduleCreate, principal: CurrentPrincipal, ctx: Ctx) -> ScheduleOut:
    """A task submitted on every tick of `cron` in `timezone`; a bad expression or zone is 422."""
    async with ctx.work() as work:
        schedule = await service.create(work, principal, body)
    return ScheduleOut.model_validate(schedule)


@router.get("/ains/schedules", response_model=ScheduleList, dependencies=[requires("schedules:read")])
async def list_schedules(
    principal: CurrentPrincipal,
    ctx: Ctx,
    client_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> ScheduleList:
    """Newest first: the caller's own schedules (the admin: all, or one client's with `client_id`)."""
    async with ctx.db.read() as session:
        rows, next_cursor = await service.list_schedules(
            session, principal, client_id=client_id, limit=limit, cursor=cursor
        )
    return ScheduleList(schedules=[ScheduleOut.model_validate(row) for row in rows], next_cursor=next_cursor)


@router.get("/ains/schedules/{schedule_id}", response_model=ScheduleOut, dependencies=[requires("schedules:read")])
async def get_schedule(schedule_id: str, principal: CurrentPrincipal, ctx: Ctx) -> ScheduleOut:
    async with ctx.db.read() as session:
        schedule = await service.get(session, principal, schedule_id)
    return ScheduleOut.model_validate(schedule)


@router.patch("/ains/schedules/{schedule_id}", response_model=ScheduleOut, dependencies=[requires("schedules:write")])
async def update_schedule(schedule_id: str, body: ScheduleUpdate, principal: CurrentPrincipal, ctx: Ctx) -> ScheduleOut:
    """Change the name, expression, zone or task, or pause (`active: false`) and resume it."""
    async with ctx.work() as work:
        schedule = await service.update(work, principal, schedule_id, body)
    return ScheduleOut.model_validate(schedule)


@router.delete(
    "/ains/schedules/{schedule_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    dependencies=[requires("schedules:write")],
)
async def delete_schedule(schedule_id: str, principal: CurrentPrincipal, ctx: Ctx) -> Response:
    async with ctx.db.transaction() as session:
        await service.delete(session, principal, schedule_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
