"""Webhook endpoints (SPEC 9)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from ains.auth.dependencies import CurrentPrincipal, requires
from ains.core.context import AppContext, get_context
from ains.core.pagination import decode_position, split_page
from ains.webhooks import service
from ains.webhooks.models import TaskEvent, WebhookDelivery
from ains.webhooks.schemas import (
    DeliveryOut,
    DeliveryPage,
    DeliveryStatus,
    RecoverOut,
    RecoverRequest,
    WebhookCreate,
    WebhookList,
    WebhookOut,
    WebhookPatch,
    WebhookWithSecret,
)

router = APIRouter(tags=["webhooks"])
Ctx = Annotated[AppContext, Depends(get_context)]


async def _create(ctx: AppContext, principal, owner_kind: str, owner_id: str, body: WebhookCreate) -> WebhookWithSecret:
    async with ctx.work() as work:
        hook, secret = await service.create(work, principal, owner_kind, owner_id, body)
    return WebhookWithSecret(**WebhookOut.model_validate(hook).model_dump(), secret=secret)


async def _list(ctx: AppContext, principal, owner_kind: str, owner_id: str) -> WebhookList:
    async with ctx.db.read() as session:
        rows = await service.list_for(session, principal, owner_kind, owner_id)
    return WebhookList(webhooks=[WebhookOut.model_validate(h) for h in rows])


@router.post(
    "/ains/agents/{agent_id}/webhooks",
    status_code=status.HTTP_201_CREATED,
    response_model=WebhookWithSecret,
    dependencies=[requires("webhooks:write")],
)
async def create_agent_webhook(
    agent_id: str, body: WebhookCreate, principal: CurrentPrincipal, ctx: Ctx
) -> WebhookWithSecret:
    """The agent or an admin. The secret is in this answer only."""
    return await _create(ctx, principal, "agent", agent_id, body)


@router.get("/ains/agents/{agent_id}/webhooks", response_model=WebhookList, dependencies=[requires("webhooks:read")])
async def list_agent_webhooks(agent_id: str, principal: CurrentPrincipal, ctx: Ctx) -> WebhookList:
    return await _list(ctx, principal, "agent", agent_id)


@router.post(
    "/ains/clients/{client_id}/webhooks",
    status_code=status.HTTP_201_CREATED,
    response_model=WebhookWithSecret,
    dependencies=[requires("webhooks:write")],
)
async def create_client_webhook(
    client_id: str, body: WebhookCreate, principal: CurrentPrincipal, ctx: Ctx
) -> WebhookWithSecret:
    """The client or an admin. The secret is in this answer only."""
    return await _create(ctx, principal, "client", client_id, body)


@router.get("/ains/clients/{client_id}/webhooks", response_model=WebhookList, dependencies=[requires("webhooks:read")])
async def list_client_webhooks(client_id: str, principal: CurrentPrincipal, ctx: Ctx) -> WebhookList:
    return await _list(ctx, principal, "client", client_id)


@router.patch(
    "/ains/webhooks/{webhook_id}", response_model=WebhookWithSecret, dependencies=[requires("webhooks:write")]
)
async def update_webhook(
    webhook_id: str, body: WebhookPatch, principal: CurrentPrincipal, ctx: Ctx
) -> WebhookWithSecret:
    """Enable or disable, change url or events, set or rotate the secret. Re-enabling clears the failure count."""
    async with ctx.work() as work:
        hook, secret = await service.update(work, principal, webhook_id, body)
    return WebhookWithSecret(**WebhookOut.model_validate(hook).model_dump(), secret=secret)


@router.delete(
    "/ains/webhooks/{webhook_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    dependencies=[requires("webhooks:write")],
)
async def delete_webhook(webhook_id: str, principal: CurrentPrincipal, ctx: Ctx) -> Response:
    async with ctx.work() as work:
        await service.delete(work, principal, webhook_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/ains/webhooks/{webhook_id}/deliveries", response_model=DeliveryPage, dependencies=[requires("webhooks:read")]
)
async def list_deliveries(
    webhook_id: str,
    principal: CurrentPrincipal,
    ctx: Ctx,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> DeliveryPage:
    """Newest first, each with its attempts."""
    before_id = decode_position(cursor)
    async with ctx.db.read() as session:
        rows = await service.deliveries(session, principal, webhook_id, limit=limit + 1, before_id=before_id)
    page, next_cursor = split_page(rows, limit, lambda row: (row[0].id,))
    return DeliveryPage(deliveries=[_delivery_out(d, e) for d, e in page], next_cursor=next_cursor)


def _delivery_out(d: WebhookDelivery, e: TaskEvent) -> DeliveryOut:
    return DeliveryOut(
        delivery_id=d.delivery_id,
        webhook_id=d.webhook_id,
        event_id=d.event_id,
        event=e.event,
        task_id=e.task_id,
        status=d.status,
        attempts=d.attempts,
        response_code=d.response_code,
        last_error=d.last_error,
        next_attempt_at=d.next_attempt_at if d.status == DeliveryStatus.PENDING else None,
        created_at=d.created_at,
        updated_at=d.updated_at,
        finished_at=d.finished_at,
        history=d.history,
    )


@router.post(
    "/ains/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DeliveryOut,
    dependencies=[requires("webhooks:write")],
)
async def redeliver(webhook_id: str, delivery_id: str, principal: CurrentPrincipal, ctx: Ctx) -> DeliveryOut:
    """Send a finished delivery again: a new series of attempts, the same event_id and body. 409 while pending."""
    async with ctx.work() as work:
        delivery, event = await service.redeliver(work, principal, webhook_id, delivery_id)
        out = _delivery_out(delivery, event)
    return out


@router.post(
    "/ains/webhooks/{webhook_id}/recover",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RecoverOut,
    dependencies=[requires("webhooks:write")],
)
async def recover(webhook_id: str, body: RecoverRequest, principal: CurrentPrincipal, ctx: Ctx) -> RecoverOut:
    """Re-queue every delivery of this webhook that ended failed at or after `since`."""
    async with ctx.work() as work:
        count = await service.recover(work, principal, webhook_id, since=body.since)
    return RecoverOut(redelivering=count)
