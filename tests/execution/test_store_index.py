"""The item store's semantic-search index (``store.index``) on SQLite and a real Postgres:
puts embed, queries rank with scores, filters and pages still apply, vectors follow their
item, tenants never see each other's, and embedding failures are clear errors that write
nothing. Embedded by the app's own function, or by the fake provider through the router."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from langgraph.store.base import SearchItem
from langgraph.store.base.embed import ensure_embeddings
from langgraph.store.postgres.aio import AsyncPostgresStore

from agent_runtime.config.fake_provider_settings import FakeProviderSettings
from agent_runtime.config.provider_settings import ProviderSettings
from agent_runtime.config.settings import ItemStoreSettings, StorageSettings
from agent_runtime.core.errors import BadRequest, EmbeddingFailed, ModelNotFound
from agent_runtime.core.identity import RunIdentity, run_identity
from agent_runtime.core.types import EmbeddingRequest, EmbeddingResult
from agent_runtime.execution.item_store import ItemStores
from agent_runtime.execution.store_index import EmbedCall, StoreIndex
from agent_runtime.execution.tenant_context import tenant_scope
from agent_runtime.execution.vector_rows import TABLE
from agent_runtime.fake.fake_embed import fake_embedding
from agent_runtime.fake.provider_app import create_fake_provider_app
from agent_runtime.gateway.model_router import ModelRouter

DIMS = 32
NOTES = ("notes", "u1")


def embed_texts(texts: Sequence[str]) -> list[list[float]]:
    """The app's own embedding function (sync), as langgraph.json would name it."""
    return [fake_embedding(text, DIMS) for text in texts]


def function_index(**fields: Any) -> StoreIndex:
    values: dict[str, Any] = {
        "embed": "./embed.py:embed_texts",
        "dims": DIMS,
        "fields": ("text",),
        "embeddings": ensure_embeddings(embed_texts),
        **fields,
    }
    return StoreIndex(**values)


@asynccontextmanager
async def indexed(
    storage: StorageSettings,
    index: StoreIndex,
    embed: EmbedCall | None = None,
    **options: Any,
) -> AsyncIterator[ItemStores]:
    stores = ItemStores(storage, ItemStoreSettings(**options), index=index, embed=embed)
    await stores.setup()
    try:
        yield stores
    finally:
        await stores.close()


@pytest.fixture
async def items(storage_settings: StorageSettings) -> AsyncIterator[ItemStores]:
    async with indexed(storage_settings, function_index()) as stores:
        yield stores


async def vector_rows(stores: ItemStores) -> int:
    raw = stores.raw
    if isinstance(raw, AsyncPostgresStore):
        async with raw.conn.connection() as conn:
            row = await (await conn.execute(f"SELECT count(*) AS n FROM {TABLE}")).fetchone()
            return int(row["n"])
    async with raw.conn.execute(f"SELECT count(*) FROM {TABLE}") as cursor:
        (count,) = await cursor.fetchone()
        return int(count)


async def put_notes(stores: ItemStores, tenant: str = "acme") -> None:
    store = stores.for_tenant(tenant)
    await store.aput(NOTES, "tea", {"text": "I like green tea", "kind": "drink"})
    await store.aput(NOTES, "cat", {"text": "my cat is called Bo", "kind": "pet"})
    await store.aput(NOTES, "coffee", {"text": "tea or coffee? coffee", "kind": "drink"})
    await store.aput(("notes", "u2"), "tea2", {"text": "green tea again", "kind": "drink"})


def keys(found: Sequence[SearchItem]) -> list[str]:
    return [item.key for item in found]


async def test_a_query_ranks_items_by_similarity_with_scores(items: ItemStores) -> None:
    await put_notes(items)
    found = await items.for_tenant("acme").asearch(NOTES, query="green tea")
    assert keys(found) == ["tea", "coffee", "cat"]
    scores = [item.score for item in found]
    assert all(isinstance(score, float) for score in scores)
    assert scores == sorted(scores, reverse=True)  # type: ignore[type-var]
    assert found[0].namespace == NOTES and found[0].value["text"] == "I like green tea"
    # The whole prefix, below it too; an exact text scores 1.
    under = await items.for_tenant("acme").asearch(("notes",), query="green tea again")
    assert under[0].key == "tea2" and under[0].score == pytest.approx(1.0)
    # Without a query, the store lists as before: no scores.
    plain = await items.for_tenant("acme").asearch(NOTES)
    assert sorted(keys(plain)) == ["cat", "coffee", "tea"]
    assert {item.score for item in plain} == {None}


async def test_filters_limit_and_offset_still_apply(items: ItemStores) -> None:
    await put_notes(items)
    store = items.for_tenant("acme")
    drinks = await store.asearch(("notes",), query="green tea", filter={"kind": "drink"})
    assert keys(drinks) == ["tea2", "tea", "coffee"]
    assert keys(await store.asearch(("notes",), query="green tea", limit=2)) == ["tea2", "tea"]
    second = await store.asearch(("notes",), query="green tea", limit=2, offset=2)
    assert keys(second) == ["coffee", "cat"]
    none = await store.asearch(("notes",), query="tea", filter={"kind": {"$eq": "fish"}})
    assert none == []


