"""/health, /ready and /metrics (SPEC 11)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import func, select, text

from ains.agents.models import Agent
from ains.agents.schemas import REGISTERED_STATUSES, AgentStatus
from ains.auth.dependencies import Admin, admin_only, public
from ains.core.clock import utcnow
from ains.core.context import AppContext, get_context
from ains.core.metrics import scrape, stored_state
from ains.tasks.models import Task
from ains.tasks.schemas import TaskStatus
from ains.trust.levels import LEVELS, trust_level

router = APIRouter(tags=["operations"])
Ctx = Annotated[AppContext, Depends(get_context)]


@router.get("/health", dependencies=[public()])
async def health() -> dict[str, str]:
    """Public. The process is up."""
    return {"status": "ok"}


@router.get("/ready", responses={503: {"description": "A dependency is unreachable"}}, dependencies=[public()])
async def ready(ctx: Ctx) -> JSONResponse:
    """Public. The database (and Redis, if configured) answers within 2 s."""
    try:
        async with asyncio.timeout(2):
            async with ctx.db.read() as session:
                await session.execute(text("SELECT 1"))
    except Exception as exc:  # any failure to reach the database means not ready
        return JSONResponse({"status": "unavailable", "database": f"error: {type(exc).__name__}"}, status_code=503)
    if ctx.settings.redis_url and not await ctx.cache.ping():
        return JSONResponse({"status": "unavailable", "database": "ok", "redis": "unreachable"}, status_code=503)
    return JSONResponse({"status": "ready", "database": "ok"} | ({"redis": "ok"} if ctx.settings.redis_url else {}))


@router.get("/metrics", response_class=Response, dependencies=[admin_only()])
async def metrics(_admin: Admin, ctx: Ctx) -> Response:
    """Prometheus text. Admin key required."""
    async with ctx.db.read() as session:
        by_status = dict((await session.execute(select(Task.status, func.count()).group_by(Task.status))).all())
        depth = await session.scalar(
            select(func.count())
            .select_from(Task)
            .where(Task.status == TaskStatus.PENDING, Task.available_at <= utcnow())
        )
        agents = dict((await session.execute(select(Agent.status, func.count()).group_by(Agent.status))).all())
        scores = (
            await session.execute(
                select(Agent.agent_id, Agent.trust_score).where(Agent.status != AgentStatus.DEREGISTERED)
            )
        ).all()
    levels = dict.fromkeys((name for name, _ in LEVELS), 0)
    trust = []
    for agent_id, score in scores:
        level = trust_level(score)
        trust.append((agent_id, level, score))
        levels[level] += 1
    state = stored_state(
        {status: by_status.get(status, 0) for status in TaskStatus},
        depth or 0,
        {status: agents.get(status, 0) for status in REGISTERED_STATUSES},
        trust,
        levels,
    )
    return Response(scrape(state), media_type=CONTENT_TYPE_LATEST)
