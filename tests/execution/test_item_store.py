"""The item store on SQLite and a real Postgres: items, search, namespaces, TTLs, and
tenant isolation through :class:`TenantScopedStore` and :class:`ContextualStore`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC
from pathlib import Path

import pytest
from langgraph.store.base import (
    GetOp,
    InvalidNamespaceError,
    Item,
    ListNamespacesOp,
    MatchCondition,
    PutOp,
    SearchItem,
    SearchOp,
)
from langgraph.store.postgres.aio import AsyncPostgresStore

from agent_runtime.config.settings import ItemStoreSettings, StorageSettings
from agent_runtime.core.errors import DependencyUnavailable
from agent_runtime.execution.item_store import ItemStores, tenant_prefix
from agent_runtime.execution.tenant_context import NoTenantScope, current_tenant, tenant_scope
from tests.time_control import wait_for

# Short enough to wait for, long enough that a put and its read land before expiry.
SHORT_TTL_MINUTES = 0.02  # 1.2 s


@pytest.fixture
async def items(storage_settings: StorageSettings) -> AsyncIterator[ItemStores]:
    stores = ItemStores(storage_settings, ItemStoreSettings())
    await stores.setup()
    yield stores
    await stores.close()


async def stored_rows(stores: ItemStores) -> int:
    raw = stores.raw
    if isinstance(raw, AsyncPostgresStore):
        async with raw.conn.connection() as conn:
            row = await (await conn.execute("SELECT count(*) AS n FROM store")).fetchone()
            return int(row["n"])
    async with raw.conn.execute("SELECT count(*) FROM store") as cursor:
        (count,) = await cursor.fetchone()
        return int(count)


async def test_put_get_update_and_delete(items: ItemStores) -> None:
    store = items.for_tenant("acme")
    await store.aput(("docs", "u1"), "a", {"title": "first", "n": 1})

    item = await store.aget(("docs", "u1"), "a")
    assert item is not None
    assert item.namespace == ("docs", "u1")
    assert (item.key, item.value) == ("a", {"title": "first", "n": 1})
    assert item.created_at.tzinfo is not None and item.updated_at.tzinfo is not None
    assert item.created_at.astimezone(UTC) <= item.updated_at.astimezone(UTC)
    assert item.dict()["namespace"] == ["docs", "u1"]

    await store.aput(("docs", "u1"), "a", {"title": "second"})
    updated = await store.aget(("docs", "u1"), "a")
    assert updated is not None and updated.value == {"title": "second"}

    await store.adelete(("docs", "u1"), "a")
    assert await store.aget(("docs", "u1"), "a") is None
    # Deleting what is not there is not an error (Platform answers 204).
    await store.adelete(("docs", "u1"), "a")


async def test_search_by_prefix_filter_and_page(items: ItemStores) -> None:
    store = items.for_tenant("acme")
    await store.aput(("docs", "u1"), "a", {"kind": "note", "n": 1})
    await store.aput(("docs", "u1", "deep"), "b", {"kind": "report", "n": 2})
    await store.aput(("docs", "u2"), "c", {"kind": "note", "n": 3})
    await store.aput(("docsx",), "d", {"kind": "note", "n": 4})

    under_docs = await store.asearch(("docs",), limit=10)
    # ("docsx",) is a sibling, not below ("docs",).
    assert sorted(i.key for i in under_docs) == ["a", "b", "c"]
    assert all(isinstance(i, SearchItem) and i.score is None for i in under_docs)
    assert {i.namespace for i in under_docs} == {
        ("docs", "u1"),
        ("docs", "u1", "deep"),
        ("docs", "u2"),
    }

    notes = await store.asearch(("docs",), filter={"kind": "note"})
    assert sorted(i.key for i in notes) == ["a", "c"]
    assert [i.key for i in await store.asearch(("docs", "u1"), filter={"n": 2})] == ["b"]

    everything = await store.asearch((), limit=10)
    assert sorted(i.key for i in everything) == ["a", "b", "c", "d"]
    first, second = await store.asearch((), limit=2), await store.asearch((), limit=2, offset=2)
    assert len(first) == len(second) == 2
    assert {i.key for i in first} | {i.key for i in second} == {"a", "b", "c", "d"}
    assert await store.asearch((), limit=10, offset=4) == []


async def test_list_namespaces_with_prefix_suffix_depth_and_page(items: ItemStores) -> None:
    store = items.for_tenant("acme")
    for namespace in [("a", "b", "c"), ("a", "b", "d"), ("a", "e"), ("x",)]:
        await store.aput(namespace, "k", {"v": 1})

    assert await store.alist_namespaces() == [("a", "b", "c"), ("a", "b", "d"), ("a", "e"), ("x",)]
    assert await store.alist_namespaces(prefix=("a",)) == [
        ("a", "b", "c"),
        ("a", "b", "d"),
        ("a", "e"),
    ]
    assert await store.alist_namespaces(prefix=("a", "b")) == [("a", "b", "c"), ("a", "b", "d")]
    assert await store.alist_namespaces(suffix=("d",)) == [("a", "b", "d")]
    assert await store.alist_namespaces(prefix=("a", "*"), suffix=("c",)) == [("a", "b", "c")]
    assert await store.alist_namespaces(max_depth=1) == [("a",), ("x",)]
    assert await store.alist_namespaces(prefix=("a",), max_depth=2) == [("a", "b"), ("a", "e")]
    assert await store.alist_namespaces(limit=2, offset=1) == [("a", "b", "d"), ("a", "e")]
    # A suffix longer than a namespace never matches it, even though the stored namespace
    # is longer (it carries the tenant's labels in front).
    assert await store.alist_namespaces(suffix=("*", "x")) == []
    assert await store.alist_namespaces(suffix=("acme", "x")) == []
    assert await store.alist_namespaces(suffix=("*", "*", "a", "e")) == []
    assert await store.alist_namespaces(suffix=("*", "e")) == [("a", "e")]


async def test_tenants_never_see_each_others_items(items: ItemStores) -> None:
    alice, bob = items.for_tenant("alice"), items.for_tenant("bob")
    await alice.aput(("memories", "u"), "k", {"secret": "alice"})

    assert await bob.aget(("memories", "u"), "k") is None
    assert await bob.asearch(()) == []
    assert await bob.asearch(("memories",), filter={"secret": "alice"}) == []
    assert await bob.alist_namespaces() == []
    assert await bob.alist_namespaces(prefix=("*",)) == []
    assert await bob.alist_namespaces(suffix=("u",)) == []

    await bob.adelete(("memories", "u"), "k")
    await bob.aput(("memories", "u"), "k", {"secret": "bob"})
    kept = await alice.aget(("memories", "u"), "k")
    assert kept is not None and kept.value == {"secret": "alice"}
    mine = await bob.aget(("memories", "u"), "k")
    assert mine is not None and mine.value == {"secret": "bob"}
    # What is stored carries each tenant's prefix.
    assert sorted(await items.raw.alist_namespaces()) == [
        ("tenant", "alice", "memories", "u"),
        ("tenant", "bob", "memories", "u"),
    ]


async def test_tenant_ids_with_separators_and_wildcards_stay_one_label(items: ItemStores) -> None:
    # Unescaped, tenant "a.b" with ("x",) and tenant "a" with ("b", "x") would be one row,
    # and tenant "*" would list every tenant's namespaces.
    await items.for_tenant("a.b").aput(("x",), "k", {"owner": "a.b"})
    await items.for_tenant("a").aput(("b", "x"), "k", {"owner": "a"})
    await items.for_tenant("100%_").aput(("x",), "k", {"owner": "100%_"})

    dotted = await items.for_tenant("a.b").aget(("x",), "k")
    assert dotted is not None and dotted.value == {"owner": "a.b"}
    plain = await items.for_tenant("a").aget(("b", "x"), "k")
    assert plain is not None and plain.value == {"owner": "a"}
    assert await items.for_tenant("a").alist_namespaces() == [("b", "x")]
    assert await items.for_tenant("*").alist_namespaces() == []
    assert await items.for_tenant("*").asearch(()) == []
    assert await items.for_tenant("100").asearch(()) == []
    assert [i.value for i in await items.for_tenant("100%_").asearch(())] == [{"owner": "100%_"}]
    assert tenant_prefix("a.b*%") == ("tenant", "a%2Eb%2A%25")


async def test_invalid_namespaces_are_rejected_before_any_write(items: ItemStores) -> None:
    store = items.for_tenant("acme")
    with pytest.raises(InvalidNamespaceError, match="cannot be empty"):
        await store.aput((), "k", {})
    with pytest.raises(InvalidNamespaceError, match="langgraph"):
        await store.aput(("langgraph", "x"), "k", {})
    with pytest.raises(InvalidNamespaceError, match="periods"):
        await store.aput(("a.b",), "k", {})
    # Ops handed to abatch directly get the same checks: "a.b" must not reach ("a", "b").
    with pytest.raises(InvalidNamespaceError, match="periods"):
        await store.abatch([PutOp(("a.b",), "k", {"v": 1})])
    with pytest.raises(InvalidNamespaceError, match="cannot be empty"):
        await store.abatch([PutOp((), "k", {"v": 1})])
    assert await items.raw.alist_namespaces() == []
    with pytest.raises(ValueError, match="empty"):
        items.for_tenant("")


async def test_abatch_translates_every_op_and_result(items: ItemStores) -> None:
    store = items.for_tenant("acme")
    # The stores run a batch's reads before its writes, so the put goes first on its own.
    assert await store.abatch([PutOp(("n", "m"), "k", {"v": 1})]) == [None]
    got, found, listed = await store.abatch(
        [
            GetOp(("n", "m"), "k"),
            SearchOp(("n",)),
            ListNamespacesOp(
                match_conditions=(MatchCondition(match_type="prefix", path=("n",)),),
            ),
        ]
    )
    assert isinstance(got, Item) and got.namespace == ("n", "m")
    assert isinstance(found, list) and [i.namespace for i in found] == [("n", "m")]
    assert listed == [("n", "m")]


async def test_ttl_items_expire_and_the_sweep_deletes_them(items: ItemStores) -> None:
    store = items.for_tenant("acme")
    await store.aput(("t",), "short", {"v": 1}, ttl=SHORT_TTL_MINUTES)
    await store.aput(("t",), "forever", {"v": 2})
    assert await store.aget(("t",), "short", refresh_ttl=False) is not None

    # The database judges expiry (SQLite to the second): sweep until it finds the item.
    assert await wait_for(items.sweep_expired) == 1
    assert await store.aget(("t",), "short") is None
    assert [i.key for i in await store.asearch(("t",))] == ["forever"]
    assert await items.sweep_expired() == 0


async def test_default_ttl_applies_to_items_put_without_one(
    storage_settings: StorageSettings,
) -> None:
    stores = ItemStores(storage_settings, ItemStoreSettings(default_ttl_minutes=SHORT_TTL_MINUTES))
    await stores.setup()
    try:
        store = stores.for_tenant("acme")
        await store.aput(("t",), "default", {"v": 1})
        await store.aput(("t",), "kept", {"v": 2}, ttl=None)
        assert await wait_for(stores.sweep_expired) == 1
        assert [i.key for i in await store.asearch(("t",))] == ["kept"]
    finally:
        await stores.close()


async def test_the_background_sweeper_deletes_expired_items(
    storage_settings: StorageSettings,
) -> None:
    # A sweep every 0.6 s: the item goes without anyone calling sweep_expired.
    stores = ItemStores(storage_settings, ItemStoreSettings(sweep_interval_minutes=0.01))
    await stores.setup()
    try:
        await stores.for_tenant("acme").aput(("t",), "k", {"v": 1}, ttl=SHORT_TTL_MINUTES)

        async def swept() -> bool:
            # Rows, not reads: Postgres reads already omit expired items before a sweep.
            return await stored_rows(stores) == 0

        await wait_for(swept, timeout_s=15)
    finally:
        await stores.close()


async def test_contextual_store_acts_for_the_scoped_tenant_only(items: ItemStores) -> None:
    contextual = items.contextual
    with pytest.raises(NoTenantScope, match="tenant_scope"):
        await contextual.aget(("m",), "k")
    with pytest.raises(NoTenantScope):
        await contextual.aput(("m",), "k", {"v": 1})
    with pytest.raises(NoTenantScope):
        await contextual.asearch(())
    with pytest.raises(NoTenantScope):
        await contextual.alist_namespaces()
    assert await items.raw.alist_namespaces() == []

    with tenant_scope("alice"):
        await contextual.aput(("m",), "k", {"who": "alice"})
        with tenant_scope("bob"):
            assert await contextual.aget(("m",), "k") is None
            await contextual.aput(("m",), "k", {"who": "bob"})
        # The outer tenant is back after the inner scope, also in tasks started here.
        assert current_tenant.get() == "alice"
        found = await asyncio.create_task(contextual.aget(("m",), "k"))
        assert found is not None and found.value == {"who": "alice"}
    assert current_tenant.get() is None
    with pytest.raises(NoTenantScope):
        await contextual.aget(("m",), "k")
    bobs = await items.for_tenant("bob").aget(("m",), "k")
    assert bobs is not None and bobs.value == {"who": "bob"}


async def test_sync_calls_from_the_event_loop_are_refused(items: ItemStores) -> None:
    with pytest.raises(RuntimeError, match="async methods"):
        items.for_tenant("acme").get(("m",), "k")


async def test_sync_calls_from_a_worker_thread_work(items: ItemStores) -> None:
    store = items.for_tenant("acme")

    def in_thread() -> object:
        store.put(("m",), "k", {"v": 1})
        return store.get(("m",), "k")

    found = await asyncio.to_thread(in_thread)
    assert found is not None and found.value == {"v": 1}  # type: ignore[attr-defined]


async def test_replicas_set_up_one_database_concurrently(
    storage_settings: StorageSettings,
) -> None:
    replicas = [ItemStores(storage_settings) for _ in range(3)]
    await asyncio.gather(*(r.setup() for r in replicas))
    try:
        await replicas[0].for_tenant("acme").aput(("m",), "k", {"v": 1})
        seen = await replicas[2].for_tenant("acme").aget(("m",), "k")
        assert seen is not None and seen.value == {"v": 1}
    finally:
        for replica in replicas:
            await replica.close()


async def test_sqlite_store_has_its_own_file(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    stores = ItemStores(StorageSettings(data_dir=folder, database_url=None))
    await stores.setup()
    try:
        assert stores.sqlite_path == folder / "runtime-store.db"
        assert stores.sqlite_path.exists()
    finally:
        await stores.close()
    with pytest.raises(RuntimeError, match="setup"):
        stores.for_tenant("acme")


async def test_unreachable_postgres_is_dependency_unavailable() -> None:
    settings = StorageSettings(
        database_url="postgresql://postgres@127.0.0.1:1/none", db_timeout_s=1
    )
    with pytest.raises(DependencyUnavailable, match="item store"):
        await ItemStores(settings).setup()
