"""Assistants: versioned, per-tenant configurations of a registered graph.

Behaviour follows LangGraph Platform's assistants API. Every write of an assistant is a
new row in ``agent_assistant_versions``; the ``agent_assistants`` row is the version that
is "latest" (what runs use), which :meth:`AssistantStore.set_latest` can point back at an
older one. Ids, the default assistants and the reads are
:mod:`agent_runtime.runs.assistant_reads`, which :class:`AssistantStore` builds on.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import JSON, delete, func, insert, select, type_coerce
from sqlalchemy import update as sql_update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from agent_runtime.core.errors import Conflict, InvalidRequest, NotFound
from agent_runtime.core.records import AssistantRecord
from agent_runtime.db.tables import ASSISTANT_VERSIONS, ASSISTANTS, THREADS, utcnow
from agent_runtime.runs.assistant_reads import (
    AssistantReads,
    AssistantVersionRecord,
    fetch_assistant,
)

IfExists = Literal["raise", "do_nothing"]

BOTH_CONFIGURABLE_AND_CONTEXT = (
    "Cannot specify both configurable and context. Prefer setting context alone. Context was "
    "introduced in LangGraph 0.6.0 and is the long term planned replacement for configurable."
)
# What a version holds and set_latest copies back into the assistant.
_VERSIONED_FIELDS = {"graph_id", "config", "context", "metadata", "name", "description", "version"}


def sync_config_and_context(
    config: dict[str, Any], context: dict[str, Any] | None
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Keep ``config.configurable`` and ``context`` equal, the way langgraph-api does.

    Both given is an error; otherwise whichever is set is copied into the other.
    """
    config = dict(config)
    configurable = config.get("configurable")
    if configurable and context:
        raise InvalidRequest(BOTH_CONFIGURABLE_AND_CONTEXT)
    if configurable:
        context = dict(configurable)
    elif context:
        config["configurable"] = dict(context)
    return config, context


