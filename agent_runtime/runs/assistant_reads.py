"""Assistants' ids, the default assistants and the reads: resolve, get, search, versions.

:class:`AssistantReads` is the base :class:`agent_runtime.runs.assistants.AssistantStore`
writes on. Rows are keyed by ``(tenant_id, assistant_id)``, so tenants never see or clash
with each other's assistants, even with equal ids.

Each registered graph has a default assistant per tenant, ``default_assistant_id(graph)``
(the uuid5 langgraph-api uses). They are materialised lazily: the first call for a tenant
in this process inserts the ones that are absent (one idempotent statement per table),
and the tenant is then remembered. Platform re-registers its defaults at every start-up,
so a deleted default comes back after a restart there too.

Ids: a registered graph id stands for its default assistant wherever an assistant id is
accepted; anything else must be a UUID (422 otherwise), as in langgraph-api.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, Select, func, select, type_coerce
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from agent_runtime.core.errors import InvalidRequest, NotFound
from agent_runtime.core.metadata_filter import MetadataFilter
from agent_runtime.core.records import AssistantRecord
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.db.tables import ASSISTANT_VERSIONS, ASSISTANTS, utcnow
from agent_runtime.protocol.agent_protocol import default_assistant_id

SortBy = Literal["assistant_id", "graph_id", "name", "created_at", "updated_at"]
SortOrder = Literal["asc", "desc"]

INVALID_ID = "Invalid assistant ID: must be a UUID"
# Names compared case-insensitively when sorting, as Platform does.
_CASE_INSENSITIVE = ("name", "graph_id")


class AssistantVersionRecord(BaseModel):
    """One stored version of an assistant (``POST /assistants/{id}/versions`` items)."""

    tenant_id: str
    assistant_id: str
    version: int
    graph_id: str
    name: str
    description: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime


def json_contains(doc: Any, query: Any) -> bool:
    """Postgres ``jsonb @>`` in Python (SQLite has no such operator).

    Objects contain objects key by key, arrays contain arrays element by element (order
    and repeats ignored), scalars must be equal; ``true`` is not ``1``, ``1`` is ``1.0``.
    """
    if isinstance(query, dict):
        return isinstance(doc, dict) and all(
            key in doc and json_contains(doc[key], value) for key, value in query.items()
        )
    if isinstance(query, list):
        return isinstance(doc, list) and all(
            any(json_contains(item, wanted) for item in doc) for wanted in query
        )
    if isinstance(doc, bool) or isinstance(query, bool):
        return isinstance(doc, bool) and isinstance(query, bool) and doc == query
    if isinstance(doc, int | float) and isinstance(query, int | float):
        return doc == query
    return type(doc) is type(query) and bool(doc == query)


class AssistantReads:
    """Ids, default assistants and reads of every tenant's assistants, over the runtime's
    :class:`MetadataStore`."""

    def __init__(
        self,
        store: MetadataStore,
        graph_ids: Sequence[str],
        *,
        descriptions: Mapping[str, str | None] | None = None,
    ) -> None:
        self._store = store
        self._graph_ids = tuple(graph_ids)
        self._descriptions = dict(descriptions or {})
        self._defaults_ready: set[str] = set()

    # -- ids and defaults -----------------------------------------------------------
    def canonical_id(self, assistant_id: str, invalid_detail: str = INVALID_ID) -> str:
        """The stored id for ``assistant_id``: a graph id maps to its default assistant,
        a UUID to its canonical spelling; anything else is :class:`InvalidRequest`."""
        if assistant_id in self._graph_ids:
            return default_assistant_id(assistant_id)
        try:
            return str(uuid.UUID(assistant_id))
        except ValueError:
            raise InvalidRequest(invalid_detail) from None

    def check_graph(self, graph_id: str) -> None:
        """404 with Platform's message for a graph that is not registered."""
        if graph_id not in self._graph_ids:
            raise NotFound(
                f"Graph '{graph_id}' not found. Expected one of: {sorted(self._graph_ids)}"
            )

    async def ensure_defaults(self, tenant_id: str) -> None:
        """Insert the tenant's default assistants that are absent (once per process)."""
        if tenant_id in self._defaults_ready or not self._graph_ids:
            return
        start = utcnow()
        rows = [
            {
                "tenant_id": tenant_id,
                "assistant_id": default_assistant_id(graph_id),
                "graph_id": graph_id,
                "name": graph_id,
                "description": self._descriptions.get(graph_id),
                "config": {},
                "context": {},
                "metadata": {"created_by": "system"},
                # Platform registers graphs one after another: newest-first lists then
                # show them in reverse registration order, and so do ours.
                "created_at": start + timedelta(microseconds=i),
            }
            for i, graph_id in enumerate(self._graph_ids)
        ]
        make_insert = pg_insert if self._store.is_postgres else sqlite_insert
        async with self._store.transaction() as conn:
            await conn.execute(
                make_insert(ASSISTANTS)
                .values([{**row, "version": 1, "updated_at": row["created_at"]} for row in rows])
                .on_conflict_do_nothing()
            )
            await conn.execute(
                make_insert(ASSISTANT_VERSIONS)
                .values([{**row, "version": 1} for row in rows])
                .on_conflict_do_nothing()
            )
        self._defaults_ready.add(tenant_id)

    # -- reads ----------------------------------------------------------------------
    async def resolve(self, tenant_id: str, assistant_id: str) -> AssistantRecord:
        """The latest version of the tenant's assistant ``assistant_id`` (or graph id).

        What a run executes: its graph, config and context. NotFound for an unknown id
        (or one of another tenant); InvalidRequest (422) for an id that is neither a UUID
        nor a graph id, with the message langgraph-api gives for runs.
        """
        invalid = (
            f"Invalid assistant: '{assistant_id}'. Must be either:\n"
            "- A valid assistant UUID, or\n"
            f"- One of the registered graphs: {', '.join(self._graph_ids)}"
        )
        return await self._get(tenant_id, assistant_id, self.canonical_id(assistant_id, invalid))

    async def get(self, tenant_id: str, assistant_id: str) -> AssistantRecord:
        """``GET /assistants/{id}``; assistants of graphs no longer registered are hidden."""
        return await self._get(tenant_id, assistant_id, self.canonical_id(assistant_id))

    async def _get(self, tenant_id: str, given_id: str, canonical: str) -> AssistantRecord:
        await self.ensure_defaults(tenant_id)
        async with self._store.transaction() as conn:
            row = await fetch_assistant(conn, tenant_id, canonical)
        if row is None or row.graph_id not in self._graph_ids:
            raise NotFound(f"Assistant {given_id} not found")
        return row

    async def search(
        self,
        tenant_id: str,
        *,
        graph_id: str | None = None,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
        limit: int = 10,
        offset: int = 0,
        sort_by: SortBy | None = None,
        sort_order: SortOrder | None = None,
        allowed: MetadataFilter | None = None,
    ) -> tuple[list[AssistantRecord], int | None]:
        """One page of the tenant's assistants and the offset of the next page (or None).

        Newest first by default; with ``sort_by`` and no ``sort_order`` also descending.
        ``name`` matches a case-insensitive substring, ``metadata`` by containment;
        ``allowed`` (an app's auth filter) narrows them to those the caller may see.
        """
        await self.ensure_defaults(tenant_id)
        query = self._filtered(tenant_id, graph_id, name, metadata, allowed)
        column = ASSISTANTS.c[sort_by or "created_at"]
        key = func.lower(column) if sort_by in _CASE_INSENSITIVE else column
        ascending = sort_order == "asc"
        tiebreak = ASSISTANTS.c.assistant_id
        query = query.order_by(
            key.asc() if ascending else key.desc(),
            tiebreak.asc() if ascending else tiebreak.desc(),
        )
        in_sql = (not metadata and allowed is None) or self._store.is_postgres
        if in_sql:
            # One row past the page says whether there is a next one.
            query = query.limit(limit + 1).offset(offset)
        async with self._store.transaction() as conn:
            rows = (await conn.execute(query)).mappings().all()
        records = [AssistantRecord.model_validate(dict(row)) for row in rows]
        if not in_sql:
            records = [r for r in records if _passes(r.metadata, metadata, allowed)][offset:]
        page = records[:limit]
        return page, (offset + limit if len(records) > limit else None)

    async def count(
        self,
        tenant_id: str,
        *,
        graph_id: str | None = None,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
        allowed: MetadataFilter | None = None,
    ) -> int:
        await self.ensure_defaults(tenant_id)
        query = self._filtered(tenant_id, graph_id, name, metadata, allowed)
        async with self._store.transaction() as conn:
            if (not metadata and allowed is None) or self._store.is_postgres:
                counted = select(func.count()).select_from(query.subquery())
                return int((await conn.execute(counted)).scalar_one())
            rows = (await conn.execute(query.with_only_columns(ASSISTANTS.c["metadata"]))).all()
        return sum(1 for (stored,) in rows if _passes(stored, metadata, allowed))

    def _filtered(
        self,
        tenant_id: str,
        graph_id: str | None,
        name: str | None,
        metadata: dict[str, Any] | None,
        allowed: MetadataFilter | None = None,
    ) -> Select[Any]:
        """The tenant's assistants of registered graphs, filtered; metadata (and the auth
        filter) in SQL only on Postgres (the caller filters SQLite's rows, :func:`_passes`)."""
        if graph_id is not None:
            self.check_graph(graph_id)
        conditions: list[ColumnElement[bool]] = [
            ASSISTANTS.c.tenant_id == tenant_id,
            ASSISTANTS.c.graph_id.in_(self._graph_ids),
        ]
        if graph_id:
            conditions.append(ASSISTANTS.c.graph_id == graph_id)
        if name:
            conditions.append(func.lower(ASSISTANTS.c.name).contains(name.lower(), autoescape=True))
        if self._store.is_postgres:
            for wanted in (metadata, allowed.document() if allowed is not None else None):
                if wanted:
                    column = type_coerce(ASSISTANTS.c["metadata"], JSONB)
                    conditions.append(column.contains(wanted))
        return select(ASSISTANTS).where(*conditions)

    async def versions(
        self,
        tenant_id: str,
        assistant_id: str,
        *,
        metadata: dict[str, Any] | None = None,
        limit: int = 10,
        offset: int = 0,
    ) -> list[AssistantVersionRecord]:
        """The assistant's versions, newest first, filtered by metadata containment."""
        canonical = self.canonical_id(assistant_id)
        await self.ensure_defaults(tenant_id)
        table = ASSISTANT_VERSIONS
        query = (
            select(table)
            .where(table.c.tenant_id == tenant_id, table.c.assistant_id == canonical)
            .order_by(table.c.version.desc())
        )
        in_sql = not metadata or self._store.is_postgres
        if metadata and self._store.is_postgres:
            query = query.where(type_coerce(table.c["metadata"], JSONB).contains(metadata))
        if in_sql:
            query = query.limit(limit).offset(offset)
        async with self._store.transaction() as conn:
            if await fetch_assistant(conn, tenant_id, canonical) is None:
                raise NotFound(f"Assistant {assistant_id} not found")
            rows = (await conn.execute(query)).mappings().all()
        found = [AssistantVersionRecord.model_validate(dict(row)) for row in rows]
        if not in_sql:
            found = [v for v in found if json_contains(v.metadata, metadata)]
            found = found[offset : offset + limit]
        return found


def _passes(stored: Any, metadata: dict[str, Any] | None, allowed: MetadataFilter | None) -> bool:
    """SQLite's side of :meth:`AssistantReads._filtered`: containment and the auth filter."""
    if metadata and not json_contains(stored, metadata):
        return False
    return allowed is None or allowed.matches(stored)


async def fetch_assistant(
    conn: AsyncConnection, tenant_id: str, assistant_id: str, *, for_update: bool = False
) -> AssistantRecord | None:
    query = select(ASSISTANTS).where(
        ASSISTANTS.c.tenant_id == tenant_id, ASSISTANTS.c.assistant_id == assistant_id
    )
    if for_update:
        query = query.with_for_update()
    row = (await conn.execute(query)).mappings().one_or_none()
    return None if row is None else AssistantRecord.model_validate(dict(row))
