"""Orchestrator deployment: runs LangGraph graphs on checkpointed threads.

A thin Serve wrapper: the logic is ``runtime.runs.RunService``. Graph code reaches models
only through ``RouterChatModel``, whose calls go to the model router deployment.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from langchain_core.messages import AIMessageChunk
from ray import serve
from ray.serve.handle import DeploymentHandle

from deployments.handles import call, iterate
from deployments.metrics import OrchestratorMetrics
from graphs.registry import default_registry
from runtime.chat_model import RouterChatModel
from runtime.checkpointers import Checkpointers
from runtime.protocol import RunCreate, ThreadCreate
from runtime.records import Principal, RunStatus
from runtime.runs import RunOutcome, RunService
from runtime.settings import RuntimeSettings
from runtime.storage import MetadataStore
from runtime.timing import RunTimings
from runtime.types import ChatRequest, ChatResult


@serve.deployment(name="Orchestrator")
class OrchestratorDeployment:
    # Serve awaits async constructors (replica start-up waits for the store and saver).
    async def __init__(  # type: ignore[misc]
        self, router: DeploymentHandle, settings: RuntimeSettings
    ) -> None:
        self._router = router
        self._stream_router = router.options(stream=True)
        self._metrics = OrchestratorMetrics()
        self._store = MetadataStore(settings.storage)
        await self._store.setup()
        self._checkpointers = Checkpointers(settings.storage)
        saver = await self._checkpointers.setup()
        registry = default_registry()
        graphs = {
            spec.graph_id: spec.build(self._model).compile(checkpointer=saver)
            for spec in registry.specs()
        }
        self._runs = RunService(
            self._store,
            graphs,
            run_timeout_s=settings.serve.run_timeout_s,
            on_run_finished=self._record_run,
        )

    def _model(self, alias: str) -> RouterChatModel:
        return RouterChatModel(alias=alias, call=self._chat, stream_call=self._stream)

    async def _chat(self, request: ChatRequest) -> ChatResult:
        result: ChatResult = await call(self._router.chat.remote(request))
        return result

    async def _stream(self, request: ChatRequest) -> AsyncIterator[AIMessageChunk]:
        async for chunk in iterate(self._stream_router.stream.remote(request)):
            yield chunk

    def _record_run(
        self, graph_id: str, status: RunStatus, duration_ms: float, timings: RunTimings
    ) -> None:
        self._metrics.record_run(graph_id, status, duration_ms, timings.llm_calls)

    async def create_thread(self, principal: Principal, body: ThreadCreate) -> dict[str, Any]:
        return await self._runs.create_thread(principal, body)

    async def get_thread(self, principal: Principal, thread_id: str) -> dict[str, Any]:
        return await self._runs.get_thread(principal, thread_id)

    async def get_state(self, principal: Principal, thread_id: str) -> dict[str, Any]:
        return await self._runs.get_state(principal, thread_id)

    async def wait(
        self, principal: Principal, thread_id: str | None, body: RunCreate
    ) -> RunOutcome:
        return await self._runs.wait(principal, thread_id, body)

    async def stream(
        self, principal: Principal, thread_id: str | None, body: RunCreate
    ) -> AsyncIterator[bytes]:
        async for event in self._runs.stream(principal, thread_id, body):
            yield event

    async def ping(self) -> None:
        await self._store.ping()

    async def __del__(self) -> None:
        await self._checkpointers.close()
        await self._store.close()
