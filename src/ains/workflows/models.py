"""The dependency edges between tasks, and the workflow row that counts its steps by outcome.

`task_dependencies` is indexed both ways: by `task_id` (its primary key) to read what a task waits for, and by
`depends_on_task_id` to find the dependents of a task that just finished, so resolving them reads only them.
A workflow's counts are changed in the transactions that finish its steps, under the workflow row's lock, so
"the last step finished" is decided there, once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ains.core.database import Base, JSONType, UTCDateTime


class TaskDependency(Base):
    __tablename__ = "task_dependencies"

    task_id: Mapped[str] = mapped_column(String(64), ForeignKey("tasks.task_id", ondelete="CASCADE"), primary_key=True)
    depends_on_task_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("tasks.task_id", ondelete="CASCADE"), primary_key=True
    )

    __table_args__ = (Index("ix_task_dependencies_depends_on", "depends_on_task_id", "task_id"),)


class Workflow(Base):
    __tablename__ = "workflows"

    workflow_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    workflow_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType)
    total_steps: Mapped[int] = mapped_column(Integer)
    completed_steps: Mapped[int] = mapped_column(Integer, default=0)
    failed_steps: Mapped[int] = mapped_column(Integer, default=0)
    cancelled_steps: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (
        Index("ix_workflows_client_created", "client_id", "created_at", "workflow_id"),
        Index("ix_workflows_created", "created_at", "workflow_id"),
    )
