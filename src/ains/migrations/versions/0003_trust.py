"""trust records and agent metrics

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "trust_records",
        sa.Column("record_id", sa.String(64), primary_key=True),
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("event_type", sa.String(32), nullable=False),
        sa.Column("task_id", sa.String(64), nullable=True),
        sa.Column("trust_delta", sa.Float(), nullable=False),
        sa.Column("trust_score_before", sa.Float(), nullable=False),
        sa.Column("trust_score_after", sa.Float(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("previous_hash", sa.String(64), nullable=False),
        sa.Column("record_hash", sa.String(64), nullable=False),
        sa.UniqueConstraint("agent_id", "seq", name="uq_trust_records_agent_seq"),
    )
    op.create_index("ix_trust_records_agent_id", "trust_records", ["agent_id"])
    op.create_index("ix_trust_records_created_at", "trust_records", ["created_at"])
    op.create_index("ix_trust_records_agent_created", "trust_records", ["agent_id", "created_at"])
    with op.batch_alter_table("agents") as batch_op:
        batch_op.add_column(sa.Column("trust_records_count", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("trust_chain_head", sa.String(64), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("total_tasks_completed", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("total_tasks_failed", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("total_completion_seconds", sa.Float(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("last_task_completed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("agents") as batch_op:
        for column in (
            "last_task_completed_at",
            "total_completion_seconds",
            "total_tasks_failed",
            "total_tasks_completed",
            "trust_chain_head",
            "trust_records_count",
        ):
            batch_op.drop_column(column)
    op.drop_table("trust_records")
