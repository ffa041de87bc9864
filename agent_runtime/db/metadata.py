"""The metadata store: tenants, API keys, threads and runs, on Postgres or SQLite.

One class, :class:`MetadataStore`, over SQLAlchemy's async engine (asyncpg for Postgres,
aiosqlite for SQLite). It returns the pydantic records of :mod:`agent_runtime.core.records`, never
ORM objects, and maps driver errors to the runtime's own: a database that cannot be reached
(or a pool that stays exhausted) is :class:`DependencyUnavailable`, a duplicate id is
:class:`Conflict`, a row that is missing or belongs to another tenant is :class:`NotFound`.
Engine construction, SQLite's WAL and lock retry, and the error mapping live in
:mod:`agent_runtime.db.engine`.

Hot-path calls (``get_key``, ``get_thread``, ``create_run``, ``update_run``) are one
statement each. Checkpoints live elsewhere (:mod:`agent_runtime.execution.checkpointers`).
"""

from __future__ import annotations

import functools
import uuid
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from agent_runtime.config.settings import StorageSettings
from agent_runtime.core.errors import Conflict, NotFound
from agent_runtime.core.records import (
    ApiKeyRecord,
    RunRecord,
    RunStatus,
    Tenant,
    ThreadRecord,
    ThreadStatus,
)
from agent_runtime.db import engine as db
from agent_runtime.db.engine import retry_while_locked
from agent_runtime.db.tables import API_KEYS, RUNS, TENANTS, THREADS, utcnow

# retry_while_locked moved to agent_runtime.db.engine; re-exported for callers that import it from
# here.
__all__ = ["MetadataStore", "retry_while_locked"]


def _new_run(
    tenant_id: str,
    thread_id: str | None,
    assistant_id: str,
    metadata: dict[str, Any] | None,
    status: RunStatus,
) -> RunRecord:
    now = utcnow()
    return RunRecord(
        run_id=_new_id(),
        thread_id=thread_id,
        tenant_id=tenant_id,
        assistant_id=assistant_id,
        status=status,
        metadata=metadata or {},
        created_at=now,
        updated_at=now,
    )


def _new_id() -> str:
    return str(uuid.uuid4())


