"""The replica's one Postgres pool: what its users leave on a connection, and its set-up lock.

The metadata store's SQLAlchemy engine borrows the pool's connections: after it, the next
user still gets what LangGraph's saver and store need (autocommit, dict rows, no statement
timeout of the metadata store's), and a connection the server dropped goes back to the
pool too, which then replaces its idle ones. The set-up lock is a transaction's, so a
transaction-mode pooler keeps it, and it must neither let two holders in nor hold up the
index builds of the set-up it guards. While the database cannot be reached, a caller
that finds no idle connection fails at once instead of waiting out the pool's timeout; a
pool that is merely busy still makes it wait.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from psycopg.rows import dict_row
from psycopg_pool import PoolTimeout
from sqlalchemy import text

from agent_runtime.config.settings import StorageSettings
from agent_runtime.core.errors import DependencyUnavailable
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.db.pg_pool import Pool, open_replica_pool, replica_pool, setup_lock
from agent_runtime.db.pooled_engine import BorrowedPsycopgDialect
from agent_runtime.db.reachable_pool import DatabaseUnreachable
from tests.backends import backend_settings
from tests.tcp_proxy import TcpProxy, proxied_url

KEY = 0x6167656E747465  # a lock of this test's own
FAST_S = 1.5  # "at once" while the database is down (AGENT_DB_TIMEOUT_S is 10 s)


@pytest.fixture
async def settings(tmp_path: Path) -> AsyncIterator[StorageSettings]:
    async with backend_settings("postgres", tmp_path) as storage:
        yield storage


@pytest.fixture
async def pool(settings: StorageSettings) -> AsyncIterator[Pool]:
    opened = replica_pool(settings, "test", min_size=1)
    await opened.open(wait=True, timeout=10)
    try:
        yield opened
    finally:
        await opened.close()


async def test_after_the_metadata_store_a_connection_is_as_langgraph_needs_it(
    settings: StorageSettings, pool: Pool
) -> None:
    store = MetadataStore(settings, pool)
    await store.setup()
    assert isinstance(store._require_engine().dialect, BorrowedPsycopgDialect)
    try:
        async with store.transaction() as conn:
            timeout = (await conn.execute(text("SHOW statement_timeout"))).scalar_one()
        assert timeout == "10s"  # AGENT_DB_TIMEOUT_S, for the transaction only
        await store.ensure_tenant("t1", "one")
        assert pool.get_stats()["pool_size"] == 1  # one connection, used in turn by all
        async with pool.connection() as conn:
            assert conn.autocommit
            assert conn.row_factory is dict_row
            row = await (await conn.execute("SHOW statement_timeout")).fetchone()
            assert row == {"statement_timeout": "0"}
    finally:
        await store.close()
    assert not pool.closed  # the store was given the pool: its owner closes it


async def _try_lock(pool: Pool) -> bool:
    async with pool.connection() as conn, conn.transaction():
        cursor = await conn.execute("SELECT pg_try_advisory_xact_lock(%s) AS got", (KEY,))
        row = await cursor.fetchone()
        return bool(row and row["got"])


async def test_the_setup_lock_has_one_holder_and_frees_when_done(pool: Pool) -> None:
    async with setup_lock(pool, KEY, 5.0, "test"):
        assert not await _try_lock(pool)
    assert await _try_lock(pool)
    with pytest.raises(RuntimeError):
        async with setup_lock(pool, KEY, 5.0, "test"):
            raise RuntimeError("set-up failed")
    assert await _try_lock(pool)  # a failed set-up frees it too


async def test_the_setup_lock_holds_up_no_concurrent_index_build(pool: Pool) -> None:
    """Set-up builds indexes CONCURRENTLY on other connections while the lock is held and
    other replicas wait for it: that build must not wait for either."""

    async def waiter() -> None:
        async with setup_lock(pool, KEY, 5.0, "test"):
            pass

    async with setup_lock(pool, KEY, 5.0, "test"):
        waiting = asyncio.create_task(waiter())
        await asyncio.sleep(0.3)  # it polls meanwhile
        async with pool.connection() as conn:
            await conn.execute("CREATE TABLE lock_probe (x int)")
            async with asyncio.timeout(10):
                await conn.execute("CREATE INDEX CONCURRENTLY lock_probe_x ON lock_probe (x)")
        assert not waiting.done()
    async with asyncio.timeout(5):
        await waiting


async def test_after_the_database_dropped_every_connection_one_call_fails(
    settings: StorageSettings,
) -> None:
    """As SQLAlchemy's own pool did: the first call on a dropped connection fails, the
    pool replaces the others, and it has lost none of its places (calls beyond its size
    all get a connection)."""
    parts = urlsplit(settings.postgres_dsn)
    assert parts.hostname is not None
    proxy = TcpProxy(parts.hostname, parts.port or 5432)
    proxy.start()
    netloc = f"{parts.username}:{parts.password}@127.0.0.1:{proxy.port}"
    through = settings.model_copy(
        update={"database_url": urlunsplit(parts._replace(netloc=netloc)), "db_timeout_s": 3.0}
    )
    store = MetadataStore(through)
    try:
        await store.setup()
        await store.ensure_tenant("t1", "one")
        await asyncio.gather(*(store.create_thread("t1") for _ in range(3 * 10)))
        proxy.down()  # every connection dropped, as when the server restarts
        proxy.up()
        failed = 0
        for _ in range(10):
            try:
                await store.create_thread("t1")
            except DependencyUnavailable:
                failed += 1
        assert failed == 1
        await asyncio.gather(*(store.create_thread("t1") for _ in range(3 * 10)))
    finally:
        await store.close()
        proxy.close()


async def _fails_fast(call: Callable[[], Awaitable[object]], error: type[Exception]) -> None:
    started = time.monotonic()
    with pytest.raises(error):
        await call()
    assert time.monotonic() - started < FAST_S


async def test_while_the_database_is_down_calls_fail_at_once_and_recover_after(
    settings: StorageSettings,
) -> None:
    assert settings.database_url is not None
    proxy = TcpProxy.to_url(settings.postgres_dsn)
    through = settings.model_copy(
        update={"database_url": proxied_url(settings.database_url, proxy), "db_timeout_s": 10.0}
    )
    pool = await open_replica_pool(through, "test", 4)
    assert pool is not None
    store = MetadataStore(through, pool)
    try:
        await store.setup()
        await store.ensure_tenant("t1", "one")
        proxy.down()  # open connections reset, new ones refused
        for _ in range(3):  # the health check's ping, a metadata read, LangGraph's users
            await _fails_fast(store.ping, DependencyUnavailable)
            await _fails_fast(lambda: store.get_tenant("t1"), DependencyUnavailable)
            await _fails_fast(pool.getconn, DatabaseUnreachable)
        await asyncio.sleep(through.db_retry_s)  # the next caller tries to connect itself
        await _fails_fast(lambda: store.get_tenant("t1"), DependencyUnavailable)
        assert pool.reachability.down
        proxy.up()
        started = time.monotonic()
        while True:
            try:
                assert await store.get_tenant("t1") is not None
                break
            except DependencyUnavailable:
                assert time.monotonic() - started < 2 * through.db_retry_s + 1
                await asyncio.sleep(0.05)
        await store.ping()
        async with pool.connection() as conn:
            await conn.execute("SELECT 1")
    finally:
        await store.close()
        await pool.close()
        proxy.close()


async def test_a_pool_opened_while_the_database_is_down_fails_at_once(
    settings: StorageSettings,
) -> None:
    assert settings.database_url is not None
    proxy = TcpProxy.to_url(settings.postgres_dsn)
    proxy.down()
    through = settings.model_copy(
        update={"database_url": proxied_url(settings.database_url, proxy)}
    )
    pool = await open_replica_pool(through, "test", 1)
    assert pool is not None
    try:
        # The pool's first attempt fails while this caller waits: it hears of it at once.
        await _fails_fast(pool.getconn, DatabaseUnreachable)
        await _fails_fast(pool.getconn, DatabaseUnreachable)
        proxy.up()
        await asyncio.sleep(through.db_retry_s)
        async with pool.connection() as conn:
            await conn.execute("SELECT 1")
    finally:
        await pool.close()
        proxy.close()


async def test_a_busy_pool_makes_callers_wait_for_a_connection(settings: StorageSettings) -> None:
    busy = settings.model_copy(update={"db_pool_size": 4, "db_timeout_s": 1.0})
    pool = await open_replica_pool(busy, "test", 4)
    assert pool is not None
    store = MetadataStore(busy, pool)
    try:
        await store.setup()
        await store.ensure_tenant("t1", "one")
        held = [await pool.getconn() for _ in range(4)]  # every connection lent
        started = time.monotonic()
        with pytest.raises(PoolTimeout) as timed_out:
            await pool.getconn()
        assert not isinstance(timed_out.value, DatabaseUnreachable)
        assert time.monotonic() - started >= 0.9  # the pool's whole timeout
        reading = asyncio.create_task(store.get_tenant("t1"))
        await asyncio.sleep(0.3)
        assert not reading.done()  # it waits for a connection...
        await pool.putconn(held.pop())
        assert await reading is not None  # ...and gets the one given back
        for conn in held:
            await pool.putconn(conn)
    finally:
        await store.close()
        await pool.close()
