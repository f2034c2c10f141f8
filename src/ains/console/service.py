"""What the console's pages read. Read-only queries over the other domains' tables; every action the console
takes goes through those domains' own services (ains.console.router)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from ains.agents.models import Agent
from ains.agents.schemas import AgentStatus
from ains.audit.models import AuditLog
from ains.auth import service as auth
from ains.auth.models import ApiKey
from ains.core.principal import Principal
from ains.core.work import Work
from ains.tasks import lifecycle, reads
from ains.tasks.models import Task, TaskAttempt
from ains.tasks.schemas import HELD_STATUSES, TaskStatus
from ains.trust import service as trust
from ains.trust.levels import trust_level
from ains.trust.models import TrustRecord
from ains.webhooks.models import TaskEvent, Webhook, WebhookDelivery

BUCKETS = 12  # the overview's last hour, in 5-minute bars
BUCKET_SECONDS = 300


def webhook_scope(principal: Principal) -> Any:
    """The webhooks a console user sees: all for the admin, a client's own otherwise."""
    if principal.is_admin:
        return True
    return and_(Webhook.owner_kind == principal.kind, Webhook.owner_id == principal.id)


async def stamp(session: AsyncSession, principal: Principal) -> str:
    """A short fingerprint of what the console shows this user; it changes when a page would."""
    task_row = (
        await session.execute(
            select(func.count(), func.max(Task.updated_at)).select_from(Task).where(reads.visible_to(principal))
        )
    ).one()
    agent_row = (await session.execute(select(func.count(), func.max(Agent.updated_at)).select_from(Agent))).one()
    delivery_row = (
        await session.execute(
            select(func.count(), func.max(WebhookDelivery.updated_at))
            .select_from(WebhookDelivery)
            .join(Webhook, Webhook.webhook_id == WebhookDelivery.webhook_id)
            .where(webhook_scope(principal))
        )
    ).one()
    trust_count = await session.scalar(select(func.count()).select_from(TrustRecord))
    parts = [*task_row, *agent_row, *delivery_row, trust_count]
    if principal.is_admin:  # the keys page is the admin's: a key created, rotated or revoked changes it
        key_row = (
            await session.execute(
                select(func.count(), func.max(ApiKey.created_at), func.max(ApiKey.revoked_at)).select_from(ApiKey)
            )
        ).one()
        parts += [*key_row]
    return "|".join(str(part.isoformat() if isinstance(part, datetime) else part) for part in parts)


@dataclass
class Overview:
    metrics: dict[str, Any]
    depth_by_capability: list[tuple[str, int]]
    status_counts: dict[str, int]
    buckets: list[dict[str, Any]]
    agents_by_status: dict[str, int]
    bucket_max: int = field(default=0)


async def overview(work: Work, principal: Principal) -> Overview:
    session, now = work.session, work.now
    scope = reads.visible_to(principal) if not principal.is_admin else true()
    metrics = await reads.queue_metrics(work, principal)
    capability_rows = await session.execute(
        select(Task.capability_required, func.count())
        .where(Task.status == TaskStatus.PENDING, scope)
        .group_by(Task.capability_required)
        .order_by(func.count().desc(), Task.capability_required)
        .limit(20)
    )
    status_rows = await session.execute(select(Task.status, func.count()).where(scope).group_by(Task.status))
    # Throughput and failures in 5-minute bars over the last hour, from the attempts that ended then (a failed
    # attempt that is retried counts as a failure too), in one scan: a CASE per bar and outcome.
    start = now - timedelta(seconds=BUCKETS * BUCKET_SECONDS)
    failed_outcomes = [
        lifecycle.OUTCOME_FAILED,
        lifecycle.OUTCOME_TIMEOUT,
        lifecycle.OUTCOME_AGENT_LOST,
        lifecycle.OUTCOME_LEASE_EXPIRED,
    ]
    columns = []
    for index in range(BUCKETS):
        low = start + timedelta(seconds=index * BUCKET_SECONDS)
        high = low + timedelta(seconds=BUCKET_SECONDS)
        in_bar = and_(TaskAttempt.finished_at >= low, TaskAttempt.finished_at < high)
        for outcome in (TaskAttempt.outcome == lifecycle.OUTCOME_COMPLETED, TaskAttempt.outcome.in_(failed_outcomes)):
            columns.append(func.coalesce(func.sum(case((and_(in_bar, outcome), 1), else_=0)), 0))
    attempts_query = select(*columns).select_from(TaskAttempt).where(TaskAttempt.finished_at >= start)
    if not principal.is_admin:
        attempts_query = attempts_query.join(Task, Task.task_id == TaskAttempt.task_id).where(scope)
    counts = (await session.execute(attempts_query)).one()
    buckets: list[dict[str, Any]] = []
    for index in range(BUCKETS):
        buckets.append(
            {
                "start": start + timedelta(seconds=index * BUCKET_SECONDS),
                "completed": int(counts[2 * index]),
                "failed": int(counts[2 * index + 1]),
            }
        )
    agent_rows = await session.execute(
        select(Agent.status, func.count()).where(Agent.status != AgentStatus.DEREGISTERED).group_by(Agent.status)
    )
    return Overview(
        metrics=metrics,
        depth_by_capability=[(capability, count) for capability, count in capability_rows],
        status_counts={status: count for status, count in status_rows},
        buckets=buckets,
        agents_by_status={status: count for status, count in agent_rows},
        bucket_max=max([b["completed"] + b["failed"] for b in buckets] + [0]),
    )