class MetadataStore:
    """Tenants, keys, threads and runs behind one async SQLAlchemy engine.

    :meth:`setup` creates or upgrades the schema with the Alembic revisions of
    :mod:`agent_runtime.db.migrations`. Also satisfies the auth ``KeyStore`` protocol
    (:meth:`get_key`, :meth:`get_tenant`).
    """

    def __init__(self, settings: StorageSettings) -> None:
        self._settings = settings
        self._engine: AsyncEngine | None = None

    # -- lifecycle --------------------------------------------------------------------
    async def setup(self) -> None:
        """Create the engine and the tables; idempotent, safe from several processes.

        If the database is unreachable this raises :class:`DependencyUnavailable`; the
        engine is kept, so :meth:`ping` reports the same and :meth:`close` releases it.
        """
        if self._engine is None:
            self._engine = db.build_engine(self._settings)
        if not self._settings.is_postgres:
            enable_wal = functools.partial(db.enable_wal, self._engine)
            await retry_while_locked(enable_wal, self._settings.db_timeout_s)
        # SQLite: the write lock taken up front makes a concurrent process wait (busy
        # timeout) instead of failing on "table already exists".
        async with self.transaction(write_lock=True) as conn:
            await db.migrate(conn, self._settings.is_postgres)

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    async def ping(self) -> None:
        await db.ping(self._require_engine(), self._settings.db_timeout_s)

    def _require_engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("MetadataStore.setup() has not been called")
        return self._engine

    @property
    def is_postgres(self) -> bool:
        return self._settings.is_postgres

    def transaction(self, write_lock: bool = False) -> AbstractAsyncContextManager[AsyncConnection]:
        """One transaction; connection-level failures become DependencyUnavailable.

        ``write_lock`` is for read-then-write transactions: SQLite takes its write lock
        up front (``BEGIN IMMEDIATE``) so the read cannot go stale; on Postgres the caller
        reads its rows ``FOR UPDATE``.
        """
        begin_immediate = write_lock and not self._settings.is_postgres
        return db.transaction(self._require_engine(), begin_immediate=begin_immediate)

    # -- tenants ----------------------------------------------------------------------
    async def get_tenant(self, tenant_id: str) -> Tenant | None:
        async with self.transaction() as conn:
            result = await conn.execute(select(TENANTS).where(TENANTS.c.tenant_id == tenant_id))
            row = result.mappings().one_or_none()
        return None if row is None else Tenant.model_validate(dict(row))

    async def ensure_tenant(self, tenant_id: str, name: str) -> Tenant:
        """Insert the tenant if absent; an existing one is returned unchanged."""
        existing = await self.get_tenant(tenant_id)
        if existing is not None:
            return existing
        tenant = Tenant(tenant_id=tenant_id, name=name, disabled=False, created_at=utcnow())
        try:
            async with self.transaction() as conn:
                await conn.execute(insert(TENANTS).values(**tenant.model_dump()))
        except IntegrityError:
            # Another process created it between our read and our insert.
            raced = await self.get_tenant(tenant_id)
            if raced is None:
                raise
            return raced
        return tenant

    async def set_tenant_disabled(self, tenant_id: str, disabled: bool) -> None:
        async with self.transaction() as conn:
            result = await conn.execute(
                update(TENANTS).where(TENANTS.c.tenant_id == tenant_id).values(disabled=disabled)
            )
            if result.rowcount == 0:
                raise NotFound(f"tenant {tenant_id} not found")

    # -- API keys ---------------------------------------------------------------------
    async def add_key(self, record: ApiKeyRecord) -> None:
        """Store a key of an existing tenant; a duplicate ``key_id`` is a Conflict."""
        try:
            async with self.transaction() as conn:
                tenant = await conn.execute(
                    select(TENANTS.c.tenant_id).where(TENANTS.c.tenant_id == record.tenant_id)
                )
                if tenant.first() is None:
                    raise NotFound(f"tenant {record.tenant_id} not found")
                await conn.execute(insert(API_KEYS).values(**record.model_dump()))
        except IntegrityError as exc:
            raise Conflict(f"api key {record.key_id} already exists") from exc

    async def get_key(self, key_id: str) -> ApiKeyRecord | None:
        async with self.transaction() as conn:
            result = await conn.execute(select(API_KEYS).where(API_KEYS.c.key_id == key_id))
            row = result.mappings().one_or_none()
        return None if row is None else ApiKeyRecord.model_validate(dict(row))

    async def revoke_key(self, key_id: str) -> None:
        async with self.transaction() as conn:
            result = await conn.execute(
                update(API_KEYS).where(API_KEYS.c.key_id == key_id).values(revoked=True)
            )
            if result.rowcount == 0:
                raise NotFound(f"api key {key_id} not found")

    async def list_keys(self, tenant_id: str) -> list[ApiKeyRecord]:
        async with self.transaction() as conn:
            result = await conn.execute(
                select(API_KEYS)
                .where(API_KEYS.c.tenant_id == tenant_id)
                .order_by(API_KEYS.c.created_at, API_KEYS.c.key_id)
            )
            rows = result.mappings().all()
        return [ApiKeyRecord.model_validate(dict(row)) for row in rows]

    # -- threads ----------------------------------------------------------------------
    async def create_thread(
        self,
        tenant_id: str,
        thread_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        graph_id: str | None = None,
        if_exists: Literal["raise", "do_nothing"] = "raise",
        ttl: tuple[str, float] | None = None,
    ) -> ThreadRecord:
        """Create a thread (a uuid4 id when none is given); ``ttl`` is (strategy, minutes).

        An existing id is a Conflict, or with ``if_exists="do_nothing"`` the existing
        thread is returned. An id another tenant owns is always a Conflict with the same
        message, so callers learn nothing about other tenants' threads.
        """
        now = utcnow()
        record = ThreadRecord(
            thread_id=thread_id or _new_id(),
            tenant_id=tenant_id,
            graph_id=graph_id,
            status="idle",
            metadata=metadata or {},
            created_at=now,
            updated_at=now,
            state_updated_at=now,
        )
        if ttl is not None:
            record.ttl_strategy, record.ttl_minutes = ttl
            record.expires_at = now + timedelta(minutes=ttl[1])
        try:
            async with self.transaction() as conn:
                await conn.execute(insert(THREADS).values(**record.model_dump()))
        except IntegrityError as exc:
            conflict = Conflict(f"Thread with ID {record.thread_id} already exists")
            if if_exists == "raise":
                raise conflict from exc
            try:
                return await self.get_thread(tenant_id, record.thread_id)
            except NotFound:
                raise conflict from exc
        return record

    async def get_thread(self, tenant_id: str, thread_id: str) -> ThreadRecord:
        async with self.transaction() as conn:
            result = await conn.execute(
                select(THREADS).where(
                    THREADS.c.thread_id == thread_id, THREADS.c.tenant_id == tenant_id
                )
            )
            row = result.mappings().one_or_none()
        if row is None:
            raise NotFound(f"Thread with ID {thread_id} not found")
        return ThreadRecord.model_validate(dict(row))

    async def update_thread(
        self,
        tenant_id: str,
        thread_id: str,
        *,
        status: ThreadStatus | None = None,
        graph_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        ttl: tuple[str, float] | None = None,
        expires_at: datetime | None = None,
    ) -> ThreadRecord:
        """Set status, graph id or TTL; ``metadata`` is merged key by key into the stored."""
        values: dict[str, Any] = {}
        if status is not None:
            values["status"] = status
        if graph_id is not None:
            values["graph_id"] = graph_id
        if ttl is not None:
            values.update(
                ttl_strategy=ttl[0],
                ttl_minutes=ttl[1],
                expires_at=utcnow() + timedelta(minutes=ttl[1]),
            )
        # Moving only the retention deadline is bookkeeping, not a change to the thread:
        # it must not bump updated_at (the default sort of thread searches).
        touched = metadata is not None or bool(values)
        if expires_at is not None:
            values["expires_at"] = expires_at
        if touched:
            values["updated_at"] = utcnow()
        if metadata is None and not values:
            return await self.get_thread(tenant_id, thread_id)
        where = (THREADS.c.thread_id == thread_id, THREADS.c.tenant_id == tenant_id)
        async with self.transaction(write_lock=metadata is not None) as conn:
            if metadata is not None:
                # Read and write in one locked transaction so concurrent merges all land.
                result = await conn.execute(
                    select(THREADS.c["metadata"]).where(*where).with_for_update()
                )
                current = result.scalar_one_or_none()
                if current is None:
                    raise NotFound(f"Thread with ID {thread_id} not found")
                values["metadata"] = {**current, **metadata}
            result = await conn.execute(
                update(THREADS).where(*where).values(**values).returning(*THREADS.c)
            )
            row = result.mappings().one_or_none()
        if row is None:
            raise NotFound(f"Thread with ID {thread_id} not found")
        return ThreadRecord.model_validate(dict(row))

    async def delete_thread(self, tenant_id: str, thread_id: str) -> None:
        """Delete the thread row. Its runs stay: they are the usage (token) record."""
        async with self.transaction() as conn:
            result = await conn.execute(
                delete(THREADS).where(
                    THREADS.c.thread_id == thread_id, THREADS.c.tenant_id == tenant_id
                )
            )
            if result.rowcount == 0:
                raise NotFound(f"Thread with ID {thread_id} not found")

    # -- run lifecycle (one transaction at each end of a run: the hot path) -------------
    async def start_run(
        self,
        tenant_id: str,
        thread_id: str,
        *,
        graph_id: str,
        assistant_id: str,
        metadata: dict[str, Any] | None = None,
        stale_after_s: float | None = None,
    ) -> RunRecord | None:
        """Mark the thread busy (compare-and-set) and record a running run, atomically.

        None when the thread already has a run in progress; NotFound when it does not exist
        or belongs to another tenant. A busy claim older than ``stale_after_s`` (its run's
        replica died; runs cannot last that long) is taken over, so a crash never leaves a
        thread locked.
        """
        record = _new_run(tenant_id, thread_id, assistant_id, metadata, "running")
        now = record.created_at
        free = THREADS.c.status != "busy"
        if stale_after_s is not None:
            free = or_(free, THREADS.c.updated_at < now - timedelta(seconds=stale_after_s))
        async with self.transaction() as conn:
            claimed = await conn.execute(
                update(THREADS)
                .where(
                    THREADS.c.thread_id == thread_id,
                    THREADS.c.tenant_id == tenant_id,
                    free,
                )
                .values(status="busy", graph_id=graph_id, updated_at=now)
            )
            if claimed.rowcount == 1:
                await conn.execute(insert(RUNS).values(**record.model_dump()))
                return record
            exists = await conn.execute(
                select(THREADS.c.thread_id).where(
                    THREADS.c.thread_id == thread_id, THREADS.c.tenant_id == tenant_id
                )
            )
        if exists.first() is None:
            raise NotFound(f"Thread with ID {thread_id} not found")
        return None

    async def finish_run(
        self,
        tenant_id: str,
        thread_id: str,
        run_id: str,
        *,
        status: RunStatus,
        thread_status: ThreadStatus,
        error: str | None = None,
        input_tokens: int = 0,
        output_tokens: int = 0,
    ) -> None:
        """Record a run's outcome and release its thread, in one transaction."""
        now = utcnow()
        async with self.transaction() as conn:
            await conn.execute(
                update(RUNS)
                .where(RUNS.c.run_id == run_id)
                .values(
                    status=status,
                    error=error,
                    input_tokens=input_tokens,
                    output_tokens=output_tokens,
                    updated_at=now,
                )
            )
            await conn.execute(
                update(THREADS)
                .where(THREADS.c.thread_id == thread_id, THREADS.c.tenant_id == tenant_id)
                .values(status=thread_status, updated_at=now)
            )

    # -- runs -------------------------------------------------------------------------
    async def create_run(
        self,
        tenant_id: str,
        thread_id: str | None,
        assistant_id: str,
        metadata: dict[str, Any] | None = None,
    ) -> RunRecord:
        """Record a pending run. The caller has checked the thread belongs to the tenant."""
        record = _new_run(tenant_id, thread_id, assistant_id, metadata, "pending")
        async with self.transaction() as conn:
            await conn.execute(insert(RUNS).values(**record.model_dump()))
        return record

    async def update_run(
        self,
        run_id: str,
        *,
        status: RunStatus,
        error: str | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
    ) -> RunRecord:
        values: dict[str, Any] = {"status": status, "updated_at": utcnow()}
        if error is not None:
            values["error"] = error
        if input_tokens is not None:
            values["input_tokens"] = input_tokens
        if output_tokens is not None:
            values["output_tokens"] = output_tokens
        async with self.transaction() as conn:
            result = await conn.execute(
                update(RUNS).where(RUNS.c.run_id == run_id).values(**values).returning(*RUNS.c)
            )
            row = result.mappings().one_or_none()
        if row is None:
            raise NotFound(f"run {run_id} not found")
        return RunRecord.model_validate(dict(row))

    async def get_run(self, tenant_id: str, run_id: str) -> RunRecord:
        async with self.transaction() as conn:
            result = await conn.execute(
                select(RUNS).where(RUNS.c.run_id == run_id, RUNS.c.tenant_id == tenant_id)
            )
            row = result.mappings().one_or_none()
        if row is None:
            raise NotFound(f"run {run_id} not found")
        return RunRecord.model_validate(dict(row))

    async def list_runs(
        self, tenant_id: str, thread_id: str, limit: int = 10, offset: int = 0
    ) -> list[RunRecord]:
        """The thread's runs, newest first."""
        async with self.transaction() as conn:
            result = await conn.execute(
                select(RUNS)
                .where(RUNS.c.thread_id == thread_id, RUNS.c.tenant_id == tenant_id)
                .order_by(RUNS.c.created_at.desc(), RUNS.c.run_id.desc())
                .limit(limit)
                .offset(offset)
            )
            rows = result.mappings().all()
        return [RunRecord.model_validate(dict(row)) for row in rows]
