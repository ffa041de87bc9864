"""Thread queries beyond single-row CRUD: search, count, state, copy, cascade delete, TTL
(and a request's TTL, :func:`ttl_of`).

Filters follow the Platform: ``metadata`` and ``values`` are JSON containment. Postgres
answers them with ``@>`` on JSONB; SQLite compares each top-level key's JSON value for
equality (the same for scalars and for whole nested values; a partial nested match is a
Postgres-only refinement, noted in docs/compatibility.md). An app's auth filter
(:class:`~agent_runtime.core.metadata_filter.MetadataFilter`) reads the same on both
(:func:`allowed_by`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import cast, delete, func, insert, literal, select, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.elements import ColumnElement

from agent_runtime.core.errors import Conflict, InvalidRequest, NotFound
from agent_runtime.core.metadata_filter import MetadataFilter, Scalar
from agent_runtime.core.records import ThreadRecord, ThreadStatus
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.db.tables import CRONS, RUN_EVENTS, RUNS, THREADS, utcnow
from agent_runtime.runs.trace_rows import delete_traces

SORTABLE = {"thread_id", "status", "created_at", "updated_at", "state_updated_at"}
NUMBERS = ("integer", "real")  # SQLite's json_each types of JSON numbers


MAX_TTL_MINUTES = 10 * 366 * 24 * 60  # ten years: past it, dates overflow or mean "never"


def ttl_of(
    body_ttl: dict[str, Any] | None, default: tuple[str, float] | None
) -> tuple[str, float] | None:
    """(strategy, minutes) from a ``ttl`` body (``{"strategy", "ttl"}``) or the default."""
    if body_ttl:
        minutes = body_ttl.get("ttl")
        strategy = body_ttl.get("strategy", "delete")
        if (
            not isinstance(minutes, int | float)
            or isinstance(minutes, bool)
            or not 0 < minutes <= MAX_TTL_MINUTES  # NaN fails both sides
        ):
            raise InvalidRequest(
                f"ttl.ttl: must be a positive number of minutes, at most {MAX_TTL_MINUTES}",
                field="ttl.ttl",
            )
        if strategy not in ("delete", "keep_latest"):
            raise InvalidRequest("ttl.strategy: must be 'delete' or 'keep_latest'")
        return str(strategy), float(minutes)
    return default


def json_contains(
    is_postgres: bool, column: Any, wanted: dict[str, Any]
) -> list[ColumnElement[bool]]:
    """Conditions that a JSON column holds ``wanted`` (see the module's docstring)."""
    if is_postgres:
        return [column.op("@>")(cast(literal(json.dumps(wanted)), JSONB()))]
    return [_sqlite_equals(column, key, value) for key, value in wanted.items()]


def allowed_by(
    is_postgres: bool, column: Any, allowed: MetadataFilter | None
) -> list[ColumnElement[bool]]:
    """Conditions that a JSON column passes an app's auth filter (none for ``None``)."""
    if allowed is None:
        return []
    if is_postgres:
        # On scalars and lists of scalars, containment is exactly the filter's meaning.
        return json_contains(True, column, allowed.document())
    where: list[ColumnElement[bool]] = []
    for key, value in allowed.equals.items():
        path = f'$."{key}"'
        where += _sqlite_is(func.json_type(column, path), func.json_extract(column, path), value)
    for key, elements in allowed.contains.items():
        path = f'$."{key}"'
        where.append(func.json_type(column, path) == "array")
        for element in elements:
            each = func.json_each(column, path).table_valued("value", "type")
            found = _sqlite_is(each.c.type, each.c.value, element)
            where.append(select(literal(1)).select_from(each).where(*found).exists())
    return where


def _thread(row: Any) -> ThreadRecord:
    return ThreadRecord.model_validate(dict(row))


class ThreadStore:
    def __init__(self, store: MetadataStore) -> None:
        self._store = store

    def _contains(self, column: Any, wanted: dict[str, Any]) -> list[ColumnElement[bool]]:
        return json_contains(self._store.is_postgres, column, wanted)

    def _filters(
        self,
        tenant_id: str,
        *,
        ids: Sequence[str] | None = None,
        metadata: dict[str, Any] | None = None,
        values: dict[str, Any] | None = None,
        status: ThreadStatus | None = None,
        allowed: MetadataFilter | None = None,
    ) -> list[ColumnElement[bool]]:
        where: list[ColumnElement[bool]] = [THREADS.c.tenant_id == tenant_id]
        where += allowed_by(self._store.is_postgres, THREADS.c["metadata"], allowed)
        if ids:
            where.append(THREADS.c.thread_id.in_(list(ids)))
        if metadata:
            where += self._contains(THREADS.c["metadata"], metadata)
        if values:
            where += self._contains(THREADS.c.state_values, values)
        if status is not None:
            where.append(THREADS.c.status == status)
        return where

    async def search(
        self,
        tenant_id: str,
        *,
        ids: Sequence[str] | None = None,
        metadata: dict[str, Any] | None = None,
        values: dict[str, Any] | None = None,
        status: ThreadStatus | None = None,
        limit: int = 10,
        offset: int = 0,
        sort_by: str | None = None,
        sort_order: str | None = None,
        allowed: MetadataFilter | None = None,
    ) -> tuple[list[ThreadRecord], bool]:
        """One page of the tenant's matching threads (those ``allowed`` lets the caller
        see), and whether more follow.

        Default order: most recently updated first (as the Platform sorts)."""
        column = THREADS.c[sort_by] if sort_by in SORTABLE else THREADS.c.updated_at
        ascending = sort_by in SORTABLE and (sort_order or "desc").lower() == "asc"
        order = column.asc() if ascending else column.desc()
        tie = THREADS.c.thread_id.asc() if ascending else THREADS.c.thread_id.desc()
        query = (
            select(THREADS)
            .where(
                *self._filters(
                    tenant_id,
                    ids=ids,
                    metadata=metadata,
                    values=values,
                    status=status,
                    allowed=allowed,
                )
            )
            .order_by(order, tie)
            .limit(limit + 1)
            .offset(offset)
        )
        async with self._store.transaction() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_thread(row) for row in rows[:limit]], len(rows) > limit

    async def count(
        self,
        tenant_id: str,
        *,
        metadata: dict[str, Any] | None = None,
        values: dict[str, Any] | None = None,
        status: ThreadStatus | None = None,
        allowed: MetadataFilter | None = None,
    ) -> int:
        where = self._filters(
            tenant_id, metadata=metadata, values=values, status=status, allowed=allowed
        )
        query = select(func.count()).select_from(THREADS).where(*where)
        async with self._store.transaction() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def set_state(
        self,
        tenant_id: str,
        thread_id: str,
        *,
        values: Any,
        interrupts: dict[str, Any],
        status: ThreadStatus,
        graph_id: str | None = None,
    ) -> None:
        """Store the thread's new state after a state update (not while it is busy)."""
        now = utcnow()
        changes: dict[str, Any] = {
            "state_values": values,
            "interrupts": interrupts,
            "status": status,
            "updated_at": now,
            "state_updated_at": now,
        }
        if graph_id is not None:
            changes["graph_id"] = graph_id
        async with self._store.transaction() as conn:
            result = await conn.execute(
                update(THREADS)
                .where(
                    THREADS.c.thread_id == thread_id,
                    THREADS.c.tenant_id == tenant_id,
                    THREADS.c.status != "busy",
                )
                .values(**changes)
            )
        if result.rowcount != 1:
            await self.require_idle(tenant_id, thread_id)

    async def require_idle(self, tenant_id: str, thread_id: str) -> ThreadRecord:
        """The thread, unless it has runs in flight (Conflict) or is missing (NotFound)."""
        thread = await self._store.get_thread(tenant_id, thread_id)
        if thread.status == "busy":
            raise Conflict(f"Thread {thread_id} has in-flight runs; wait for them or cancel them.")
        return thread

    async def copy_row(self, tenant_id: str, thread_id: str) -> ThreadRecord:
        """A new idle thread with the source's metadata, config and state (not its runs)."""
        source = await self._store.get_thread(tenant_id, thread_id)
        now = utcnow()
        copy = source.model_copy(
            update={
                "thread_id": str(uuid.uuid4()),
                "status": "idle" if source.status == "busy" else source.status,
                "current_run_id": None,
                "created_at": now,
                "updated_at": now,
                "state_updated_at": now,
                "expires_at": _expiry(source.ttl_minutes, now),
            }
        )
        async with self._store.transaction() as conn:
            await conn.execute(insert(THREADS).values(**copy.model_dump()))
        return copy

    async def delete_cascade(
        self,
        tenant_id: str,
        thread_id: str,
        purge: Callable[[], Awaitable[None]] | None = None,
    ) -> list[str]:
        """Delete the thread row with its runs (their events and traces) and crons, in one
        transaction; the ids of runs that were in flight (their workers stop when told,
        or when their next heartbeat finds them gone).

        ``purge`` removes what the thread keeps outside these tables (its checkpoints,
        its store items). It runs inside the transaction, once the rows are deleted and
        before they are committed, with the thread's row locked (no run can claim it
        meanwhile): if it fails, the transaction rolls back and the thread stays, so it
        is deleted again, not half, when asked again.
        """
        runs_of_thread = (RUNS.c.thread_id == thread_id, RUNS.c.tenant_id == tenant_id)
        async with self._store.transaction(write_lock=True) as conn:
            found = await conn.execute(
                delete(THREADS).where(
                    THREADS.c.thread_id == thread_id, THREADS.c.tenant_id == tenant_id
                )
            )
            if found.rowcount == 0:
                raise NotFound(f"Thread with ID {thread_id} not found")
            runs = (
                await conn.execute(select(RUNS.c.run_id, RUNS.c.status).where(*runs_of_thread))
            ).all()
            run_ids = [row.run_id for row in runs]
            if run_ids:
                await conn.execute(delete(RUN_EVENTS).where(RUN_EVENTS.c.run_id.in_(run_ids)))
                await delete_traces(conn, run_ids)
                await conn.execute(delete(RUNS).where(*runs_of_thread))
            await conn.execute(
                delete(CRONS).where(CRONS.c.thread_id == thread_id, CRONS.c.tenant_id == tenant_id)
            )
            if purge is not None:
                await purge()
        return [row.run_id for row in runs if row.status in ("pending", "running")]

    async def expired(self, now: datetime, limit: int = 100) -> list[tuple[str, str]]:
        """(tenant, thread) pairs idle for longer than their TTL.

        ``expires_at`` is set from the TTL when the thread is created or patched; a thread
        used since then is not expired yet: its ``expires_at`` moves to ``updated_at`` +
        TTL here, so the hot path never has to touch it.
        """
        async with self._store.transaction() as conn:
            rows = (
                await conn.execute(
                    select(
                        THREADS.c.tenant_id,
                        THREADS.c.thread_id,
                        THREADS.c.updated_at,
                        THREADS.c.ttl_minutes,
                    )
                    .where(THREADS.c.expires_at < now, THREADS.c.status != "busy")
                    .order_by(THREADS.c.expires_at)
                    .limit(limit)
                )
            ).all()
            due: list[tuple[str, str]] = []
            for row in rows:
                later = _expiry(row.ttl_minutes, row.updated_at)
                if later is not None and later > now:
                    await conn.execute(
                        update(THREADS)
                        .where(
                            THREADS.c.thread_id == row.thread_id,
                            THREADS.c.tenant_id == row.tenant_id,
                        )
                        .values(expires_at=later)
                    )
                else:
                    due.append((row.tenant_id, row.thread_id))
        return due


def _sqlite_equals(column: Any, key: str, value: Any) -> ColumnElement[bool]:
    path = f'$."{key}"'
    if value is None:
        # json_extract answers SQL NULL both for a JSON null and for a missing key.
        return func.json_type(column, path) == "null"
    if isinstance(value, dict | list):
        return func.json(func.json_extract(column, path)) == func.json(json.dumps(value))
    return func.json_extract(column, path) == func.json_extract(json.dumps(value), "$")


def _sqlite_is(kind: Any, value: Any, wanted: Scalar) -> list[ColumnElement[bool]]:
    """A JSON value (its SQLite ``json_type`` and SQL value) is the scalar ``wanted``,
    JSON types told apart as Postgres does (``true`` is not ``1``, ``1`` is ``1.0``)."""
    if wanted is None or isinstance(wanted, bool):
        return [kind == ("null" if wanted is None else str(wanted).lower())]
    if isinstance(wanted, str):
        return [kind == "text", value == wanted]
    return [kind.in_(NUMBERS), value == wanted]


def _expiry(ttl_minutes: float | None, now: datetime) -> datetime | None:
    return None if ttl_minutes is None else now + timedelta(minutes=ttl_minutes)
