"""SQLAlchemy plumbing for :class:`agent_runtime.db.metadata.MetadataStore`.

The async engine for Postgres (over the replica's psycopg pool,
:mod:`agent_runtime.db.pooled_engine`) or SQLite (aiosqlite), SQLite's WAL switch and its
"database is locked" retry, schema migrations, and the transaction helper that maps
connection-level driver errors to :class:`DependencyUnavailable`; a file lock for the set-up
of SQLite files other processes share (:func:`file_lock`). On SQLite, writes wait their turn
in :class:`agent_runtime.db.sqlite_writes.SqliteWrites`.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from agent_runtime.config.settings import StorageSettings
from agent_runtime.core import telemetry
from agent_runtime.core.errors import DependencyUnavailable
from agent_runtime.db import migrations
from agent_runtime.db.pg_pool import Pool
from agent_runtime.db.pooled_engine import pooled_engine
from agent_runtime.db.sqlite_writes import SqliteWrites

# Serialises table creation across processes on one Postgres database ("agentrt" in hex).
DDL_LOCK_KEY = 0x6167656E747274
# Errors that mean "the database cannot serve us right now", not "the request is wrong".
UNAVAILABLE = (OperationalError, InterfaceError, PoolTimeoutError, OSError, TimeoutError)

T = TypeVar("T")


async def retry_while_locked(operation: Callable[[], Awaitable[T]], timeout_s: float) -> T:
    """Run ``operation`` again while SQLite answers "database is locked".

    Switching a new file to WAL (and the DDL right after) can fail at once, without
    waiting for the busy timeout, when several processes open the file together.
    Only for idempotent operations.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return await operation()
        except (sqlite3.OperationalError, OperationalError) as exc:
            if "database is locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        await asyncio.sleep(0.05)


def build_engine(
    settings: StorageSettings, writes: SqliteWrites | None = None, pool: Pool | None = None
) -> AsyncEngine:
    """The engine for ``settings``: Postgres over ``pool`` (required there), or SQLite
    with its pragmas and, given ``writes``, its write queue; every statement is reported
    to :mod:`agent_runtime.core.telemetry`."""
    if settings.is_postgres:
        if pool is None:
            raise ValueError("a Postgres engine needs the replica's pool")
        engine = pooled_engine(pool)
        telemetry.instrument_engine(engine, "postgres")
        return engine
    settings.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    # Writes queue rather than fail: a connection (and the busy timeout) may be waited
    # for as long as a write may wait its turn. The pool is bounded as on Postgres; its
    # connections are cheap (a thread each), readers proceed beside the one writer (WAL).
    write_timeout_s = settings.sqlite_write_timeout_s
    engine = create_async_engine(
        settings.sqlalchemy_url,
        pool_size=settings.db_pool_size,
        max_overflow=0,
        pool_timeout=write_timeout_s,
        connect_args={"timeout": write_timeout_s},
    )
    busy_ms = int(write_timeout_s * 1000)

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # The busy timeout makes writers from other processes wait rather than fail;
        # SQLite needs FKs switched on. WAL is set once, by setup (it is persistent).
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    event.listen(engine.sync_engine, "connect", on_connect)
    if writes is not None:
        writes.listen(engine)
    telemetry.instrument_engine(engine, "sqlite")
    return engine


async def enable_wal(engine: AsyncEngine) -> None:
    """WAL lets readers run beside the one writer, also across processes."""
    async with engine.connect() as conn:
        await conn.exec_driver_sql("PRAGMA journal_mode = WAL")


async def migrate(conn: AsyncConnection, is_postgres: bool) -> None:
    """Run the schema migrations inside the caller's transaction (SQLite: one holding the
    write lock), so replicas starting together take turns and none sees a half schema."""
    if is_postgres:
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": DDL_LOCK_KEY})
    await conn.run_sync(migrations.upgrade)


async def ping(engine: AsyncEngine, timeout_s: float) -> None:
    """``SELECT 1`` within ``timeout_s``; any failure is :class:`DependencyUnavailable`."""
    try:
        async with asyncio.timeout(timeout_s), engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        raise DependencyUnavailable("database unreachable") from exc


@asynccontextmanager
async def transaction(
    engine: AsyncEngine,
    *,
    begin_immediate: bool = False,
    writes: SqliteWrites | None = None,
    statement_timeout_s: float | None = None,
) -> AsyncIterator[AsyncConnection]:
    """One transaction; connection-level failures become DependencyUnavailable.

    ``statement_timeout_s`` (Postgres): the pool's connections are in autocommit (as
    LangGraph needs them), so the transaction sends its own BEGIN, together with its
    statement timeout, in one round trip; ``SET LOCAL`` ends with the transaction, so it
    holds behind a transaction-mode pooler too and never reaches the connection's next
    user.

    ``begin_immediate`` (SQLite only) takes the write lock up front so a read-then-write
    cannot go stale. ``writes`` (SQLite): the engine's write queue, whose turn the
    transaction takes before its first write (up front with ``begin_immediate``) and
    gives back once it has committed or rolled back. Messages name only the error class:
    driver messages may carry the URL.
    """
    try:
        async with engine.connect() as conn:
            if writes is not None:
                async with writes.turn(conn, begin_immediate=begin_immediate), conn.begin():
                    yield conn
                return
            async with conn.begin():
                if statement_timeout_s is not None:
                    await _begin_postgres(conn, statement_timeout_s)
                if begin_immediate:
                    # pysqlite begins lazily, so this statement opens the real transaction.
                    await conn.exec_driver_sql("BEGIN IMMEDIATE")
                yield conn
    except UNAVAILABLE as exc:
        raise DependencyUnavailable(f"database unavailable ({type(exc).__name__})") from exc
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        raise DependencyUnavailable(f"database unavailable ({type(exc).__name__})") from exc


async def _begin_postgres(conn: AsyncConnection, statement_timeout_s: float) -> None:
    # Straight to the driver: two statements in one message cannot be prepared, and the
    # BEGIN is bookkeeping, not a query for the telemetry.
    driver = (await conn.get_raw_connection()).driver_connection
    assert driver is not None  # a live, checked-out connection
    limit_ms = max(1, int(statement_timeout_s * 1000))
    await driver.execute(f"BEGIN; SET LOCAL statement_timeout = {limit_ms}", prepare=False)


@asynccontextmanager
async def file_lock(path: Path, timeout_s: float) -> AsyncIterator[None]:
    """An exclusive ``flock`` on ``path`` (SQLite is one host, so this spans its processes)."""
    deadline = time.monotonic() + max(timeout_s, 30.0)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise DependencyUnavailable(
                        "timed out waiting for another process's store setup"
                    ) from None
                await asyncio.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
