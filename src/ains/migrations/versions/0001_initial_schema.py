"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-26 10:28:52.452799
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agents",
        sa.Column("agent_id", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=True),
        sa.Column("public_key", sa.String(length=64), nullable=False),
        sa.Column("endpoint", sa.String(length=2000), nullable=True),
        sa.Column("capabilities", JSON, nullable=False),
        sa.Column("tags", JSON, nullable=False),
        sa.Column("max_concurrency", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("trust_score", sa.Float(), nullable=False),
        sa.Column("last_heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("agent_id"),
    )
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.create_index("ix_agents_last_heartbeat_at", ["last_heartbeat_at"], unique=False)
        batch_op.create_index("ix_agents_public_key", ["public_key"], unique=True)
        batch_op.create_index("ix_agents_status", ["status"], unique=False)
        batch_op.create_index("ix_agents_trust_score", [sa.literal_column("trust_score DESC")], unique=False)

    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("principal_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("scopes", JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key_id"),
        sa.UniqueConstraint("key_hash"),
    )
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.create_index("ix_api_keys_principal", ["kind", "principal_id"], unique=False)

    op.create_table(
        "audit_logs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("actor_kind", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target_type", sa.String(length=32), nullable=False),
        sa.Column("target_id", sa.String(length=64), nullable=True),
        sa.Column("details", JSON, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("audit_logs", schema=None) as batch_op:
        batch_op.create_index("ix_audit_logs_action", ["action"], unique=False)
        batch_op.create_index("ix_audit_logs_created_at", ["created_at"], unique=False)

    op.create_table(
        "tasks",
        sa.Column("task_id", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("task_type", sa.String(length=100), nullable=False),
        sa.Column("capability_required", sa.String(length=130), nullable=False),
        sa.Column("input_data", JSON, nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("max_retries", sa.Integer(), nullable=False),
        sa.Column("retry_policy", sa.String(length=16), nullable=False),
        sa.Column("retry_jitter", sa.Boolean(), nullable=False),
        sa.Column("timeout_seconds", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("metadata", JSON, nullable=False),
        sa.Column("min_trust_score", sa.Float(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("assigned_agent_id", sa.String(length=64), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("retry_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("available_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("queue_position", sa.Float(), nullable=False),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_retry_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("result_data", JSON, nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancelled_by", sa.String(length=64), nullable=True),
        sa.Column("cancellation_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("task_id"),
        sa.UniqueConstraint("client_id", "idempotency_key", name="uq_tasks_client_idempotency"),
    )
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.create_index("ix_tasks_assigned_agent_id", ["assigned_agent_id"], unique=False)
        batch_op.create_index(
            "ix_tasks_claim_order",
            ["capability_required", "queue_position", "task_id"],
            unique=False,
            postgresql_where=sa.text("status = 'PENDING'"),
            sqlite_where=sa.text("status = 'PENDING'"),
        )
        batch_op.create_index("ix_tasks_client_id_created", ["client_id", "created_at"], unique=False)
        batch_op.create_index("ix_tasks_created", ["created_at", "task_id"], unique=False)
        batch_op.create_index(
            "ix_tasks_deadline_due",
            ["deadline_at"],
            unique=False,
            postgresql_where=sa.text("status = 'ACTIVE'"),
            sqlite_where=sa.text("status = 'ACTIVE'"),
        )
        batch_op.create_index(
            "ix_tasks_lease_due",
            ["lease_expires_at"],
            unique=False,
            postgresql_where=sa.text("status = 'ASSIGNED'"),
            sqlite_where=sa.text("status = 'ASSIGNED'"),
        )
        batch_op.create_index(
            "ix_tasks_priority_created",
            [sa.literal_column("priority DESC"), sa.literal_column("created_at ASC")],
            unique=False,
        )
        batch_op.create_index("ix_tasks_status", ["status"], unique=False)

    op.create_table(
        "used_signatures",
        sa.Column("signature_hash", sa.String(length=64), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("signature_hash"),
    )
    with op.batch_alter_table("used_signatures", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_used_signatures_used_at"), ["used_at"], unique=False)

    op.create_table(
        "task_attempts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("task_id", sa.String(length=64), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=False),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=20), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.task_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("task_id", "attempt", name="uq_task_attempts_task_attempt"),
    )


def downgrade() -> None:
    op.drop_table("task_attempts")
    with op.batch_alter_table("used_signatures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_used_signatures_used_at"))

    op.drop_table("used_signatures")
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_tasks_status")
        batch_op.drop_index("ix_tasks_priority_created")
        batch_op.drop_index(
            "ix_tasks_lease_due",
            postgresql_where=sa.text("status = 'ASSIGNED'"),
            sqlite_where=sa.text("status = 'ASSIGNED'"),
        )
        batch_op.drop_index(
            "ix_tasks_deadline_due",
            postgresql_where=sa.text("status = 'ACTIVE'"),
            sqlite_where=sa.text("status = 'ACTIVE'"),
        )
        batch_op.drop_index("ix_tasks_created")
        batch_op.drop_index("ix_tasks_client_id_created")
        batch_op.drop_index(
            "ix_tasks_claim_order",
            postgresql_where=sa.text("status = 'PENDING'"),
            sqlite_where=sa.text("status = 'PENDING'"),
        )
        batch_op.drop_index("ix_tasks_assigned_agent_id")

    op.drop_table("tasks")
    with op.batch_alter_table("audit_logs", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_logs_created_at")
        batch_op.drop_index("ix_audit_logs_action")

    op.drop_table("audit_logs")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_index("ix_api_keys_principal")

    op.drop_table("api_keys")
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_index("ix_agents_trust_score")
        batch_op.drop_index("ix_agents_status")
        batch_op.drop_index("ix_agents_public_key")
        batch_op.drop_index("ix_agents_last_heartbeat_at")

    op.drop_table("agents")
