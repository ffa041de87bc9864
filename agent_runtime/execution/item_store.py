"""Long-term memory: LangGraph's item store, scoped per tenant.

:class:`ItemStores` builds and owns LangGraph's ``AsyncPostgresStore`` (over the
replica's psycopg pool, :mod:`agent_runtime.db.pg_pool`) or ``AsyncSqliteStore`` (over
its own SQLite file next to the metadata database), runs its migrations once across
processes and sweeps expired items.

Nothing outside this module touches that raw store: callers get a
:class:`TenantScopedStore`, which files every namespace under ``("tenant", <tenant>)``
and strips that prefix from what comes back, so no namespace, prefix or wildcard a
tenant can send reaches another tenant's items. Graphs are compiled with a
:class:`ContextualStore`, which finds its tenant in the scope
:func:`agent_runtime.execution.tenant_context.tenant_scope` opens around each run, and
refuses to work without one. With the app's ``store.index``, below the scoping sits
:mod:`.indexed_store` (semantic search).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, cast

import aiosqlite
from langgraph.store.base import (
    BaseStore,
    GetOp,
    InvalidNamespaceError,
    Item,
    ListNamespacesOp,
    MatchCondition,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    TTLConfig,
    validate_op_namespace,
)
from langgraph.store.postgres.aio import AsyncPostgresStore
from langgraph.store.sqlite.aio import AsyncSqliteStore
from psycopg import OperationalError
from psycopg_pool import PoolTimeout

from agent_runtime.config.settings import ItemStoreSettings, StorageSettings
from agent_runtime.core.errors import DependencyUnavailable
from agent_runtime.db.engine import file_lock, retry_while_locked
from agent_runtime.db.pg_pool import Pool, open_and_set_up, replica_pool
from agent_runtime.execution.indexed_store import StoreIndexing
from agent_runtime.execution.store_index import EmbedCall, StoreIndex
from agent_runtime.execution.store_tasks import stop_store_tasks
from agent_runtime.execution.tenant_context import require_tenant
from agent_runtime.execution.vector_rows import PostgresVectors, SqliteVectors

logger = logging.getLogger(__name__)

# Serialises the store's migrations across replicas ("agentst" in hex), as for checkpoints.
_MIGRATION_LOCK_KEY = 0x6167656E747374
_POOL_MIN_SIZE = 1
_TENANT_ROOT = "tenant"
_RESERVED_ROOT = "langgraph"


def ttl_config(options: ItemStoreSettings) -> TTLConfig:
    # omit_expired hides expired rows the sweeper has not reached yet (Postgres only;
    # the SQLite store returns them until the next sweep).
    return TTLConfig(
        refresh_on_read=options.refresh_on_read,
        omit_expired=True,
        default_ttl=options.default_ttl_minutes,
    )


def tenant_prefix(tenant_id: str) -> tuple[str, str]:
    """The namespace labels every item of ``tenant_id`` is filed under.

    The id is escaped so it is always exactly one literal label: the stores join labels
    with ``.`` and read ``*`` as a one-label wildcard in namespace listings.
    """
    if not tenant_id:
        raise ValueError("a tenant id cannot be empty")
    label = (
        tenant_id.replace("%", "%25").replace(".", "%2E").replace("*", "%2A").replace("\0", "%00")
    )
    return (_TENANT_ROOT, label)


class TenantScopedStore(BaseStore):
    """One tenant's view of ``inner``: namespaces in and out are relative to its prefix.

    Every op goes through :meth:`abatch`/:meth:`batch`, which translate namespaces on the
    way in and check and strip them on the way out; an item outside the prefix is never
    returned, it raises.
    """

    def __init__(self, inner: BaseStore, tenant_id: str) -> None:
        self._inner = inner
        self._prefix = tenant_prefix(tenant_id)
        self.tenant_id = tenant_id
        # BaseStore resolves default TTLs and read refreshes from these. AsyncSqliteStore
        # handles TTLs but inherits BaseStore's supports_ttl=False ahead of its own True.
        self.supports_ttl = inner.supports_ttl or isinstance(inner, AsyncSqliteStore)
        self.ttl_config = inner.ttl_config

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        ops = list(ops)
        with _unavailable_as_503():
            results = await self._inner.abatch([self._scoped_op(op) for op in ops])
        return [self._unscoped_result(op, result) for op, result in zip(ops, results, strict=True)]

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        # The async stores run sync calls on their event loop and wait: from that loop's
        # own thread this would deadlock, so refuse instead.
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError("sync store calls block the event loop; use the async methods")
        ops = list(ops)
        with _unavailable_as_503():
            results = self._inner.batch([self._scoped_op(op) for op in ops])
        return [self._unscoped_result(op, result) for op, result in zip(ops, results, strict=True)]

    # -- namespaces in ---------------------------------------------------------------
    def _scoped_op(self, op: Op) -> Op:
        # Ops handed to batch directly skip BaseStore's label checks: a label such as
        # "a.b" would otherwise address ("a", "b").
        validate_op_namespace(op)
        if isinstance(op, GetOp):
            return op._replace(namespace=self._prefix + tuple(op.namespace))
        if isinstance(op, PutOp):
            if op.value is not None:
                _check_writable(tuple(op.namespace))
            return op._replace(namespace=self._prefix + tuple(op.namespace))
        if isinstance(op, SearchOp):
            return op._replace(namespace_prefix=self._prefix + tuple(op.namespace_prefix))
        if isinstance(op, ListNamespacesOp):
            return self._scoped_listing(op)
        raise TypeError(f"unknown store op {type(op).__name__}")

    def _scoped_listing(self, op: ListNamespacesOp) -> ListNamespacesOp:
        """Prefixes gain the tenant's labels; suffixes stay, but may not reach into them.

        A suffix is matched against the whole stored namespace, so ``("*", "x")`` would
        match a tenant's ``("x",)`` through the tenant label. An extra prefix of one
        wildcard per suffix label keeps only namespaces at least as long as the suffix
        below the tenant, where matching the whole equals matching the tenant's part.
        """
        conditions = list(op.match_conditions or ())
        longest_suffix = max(
            (len(c.path) for c in conditions if c.match_type == "suffix"), default=0
        )
        scoped = [
            c._replace(path=self._prefix + tuple(c.path)) if c.match_type == "prefix" else c
            for c in conditions
            if c.match_type in ("prefix", "suffix")
        ]
        anchor = MatchCondition(match_type="prefix", path=self._prefix + ("*",) * longest_suffix)
        max_depth = None if op.max_depth is None else op.max_depth + len(self._prefix)
        if max_depth is not None and max_depth < len(self._prefix):
            raise ValueError("max_depth cannot be negative")
        return op._replace(match_conditions=(anchor, *scoped), max_depth=max_depth)

    # -- namespaces out --------------------------------------------------------------
    def _unscoped_result(self, op: Op, result: Result) -> Result:
        if isinstance(op, GetOp):
            return None if result is None else self._unscoped_item(result)
        if isinstance(op, SearchOp):
            assert isinstance(result, list)
            return [self._unscoped_item(item) for item in result]
        if isinstance(op, ListNamespacesOp):
            return [self._strip(tuple(ns)) for ns in cast(list[tuple[str, ...]], result)]
        return result

    def _unscoped_item(self, item: Any) -> Item:
        namespace = self._strip(item.namespace)
        created, updated = _aware(item.created_at), _aware(item.updated_at)
        if isinstance(item, SearchItem):
            return SearchItem(namespace, item.key, item.value, created, updated, item.score)
        return Item(
            namespace=namespace,
            key=item.key,
            value=item.value,
            created_at=created,
            updated_at=updated,
        )

    def _strip(self, namespace: tuple[str, ...]) -> tuple[str, ...]:
        size = len(self._prefix)
        if namespace[:size] != self._prefix:
            # Never hand out a namespace the translation should have excluded.
            raise RuntimeError("the item store returned a namespace outside the tenant's scope")
        return namespace[size:]


class ContextualStore(BaseStore):
    """The store graphs are compiled with: each call acts for the current scope's tenant.

    The tenant is read when a call is made, in the caller's context, so one compiled
    graph serves every tenant; outside a tenant scope every call raises
    :class:`~agent_runtime.execution.tenant_context.NoTenantScope` rather than touching
    unscoped items.
    """

    def __init__(self, stores: ItemStores) -> None:
        self._stores = stores
        self.supports_ttl = True
        self.ttl_config = ttl_config(stores.options)

    def scoped(self) -> TenantScopedStore:
        return self._stores.for_tenant(require_tenant("item store"))

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        return await self.scoped().abatch(ops)

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        return self.scoped().batch(ops)


class ItemStores:
    """Builds, owns and closes the item store for the configured database; with ``index``
    (``store.index``), its semantic-search index too, embedding through ``embed`` (the
    model router's) or the app's function (:mod:`.indexed_store`)."""

    def __init__(
        self,
        storage: StorageSettings,
        options: ItemStoreSettings | None = None,
        *,
        index: StoreIndex | None = None,
        embed: EmbedCall | None = None,
        pool: Pool | None = None,
    ) -> None:
        """``pool`` (Postgres): the replica's, which its owner opens and closes; without
        one the item store makes, opens and closes a pool of its own."""
        self._storage = storage
        self.options = options if options is not None else ItemStoreSettings()
        self._shared = pool
        self._pool: Pool | None = None  # its own, when it was given none
        self._sqlite: aiosqlite.Connection | None = None
        self._store: AsyncPostgresStore | AsyncSqliteStore | None = None
        self._indexing = None if index is None else StoreIndexing(index, embed, self.options)
        self.contextual = ContextualStore(self)

    @property
    def sqlite_path(self) -> Path:
        """The store's own SQLite file, next to the metadata database."""
        metadata = self._storage.sqlite_path
        return metadata.with_name(metadata.stem + "-store.db")

    @property
    def raw(self) -> AsyncPostgresStore | AsyncSqliteStore:
        """The unscoped store: for maintenance only, never for a tenant's request."""
        if self._store is None:
            raise RuntimeError("ItemStores.setup() has not been called")
        return self._store

    def for_tenant(self, tenant_id: str) -> TenantScopedStore:
        raw = self.raw
        inner = raw if self._indexing is None else self._indexing.store(raw, tenant_id)
        return TenantScopedStore(inner, tenant_id)

    async def setup(self) -> None:
        """Open the connection(s), run the store's migrations, start the TTL sweeper."""
        if self._store is not None:
            return
        if self._storage.is_postgres:
            self._store = await self._setup_postgres()
        else:
            self._store = await self._setup_sqlite()
        await self._store.start_ttl_sweeper(self.options.sweep_interval_minutes)  # type: ignore[arg-type]

    async def delete_namespace(self, tenant_id: str, prefix: tuple[str, ...]) -> int:
        """Delete every item of the tenant under ``prefix``; returns how many went."""
        store = self.for_tenant(tenant_id)
        deleted = 0
        while True:
            items = await store.asearch(prefix, limit=100)
            if not items:
                return deleted
            for item in items:
                await store.adelete(item.namespace, item.key)
            deleted += len(items)

    async def sweep_expired(self) -> int:
        """Delete expired items now (the sweeper does it every interval); returns how many."""
        with _unavailable_as_503():
            return await self.raw.sweep_ttl()

    async def _setup_postgres(self) -> AsyncPostgresStore:
        timeout_s = self._storage.db_timeout_s
        pool = self._shared
        if pool is None:
            pool = self._pool = replica_pool(self._storage, "store", _POOL_MIN_SIZE)
        store = AsyncPostgresStore(pool, ttl=ttl_config(self.options))
        indexing = self._indexing

        async def set_up() -> None:
            await store.setup()
            if indexing is not None:  # after the store table its vectors refer to
                await indexing.set_up(PostgresVectors(pool))

        await open_and_set_up(
            pool,
            _MIGRATION_LOCK_KEY,
            timeout_s,
            "item store",
            set_up,
            self.close,
            open_pool=pool is self._pool,
        )
        return store

    async def _setup_sqlite(self) -> AsyncSqliteStore:
        path = self.sqlite_path
        path.parent.mkdir(parents=True, exist_ok=True)
        timeout_s = self._storage.db_timeout_s
        # Autocommit: the store issues its own BEGIN/COMMIT. The busy timeout makes
        # replicas sharing the file wait for each other's writes (as long as any write).
        busy_s = self._storage.sqlite_write_timeout_s
        self._sqlite = await aiosqlite.connect(path, timeout=busy_s, isolation_level=None)
        store = AsyncSqliteStore(self._sqlite, ttl=ttl_config(self.options))
        try:
            async with file_lock(path.with_name(path.name + ".setup-lock"), timeout_s):
                await retry_while_locked(self._enable_wal, timeout_s)
                # Migrations are not idempotent (ALTER TABLE): one process at a time.
                await retry_while_locked(store.setup, timeout_s)
                if self._indexing is not None:
                    vectors = SqliteVectors(self._sqlite, store.lock)
                    await retry_while_locked(partial(self._indexing.set_up, vectors), timeout_s)
        except BaseException:
            await self.close()
            raise
        return store

    async def _enable_wal(self) -> None:
        assert self._sqlite is not None
        await self._sqlite.execute("PRAGMA journal_mode=WAL")
        # As for metadata and checkpoints: a crash loses nothing, a power cut the last commits.
        await self._sqlite.execute("PRAGMA synchronous = NORMAL")
        # The index's vectors go with their item (agent_runtime.execution.vector_rows).
        await self._sqlite.execute("PRAGMA foreign_keys = ON")

    async def close(self) -> None:
        store, self._store = self._store, None
        if store is not None:  # its tasks first: they take connections while they run
            await stop_store_tasks(store, self._storage.db_timeout_s)
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close(timeout=self._storage.db_timeout_s)
        if self._sqlite is not None:
            conn, self._sqlite = self._sqlite, None
            await conn.close()


def _check_writable(namespace: tuple[str, ...]) -> None:
    """What ``BaseStore.put`` checks, for the tenant's namespace rather than the stored one."""
    if not namespace:
        raise InvalidNamespaceError("Namespace cannot be empty.")
    if namespace[0] == _RESERVED_ROOT:
        raise InvalidNamespaceError(
            f'Root label for namespace cannot be "{_RESERVED_ROOT}". Got: {namespace}'
        )


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive UTC timestamps; Postgres aware ones. Callers get aware UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


@contextmanager
def _unavailable_as_503() -> Iterator[None]:
    """Connection-level failures mean the database is down, not that the call was wrong."""
    try:
        yield
    except (PoolTimeout, OperationalError) as exc:
        raise DependencyUnavailable(f"item store unavailable ({type(exc).__name__})") from exc
    except sqlite3.OperationalError as exc:
        if "locked" not in str(exc) and "unable to open" not in str(exc):
            raise
        raise DependencyUnavailable(f"item store unavailable ({type(exc).__name__})") from exc
