"""Agent endpoints (SPEC 2)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query, Request, Response, status

from ains.agents import service
from ains.agents.schemas import (
    AgentList,
    AgentOut,
    AgentPatch,
    AgentRegister,
    AgentRegistered,
    AgentToken,
    HeartbeatRequest,
    HeartbeatResponse,
    RegisteredStatusValue,
    TokenRequest,
)
from ains.auth.dependencies import CurrentPrincipal, agents_only, caller, public
from ains.core.context import AppContext, context_of, get_context

# The heartbeat, every agent's most frequent call, is declared first: routes are matched in order (see
# ains.tasks.router).
router = APIRouter(prefix="/ains/agents", tags=["agents"])
Ctx = Annotated[AppContext, Depends(get_context)]


@router.post("/{agent_id}/heartbeat", response_model=HeartbeatResponse, dependencies=[agents_only()])
async def heartbeat(
    agent_id: str, request: Request, body: Annotated[HeartbeatRequest | None, Body()] = None
) -> HeartbeatResponse:
    """Record that the agent is alive; with `wait_seconds`, answer early when one of its tasks is cancelled."""
    # A hot route: the caller and the context come from the request, as in ains.tasks.router.
    ctx, principal = context_of(request), caller(request)
    body = body or HeartbeatRequest()
    cancelled = await service.heartbeat_and_wait(
        ctx, principal, agent_id, body.status, wait_seconds=body.wait_seconds, request=request
    )
    return HeartbeatResponse(
        acknowledged=True, cancelled_task_ids=cancelled, next_heartbeat_in=ctx.settings.agent_stale_seconds / 3
    )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=AgentRegistered, dependencies=[public()])
async def register_agent(body: AgentRegister, ctx: Ctx) -> AgentRegistered:
    """Public. Register an agent with a signed request; the answer carries its API key, once."""
    async with ctx.work() as work:
        agent, secret = await service.register(work, body)
    return AgentRegistered(**AgentOut.model_validate(agent).model_dump(), api_key=secret)


@router.get("", response_model=AgentList, dependencies=[public()])
async def list_agents(
    ctx: Ctx,
    capability: str | None = None,
    status: RegisteredStatusValue | None = None,
    tag: str | None = None,
    min_trust: Annotated[float | None, Query(ge=0.0, le=1.0)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> AgentList:
    """Public. Registered agents, oldest first."""
    async with ctx.db.read() as session:
        rows, total = await service.list_agents(
            session, capability=capability, status=status, tag=tag, min_trust=min_trust, limit=limit, offset=offset
        )
    return AgentList(agents=[AgentOut.model_validate(a) for a in rows], total=total, limit=limit, offset=offset)


@router.get("/{agent_id}", response_model=AgentOut, dependencies=[public()])
async def get_agent(agent_id: str, ctx: Ctx) -> AgentOut:
    """Public. One agent, never its keys."""
    return await service.read_record(ctx, agent_id)


@router.post(
    "/{agent_id}/token", status_code=status.HTTP_201_CREATED, response_model=AgentToken, dependencies=[public()]
)
async def reissue_token(agent_id: str, body: TokenRequest, ctx: Ctx) -> AgentToken:
    """Public. A new agent key for a fresh signature; the agent's earlier keys stop working."""
    async with ctx.work() as work:
        key, secret = await service.reissue_key(work, agent_id, body.timestamp, body.signature)
    return AgentToken(agent_id=agent_id, key_id=key.key_id, api_key=secret, created_at=key.created_at)


@router.patch("/{agent_id}", response_model=AgentOut, dependencies=[agents_only()])
async def update_agent(agent_id: str, body: AgentPatch, principal: CurrentPrincipal, ctx: Ctx) -> AgentOut:
    async with ctx.work() as work:
        agent = await service.update_profile(work, principal, agent_id, body)
    return AgentOut.model_validate(agent)


@router.delete(
    "/{agent_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response, dependencies=[agents_only()]
)
async def deregister_agent(agent_id: str, principal: CurrentPrincipal, ctx: Ctx) -> Response:
    async with ctx.work() as work:
        await service.deregister(work, principal, agent_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
