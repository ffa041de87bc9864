"""HTTP routes of runs: on a thread and stateless; background, wait, stream, join, cancel.

Creating, waiting, streaming, joining and cancelling go to the orchestrator (which runs
the graphs); listing, reading and deleting run rows are answered here from the database.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Body, Header, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from agent_runtime.api.deps import ReadPrincipal, RunPrincipal, Services, ServicesDep
from agent_runtime.api.limit_headers import check_request_limit
from agent_runtime.api.routes.thread_routes import thread_uuid
from agent_runtime.api.run_headers import configurable_headers
from agent_runtime.core.errors import InvalidRequest
from agent_runtime.core.records import Principal, RunRecord, RunStatus
from agent_runtime.execution.run_trace import RunTrace
from agent_runtime.protocol.agent_protocol import (
    MAX_OFFSET,
    RunCreate,
    RunsCancel,
    normalise_stream_modes,
    require_uuid,
)
from agent_runtime.protocol.agent_responses import run_to_wire
from agent_runtime.protocol.sse import (
    SSE_MEDIA_TYPE,
    event_number,
    run_location_headers,
    sse_headers,
    with_heartbeats,
)
from agent_runtime.replica.handles import call, iterate
from agent_runtime.runs.run_service import RunOutcome
from agent_runtime.runs.thread_stream import parse_modes

runs = APIRouter(tags=["runs"])

INVALID_RUN = "Invalid run ID: must be a UUID"
Action = Literal["interrupt", "rollback"]


def run_uuid(run_id: str) -> str:
    return require_uuid(run_id, INVALID_RUN)


def _flag(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1", "yes")


RunHandler = Callable[[Services, Principal, str | None, RunCreate], Awaitable[Response]]


def _with_headers(body: RunCreate, request: Request, services: Services) -> RunCreate:
    return body.with_headers(configurable_headers(request.headers, services.settings.http))


def _on_thread_and_stateless(suffix: str, handler: RunHandler, verb: str) -> None:
    """Route ``POST /threads/{thread_id}/runs{suffix}`` (route ``{verb}_run``) and the
    stateless ``POST /runs{suffix}`` (``{verb}_stateless_run``, no thread) to ``handler``."""

    async def on_thread(
        thread_id: str,
        body: RunCreate,
        request: Request,
        services: ServicesDep,
        principal: RunPrincipal,
    ) -> Response:
        body = _with_headers(body, request, services)
        return await handler(services, principal, thread_uuid(thread_id), body)

    async def stateless(
        body: RunCreate, request: Request, services: ServicesDep, principal: RunPrincipal
    ) -> Response:
        return await handler(services, principal, None, _with_headers(body, request, services))

    runs.add_api_route(
        f"/threads/{{thread_id}}/runs{suffix}", on_thread, methods=["POST"], name=f"{verb}_run"
    )
    runs.add_api_route(f"/runs{suffix}", stateless, methods=["POST"], name=f"{verb}_stateless_run")


# -- create ------------------------------------------------------------------------------
async def _create(
    services: Services, principal: Principal, thread_id: str | None, body: RunCreate
) -> JSONResponse:
    run: RunRecord = await call(services.orchestrator.create_run.remote(principal, thread_id, body))
    return JSONResponse(
        run_to_wire(run), headers=run_location_headers(run.run_id, thread_id, "create")
    )


_on_thread_and_stateless("", _create, "create")


@runs.post("/runs/batch")
async def create_run_batch(
    body: list[RunCreate], request: Request, services: ServicesDep, principal: RunPrincipal
) -> list[dict[str, Any]]:
    """Background runs, one per item, as that many ``POST /runs`` would create them: at
    most ``AGENT_RUN_BATCH_MAX`` (422 past it, nothing started), each costing one request
    of the key's bucket (429 ``requests_per_key`` when they do not all fit)."""
    cap = services.settings.runs.run_batch_max
    if len(body) > cap:
        raise InvalidRequest(
            f"a batch holds at most {cap} runs (AGENT_RUN_BATCH_MAX); this one has "
            f"{len(body)}: send it in smaller batches",
            field="body",
            maximum=cap,
            requested=len(body),
        )
    if len(body) > 1:
        assert services.requests is not None, "Services.__post_init__ builds it"
        await check_request_limit(
            request, services.requests, services.metrics, principal, batch=len(body)
        )
    created = []
    for item in body:
        item = _with_headers(item, request, services)
        run: RunRecord = await call(services.orchestrator.create_run.remote(principal, None, item))
        created.append(run_to_wire(run))
    return created


# -- wait --------------------------------------------------------------------------------
def _wait_response(outcome: RunOutcome, hop_ms: float, thread_id: str | None) -> Response:
    timing = outcome.timings.server_timing(orchestrator=hop_ms, graph=outcome.graph_ms)
    # A stateless run's headers name its temporary thread, as on Platform.
    headers = run_location_headers(outcome.run_id, outcome.thread_id or thread_id, "wait")
    headers["Server-Timing"] = timing
    return Response(outcome.body, media_type="application/json", headers=headers)


