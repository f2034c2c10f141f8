"""workflows, task dependencies, schedules (SPEC 17)

- tasks: `depends_on` (the ids as submitted), `pending_dependencies` (how many
  dependencies are not yet COMPLETED; a WAITING task becomes PENDING when it
  reaches zero), `workflow_id` and `step_key`, and an index to read a
  workflow's steps.
- task_dependencies: one row per (task, dependency), indexed both ways, so
  resolving a completed task's dependents reads only its dependents.
- workflows: a graph submitted in one request, with counts of its steps by
  outcome (updated in the transactions that finish steps, under the row lock).
- schedules: cron expression, time zone, the task body, and the next tick.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27 13:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
HAS_WORKFLOW = "workflow_id IS NOT NULL"
ACTIVE_SCHEDULES = "active"


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("depends_on", JSON, nullable=True))
        batch_op.add_column(sa.Column("pending_dependencies", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("workflow_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("step_key", sa.String(length=100), nullable=True))
        batch_op.create_index(
            "ix_tasks_workflow",
            ["workflow_id", "step_key"],
            unique=False,
            postgresql_where=sa.text(HAS_WORKFLOW),
            sqlite_where=sa.text(HAS_WORKFLOW),
        )

    op.create_table(
        "task_dependencies",
        sa.Column("task_id", sa.String(length=64), nullable=False),
        sa.Column("depends_on_task_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.task_id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["depends_on_task_id"], ["tasks.task_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("task_id", "depends_on_task_id"),
    )
    op.create_index(
        "ix_task_dependencies_depends_on", "task_dependencies", ["depends_on_task_id", "task_id"], unique=False
    )

    op.create_table(
        "workflows",
        sa.Column("workflow_id", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("metadata", JSON, nullable=False),
        sa.Column("total_steps", sa.Integer(), nullable=False),
        sa.Column("completed_steps", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("failed_steps", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("cancelled_steps", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("workflow_id"),
    )
    op.create_index("ix_workflows_client_created", "workflows", ["client_id", "created_at", "workflow_id"])
    op.create_index("ix_workflows_created", "workflows", ["created_at", "workflow_id"])

    op.create_table(
        "schedules",
        sa.Column("schedule_id", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("cron", sa.String(length=200), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("task", JSON, nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_task_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("schedule_id"),
    )
    op.create_index("ix_schedules_client_created", "schedules", ["client_id", "created_at", "schedule_id"])
    op.create_index("ix_schedules_created", "schedules", ["created_at", "schedule_id"])
    op.create_index(
        "ix_schedules_due",
        "schedules",
        ["next_run_at"],
        postgresql_where=sa.text(ACTIVE_SCHEDULES),
        sqlite_where=sa.text(ACTIVE_SCHEDULES),
    )


def downgrade() -> None:
    op.drop_index("ix_schedules_due", table_name="schedules")
    op.drop_index("ix_schedules_created", table_name="schedules")
    op.drop_index("ix_schedules_client_created", table_name="schedules")
    op.drop_table("schedules")
    op.drop_index("ix_workflows_created", table_name="workflows")
    op.drop_index("ix_workflows_client_created", table_name="workflows")
    op.drop_table("workflows")
    op.drop_index("ix_task_dependencies_depends_on", table_name="task_dependencies")
    op.drop_table("task_dependencies")
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_tasks_workflow", postgresql_where=sa.text(HAS_WORKFLOW), sqlite_where=sa.text(HAS_WORKFLOW)
        )
        batch_op.drop_column("step_key")
        batch_op.drop_column("workflow_id")
        batch_op.drop_column("pending_dependencies")
        batch_op.drop_column("depends_on")
