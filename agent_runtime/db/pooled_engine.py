"""SQLAlchemy over the replica's psycopg pool (:mod:`agent_runtime.db.pg_pool`).

The engine keeps no connections of its own (``NullPool``): each ``connect()`` borrows one
from the pool and closing gives it back, so the metadata store counts against the same
``AGENT_DB_POOL_SIZE`` as LangGraph's saver and store. Its dialect is psycopg's, except
for what it does with a connection it made: SQLAlchemy's per-connection hook would add a
notice handler at every borrow, without end, and closing must give the connection back
to the pool, broken or not (psycopg's ``close()`` of a broken connection does nothing, so
the pool would never hear of it and would count it as lent for good).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import registry
from sqlalchemy.dialects.postgresql.psycopg import PGDialectAsync_psycopg
from sqlalchemy.engine import URL, Dialect
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from sqlalchemy.util import await_

from agent_runtime.db.pg_pool import Pool, borrow

_DIALECT = "postgresql.agent_borrowed"


class BorrowedPsycopgDialect(PGDialectAsync_psycopg):
    """psycopg's async dialect for connections the pool owns (and set up)."""

    supports_statement_cache = True

    def __init__(self, lender: Pool | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call, unused-ignore]
        self._lender = lender

    @classmethod
    def get_async_dialect_cls(cls, url: URL) -> type[Dialect]:
        # psycopg's own answers with its async dialect, which would replace this one.
        return cls

    def on_connect(self) -> None:
        return None

    def do_close(self, dbapi_connection: Any) -> None:
        # Also where SQLAlchemy's terminate ends (an invalidated connection).
        lender = self._lender
        if lender is None:
            raise RuntimeError("a borrowed connection without its pool")
        conn = dbapi_connection.driver_connection
        await_(lender.putconn(conn))  # a broken one is replaced by a new one
        if conn.broken:
            # The server went away under it: so it did under the pool's idle ones.
            # Replace them too, rather than fail one call on each (as SQLAlchemy's own
            # pool did, invalidating itself on a disconnect).
            await_(lender.drain())


def pooled_engine(pool: Pool) -> AsyncEngine:
    """An engine whose connections are ``pool``'s, one per ``connect()``."""
    # The documented way to name a dialect of one's own; registering again is harmless.
    registry.register(_DIALECT, __name__, BorrowedPsycopgDialect.__name__)

    async def creator() -> Any:
        return await borrow(pool)

    return create_async_engine(
        "postgresql+agent_borrowed://", async_creator=creator, poolclass=NullPool, lender=pool
    )
