"""Agent duty: an agent silent for agent_stale_seconds becomes INACTIVE and loses its tasks (SPEC 2).

Its ASSIGNED tasks go back to PENDING without using a retry; its ACTIVE tasks
fail that attempt with `agent lost` and follow the retry rules.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import func, select

from ains.agents.models import Agent
from ains.agents.schemas import LIVE_STATUSES, AgentStatus
from ains.background.duty import Duty, PassResult
from ains.core.clock import utcnow
from ains.core.context import AppContext
from ains.core.metrics import AGENTS_LOST
from ains.tasks import lifecycle
from ains.tasks.reads import held_tasks
from ains.tasks.schemas import TaskStatus
from ains.tasks.service import fail_attempt

log = logging.getLogger("ains.agents")

AGENT_BATCH = 100
AGENT_LOST = "agent lost"


async def _oldest_heartbeat(ctx: AppContext) -> datetime | None:
    async with ctx.db.read() as session:
        value = await session.scalar(select(func.min(Agent.last_heartbeat_at)).where(Agent.status.in_(LIVE_STATUSES)))
    return value


async def mark_stale_agents(ctx: AppContext) -> PassResult:
    settings = ctx.settings
    stale_after = timedelta(seconds=settings.agent_stale_seconds)
    now = utcnow()
    oldest = await _oldest_heartbeat(ctx)
    if oldest is None or oldest + stale_after > now:
        return PassResult(0, oldest + stale_after if oldest else None)
    async with ctx.work(now) as work:
        session = work.session
        agents = list(
            await session.scalars(
                select(Agent)
                .where(Agent.status.in_(LIVE_STATUSES), Agent.last_heartbeat_at <= now - stale_after)
                .order_by(Agent.last_heartbeat_at)
                .limit(AGENT_BATCH)
                .with_for_update(skip_locked=True)
            )
        )
        for agent in agents:
            agent.status = AgentStatus.INACTIVE
            agent.updated_at = now
            for task in await held_tasks(session, agent.agent_id):
                if task.status == TaskStatus.ASSIGNED:
                    await lifecycle.requeue(work, task, outcome=lifecycle.OUTCOME_AGENT_LOST, error=AGENT_LOST)
                else:
                    await fail_attempt(work, task, AGENT_LOST, retryable=True, outcome=lifecycle.OUTCOME_AGENT_LOST)
        lost = [agent.agent_id for agent in agents]

        def report() -> None:
            AGENTS_LOST.inc(len(lost))
            for agent_id in lost:
                log.warning("agent lost", extra={"agent_id": agent_id})

        work.after_commit(report)
    oldest = await _oldest_heartbeat(ctx)
    return PassResult(len(agents), oldest + stale_after if oldest else None)


STALE_AGENTS = Duty("stale_agents", mark_stale_agents, lambda ctx: ctx.settings.timeout_check_seconds)
