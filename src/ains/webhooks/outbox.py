"""The outbox: a task event and its deliveries are written in the transaction of the task change.

Nothing is sent here. An event is stored only when some active webhook wants
it: one delivery row per matching webhook, which the dispatcher sends later.
Who hears what (SPEC 9): a client's webhooks hear the events of its own tasks; an
agent's webhooks hear the events of tasks assigned to it, `task.created` of tasks
needing one of its capabilities, and the events of tasks it submitted.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from pydantic_core import to_json
from sqlalchemy import Float, Integer, bindparam, exists, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from ains.core.bulk import BulkInsert
from ains.core.clock import new_id, utc_text
from ains.core.database import Database, dialect_name, table_of
from ains.core.transaction_state import Memo
from ains.core.work import Work
from ains.trust.levels import CLAIM_FLOOR, FULL_ROUTING_FLOOR, PROBATION_MAX_PRIORITY
from ains.webhooks.directory import as_list, directory_for
from ains.webhooks.models import TaskEvent, Webhook, WebhookDelivery
from ains.webhooks.schemas import DeliveryStatus, EventName

# The dispatcher's deadline kind: a new delivery is due at once.
DEADLINE_DELIVERY = "webhook_delivery"


def iso(value: datetime | None) -> str | None:
    return utc_text(value) if value else None


def event_data(event: EventName, task: Any, reason: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"status": task.status}
    if event == EventName.TASK_CREATED:
        data |= {
            "client_id": task.client_id,
            "task_type": task.task_type,
            "capability_required": task.capability_required,
            "priority": task.priority,
            "created_at": iso(task.created_at),
        }
    elif event == EventName.TASK_ASSIGNED:
        data |= {"attempt": task.attempt, "assigned_at": iso(task.assigned_at)}
    elif event == EventName.TASK_STARTED:
        data |= {"attempt": task.attempt, "started_at": iso(task.started_at)}
    elif event == EventName.TASK_COMPLETED:
        data |= {"attempt": task.attempt, "result_data": task.result_data, "completed_at": iso(task.completed_at)}
    elif event == EventName.TASK_FAILED:
        data |= {"attempt": task.attempt, "error_message": task.error_message, "reason": reason}
    elif event == EventName.TASK_RETRYING:
        data |= {
            "attempt": task.attempt,
            "retry_count": task.retry_count,
            "next_retry_at": iso(task.next_retry_at),
            "last_error": task.last_error,
            "reason": reason,
        }
    elif event == EventName.TASK_CANCELLED:
        data |= {
            "cancelled_at": iso(task.cancelled_at),
            "cancelled_by": task.cancelled_by,
            "cancellation_reason": task.cancellation_reason,
        }
    return data


# Who hears an event, as plain SQL: it runs for every task event, and a statement SQLAlchemy need not build,
# key and compile each time costs a fraction of one it must. `:created` adds the agents that could claim the
# new task: its capability, its `min_trust_score`, and their trust level (none below `low`; on probation,
# nothing above the probation priority). The JSON test differs by database.
_SUBSCRIBERS = """
SELECT webhook_id, events FROM webhooks
WHERE active AND (
    (owner_kind = 'client' AND owner_id = :client_id)
    OR (owner_kind = 'agent' AND owner_id IN (:client_id, :agent_id))
    OR (:created AND owner_kind = 'agent' AND owner_id IN (
        SELECT agent_id FROM agents
        WHERE status <> 'DEREGISTERED' AND {capable}
          AND trust_score >= :claim_floor AND trust_score >= :min_trust_score
          AND (trust_score >= :full_routing_floor OR :priority <= :probation_max_priority))))
