"""deliveries ordered per task, several in flight per webhook

Each delivery carries its event's task (backfilled from task_events), so the
dispatcher can hold back only the later deliveries of the same task to the
same webhook; `leased_until` marks an attempt in flight, so the per-webhook
in-flight limit holds across dispatcher processes.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

PENDING = sa.text("status = 'pending'")
LEASED = sa.text("leased_until IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("task_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("leased_until", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE webhook_deliveries SET task_id = "
        "(SELECT task_events.task_id FROM task_events WHERE task_events.event_id = webhook_deliveries.event_id)"
    )
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.alter_column("task_id", existing_type=sa.String(length=64), nullable=False)
        batch_op.create_index(
            "ix_webhook_deliveries_pending_task",
            ["webhook_id", "task_id", "id"],
            unique=False,
            postgresql_where=PENDING,
            sqlite_where=PENDING,
        )
        batch_op.create_index(
            "ix_webhook_deliveries_leased",
            ["webhook_id", "leased_until"],
            unique=False,
            postgresql_where=LEASED,
            sqlite_where=LEASED,
        )


def downgrade() -> None:
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_deliveries_leased", postgresql_where=LEASED, sqlite_where=LEASED)
        batch_op.drop_index("ix_webhook_deliveries_pending_task", postgresql_where=PENDING, sqlite_where=PENDING)
        batch_op.drop_column("leased_until")
        batch_op.drop_column("task_id")
