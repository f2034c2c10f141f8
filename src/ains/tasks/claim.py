"""Claiming: hand an agent up to `max_tasks` eligible tasks, exclusively, optionally waiting for them.

One transaction per try (on PostgreSQL a lean one, on the driver's connection: every statement of a claim is
plain SQL; see `Database.transaction`). The agent row is locked first (by the claim's
heartbeat, an UPDATE, on PostgreSQL; SQLite serialises all writers), which
serialises one agent's claims so its free concurrency cannot be raced. On
PostgreSQL one statement then picks the tasks in queue order with `FOR UPDATE SKIP LOCKED` (concurrent claimers
never wait on, or take, the same row) and assigns them, returning the rows; the
attempt rows and events follow in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select
from starlette.requests import Request

from ains.agents.models import Agent
from ains.agents.schemas import AgentStatus
from ains.core.cache import AGENT as AGENT_CACHE
from ains.core.cache import TASK as TASK_CACHE
from ains.core.clock import utcnow
from ains.core.context import AppContext
from ains.core.database import dialect_name, note_changed_key
from ains.core.errors import NotFound
from ains.core.long_poll import LongPoll
from ains.core.metrics import CLAIMED_TASKS
from ains.core.work import Work
from ains.tasks import lifecycle, queries
from ains.tasks.models import Task
from ains.tasks.schemas import HELD_STATUSES, TaskStatus
from ains.trust.levels import claim_limits


@dataclass
class ClaimTry:
    tasks: list[Any]  # Task objects (SQLite) or rows with the task's attribute names (PostgreSQL)
    capabilities: list[str]
    trust_score: float
    limited_reason: str | None  # set when the agent's trust level blocked or narrowed the claim


async def claim_once(work: Work, agent_id: str, max_tasks: int, *, start: bool) -> ClaimTry:
    """One claim try inside the caller's transaction."""
    session = work.session
    if dialect_name(session) == "postgresql":
        return await _claim_once_postgres(work, agent_id, max_tasks, start=start)
    agent = await session.scalar(select(Agent).where(Agent.agent_id == agent_id).with_for_update())
    if agent is None or agent.status == AgentStatus.DEREGISTERED:
        raise NotFound(f"Agent {agent_id} not found")
    # Read the clock only once the agent is locked, so assignment times follow the order of claims.
    work = work.at(utcnow())
    now = work.now
    # A claim counts as a heartbeat.
    agent.last_heartbeat_at = now
    if agent.status == AgentStatus.INACTIVE:
        agent.status = AgentStatus.AVAILABLE
    capabilities = list(agent.capabilities)
    limits = claim_limits(agent.trust_score)
    result = ClaimTry([], capabilities, agent.trust_score, limits.describe(agent.trust_score))
    if limits.blocked:
        return result

    in_flight = await session.scalar(
        select(func.count()).select_from(Task).where(Task.assigned_agent_id == agent_id, Task.status.in_(HELD_STATUSES))
    )
    free = agent.max_concurrency if limits.max_in_flight is None else min(agent.max_concurrency, limits.max_in_flight)
    wanted = min(max_tasks, free - (in_flight or 0))
    if wanted <= 0 or not capabilities:
        return result

    conditions = [
        Task.status == TaskStatus.PENDING,
        Task.capability_required.in_(capabilities),
        Task.available_at <= now,
        or_(Task.min_trust_score.is_(None), Task.min_trust_score <= agent.trust_score),
    ]
    if limits.max_priority is not None:
        conditions.append(Task.priority <= limits.max_priority)
    # SQLite: BEGIN IMMEDIATE already made this transaction the only writer.
    candidates = select(Task).where(*conditions).order_by(Task.queue_position, Task.task_id).limit(wanted)
    result.tasks = list(await session.scalars(candidates))
    for task in result.tasks:
        await lifecycle.assign(work, task, agent_id)
        if start:
            await lifecycle.start(work, task)
    return result


