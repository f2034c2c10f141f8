"""cancellation acknowledgement and the retry-due index

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch_op:
        batch_op.add_column(sa.Column("cancel_acknowledged_at", sa.DateTime(timezone=True), nullable=True))
    unacknowledged = sa.text("status = 'CANCELLED' AND cancel_acknowledged_at IS NULL")
    op.create_index(
        "ix_tasks_cancel_unacknowledged",
        "tasks",
        ["assigned_agent_id"],
        postgresql_where=unacknowledged,
        sqlite_where=unacknowledged,
    )
    pending = sa.text("status = 'PENDING'")
    op.create_index("ix_tasks_retry_due", "tasks", ["available_at"], postgresql_where=pending, sqlite_where=pending)


def downgrade() -> None:
    op.drop_index("ix_tasks_retry_due", "tasks")
    op.drop_index("ix_tasks_cancel_unacknowledged", "tasks")
    with op.batch_alter_table("tasks") as batch_op:
        batch_op.drop_column("cancel_acknowledged_at")
