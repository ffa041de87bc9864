"""Crons count their consecutive failures; the scheduler disables one past a limit.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("agent_crons") as batch:
        batch.add_column(
            sa.Column("failures", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
        batch.add_column(sa.Column("last_error", sa.String(1000)))


def downgrade() -> None:
    with op.batch_alter_table("agent_crons") as batch:
        batch.drop_column("last_error")
        batch.drop_column("failures")