async def _wait(
    services: Services, principal: Principal, thread_id: str | None, body: RunCreate
) -> Response:
    start = time.perf_counter()
    outcome: RunOutcome = await call(services.orchestrator.wait.remote(principal, thread_id, body))
    return _wait_response(outcome, (time.perf_counter() - start) * 1000, thread_id)


_on_thread_and_stateless("/wait", _wait, "wait")


@runs.get("/threads/{thread_id}/runs/{run_id}/join")
async def join_run(
    thread_id: str, run_id: str, services: ServicesDep, principal: ReadPrincipal
) -> Response:
    start = time.perf_counter()
    outcome: RunOutcome = await call(
        services.orchestrator.join.remote(principal, thread_uuid(thread_id), run_uuid(run_id))
    )
    return _wait_response(outcome, (time.perf_counter() - start) * 1000, thread_id)


# -- streams -----------------------------------------------------------------------------
async def _sse(
    events: AsyncIterator[bytes], headers: dict[str, str], modes: list[str] | None = None
) -> StreamingResponse:
    # The first frame comes once the run is recorded: waiting for it turns a missing
    # thread or a rejected double-text into a proper 404/409 instead of a broken stream.
    first: bytes | None = await anext(events, None)

    async def body() -> AsyncIterator[bytes]:
        if first is not None and _wanted(first, modes):
            yield first
        async for event in events:
            if _wanted(event, modes):
                yield event

    return StreamingResponse(
        with_heartbeats(body()),
        media_type=SSE_MEDIA_TYPE,
        headers={**sse_headers(), **headers},
    )


def _wanted(frame: bytes, modes: list[str] | None) -> bool:
    """``join_stream(stream_mode=...)`` narrows a run's events to those modes."""
    if not modes:
        return True
    name = frame.split(b"\r\n", 1)[0].removeprefix(b"event: ").decode()
    mode = name.split("|", 1)[0].split("/", 1)[0]
    return (
        mode in ("metadata", "error")
        or mode in modes
        or (mode == "messages" and "messages-tuple" in modes)
    )


async def _stream(
    services: Services, principal: Principal, thread_id: str | None, body: RunCreate
) -> StreamingResponse:
    events = iterate(
        services.orchestrator.options(stream=True).stream.remote(principal, thread_id, body)
    )
    first: bytes | None = await anext(events, None)
    run_id = _run_id_of(first)

    async def replay() -> AsyncIterator[bytes]:
        if first is not None:
            yield first
        async for event in events:
            yield event

    headers = run_location_headers(run_id, thread_id, "stream") if run_id else {}
    return await _sse(replay(), headers)


def _run_id_of(frame: bytes | None) -> str | None:
    """The run id in a stream's first (``metadata``) event."""
    if not frame or not frame.startswith(b"event: metadata"):
        return None
    for line in frame.split(b"\r\n"):
        if line.startswith(b"data: "):
            data = orjson.loads(line.removeprefix(b"data: "))
            return str(data.get("run_id")) if isinstance(data, dict) else None
    return None


_on_thread_and_stateless("/stream", _stream, "stream")


@runs.get("/threads/{thread_id}/runs/{run_id}/stream")
async def join_run_stream(
    thread_id: str,
    run_id: str,
    services: ServicesDep,
    principal: RunPrincipal,
    last_event_id: Annotated[str | None, Header()] = None,
    cancel_on_disconnect: str | None = None,
    stream_mode: Annotated[list[str] | None, Query()] = None,
) -> StreamingResponse:
    thread_id, run_id = thread_uuid(thread_id), run_uuid(run_id)
    if last_event_id and event_number(last_event_id) is None:
        raise InvalidRequest(
            "Last-Event-ID must be the id of an event of this run's stream (a number)",
            field="Last-Event-ID",
        )
    wanted = _join_modes(stream_mode)
    modes = normalise_stream_modes(wanted) if wanted else None
    events = iterate(
        services.orchestrator.options(stream=True).join_stream.remote(
            principal, thread_id, run_id, last_event_id, _flag(cancel_on_disconnect)
        )
    )
    return await _sse(events, run_location_headers(run_id, thread_id, "stream"), modes)


@runs.get("/threads/{thread_id}/stream")
async def join_thread_stream(
    thread_id: str,
    services: ServicesDep,
    principal: ReadPrincipal,
    last_event_id: Annotated[str | None, Header()] = None,
    stream_modes: Annotated[list[str] | None, Query()] = None,
    stream_mode: Annotated[list[str] | None, Query()] = None,
) -> StreamingResponse:
    """Every run on the thread as it runs, then each new one, until the client leaves
    (``agent_runtime/runs/thread_stream.py``). ``stream_modes`` as Platform reads it; the SDK's
    ``threads.join_stream(stream_mode=...)`` sends ``stream_mode``, honoured too."""
    thread_id = thread_uuid(thread_id)
    modes = parse_modes([*(stream_modes or []), *_join_modes(stream_mode)])
    await services.store.get_thread(principal.tenant_id, thread_id)  # 404 before streaming
    generator = services.orchestrator.options(stream=True).join_thread_stream.remote(
        principal, thread_id, last_event_id, modes
    )

    async def body() -> AsyncIterator[bytes]:
        try:
            async for event in iterate(generator):
                yield event
        finally:
            generator.cancel()  # the stream never ends by itself: stop it with the client

    return StreamingResponse(
        with_heartbeats(body()), media_type=SSE_MEDIA_TYPE, headers=sse_headers()
    )


