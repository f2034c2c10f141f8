"""`workflow.completed`, `workflow.failed` and `workflow.cancelled`: events to the workflow client's webhooks.

Written in the transaction that finished the workflow, like a task's events (the outbox, SPEC 9): one event
row and one delivery per active client webhook that asked for it. The delivery's ordering key is the
workflow id, so a workflow's events reach a webhook in order.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select

from ains.core.clock import new_id
from ains.core.database import table_of
from ains.core.work import Work
from ains.webhooks.models import TaskEvent, Webhook, WebhookDelivery
from ains.webhooks.outbox import delivery_row
from ains.webhooks.schemas import EventName
from ains.workflows.schemas import WorkflowStatus

_BY_STATUS = {
    WorkflowStatus.COMPLETED: EventName.WORKFLOW_COMPLETED,
    WorkflowStatus.FAILED: EventName.WORKFLOW_FAILED,
    WorkflowStatus.CANCELLED: EventName.WORKFLOW_CANCELLED,
}
DEADLINE_DELIVERY = "webhook_delivery"  # the dispatcher's deadline kind (ains.webhooks.outbox)


def _iso(value: datetime | None) -> str | None:
    from ains.webhooks.outbox import iso

    return iso(value)


async def emit_workflow_event(work: Work, workflow: Any, status: WorkflowStatus) -> None:
    session, now = work.session, work.now
    event = _BY_STATUS[status]
    hooks = await session.execute(
        select(Webhook.webhook_id, Webhook.events).where(
            Webhook.active.is_(True), Webhook.owner_kind == "client", Webhook.owner_id == workflow.client_id
        )
    )
    webhook_ids = [
        webhook_id
        for webhook_id, events in hooks
        if event in (json.loads(events) if isinstance(events, str) else events or [])
    ]
    if not webhook_ids:
        return
    event_id = new_id("evt")
    payload = {
        "event_id": event_id,
        "event": event,
        "workflow_id": workflow.workflow_id,
        "task_id": None,
        "agent_id": None,
        "timestamp": _iso(now),
        "data": {
            "status": status,
            "name": workflow.name,
            "client_id": workflow.client_id,
            "completed_at": _iso(now),
            "steps": {
                "total": workflow.total_steps,
                "completed": workflow.completed_steps,
                "failed": workflow.failed_steps,
                "cancelled": workflow.cancelled_steps,
            },
        },
    }
    await session.execute(
        insert(table_of(TaskEvent)),
        [
            {
                "event_id": event_id,
                "event": event,
                "task_id": workflow.workflow_id,
                "body": json.dumps(payload, separators=(",", ":"), ensure_ascii=False),
                "created_at": now,
            }
        ],
    )
    await session.execute(
        insert(table_of(WebhookDelivery)),
        [delivery_row(webhook_id, event_id, workflow.workflow_id, now) for webhook_id in webhook_ids],
    )
    work.announce_deadline(DEADLINE_DELIVERY, now)
