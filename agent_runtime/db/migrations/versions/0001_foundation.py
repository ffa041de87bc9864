"""Foundation schema: tenants, API keys, threads, runs.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _ts(name: str, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "agent_tenants",
        sa.Column("tenant_id", sa.String(128), primary_key=True),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        _ts("created_at"),
    )
    op.create_table(
        "agent_api_keys",
        sa.Column("key_id", sa.String(128), primary_key=True),
        sa.Column(
            "tenant_id", sa.String(128), sa.ForeignKey("agent_tenants.tenant_id"), nullable=False
        ),
        sa.Column("key_hash", sa.String(256), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        _ts("created_at"),
    )
    op.create_index("ix_agent_api_keys_tenant_id", "agent_api_keys", ["tenant_id"])
    op.create_table(
        "agent_threads",
        sa.Column("thread_id", sa.String(128), primary_key=True),
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("graph_id", sa.String(256)),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("metadata", JSON, nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
    )
    op.create_index("ix_agent_threads_tenant_id", "agent_threads", ["tenant_id"])
    op.create_table(
        "agent_runs",
        sa.Column("run_id", sa.String(128), primary_key=True),
        sa.Column("thread_id", sa.String(128)),
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("assistant_id", sa.String(256), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("metadata", JSON, nullable=False),
        sa.Column("error", sa.Text()),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
    )
    op.create_index("ix_agent_runs_thread_created", "agent_runs", ["thread_id", "created_at"])
    op.create_index("ix_agent_runs_tenant_id", "agent_runs", ["tenant_id"])


def downgrade() -> None:
    for table in ("agent_runs", "agent_threads", "agent_api_keys", "agent_tenants"):
        op.drop_table(table)
