"""Postgres plumbing LangGraph's saver and store share: their pool and their setup lock.

Both run over a psycopg pool with the connection options they need (autocommit, dict
rows; ``prepare_threshold=0`` keeps them usable behind transaction-mode poolers such as
PgBouncer), and both run their own migrations once per database, under an advisory lock
that replicas starting together take turns on.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from psycopg import AsyncConnection, OperationalError
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from agent_runtime.config.settings import StorageSettings
from agent_runtime.core.errors import DependencyUnavailable

Pool = AsyncConnectionPool[AsyncConnection[DictRow]]
# Errors that mean "the database cannot serve us right now" during set-up.
UNAVAILABLE = (PoolTimeout, OperationalError, OSError)


def langgraph_pool(settings: StorageSettings, name: str, min_size: int) -> Pool:
    """A closed pool for one LangGraph component (``name`` shows in pg_stat_activity)."""
    timeout_s = settings.db_timeout_s
    return AsyncConnectionPool(
        settings.postgres_dsn,
        min_size=min_size,
        max_size=max(min_size, settings.db_pool_size),
        kwargs={
            "autocommit": True,
            "prepare_threshold": 0,
            "row_factory": dict_row,
            "connect_timeout": max(1, math.ceil(timeout_s)),
            "application_name": f"agent-runtime-{name}",
        },
        timeout=timeout_s,
        open=False,
        name=f"agent-{name}",
    )


@asynccontextmanager
async def setup_lock(
    pool: Pool, key: int, timeout_s: float, what: str
) -> AsyncIterator[AsyncConnection[DictRow]]:
    """Hold advisory lock ``key`` on one of the pool's connections while setting up.

    The lock is taken by polling ``pg_try_advisory_lock``: a blocking
    ``pg_advisory_lock`` would keep the waiter's statement open, and the holder's
    ``CREATE INDEX CONCURRENTLY`` waits for every open statement, a deadlock Postgres does
    not detect. A waiter that polls is idle between tries.
    """
    async with pool.connection(timeout=timeout_s) as conn:
        deadline = asyncio.get_running_loop().time() + max(timeout_s, 30.0)
        while True:
            cursor = await conn.execute("SELECT pg_try_advisory_lock(%s) AS locked", (key,))
            row = await cursor.fetchone()
            if row is not None and row["locked"]:
                break
            if asyncio.get_running_loop().time() > deadline:
                raise DependencyUnavailable(f"timed out waiting for another replica's {what}")
            await asyncio.sleep(0.1)
        try:
            yield conn
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (key,))


async def open_and_set_up(
    pool: Pool,
    key: int,
    timeout_s: float,
    what: str,
    setup: Callable[[], Awaitable[None]],
    on_failure: Callable[[], Awaitable[None]],
) -> None:
    """Open ``pool`` and run ``setup`` under the lock; a database that cannot be reached
    is :class:`DependencyUnavailable` naming ``what``, after ``on_failure`` cleaned up."""
    try:
        await pool.open(wait=True, timeout=timeout_s)
        async with setup_lock(pool, key, timeout_s, f"{what} setup"):
            await setup()
    except UNAVAILABLE as exc:
        await on_failure()
        raise DependencyUnavailable(f"{what} database unavailable ({type(exc).__name__})") from exc
