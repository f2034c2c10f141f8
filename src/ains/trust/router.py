"""Trust endpoints (SPEC 8). The leaderboard route is registered before `/ains/agents/{agent_id}`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from ains.auth.dependencies import Admin, CurrentPrincipal, admin_only, any_key, public
from ains.core.context import AppContext, get_context
from ains.core.pagination import decode_position, split_page
from ains.trust import service
from ains.trust.levels import trust_level
from ains.trust.schemas import (
    ChainVerification,
    Leaderboard,
    LeaderboardEntry,
    TrustAdjust,
    TrustAdjusted,
    TrustHistory,
    TrustMetrics,
    TrustRecordOut,
    TrustSummary,
)

router = APIRouter(prefix="/ains/agents", tags=["trust"])
Ctx = Annotated[AppContext, Depends(get_context)]


@router.get("/leaderboard", response_model=Leaderboard, dependencies=[public()])
async def leaderboard(
    ctx: Ctx,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    min_tasks: Annotated[int, Query(ge=0, le=1_000_000_000, description="Least completed + failed attempts")] = 0,
) -> Leaderboard:
    """Public. Highest trust first; ties go to more completed tasks."""
    async with ctx.db.read() as session:
        rows = await service.leaderboard(session, limit=limit, min_tasks=min_tasks)
    return Leaderboard(
        leaderboard=[
            LeaderboardEntry(
                agent_id=a.agent_id,
                display_name=a.display_name,
                trust_score=a.trust_score,
                trust_level=trust_level(a.trust_score),
                total_tasks_completed=a.total_tasks_completed,
                success_rate=service.metrics(a)["success_rate"],
            )
            for a in rows
        ]
    )


@router.get("/{agent_id}/trust", response_model=TrustSummary, dependencies=[public()])
async def trust_summary(agent_id: str, ctx: Ctx) -> TrustSummary:
    """Public. Score, level and the agent's task metrics."""
    async with ctx.db.read() as session:
        agent = await service.registered_agent(session, agent_id)
    return TrustSummary(
        agent_id=agent.agent_id,
        trust_score=agent.trust_score,
        trust_level=trust_level(agent.trust_score),
        metrics=TrustMetrics(**service.metrics(agent)),
    )


@router.get("/{agent_id}/trust/history", response_model=TrustHistory, dependencies=[public()])
async def trust_history(
    agent_id: str,
    ctx: Ctx,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> TrustHistory:
    """Public. Trust records, newest first."""
    before_seq = decode_position(cursor)
    async with ctx.db.read() as session:
        await service.registered_agent(session, agent_id)
        rows = await service.history(session, agent_id, limit=limit + 1, before_seq=before_seq)
    page, next_cursor = split_page(rows, limit, lambda record: (record.seq,))
    return TrustHistory(
        agent_id=agent_id, records=[TrustRecordOut.model_validate(r) for r in page], next_cursor=next_cursor
    )


@router.get("/{agent_id}/trust/verify", response_model=ChainVerification, dependencies=[any_key()])
async def verify_trust_chain(agent_id: str, _principal: CurrentPrincipal, ctx: Ctx) -> ChainVerification:
    """Recompute the agent's trust hash chain: any record edited, deleted or inserted outside AINS shows."""
    async with ctx.db.read() as session:
        agent = await service.registered_agent(session, agent_id)
        check = await service.verify(session, agent)
    return ChainVerification(
        valid=check.valid, records_checked=check.records_checked, first_bad_record_id=check.first_bad_record_id
    )


@router.post("/{agent_id}/trust/adjust", response_model=TrustAdjusted, dependencies=[admin_only()])
async def adjust_trust(agent_id: str, body: TrustAdjust, admin: Admin, ctx: Ctx) -> TrustAdjusted:
    """Admin. Move the score by `delta` (clamped to [0, 1]); recorded and audited."""
    async with ctx.work() as work:
        agent, record = await service.adjust(work, admin, agent_id, float(body.delta), body.reason)
    return TrustAdjusted(
        agent_id=agent.agent_id,
        trust_score=agent.trust_score,
        trust_level=trust_level(agent.trust_score),
        record=TrustRecordOut.model_validate(record),
    )
