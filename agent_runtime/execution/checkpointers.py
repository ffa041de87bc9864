"""The LangGraph checkpointer for the configured database, timed per run.

:class:`Checkpointers` builds an ``AsyncPostgresSaver`` over a psycopg connection pool (the
replica's, :mod:`agent_runtime.db.pg_pool`, which the metadata and item stores share), or
an ``AsyncSqliteSaver`` over its own SQLite file, runs the saver's migrations and hands
back a :class:`TimedSaver` that adds the time of every checkpoint write to the current
run's ``checkpoint_ms`` (:mod:`agent_runtime.core.timing`).

``AsyncPostgresSaver`` serialises every call behind one ``asyncio.Lock`` per saver, even
over a pool, so one replica would write one checkpoint at a time whatever the pool size.
The factory uses :class:`PooledPostgresSaver` instead, which drops that lock: over a pool,
every call takes its own connection (``loadtests/bench_checkpointer.py`` measures it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import aiosqlite
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
)
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

from agent_runtime.config.settings import StorageSettings
from agent_runtime.core import telemetry, timing
from agent_runtime.db.engine import retry_while_locked
from agent_runtime.db.pg_pool import Pool, open_and_set_up, replica_pool

# Serialises the saver's migrations across replicas ("agentck" in hex): two processes
# running them at once would both insert the same migration version.
_MIGRATION_LOCK_KEY = 0x6167656E74636B
_POOL_MIN_SIZE = 4


class _NoLock(asyncio.Lock):
    """An ``asyncio.Lock`` that never blocks: ``async with`` it is a no-op."""

    async def acquire(self) -> Literal[True]:
        return True

    def release(self) -> None:
        pass

    def locked(self) -> bool:
        return False


class PooledPostgresSaver(AsyncPostgresSaver):
    """``AsyncPostgresSaver`` over a connection pool, without the saver-wide lock.

    The stock saver's lock guards its one connection (or pipeline) when it is given a
    single ``AsyncConnection``. Over a pool each ``_cursor()`` checks out its own
    connection, so the lock only serialises independent calls (runs on different
    threads) behind each other. Nothing relies on it for order: LangGraph already chains
    a thread's checkpoint puts, and a run's calls write different rows (upserts).
    Valid for a pool only: a single connection still needs the lock.
    """

    def __init__(
        self,
        conn: AsyncConnectionPool[AsyncConnection[DictRow]],
        serde: SerializerProtocol | None = None,
    ) -> None:
        if not isinstance(conn, AsyncConnectionPool):
            raise TypeError(
                f"PooledPostgresSaver needs an AsyncConnectionPool, not {type(conn).__name__}"
            )
        super().__init__(conn, serde=serde)
        self.lock = _NoLock()


@contextmanager
def _timed_write(operation: str) -> Iterator[None]:
    """A checkpoint write, timed into the current run and reported to the telemetry sink."""
    started = time.perf_counter()
    try:
        yield
    finally:
        elapsed_ms = (time.perf_counter() - started) * 1000
        timing.record("checkpoint_ms", elapsed_ms)
        telemetry.checkpoint_write(operation, elapsed_ms)


class TimedSaver(BaseCheckpointSaver[Any]):
    """Delegates every call to ``inner``; checkpoint writes are timed into the run and
    reported to :mod:`agent_runtime.core.telemetry` (the write-latency histogram)."""

    def __init__(self, inner: BaseCheckpointSaver[Any]) -> None:
        super().__init__(serde=inner.serde)
        self.inner = inner
        self.serde = inner.serde

    @property
    def config_specs(self) -> list[Any]:
        return list(self.inner.config_specs)

    # -- writes (timed) ---------------------------------------------------------------
    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        with _timed_write("put"):
            return await self.inner.aput(config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        with _timed_write("put_writes"):
            await self.inner.aput_writes(config, writes, task_id, task_path)

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        with _timed_write("put"):
            return self.inner.put(config, checkpoint, metadata, new_versions)

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        with _timed_write("put_writes"):
            self.inner.put_writes(config, writes, task_id, task_path)

    # -- reads and maintenance (plain delegation) -------------------------------------
    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await self.inner.aget_tuple(config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        async for item in self.inner.alist(config, filter=filter, before=before, limit=limit):
            yield item

    async def adelete_thread(self, thread_id: str) -> None:
        await self.inner.adelete_thread(thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await self.inner.adelete_for_runs(run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await self.inner.acopy_thread(source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await self.inner.aprune(thread_ids, strategy=strategy)

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        return await self.inner.aget_delta_channel_history(config=config, channels=channels)

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self.inner.get_tuple(config)

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        return self.inner.list(config, filter=filter, before=before, limit=limit)

    def delete_thread(self, thread_id: str) -> None:
        self.inner.delete_thread(thread_id)

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self.inner.delete_for_runs(run_ids)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self.inner.copy_thread(source_thread_id, target_thread_id)

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        self.inner.prune(thread_ids, strategy=strategy)

    def get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        return self.inner.get_delta_channel_history(config=config, channels=channels)

    def get_next_version(self, current: Any, channel: None) -> Any:
        # Versions must be the inner saver's (both built-in savers use strings).
        return self.inner.get_next_version(current, channel)

    def with_allowlist(self, extra_allowlist: Any) -> BaseCheckpointSaver[Any]:
        """Graph compilation narrows the serde allowlist: apply it to the inner saver."""
        inner = self.inner.with_allowlist(extra_allowlist)
        return self if inner is self.inner else TimedSaver(inner)


class Checkpointers:
    """Builds, owns and closes the checkpointer for the configured database."""

    def __init__(self, settings: StorageSettings, pool: Pool | None = None) -> None:
        """``pool`` (Postgres): the replica's, which its owner opens and closes; without
        one the checkpointer makes, opens and closes a pool of its own."""
        self._settings = settings
        self._shared = pool
        self._pool: Pool | None = None  # its own, when it was given none
        self._sqlite: aiosqlite.Connection | None = None
        self._saver: TimedSaver | None = None

    @property
    def saver(self) -> TimedSaver:
        if self._saver is None:
            raise RuntimeError("Checkpointers.setup() has not been called")
        return self._saver

    async def setup(self) -> TimedSaver:
        """Open the connection(s), run the saver's migrations, return the timed saver."""
        if self._saver is not None:
            return self._saver
        inner: BaseCheckpointSaver[Any]
        if self._settings.is_postgres:
            inner = await self._setup_postgres()
        else:
            inner = await self._setup_sqlite()
        self._saver = TimedSaver(inner)
        return self._saver

    async def _setup_postgres(self) -> PooledPostgresSaver:
        timeout_s = self._settings.db_timeout_s
        pool = self._shared
        if pool is None:
            pool = self._pool = replica_pool(self._settings, "checkpoints", _POOL_MIN_SIZE)
        saver = PooledPostgresSaver(pool)
        await open_and_set_up(
            pool,
            _MIGRATION_LOCK_KEY,
            timeout_s,
            "checkpoint",
            saver.setup,
            self.close,
            open_pool=pool is self._pool,
        )
        return saver

    async def _setup_sqlite(self) -> AsyncSqliteSaver:
        path = self._settings.checkpoint_sqlite_path
        path.parent.mkdir(parents=True, exist_ok=True)
        # One connection, whose calls the saver's lock already queues in this process;
        # the busy timeout makes replicas sharing the file wait for each other's writes
        # (as long as any SQLite write may wait: AGENT_SQLITE_WRITE_TIMEOUT_S).
        conn = aiosqlite.connect(path, timeout=self._settings.sqlite_write_timeout_s)
        self._sqlite = await conn
        saver = AsyncSqliteSaver(self._sqlite)
        # The saver's setup script switches the file to WAL, which fails at once when
        # another process opens the new file at the same moment: retry (it is idempotent).
        await retry_while_locked(saver.setup, self._settings.db_timeout_s)
        # In WAL mode NORMAL syncs at WAL checkpoints, not every commit: a crash of the
        # process loses nothing; a power cut may lose the last commits (as for metadata).
        await self._sqlite.execute("PRAGMA synchronous = NORMAL")
        return saver

    async def close(self) -> None:
        self._saver = None
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close(timeout=self._settings.db_timeout_s)
        if self._sqlite is not None:
            conn, self._sqlite = self._sqlite, None
            await conn.close()