async def test_put_index_false_or_its_own_fields_are_honoured(items: ItemStores) -> None:
    store = items.for_tenant("acme")
    await store.aput(NOTES, "secret", {"text": "green tea"}, index=False)
    await store.aput(NOTES, "titled", {"text": "nothing", "title": "green tea"}, index=["title"])
    found = await store.asearch(NOTES, query="green tea")
    # An item kept out of the index is not among a query's results (as in LangGraph's
    # Postgres store); one indexed on its own fields is found by them.
    assert keys(found) == ["titled"]
    assert found[0].score == pytest.approx(1.0)
    assert sorted(keys(await store.asearch(NOTES))) == ["secret", "titled"]


async def test_whole_values_and_lists_of_texts_are_embedded(
    storage_settings: StorageSettings,
) -> None:
    async with indexed(storage_settings, function_index(fields=("$", "tags[*]"))) as stores:
        store = stores.for_tenant("acme")
        await store.aput(NOTES, "a", {"tags": ["sailing", "knots"], "n": 1})
        await store.aput(NOTES, "b", {"tags": ["baking"], "n": 2})
        assert await vector_rows(stores) == 2 + 3  # "$" each, and each tag
        found = await store.asearch(NOTES, query="knots")
        assert keys(found) == ["a", "b"]  # a's best vector, "knots", decides
        assert found[0].score == pytest.approx(1.0)


async def test_vectors_follow_their_item_through_updates_and_deletes(items: ItemStores) -> None:
    store = items.for_tenant("acme")
    await store.aput(NOTES, "n", {"text": "green tea"})
    await store.aput(NOTES, "m", {"text": "my cat Bo"})
    assert keys(await store.asearch(NOTES, query="green tea")) == ["n", "m"]
    await store.aput(NOTES, "n", {"text": "a dog named Rex"})  # re-embedded
    await store.aput(NOTES, "m", {"text": "green tea forever"})
    assert keys(await store.asearch(NOTES, query="green tea")) == ["m", "n"]
    assert await vector_rows(items) == 2
    await store.aput(NOTES, "m", {"text": "green tea"}, index=False)  # out of the index now
    assert keys(await store.asearch(NOTES, query="green tea")) == ["n"]
    await store.adelete(NOTES, "n")
    assert await vector_rows(items) == 0
    assert await store.asearch(NOTES, query="green tea") == []


async def test_expired_items_take_their_vectors_with_them(
    storage_settings: StorageSettings,
) -> None:
    async with indexed(storage_settings, function_index()) as stores:
        store = stores.for_tenant("acme")
        await store.aput(NOTES, "old", {"text": "green tea"}, ttl=0.0001)
        await store.aput(NOTES, "kept", {"text": "green tea"})
        assert await vector_rows(stores) == 2
        await wait_until_expired(stores)
        assert await vector_rows(stores) == 1
        assert keys(await store.asearch(NOTES, query="tea")) == ["kept"]


async def wait_until_expired(stores: ItemStores) -> None:
    """Sweep until the 6 ms item is gone (its expiry is in the database's clock)."""
    deadline = asyncio.get_running_loop().time() + 10
    while await stores.sweep_expired() == 0:
        assert asyncio.get_running_loop().time() < deadline, "the item never expired"
        await asyncio.sleep(0.05)


async def test_no_tenant_sees_another_tenants_vectors(items: ItemStores) -> None:
    await put_notes(items, "acme")
    other = items.for_tenant("globex")
    await other.aput(NOTES, "theirs", {"text": "I like green tea"})
    assert keys(await other.asearch(NOTES, query="I like green tea")) == ["theirs"]
    assert keys(await other.asearch((), query="green tea")) == ["theirs"]
    found = await items.for_tenant("acme").asearch((), query="I like green tea", limit=50)
    assert "theirs" not in keys(found) and len(found) == 4
    # Graphs' store: the run's tenant, whatever the namespace.
    with tenant_scope("globex"):
        seen = await items.contextual.asearch(NOTES, query="green tea")
    assert keys(seen) == ["theirs"]


async def test_sync_calls_from_a_graphs_worker_thread_embed_too(items: ItemStores) -> None:
    results: list[list[SearchItem]] = []

    def sync_node() -> None:  # what a sync node does, in LangGraph's thread pool
        with tenant_scope("acme"):
            items.contextual.put(NOTES, "t", {"text": "green tea"})
            results.append(items.contextual.search(NOTES, query="green tea"))

    await asyncio.to_thread(sync_node)
    assert keys(results[0]) == ["t"] and results[0][0].score == pytest.approx(1.0)


def failing(texts: Sequence[str]) -> list[list[float]]:
    raise ConnectionError("embedding service down")