class AssistantStore(AssistantReads):
    """The assistants of every tenant, over the runtime's :class:`MetadataStore`."""

    # -- writes ---------------------------------------------------------------------
    async def create(
        self,
        tenant_id: str,
        *,
        graph_id: str,
        assistant_id: str | None = None,
        config: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        if_exists: IfExists = "raise",
        name: str | None = None,
        description: str | None = None,
    ) -> AssistantRecord:
        """A new assistant at version 1 (a uuid4 id when none is given).

        An existing id is a Conflict, or with ``if_exists="do_nothing"`` the existing
        assistant is returned unchanged. Unknown graph: NotFound, as on Platform.
        """
        canonical = self.canonical_id(assistant_id) if assistant_id else str(uuid.uuid4())
        config, context = sync_config_and_context(config or {}, context)
        self.check_graph(graph_id)
        await self.ensure_defaults(tenant_id)
        now = utcnow()
        record = AssistantRecord(
            tenant_id=tenant_id,
            assistant_id=canonical,
            graph_id=graph_id,
            name=name or "Untitled",
            description=description,
            config=config,
            context=context or {},
            metadata=metadata or {},
            version=1,
            created_at=now,
            updated_at=now,
        )
        try:
            async with self._store.transaction() as conn:
                await conn.execute(insert(ASSISTANTS).values(**record.model_dump()))
                await conn.execute(insert(ASSISTANT_VERSIONS).values(**_version_values(record)))
        except IntegrityError as exc:
            conflict = Conflict(f"Assistant {canonical} already exists")
            if if_exists == "raise":
                raise conflict from exc
            async with self._store.transaction() as conn:
                existing = await fetch_assistant(conn, tenant_id, canonical)
            if existing is None:  # deleted meanwhile
                raise conflict from exc
            return existing
        return record

    async def update(
        self,
        tenant_id: str,
        assistant_id: str,
        *,
        graph_id: str | None = None,
        config: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        name: str | None = None,
        description: str | None = None,
    ) -> AssistantRecord:
        """A new version (highest so far + 1) that becomes the latest.

        As on Platform: ``metadata`` is merged into the current one; a non-empty
        ``config`` replaces it; a ``context`` given (even empty) replaces it; a context
        alone also becomes ``config.configurable``; omitted fields are kept.
        """
        canonical = self.canonical_id(assistant_id)
        new_config, new_context = sync_config_and_context(config or {}, context)
        if graph_id is not None:
            self.check_graph(graph_id)
        await self.ensure_defaults(tenant_id)
        async with self._store.transaction(write_lock=True) as conn:
            current = await fetch_assistant(conn, tenant_id, canonical, for_update=True)
            if current is None:
                raise NotFound(f"Assistant {assistant_id} not found")
            now = utcnow()
            record = current.model_copy(
                update={
                    "graph_id": graph_id if graph_id is not None else current.graph_id,
                    "config": new_config or current.config,
                    "context": new_context if new_context is not None else current.context,
                    "metadata": {**current.metadata, **(metadata or {})},
                    "name": name if name is not None else current.name,
                    "description": description if description is not None else current.description,
                    "version": await _max_version(conn, tenant_id, canonical) + 1,
                    "updated_at": now,
                }
            )
            await conn.execute(
                insert(ASSISTANT_VERSIONS).values(**_version_values(record, created_at=now))
            )
            await self._write_latest(conn, record)
        return record

    async def set_latest(
        self, tenant_id: str, assistant_id: str, version: int | None
    ) -> AssistantRecord:
        """Point the assistant at one of its stored versions (its graph, config, context,
        metadata, name and description); NotFound for a version that does not exist."""
        canonical = self.canonical_id(assistant_id)
        await self.ensure_defaults(tenant_id)
        async with self._store.transaction(write_lock=True) as conn:
            current = await fetch_assistant(conn, tenant_id, canonical, for_update=True)
            if current is None:
                raise NotFound(f"Assistant {assistant_id} not found")
            table = ASSISTANT_VERSIONS
            result = await conn.execute(
                select(table).where(
                    table.c.tenant_id == tenant_id,
                    table.c.assistant_id == canonical,
                    table.c.version == version,
                )
            )
            row = result.mappings().one_or_none()
            if row is None:
                raise NotFound(f"Version {version} not found for assistant {assistant_id}")
            chosen = AssistantVersionRecord.model_validate(dict(row))
            record = current.model_copy(
                update={**chosen.model_dump(include=_VERSIONED_FIELDS), "updated_at": utcnow()}
            )
            await self._write_latest(conn, record)
        return record

    async def delete(
        self, tenant_id: str, assistant_id: str, *, delete_threads: bool = False
    ) -> list[str]:
        """Delete the assistant and all its versions.

        With ``delete_threads`` (Platform's ``?delete_threads=true``) the ids of the
        tenant's threads whose ``metadata.assistant_id`` is this assistant are returned:
        the caller deletes them the whole way (runs, checkpoints, store items).
        """
        canonical = self.canonical_id(assistant_id)
        await self.ensure_defaults(tenant_id)
        deleted_threads: list[str] = []
        async with self._store.transaction() as conn:
            result = await conn.execute(
                delete(ASSISTANTS).where(
                    ASSISTANTS.c.tenant_id == tenant_id, ASSISTANTS.c.assistant_id == canonical
                )
            )
            if result.rowcount == 0:
                raise NotFound(f"Assistant with ID {assistant_id} not found")
            await conn.execute(
                delete(ASSISTANT_VERSIONS).where(
                    ASSISTANT_VERSIONS.c.tenant_id == tenant_id,
                    ASSISTANT_VERSIONS.c.assistant_id == canonical,
                )
            )
            if delete_threads:
                owner = type_coerce(THREADS.c["metadata"], JSON)["assistant_id"].as_string()
                gone = await conn.execute(
                    select(THREADS.c.thread_id).where(
                        THREADS.c.tenant_id == tenant_id, owner == canonical
                    )
                )
                deleted_threads = [str(thread_id) for (thread_id,) in gone.all()]
        return deleted_threads

    @staticmethod
    async def _write_latest(conn: AsyncConnection, record: AssistantRecord) -> None:
        values = record.model_dump(exclude={"tenant_id", "assistant_id", "created_at"})
        await conn.execute(
            sql_update(ASSISTANTS)
            .where(
                ASSISTANTS.c.tenant_id == record.tenant_id,
                ASSISTANTS.c.assistant_id == record.assistant_id,
            )
            .values(**values)
        )


async def _max_version(conn: AsyncConnection, tenant_id: str, assistant_id: str) -> int:
    table = ASSISTANT_VERSIONS
    result = await conn.execute(
        select(func.max(table.c.version)).where(
            table.c.tenant_id == tenant_id, table.c.assistant_id == assistant_id
        )
    )
    return int(result.scalar_one_or_none() or 0)


def _version_values(record: AssistantRecord, created_at: datetime | None = None) -> dict[str, Any]:
    values = record.model_dump(exclude={"updated_at"})
    values["created_at"] = created_at or record.created_at
    return values
