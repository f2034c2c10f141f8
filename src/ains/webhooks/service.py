"""Webhook management: register, list, change, delete, and read deliveries; owners and the admin only."""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import CursorResult, select
from sqlalchemy import update as sql_update
from sqlalchemy.ext.asyncio import AsyncSession

from ains.agents.models import Agent
from ains.agents.schemas import AgentStatus
from ains.audit import service as audit
from ains.core.clock import new_id, utc_text
from ains.core.errors import Conflict, Forbidden, NotFound, Unprocessable
from ains.core.principal import Principal
from ains.core.work import Work
from ains.webhooks.models import TaskEvent, Webhook, WebhookDelivery
from ains.webhooks.outbox import DEADLINE_DELIVERY
from ains.webhooks.schemas import DeliveryStatus, WebhookCreate, WebhookPatch
from ains.webhooks.signing import generate_secret
from ains.webhooks.url_guard import ForbiddenTarget, check_target


def require_owner_path(principal: Principal, owner_kind: str, owner_id: str) -> None:
    """Only the agent (or client) itself, or the admin, manages webhooks under its path."""
    if principal.is_admin:
        return
    if principal.kind != owner_kind or principal.id != owner_id:
        raise Forbidden(f"Only {owner_id} or an admin may manage these webhooks")


async def _check_url(url: str, allow_private: bool) -> None:
    try:
        await check_target(url, allow_private=allow_private)
    except ForbiddenTarget as exc:
        raise Unprocessable("url", str(exc)) from exc


async def create(
    work: Work, principal: Principal, owner_kind: str, owner_id: str, body: WebhookCreate
) -> tuple[Webhook, str]:
    """A new webhook; its URL must pass the address check (`webhook_allow_private` lets private ones through)."""
    session, now = work.session, work.now
    require_owner_path(principal, owner_kind, owner_id)
    if owner_kind == "agent":
        agent = await session.get(Agent, owner_id)
        if agent is None or agent.status == AgentStatus.DEREGISTERED:
            raise NotFound(f"Agent {owner_id} not found")
    await _check_url(body.url, work.settings.webhook_allow_private)
    secret = body.secret or generate_secret()
    hook = Webhook(
        webhook_id=new_id("wh"),
        owner_kind=owner_kind,
        owner_id=owner_id,
        url=body.url,
        events=list(dict.fromkeys(body.events)),
        secret=secret,
        active=True,
        consecutive_failures=0,
        created_at=now,
        updated_at=now,
    )
    session.add(hook)
    work.announce_webhooks()
    if principal.is_admin:
        audit.record(work, principal, "webhook.create", "webhook", hook.webhook_id, {"owner": owner_id})
    return hook, secret


async def list_for(session: AsyncSession, principal: Principal, owner_kind: str, owner_id: str) -> list[Webhook]:
    require_owner_path(principal, owner_kind, owner_id)
    rows = await session.scalars(
        select(Webhook)
        .where(Webhook.owner_kind == owner_kind, Webhook.owner_id == owner_id)
        .order_by(Webhook.created_at, Webhook.webhook_id)
    )
    return list(rows)


async def get_owned(
    session: AsyncSession, principal: Principal, webhook_id: str, *, for_update: bool = False
) -> Webhook:
    query = select(Webhook).where(Webhook.webhook_id == webhook_id)
    if for_update:
        query = query.with_for_update()
    hook = await session.scalar(query)
    if hook is None or not (
        principal.is_admin or (principal.kind == hook.owner_kind and principal.id == hook.owner_id)
    ):
        raise NotFound(f"Webhook {webhook_id} not found")
    return hook


async def update(work: Work, principal: Principal, webhook_id: str, patch: WebhookPatch) -> tuple[Webhook, str | None]:
    hook = await get_owned(work.session, principal, webhook_id, for_update=True)
    changes = patch.model_dump(exclude_unset=True)
    for field in ("active", "url", "events"):
        if field in changes and changes[field] is None:
            raise Unprocessable(field, f"{field} may not be null")
    if patch.url is not None:
        await _check_url(patch.url, work.settings.webhook_allow_private)
        hook.url = patch.url
    if patch.events is not None:
        hook.events = list(dict.fromkeys(patch.events))
    shown_secret = None
    if patch.rotate_secret:
        hook.secret = shown_secret = generate_secret()
    elif patch.secret is not None:
        hook.secret = patch.secret
    if patch.active is not None:
        if patch.active and not hook.active:
            # A fresh start: the failures that disabled it are history.
            hook.consecutive_failures = 0
            hook.disabled_reason = None
        elif not patch.active and hook.active:
            hook.disabled_reason = "disabled by its owner"
        hook.active = patch.active
    hook.updated_at = work.now
    work.announce_webhooks()
    return hook, shown_secret