@dataclass
class TimelineEntry:
    at: datetime
    what: str
    detail: str = ""
    kind: str = "info"


async def task_detail(
    session: AsyncSession, principal: Principal, task_id: str
) -> tuple[Task, list[TaskAttempt], list[TimelineEntry]]:
    """A task its viewer may see (404 otherwise), its attempts, and its events oldest first."""
    task = await reads.get_visible(session, principal, task_id)
    attempts = await reads.attempts(session, task)
    events: list[TimelineEntry] = [TimelineEntry(task.created_at, "submitted", f"by {task.client_id}")]
    for attempt in attempts:
        events.append(TimelineEntry(attempt.assigned_at, f"attempt {attempt.attempt} assigned", attempt.agent_id))
        if attempt.started_at:
            events.append(TimelineEntry(attempt.started_at, f"attempt {attempt.attempt} started", attempt.agent_id))
        if attempt.finished_at:
            kind = "good" if attempt.outcome == lifecycle.OUTCOME_COMPLETED else "bad"
            events.append(
                TimelineEntry(
                    attempt.finished_at,
                    f"attempt {attempt.attempt} {attempt.outcome or 'finished'}",
                    attempt.error or "",
                    kind,
                )
            )
    if task.cancelled_at:
        events.append(
            TimelineEntry(task.cancelled_at, "cancelled", f"by {task.cancelled_by}: {task.cancellation_reason}", "bad")
        )
    audits = await session.scalars(
        select(AuditLog)
        .where(AuditLog.target_type == "task", AuditLog.target_id == task_id)
        .order_by(AuditLog.id)
        .limit(100)
    )
    for entry in audits:
        if entry.action == "task.cancel":
            continue  # already shown from the task itself
        events.append(TimelineEntry(entry.created_at, entry.action, f"by {entry.actor}: {entry.details}"))
    sent = await session.scalars(
        select(TaskEvent).where(TaskEvent.task_id == task_id).order_by(TaskEvent.created_at).limit(100)
    )
    for event in sent:
        events.append(TimelineEntry(event.created_at, f"event {event.event}", "sent to webhooks", "muted"))
    events.sort(key=lambda entry: entry.at)
    return task, attempts, events


async def held_counts(session: AsyncSession, agent_ids: list[str]) -> dict[str, int]:
    if not agent_ids:
        return {}
    rows = await session.execute(
        select(Task.assigned_agent_id, func.count())
        .where(Task.assigned_agent_id.in_(agent_ids), Task.status.in_(HELD_STATUSES))
        .group_by(Task.assigned_agent_id)
    )
    return {agent_id: count for agent_id, count in rows if agent_id is not None}


@dataclass
class AgentView:
    agent: Agent
    level: str
    held: list[Task]
    history: list[TrustRecord]
    chain: trust.ChainCheck
    metrics: dict[str, Any]


async def agent_detail(session: AsyncSession, agent_id: str) -> AgentView | None:
    agent = await session.get(Agent, agent_id)
    if agent is None or agent.status == AgentStatus.DEREGISTERED:
        return None
    history = list(reversed(await trust.history(session, agent_id, limit=200, before_seq=None)))
    return AgentView(
        agent=agent,
        level=trust_level(agent.trust_score),
        held=await reads.held_tasks(session, agent_id),
        history=history,
        chain=await trust.verify(session, agent),
        metrics=trust.metrics(agent),
    )


def trust_chart(history: list[TrustRecord], width: int = 600, height: int = 160) -> dict[str, Any]:
    """Points of an SVG polyline for the trust score after each record (0 at the bottom, 1 at the top)."""
    if not history:
        return {"points": "", "width": width, "height": height, "dots": []}
    scores = [history[0].trust_score_before] + [record.trust_score_after for record in history]
    step = width / max(1, len(scores) - 1)
    dots = [(round(i * step, 1), round(height - score * height, 1), score) for i, score in enumerate(scores)]
    return {
        "points": " ".join(f"{x},{y}" for x, y, _ in dots),
        "width": width,
        "height": height,
        "dots": dots,
        "first": history[0].created_at,
        "last": history[-1].created_at,
    }


