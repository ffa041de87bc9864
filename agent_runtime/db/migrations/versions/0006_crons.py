"""Crons: runs on a schedule, per tenant (``client.crons``).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _ts(name: str, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "agent_crons",
        sa.Column("cron_id", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("key_id", sa.String(128)),
        sa.Column("assistant_id", sa.String(128), nullable=False),
        sa.Column("thread_id", sa.String(64)),
        sa.Column("schedule", sa.String(256), nullable=False),
        sa.Column("timezone", sa.String(64)),
        _ts("end_time", nullable=True),
        _ts("next_run_date", nullable=True),
        sa.Column("on_run_completed", sa.String(16)),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("metadata", JSON, nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
    )
    op.create_index("ix_agent_crons_due", "agent_crons", ["enabled", "next_run_date"])
    op.create_index("ix_agent_crons_tenant_created", "agent_crons", ["tenant_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_agent_crons_tenant_created", "agent_crons")
    op.drop_index("ix_agent_crons_due", "agent_crons")
    op.drop_table("agent_crons")
