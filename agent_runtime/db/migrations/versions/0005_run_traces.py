"""Run traces: each ended run's path (nodes, model calls, tool calls) as one JSON document.

Revision ID: 0005
Revises: 0004

Runs that ended before this revision have no trace; the API answers them with an empty
one.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "agent_run_traces",
        sa.Column("run_id", sa.String(128), primary_key=True),
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("trace", JSON, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("agent_run_traces")