async def delete(work: Work, principal: Principal, webhook_id: str) -> None:
    session = work.session
    await get_owned(session, principal, webhook_id)  # someone else's: 404 before any lock is taken
    # Its deliveries first, in id order, then the webhook: the order in which a dispatcher records an attempt,
    # so a delete and a recording queue behind each other instead of deadlocking.
    await session.execute(
        select(WebhookDelivery.id)
        .where(WebhookDelivery.webhook_id == webhook_id)
        .order_by(WebhookDelivery.id)
        .with_for_update()
    )
    hook = await get_owned(session, principal, webhook_id, for_update=True)
    await session.delete(hook)
    work.announce_webhooks()


async def deliveries(
    session: AsyncSession, principal: Principal, webhook_id: str, *, limit: int, before_id: int | None
) -> list[tuple[WebhookDelivery, TaskEvent]]:
    await get_owned(session, principal, webhook_id)
    query = (
        select(WebhookDelivery, TaskEvent)
        .join(TaskEvent, TaskEvent.event_id == WebhookDelivery.event_id)
        .where(WebhookDelivery.webhook_id == webhook_id)
        .order_by(WebhookDelivery.id.desc())
        .limit(limit)
    )
    if before_id is not None:
        query = query.where(WebhookDelivery.id < before_id)
    return [(delivery, event) for delivery, event in (await session.execute(query)).all()]


# What sending a delivery again resets: a new series of attempts, due now, not leased. `history` is kept, so the
# earlier series stay visible; the event (its id and body bytes) is the same.
def _requeued(now: datetime) -> dict:
    return {
        "status": DeliveryStatus.PENDING,
        "attempts": 0,
        "next_attempt_at": now,
        "leased_until": None,
        "finished_at": None,
        "response_code": None,
        "last_error": None,
        "updated_at": now,
    }


def _require_active(hook: Webhook) -> None:
    if not hook.active:
        raise Conflict(f"Webhook {hook.webhook_id} is inactive; PATCH it active first")


async def redeliver(
    work: Work, principal: Principal, webhook_id: str, delivery_id: str
) -> tuple[WebhookDelivery, TaskEvent]:
    """Send a finished delivery again. A pending one is already being sent: 409."""
    session, now = work.session, work.now
    await get_owned(session, principal, webhook_id)  # someone else's: 404 before any lock is taken
    # The delivery is locked before its webhook, the order the dispatcher's recording takes them in: the other
    # way round, a recording of this delivery that began between the two waited for the webhook while this waited
    # for the delivery, and the database broke the deadlock by failing one of them.
    delivery = await session.scalar(
        select(WebhookDelivery)
        .where(WebhookDelivery.webhook_id == webhook_id, WebhookDelivery.delivery_id == delivery_id)
        .with_for_update()
    )
    hook = await get_owned(session, principal, webhook_id, for_update=True)
    if delivery is None:
        raise NotFound(f"Delivery {delivery_id} not found")
    if delivery.status == DeliveryStatus.PENDING:
        raise Conflict(f"Delivery {delivery_id} is pending: it is already being sent")
    _require_active(hook)
    previous = delivery.status
    for field, value in _requeued(now).items():
        setattr(delivery, field, value)
    event = await session.get(TaskEvent, delivery.event_id)
    assert event is not None, "a delivery's event is removed only with the delivery"
    audit.record(
        work, principal, "webhook.redeliver", "webhook", webhook_id, {"delivery_id": delivery_id, "was": previous}
    )
    work.announce_deadline(DEADLINE_DELIVERY, now)
    return delivery, event


async def recover(work: Work, principal: Principal, webhook_id: str, *, since: datetime) -> int:
    """Re-queue every delivery of the webhook that ended failed at or after `since`; answers how many."""
    session, now = work.session, work.now
    await get_owned(session, principal, webhook_id)  # someone else's: 404 before any lock is taken
    failed = (
        WebhookDelivery.webhook_id == webhook_id,
        WebhookDelivery.status == DeliveryStatus.FAILED,
        WebhookDelivery.finished_at >= since,
    )
    # The deliveries, locked in id order, then the webhook: the order the dispatcher's recording locks them in (see
    # redeliver).
    await session.execute(select(WebhookDelivery.id).where(*failed).order_by(WebhookDelivery.id).with_for_update())
    result = await session.execute(
        sql_update(WebhookDelivery).where(*failed).values(**_requeued(now)).execution_options(synchronize_session=False)
    )
    count = cast(CursorResult, result).rowcount or 0
    _require_active(await get_owned(session, principal, webhook_id, for_update=True))
    audit.record(
        work,
        principal,
        "webhook.recover",
        "webhook",
        webhook_id,
        {"since": utc_text(since), "redelivering": count},
    )
    if count:
        work.announce_deadline(DEADLINE_DELIVERY, now)
    return count
