"""A replica process holds one Postgres pool, which its three database users share.

The replica is built as the Serve deployment builds it (``Orchestration.build``, through
the run harness, without Ray). Its metadata store, checkpointer and item store are then
used all at once, many calls each, while Postgres's own ``pg_stat_activity`` is sampled:
the replica's role never has more connections than ``AGENT_DB_POOL_SIZE``, all of them
the one pool's (one ``application_name``), and closing the replica closes them all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import empty_checkpoint

from agent_runtime.execution.checkpointers import PooledPostgresSaver
from tests.backends import POSTGRES_ADMIN_DSN, backend_settings
from tests.runs.run_harness import TENANT, Replica, replica

POOL_SIZE = 4  # the smallest AGENT_DB_POOL_SIZE allowed: the bound is tightest
CALLS = 40  # per user, all in flight together


class Backends:
    """Samples the role's connections in pg_stat_activity (over an admin connection)."""

    def __init__(self, role: str) -> None:
        self.role = role
        self.peak = 0
        self.names: set[str] = set()

    async def now(self, admin: psycopg.AsyncConnection[tuple[object, ...]]) -> int:
        cursor = await admin.execute(
            "SELECT application_name FROM pg_stat_activity WHERE usename = %s", (self.role,)
        )
        names = [str(row[0]) for row in await cursor.fetchall()]
        self.names.update(names)
        self.peak = max(self.peak, len(names))
        return len(names)

    async def sample_until(self, done: asyncio.Event) -> None:
        async with await psycopg.AsyncConnection.connect(
            POSTGRES_ADMIN_DSN, autocommit=True
        ) as admin:
            while not done.is_set():
                await self.now(admin)
                await asyncio.sleep(0.005)


async def _all_three_at_once(node: Replica) -> None:
    """Metadata rows, checkpoints and store items, ``CALLS`` of each, concurrently."""
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
        await items.aput(("notes",), f"k{index}", {"i": index})
        stored = await items.aget(("notes",), f"k{index}")
        assert stored is not None and stored.value == {"i": index}

    users: list[Callable[[int], Awaitable[None]]] = [metadata, checkpoint, item]
    await asyncio.gather(*(user(i) for user in users for i in range(CALLS)))


async def test_a_replica_opens_one_pool_of_at_most_the_pool_size(tmp_path: Path) -> None:
    async with backend_settings("postgres", tmp_path) as settings:
        storage = settings.model_copy(update={"db_pool_size": POOL_SIZE})
        role = urlsplit(storage.postgres_dsn).username
        assert role is not None
        backends = Backends(role)
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
        async with await psycopg.AsyncConnection.connect(POSTGRES_ADMIN_DSN) as admin:
            # A backend leaves pg_stat_activity a moment after its client closed it.
            for _ in range(100):
                if (left := await backends.now(admin)) == 0:
                    break
                await asyncio.sleep(0.05)
    assert backends.names == {"agent-runtime-orchestrator"}
    assert 1 <= backends.peak <= POOL_SIZE, backends.peak
    # All three users waited their turn at the same pool (many more calls than connections).
    assert stats["requests_num"] >= 3 * CALLS
    assert left == 0  # closed with the replica


async def test_on_sqlite_a_replica_has_no_pool(tmp_path: Path) -> None:
    async with backend_settings("sqlite", tmp_path) as settings, replica(settings) as node:
        assert node.orchestration.pool is None
        await _all_three_at_once(node)
