"""tasks remember whether their submitter's outcomes may move trust

An attempt's outcome moves the assignee's trust only when the task came from the
admin, a client key, or another agent that was `high` or better when it
submitted. Existing tasks came from before the rule and keep moving trust.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 11:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("submitter_trusted", sa.Boolean(), nullable=False, server_default=sa.true()))


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_column("submitter_trusted")
