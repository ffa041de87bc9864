"""Thread operations that touch checkpoints or graphs: state, history, updates, copies,
deletes, pruning and the TTL sweeper. Plain row reads and searches need neither and are
answered by :class:`agent_runtime.runs.thread_rows.ThreadStore` (the ingress calls it directly).

Thread ids are per tenant: every operation runs in its principal's
:func:`~agent_runtime.execution.tenant_context.tenant_scope`, so the graphs' checkpointer
and store reach that tenant's checkpoints and items only."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.errors import InvalidUpdateError
from langgraph.pregel import Pregel
from langgraph.types import StateUpdate

from agent_runtime.core.errors import (
    AgentRuntimeError,
    BadRequest,
    DependencyUnavailable,
    NotFound,
)
from agent_runtime.core.records import Principal, RunRecord, ThreadRecord, ThreadStatus
from agent_runtime.db.driver_errors import driver_error
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.db.tables import utcnow
from agent_runtime.execution import checkpoint_ops
from agent_runtime.execution.item_store import ItemStores
from agent_runtime.execution.tenant_context import tenant_scope
from agent_runtime.protocol.agent_protocol import (
    CheckpointConfig,
    Superstep,
    ThreadCreate,
    ThreadStateUpdate,
)
from agent_runtime.protocol.agent_responses import state_to_wire, thread_interrupts, thread_to_wire
from agent_runtime.protocol.sse import to_jsonable
from agent_runtime.runs.thread_rows import ThreadStore, ttl_of
from agent_runtime.user_app.served_graphs import ServedGraphs
from agent_runtime.user_app.server_runtime import THREADS_READ, THREADS_UPDATE

logger = logging.getLogger(__name__)

NO_GRAPH = (
    "Thread '{thread_id}' has no assigned graph ID. This usually occurs when no runs have "
    "been made on this particular thread. This operation requires a graph ID. Please ensure "
    "a run has been made for the thread or manually update the thread metadata (by setting "
    "the 'graph_id' field) before running this operation."
)


# What a state update that does not fit the graph raises: an unknown node, an ambiguous
# update, or values its reducers reject (``{"messages": 5}`` is a NotImplementedError).
UPDATE_ERRORS = (ValueError, KeyError, NotImplementedError, InvalidUpdateError)


def thread_namespace(thread_id: str) -> tuple[str, str]:
    """Where graphs keep store items that belong to one thread: they go with it."""
    return ("threads", thread_id)


def empty_state(thread_id: str) -> dict[str, Any]:
    """The state of a thread no run has touched yet."""
    return {
        "values": {},
        "next": [],
        "tasks": [],
        "metadata": None,
        "created_at": None,
        "checkpoint": None,
        "parent_checkpoint": None,
        "interrupts": [],
        "checkpoint_id": None,
        "parent_checkpoint_id": None,
    }


class ThreadService:
    def __init__(
        self,
        store: MetadataStore,
        threads: ThreadStore,
        graphs: ServedGraphs,
        saver: Any,
        *,
        default_ttl: tuple[str, float] | None = None,
        stop_runs: Callable[[Sequence[str]], None] | None = None,
        items: ItemStores | None = None,
        checkpoint_timeout_s: float = 10.0,
        on_change: Callable[[str], None] | None = None,
    ) -> None:
        """``on_change(thread_id)``: after a thread's state changed outside a run, or it
        was deleted (committed): its streams are told."""
        self._store = store
        self._threads = threads
        self._graphs = graphs
        self._saver = saver
        self._default_ttl = default_ttl
        self._stop_runs = stop_runs
        self._items = items
        # How long a thread's delete may wait for its checkpoints (AGENT_DB_TIMEOUT_S).
        self._checkpoint_timeout_s = checkpoint_timeout_s
        self._on_change = on_change

    # -- create -------------------------------------------------------------------------
    async def create(self, principal: Principal, body: ThreadCreate) -> dict[str, Any]:
        ttl = ttl_of(body.ttl, self._default_ttl)
        record = await self._store.create_thread(
            principal.tenant_id,
            thread_id=body.thread_id,
            metadata=body.metadata,
            graph_id=body.graph_id,
            if_exists=body.if_exists,
            ttl=ttl,
        )
        if body.supersteps:
            with tenant_scope(principal.tenant_id):
                record = await self._apply_supersteps(principal, record, body.supersteps)
        return thread_to_wire(record)

    async def _apply_supersteps(
        self, principal: Principal, record: ThreadRecord, supersteps: list[Superstep]
    ) -> ThreadRecord:
        graph_id = self._graph_id(record)
        config: RunnableConfig = {"configurable": {"thread_id": record.thread_id}}
        steps = [
            [StateUpdate(cast(Any, u.values), u.as_node, u.task_id) for u in step.updates]
            for step in supersteps
        ]
        async with self._graphs.open(graph_id, config, THREADS_UPDATE) as graph:
            try:
                await graph.abulk_update_state(config, steps)
            except UPDATE_ERRORS as exc:
                raise BadRequest(
                    f"Thread {record.thread_id} was created, but there were problems "
                    f"updating the state: {exc}"
                ) from exc
            await self._store_state(principal, record, graph)
        return await self._store.get_thread(principal.tenant_id, record.thread_id)

    # -- state --------------------------------------------------------------------------
    def _graph_id(self, record: ThreadRecord) -> str:
        """The id of the served graph the thread runs; else 400."""
        graph_id = record.graph_id or record.metadata.get("graph_id")
        if not isinstance(graph_id, str) or graph_id not in self._graphs:
            raise BadRequest(NO_GRAPH.format(thread_id=record.thread_id))
        return graph_id

    async def get_state(
        self,
        principal: Principal,
        thread_id: str,
        *,
        subgraphs: bool = False,
        checkpoint: CheckpointConfig | None = None,
    ) -> dict[str, Any]:
        with tenant_scope(principal.tenant_id):
            return await self._get_state(principal, thread_id, subgraphs, checkpoint)

    async def _get_state(
        self,
        principal: Principal,
        thread_id: str,
        subgraphs: bool,
        checkpoint: CheckpointConfig | None,
    ) -> dict[str, Any]:
        record = await self._store.get_thread(principal.tenant_id, thread_id)
        try:
            graph_id = self._graph_id(record)
        except BadRequest:
            return empty_state(thread_id)
        configurable: dict[str, Any] = {"thread_id": thread_id, "checkpoint_ns": ""}
        if checkpoint is not None:
            configurable.update(checkpoint.model_dump(exclude_none=True))
        configurable["thread_id"] = thread_id
        config: RunnableConfig = {"configurable": configurable}
        async with self._graphs.open(graph_id, config, THREADS_READ) as graph:
            snapshot = await graph.aget_state(config, subgraphs=subgraphs)
        if snapshot.created_at is None and checkpoint is None:
            return empty_state(thread_id)
        return state_to_wire(snapshot)

    async def update_state(
        self, principal: Principal, thread_id: str, body: ThreadStateUpdate
    ) -> dict[str, Any]:
        with tenant_scope(principal.tenant_id):
            return await self._update_state(principal, thread_id, body)

    async def _update_state(
        self, principal: Principal, thread_id: str, body: ThreadStateUpdate
    ) -> dict[str, Any]:
        record = await self._threads.require_idle(principal.tenant_id, thread_id)
        graph_id = self._graph_id(record)
        configurable: dict[str, Any] = {"thread_id": thread_id, "checkpoint_ns": ""}
        if body.checkpoint_id:
            configurable["checkpoint_id"] = body.checkpoint_id
        if body.checkpoint is not None:
            configurable.update(body.checkpoint.model_dump(exclude_none=True))
        configurable["thread_id"] = thread_id
        config: RunnableConfig = {"configurable": configurable}
        async with self._graphs.open(graph_id, config, THREADS_UPDATE) as graph:
            try:
                written = await graph.aupdate_state(config, body.values, as_node=body.as_node)
            except UPDATE_ERRORS as exc:
                # LangGraph's answer to an unknown node or an ambiguous update.
                raise BadRequest(str(exc)) from exc
            await self._store_state(principal, record, graph)
        checkpoint = dict(written.get("configurable") or {})
        return {
            "checkpoint": checkpoint,
            "configurable": checkpoint,
            "checkpoint_id": checkpoint.get("checkpoint_id"),
        }

    async def _store_state(
        self, principal: Principal, record: ThreadRecord, graph: Pregel[Any, Any]
    ) -> None:
        snapshot = await graph.aget_state({"configurable": {"thread_id": record.thread_id}})
        interrupts = thread_interrupts(snapshot)
        status: ThreadStatus = "interrupted" if snapshot.next or interrupts else "idle"
        await self._threads.set_state(
            principal.tenant_id,
            record.thread_id,
            values=to_jsonable(snapshot.values),
            interrupts=interrupts,
            status=status,
        )
        if self._on_change is not None:
            self._on_change(record.thread_id)

    async def history(
        self,
        principal: Principal,
        thread_id: str,
        *,
        limit: int = 10,
        before: str | dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        checkpoint: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        record = await self._store.get_thread(principal.tenant_id, thread_id)
        try:
            graph_id = self._graph_id(record)
        except BadRequest:
            return []
        configurable = {"checkpoint_ns": "", **(checkpoint or {}), "thread_id": thread_id}
        before_config: RunnableConfig | None = None
        if isinstance(before, str):
            before_config = {"configurable": {"checkpoint_id": before}}
        elif isinstance(before, dict):
            before_config = {"configurable": before.get("configurable", before)}
        config: RunnableConfig = {"configurable": configurable}
        with tenant_scope(principal.tenant_id):
            async with self._graphs.open(graph_id, config, THREADS_READ) as graph:
                return [
                    state_to_wire(snapshot)
                    async for snapshot in graph.aget_state_history(
                        config, limit=limit, before=before_config, filter=metadata or None
                    )
                ]

    # -- copy, delete, prune ------------------------------------------------------------
    async def copy(self, principal: Principal, thread_id: str) -> dict[str, Any]:
        tenant_id = principal.tenant_id
        copy = await self._threads.copy_row(tenant_id, thread_id)
        try:
            await checkpoint_ops.copy_thread(self._saver, tenant_id, thread_id, copy.thread_id)
        except Exception:
            await self._threads.delete_cascade(tenant_id, copy.thread_id)
            raise
        return thread_to_wire(copy)

    async def delete(self, principal: Principal, thread_id: str) -> None:
        """The thread with everything it keeps, or, when a part cannot go, the thread stays.

        One transaction deletes the row, its runs and crons; inside it, before it commits,
        go the thread's checkpoints (one transaction of their own) and the store items kept
        for it (namespace ``("threads", <thread id>, ...)``). If they cannot be deleted,
        the row stays and DependencyUnavailable (503) says so: asked again (the client,
        the TTL sweeper's next pass), the delete starts over. A thread made again with
        the id therefore never finds the old one's state. Runs in flight are told to stop
        after the commit; what they still write goes with them
        (:meth:`discard_vanished_run`)."""
        tenant_id = principal.tenant_id

        async def purge() -> None:
            try:
                await checkpoint_ops.delete_thread(
                    self._saver, tenant_id, thread_id, timeout_s=self._checkpoint_timeout_s
                )
                if self._items is not None:
                    await self._items.delete_namespace(tenant_id, thread_namespace(thread_id))
            except AgentRuntimeError:
                raise
            except Exception as exc:
                cause = driver_error(exc)
                if cause is None:
                    raise
                logger.warning(
                    "thread %s kept: its checkpoints could not be deleted (%s: %s)",
                    thread_id,
                    type(cause).__name__,
                    cause,
                )
                raise DependencyUnavailable(
                    "the thread's checkpoints could not be deleted, so the thread was kept; "
                    "try again"
                ) from exc

        stopped = await self._threads.delete_cascade(tenant_id, thread_id, purge)
        if self._on_change is not None:
            self._on_change(thread_id)
        if stopped and self._stop_runs is not None:
            self._stop_runs(stopped)

    async def discard_vanished_run(self, run: RunRecord) -> None:
        """A run whose row was deleted while it ran (its thread deleted, or the run rolled
        back) has ended: remove the checkpoints it wrote, the late ones included. Only
        that run's: a thread made again with the same id keeps its own."""
        if run.thread_id is None:
            return
        await checkpoint_ops.delete_run_checkpoints(
            self._saver, run.tenant_id, run.thread_id, run.run_id
        )

    async def forget_run(self, principal: Principal, thread_id: str, run_id: str) -> None:
        """After a finished run's row is deleted: drop the checkpoints it wrote (as the
        Platform does) and bring the thread's stored state back in line with them."""
        # The tenant's thread first: another tenant's id must not reach its checkpoints.
        tenant_id = principal.tenant_id
        record = await self._store.get_thread(tenant_id, thread_id)
        await checkpoint_ops.delete_run_checkpoints(self._saver, tenant_id, thread_id, run_id)
        if record.status != "busy":
            try:
                graph_id = self._graph_id(record)
            except BadRequest:
                return
            config: RunnableConfig = {"configurable": {"thread_id": thread_id}}
            with tenant_scope(tenant_id):
                async with self._graphs.open(graph_id, config, THREADS_READ) as graph:
                    await self._store_state(principal, record, graph)

    async def prune(self, principal: Principal, thread_ids: Sequence[str], strategy: str) -> int:
        """``delete``: remove the threads; ``keep_latest``: keep only their newest state.
        Unknown and other tenants' ids are skipped; returns how many were pruned."""
        pruned = 0
        for thread_id in thread_ids:
            try:
                if strategy == "delete":
                    await self.delete(principal, thread_id)
                else:
                    await self._store.get_thread(principal.tenant_id, thread_id)
                    await checkpoint_ops.prune(
                        self._saver, principal.tenant_id, [thread_id], "keep_latest"
                    )
            except AgentRuntimeError as exc:
                logger.debug("prune skipped thread %s: %s", thread_id, exc.message)
                continue
            pruned += 1
        return pruned

    async def sweep(self, limit: int = 100) -> int:
        """Apply the TTL of threads idle past it; returns how many were swept. A thread
        that cannot be swept now (its checkpoints cannot be deleted) is logged and tried
        again on the next pass."""
        swept = 0
        for tenant_id, thread_id in await self._threads.expired(utcnow(), limit):
            principal = Principal(tenant_id=tenant_id, key_id="ttl-sweeper")
            try:
                record = await self._store.get_thread(tenant_id, thread_id)
                if record.ttl_strategy == "keep_latest":
                    await checkpoint_ops.prune(self._saver, tenant_id, [thread_id], "keep_latest")
                    await self._store.update_thread(
                        tenant_id, thread_id, expires_at=_next_expiry(record)
                    )
                else:
                    await self.delete(principal, thread_id)
            except NotFound:
                # Gone since expired() listed it: another replica's sweep or its owner.
                continue
            except AgentRuntimeError as exc:
                logger.warning("TTL sweep of thread %s failed: %s", thread_id, exc.message)
                continue
            swept += 1
        return swept


def _next_expiry(record: ThreadRecord) -> Any:
    return utcnow() + timedelta(minutes=record.ttl_minutes or 0)
