"""Thread-level checkpoint operations the savers lack: copy, delete one run's, prune.

LangGraph's Postgres and SQLite savers only delete whole threads (and Postgres prunes).
The Agent Protocol also needs: a thread copied with all its history (``threads.copy``),
the checkpoints one run wrote removed (multitask/cancel ``rollback``), and a thread's
history pruned to its latest checkpoint (``threads.prune``). These run as plain SQL on
the saver's own tables, in one transaction each.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from psycopg_pool import AsyncConnectionPool

PruneStrategy = Literal["delete", "keep_latest"]

_PG_COPY = (
    "INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, "
    "type, checkpoint, metadata) SELECT %(dst)s, checkpoint_ns, checkpoint_id, "
    "parent_checkpoint_id, type, checkpoint, metadata FROM checkpoints WHERE thread_id = %(src)s",
    "INSERT INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob) "
    "SELECT %(dst)s, checkpoint_ns, channel, version, type, blob "
    "FROM checkpoint_blobs WHERE thread_id = %(src)s",
    "INSERT INTO checkpoint_writes (thread_id, checkpoint_ns, checkpoint_id, task_id, idx, "
    "channel, type, blob, task_path) SELECT %(dst)s, checkpoint_ns, checkpoint_id, task_id, "
    "idx, channel, type, blob, task_path FROM checkpoint_writes WHERE thread_id = %(src)s",
)
_SQLITE_COPY = (
    "INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, "
    "type, checkpoint, metadata) SELECT :dst, checkpoint_ns, checkpoint_id, "
    "parent_checkpoint_id, type, checkpoint, metadata FROM checkpoints WHERE thread_id = :src",
    "INSERT INTO writes (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, "
    "channel, type, value) SELECT :dst, checkpoint_ns, checkpoint_id, task_id, task_path, idx, "
    "channel, type, value FROM writes WHERE thread_id = :src",
)
_PG_DELETE_RUN = (
    "DELETE FROM checkpoint_writes w USING checkpoints c WHERE c.thread_id = %(t)s "
    "AND c.metadata->>'run_id' = %(r)s AND w.thread_id = c.thread_id "
    "AND w.checkpoint_ns = c.checkpoint_ns AND w.checkpoint_id = c.checkpoint_id",
    "DELETE FROM checkpoints WHERE thread_id = %(t)s AND metadata->>'run_id' = %(r)s",
)
_SQLITE_RUN_CHECKPOINTS = (
    "SELECT checkpoint_id FROM checkpoints WHERE thread_id = :t "
    "AND json_extract(CAST(metadata AS TEXT), '$.run_id') = :r"
)
_PG_KEEP_LATEST = (
    # The newest checkpoint per namespace stays (ids are time-ordered uuid6 strings).
    "DELETE FROM checkpoint_writes w WHERE w.thread_id = ANY(%(t)s) AND w.checkpoint_id <> "
    "(SELECT max(c.checkpoint_id) FROM checkpoints c WHERE c.thread_id = w.thread_id "
    "AND c.checkpoint_ns = w.checkpoint_ns)",
    "DELETE FROM checkpoints c WHERE c.thread_id = ANY(%(t)s) AND c.checkpoint_id <> "
    "(SELECT max(k.checkpoint_id) FROM checkpoints k WHERE k.thread_id = c.thread_id "
    "AND k.checkpoint_ns = c.checkpoint_ns)",
)
_SQLITE_KEEP_LATEST = (
    "DELETE FROM writes WHERE thread_id = :t AND checkpoint_id <> (SELECT max(c.checkpoint_id) "
    "FROM checkpoints c WHERE c.thread_id = writes.thread_id "
    "AND c.checkpoint_ns = writes.checkpoint_ns)",
    "DELETE FROM checkpoints WHERE thread_id = :t AND checkpoint_id <> "
    "(SELECT max(k.checkpoint_id) FROM checkpoints k WHERE k.thread_id = checkpoints.thread_id "
    "AND k.checkpoint_ns = checkpoints.checkpoint_ns)",
)


def _inner(saver: Any) -> Any:
    """The LangGraph saver under our timing wrapper."""
    return getattr(saver, "inner", saver)


async def copy_thread(saver: Any, source: str, target: str) -> None:
    """Copy every checkpoint, blob and pending write of ``source`` to ``target``."""
    inner = _inner(saver)
    if isinstance(inner, AsyncPostgresSaver):
        await _pg(inner, _PG_COPY, {"src": source, "dst": target})
    elif isinstance(inner, AsyncSqliteSaver):
        await _sqlite(inner, _SQLITE_COPY, {"src": source, "dst": target})
    else:
        await inner.acopy_thread(source, target)


async def delete_run_checkpoints(saver: Any, thread_id: str, run_id: str) -> None:
    """Remove the checkpoints (and their writes) that run ``run_id`` wrote on the thread.

    Channel blobs stay: they are keyed by version, and nothing points at the orphans.
    """
    inner = _inner(saver)
    if isinstance(inner, AsyncPostgresSaver):
        await _pg(inner, _PG_DELETE_RUN, {"t": thread_id, "r": run_id})
    elif isinstance(inner, AsyncSqliteSaver):
        async with inner.lock, inner.conn.cursor() as cur:
            await cur.execute(_SQLITE_RUN_CHECKPOINTS, {"t": thread_id, "r": run_id})
            ids = [row[0] for row in await cur.fetchall()]
            for checkpoint_id in ids:
                params = {"t": thread_id, "c": checkpoint_id}
                await cur.execute(
                    "DELETE FROM writes WHERE thread_id = :t AND checkpoint_id = :c", params
                )
                await cur.execute(
                    "DELETE FROM checkpoints WHERE thread_id = :t AND checkpoint_id = :c", params
                )
            await inner.conn.commit()
    else:
        await inner.adelete_for_runs([run_id])


async def prune(saver: Any, thread_ids: Sequence[str], strategy: PruneStrategy) -> None:
    """``delete``: drop the threads' checkpoints; ``keep_latest``: keep only the newest."""
    inner = _inner(saver)
    if strategy == "delete":
        for thread_id in thread_ids:
            await inner.adelete_thread(thread_id)
        return
    if isinstance(inner, AsyncPostgresSaver):
        await _pg(inner, _PG_KEEP_LATEST, {"t": list(thread_ids)})
    elif isinstance(inner, AsyncSqliteSaver):
        for thread_id in thread_ids:
            await _sqlite(inner, _SQLITE_KEEP_LATEST, {"t": thread_id})
    else:
        await inner.aprune(list(thread_ids), strategy=strategy)


async def _pg(saver: AsyncPostgresSaver, statements: Sequence[str], params: Any) -> None:
    pool = saver.conn
    if not isinstance(pool, AsyncConnectionPool):
        raise TypeError("the runtime's Postgres saver runs over a connection pool")
    async with pool.connection() as conn, conn.transaction():
        for statement in statements:
            await conn.execute(statement, params)


async def _sqlite(saver: AsyncSqliteSaver, statements: Sequence[str], params: Any) -> None:
    async with saver.lock, saver.conn.cursor() as cur:
        for statement in statements:
            await cur.execute(statement, params)
        await saver.conn.commit()
