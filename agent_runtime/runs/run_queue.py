"""The run queue in the metadata database: creation with double-texting, the end of a run.

Per-thread serialisation lives in the database, so it holds across orchestrator replicas:
a thread is ``busy`` while it has a pending or running run, and ``current_run_id`` names
the one run that holds it. Claiming is a compare-and-set on the thread row (Postgres row
lock; SQLite's write lock), so two replicas can never run one thread at once.

The leases and claims of running runs are :mod:`agent_runtime.runs.run_leases`; reads,
cancels and deletes of run rows :mod:`agent_runtime.runs.run_rows`. :class:`RunStore`
builds on both.

Every time written or compared here (creation, claims, heartbeats, the reaper's cutoff)
is this process's, read from the store's injected :class:`~agent_runtime.core.clock.Clock`:
tests move it to make a lease lapse instead of waiting for it.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, cast, delete, func, insert, literal, select, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from agent_runtime.core.clock import SYSTEM_CLOCK, Clock
from agent_runtime.core.errors import Conflict, NotFound
from agent_runtime.core.records import (
    MultitaskStrategy,
    RunRecord,
    RunStatus,
    ThreadStatus,
)
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.db.tables import RUN_EVENTS, RUNS, THREADS
from agent_runtime.execution.run_trace import RunTrace
from agent_runtime.runs.event_rows import RunEventStore
from agent_runtime.runs.run_leases import RunLeases
from agent_runtime.runs.run_rows import run_record
from agent_runtime.runs.trace_rows import write_trace
from agent_runtime.tenancy.run_limits import Capacity, RunLimits, admit, capacity

BUSY_MESSAGE = (
    "Thread is already running a task. Wait for it to finish or choose a different "
    "multitask strategy."
)
# A sentinel for "leave the thread's stored values as they are".
KEEP = object()


@dataclass
class NewRun:
    """What to record: the caller has resolved the assistant and validated the request."""

    tenant_id: str
    thread_id: str
    graph_id: str
    assistant_id: str
    kwargs: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)
    multitask_strategy: MultitaskStrategy = "enqueue"
    if_not_exists: str = "reject"
    after_seconds: float = 0.0
    temporary: bool = False
    # Merged into the thread's metadata (Platform records graph and assistant there).
    thread_metadata: dict[str, Any] = field(default_factory=dict)
    created_thread_metadata: dict[str, Any] | None = None  # a new thread's (else the above)
    run_id: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass
class CreatedRun:
    run: RunRecord
    # True when this worker holds the thread and must execute the run now.
    started: bool
    # Runs asked to stop for it (multitask ``interrupt`` / ``rollback``).
    superseded: list[str] = field(default_factory=list)


@dataclass
class RunEnd:
    """How a run ended, as its worker reports it."""

    status: RunStatus | None  # None: rolled back (the run row is deleted)
    thread_status: ThreadStatus
    values: Any = KEEP
    interrupts: dict[str, Any] | None = None
    error: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    trace: RunTrace | None = None  # stored with the run's end (agent_runtime.runs.trace_rows)


@dataclass
class Finished:
    """What :meth:`RunStore.finish` did: the thread's next run, claimed for the worker,
    if any; whether the run's row was gone (deleted while it ran: its thread was deleted,
    or the run rolled back), so that what it wrote meanwhile can go too."""

    next_run: RunRecord | None = None
    gone: bool = False
    # A slot of the run's tenant freed while another of its runs is due in the queue
    # (queued at its run limit): the queue should be told.
    queue_waiting: bool = False


def _row(record: RunRecord) -> dict[str, Any]:
    return record.model_dump()


class RunStore(RunLeases):
    """Run rows and their lifecycle, over the metadata store's engine.

    ``limits``: the default per-tenant run limits (``AGENT_MAX_CONCURRENT_RUNS``,
    ``AGENT_MAX_QUEUED_RUNS``), applied at creation and claims with the tenant's own
    (:mod:`agent_runtime.tenancy.run_limits`). ``clock``: the time rows are stamped with
    and leases judged by.
    """

    def __init__(
        self, store: MetadataStore, limits: RunLimits | None = None, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        super().__init__(store, limits or RunLimits(), clock)
        self.events = RunEventStore(store)  # the runs' stored stream events

    # -- helpers ------------------------------------------------------------------------
    def _merge_json(self, column: Any, patch: dict[str, Any]) -> ColumnElement[Any]:
        """``column`` with ``patch``'s keys merged in, in SQL (one statement, no read)."""
        if self._store.is_postgres:
            merged: ColumnElement[Any] = column.op("||")(cast(literal(json.dumps(patch)), JSONB()))
            return merged
        return func.json_patch(column, json.dumps(patch))

    # -- creation -----------------------------------------------------------------------
    async def create(self, new: NewRun, worker_id: str) -> CreatedRun:
        """Record a run and, when its thread is free, claim the thread for ``worker_id``.

        One transaction. On an idle thread that is a compare-and-set of the thread row and
        one insert. On a busy thread the multitask strategy decides: ``reject`` raises
        Conflict; ``enqueue`` queues the run; ``interrupt``/``rollback`` queue it and ask
        the runs in flight to stop (the worker running them sees it at its next heartbeat).
        A background run that finds its tenant at capacity is queued (claimed when a slot
        frees); any other run past its tenant's run limits is RateLimited (429) and nothing
        is written.
        """
        now = self._clock.now()
        record = RunRecord(
            run_id=new.run_id,
            thread_id=new.thread_id,
            tenant_id=new.tenant_id,
            assistant_id=new.assistant_id,
            graph_id=new.graph_id,
            status="pending",
            metadata=new.metadata,
            kwargs=new.kwargs,
            multitask_strategy=new.multitask_strategy,
            temporary=new.temporary,
            # As in Platform, a delayed run is "created" when it becomes due.
            created_at=now + timedelta(seconds=new.after_seconds),
            updated_at=now,
        )
        running = record.model_copy(
            update={"status": "running", "worker_id": worker_id, "heartbeat_at": now}
        )
        where = (THREADS.c.thread_id == new.thread_id, THREADS.c.tenant_id == new.tenant_id)
        claim = {
            "status": "busy",
            "graph_id": new.graph_id,
            "updated_at": now,
            "metadata": self._merge_json(THREADS.c["metadata"], new.thread_metadata),
        }
        try:
            async with self._store.transaction(write_lock=True) as conn:
                room = await capacity(
                    conn, new.tenant_id, self._limits, postgres=self._store.is_postgres
                )
                # Queued even on a free thread: delayed, or a background run at capacity.
                queued = new.after_seconds > 0 or (room.full and bool(new.kwargs.get("background")))
                if not new.temporary:
                    claimed = await conn.execute(
                        update(THREADS)
                        .where(*where, THREADS.c.status != "busy")
                        .values(**claim, current_run_id=None if queued else new.run_id)
                    )
                    if claimed.rowcount == 1:
                        return await self._insert(conn, record if queued else running, room)
                    found = await conn.execute(
                        select(THREADS.c.status).where(*where).with_for_update()
                    )
                    status = found.scalar_one_or_none()
                else:
                    status = None
                if status is None:
                    if not new.temporary and new.if_not_exists != "create":
                        raise NotFound("Thread or assistant not found.")
                    await conn.execute(
                        insert(THREADS).values(
                            thread_id=new.thread_id,
                            tenant_id=new.tenant_id,
                            graph_id=new.graph_id,
                            status="busy",
                            metadata=new.created_thread_metadata or new.thread_metadata,
                            config={},
                            interrupts={},
                            current_run_id=None if queued else new.run_id,
                            created_at=now,
                            updated_at=now,
                        )
                    )
                    return await self._insert(conn, record if queued else running, room)
                return await self._enqueue(conn, new, record, running, now, room, queued)
        except IntegrityError as exc:
            # Another request created this thread id at the same moment.
            raise Conflict(f"Thread with ID {new.thread_id} already exists") from exc

    async def _insert(self, conn: AsyncConnection, record: RunRecord, room: Capacity) -> CreatedRun:
        if room.limits.any:
            await admit(conn, record, room)
        await conn.execute(insert(RUNS).values(**_row(record)))
        return CreatedRun(record, started=record.status == "running")

    async def _enqueue(
        self,
        conn: AsyncConnection,
        new: NewRun,
        record: RunRecord,
        started_run: RunRecord,
        now: datetime,
        room: Capacity,
        queued: bool,
    ) -> CreatedRun:
        """The thread is busy (we hold its row lock): apply the multitask strategy."""
        active = await conn.execute(
            select(RUNS.c.run_id, RUNS.c.status).where(
                RUNS.c.thread_id == new.thread_id,
                RUNS.c.tenant_id == new.tenant_id,
                RUNS.c.status.in_(("pending", "running")),
            )
        )
        inflight = {row.run_id: row.status for row in active}
        where = (THREADS.c.thread_id == new.thread_id, THREADS.c.tenant_id == new.tenant_id)
        if not inflight:
            # Busy with nothing in flight: the last holder never released it (it crashed
            # between statements). The thread is free; claim it.
            return await self._claim_free(conn, new, record, started_run, now, room, queued)
        if new.multitask_strategy == "reject":
            raise Conflict(BUSY_MESSAGE, thread_id=new.thread_id)
        superseded: list[str] = []
        if new.multitask_strategy in ("interrupt", "rollback"):
            running = [r for r, s in inflight.items() if s == "running"]
            pending = [r for r, s in inflight.items() if s == "pending"]
            if running:
                await conn.execute(
                    update(RUNS)
                    .where(RUNS.c.run_id.in_(running))
                    .values(cancel_action=new.multitask_strategy, updated_at=now)
                )
                superseded = running
            if pending:
                if new.multitask_strategy == "rollback":
                    await conn.execute(delete(RUNS).where(RUNS.c.run_id.in_(pending)))
                else:
                    await conn.execute(
                        update(RUNS)
                        .where(RUNS.c.run_id.in_(pending))
                        .values(status="interrupted", updated_at=now)
                    )
            if not running:
                return await self._claim_free(conn, new, record, started_run, now, room, queued)
        await conn.execute(
            update(THREADS)
            .where(*where)
            .values(
                updated_at=now,
                metadata=self._merge_json(THREADS.c["metadata"], new.thread_metadata),
            )
        )
        created = await self._insert(conn, record, room)
        created.superseded = superseded
        return created

    async def _claim_free(
        self,
        conn: AsyncConnection,
        new: NewRun,
        record: RunRecord,
        started_run: RunRecord,
        now: datetime,
        room: Capacity,
        queued: bool,
    ) -> CreatedRun:
        """Claim the thread for a run that starts now: ``started_run`` is the run as claimed by
        the creating worker (its owner, whose heartbeat keeps it), ``record`` as queued
        (``queued``: delayed, or its tenant is at capacity)."""
        await conn.execute(
            update(THREADS)
            .where(THREADS.c.thread_id == new.thread_id, THREADS.c.tenant_id == new.tenant_id)
            .values(
                status="busy",
                graph_id=new.graph_id,
                updated_at=now,
                current_run_id=None if queued else new.run_id,
                metadata=self._merge_json(THREADS.c["metadata"], new.thread_metadata),
            )
        )
        # Running with no owner, the first heartbeat cancelled it, or the reaper ran it again.
        return await self._insert(conn, record if queued else started_run, room)

    # -- the end of a run ---------------------------------------------------------------
    async def finish(self, run: RunRecord, end: RunEnd, worker_id: str) -> Finished:
        """Record how ``run`` ended and hand its thread to the next due run, if any.

        One transaction. Returns the next run, already claimed for ``worker_id``. A worker
        that lost its lease (the run was reaped and resumed elsewhere, or deleted) changes
        nothing.
        """
        now = self._clock.now()
        mine = and_(
            RUNS.c.run_id == run.run_id,
            RUNS.c.worker_id == worker_id,
            RUNS.c.status == "running",
        )
        thread_where = (
            THREADS.c.thread_id == run.thread_id,
            THREADS.c.tenant_id == run.tenant_id,
        )
        async with self._store.transaction(write_lock=True) as conn:
            if end.status is None:
                result = await conn.execute(delete(RUNS).where(mine))
                if result.rowcount == 1:
                    await conn.execute(delete(RUN_EVENTS).where(RUN_EVENTS.c.run_id == run.run_id))
            else:
                result = await conn.execute(
                    update(RUNS)
                    .where(mine)
                    .values(
                        status=end.status,
                        error=end.error,
                        input_tokens=end.input_tokens,
                        output_tokens=end.output_tokens,
                        cancel_action=None,
                        updated_at=now,
                    )
                )
            if result.rowcount != 1:
                exists = select(RUNS.c.run_id).where(RUNS.c.run_id == run.run_id)
                return Finished(gone=(await conn.execute(exists)).first() is None)
            if end.status is not None and end.trace is not None:
                await write_trace(conn, run.tenant_id, end.trace)
            thread: dict[str, Any] = {"updated_at": now, "current_run_id": None}
            if end.values is not KEEP:
                thread.update(
                    state_values=end.values,
                    interrupts=end.interrupts or {},
                    state_updated_at=now,
                )
            pending = self._pending_first(run.tenant_id, run.thread_id or "")
            next_row = (await conn.execute(pending)).first()
            due = next_row is not None and next_row.created_at <= now
            if next_row is None:
                thread["status"] = end.thread_status
            if next_row is not None and due:
                await conn.execute(
                    update(RUNS)
                    .where(RUNS.c.run_id == next_row.run_id)
                    .values(status="running", worker_id=worker_id, heartbeat_at=now, updated_at=now)
                )
                thread["current_run_id"] = next_row.run_id
                if next_row.graph_id:
                    thread["graph_id"] = next_row.graph_id
            await conn.execute(update(THREADS).where(*thread_where).values(**thread))
            waiting = False
            if not due:
                waiting = (
                    await conn.execute(self._tenant_due(run.tenant_id, now))
                ).first() is not None
        if next_row is None or not due:
            return Finished(queue_waiting=waiting)
        claimed = run_record(next_row._mapping).model_copy(
            update={"status": "running", "worker_id": worker_id, "heartbeat_at": now}
        )
        return Finished(next_run=claimed)
