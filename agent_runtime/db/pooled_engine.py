"""SQLAlchemy over the replica's psycopg pool (:mod:`agent_runtime.db.pg_pool`).

The engine keeps no connections of its own (``NullPool``): each ``connect()`` borrows one
from the pool and closing gives it back, so the metadata store counts against the same
``AGENT_DB_POOL_SIZE`` as LangGraph's saver and store. Its dialect is psycopg's, less the
per-connection hook SQLAlchemy runs on every connection it makes: on a borrowed
connection that would add a notice handler at every borrow, without end.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import registry
from sqlalchemy.dialects.postgresql.psycopg import PGDialectAsync_psycopg
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from agent_runtime.db.pg_pool import Pool, borrow

_DIALECT = "postgresql.agent_borrowed"


class BorrowedPsycopgDialect(PGDialectAsync_psycopg):
    """psycopg's async dialect for connections the pool owns (set up by the pool)."""

    supports_statement_cache = True

    def on_connect(self) -> None:
        return None


def pooled_engine(pool: Pool) -> AsyncEngine:
    """An engine whose connections are ``pool``'s, one per ``connect()``."""
    # The documented way to name a dialect of one's own; registering again is harmless.
    registry.register(_DIALECT, __name__, BorrowedPsycopgDialect.__name__)

    async def creator() -> Any:
        return await borrow(pool)

    return create_async_engine(
        "postgresql+agent_borrowed://", async_creator=creator, poolclass=NullPool
    )
