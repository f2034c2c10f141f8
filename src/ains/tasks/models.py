"""The task row (which is also the queue) and one row per attempt.

`available_at` is when the task may next be claimed; `queue_position` is
`epoch(available_at) - priority * aging_interval_seconds`, so claim order
(SPEC 6) is a scan of the partial index on PENDING tasks. Deadlines are stored
(`lease_expires_at` while ASSIGNED, `deadline_at` while ACTIVE) so finding due
ones is an index lookup too.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from ains.core.database import Base, JSONType, UTCDateTime


class Task(Base):
    __tablename__ = "tasks"
    __cache_kind__ = "task"
    __cache_key__ = "task_id"

    task_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64))
    task_type: Mapped[str] = mapped_column(String(100))
    capability_required: Mapped[str] = mapped_column(String(130))
    input_data: Mapped[dict[str, Any]] = mapped_column(JSONType)
    priority: Mapped[int] = mapped_column(Integer)
    max_retries: Mapped[int] = mapped_column(Integer)
    retry_policy: Mapped[str] = mapped_column(String(16))
    retry_jitter: Mapped[bool] = mapped_column(Boolean)
    timeout_seconds: Mapped[int] = mapped_column(Integer)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    task_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType)
    min_trust_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Whether outcomes of this task move the assignee's trust (SPEC 14): false when an agent below `high`
    # submitted it, so agents cannot raise themselves or each other by feeding each other work.
    submitter_trusted: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))

    status: Mapped[str] = mapped_column(String(16))
    assigned_agent_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    retry_count: Mapped[int] = mapped_column(Integer, default=0)

    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    available_at: Mapped[datetime] = mapped_column(UTCDateTime)
    queue_position: Mapped[float] = mapped_column(Float)
    assigned_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    deadline_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    next_retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    result_data: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)

    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    cancelled_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    cancellation_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    # When the assigned agent was told of the cancellation (its next heartbeat).
    cancel_acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    # Workflows (SPEC 17): the ids this task waits for, how many of them are not COMPLETED yet (a WAITING task
    # becomes PENDING at zero), and the workflow and step it belongs to. The edges are in task_dependencies.
    depends_on: Mapped[list[str] | None] = mapped_column(JSONType, nullable=True)
    pending_dependencies: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    workflow_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    step_key: Mapped[str | None] = mapped_column(String(100), nullable=True)

    __table_args__ = (
        UniqueConstraint("client_id", "idempotency_key", name="uq_tasks_client_idempotency"),
        Index("ix_tasks_status", "status"),
        Index("ix_tasks_assigned_agent_id", "assigned_agent_id"),
        Index("ix_tasks_client_id_created", "client_id", "created_at"),
        Index("ix_tasks_created", "created_at", "task_id"),
        Index(
            "ix_tasks_claim_order",
            "capability_required",
            "queue_position",
            "task_id",
            postgresql_where=text("status = 'PENDING'"),
            sqlite_where=text("status = 'PENDING'"),
        ),
        # What an agent holds: a claim counts it (its free concurrency) without reading the agent's finished tasks.
        Index(
            "ix_tasks_held",
            "assigned_agent_id",
            postgresql_where=text("status IN ('ASSIGNED', 'ACTIVE')"),
            sqlite_where=text("status IN ('ASSIGNED', 'ACTIVE')"),
        ),
        Index(
            "ix_tasks_lease_due",
            "lease_expires_at",
            postgresql_where=text("status = 'ASSIGNED'"),
            sqlite_where=text("status = 'ASSIGNED'"),
        ),
        Index(
            "ix_tasks_cancel_unacknowledged",
            "assigned_agent_id",
            postgresql_where=text("status = 'CANCELLED' AND cancel_acknowledged_at IS NULL"),
            sqlite_where=text("status = 'CANCELLED' AND cancel_acknowledged_at IS NULL"),
        ),
        Index(
            "ix_tasks_retry_due",
            "available_at",
            postgresql_where=text("status = 'PENDING'"),
            sqlite_where=text("status = 'PENDING'"),
        ),
        Index(
            "ix_tasks_workflow",
            "workflow_id",
            "step_key",
            postgresql_where=text("workflow_id IS NOT NULL"),
            sqlite_where=text("workflow_id IS NOT NULL"),
        ),
        Index(
            "ix_tasks_deadline_due",
            "deadline_at",
            postgresql_where=text("status = 'ACTIVE'"),
            sqlite_where=text("status = 'ACTIVE'"),
        ),
    )


Index("ix_tasks_priority_created", Task.priority.desc(), Task.created_at.asc())


class TaskAttempt(Base):
    __tablename__ = "task_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(String(64), ForeignKey("tasks.task_id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    agent_id: Mapped[str] = mapped_column(String(64))
    assigned_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    outcome: Mapped[str | None] = mapped_column(String(20), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (UniqueConstraint("task_id", "attempt", name="uq_task_attempts_task_attempt"),)
