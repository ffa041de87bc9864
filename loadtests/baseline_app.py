"""The benchmark's baseline: the same LangGraph graph behind one plain FastAPI process, no Ray.

``make bench`` compares the runtime's throughput with this app. It serves the two routes
the benchmark drives, with the runtime's request and response shapes:

* ``POST /threads`` -> a ``Thread`` body;
* ``POST /threads/{thread_id}/runs/wait`` -> the run's final values.

The graphs are the registry's (``graphs.registry``), compiled with LangGraph's
``InMemorySaver``; their models are ``ChatOpenAI`` clients of an OpenAI-compatible provider
(the fake one in the benchmark). There is no auth, rate limit, run bookkeeping or durable
storage: that is what the runtime adds, and what the comparison prices.

    python -m loadtests.baseline_app --port 8001 --provider-url http://127.0.0.1:8002/v1
    python -m loadtests.baseline_app --port 8002 --fake-provider --latency-ms 50

The second form serves the fake provider (``agent_runtime.fake.provider_app``) on its own, so the
benchmark can put one provider, outside both systems, behind the runtime and the baseline.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig
from langchain_openai import ChatOpenAI
from langgraph.checkpoint.memory import InMemorySaver
from pydantic import SecretStr

from agent_runtime.config.fake_provider_settings import FakeProviderSettings
from agent_runtime.execution.graph_registry import GraphRegistry, ModelFactory
from agent_runtime.fake.provider_app import create_fake_provider_app
from agent_runtime.protocol.agent_protocol import RunCreate, ThreadCreate, default_assistant_id
from agent_runtime.protocol.agent_responses import Thread, dumps
from graphs.registry import default_registry

# Provider model per alias, as the runtime's default fallback chains start.
MODEL_FOR_ALIAS = {"fast": "fake-fast", "smart": "fake-smart"}
PROVIDER_TIMEOUT_S = 30.0
RECURSION_LIMIT = 25


def openai_models(
    base_url: str,
    *,
    api_key: str = "fake-key",
    timeout_s: float = PROVIDER_TIMEOUT_S,
    http_async_client: httpx.AsyncClient | None = None,
) -> ModelFactory:
    """Alias -> ``ChatOpenAI`` of the alias's provider model, without retries."""

    def factory(alias: str) -> BaseChatModel:
        return ChatOpenAI(
            model=MODEL_FOR_ALIAS.get(alias, alias),
            base_url=base_url,
            api_key=SecretStr(api_key),
            max_retries=0,
            timeout=timeout_s,
            http_async_client=http_async_client,
        )

    return factory


def create_baseline_app(models: ModelFactory, registry: GraphRegistry | None = None) -> FastAPI:
    """The baseline app: every registry graph compiled with one ``InMemorySaver``."""
    registry = registry or default_registry()
    saver = InMemorySaver()
    graphs = {
        spec.graph_id: spec.build(models).compile(checkpointer=saver) for spec in registry.specs()
    }
    by_assistant = {default_assistant_id(graph_id): graph_id for graph_id in graphs}
    # Threads live as long as the process, as the InMemorySaver's checkpoints do.
    threads: dict[str, Thread] = {}
    app = FastAPI(title="Baseline: LangGraph in one FastAPI process", docs_url=None, redoc_url=None)

    def not_found(detail: str) -> JSONResponse:
        return JSONResponse({"detail": detail, "error": "NotFound"}, status_code=404)

    @app.get("/ok")
    async def ok() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/threads", response_model=None)
    async def create_thread(body: ThreadCreate | None = None) -> dict[str, Any]:
        body = body or ThreadCreate()
        now = datetime.now(UTC)
        thread = Thread(
            thread_id=body.thread_id or str(uuid.uuid4()),
            created_at=now,
            updated_at=now,
            state_updated_at=now,
            metadata=body.metadata,
            status="idle",
        )
        threads.setdefault(thread.thread_id, thread)
        return threads[thread.thread_id].wire()

    @app.post("/threads/{thread_id}/runs/wait", response_model=None)
    async def wait_run(thread_id: str, body: RunCreate) -> Response:
        if thread_id not in threads:
            return not_found(f"thread {thread_id} not found")
        graph_id = by_assistant.get(body.assistant_id, body.assistant_id)
        if graph_id not in graphs:
            return not_found(f"assistant {body.assistant_id!r} not found")
        config: RunnableConfig = {
            "configurable": {"thread_id": thread_id},
            "recursion_limit": RECURSION_LIMIT,
        }
        values = await graphs[graph_id].ainvoke(body.input, config)
        return Response(dumps(values), media_type="application/json")

    return app


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    role = parser.add_mutually_exclusive_group(required=True)
    role.add_argument("--provider-url", help="OpenAI-compatible base URL (ends in /v1)")
    role.add_argument(
        "--fake-provider", action="store_true", help="serve the fake provider instead"
    )
    parser.add_argument(
        "--latency-ms", type=float, default=50.0, help="fake provider: fixed latency per call"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.fake_provider:
        settings = FakeProviderSettings(
            latency_ms=args.latency_ms,
            jitter_ms=0,
            fail_rate=0,
            failing_models=[],
            hanging_models=[],
        )
        app = create_fake_provider_app(settings)
    else:
        app = create_baseline_app(openai_models(args.provider_url))
    # One process, one event loop; access logs off, as the runtime's Serve apps have them.
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
