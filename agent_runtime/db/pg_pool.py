"""A replica process's one Postgres pool, which its metadata store, LangGraph's saver and
LangGraph's store share, and the set-up lock of the last two.

The pool's connections are what LangGraph's saver and store need (autocommit, dict rows)
and are prepared as ``AGENT_DB_PREPARED_STATEMENTS`` says (on: at first use, as LangGraph
sets them; off for a pooler that cannot keep them). The metadata store's SQLAlchemy engine
borrows them one transaction at a time (:func:`borrow`) and reads them as tuples; every
connection leaves the pool as LangGraph's users expect it, whoever had it last. The pool
is made and closed by its owner (the replica, or a store that was given none), after
everything that uses it.

The saver and store run their own migrations once per database, under an advisory lock
that replicas starting together take turns on (:func:`setup_lock`, which holds behind
PgBouncer in transaction mode too).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

from psycopg import AsyncConnection, OperationalError
from psycopg.rows import DictRow, dict_row, tuple_row
from psycopg_pool import PoolTimeout

from agent_runtime.config.settings import StorageSettings
from agent_runtime.core.errors import DependencyUnavailable
from agent_runtime.db.reachable_pool import ReplicaPool

Pool = ReplicaPool
# Errors that mean "the database cannot serve us right now" during set-up.
UNAVAILABLE = (PoolTimeout, OperationalError, OSError)


def replica_pool(settings: StorageSettings, name: str, min_size: int = 1) -> Pool:
    """A closed pool of at most ``AGENT_DB_POOL_SIZE`` connections for one process's
    Postgres users (``name`` shows in pg_stat_activity as ``<AGENT_DB_APPLICATION_NAME>-<name>``,
    by default ``agent-runtime-<name>``)."""
    timeout_s = settings.db_timeout_s
    size = settings.db_pool_size
    return ReplicaPool(
        settings.postgres_dsn,
        min_size=min(min_size, size),
        max_size=size,
        kwargs={
            "autocommit": True,
            # 0: prepare at first use (LangGraph's setting); None: never.
            "prepare_threshold": 0 if settings.db_prepared_statements else None,
            "row_factory": dict_row,
            "connect_timeout": max(1, math.ceil(timeout_s)),
            "application_name": f"{settings.db_application_name}-{name}",
        },
        timeout=timeout_s,
        # Inline at every checkout (no I/O). A reset callback would return every
        # connection through the pool's worker tasks: about 12% slower when saturated.
        check=_as_langgraph_needs_it,
        open=False,
        name=f"agent-{name}",
        retry_s=settings.db_retry_s,
    )


async def borrow(pool: Pool) -> AsyncConnection[Any]:
    """One of ``pool``'s connections for SQLAlchemy, which reads rows as tuples; it
    comes back when SQLAlchemy closes it (:mod:`agent_runtime.db.pooled_engine`). It
    stays in autocommit: the metadata store's
    transactions send their own BEGIN (:func:`agent_runtime.db.engine.transaction`)."""
    conn = cast(AsyncConnection[Any], await pool.getconn())
    conn.row_factory = tuple_row
    return conn


async def _as_langgraph_needs_it(conn: AsyncConnection[Any]) -> None:
    """Dict rows and autocommit, also after SQLAlchemy had the connection (no I/O)."""
    conn.row_factory = dict_row
    if not conn.autocommit:
        await conn.set_autocommit(True)


@asynccontextmanager
async def setup_lock(
    pool: Pool, key: int, timeout_s: float, what: str
) -> AsyncIterator[AsyncConnection[DictRow]]:
    """Hold advisory lock ``key`` while setting up (on other connections of the pool).

    The lock is a transaction's (``pg_try_advisory_xact_lock``), held by a transaction
    left open on one connection until set-up ends: a transaction-mode pooler such as
    PgBouncer keeps that transaction on one server connection, and its end always frees
    the lock (a session lock would be taken on one server connection and released, or
    not, on another). The transaction is READ COMMITTED, writes nothing and sends its
    statements by the simple protocol, so between statements it holds no snapshot
    (measured on Postgres 15: the extended protocol's portal keeps the transaction's xmin
    set), and ``CREATE INDEX CONCURRENTLY`` in the set-up does not wait for it. Waiters
    poll rather than block for the same reason: a blocked ``pg_advisory_xact_lock`` is an
    open statement, which that index build waits for, a deadlock Postgres does not detect.
    """
    async with pool.connection(timeout=timeout_s) as conn:
        deadline = asyncio.get_running_loop().time() + max(timeout_s, 30.0)
        while True:
            await conn.execute("BEGIN ISOLATION LEVEL READ COMMITTED", prepare=False)
            # No parameters, not prepared: the simple protocol, which leaves no portal
            # (and no portal's snapshot) open after the statement.
            cursor = await conn.execute(
                f"SELECT pg_try_advisory_xact_lock({int(key)}) AS locked", prepare=False
            )
            row = await cursor.fetchone()
            if row is not None and row["locked"]:
                break
            await conn.execute("ROLLBACK", prepare=False)
            if asyncio.get_running_loop().time() > deadline:
                raise DependencyUnavailable(f"timed out waiting for another replica's {what}")
            await asyncio.sleep(0.1)
        try:
            yield conn
        finally:
            # Frees the lock; a connection that broke meanwhile has lost it already.
            if not conn.broken:
                await conn.execute("COMMIT", prepare=False)


async def open_and_set_up(
    pool: Pool,
    key: int,
    timeout_s: float,
    what: str,
    setup: Callable[[], Awaitable[None]],
    on_failure: Callable[[], Awaitable[None]],
    *,
    open_pool: bool,
) -> None:
    """Open ``pool`` (if ``open_pool``: the caller owns it) and run ``setup`` under the
    lock; a database that cannot be reached is :class:`DependencyUnavailable` naming
    ``what``, after ``on_failure`` cleaned up."""
    try:
        if open_pool:
            await pool.open(wait=True, timeout=timeout_s)
        async with setup_lock(pool, key, timeout_s, f"{what} setup"):
            await setup()
    except UNAVAILABLE as exc:
        await on_failure()
        raise DependencyUnavailable(f"{what} database unavailable ({type(exc).__name__})") from exc


async def open_replica_pool(settings: StorageSettings, name: str, min_size: int = 1) -> Pool | None:
    """The process's one pool, open (None on SQLite). It does not wait for connections:
    a database that is down is reported by the first user that needs one, and the pool
    keeps trying meanwhile."""
    if not settings.is_postgres:
        return None
    pool = replica_pool(settings, name, min_size)
    await pool.open(wait=False)
    return pool
