"""A thread's stream (``GET /threads/{thread_id}/stream``): every run on it, as it runs.

As LangGraph Platform does, joining a thread streams the events of its runs one after the
other, in the order they were created: the run in progress and those queued behind it,
then each new one, for as long as the client stays. After each run comes a ``metadata``
event ``{"status": "run_done", "run_id": ...}``. The stream ends when the thread is
deleted; the ingress also ends it past its lifetime or when its key is revoked
(``agent_runtime/api/held_streams.py``). Between runs the stream reads the database when
told that the thread changed (a new run, a state update, the delete:
:mod:`agent_runtime.runs.run_signals`, across replicas through Redis) and every
``poll_s`` otherwise, for a message that was lost.

Modes (``stream_modes``, one or a comma-separated list; ``run_modes`` by default):
``run_modes``: every event of the runs (each run's own ``stream_mode`` decides which);
``lifecycle``: only each run's first ``metadata`` event and its ``run_done``;
``state_update``: ``{"state": ..., "thread_id": ...}`` when the thread's state is changed
outside a run (``POST /threads/{id}/state``).

Event ids are ``<run_id>:<n>`` (the run's own event numbers; ``<run_id>:done`` for
``run_done``, ``state:<ms>`` for state updates). A client that reconnects with
``Last-Event-ID`` gets the rest of that run and every run after it (``-``: every run of the
thread from the first), then the live stream. A run's events come from this replica's live
stream or from the database (background and streamed runs keep theirs); a ``wait`` run
started on another replica shows only its ``run_done``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args

import orjson
from sqlalchemy import and_, or_, select

from agent_runtime.core.errors import InvalidRequest
from agent_runtime.core.records import Principal
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.db.tables import RUNS, THREADS
from agent_runtime.protocol.sse import encode_event, event_number
from agent_runtime.runs.run_service import RunService
from agent_runtime.runs.run_signals import Watch, thread_topic

logger = logging.getLogger(__name__)

ThreadStreamMode = Literal["run_modes", "lifecycle", "state_update"]
THREAD_STREAM_MODES: tuple[str, ...] = get_args(ThreadStreamMode)
FROM_THE_START = "-"

StateReader = Callable[[Principal, str], Awaitable[dict[str, Any]]]


def parse_modes(values: Sequence[str]) -> list[ThreadStreamMode]:
    """The modes of ``stream_modes`` values (each may be a comma-separated list); 422 for
    an unknown one, as Platform answers."""
    modes: list[ThreadStreamMode] = []
    for value in values:
        for part in value.split(","):
            mode = part.strip()
            if not mode:
                continue
            if mode not in THREAD_STREAM_MODES:
                raise InvalidRequest(
                    f"Invalid stream mode: {mode}; one of {', '.join(THREAD_STREAM_MODES)}",
                    field="stream_modes",
                )
            modes.append(mode)  # type: ignore[arg-type]
    return modes or ["run_modes"]


@dataclass(frozen=True)
class _Cursor:
    """The last run the stream is done with (created_at, run_id); None: before the first."""

    created_at: datetime
    run_id: str


@dataclass(frozen=True)
class _Resume:
    run_id: str
    after: int  # that run's events numbered above this; -1: the whole run is done


def _parse_event_id(value: str) -> _Resume | None:
    run_id, _, seq = value.rpartition(":")
    if not run_id or run_id == "state":
        return None
    if seq == "done":
        return _Resume(run_id, -1)
    after = event_number(seq)
    return _Resume(run_id, after) if after is not None else None


class ThreadStreams:
    def __init__(
        self,
        store: MetadataStore,
        runs: RunService,
        state: StateReader,
        *,
        poll_s: float = 2.0,
    ) -> None:
        """``poll_s``: the fallback interval (``AGENT_RUN_FALLBACK_POLL_S``)."""
        self._store = store
        self._runs = runs
        self._state = state
        self._poll_s = poll_s

    async def join(
        self,
        principal: Principal,
        thread_id: str,
        *,
        last_event_id: str | None = None,
        modes: Sequence[ThreadStreamMode] = ("run_modes",),
    ) -> AsyncIterator[bytes]:
        """The thread's stream (see the module); NotFound unless the thread is the
        tenant's, raised before the first event."""
        thread = await self._store.get_thread(principal.tenant_id, thread_id)
        logger.info("thread stream joined: modes %s", ",".join(modes))
        try:
            async for event in self._follow(
                principal, thread_id, last_event_id, modes, thread.state_updated_at
            ):
                yield event
        finally:
            logger.info("thread stream closed")

    async def _follow(
        self,
        principal: Principal,
        thread_id: str,
        last_event_id: str | None,
        modes: Sequence[ThreadStreamMode],
        state_seen: datetime | None,
    ) -> AsyncIterator[bytes]:
        tenant = principal.tenant_id
        with self._runs.signals.watch(thread_topic(thread_id)) as watch:
            cursor, resume = await self._start(tenant, thread_id, last_event_id)
            # Closed with this one (aclosing), not when collected: watches go at once.
            runs = self._runs_of(principal, thread_id, modes, state_seen, cursor, resume, watch)
            async with aclosing(runs):
                async for event in runs:
                    yield event

    async def _runs_of(
        self,
        principal: Principal,
        thread_id: str,
        modes: Sequence[ThreadStreamMode],
        state_seen: datetime | None,
        cursor: _Cursor | None,
        resume: _Resume | None,
        watch: Watch,
    ) -> AsyncGenerator[bytes, None]:
        tenant = principal.tenant_id
        while True:
            run = await self._next_run(tenant, thread_id, cursor, resume)
            if run is None:
                exists, updated = await self._thread_state_time(tenant, thread_id)
                if not exists:
                    logger.info("thread deleted: its stream ends")
                    return
                if "state_update" in modes:
                    state_seen, update = await self._state_update(
                        principal, thread_id, state_seen, updated
                    )
                    if update is not None:
                        yield update
                await watch.wait(self._poll_s)
                continue
            after = 0
            if resume is not None and resume.run_id == run.run_id:
                after = resume.after
            resume = None
            if after >= 0:
                async with aclosing(self._runs.events(run.run_id, after)) as events:
                    async for seq, name, data in events:
                        if _wanted(name, data, modes):
                            yield encode_event(name, data, f"{run.run_id}:{seq}")
                if "run_modes" in modes or "lifecycle" in modes:
                    done = {"status": "run_done", "run_id": run.run_id}
                    yield encode_event("metadata", done, f"{run.run_id}:done")
            cursor = _Cursor(run.created_at, run.run_id)

    async def _start(
        self, tenant_id: str, thread_id: str, last_event_id: str | None
    ) -> tuple[_Cursor | None, _Resume | None]:
        """Where the stream starts: with no ``Last-Event-ID``, after the newest run that
        has ended (so the run in progress and the queued ones come first)."""
        if last_event_id == FROM_THE_START:
            return None, None
        resume = _parse_event_id(last_event_id) if last_event_id else None
        query = select(RUNS.c.created_at, RUNS.c.run_id).where(
            RUNS.c.thread_id == thread_id, RUNS.c.tenant_id == tenant_id
        )
        if resume is not None:
            # Resume: from that run on (its rest first); an unknown id starts live.
            query = query.where(RUNS.c.run_id == resume.run_id)
            async with self._store.transaction() as conn:
                row = (await conn.execute(query)).first()
            if row is not None:
                return _Cursor(row.created_at, ""), resume
        query = query.where(RUNS.c.status.notin_(("pending", "running"))).order_by(
            RUNS.c.created_at.desc(), RUNS.c.run_id.desc()
        )
        async with self._store.transaction() as conn:
            row = (await conn.execute(query.limit(1))).first()
        return (_Cursor(row.created_at, row.run_id) if row is not None else None), None

    async def _next_run(
        self, tenant_id: str, thread_id: str, cursor: _Cursor | None, resume: _Resume | None
    ) -> Any:
        query = select(RUNS.c.run_id, RUNS.c.created_at).where(
            RUNS.c.thread_id == thread_id, RUNS.c.tenant_id == tenant_id
        )
        if cursor is not None:
            query = query.where(
                or_(
                    RUNS.c.created_at > cursor.created_at,
                    and_(RUNS.c.created_at == cursor.created_at, RUNS.c.run_id > cursor.run_id),
                )
            )
        query = query.order_by(RUNS.c.created_at, RUNS.c.run_id).limit(1)
        async with self._store.transaction() as conn:
            return (await conn.execute(query)).first()

    async def _thread_state_time(
        self, tenant_id: str, thread_id: str
    ) -> tuple[bool, datetime | None]:
        """Whether the thread still exists, and when its state last changed."""
        query = select(THREADS.c.state_updated_at).where(
            THREADS.c.thread_id == thread_id, THREADS.c.tenant_id == tenant_id
        )
        async with self._store.transaction() as conn:
            row = (await conn.execute(query)).first()
        return (False, None) if row is None else (True, row.state_updated_at)

    async def _state_update(
        self, principal: Principal, thread_id: str, seen: datetime | None, updated: datetime | None
    ) -> tuple[datetime | None, bytes | None]:
        """A state update made outside a run since ``seen`` (``updated``: the thread's
        state time now): runs change the state in the transaction that ends them, with the
        same time on the run's row."""
        if updated is None or (seen is not None and updated <= seen):
            return seen, None
        async with self._store.transaction() as conn:
            by_run = await conn.execute(
                select(RUNS.c.run_id).where(
                    RUNS.c.thread_id == thread_id,
                    RUNS.c.tenant_id == principal.tenant_id,
                    RUNS.c.updated_at == updated,
                )
            )
            if by_run.first() is not None:
                return updated, None
        state = await self._state(principal, thread_id)
        stamp = int(updated.timestamp() * 1000)
        return updated, encode_event(
            "state_update", {"state": state, "thread_id": thread_id}, f"state:{stamp}"
        )


def _wanted(name: str, data: bytes, modes: Sequence[ThreadStreamMode]) -> bool:
    if "run_modes" in modes:
        return True
    if "lifecycle" in modes and name == "metadata":
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            return False
        return isinstance(payload, dict) and "run_id" in payload and "attempt" in payload
    return False
