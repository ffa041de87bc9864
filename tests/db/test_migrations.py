"""Schema migrations: the same revisions on SQLite and Postgres, upgrades keep old data."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlmodel import SQLModel

from agent_runtime.config.settings import StorageSettings
from agent_runtime.db import migrations
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.db.tables import UNSCOPED_CHECKPOINTS
from agent_runtime.runs.run_queue import RunStore


@pytest.fixture
async def engine(storage_settings: StorageSettings) -> AsyncIterator[AsyncEngine]:
    storage_settings.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(storage_settings.sqlalchemy_url)
    yield engine
    await engine.dispose()


def _schema_diff(connection: Connection) -> list[Any]:
    """What differs between the migrated database and ``agent_runtime.db.tables`` (nothing, we
    hope)."""
    return list(compare_metadata(MigrationContext.configure(connection), SQLModel.metadata))


def _head() -> str | None:
    return ScriptDirectory(str(Path(migrations.__file__).parent)).get_current_head()


async def _revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(migrations.current_revision)


async def _store(settings: StorageSettings) -> MetadataStore:
    store = MetadataStore(settings)
    await store.setup()
    return store


async def test_fresh_database_is_at_head_and_matches_the_tables(
    storage_settings: StorageSettings, engine: AsyncEngine
) -> None:
    store = await _store(storage_settings)
    await store.close()
    assert await _revision(engine) == _head()
    async with engine.connect() as conn:
        assert await conn.run_sync(_schema_diff) == []


async def _foundation_database(engine: AsyncEngine) -> None:
    """A database exactly as the foundation release left it, with one row per table."""
    now = datetime(2026, 11, 1, tzinfo=UTC)
    async with engine.begin() as conn:
        await conn.run_sync(migrations.upgrade, migrations.FOUNDATION_REVISION)
        await conn.execute(
            text(
                "INSERT INTO agent_tenants (tenant_id, name, disabled, created_at) "
                "VALUES ('acme', 'Acme', false, :now)"
            ),
            {"now": now},
        )
        await conn.execute(
            text(
                "INSERT INTO agent_api_keys (key_id, tenant_id, key_hash, name, revoked, "
                "created_at) VALUES ('abc123abc123', 'acme', 'hash', 'old', false, :now)"
            ),
            {"now": now},
        )
        await conn.execute(
            text(
                "INSERT INTO agent_threads (thread_id, tenant_id, graph_id, status, metadata, "
                "created_at, updated_at) VALUES ('t-old', 'acme', 'react', 'idle', "
                '\'{"purpose": "legacy"}\', :now, :now)'
            ),
            {"now": now},
        )
        await conn.execute(
            text(
                "INSERT INTO agent_runs (run_id, thread_id, tenant_id, assistant_id, status, "
                "metadata, error, input_tokens, output_tokens, created_at, updated_at) "
                "VALUES ('r-old', 't-old', 'acme', 'react', 'success', '{}', NULL, 12, 34, "
                ":now, :now)"
            ),
            {"now": now},
        )


async def _assert_old_rows_survived(store: MetadataStore) -> None:
    thread = await store.get_thread("acme", "t-old")
    assert thread.metadata == {"purpose": "legacy"}
    assert thread.status == "idle"
    assert thread.config == {}
    assert thread.interrupts == {}
    assert thread.state_values is None
    [run] = await RunStore(store).search("acme", "t-old")
    assert (run.run_id, run.input_tokens, run.output_tokens) == ("r-old", 12, 34)
    assert run.kwargs == {}
    assert run.attempt == 1
    assert run.multitask_strategy == "reject"
    assert run.temporary is False
    key = await store.get_key("abc123abc123")
    assert key is not None and key.tenant_id == "acme"
    assert key.scopes == ["read", "run"]  # keys older than scopes keep reading and running
    # Since 0008 thread ids are per tenant; the threads made before are listed, with
    # their owner, for their checkpoints to move under that owner (checkpoint_ops).
    async with store.transaction() as conn:
        listed = (await conn.execute(select(UNSCOPED_CHECKPOINTS))).all()
    assert [(row.thread_id, row.tenant_id) for row in listed] == [("t-old", "acme")]
    await store.ensure_tenant("globex", "Globex")
    theirs = await store.create_thread("globex", thread_id="t-old", metadata={"mine": True})
    assert theirs.tenant_id == "globex"
    assert (await store.get_thread("acme", "t-old")).metadata == {"purpose": "legacy"}
    assert (await store.get_thread("globex", "t-old")).metadata == {"mine": True}
    # New writes work on the upgraded schema.
    fresh = await store.create_thread("acme", metadata={"new": True})
    assert (await store.get_thread("acme", fresh.thread_id)).metadata == {"new": True}


async def test_upgrading_a_foundation_database_keeps_its_data(
    storage_settings: StorageSettings, engine: AsyncEngine
) -> None:
    await _foundation_database(engine)
    assert await _revision(engine) == migrations.FOUNDATION_REVISION
    store = await _store(storage_settings)
    try:
        assert await _revision(engine) == _head()
        await _assert_old_rows_survived(store)
        async with engine.connect() as conn:
            assert await conn.run_sync(_schema_diff) == []
    finally:
        await store.close()


async def test_a_database_made_before_migrations_is_stamped_then_upgraded(
    storage_settings: StorageSettings, engine: AsyncEngine
) -> None:
    """The foundation release made its tables with create_all and kept no revision."""
    await _foundation_database(engine)
    async with engine.begin() as conn:
        await conn.execute(text("DROP TABLE alembic_version"))
    assert await _revision(engine) is None
    store = await _store(storage_settings)
    try:
        assert await _revision(engine) == _head()
        await _assert_old_rows_survived(store)
    finally:
        await store.close()


async def test_downgrade_to_the_foundation_and_back(
    storage_settings: StorageSettings, engine: AsyncEngine
) -> None:
    await _foundation_database(engine)
    store = await _store(storage_settings)
    await store.close()

    def downgrade(connection: Connection) -> None:
        from alembic import command

        command.downgrade(migrations.config(connection), migrations.FOUNDATION_REVISION)

    async with engine.begin() as conn:
        await conn.run_sync(downgrade)
    assert await _revision(engine) == migrations.FOUNDATION_REVISION
    store = await _store(storage_settings)
    try:
        await _assert_old_rows_survived(store)
    finally:
        await store.close()
