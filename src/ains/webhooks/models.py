"""Webhooks, the outbox of task events, and deliveries with their attempts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from ains.core.database import Base, JSONType, UTCDateTime


class Webhook(Base):
    __tablename__ = "webhooks"

    webhook_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner_kind: Mapped[str] = mapped_column(String(16))  # agent | client
    owner_id: Mapped[str] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[list[str]] = mapped_column(JSONType)
    # Kept as given: signing needs it. Never shown again after creation or rotation.
    secret: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_failure_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_webhooks_owner", "owner_kind", "owner_id"),)


class TaskEvent(Base):
    """The outbox: written in the transaction of the task change that caused it."""

    __tablename__ = "task_events"

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    event: Mapped[str] = mapped_column(String(32))
    task_id: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)  # the exact JSON sent, so every retry signs the same bytes
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_task_events_task_id", "task_id"),)


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)  # also the delivery order
    # A sentinel (unique, set before insert) lets SQLite insert many deliveries in one statement and still
    # match the generated ids to their rows; without one SQLAlchemy falls back to a statement per row.
    delivery_id: Mapped[str] = mapped_column(String(64), unique=True, insert_sentinel=True)
    webhook_id: Mapped[str] = mapped_column(String(64), ForeignKey("webhooks.webhook_id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(64), ForeignKey("task_events.event_id"))
    # The event's task, copied here: a delivery waits while an earlier one of its task to its webhook is pending.
    task_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # pending | succeeded | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Set while a dispatcher sends an attempt (and equal to next_attempt_at then): counts toward the webhook's
    # in-flight limit until recorded, or until it runs out because that dispatcher died.
    leased_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    response_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    history: Mapped[list[dict]] = mapped_column(JSONType)  # one entry per attempt

    __table_args__ = (
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
        Index("ix_webhook_deliveries_webhook", "webhook_id", "id"),
        Index(
            "ix_webhook_deliveries_pending_order",
            "webhook_id",
            "id",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
        Index(
            "ix_webhook_deliveries_pending_task",
            "webhook_id",
            "task_id",
            "id",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
        Index(
            "ix_webhook_deliveries_leased",
            "webhook_id",
            "leased_until",
            postgresql_where=text("leased_until IS NOT NULL"),
            sqlite_where=text("leased_until IS NOT NULL"),
        ),
    )