def _join_modes(values: list[str] | None) -> list[str]:
    """``stream_mode`` of a join: repeated values or a JSON array; the SDK sends an empty
    ``stream_mode=`` when it has none, which means every mode the run produces."""
    modes: list[str] = []
    for value in values or []:
        if value.startswith("["):
            try:
                parsed = orjson.loads(value)
            except orjson.JSONDecodeError:
                raise InvalidRequest(f"stream_mode: invalid JSON array {value!r}") from None
            modes += [str(m) for m in parsed] if isinstance(parsed, list) else [value]
        elif value:
            modes.append(value)
    return modes


# -- read, list, delete, cancel ----------------------------------------------------------
@runs.get("/threads/{thread_id}/runs")
async def list_runs(
    thread_id: str,
    services: ServicesDep,
    principal: ReadPrincipal,
    limit: Annotated[int, Query(ge=1, le=1000)] = 10,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    status: RunStatus | None = None,
) -> list[dict[str, Any]]:
    thread_id = thread_uuid(thread_id)
    await services.store.get_thread(principal.tenant_id, thread_id)
    found = await services.runs.search(
        principal.tenant_id, thread_id, limit=limit, offset=offset, status=status
    )
    return [run_to_wire(run) for run in found]


@runs.get("/threads/{thread_id}/runs/{run_id}")
async def get_run(
    thread_id: str, run_id: str, services: ServicesDep, principal: ReadPrincipal
) -> dict[str, Any]:
    run = await services.runs.get(principal.tenant_id, run_uuid(run_id), thread_uuid(thread_id))
    return run_to_wire(run)


@runs.get("/threads/{thread_id}/runs/{run_id}/trace")
async def get_run_trace(
    thread_id: str, run_id: str, services: ServicesDep, principal: ReadPrincipal
) -> RunTrace:
    """The run's path: nodes visited, model calls (model, tokens, latency, fallbacks,
    cost) and tool calls, with totals. Kept with the run once it has ended; a run still
    pending or running has no spans yet. Not part of LangGraph Platform's API."""
    return await services.traces.get(principal.tenant_id, thread_uuid(thread_id), run_uuid(run_id))


@runs.delete("/threads/{thread_id}/runs/{run_id}", status_code=204)
async def delete_run(
    thread_id: str, run_id: str, services: ServicesDep, principal: RunPrincipal
) -> Response:
    thread_id, run_id = thread_uuid(thread_id), run_uuid(run_id)
    await call(services.orchestrator.delete_run.remote(principal, thread_id, run_id))
    return Response(status_code=204)


@runs.post("/threads/{thread_id}/runs/{run_id}/cancel")
async def cancel_run(
    thread_id: str,
    run_id: str,
    services: ServicesDep,
    principal: RunPrincipal,
    wait: str | None = None,
    action: str = "interrupt",
) -> Response:
    thread_id, run_id = thread_uuid(thread_id), run_uuid(run_id)
    chosen: Action = "rollback" if action == "rollback" else "interrupt"
    await call(services.orchestrator.cancel.remote(principal, thread_id, [run_id], chosen))
    if not _flag(wait):
        return Response(status_code=202)
    outcome: RunOutcome = await call(
        services.orchestrator.join.remote(principal, thread_id, run_id)
    )
    return _wait_response(outcome, 0.0, thread_id)


@runs.post("/runs/cancel", status_code=204)
async def cancel_runs(
    services: ServicesDep,
    principal: RunPrincipal,
    body: Annotated[RunsCancel | None, Body()] = None,
    action: str = "interrupt",
) -> Response:
    query = body or RunsCancel()
    chosen: Action = "rollback" if action == "rollback" else "interrupt"
    if query.status is not None:
        if query.thread_id or query.run_ids:
            raise InvalidRequest(
                "When providing a 'status', 'thread_id' and 'run_ids' must be omitted. The "
                "'status' parameter cancels all runs with the given status, regardless of "
                "thread or run ID."
            )
        status = None if query.status == "all" else query.status
        await call(
            services.orchestrator.cancel.remote(principal, None, None, chosen, status or "all")
        )
        return Response(status_code=204)
    if not query.thread_id or query.run_ids is None:
        raise InvalidRequest(
            "Must provide either a status, an assistant_id, or both 'thread_id' and 'run_ids'"
        )
    run_ids = [run_uuid(r) for r in query.run_ids]
    await call(
        services.orchestrator.cancel.remote(
            principal, thread_uuid(query.thread_id), run_ids, chosen
        )
    )
    return Response(status_code=204)
