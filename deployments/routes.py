"""HTTP routes: liveness and health, assistants, threads and runs (Agent Protocol shapes)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse, Response, StreamingResponse

from deployments.api import CurrentPrincipal, ServicesDep
from deployments.handles import call, iterate
from runtime.errors import NotFound
from runtime.protocol import RunCreate, ThreadCreate, default_assistant_id
from runtime.records import Principal
from runtime.runs import RunOutcome

system = APIRouter(tags=["system"])
assistants = APIRouter(tags=["assistants"])
threads = APIRouter(tags=["threads"])

HEALTH_TIMEOUT_S = 3.0
# The registry is fixed for a deployment's life, so assistants share one creation time.
_EPOCH = datetime(2026, 1, 1, tzinfo=UTC).isoformat()


@system.get("/ok")
async def ok() -> dict[str, bool]:
    """Liveness: the ingress answers."""
    return {"ok": True}


@system.get("/health")
async def health(services: ServicesDep) -> JSONResponse:
    """Readiness of every dependency; 503 naming the parts that are down."""

    async def check(name: str, probe: Any) -> tuple[str, str]:
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT_S):
                await probe
            return name, "ok"
        except Exception as error:  # every failure is a "down" verdict, named below
            return name, f"down ({type(error).__name__})"

    probes = [
        check("database", services.store.ping()),
        check("orchestrator", call(services.orchestrator.ping.remote())),
        check("router", call(services.router.ping.remote())),
    ]
    if services.settings.limits.redis_url is not None:
        probes.append(check("redis", services.limiter.ping()))
    results = dict(await asyncio.gather(*probes))
    if services.settings.limits.redis_url is None:
        results["redis"] = "not configured (in-process rate limiter)"
    down = sorted(k for k, v in results.items() if v.startswith("down"))
    status = 503 if down else 200
    body: dict[str, Any] = {"status": "unavailable" if down else "ok", "checks": results}
    if down:
        body["detail"] = f"unavailable: {', '.join(down)}"
    return JSONResponse(body, status_code=status)


def _assistant(graph_id: str, description: str) -> dict[str, Any]:
    return {
        "assistant_id": default_assistant_id(graph_id),
        "graph_id": graph_id,
        "name": graph_id,
        "description": description,
        "config": {},
        "context": {},
        "metadata": {"created_by": "system"},
        "version": 1,
        "created_at": _EPOCH,
        "updated_at": _EPOCH,
    }


@assistants.get("/assistants/{assistant_id}")
async def get_assistant(
    assistant_id: str, services: ServicesDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    for spec in services.graphs.specs():
        if assistant_id in (spec.graph_id, default_assistant_id(spec.graph_id)):
            return _assistant(spec.graph_id, spec.description)
    raise NotFound(f"assistant {assistant_id!r} not found")


@assistants.post("/assistants/search")
async def search_assistants(
    services: ServicesDep,
    principal: CurrentPrincipal,
    body: Annotated[dict[str, Any] | None, Body()] = None,
) -> list[dict[str, Any]]:
    query = body or {}
    graph_filter = query.get("graph_id")
    limit = int(query.get("limit", 10))
    offset = int(query.get("offset", 0))
    found = [
        _assistant(spec.graph_id, spec.description)
        for spec in services.graphs.specs()
        if graph_filter in (None, spec.graph_id)
    ]
    return found[offset : offset + limit]


@threads.post("/threads")
async def create_thread(
    services: ServicesDep,
    principal: CurrentPrincipal,
    body: Annotated[ThreadCreate | None, Body()] = None,
) -> dict[str, Any]:
    thread: dict[str, Any] = await call(
        services.orchestrator.create_thread.remote(principal, body or ThreadCreate())
    )
    return thread


@threads.get("/threads/{thread_id}")
async def get_thread(
    thread_id: str, services: ServicesDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    thread: dict[str, Any] = await call(
        services.orchestrator.get_thread.remote(principal, thread_id)
    )
    return thread


@threads.get("/threads/{thread_id}/state")
async def get_thread_state(
    thread_id: str, services: ServicesDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    state: dict[str, Any] = await call(services.orchestrator.get_state.remote(principal, thread_id))
    return state


async def _wait(
    services: ServicesDep, principal: Principal, thread_id: str | None, body: RunCreate
) -> Response:
    start = time.perf_counter()
    outcome: RunOutcome = await call(services.orchestrator.wait.remote(principal, thread_id, body))
    hop_ms = (time.perf_counter() - start) * 1000
    timing = outcome.timings.server_timing(orchestrator=hop_ms, graph=outcome.graph_ms)
    return Response(
        outcome.body,
        media_type="application/json",
        headers={
            "Server-Timing": timing,
            "Content-Location": f"/threads/{outcome.thread_id}/runs/{outcome.run_id}",
        },
    )


@threads.post("/threads/{thread_id}/runs/wait")
async def wait_run(
    thread_id: str, body: RunCreate, services: ServicesDep, principal: CurrentPrincipal
) -> Response:
    return await _wait(services, principal, thread_id, body)


@threads.post("/runs/wait")
async def wait_stateless_run(
    body: RunCreate, services: ServicesDep, principal: CurrentPrincipal
) -> Response:
    return await _wait(services, principal, None, body)


async def _stream(
    services: ServicesDep, principal: Principal, thread_id: str | None, body: RunCreate
) -> StreamingResponse:
    events = iterate(
        services.orchestrator.options(stream=True).stream.remote(principal, thread_id, body)
    )
    # The first event (metadata) comes after the run is recorded: waiting for it turns a
    # missing thread or a busy one into a proper 404/409 instead of a broken stream.
    first: bytes = await anext(events)

    async def body_iter() -> AsyncIterator[bytes]:
        yield first
        async for event in events:
            yield event

    return StreamingResponse(
        body_iter(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@threads.post("/threads/{thread_id}/runs/stream")
async def stream_run(
    thread_id: str, body: RunCreate, services: ServicesDep, principal: CurrentPrincipal
) -> StreamingResponse:
    return await _stream(services, principal, thread_id, body)


@threads.post("/runs/stream")
async def stream_stateless_run(
    body: RunCreate, services: ServicesDep, principal: CurrentPrincipal
) -> StreamingResponse:
    return await _stream(services, principal, None, body)
