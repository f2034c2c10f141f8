"""Agent business rules: signed registration, key re-issue, profile, heartbeats, deregistration."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request

from ains.agents import queries
from ains.agents.models import Agent
from ains.agents.schemas import AgentOut, AgentPatch, AgentRegister, AgentStatus
from ains.audit import service as audit
from ains.auth import registration
from ains.auth import service as keys
from ains.auth.models import ApiKey
from ains.auth.signatures import registration_message, token_message, verify_signed
from ains.core.cache import AGENT as AGENT_CACHE
from ains.core.cache import read_through
from ains.core.context import AppContext
from ains.core.database import json_array_contains, note_changed_key
from ains.core.errors import Conflict, Forbidden, NotFound, Unprocessable
from ains.core.long_poll import LongPoll
from ains.core.principal import Principal
from ains.core.work import Work
from ains.tasks import service as tasks

INITIAL_TRUST = 0.5


async def register(work: Work, body: AgentRegister) -> tuple[Agent, str]:
    session, now = work.session, work.now
    await verify_signed(
        work,
        public_key_hex=body.public_key,
        message=registration_message(body.agent_id, body.public_key, body.timestamp),
        signature_hex=body.signature,
        timestamp=body.timestamp,
    )
    await registration.consume(work, body.registration_token, body.agent_id)
    public_key = body.public_key.lower()
    clash = await session.scalar(
        select(Agent).where(or_(Agent.agent_id == body.agent_id, Agent.public_key == public_key))
    )
    if clash is not None:
        which = "agent_id" if clash.agent_id == body.agent_id else "public_key"
        raise Conflict(f"An agent with this {which} is already registered")
    client_key = await session.scalar(
        select(ApiKey.key_id).where(ApiKey.kind == "client", ApiKey.principal_id == body.agent_id).limit(1)
    )
    if client_key is not None:
        raise Conflict("agent_id is already used as a client_id")

    agent = Agent(
        agent_id=body.agent_id,
        display_name=body.display_name,
        public_key=public_key,
        endpoint=body.endpoint,
        capabilities=sorted(set(body.capabilities)),
        tags=sorted(set(body.tags)),
        max_concurrency=body.max_concurrency,
        status=AgentStatus.AVAILABLE,
        trust_score=INITIAL_TRUST,
        last_heartbeat_at=now,
        created_at=now,
        updated_at=now,
    )
    session.add(agent)
    await session.flush()
    _key, secret = await keys.issue_agent_key(work, agent.agent_id, replace=False)
    return agent, secret


async def reissue_key(work: Work, agent_id: str, timestamp: str, signature: str) -> tuple[Any, str]:
    agent = await work.session.get(Agent, agent_id)
    if agent is None or agent.status == AgentStatus.DEREGISTERED:
        raise NotFound(f"Agent {agent_id} not found")
    await verify_signed(
        work,
        public_key_hex=agent.public_key,
        message=token_message(agent_id, timestamp),
        signature_hex=signature,
        timestamp=timestamp,
    )
    return await keys.issue_agent_key(work, agent_id, replace=True)


async def get(session: AsyncSession, agent_id: str, *, for_update: bool = False) -> Agent:
    query = select(Agent).where(Agent.agent_id == agent_id)
    if for_update:
        query = query.with_for_update()
    agent = await session.scalar(query)
    if agent is None or agent.status == AgentStatus.DEREGISTERED:
        raise NotFound(f"Agent {agent_id} not found")
    return agent


def require_self_or_admin(principal: Principal, agent_id: str) -> None:
    if not (principal.is_admin or principal.is_agent(agent_id)):
        raise Forbidden("Only the agent itself or an admin may do this")


def require_self(principal: Principal, agent_id: str) -> None:
    if not principal.is_agent(agent_id):
        raise Forbidden("Only the agent itself may do this")


async def list_agents(
    session: AsyncSession,
    *,
    capability: str | None,
    status: str | None,
    tag: str | None,
    min_trust: float | None,
    limit: int,
    offset: int,
) -> tuple[list[Agent], int]:
    conditions: list[Any] = [Agent.status != AgentStatus.DEREGISTERED]
    if capability:
        conditions.append(json_array_contains(session, Agent.capabilities, capability))
    if tag:
        conditions.append(json_array_contains(session, Agent.tags, tag))
    if status:
        conditions.append(Agent.status == status)
    if min_trust is not None:
        conditions.append(Agent.trust_score >= min_trust)
    total = await session.scalar(select(func.count()).select_from(Agent).where(*conditions)) or 0
    rows = await session.scalars(
        select(Agent).where(*conditions).order_by(Agent.created_at, Agent.agent_id).limit(limit).offset(offset)
    )
    return list(rows), total


async def update_profile(work: Work, principal: Principal, agent_id: str, patch: AgentPatch) -> Agent:
    require_self_or_admin(principal, agent_id)
    session = work.session
    agent = await get(session, agent_id, for_update=True)
    changes = patch.model_dump(exclude_unset=True)
    for field in ("capabilities", "tags", "max_concurrency"):
        if field in changes and changes[field] is None:
            raise Unprocessable(field, f"{field} may not be null")
    for field in ("capabilities", "tags"):
        if field in changes:
            changes[field] = sorted(set(changes[field]))
    for field, value in changes.items():
        setattr(agent, field, value)
    agent.updated_at = work.now
    if principal.is_admin:
        audit.record(work, principal, "agent.update", "agent", agent_id, {"fields": sorted(changes)})
    return agent


async def heartbeat(work: Work, principal: Principal, agent_id: str, status: str | None) -> list[str]:
    """Record that the agent is alive; answer the ids of its tasks that were cancelled (SPEC 7)."""
    require_self(principal, agent_id)
    params = {"now": work.now, "status": status, "agent_id": agent_id}
    if (await work.session.execute(queries.HEARTBEAT, params)).first() is None:
        raise NotFound(f"Agent {agent_id} not found")
    note_changed_key(work.session, AGENT_CACHE, agent_id)
    return await tasks.take_cancelled_for_agent(work, agent_id)


async def heartbeat_and_wait(
    ctx: AppContext,
    principal: Principal,
    agent_id: str,
    status: str | None,
    *,
    wait_seconds: float,
    request: Request | None = None,
) -> list[str]:
    """A heartbeat; with `wait_seconds`, held open until one of the agent's tasks is cancelled (SPEC 14).

    The wait subscribes before the first look, so a cancellation committed while the heartbeat itself runs
    wakes it; it looks again every `wakeup_fallback_seconds` in case a wake-up from another process was lost,
    and ends early when the server stops or the agent hangs up.
    """
    signals = ctx.signals
    with signals.subscribe_cancels(agent_id) as cancelled_event:
        # Plain SQL throughout: a lean transaction on PostgreSQL (see ains.agents.queries).
        cancelled = await ctx.run(lambda work: heartbeat(work, principal, agent_id, status), lean=True)
        async with LongPoll(signals.stopping, wait_seconds, request) as poll:
            while not cancelled and not poll.over:
                await poll.wait(cancelled_event, ctx.settings.wakeup_fallback_seconds)
                if poll.caller_gone:
                    break  # nobody to tell: what was cancelled stays to be told by the next heartbeat
                cancelled_event.clear()
                cancelled = await ctx.run(lambda work: tasks.take_cancelled_for_agent(work, agent_id), lean=True)
    return cancelled


async def deregister(work: Work, principal: Principal, agent_id: str) -> None:
    require_self_or_admin(principal, agent_id)
    agent = await get(work.session, agent_id, for_update=True)
    released = await tasks.release_agent_tasks(work, agent_id)
    agent.status = AgentStatus.DEREGISTERED
    agent.updated_at = work.now
    await keys.revoke_agent_keys(work, agent_id)
    audit.record(work, principal, "agent.deregister", "agent", agent_id, {"released_tasks": released})


async def read_record(ctx: AppContext, agent_id: str) -> AgentOut:
    """The public agent record, from the cache when it can (SPEC 10); a read transaction only when it cannot."""

    async def load() -> AgentOut:
        async with ctx.db.read() as session:
            return AgentOut.model_validate(await get(session, agent_id))

    return await read_through(ctx.cache, AGENT_CACHE, agent_id, AgentOut, load)
