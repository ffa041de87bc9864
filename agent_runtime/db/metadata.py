"""The metadata store: tenants, API keys and threads, on Postgres or SQLite.

One class, :class:`MetadataStore`, over SQLAlchemy's async engine (for Postgres, borrowing
from the replica's one psycopg pool, :mod:`agent_runtime.db.pg_pool`; aiosqlite for
SQLite). It returns the pydantic records of :mod:`agent_runtime.core.records`, never ORM
objects, and maps driver errors to the runtime's own: a database that cannot be reached
(or a pool that stays exhausted) is :class:`DependencyUnavailable`, a duplicate id is
:class:`Conflict`, a row that is missing or belongs to another tenant is :class:`NotFound`.
Engine construction, SQLite's WAL and lock retry, and the error mapping live in
:mod:`agent_runtime.db.engine`.

Hot-path calls (``get_key``, ``get_thread``) are one statement each. Run rows live in
:class:`agent_runtime.runs.run_queue.RunStore`, over this store's engine; checkpoints in
:mod:`agent_runtime.execution.checkpointers`.
"""

from __future__ import annotations

import functools
import uuid
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from agent_runtime.config.settings import StorageSettings
from agent_runtime.core.errors import Conflict, NotFound
from agent_runtime.core.records import ApiKeyRecord, Tenant, ThreadRecord, ThreadStatus
from agent_runtime.db import engine as db
from agent_runtime.db.engine import retry_while_locked
from agent_runtime.db.pg_pool import Pool, open_replica_pool
from agent_runtime.db.sqlite_writes import SqliteWrites
from agent_runtime.db.tables import API_KEYS, TENANTS, THREADS, utcnow


def _new_id() -> str:
    return str(uuid.uuid4())


class MetadataStore:
    """Tenants, keys and threads behind one async SQLAlchemy engine (shared with the run store).

    :meth:`setup` creates or upgrades the schema with the Alembic revisions of
    :mod:`agent_runtime.db.migrations`. Also satisfies the auth ``KeyStore`` protocol
    (:meth:`get_key`, :meth:`get_tenant`).
    """

    def __init__(self, settings: StorageSettings, pool: Pool | None = None) -> None:
        """``pool`` (Postgres): the replica's, which its owner opens and closes; without
        one the store makes, opens and closes a pool of its own."""
        self._settings = settings
        self._engine: AsyncEngine | None = None
        self._pool = pool
        self._owns_pool = pool is None
        # SQLite: this store's writes take turns (one writer per file).
        self._writes = (
            None if settings.is_postgres else SqliteWrites(settings.sqlite_write_timeout_s)
        )

    # -- lifecycle --------------------------------------------------------------------
    async def setup(self) -> None:
        """Create the engine and the tables; idempotent, safe from several processes.

        If the database is unreachable this raises :class:`DependencyUnavailable`; the
        engine is kept, so :meth:`ping` reports the same and :meth:`close` releases it.
        """
        if self._engine is None:
            if self._pool is None:
                # A database that is down fails the first transaction (below); the pool
                # keeps trying, so a later call can succeed.
                self._pool = await open_replica_pool(self._settings, "metadata")
            self._engine = db.build_engine(self._settings, self._writes, self._pool)
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
        if self._owns_pool and self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close(timeout=self._settings.db_timeout_s)

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
        postgres = self._settings.is_postgres
        return db.transaction(
            self._require_engine(),
            begin_immediate=write_lock and not postgres,
            writes=self._writes,
            statement_timeout_s=self._settings.db_timeout_s if postgres else None,
        )

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
        thread is returned. Ids are per tenant (the key is (thread id, tenant)): another
        tenant's thread with the same id is no obstacle, and nothing tells it exists.
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
