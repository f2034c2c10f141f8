"""Claiming: hand an agent up to `max_tasks` eligible tasks, exclusively, optionally waiting for them.

One transaction per try. The agent row is locked first (FOR UPDATE on
PostgreSQL; SQLite serialises all writers), which serialises one agent's claims
so its free concurrency cannot be raced. Candidate tasks are then picked in
queue order with `FOR UPDATE SKIP LOCKED`, so concurrent claimers on
PostgreSQL never wait on, or take, the same row.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from ains.agents.models import Agent
from ains.core.clock import utcnow
from ains.core.config import Settings
from ains.core.database import Database
from ains.core.errors import NotFound
from ains.core.metrics import CLAIMED_TASKS
from ains.tasks import lifecycle
from ains.tasks.models import Task


async def claim_once(
    session: AsyncSession,
    agent_id: str,
    max_tasks: int,
    *,
    start: bool,
    settings: Settings,
    signals: Any = None,
) -> tuple[list[Task], list[str]]:
    """One claim try inside the caller's transaction. Returns the tasks and the agent's capabilities."""
    agent = await session.scalar(select(Agent).where(Agent.agent_id == agent_id).with_for_update())
    if agent is None or agent.status == "DEREGISTERED":
        raise NotFound(f"Agent {agent_id} not found")
    # Read the clock only once the agent is locked, so assignment times follow the order of claims.
    now = utcnow()
    # A claim counts as a heartbeat.
    agent.last_heartbeat_at = now
    if agent.status == "INACTIVE":
        agent.status = "AVAILABLE"

    in_flight = await session.scalar(
        select(func.count())
        .select_from(Task)
        .where(Task.assigned_agent_id == agent_id, Task.status.in_(lifecycle.HELD_STATUSES))
    )
    wanted = min(max_tasks, agent.max_concurrency - (in_flight or 0))
    capabilities = list(agent.capabilities)
    if wanted <= 0 or not capabilities:
        return [], capabilities

    candidates = (
        select(Task)
        .where(
            Task.status == lifecycle.PENDING,
            Task.capability_required.in_(capabilities),
            Task.available_at <= now,
            or_(Task.min_trust_score.is_(None), Task.min_trust_score <= agent.trust_score),
        )
        .order_by(Task.queue_position, Task.task_id)
        .limit(wanted)
        .with_for_update(skip_locked=True)
    )
    tasks = list(await session.scalars(candidates))
    for task in tasks:
        await lifecycle.move(
            session, task, lifecycle.ASSIGNED, now=now, settings=settings, signals=signals, agent_id=agent_id
        )
        if start:
            await lifecycle.move(session, task, lifecycle.ACTIVE, now=now, settings=settings, signals=signals)
    return tasks, capabilities


async def claim(
    db: Database,
    signals: Any,
    agent_id: str,
    *,
    max_tasks: int,
    wait_seconds: float,
    start: bool,
    settings: Settings,
) -> list[Task]:
    """Claim now; with `wait_seconds`, park until a task for one of the agent's capabilities arrives."""
    deadline = time.monotonic() + wait_seconds

    async def attempt() -> tuple[list[Task], list[str]]:
        async with db.transaction() as session:
            return await claim_once(session, agent_id, max_tasks, start=start, settings=settings, signals=signals)

    tasks, capabilities = await attempt()
    if not tasks and wait_seconds > 0:
        with signals.subscribe(capabilities) as woken:
            while True:
                # Subscribed and cleared before each try, so a task arriving during it wakes the wait below.
                woken.clear()
                tasks, capabilities = await attempt()
                remaining = deadline - time.monotonic()
                if tasks or remaining <= 0:
                    break
                # Another process, or a retry delay ending, wakes nobody here: look again now and then.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), timeout=min(remaining, settings.long_poll_recheck_seconds))
    CLAIMED_TASKS.inc(len(tasks))
    return tasks
