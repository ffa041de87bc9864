"""Conformance suite of the metadata store, run against SQLite and a real Postgres."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Literal

import pytest

from agent_runtime.config.settings import StorageSettings
from agent_runtime.core.errors import Conflict, DependencyUnavailable, NotFound
from agent_runtime.core.records import ApiKeyRecord
from agent_runtime.db.metadata import MetadataStore


@pytest.fixture
async def store(storage_settings: StorageSettings) -> AsyncIterator[MetadataStore]:
    store = MetadataStore(storage_settings)
    await store.setup()
    try:
        yield store
    finally:
        await store.close()


def _key(tenant_id: str, name: str = "") -> ApiKeyRecord:
    return ApiKeyRecord(
        key_id=f"ak_{uuid.uuid4().hex[:12]}",
        tenant_id=tenant_id,
        key_hash=uuid.uuid4().hex * 2,
        name=name,
        created_at=datetime.now(UTC),
    )


def _is_uuid4(value: str) -> bool:
    return uuid.UUID(value).version == 4


# -- lifecycle --------------------------------------------------------------------------
async def test_setup_twice_keeps_data(
    store: MetadataStore, storage_settings: StorageSettings
) -> None:
    await store.ensure_tenant("t1", "Tenant one")
    thread = await store.create_thread("t1", metadata={"k": "v"})
    await store.setup()
    again = MetadataStore(storage_settings)
    await again.setup()
    try:
        assert await again.get_thread("t1", thread.thread_id) == thread
    finally:
        await again.close()


async def test_concurrent_setup_from_several_stores(storage_settings: StorageSettings) -> None:
    stores = [MetadataStore(storage_settings) for _ in range(3)]
    try:
        await asyncio.gather(*(s.setup() for s in stores))
        tenant = await stores[0].ensure_tenant("t1", "one")
        assert await stores[2].get_tenant("t1") == tenant
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_ping(store: MetadataStore) -> None:
    await store.ping()


async def test_unreachable_database_is_dependency_unavailable() -> None:
    password = "s3cret-pw"
    url = f"postgresql://postgres:{password}@127.0.0.1:1/test"
    store = MetadataStore(StorageSettings(database_url=url, db_timeout_s=2.0))
    try:
        with pytest.raises(DependencyUnavailable) as during_setup:
            await store.setup()
        with pytest.raises(DependencyUnavailable) as during_ping:
            await store.ping()
    finally:
        await store.close()
    assert during_ping.value.message == "database unreachable"
    for error in (during_setup.value, during_ping.value):
        assert password not in str(error)
        assert "127.0.0.1:1" not in str(error)


# -- tenants and keys ---------------------------------------------------------------------
async def test_tenant_crud(store: MetadataStore) -> None:
    assert await store.get_tenant("acme") is None
    created = await store.ensure_tenant("acme", "Acme")
    assert created.name == "Acme"
    assert created.disabled is False
    assert created.created_at.tzinfo is not None
    # Insert-if-absent: a second call keeps the first name.
    assert await store.ensure_tenant("acme", "Other name") == created
    assert await store.get_tenant("acme") == created

    await store.set_tenant_disabled("acme", True)
    disabled = await store.get_tenant("acme")
    assert disabled is not None and disabled.disabled is True
    await store.set_tenant_disabled("acme", False)
    enabled = await store.get_tenant("acme")
    assert enabled is not None and enabled.disabled is False
    with pytest.raises(NotFound):
        await store.set_tenant_disabled("nobody", True)


async def test_key_crud(store: MetadataStore) -> None:
    await store.ensure_tenant("acme", "Acme")
    await store.ensure_tenant("other", "Other")
    first, second, foreign = _key("acme", "ci"), _key("acme", "laptop"), _key("other")
    for record in (first, second, foreign):
        await store.add_key(record)

    assert await store.get_key(first.key_id) == first
    assert await store.get_key("ak_missing") is None
    listed = await store.list_keys("acme")
    assert {k.key_id for k in listed} == {first.key_id, second.key_id}

    with pytest.raises(Conflict):
        await store.add_key(first.model_copy(update={"key_hash": "other-hash"}))
    with pytest.raises(NotFound):
        await store.add_key(_key("no-such-tenant"))

    await store.revoke_key(first.key_id)
    revoked = await store.get_key(first.key_id)
    assert revoked is not None and revoked.revoked is True
    still = await store.get_key(second.key_id)
    assert still is not None and still.revoked is False
    with pytest.raises(NotFound):
        await store.revoke_key("ak_missing")


# -- threads ------------------------------------------------------------------------------
async def test_create_thread_with_and_without_id(store: MetadataStore) -> None:
    generated = await store.create_thread("t1", graph_id="chat")
    assert _is_uuid4(generated.thread_id)
    assert generated.status == "idle"
    assert generated.graph_id == "chat"
    assert generated.metadata == {}
    assert generated.created_at.tzinfo is not None

    chosen_id = f"th-{uuid.uuid4().hex}"
    chosen = await store.create_thread("t1", thread_id=chosen_id, metadata={"user": "ann"})
    assert chosen.thread_id == chosen_id
    assert await store.get_thread("t1", chosen_id) == chosen


async def test_create_thread_if_exists(store: MetadataStore) -> None:
    original = await store.create_thread("t1", thread_id="th-1", metadata={"v": 1})
    with pytest.raises(Conflict) as own:
        await store.create_thread("t1", thread_id="th-1")
    existing = await store.create_thread(
        "t1", thread_id="th-1", metadata={"v": 2}, if_exists="do_nothing"
    )
    assert existing == original

    # Another tenant's id: always a Conflict, worded exactly like one's own duplicate.
    modes: tuple[Literal["raise", "do_nothing"], ...] = ("raise", "do_nothing")
    for mode in modes:
        with pytest.raises(Conflict) as foreign:
            await store.create_thread("t2", thread_id="th-1", if_exists=mode)
        assert foreign.value.message == own.value.message
        assert "t1" not in foreign.value.message
    assert await store.get_thread("t1", "th-1") == original


async def test_get_thread_of_another_tenant_is_not_found(store: MetadataStore) -> None:
    thread = await store.create_thread("t1")
    with pytest.raises(NotFound) as foreign:
        await store.get_thread("t2", thread.thread_id)
    with pytest.raises(NotFound) as missing:
        await store.get_thread("t1", "no-such-thread")
    assert foreign.value.message == f"Thread with ID {thread.thread_id} not found"
    assert missing.value.message == "Thread with ID no-such-thread not found"
    for call in (
        store.update_thread("t2", thread.thread_id, status="busy"),
        store.update_thread("t2", thread.thread_id, metadata={"x": 1}),
        store.delete_thread("t2", thread.thread_id),
        store.start_run("t2", thread.thread_id, graph_id="g", assistant_id="g"),
    ):
        with pytest.raises(NotFound):
            await call
    assert await store.get_thread("t1", thread.thread_id) == thread


async def test_update_thread_merges_metadata(store: MetadataStore) -> None:
    thread = await store.create_thread("t1", metadata={"a": 1, "b": {"x": 1}})
    updated = await store.update_thread(
        "t1", thread.thread_id, status="interrupted", graph_id="agent", metadata={"b": 2, "c": 3}
    )
    assert updated.metadata == {"a": 1, "b": 2, "c": 3}
    assert updated.status == "interrupted"
    assert updated.graph_id == "agent"
    assert updated.created_at == thread.created_at
    assert updated.updated_at > thread.updated_at

    status_only = await store.update_thread("t1", thread.thread_id, status="idle")
    assert status_only.metadata == updated.metadata
    assert status_only.graph_id == "agent"
    assert await store.get_thread("t1", thread.thread_id) == status_only


async def test_concurrent_metadata_merges_all_land(store: MetadataStore) -> None:
    thread = await store.create_thread("t1")
    await asyncio.gather(
        *(store.update_thread("t1", thread.thread_id, metadata={f"k{i}": i}) for i in range(10))
    )
    merged = await store.get_thread("t1", thread.thread_id)
    assert merged.metadata == {f"k{i}": i for i in range(10)}


async def test_delete_thread(store: MetadataStore) -> None:
    thread = await store.create_thread("t1")
    await store.delete_thread("t1", thread.thread_id)
    with pytest.raises(NotFound):
        await store.get_thread("t1", thread.thread_id)
    with pytest.raises(NotFound):
        await store.delete_thread("t1", thread.thread_id)


async def test_run_lifecycle_and_list_order(store: MetadataStore) -> None:
    thread = await store.create_thread("t1")
    created = [await store.create_run("t1", thread.thread_id, "chat", {"n": n}) for n in range(3)]
    first = created[0]
    assert _is_uuid4(first.run_id)
    assert first.status == "pending"
    assert first.metadata == {"n": 0}
    assert await store.get_run("t1", first.run_id) == first

    running = await store.update_run(first.run_id, status="running")
    assert running.status == "running"
    assert running.error is None
    done = await store.update_run(
        first.run_id, status="error", error="boom", input_tokens=12, output_tokens=34
    )
    assert (done.status, done.error, done.input_tokens, done.output_tokens) == (
        "error",
        "boom",
        12,
        34,
    )
    assert done.updated_at >= running.updated_at > first.created_at
    assert await store.get_run("t1", first.run_id) == done

    newest_first = [r.run_id for r in reversed(created)]
    listed = await store.list_runs("t1", thread.thread_id)
    assert [r.run_id for r in listed] == newest_first
    page = await store.list_runs("t1", thread.thread_id, limit=1, offset=1)
    assert [r.run_id for r in page] == newest_first[1:2]
    assert await store.list_runs("t2", thread.thread_id) == []

    with pytest.raises(NotFound):
        await store.get_run("t2", first.run_id)
    with pytest.raises(NotFound):
        await store.update_run("no-such-run", status="success")


async def test_stateless_run_has_no_thread(store: MetadataStore) -> None:
    run = await store.create_run("t1", None, "chat")
    assert run.thread_id is None
    assert await store.get_run("t1", run.run_id) == run


async def test_start_run_claims_the_thread_for_exactly_one_replica(
    store: MetadataStore, storage_settings: StorageSettings
) -> None:
    replica = MetadataStore(storage_settings)
    await replica.setup()
    try:
        thread = await store.create_thread("t1")
        started = await asyncio.gather(
            *(
                (store if i % 2 else replica).start_run(
                    "t1", thread.thread_id, graph_id="g", assistant_id="g"
                )
                for i in range(20)
            )
        )
        winners = [run for run in started if run is not None]
        assert len(winners) == 1
        run = winners[0]
        assert run.status == "running"
        assert (await store.get_run("t1", run.run_id)).status == "running"
        claimed = await store.get_thread("t1", thread.thread_id)
        assert (claimed.status, claimed.graph_id) == ("busy", "g")

        await store.finish_run(
            "t1",
            thread.thread_id,
            run.run_id,
            status="success",
            thread_status="idle",
            input_tokens=7,
            output_tokens=3,
        )
        done = await store.get_run("t1", run.run_id)
        assert (done.status, done.input_tokens, done.output_tokens) == ("success", 7, 3)
        assert (await store.get_thread("t1", thread.thread_id)).status == "idle"
        again = await store.start_run("t1", thread.thread_id, graph_id="g", assistant_id="g")
        assert again is not None and again.run_id != run.run_id
    finally:
        await replica.close()


async def test_start_run_on_a_missing_or_foreign_thread_is_not_found(
    store: MetadataStore,
) -> None:
    thread = await store.create_thread("t1")
    with pytest.raises(NotFound):
        await store.start_run("t2", thread.thread_id, graph_id="g", assistant_id="g")
    with pytest.raises(NotFound):
        await store.start_run("t1", "no-such-thread", graph_id="g", assistant_id="g")
    assert (await store.get_thread("t1", thread.thread_id)).status == "idle"


async def test_a_stale_busy_claim_is_taken_over(store: MetadataStore) -> None:
    """A replica that died mid-run must not leave its thread locked forever."""
    thread = await store.create_thread("t1")
    first = await store.start_run("t1", thread.thread_id, graph_id="g", assistant_id="g")
    assert first is not None
    # Within the window the claim holds; past it (the run cannot still be going), it lapses.
    assert (
        await store.start_run(
            "t1", thread.thread_id, graph_id="g", assistant_id="g", stale_after_s=3600
        )
        is None
    )
    await asyncio.sleep(0.05)
    second = await store.start_run(
        "t1", thread.thread_id, graph_id="g", assistant_id="g", stale_after_s=0.01
    )
    assert second is not None and second.run_id != first.run_id