async def _claim_once_postgres(work: Work, agent_id: str, max_tasks: int, *, start: bool) -> ClaimTry:
    session = work.session
    # A claim counts as a heartbeat; recording it locks the agent (a deregistered one: NotFound rolls it back).
    heartbeat = {"now": utcnow(), "agent_id": agent_id}
    agent = (await session.execute(queries.CLAIM_LOCK_AGENT, heartbeat)).first()
    if agent is None or agent.status == AgentStatus.DEREGISTERED:
        raise NotFound(f"Agent {agent_id} not found")
    note_changed_key(session, AGENT_CACHE, agent_id)
    # Read the clock again once the agent is locked, so assignment times follow the order of claims.
    work = work.at(utcnow())
    capabilities = list(agent.capabilities)
    limits = claim_limits(agent.trust_score)
    result = ClaimTry([], capabilities, agent.trust_score, limits.describe(agent.trust_score))
    if limits.blocked:
        return result
    free = agent.max_concurrency if limits.max_in_flight is None else min(agent.max_concurrency, limits.max_in_flight)
    max_tasks = min(max_tasks, free)
    if max_tasks <= 0 or not capabilities:
        return result
    result.tasks = await _pick_and_assign(
        work, agent_id, capabilities, agent.trust_score, limits.max_priority, max_tasks, free, start
    )
    await lifecycle.after_claim(work, result.tasks, start=start)
    return result


async def _pick_and_assign(
    work: Work,
    agent_id: str,
    capabilities: list[str],
    trust_score: float,
    max_priority: int | None,
    max_tasks: int,
    free: int,
    start: bool,
) -> list[Any]:
    """PostgreSQL: pick the first claimable tasks, up to `max_tasks` and `free` less what the agent holds, and
    assign them in one statement (`queries.CLAIM_PICK_AND_ASSIGN`), as rows with the task's attribute names (no
    ORM objects)."""
    session = work.session
    params = {
        "capabilities": capabilities,
        "now": work.now,
        "trust_score": trust_score,
        "max_priority": max_priority if max_priority is not None else 10,
        "max_tasks": max_tasks,
        "free": free,
        "agent_id": agent_id,
        **lifecycle.claim_columns(work.now, work.settings, start=start),
    }
    tasks = list(await session.execute(queries.CLAIM_PICK_AND_ASSIGN, params))
    for task in tasks:
        note_changed_key(session, TASK_CACHE, task.task_id)
    if len(capabilities) > 1 and tasks and len(tasks) == tasks[0].claim_budget:
        # It took all it could: more heads than taken may have been locked and left, and a claimer that skipped
        # one looks again after this commit instead of waiting for its fallback poll. (Taking fewer, it took
        # every head it locked.)
        for capability in capabilities:
            work.announce_task(capability)
    return sorted(tasks, key=lambda task: (task.queue_position, task.task_id))


async def claim(
    ctx: AppContext, agent_id: str, *, max_tasks: int, wait_seconds: float, start: bool, request: Request | None = None
) -> ClaimTry:
    """Claim now; with `wait_seconds`, park until a task for one of the agent's capabilities arrives.

    Waiting claims are woken one at a time, highest trust score first (SPEC 8); one
    that wakes and finds nothing it may take passes the wake-up on to the next. The
    wait ends early when the server stops, and without claiming when the agent hangs up.
    """

    signals = ctx.signals

    async def attempt() -> ClaimTry:
        # Every statement of a claim on PostgreSQL is plain SQL: its transaction needs no SQLAlchemy session.
        return await ctx.run(lambda work: claim_once(work, agent_id, max_tasks, start=start), lean=True)

    result = await attempt()
    blocked = claim_limits(result.trust_score).blocked
    if not result.tasks and wait_seconds > 0 and not blocked:
        async with LongPoll(signals.stopping, wait_seconds, request) as poll:
            with signals.subscribe(result.capabilities, rank=result.trust_score) as woken:
                while not poll.caller_gone:  # tasks claimed for an agent that hung up would wait out their lease
                    was_woken = woken.is_set()
                    # Subscribed and cleared before each try, so a task arriving during it wakes the wait below.
                    woken.clear()
                    result = await attempt()
                    if result.tasks or poll.over:
                        break
                    if was_woken:
                        signals.pass_on(result.capabilities, passer=woken)
                    # Another process, or a retry delay ending, wakes nobody here: look again now and then.
                    await poll.wait(woken, ctx.settings.wakeup_fallback_seconds)
                if woken.is_set():
                    signals.pass_on(result.capabilities, passer=woken)
    CLAIMED_TASKS.inc(len(result.tasks))
    return result
