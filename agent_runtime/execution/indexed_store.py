"""LangGraph's item store with the runtime's own semantic-search index (``store.index``).

:class:`IndexedStore` wraps the raw ``AsyncPostgresStore``/``AsyncSqliteStore`` (created
without an index: theirs needs pgvector or sqlite-vec) for one tenant, below
``TenantScopedStore``, so every namespace it sees is already the tenant's. With LangGraph's
meaning of the index:

- a put embeds the item's texts at the index's ``fields`` (or at the put's own ``index``
  paths; ``index=False``: none) before anything is written, so an embedding failure writes
  nothing; the vectors replace the item's previous ones (:mod:`.vector_rows`);
- a search with a ``query`` embeds it, takes the items its prefix and ``filter`` select
  (through the store itself, so filters and expiry mean what they mean without a query),
  scores each by the cosine similarity of its closest vector, best first, then applies
  ``offset`` and ``limit``; as in LangGraph's Postgres store, items without vectors are not
  among the results. Scores are computed here, brute force: a search scoring more than
  ``max_items`` items is refused (:class:`~agent_runtime.core.errors.BadRequest`) rather
  than slowed past use; an approximate index in the database (pgvector) is the way past it.

Vectors are kept under the index's ``embedder_id`` (how, and how long): after a change of
model or ``dims``, older vectors are not compared, and their items are found again once
put again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from contextlib import nullcontext
from typing import cast

import numpy as np
from langgraph.store.base import BaseStore, GetOp, Op, PutOp, Result, SearchItem, SearchOp
from langgraph.store.postgres.aio import AsyncPostgresStore
from langgraph.store.sqlite.aio import AsyncSqliteStore

from agent_runtime.config.settings import ItemStoreSettings
from agent_runtime.core.errors import BadRequest
from agent_runtime.core.identity import current, run_identity
from agent_runtime.execution.store_index import (
    EmbedCall,
    Embedder,
    StoreIndex,
    Vectors,
    build_embedder,
    texts_to_embed,
)
from agent_runtime.execution.vector_rows import ItemVectors, StoredVectors, VectorRows

RawStore = AsyncPostgresStore | AsyncSqliteStore


class IndexedStore(BaseStore):
    """``inner`` for ``tenant_id``, its puts embedded and its queries ranked."""

    def __init__(
        self,
        inner: RawStore,
        rows: VectorRows,
        index: StoreIndex,
        embedder: Embedder,
        tenant_id: str,
        max_items: int,
    ) -> None:
        self._inner = inner
        self._rows = rows
        self._index = index
        self._embedder = embedder
        self._tenant_id = tenant_id
        self._max_items = max_items
        # As TenantScopedStore reads them: AsyncSqliteStore handles TTLs, though its
        # supports_ttl says otherwise.
        self.supports_ttl = inner.supports_ttl or isinstance(inner, AsyncSqliteStore)
        self.ttl_config = inner.ttl_config

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        ops = list(ops)
        # Every embedding first: a failure leaves the store as it was.
        puts = {(op.namespace, op.key): op for op in ops if isinstance(op, PutOp)}
        vectors = await self._embed_puts(list(puts.values()))
        queried = {
            position: op for position, op in enumerate(ops) if isinstance(op, SearchOp) and op.query
        }
        queries = {
            position: await self._embedder.query(cast(str, op.query), self._tenant_id)
            for position, op in queried.items()
        }
        results: list[Result] = [None] * len(ops)
        plain = [(position, op) for position, op in enumerate(ops) if position not in queried]
        if plain:
            answers = await self._inner.abatch([op for _, op in plain])
            for (position, _), answer in zip(plain, answers, strict=True):
                results[position] = answer
        if vectors:
            await self._rows.replace(vectors, self._index.embedder_id)
        for position, op in queried.items():
            results[position] = await self._search(op, queries[position][0])
        return results

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        # From a worker thread (TenantScopedStore refuses the loop's own): run on the
        # store's loop, with the caller's run identity for the embedding calls.
        ops = list(ops)
        identity = current()

        async def run() -> list[Result]:
            with run_identity(identity) if identity is not None else nullcontext():
                return await self.abatch(ops)

        return asyncio.run_coroutine_threadsafe(run(), self._inner.loop).result()

    # -- puts ------------------------------------------------------------------------------
    async def _embed_puts(self, puts: list[PutOp]) -> list[ItemVectors]:
        found: list[list[tuple[str, str]]] = []
        for op in puts:
            if op.value is None or op.index is False:
                found.append([])  # deleted, or kept out of the index: no vectors now
            else:
                fields = self._index.fields if op.index is None else op.index
                found.append(texts_to_embed(op.value, fields))
        texts = [text for item in found for _, text in item]
        if texts:
            vectors = await self._embedder.documents(texts, self._tenant_id)
        else:
            vectors = np.zeros((0, self._index.dims), dtype=np.float32)
        items: list[ItemVectors] = []
        start = 0
        for op, item in zip(puts, found, strict=True):
            fields = tuple(field for field, _ in item)
            rows = vectors[start : start + len(item)]
            items.append(ItemVectors(".".join(op.namespace), op.key, fields, rows))
            start += len(item)
        return items

    # -- searches --------------------------------------------------------------------------
    async def _search(self, op: SearchOp, query: Vectors) -> list[SearchItem]:
        limit = self._max_items + 1
        selected = await self._inner.abatch(
            [SearchOp(op.namespace_prefix, op.filter, limit, 0, None, refresh_ttl=False)]
        )
        candidates = cast(list[SearchItem], selected[0])
        if len(candidates) > self._max_items:
            raise BadRequest(
                f"a search with a query compares every item under its namespace prefix that "
                f"passes its filter, at most {self._max_items} (AGENT_STORE_INDEX_MAX_ITEMS); "
                "narrow the prefix or add a filter"
            )
        positions = {(".".join(item.namespace), item.key): i for i, item in enumerate(candidates)}
        prefix = ".".join(op.namespace_prefix) if op.namespace_prefix else None
        stored = await self._rows.under(prefix, self._index.embedder_id, self._index.dims)
        owners = [positions.get(key, -1) for key in stored.keys]
        # Off the event loop: scoring a large prefix would stall every other request here.
        scores = await asyncio.to_thread(_best_scores, stored, owners, len(candidates), query)
        # Best first; equal scores keep the store's order (most recently updated first).
        order = np.argsort(-scores, kind="stable")
        chosen = [int(i) for i in order[np.isfinite(scores[order])][op.offset :][: op.limit]]
        page = [candidates[i] for i in chosen]
        if op.refresh_ttl and page:
            await self._inner.abatch(
                [GetOp(item.namespace, item.key, refresh_ttl=True) for item in page]
            )
        return [
            SearchItem(
                item.namespace,
                item.key,
                item.value,
                item.created_at,
                item.updated_at,
                float(scores[position]),
            )
            for item, position in zip(page, chosen, strict=True)
        ]


class StoreIndexing:
    """The index of an item store: its vectors' table, once set up, and for each tenant
    the :class:`IndexedStore` that uses it."""

    def __init__(
        self, index: StoreIndex, embed: EmbedCall | None, options: ItemStoreSettings
    ) -> None:
        self._index = index
        self._embedder = build_embedder(index, embed, options.embed_batch_size)
        self._max_items = options.index_max_items
        self._rows: VectorRows | None = None

    async def set_up(self, rows: VectorRows) -> None:
        await rows.setup()
        self._rows = rows

    def store(self, raw: RawStore, tenant_id: str) -> IndexedStore:
        if self._rows is None:
            raise RuntimeError("the store index's table is not set up")
        return IndexedStore(
            raw, self._rows, self._index, self._embedder, tenant_id, self._max_items
        )


def _best_scores(stored: StoredVectors, owners: list[int], count: int, query: Vectors) -> Vectors:
    """The score of each of ``count`` candidates: the cosine similarity of its vector
    closest to ``query`` (``owners[i]`` is the candidate of vector ``i``, -1 for none of
    them); ``-inf`` for a candidate without vectors."""
    best = np.full(count, -np.inf)
    owned = np.asarray(owners, dtype=np.int64)
    mine = owned >= 0
    if not mine.any():
        return best
    # float32 throughout: 100,000 vectors of 256 numbers are 100 MB already.
    matrix = stored.matrix if mine.all() else stored.matrix[mine]
    norms = np.linalg.norm(matrix, axis=1) * np.linalg.norm(query)
    dots = matrix @ query
    # A zero vector is like nothing: score 0 rather than a division by zero.
    scores = np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)
    np.maximum.at(best, owned[mine], scores)
    return best
