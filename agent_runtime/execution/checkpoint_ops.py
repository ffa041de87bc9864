"""Thread-level checkpoint operations the savers lack: copy, delete, prune, adopt.

LangGraph's Postgres and SQLite savers only delete whole threads (and Postgres prunes).
The Agent Protocol also needs: a thread copied with all its history (``threads.copy``),
the checkpoints one run wrote removed (multitask/cancel ``rollback``), and a thread's
history pruned to its latest checkpoint (``threads.prune``); deleting a thread must be
one bounded transaction, so that it either happens or leaves everything as it was. These
run as plain SQL on the saver's own tables, in one transaction each.

Each takes the tenant and the tenant's thread ids, and works on the keys
:func:`~agent_runtime.execution.tenant_checkpoints.checkpoint_thread_id` files them
under. :func:`adopt_unscoped` moves checkpoints written before thread ids were per
tenant under their owner's key.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import delete, select

from agent_runtime.db.metadata import MetadataStore
from agent_runtime.db.tables import UNSCOPED_CHECKPOINTS
from agent_runtime.execution.tenant_checkpoints import checkpoint_thread_id

logger = logging.getLogger(__name__)

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


_PG_DELETE_THREAD = (
    "DELETE FROM checkpoint_writes WHERE thread_id = %(t)s",
    "DELETE FROM checkpoint_blobs WHERE thread_id = %(t)s",
    "DELETE FROM checkpoints WHERE thread_id = %(t)s",
)
_SQLITE_DELETE_THREAD = (
    "DELETE FROM writes WHERE thread_id = :t",
    "DELETE FROM checkpoints WHERE thread_id = :t",
)
_PG_MOVE = tuple(
    f"UPDATE {table} SET thread_id = %(dst)s WHERE thread_id = %(src)s"
    for table in ("checkpoints", "checkpoint_blobs", "checkpoint_writes")
)
_SQLITE_MOVE = tuple(
    f"UPDATE {table} SET thread_id = :dst WHERE thread_id = :src"
    for table in ("checkpoints", "writes")
)
# Threads adopted per read of the list (agent_unscoped_checkpoints) at start-up.
_ADOPT_BATCH = 500


def _inner(saver: Any) -> Any:
    """The LangGraph saver under our wrappers (tenant scope, timing)."""
    while hasattr(saver, "inner"):
        saver = saver.inner
    return saver


async def copy_thread(saver: Any, tenant_id: str, source: str, target: str) -> None:
    """Copy every checkpoint, blob and pending write of ``source`` to ``target``."""
    inner = _inner(saver)
    keys = {"src": checkpoint_thread_id(tenant_id, source)}
    keys["dst"] = checkpoint_thread_id(tenant_id, target)
    if isinstance(inner, AsyncPostgresSaver):
        await _pg(inner, _PG_COPY, keys)
    elif isinstance(inner, AsyncSqliteSaver):
        await _sqlite(inner, _SQLITE_COPY, keys)
    else:
        await inner.acopy_thread(keys["src"], keys["dst"])


async def delete_thread(saver: Any, tenant_id: str, thread_id: str, *, timeout_s: float) -> None:
    """Delete every checkpoint, blob and write of the thread, in one transaction that
    gives up after ``timeout_s`` (Postgres: a lock or statement timeout; SQLite: the
    connection's busy timeout) and then leaves them all in place."""
    inner = _inner(saver)
    key = checkpoint_thread_id(tenant_id, thread_id)
    if isinstance(inner, AsyncPostgresSaver):
        await _pg(inner, _PG_DELETE_THREAD, {"t": key}, timeout_s=timeout_s)
    elif isinstance(inner, AsyncSqliteSaver):
        await _sqlite(inner, _SQLITE_DELETE_THREAD, {"t": key})
    else:
        await inner.adelete_thread(key)


async def delete_run_checkpoints(saver: Any, tenant_id: str, thread_id: str, run_id: str) -> None:
    """Remove the checkpoints (and their writes) that run ``run_id`` wrote on the thread.

    Channel blobs stay: they are keyed by version, and nothing points at the orphans.
    """
    inner = _inner(saver)
    key = checkpoint_thread_id(tenant_id, thread_id)
    if isinstance(inner, AsyncPostgresSaver):
        await _pg(inner, _PG_DELETE_RUN, {"t": key, "r": run_id})
    elif isinstance(inner, AsyncSqliteSaver):
        async with inner.lock, inner.conn.cursor() as cur:
            try:
                await cur.execute(_SQLITE_RUN_CHECKPOINTS, {"t": key, "r": run_id})
                ids = [row[0] for row in await cur.fetchall()]
                for checkpoint_id in ids:
                    params = {"t": key, "c": checkpoint_id}
                    await cur.execute(
                        "DELETE FROM writes WHERE thread_id = :t AND checkpoint_id = :c", params
                    )
                    await cur.execute(
                        "DELETE FROM checkpoints WHERE thread_id = :t AND checkpoint_id = :c",
                        params,
                    )
                await inner.conn.commit()
            except BaseException:
                await inner.conn.rollback()
                raise
    else:
        await inner.adelete_for_runs([run_id])


async def prune(
    saver: Any, tenant_id: str, thread_ids: Sequence[str], strategy: PruneStrategy
) -> None:
    """``delete``: drop the threads' checkpoints; ``keep_latest``: keep only the newest."""
    inner = _inner(saver)
    keys = [checkpoint_thread_id(tenant_id, thread_id) for thread_id in thread_ids]
    if strategy == "delete":
        for key in keys:
            await inner.adelete_thread(key)
        return
    if isinstance(inner, AsyncPostgresSaver):
        await _pg(inner, _PG_KEEP_LATEST, {"t": keys})
    elif isinstance(inner, AsyncSqliteSaver):
        for key in keys:
            await _sqlite(inner, _SQLITE_KEEP_LATEST, {"t": key})
    else:
        await inner.aprune(keys, strategy=strategy)


async def adopt_unscoped(store: MetadataStore, saver: Any) -> int:
    """File the checkpoints of threads made before revision 0008 under their tenant.

    Before it, checkpoints were keyed by the bare thread id; the migration listed every
    thread then (with its one owner) in ``agent_unscoped_checkpoints``. Each listed
    thread's checkpoints move under its owner's key, and its entry goes. Run at start-up,
    before the replica serves; idempotent (replicas starting together move each thread
    once). A thread that cannot be moved stays listed for the next start, logged.
    Returns how many threads were moved.
    """
    inner = _inner(saver)
    moved, after = 0, ""
    while True:
        async with store.transaction() as conn:
            rows = (
                await conn.execute(
                    select(UNSCOPED_CHECKPOINTS.c.tenant_id, UNSCOPED_CHECKPOINTS.c.thread_id)
                    .where(UNSCOPED_CHECKPOINTS.c.thread_id > after)
                    .order_by(UNSCOPED_CHECKPOINTS.c.thread_id)
                    .limit(_ADOPT_BATCH)
                )
            ).all()
        if not rows:
            return moved
        done: list[str] = []
        for row in rows:
            keys = {"src": row.thread_id, "dst": checkpoint_thread_id(row.tenant_id, row.thread_id)}
            try:
                if isinstance(inner, AsyncPostgresSaver):
                    await _pg(inner, _PG_MOVE, keys)
                elif isinstance(inner, AsyncSqliteSaver):
                    await _sqlite(inner, _SQLITE_MOVE, keys)
            except Exception as exc:  # one thread must not keep the others (or start-up) back
                logger.warning(
                    "checkpoints of thread %s not moved under its tenant: %s",
                    row.thread_id,
                    type(exc).__name__,
                )
                continue
            done.append(row.thread_id)
        if done:
            async with store.transaction() as conn:
                await conn.execute(
                    delete(UNSCOPED_CHECKPOINTS).where(UNSCOPED_CHECKPOINTS.c.thread_id.in_(done))
                )
        moved += len(done)
        after = rows[-1].thread_id


async def _pg(
    saver: AsyncPostgresSaver,
    statements: Sequence[str],
    params: Any,
    *,
    timeout_s: float | None = None,
) -> None:
    pool = saver.conn
    if not isinstance(pool, AsyncConnectionPool):
        raise TypeError("the runtime's Postgres saver runs over a connection pool")
    async with pool.connection(timeout=timeout_s) as conn, conn.transaction():
        if timeout_s is not None:
            limit_ms = max(1, int(timeout_s * 1000))
            await conn.execute(f"SET LOCAL lock_timeout = {limit_ms}")
            await conn.execute(f"SET LOCAL statement_timeout = {limit_ms}")
        for statement in statements:
            await conn.execute(statement, params)


async def _sqlite(saver: AsyncSqliteSaver, statements: Sequence[str], params: Any) -> None:
    """The statements in one transaction: all of them, or (rolled back) none."""
    async with saver.lock, saver.conn.cursor() as cur:
        try:
            for statement in statements:
                await cur.execute(statement, params)
            await saver.conn.commit()
        except BaseException:
            await saver.conn.rollback()
            raise
