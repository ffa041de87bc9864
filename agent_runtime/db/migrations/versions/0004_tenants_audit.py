"""Tenants and keys: scopes on keys, a tenant's own limits, and the audit log.

Revision ID: 0004
Revises: 0003

Keys made before this revision get the ``read`` and ``run`` scopes, so nothing that
worked stops working.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
DEFAULT_SCOPES = sa.text("""'["read", "run"]'""")


def _ts(name: str) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    with op.batch_alter_table("agent_api_keys") as batch:
        batch.add_column(sa.Column("scopes", JSON, nullable=False, server_default=DEFAULT_SCOPES))
    op.create_table(
        "agent_tenant_limits",
        sa.Column("tenant_id", sa.String(128), primary_key=True),
        sa.Column("requests_per_minute", sa.Integer()),
        sa.Column("tokens_per_minute", sa.BigInteger()),
        sa.Column("max_concurrent_runs", sa.Integer()),
        sa.Column("max_queued_runs", sa.Integer()),
        _ts("updated_at"),
    )
    op.create_table(
        "agent_audit",
        sa.Column("audit_id", sa.String(36), primary_key=True),
        _ts("created_at"),
        sa.Column("tenant_id", sa.String(128)),
        sa.Column("key_id", sa.String(128)),
        sa.Column("actor", sa.String(32), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(256)),
        sa.Column("details", JSON, nullable=False),
    )
    op.create_index("ix_agent_audit_created", "agent_audit", ["created_at"])
    op.create_index("ix_agent_audit_tenant_created", "agent_audit", ["tenant_id", "created_at"])
    op.create_index("ix_agent_audit_action_created", "agent_audit", ["action", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_agent_audit_action_created", "agent_audit")
    op.drop_index("ix_agent_audit_tenant_created", "agent_audit")
    op.drop_index("ix_agent_audit_created", "agent_audit")
    op.drop_table("agent_audit")
    op.drop_table("agent_tenant_limits")
    with op.batch_alter_table("agent_api_keys") as batch:
        batch.drop_column("scopes")
