"""SQLite's write queue (agent_runtime.db.sqlite_writes): writes wait their turn, up to
AGENT_SQLITE_WRITE_TIMEOUT_S, and reads never queue. Two stores on one file stand for two
processes (each store has its own engine and queue, as each replica has)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from sqlalchemy import insert

from agent_runtime.config.settings import StorageSettings
from agent_runtime.core.errors import DependencyUnavailable
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.db.tables import TENANTS, utcnow

Settings = Callable[..., StorageSettings]


@pytest.fixture
def sqlite(tmp_path: Path) -> Settings:
    def make(**overrides: float) -> StorageSettings:
        return StorageSettings(
            data_dir=tmp_path,
            database_url=f"sqlite:///{tmp_path / 'runtime.db'}",
            **overrides,  # type: ignore[arg-type]
        )

    return make


@asynccontextmanager
async def stores(*settings: StorageSettings) -> AsyncIterator[list[MetadataStore]]:
    opened = [MetadataStore(s) for s in settings]
    try:
        for store in opened:
            await store.setup()
        yield opened
    finally:
        for store in opened:
            await store.close()


@asynccontextmanager
async def writing(store: MetadataStore) -> AsyncIterator[None]:
    """A write transaction held open for the block (the file's one writer)."""
    async with store.transaction(write_lock=True) as conn:
        await conn.execute(
            insert(TENANTS).values(
                tenant_id="holder", name="h", disabled=False, created_at=utcnow()
            )
        )
        yield


async def test_a_write_waits_for_another_writer_longer_than_the_connect_timeout(
    sqlite: Settings,
) -> None:
    settings = sqlite(db_timeout_s=0.2, sqlite_write_timeout_s=30.0)
    async with stores(settings, settings) as (first, second):
        async with writing(first):
            waiting = asyncio.ensure_future(second.ensure_tenant("acme", "Acme"))
            # Five times the connect timeout (the busy timeout before the fix) go by.
            done, _ = await asyncio.wait({waiting}, timeout=1.0)
            assert not done
        tenant = await asyncio.wait_for(waiting, timeout=10)
        assert tenant.tenant_id == "acme"
        assert await first.get_tenant("acme") is not None


async def test_a_write_gives_up_at_the_write_timeout_as_unavailable(sqlite: Settings) -> None:
    settings = sqlite(sqlite_write_timeout_s=0.3)
    async with stores(settings, settings) as (first, second):
        async with writing(first):
            with pytest.raises(DependencyUnavailable, match="database unavailable"):
                await asyncio.wait_for(second.ensure_tenant("acme", "Acme"), timeout=10)
        assert await first.get_tenant("acme") is None


async def test_writes_of_one_store_queue_behind_each_other_and_reads_do_not(
    sqlite: Settings,
) -> None:
    settings = sqlite(db_timeout_s=0.2, sqlite_write_timeout_s=30.0)
    async with stores(settings) as (store,):
        async with writing(store):
            # A read, in a transaction of its own, runs beside the writer.
            assert await asyncio.wait_for(store.get_tenant("nobody"), timeout=5) is None
            queued = [
                asyncio.ensure_future(store.ensure_tenant(f"t{n}", "queued")) for n in range(20)
            ]
            done, _ = await asyncio.wait(queued, timeout=0.5)
            assert not done
        tenants = await asyncio.wait_for(asyncio.gather(*queued), timeout=10)
        assert sorted(t.tenant_id for t in tenants) == sorted(f"t{n}" for n in range(20))
