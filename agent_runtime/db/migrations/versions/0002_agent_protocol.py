"""Agent Protocol: assistants with versions, thread state and retention, run queue and
leases, stored stream events.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
EMPTY_OBJECT = sa.text("'{}'")


def _ts(name: str, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _assistant_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("graph_id", sa.String(256), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("description", sa.Text()),
        sa.Column("config", JSON, nullable=False),
        sa.Column("context", JSON, nullable=False),
        sa.Column("metadata", JSON, nullable=False),
    ]


def upgrade() -> None:
    # Rows written before this revision get the defaults a new row would have.
    with op.batch_alter_table("agent_threads") as batch:
        batch.add_column(sa.Column("config", JSON, nullable=False, server_default=EMPTY_OBJECT))
        batch.add_column(sa.Column("state_values", JSON))
        batch.add_column(sa.Column("interrupts", JSON, nullable=False, server_default=EMPTY_OBJECT))
        batch.add_column(sa.Column("current_run_id", sa.String(128)))
        batch.add_column(sa.Column("ttl_strategy", sa.String(32)))
        batch.add_column(sa.Column("ttl_minutes", sa.Float()))
        batch.add_column(_ts("expires_at", nullable=True))
        batch.add_column(_ts("state_updated_at", nullable=True))
    op.create_index("ix_agent_threads_expires_at", "agent_threads", ["expires_at"])

    with op.batch_alter_table("agent_runs") as batch:
        batch.add_column(sa.Column("graph_id", sa.String(256)))
        batch.add_column(sa.Column("kwargs", JSON, nullable=False, server_default=EMPTY_OBJECT))
        batch.add_column(
            sa.Column("multitask_strategy", sa.String(16), nullable=False, server_default="reject")
        )
        batch.add_column(sa.Column("attempt", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("worker_id", sa.String(128)))
        batch.add_column(_ts("heartbeat_at", nullable=True))
        batch.add_column(sa.Column("cancel_action", sa.String(16)))
        batch.add_column(
            sa.Column("temporary", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_index("ix_agent_runs_status_created", "agent_runs", ["status", "created_at"])

    op.create_table(
        "agent_run_events",
        sa.Column("run_id", sa.String(128), primary_key=True),
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("event", sa.String(256), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        _ts("created_at"),
    )
    op.create_table(
        "agent_assistants",
        sa.Column("tenant_id", sa.String(128), primary_key=True),
        sa.Column("assistant_id", sa.String(128), primary_key=True),
        *_assistant_columns(),
        sa.Column("version", sa.Integer(), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
    )
    op.create_index(
        "ix_agent_assistants_tenant_graph", "agent_assistants", ["tenant_id", "graph_id"]
    )
    op.create_table(
        "agent_assistant_versions",
        sa.Column("tenant_id", sa.String(128), primary_key=True),
        sa.Column("assistant_id", sa.String(128), primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True, autoincrement=False),
        *_assistant_columns(),
        _ts("created_at"),
    )


def downgrade() -> None:
    op.drop_table("agent_assistant_versions")
    op.drop_table("agent_assistants")
    op.drop_table("agent_run_events")
    op.drop_index("ix_agent_runs_status_created", "agent_runs")
    with op.batch_alter_table("agent_runs") as batch:
        for name in (
            "temporary", "cancel_action", "heartbeat_at", "worker_id",
            "attempt", "multitask_strategy", "kwargs", "graph_id",
        ):  # fmt: skip
            batch.drop_column(name)
    op.drop_index("ix_agent_threads_expires_at", "agent_threads")
    with op.batch_alter_table("agent_threads") as batch:
        for name in (
            "state_updated_at", "expires_at", "ttl_minutes", "ttl_strategy", "current_run_id",
            "interrupts", "state_values", "config",
        ):  # fmt: skip
            batch.drop_column(name)
