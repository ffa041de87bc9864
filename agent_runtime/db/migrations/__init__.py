"""Versioned schema migrations of the metadata store (Alembic), the same on both backends.

:func:`upgrade` brings a database to the newest revision inside the caller's transaction
(the store holds a lock while it runs, so replicas starting together take turns). A
database made before migrations existed (tables from ``create_all``, no
``alembic_version``) is stamped at the foundation revision first, then upgraded.

New revision: add a file under ``versions/`` with ``down_revision`` set to the newest one;
write explicit operations (never import :mod:`agent_runtime.db.tables`, which moves on), and only
operations SQLite supports in place or through ``op.batch_alter_table``.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect

FOUNDATION_REVISION = "0001"
_HERE = Path(__file__).parent


def config(connection: Connection) -> Config:
    """An Alembic config for this package that runs on ``connection`` (no alembic.ini)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE))
    cfg.attributes["connection"] = connection
    return cfg


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(connection: Connection, revision: str = "head") -> None:
    """Upgrade the database on ``connection`` to ``revision`` (default: the newest)."""
    cfg = config(connection)
    if current_revision(connection) is None and inspect(connection).has_table("agent_tenants"):
        command.stamp(cfg, FOUNDATION_REVISION)
    command.upgrade(cfg, revision)
