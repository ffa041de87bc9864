"""Cost: the usage ledger (one row per model call) and spending budgets.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _ts(name: str) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "agent_usage",
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("key_id", sa.String(128)),
        sa.Column("thread_id", sa.String(128)),
        sa.Column("run_id", sa.String(128)),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("alias", sa.String(256)),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("cost_micro_usd", sa.BigInteger(), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("usage_day", sa.String(10), nullable=False),
        _ts("created_at"),
    )
    op.create_index("ix_agent_usage_tenant_day", "agent_usage", ["tenant_id", "usage_day"])
    op.create_index("ix_agent_usage_day", "agent_usage", ["usage_day"])
    op.create_table(
        "agent_budgets",
        sa.Column("tenant_id", sa.String(128), primary_key=True),
        sa.Column("scope", sa.String(8), primary_key=True),
        sa.Column("key_id", sa.String(128), primary_key=True),
        sa.Column("period", sa.String(8), primary_key=True),
        sa.Column("limit_micro_usd", sa.BigInteger(), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
    )


def downgrade() -> None:
    op.drop_table("agent_budgets")
    op.drop_index("ix_agent_usage_day", "agent_usage")
    op.drop_index("ix_agent_usage_tenant_day", "agent_usage")
    op.drop_table("agent_usage")
