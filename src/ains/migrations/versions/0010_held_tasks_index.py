"""an index of the tasks each agent holds

A claim counts the tasks its agent holds (ASSIGNED or ACTIVE) to know its free
concurrency. Through the index of every task an agent was ever given, that count
read each of them, finished ones included, and cost more as they piled up; this
partial index holds only the held ones.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28 20:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

HELD = sa.text("status IN ('ASSIGNED', 'ACTIVE')")


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.create_index(
            "ix_tasks_held", ["assigned_agent_id"], unique=False, postgresql_where=HELD, sqlite_where=HELD
        )


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_tasks_held", postgresql_where=HELD, sqlite_where=HELD)
