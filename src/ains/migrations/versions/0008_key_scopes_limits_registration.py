"""keys expire, rotate and carry rate limits; registration tokens; the per-client pending cap

- api_keys: `expires_at` (also a rotated key's grace), per-key token bucket
  (`rate_limit_per_second`, `rate_limit_burst`; NULL means the server's
  defaults), `rotated_from`, and `expired_use_logged_at` (the audit entry for
  the first use after expiry is written once).
- The scope `webhooks` becomes the pair `webhooks:read`, `webhooks:write`.
- registration_tokens: hashed tokens for `agent_registration=token`.
- client_quotas: each client's remaining allowance under
  `max_pending_tasks_per_client`, and a partial index to count a client's
  non-final tasks when the allowance runs out.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 12:30:00
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

OPEN_TASKS = "status NOT IN ('COMPLETED', 'FAILED', 'CANCELLED')"


def _replace_scope(old: list[str], new: list[str]) -> None:
    bind = op.get_bind()
    keys = sa.table("api_keys", sa.column("key_id", sa.String), sa.column("scopes", sa.JSON))
    for key_id, scopes in bind.execute(sa.select(keys.c.key_id, keys.c.scopes)).all():
        scopes = json.loads(scopes) if isinstance(scopes, str) else list(scopes or [])
        if not any(scope in scopes for scope in old):
            continue
        changed = [scope for scope in scopes if scope not in old]
        changed += [scope for scope in new if scope not in changed]
        bind.execute(sa.update(keys).where(keys.c.key_id == key_id).values(scopes=changed))


def upgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("rate_limit_per_second", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("rate_limit_burst", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("rotated_from", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("expired_use_logged_at", sa.DateTime(timezone=True), nullable=True))
    _replace_scope(["webhooks"], ["webhooks:read", "webhooks:write"])

    op.create_table(
        "registration_tokens",
        sa.Column("token_id", sa.String(length=64), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("max_uses", sa.Integer(), nullable=True),
        sa.Column("uses", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("token_id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_table(
        "client_quotas",
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("allowance", sa.Integer(), nullable=False),
        sa.Column("counted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("client_id"),
    )
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.create_index(
            "ix_tasks_client_open",
            ["client_id"],
            unique=False,
            postgresql_where=sa.text(OPEN_TASKS),
            sqlite_where=sa.text(OPEN_TASKS),
        )


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_tasks_client_open")
    op.drop_table("client_quotas")
    op.drop_table("registration_tokens")
    _replace_scope(["webhooks:read", "webhooks:write"], ["webhooks"])
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("expired_use_logged_at")
        batch_op.drop_column("rotated_from")
        batch_op.drop_column("rate_limit_burst")
        batch_op.drop_column("rate_limit_per_second")
        batch_op.drop_column("expires_at")