@pytest.mark.parametrize(
    ("embeddings", "message"),
    [
        (failing, "failed: ConnectionError: embedding service down"),
        (lambda texts: [[0.5] * 3 for _ in texts], "vectors of 3 numbers; store.index.dims is 32"),
        (lambda texts: [], "gave 0 vectors for 1 texts"),
        (lambda texts: ["no"], "other than lists of numbers"),
        (lambda texts: [[float("nan")] * DIMS], "NaN or infinity"),
    ],
)
async def test_an_embedding_failure_is_a_clear_error_that_writes_nothing(
    storage_settings: StorageSettings, embeddings: Any, message: str
) -> None:
    index = function_index(embeddings=ensure_embeddings(embeddings))
    async with indexed(storage_settings, index) as stores:
        store = stores.for_tenant("acme")
        with pytest.raises(EmbeddingFailed, match=message) as raised:
            await store.aput(NOTES, "n", {"text": "green tea"})
        assert "./embed.py:embed_texts" in raised.value.message
        assert await store.aget(NOTES, "n") is None
        with pytest.raises(EmbeddingFailed):
            await store.asearch(NOTES, query="tea")
        # Items with nothing to embed, and plain searches, need no embedding.
        await store.aput(NOTES, "empty", {"other": 1})
        assert keys(await store.asearch(NOTES)) == ["empty"]


async def test_a_search_over_too_many_items_is_refused(storage_settings: StorageSettings) -> None:
    async with indexed(storage_settings, function_index(), index_max_items=2) as stores:
        store = stores.for_tenant("acme")
        await put_notes(stores)
        with pytest.raises(BadRequest, match="AGENT_STORE_INDEX_MAX_ITEMS"):
            await store.asearch(("notes",), query="tea")
        narrowed = await store.asearch(("notes",), query="tea", filter={"kind": "pet"})
        assert keys(narrowed) == ["cat"]


async def test_vectors_of_another_model_or_size_are_not_compared(
    storage_settings: StorageSettings,
) -> None:
    async with indexed(storage_settings, function_index()) as stores:
        await stores.for_tenant("acme").aput(NOTES, "n", {"text": "green tea"})
    resized = function_index(
        dims=16,
        embeddings=ensure_embeddings(lambda texts: [fake_embedding(text, 16) for text in texts]),
    )
    async with indexed(storage_settings, resized) as stores:
        store = stores.for_tenant("acme")
        assert await store.asearch(NOTES, query="green tea") == []
        await store.aput(NOTES, "n", {"text": "green tea"})  # put again: indexed anew
        assert keys(await store.asearch(NOTES, query="green tea")) == ["n"]


# -- "openai:<model>": the model router embeds -------------------------------------------


@asynccontextmanager
async def fake_router() -> AsyncIterator[ModelRouter]:
    app = create_fake_provider_app(FakeProviderSettings(_env_file=None, latency_ms=0))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http:
        router = ModelRouter(ProviderSettings(_env_file=None), "http://fake/v1", http_client=http)
        try:
            yield router
        finally:
            await router.close()


async def test_the_model_router_embeds_for_the_items_tenant(
    storage_settings: StorageSettings,
) -> None:
    seen: list[EmbeddingRequest] = []
    async with fake_router() as router:

        async def embed(request: EmbeddingRequest) -> EmbeddingResult:
            seen.append(request)
            return await router.embed(request)

        index = StoreIndex(embed="openai:fake-embed", dims=DIMS, fields=("text",))
        async with indexed(storage_settings, index, embed, embed_batch_size=2) as stores:
            await put_notes(stores)
            with run_identity(RunIdentity("acme", key_id="k", thread_id="t", run_id="r")):
                found = await stores.for_tenant("acme").asearch(NOTES, query="green tea")
    assert keys(found) == ["tea", "coffee", "cat"]
    # Cosine similarity of the fake's (unit) vectors: their dot product.
    query, best = fake_embedding("green tea", DIMS), fake_embedding("I like green tea", DIMS)
    dot = sum(a * b for a, b in zip(query, best, strict=True))
    assert found[0].score == pytest.approx(dot, abs=1e-5)
    assert {(r.alias, r.dimensions, r.tenant_id) for r in seen} == {("fake-embed", DIMS, "acme")}
    query = seen[-1]
    assert (query.texts, query.key_id, query.thread_id, query.run_id) == (
        ["green tea"], "k", "t", "r",
    )  # fmt: skip


async def test_a_model_the_router_does_not_serve_is_its_404(
    storage_settings: StorageSettings,
) -> None:
    async with fake_router() as router:
        index = StoreIndex(embed="openai:text-embedding-9", dims=DIMS)
        async with indexed(storage_settings, index, router.embed) as stores:
            store = stores.for_tenant("acme")
            with pytest.raises(ModelNotFound, match="text-embedding-9"):
                await store.aput(NOTES, "n", {"text": "green tea"})
            assert await store.aget(NOTES, "n") is None
