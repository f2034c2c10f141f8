"""Request and response bodies of the webhook endpoints."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import Field, StrictBool, StringConstraints

from ains.core.schemas import ApiModel, RequestModel, UTCTime


class EventName(StrEnum):
    """What a webhook can hear: a task's events (`ains.webhooks.outbox`) and a workflow's (`ains.workflows.events`)."""

    TASK_CREATED = "task.created"
    TASK_ASSIGNED = "task.assigned"
    TASK_STARTED = "task.started"
    TASK_COMPLETED = "task.completed"
    TASK_FAILED = "task.failed"
    TASK_RETRYING = "task.retrying"
    TASK_CANCELLED = "task.cancelled"
    WORKFLOW_COMPLETED = "workflow.completed"
    WORKFLOW_FAILED = "workflow.failed"
    WORKFLOW_CANCELLED = "workflow.cancelled"


class DeliveryStatus(StrEnum):
    """A delivery's status: pending while it is tried, succeeded once the receiver answered 2xx, failed when the
    attempts ran out or the receiver answered 410 Gone."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


# A request field's type: a Literal of the values rather than the enum, so a wrong event gets the same 422.
EventNameValue: TypeAlias = Literal[tuple(event.value for event in EventName)]  # type: ignore[valid-type]
Url = Annotated[str, StringConstraints(min_length=1, max_length=2000)]
Secret = Annotated[str, StringConstraints(min_length=16, max_length=200)]
EventList = Annotated[list[EventNameValue], Field(min_length=1, max_length=len(EventName))]


class WebhookCreate(RequestModel):
    url: Url
    events: EventList
    secret: Secret | None = Field(None, description="At least 16 characters; generated (and shown once) if absent")


class WebhookPatch(RequestModel):
    active: StrictBool | None = None
    url: Url | None = None
    events: EventList | None = None
    secret: Secret | None = None
    rotate_secret: StrictBool = Field(False, description="Generate a new secret, shown once in the answer")


class WebhookOut(ApiModel):
    webhook_id: str
    owner_kind: str
    owner_id: str
    url: str
    events: list[str]
    active: bool
    consecutive_failures: int
    last_success_at: UTCTime | None
    last_failure_at: UTCTime | None
    disabled_reason: str | None
    created_at: UTCTime
    updated_at: UTCTime


class WebhookWithSecret(WebhookOut):
    secret: str | None = Field(None, description="Shown only when created or rotated")


class WebhookList(ApiModel):
    webhooks: list[WebhookOut]


class DeliveryOut(ApiModel):
    delivery_id: str
    webhook_id: str
    event_id: str
    event: str
    task_id: str
    status: DeliveryStatus
    attempts: int
    response_code: int | None
    last_error: str | None
    next_attempt_at: UTCTime | None
    created_at: UTCTime
    updated_at: UTCTime
    finished_at: UTCTime | None
    history: list[dict[str, Any]] = Field(description="One entry per attempt: at, response_code, error, duration_ms")


class RecoverRequest(RequestModel):
    since: UTCTime = Field(description="Re-queue the deliveries that ended failed at or after this time")


class RecoverOut(ApiModel):
    redelivering: int


class DeliveryPage(ApiModel):
    deliveries: list[DeliveryOut]
    next_cursor: str | None
