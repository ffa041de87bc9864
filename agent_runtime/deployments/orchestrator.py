"""Orchestrator deployment: runs LangGraph graphs on checkpointed threads.

A thin Serve wrapper over :class:`Orchestration` (``agent_runtime.replica.orchestration``),
which builds what the replica holds: :class:`RunService` (runs, their queue and streams),
:class:`ThreadService` (state, history, copies, deletes, TTL), the executor that runs each
run in a task of its own with a lease in the database, crons, webhooks and the online
judge. Graph code reaches models only through ``RouterChatModel``, whose calls this
wrapper sends to the router's handle.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from langchain_core.messages import AIMessageChunk
from ray import serve
from ray.serve.handle import DeploymentHandle

from agent_runtime.config.settings import RuntimeSettings
from agent_runtime.core.identity import stamp
from agent_runtime.core.records import CancelAction, Principal, RunRecord
from agent_runtime.core.types import ChatRequest, ChatResult, EmbeddingRequest, EmbeddingResult
from agent_runtime.deployments.served_app import load_served_app
from agent_runtime.protocol.agent_protocol import (
    CheckpointConfig,
    RunCreate,
    ThreadCreate,
    ThreadStateUpdate,
)
from agent_runtime.replica.handles import call, iterate
from agent_runtime.replica.health import ReplicaHealth
from agent_runtime.replica.orchestration import Orchestration
from agent_runtime.replica.orchestrator_metrics import OrchestratorMetrics
from agent_runtime.replica.replica_logs import install as install_logs
from agent_runtime.replica.replica_logs import logged
from agent_runtime.replica.single_node import alive_nodes, refuse_sqlite_across_nodes
from agent_runtime.runs.run_service import RunOutcome
from agent_runtime.runs.thread_stream import ThreadStreamMode


@serve.deployment(name="Orchestrator")
class OrchestratorDeployment:
    # Serve awaits async constructors (replica start-up waits for the store and saver).
    async def __init__(  # type: ignore[misc]
        self, router: DeploymentHandle, settings: RuntimeSettings
    ) -> None:
        install_logs(settings.serve.log_level)
        refuse_sqlite_across_nodes(settings.storage, alive_nodes())
        self._router = router
        self._stream_router = router.options(stream=True)
        app = load_served_app(settings)
        self._metrics = OrchestratorMetrics()
        self._orchestration = await Orchestration.build(
            settings,
            app.graphs.values(),
            self._chat,
            self._stream,
            observer=self._metrics,
            store_index=app.store_index,
            embed=self._embed,
        )
        self._orchestration.start()
        self._threads = self._orchestration.threads
        self._runs = self._orchestration.runs
        self._health = ReplicaHealth.from_settings(
            settings.serve, {"database": self._orchestration.store.ping}, [self._orchestration]
        )

    async def _chat(self, request: ChatRequest) -> ChatResult:
        result: ChatResult = await call(self._router.chat.remote(stamp(request)))
        return result

    async def _embed(self, request: EmbeddingRequest) -> EmbeddingResult:
        result: EmbeddingResult = await call(self._router.embed.remote(stamp(request)))
        return result

    async def _stream(self, request: ChatRequest) -> AsyncIterator[AIMessageChunk]:
        async for chunk in iterate(self._stream_router.stream.remote(stamp(request))):
            yield chunk

    # -- threads ------------------------------------------------------------------------
    @logged
    async def create_thread(self, principal: Principal, body: ThreadCreate) -> dict[str, Any]:
        return await self._threads.create(principal, body)

    @logged
    async def get_state(
        self,
        principal: Principal,
        thread_id: str,
        subgraphs: bool = False,
        checkpoint: CheckpointConfig | None = None,
    ) -> dict[str, Any]:
        return await self._threads.get_state(
            principal, thread_id, subgraphs=subgraphs, checkpoint=checkpoint
        )

    @logged
    async def update_state(
        self, principal: Principal, thread_id: str, body: ThreadStateUpdate
    ) -> dict[str, Any]:
        return await self._threads.update_state(principal, thread_id, body)

    @logged
    async def history(
        self, principal: Principal, thread_id: str, query: dict[str, Any]
    ) -> list[dict[str, Any]]:
        return await self._threads.history(principal, thread_id, **query)

    @logged
    async def copy_thread(self, principal: Principal, thread_id: str) -> dict[str, Any]:
        return await self._threads.copy(principal, thread_id)

    @logged
    async def delete_thread(self, principal: Principal, thread_id: str) -> None:
        await self._threads.delete(principal, thread_id)

    @logged
    async def prune_threads(
        self, principal: Principal, thread_ids: list[str], strategy: str
    ) -> int:
        return await self._threads.prune(principal, thread_ids, strategy)

    # -- runs ---------------------------------------------------------------------------
    @logged
    async def create_run(
        self, principal: Principal, thread_id: str | None, body: RunCreate
    ) -> RunRecord:
        started = await self._runs.start(principal, thread_id, body, "background")
        return started.run

    @logged
    async def wait(
        self, principal: Principal, thread_id: str | None, body: RunCreate
    ) -> RunOutcome:
        return await self._runs.wait(principal, thread_id, body)

    @logged
    async def join(self, principal: Principal, thread_id: str, run_id: str) -> RunOutcome:
        return await self._runs.join(principal, thread_id, run_id)

    @logged
    async def stream(
        self, principal: Principal, thread_id: str | None, body: RunCreate
    ) -> AsyncIterator[bytes]:
        async for event in self._runs.stream(principal, thread_id, body):
            yield event

    @logged
    async def join_stream(
        self,
        principal: Principal,
        thread_id: str,
        run_id: str,
        last_event_id: str | None,
        cancel_on_disconnect: bool,
    ) -> AsyncIterator[bytes]:
        async for event in self._runs.join_stream(
            principal,
            thread_id,
            run_id,
            last_event_id=last_event_id,
            cancel_on_disconnect=cancel_on_disconnect,
        ):
            yield event

    @logged
    async def join_thread_stream(
        self,
        principal: Principal,
        thread_id: str,
        last_event_id: str | None,
        modes: list[ThreadStreamMode],
    ) -> AsyncIterator[bytes]:
        async for event in self._orchestration.thread_streams.join(
            principal, thread_id, last_event_id=last_event_id, modes=modes
        ):
            yield event

    @logged
    async def cancel(
        self,
        principal: Principal,
        thread_id: str | None,
        run_ids: list[str] | None,
        action: CancelAction,
        status: str | None = None,
        wait: bool = False,
    ) -> list[RunRecord]:
        return await self._runs.cancel(
            principal, thread_id, run_ids, action=action, status=status, wait=wait
        )

    @logged
    async def delete_run(self, principal: Principal, thread_id: str, run_id: str) -> None:
        """A run in flight is rolled back (so it goes with what it wrote); a finished one
        is deleted with its checkpoints."""
        run = await self._runs.runs.get(principal.tenant_id, run_id, thread_id)
        if run.status in ("pending", "running"):
            await self._runs.cancel(principal, thread_id, [run_id], action="rollback")
            return
        await self._runs.runs.delete(principal.tenant_id, thread_id, run_id)
        await self._threads.forget_run(principal, thread_id, run_id)

    async def ping(self) -> None:
        await self._orchestration.store.ping()

    def record_autoscaling_stats(self) -> dict[str, float]:
        """Serve's autoscaling reads the runs here (:mod:`agent_runtime.replica.autoscaling`)."""
        return self._metrics.run_stats()

    async def check_health(self) -> None:
        """Serve's health check: see :mod:`agent_runtime.replica.health`."""
        await self._health.check()

    async def __del__(self) -> None:
        await self._orchestration.close()
