"""The outbox: a task event and its deliveries are written in the transaction of the task change.

Nothing is sent here. An event is stored only when some active webhook wants
it: one delivery row per matching webhook, which the dispatcher sends later.
Who hears what (SPEC 9): a client's webhooks hear the events of its own tasks; an
agent's webhooks hear the events of tasks assigned to it, `task.created` of tasks
needing one of its capabilities, and the events of tasks it submitted.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from ains.agents.models import Agent
from ains.core.clock import new_id
from ains.core.database import json_array_contains
from ains.core.signals import announce_deadline
from ains.tasks.models import Task
from ains.webhooks.models import TaskEvent, Webhook, WebhookDelivery

TASK_CREATED = "task.created"
TASK_ASSIGNED = "task.assigned"
TASK_STARTED = "task.started"
TASK_COMPLETED = "task.completed"
TASK_FAILED = "task.failed"
TASK_RETRYING = "task.retrying"
TASK_CANCELLED = "task.cancelled"
EVENTS = (TASK_CREATED, TASK_ASSIGNED, TASK_STARTED, TASK_COMPLETED, TASK_FAILED, TASK_RETRYING, TASK_CANCELLED)

# The dispatcher's deadline kind: a new delivery is due at once.
DEADLINE_DELIVERY = "webhook_delivery"


def iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def event_data(event: str, task: Task, reason: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"status": task.status}
    if event == TASK_CREATED:
        data |= {
            "client_id": task.client_id,
            "task_type": task.task_type,
            "capability_required": task.capability_required,
            "priority": task.priority,
            "created_at": iso(task.created_at),
        }
    elif event == TASK_ASSIGNED:
        data |= {"attempt": task.attempt, "assigned_at": iso(task.assigned_at)}
    elif event == TASK_STARTED:
        data |= {"attempt": task.attempt, "started_at": iso(task.started_at)}
    elif event == TASK_COMPLETED:
        data |= {"attempt": task.attempt, "result_data": task.result_data, "completed_at": iso(task.completed_at)}
    elif event == TASK_FAILED:
        data |= {"attempt": task.attempt, "error_message": task.error_message, "reason": reason}
    elif event == TASK_RETRYING:
        data |= {
            "attempt": task.attempt,
            "retry_count": task.retry_count,
            "next_retry_at": iso(task.next_retry_at),
            "last_error": task.last_error,
            "reason": reason,
        }
    elif event == TASK_CANCELLED:
        data |= {
            "cancelled_at": iso(task.cancelled_at),
            "cancelled_by": task.cancelled_by,
            "cancellation_reason": task.cancellation_reason,
        }
    return data


async def _subscribers(session: AsyncSession, event: str, task: Task, agent_id: str | None) -> list[Webhook]:
    # Asked once per audience and transaction: a batch of tasks for one client and capability costs one query.
    audience = (event, task.client_id, agent_id, task.capability_required if event == TASK_CREATED else None)
    memo = session.info.setdefault("webhook_subscribers", {})
    if audience not in memo:
        memo[audience] = await _query_subscribers(session, event, task, agent_id)
    return memo[audience]


async def _query_subscribers(session: AsyncSession, event: str, task: Task, agent_id: str | None) -> list[Webhook]:
    audiences = [
        and_(Webhook.owner_kind == "client", Webhook.owner_id == task.client_id),
        and_(Webhook.owner_kind == "agent", Webhook.owner_id == task.client_id),
    ]
    if agent_id:
        audiences.append(and_(Webhook.owner_kind == "agent", Webhook.owner_id == agent_id))
    if event == TASK_CREATED:
        capable = select(Agent.agent_id).where(
            Agent.status != "DEREGISTERED", json_array_contains(session, Agent.capabilities, task.capability_required)
        )
        audiences.append(and_(Webhook.owner_kind == "agent", Webhook.owner_id.in_(capable)))
    rows = await session.scalars(select(Webhook).where(Webhook.active.is_(True), or_(*audiences)))
    return [hook for hook in rows if event in hook.events]


async def emit(
    session: AsyncSession,
    event: str,
    task: Task,
    *,
    now: datetime,
    agent_id: str | None,
    reason: str | None = None,
    signals: Any = None,
) -> None:
    webhooks = await _subscribers(session, event, task, agent_id)
    if not webhooks:
        return
    event_id = new_id("evt")
    payload = {
        "event_id": event_id,
        "event": event,
        "task_id": task.task_id,
        "agent_id": agent_id,
        "timestamp": iso(now),
        "data": event_data(event, task, reason),
    }
    session.add(
        TaskEvent(
            event_id=event_id,
            event=event,
            task_id=task.task_id,
            body=json.dumps(payload, separators=(",", ":"), ensure_ascii=False),
            created_at=now,
        )
    )
    for hook in webhooks:
        session.add(
            WebhookDelivery(
                delivery_id=new_id("dlv"),
                webhook_id=hook.webhook_id,
                event_id=event_id,
                task_id=task.task_id,
                status="pending",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
                updated_at=now,
                history=[],
            )
        )
    # Due at once: wakes the dispatchers of this process and, through the wake-up link, of the others.
    announce_deadline(session, DEADLINE_DELIVERY, now)
