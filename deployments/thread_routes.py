"""HTTP routes of threads and runs (Agent Protocol shapes); the work happens in the orchestrator."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Body
from fastapi.responses import Response, StreamingResponse

from deployments.api import CurrentPrincipal, ServicesDep
from deployments.handles import call, iterate
from runtime.protocol import RunCreate, ThreadCreate
from runtime.records import Principal
from runtime.runs import RunOutcome

threads = APIRouter(tags=["threads"])


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