"""
_CAPABLE = {
    "postgresql": "capabilities @> CAST(:capability_json AS JSONB)",
    "sqlite": "EXISTS (SELECT 1 FROM json_each(agents.capabilities) WHERE json_each.value = :capability)",
}
_SUBSCRIBER_QUERIES = {
    dialect: text(_SUBSCRIBERS.format(capable=test)).bindparams(
        bindparam("min_trust_score", type_=Float),
        bindparam("claim_floor", type_=Float),
        bindparam("full_routing_floor", type_=Float),
        bindparam("priority", type_=Integer),
        bindparam("probation_max_priority", type_=Integer),
    )
    for dialect, test in _CAPABLE.items()
}


# Webhooks (id, events) that hear each audience, as this transaction found them.
SUBSCRIBERS: Memo[dict[tuple[Any, ...], list[tuple[str, list[str]]]]] = Memo("webhook_subscribers", dict)


async def _subscribers(work: Work, event: EventName, task: Any, agent_id: str | None) -> list[str]:
    """Ids of the active webhooks that hear this event of this task."""
    # Asked once per audience and transaction: a batch of tasks for one client and capability costs one query.
    created = event == EventName.TASK_CREATED
    who_may_claim = (task.capability_required, task.min_trust_score, task.priority) if created else None
    audience = (task.client_id, agent_id, who_may_claim)
    memo = work.memo(SUBSCRIBERS)
    if audience not in memo and work.listening:
        directory = directory_for(cast(AsyncEngine, work.session.bind))
        hearing = directory.hearing(task.client_id, agent_id, created)
        if hearing is None and directory.worth_loading:
            await directory.load(work.session)
            hearing = directory.hearing(task.client_id, agent_id, created)
        if hearing is not None:
            memo[audience] = hearing
    if audience not in memo:
        rows = await work.session.execute(
            _SUBSCRIBER_QUERIES[dialect_name(work.session)],
            {
                "client_id": task.client_id,
                "agent_id": agent_id or "",
                "created": created,
                "capability": task.capability_required,
                "capability_json": json.dumps([task.capability_required]),
                "min_trust_score": task.min_trust_score or 0.0,
                "priority": task.priority,
                "claim_floor": CLAIM_FLOOR,
                "full_routing_floor": FULL_ROUTING_FLOOR,
                "probation_max_priority": PROBATION_MAX_PRIORITY,
            },
        )
        memo[audience] = [(webhook_id, as_list(events)) for webhook_id, events in rows]
    return [webhook_id for webhook_id, events in memo[audience] if event in events]


async def created_may_be_heard(db: Database, client_id: str) -> bool:
    """Whether a webhook may hear `task.created` of a new task of this client, by this process's directory (loaded
    first if need be); True when only the database can say. Trust the answer only while the wake-up link is up."""
    directory = directory_for(db.engine)
    hearing = directory.hearing(client_id, None, True)
    if hearing is None and directory.worth_loading:
        async with db.read() as session:
            await directory.load(session)
        hearing = directory.hearing(client_id, None, True)
    return hearing is None or any(EventName.TASK_CREATED in events for _, events in hearing)


async def emit(work: Work, event: EventName, task: Any, *, agent_id: str | None, reason: str | None = None) -> None:
    await emit_many(work, [(event, task, agent_id, reason)])


# The outbox rows, written by Core: one INSERT of events and one of deliveries for however many events.
_INSERT_EVENTS = BulkInsert(table_of(TaskEvent))
_DELIVERIES = table_of(WebhookDelivery)
_WEBHOOKS = table_of(Webhook)
# Each delivery row is written only while its webhook is still there and active: who hears an event may come
# from this process's directory, which learns of a webhook deleted or disabled in another process a moment
# after its commit (ains.webhooks.directory). Without the check that moment's events would fail their whole
# transaction on the foreign key. Rows go in in order: their ids are the delivery order.
_INSERT_DELIVERIES = BulkInsert(
    _DELIVERIES,
    only_if="EXISTS (SELECT 1 FROM webhooks WHERE webhooks.webhook_id = v.webhook_id AND webhooks.active)",
    sqlite=insert(_DELIVERIES).from_select(
        [c.name for c in _DELIVERIES.columns if c.name != "id"],
        select(*(bindparam(c.name, type_=c.type) for c in _DELIVERIES.columns if c.name != "id")).where(
            exists().where(_WEBHOOKS.c.webhook_id == bindparam("webhook_id"), _WEBHOOKS.c.active)
        ),
    ),
)


def delivery_row(webhook_id: str, event_id: str, order_key: str, now: datetime) -> dict[str, Any]:
    """A new pending delivery of an event to a webhook; `order_key` (the task, or the workflow) orders its
    deliveries to that webhook."""
    return {
        "delivery_id": new_id("dlv"),
        "webhook_id": webhook_id,
        "event_id": event_id,
        "task_id": order_key,
        "status": DeliveryStatus.PENDING,
        "attempts": 0,
        "next_attempt_at": now,
        "leased_until": None,
        "response_code": None,
        "last_error": None,
        "created_at": now,
        "updated_at": now,
        "finished_at": None,
        "history": [],
    }


async def emit_many(work: Work, events: Sequence[tuple[EventName, Any, str | None, str | None]]) -> None:
    """Store the events (event, task, agent_id, reason), in order, with one delivery per webhook that hears each.

    `task` is anything with the task's attributes: a `Task`, a row of `ains.tasks.queries`, a `TaskRow`.
    Deliveries are inserted in the order of the events, and their ids are the delivery order (SPEC 15).
    """
    now = work.now
    event_rows: list[dict[str, Any]] = []
    delivery_rows: list[dict[str, Any]] = []
    for event, task, agent_id, reason in events:
        webhook_ids = await _subscribers(work, event, task, agent_id)
        if not webhook_ids:
            continue
        event_id = new_id("evt")
        payload = {
            "event_id": event_id,
            "event": event,
            "task_id": task.task_id,
            "agent_id": agent_id,
            "timestamp": iso(now),
            "data": event_data(event, task, reason),
        }
        event_rows.append(
            {
                "event_id": event_id,
                "event": event,
                "task_id": task.task_id,
                # The exact bytes every attempt sends and signs; pydantic-core writes compact JSON fast.
                "body": to_json(payload).decode(),
                "created_at": now,
            }
        )
        delivery_rows.extend(delivery_row(webhook_id, event_id, task.task_id, now) for webhook_id in webhook_ids)
    if not event_rows:
        return
    await _INSERT_EVENTS.run(work.session, event_rows)
    await _INSERT_DELIVERIES.run(work.session, delivery_rows)
    # Due at once: wakes the dispatchers of this process and, through the wake-up link, of the others.
    work.announce_deadline(DEADLINE_DELIVERY, now)
