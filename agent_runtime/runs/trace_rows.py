"""Run traces in the metadata store (``agent_run_traces``, revision 0005).

A trace is written in the transaction that records how its run ended
(:meth:`agent_runtime.runs.run_queue.RunStore.finish` calls :func:`write_trace`), so a run that
ended has its trace and a run that lost its lease writes none; it is deleted with its run.
:class:`TraceReader` gives a tenant the trace of one of its runs.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from agent_runtime.core.errors import NotFound
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.db.tables import RUN_TRACES, RUNS, utcnow
from agent_runtime.execution.run_trace import RunTrace


async def write_trace(conn: AsyncConnection, tenant_id: str, trace: RunTrace) -> None:
    """Store ``trace`` (replacing an earlier attempt's) inside the caller's transaction."""
    await conn.execute(delete(RUN_TRACES).where(RUN_TRACES.c.run_id == trace.run_id))
    await conn.execute(
        insert(RUN_TRACES).values(
            run_id=trace.run_id,
            tenant_id=tenant_id,
            created_at=utcnow(),
            trace=trace.model_dump(mode="json"),
        )
    )


async def delete_traces(conn: AsyncConnection, run_ids: Sequence[str]) -> None:
    if run_ids:
        await conn.execute(delete(RUN_TRACES).where(RUN_TRACES.c.run_id.in_(list(run_ids))))


class TraceReader:
    def __init__(self, store: MetadataStore) -> None:
        self._store = store

    async def get(self, tenant_id: str, thread_id: str, run_id: str) -> RunTrace:
        """The run's trace; a run not ended yet (or ended before traces) has no spans.

        Raises :class:`NotFound` unless the run is the tenant's, on that thread.
        """
        query = (
            select(
                RUNS.c.status,
                RUNS.c.graph_id,
                RUNS.c.attempt,
                RUNS.c.created_at,
                RUN_TRACES.c.trace,
            )
            .select_from(RUNS.outerjoin(RUN_TRACES, RUN_TRACES.c.run_id == RUNS.c.run_id))
            .where(
                RUNS.c.run_id == run_id,
                RUNS.c.thread_id == thread_id,
                RUNS.c.tenant_id == tenant_id,
            )
        )
        async with self._store.transaction() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            raise NotFound(f"Run {run_id} not found.")
        if row.trace is not None:
            return RunTrace.model_validate(row.trace)
        return RunTrace(
            run_id=run_id,
            thread_id=thread_id,
            graph_id=row.graph_id,
            attempt=row.attempt,
            status=row.status,
            started_at=row.created_at,
        )
