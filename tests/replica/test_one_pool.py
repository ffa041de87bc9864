"""A replica process holds one Postgres pool, which its three database users share, and
closing the replica closes every connection of it.

The replica is built as the Serve deployment builds it (``Orchestration.build``, through
the run harness, without Ray). Its metadata store, checkpointer and item store are then
used all at once, many calls each, while Postgres's own ``pg_stat_activity`` is sampled:
the replica never has more connections than ``AGENT_DB_POOL_SIZE``, all of them the one
pool's (one ``application_name``, unique to the test), and once the replica has closed,
none is left, however busy its item store's TTL sweeper and batch task were.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path

import psycopg
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import empty_checkpoint

from agent_runtime.config.settings import ItemStoreSettings, StorageSettings
from agent_runtime.execution.checkpointers import PooledPostgresSaver
from tests.backends import POSTGRES_ADMIN_DSN, backend_settings
from tests.runs.run_harness import TENANT, Replica, replica

POOL_SIZE = 4  # the smallest AGENT_DB_POOL_SIZE allowed: the bound is tightest
CALLS = 40  # per user, all in flight together
# A backend leaves pg_stat_activity a moment after its client closed it.
GONE_WITHIN_S = 10.0
# The item store's TTL sweeper runs every 60 ms, so it is sweeping, or about to, when the
# replica closes; items expire after 6 ms, so sweeps and refreshes have rows to work on.
ITEMS = ItemStoreSettings(_env_file=None, sweep_interval_minutes=0.001, default_ttl_minutes=1e-4)


class Backends:
    """Samples the connections named ``application_name*`` in pg_stat_activity (over an
    admin connection)."""

    def __init__(self, application_name: str) -> None:
        self.prefix = application_name
        self.peak = 0
        self.names: set[str] = set()

    async def now(self, admin: psycopg.AsyncConnection[tuple[object, ...]]) -> list[str]:
        cursor = await admin.execute(
            "SELECT application_name, state, query FROM pg_stat_activity"
            " WHERE starts_with(application_name, %s)",
            (self.prefix,),
        )
        rows = await cursor.fetchall()
        self.names.update(str(row[0]) for row in rows)
        self.peak = max(self.peak, len(rows))
        return [f"{row[0]} {row[1]}: {row[2]}" for row in rows]

    async def sample_until(self, done: asyncio.Event) -> None:
        async with await psycopg.AsyncConnection.connect(
            POSTGRES_ADMIN_DSN, autocommit=True
        ) as admin:
            while not done.is_set():
                await self.now(admin)
                await asyncio.sleep(0.005)

    async def left_after_close(self) -> list[str]:
        """The connections still there once none is, or ``GONE_WITHIN_S`` has passed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + GONE_WITHIN_S
        async with await psycopg.AsyncConnection.connect(
            POSTGRES_ADMIN_DSN, autocommit=True
        ) as admin:
            left = await self.now(admin)
            while left and loop.time() < deadline:
                await asyncio.sleep(0.02)  # no event to wait for: Postgres's own view
                left = await self.now(admin)
        return left


def _unique(storage: StorageSettings) -> StorageSettings:
    name = f"onepool-{secrets.token_hex(4)}"
    return storage.model_copy(update={"db_pool_size": POOL_SIZE, "db_application_name": name})


async def _all_three_at_once(node: Replica) -> None:
    """Metadata rows, checkpoints and store items (puts, reads that refresh their TTL,
    searches), ``CALLS`` of each, concurrently."""
    saver = node.orchestration.checkpointers.saver
    items = node.items.for_tenant(TENANT.tenant_id)

    async def metadata(index: int) -> None:
        thread = await node.store.create_thread(TENANT.tenant_id, metadata={"i": index})
        assert (await node.store.get_thread(TENANT.tenant_id, thread.thread_id)) == thread

    async def checkpoint(index: int) -> None:
        config: RunnableConfig = {
            "configurable": {"thread_id": f"one-pool-{index}", "checkpoint_ns": ""}
        }
        written = await saver.aput(config, empty_checkpoint(), {"source": "input", "step": -1}, {})
        assert await saver.aget_tuple(written) is not None

    async def item(index: int) -> None:
        await items.aput(("notes",), f"k{index}", {"i": index}, ttl=1.0)
        await items.aput(("notes",), f"short{index}", {"i": index})  # the default TTL
        stored = await items.aget(("notes",), f"k{index}")
        assert stored is not None and stored.value == {"i": index}
        await items.asearch(("notes",), limit=5)

    users: list[Callable[[int], Awaitable[None]]] = [metadata, checkpoint, item]
    await asyncio.gather(*(user(i) for user in users for i in range(CALLS)))


async def test_a_replica_opens_one_pool_of_at_most_the_pool_size(tmp_path: Path) -> None:
    async with backend_settings("postgres", tmp_path) as settings:
        storage = _unique(settings)
        backends = Backends(storage.db_application_name)
        async with replica(storage, start_loops=False) as node:
            pool = node.orchestration.pool
            assert pool is not None and pool.max_size == POOL_SIZE
            # The saver and the store run over that pool itself (the metadata store's
            # engine borrows from it: pg_stat_activity below shows it has none of its own).
            inner = node.orchestration.checkpointers.saver.inner
            assert isinstance(inner, PooledPostgresSaver) and inner.conn is pool
            assert getattr(node.items.raw, "conn", None) is pool
            done = asyncio.Event()
            sampler = asyncio.create_task(backends.sample_until(done))
            try:
                await _all_three_at_once(node)
            finally:
                done.set()
                await sampler
            stats = pool.get_stats()
        left = await backends.left_after_close()
    assert backends.names == {f"{storage.db_application_name}-orchestrator"}
    assert 1 <= backends.peak <= POOL_SIZE, backends.peak
    # All three users waited their turn at the same pool (many more calls than connections).
    assert stats["requests_num"] >= 3 * CALLS
    assert left == []  # closed with the replica


async def test_closing_a_replica_closes_every_connection(tmp_path: Path) -> None:
    """The replica's loops running, its item store sweeping expired items every 60 ms:
    after close, no connection of its pool is left, not even an idle one."""
    async with backend_settings("postgres", tmp_path) as settings:
        storage = _unique(settings)
        backends = Backends(storage.db_application_name)
        async with replica(storage, items=ITEMS) as node:
            await _all_three_at_once(node)
            await node.items.sweep_expired()
            # Searches still in flight when the replica closes.
            items = node.items.for_tenant(TENANT.tenant_id)
            pending = [
                asyncio.create_task(items.asearch(("notes",), limit=5)) for _ in range(CALLS)
            ]
        left = await backends.left_after_close()
        async with asyncio.timeout(GONE_WITHIN_S):
            outcomes = await asyncio.gather(*pending, return_exceptions=True)
    assert left == [], left
    assert backends.names <= {f"{storage.db_application_name}-orchestrator"}
    # Each search was answered or refused; none hung on the closed pool.
    assert all(isinstance(o, list | Exception) for o in outcomes), outcomes


async def test_on_sqlite_a_replica_has_no_pool(tmp_path: Path) -> None:
    async with backend_settings("sqlite", tmp_path) as settings, replica(settings) as node:
        assert node.orchestration.pool is None
        await _all_three_at_once(node)
