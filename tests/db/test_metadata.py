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

    assert own.value.message == "Thread with ID th-1 already exists"

    # Ids are per tenant: another tenant's id is free, as any unused id (no 409 that
    # would tell it the id exists), in both modes.
    modes: tuple[Literal["raise", "do_nothing"], ...] = ("raise", "do_nothing")
    for tenant, mode in zip(("t2", "t3"), modes, strict=True):
        theirs = await store.create_thread(tenant, thread_id="th-1", if_exists=mode)
        assert (theirs.tenant_id, theirs.thread_id, theirs.metadata) == (tenant, "th-1", {})
        assert await store.get_thread(tenant, "th-1") == theirs
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
