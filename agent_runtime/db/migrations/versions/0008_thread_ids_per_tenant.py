"""Thread ids are per tenant: a thread row is keyed by (thread id, tenant).

Revision ID: 0008
Revises: 0007

Two tenants may now each have a thread with the same id; neither can tell the other's
exists (issue 13, defect 9). Checkpoints are filed under the tenant too
(:mod:`agent_runtime.execution.tenant_checkpoints`); the ones written before this
revision are keyed by the bare thread id, so every thread that exists now is listed in
``agent_unscoped_checkpoints`` with its owner, and the orchestrator moves their
checkpoints under that owner at start-up (``checkpoint_ops.adopt_unscoped``), emptying
the list.

Downgrading restores the single-column key, which fails if two tenants hold the same
id by then, and leaves checkpoints under their tenant's key: the older code no longer
finds them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
EMPTY_OBJECT = sa.text("'{}'")
PKEY = "agent_threads_pkey"


def _threads(*key: str) -> sa.Table:
    """agent_threads as revisions 0001 and 0002 made it, keyed by ``key``: SQLite copies
    the table to change its key, from this definition."""
    ts = sa.DateTime(timezone=True)
    return sa.Table(
        "agent_threads",
        sa.MetaData(),
        sa.Column("thread_id", sa.String(128), nullable=False),
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("graph_id", sa.String(256)),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("metadata", JSON, nullable=False),
        sa.Column("created_at", ts, nullable=False),
        sa.Column("updated_at", ts, nullable=False),
        sa.Column("config", JSON, nullable=False, server_default=EMPTY_OBJECT),
        sa.Column("state_values", JSON),
        sa.Column("interrupts", JSON, nullable=False, server_default=EMPTY_OBJECT),
        sa.Column("current_run_id", sa.String(128)),
        sa.Column("ttl_strategy", sa.String(32)),
        sa.Column("ttl_minutes", sa.Float()),
        sa.Column("expires_at", ts),
        sa.Column("state_updated_at", ts),
        sa.PrimaryKeyConstraint(*key, name=PKEY),
        sa.Index("ix_agent_threads_tenant_id", "tenant_id"),
        sa.Index("ix_agent_threads_expires_at", "expires_at"),
    )


def _key_threads_by(*key: str) -> None:
    if op.get_context().dialect.name == "postgresql":
        op.drop_constraint(PKEY, "agent_threads", type_="primary")
        op.create_primary_key(PKEY, "agent_threads", list(key))
        return
    with op.batch_alter_table("agent_threads", recreate="always", copy_from=_threads(*key)):
        pass


def upgrade() -> None:
    _key_threads_by("thread_id", "tenant_id")
    op.create_table(
        "agent_unscoped_checkpoints",
        sa.Column("thread_id", sa.String(128), primary_key=True),
        sa.Column("tenant_id", sa.String(128), nullable=False),
    )
    op.execute(
        "INSERT INTO agent_unscoped_checkpoints (thread_id, tenant_id) "
        "SELECT thread_id, tenant_id FROM agent_threads"
    )


def downgrade() -> None:
    op.drop_table("agent_unscoped_checkpoints")
    _key_threads_by("thread_id")