async def webhook_rows(session: AsyncSession, principal: Principal) -> list[tuple[Webhook, dict[str, int]]]:
    hooks = list(
        await session.scalars(
            select(Webhook).where(webhook_scope(principal)).order_by(Webhook.created_at, Webhook.webhook_id).limit(500)
        )
    )
    counts: dict[str, dict[str, int]] = {hook.webhook_id: {} for hook in hooks}
    if hooks:
        rows = await session.execute(
            select(WebhookDelivery.webhook_id, WebhookDelivery.status, func.count())
            .where(WebhookDelivery.webhook_id.in_(list(counts)))
            .group_by(WebhookDelivery.webhook_id, WebhookDelivery.status)
        )
        for webhook_id, status, count in rows:
            counts[webhook_id][status] = count
    return [(hook, counts[hook.webhook_id]) for hook in hooks]


async def audit_entries(
    session: AsyncSession, *, action: str | None, actor: str | None, target: str | None, before: int | None
) -> list[AuditLog]:
    query = select(AuditLog).order_by(AuditLog.id.desc()).limit(100)
    if action:
        query = query.where(AuditLog.action == action)
    if actor:
        query = query.where(AuditLog.actor == actor)
    if target:
        query = query.where(or_(AuditLog.target_id == target, AuditLog.target_type == target))
    if before is not None:
        query = query.where(AuditLog.id < before)
    return list(await session.scalars(query))


NODE_WIDTH, NODE_HEIGHT, COLUMN_GAP, ROW_GAP, MARGIN = 150, 46, 60, 22, 10


def workflow_graph(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """An SVG layout of a workflow's steps: one column per dependency depth, edges from each step to those
    that wait for it. `steps` come in dependency order (each after the steps it waits for)."""
    depth: dict[str, int] = {}
    columns: dict[int, list[dict[str, Any]]] = {}
    for step in steps:
        level = 1 + max((depth.get(key, 0) for key in step["depends_on"]), default=-1)
        depth[step["key"]] = level
        columns.setdefault(level, []).append(step)
    nodes: dict[str, dict[str, Any]] = {}
    for level, members in columns.items():
        for row, step in enumerate(members):
            nodes[step["key"]] = {
                "x": MARGIN + level * (NODE_WIDTH + COLUMN_GAP),
                "y": MARGIN + row * (NODE_HEIGHT + ROW_GAP),
                "step": step,
                "label": step["key"] if len(step["key"]) <= 20 else step["key"][:19] + "…",
            }
    edges = []
    for step in steps:
        target = nodes[step["key"]]
        for key in step["depends_on"]:
            source = nodes.get(key)
            if source is None:
                continue
            edges.append(
                {
                    "x1": source["x"] + NODE_WIDTH,
                    "y1": source["y"] + NODE_HEIGHT / 2,
                    "x2": target["x"],
                    "y2": target["y"] + NODE_HEIGHT / 2,
                }
            )
    tallest = max((len(members) for members in columns.values()), default=0)
    return {
        "nodes": list(nodes.values()),
        "edges": edges,
        "width": MARGIN * 2 + len(columns) * (NODE_WIDTH + COLUMN_GAP) - COLUMN_GAP if columns else 0,
        "height": MARGIN * 2 + tallest * (NODE_HEIGHT + ROW_GAP) - ROW_GAP if tallest else 0,
        "node_width": NODE_WIDTH,
        "node_height": NODE_HEIGHT,
    }


@dataclass
class KeyRow:
    """An API key as the keys page shows it: its state now, and the key that replaced it after a rotation."""

    key: ApiKey
    state: str  # active, expiring (a rotated key in its grace period), expired, revoked
    replaced_by: str | None


def key_state(key: ApiKey, replaced_by: str | None, now: datetime) -> str:
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= now:
        return "expired"
    if replaced_by is not None:
        return "grace"
    return "active"


async def key_rows(
    work: Work, *, client_id: str | None, include_revoked: bool, limit: int, offset: int
) -> list[KeyRow]:
    """A page of keys, newest first (through the auth service's listing), each with its state."""
    session, now = work.session, work.now
    keys = await auth.list_keys(
        session, client_id=client_id, include_revoked=include_revoked, limit=limit, offset=offset
    )
    replaced: dict[str, str] = {}
    if keys:
        rows = await session.execute(
            select(ApiKey.rotated_from, ApiKey.key_id)
            .where(ApiKey.rotated_from.in_([key.key_id for key in keys]))
            .order_by(ApiKey.created_at)
        )
        replaced = {old: new for old, new in rows if old is not None}
    return [KeyRow(key, key_state(key, replaced.get(key.key_id), now), replaced.get(key.key_id)) for key in keys]
