"""HTTP routes of runs: on a thread and stateless; background, wait, stream, join.

Creating, waiting, streaming and joining go to the orchestrator (which runs the graphs);
the run rows' routes (list, read, delete, cancel) are in ``run_record_routes``.
The app's own auth handlers (``agent_runtime.api.route_auth``) decide first.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from agent_runtime.api.deps import ReadPrincipal, RunPrincipal, Services, ServicesDep
from agent_runtime.api.held_streams import HeldSlot, held, held_sse, until_ended
from agent_runtime.api.limit_headers import check_request_limit
from agent_runtime.api.routes.thread_routes import thread_uuid
from agent_runtime.api.run_headers import configurable_headers
from agent_runtime.core.errors import InvalidRequest
from agent_runtime.core.records import Principal, RunRecord
from agent_runtime.protocol.agent_protocol import (
    RunCreate,
    normalise_stream_modes,
    require_uuid,
)
from agent_runtime.protocol.agent_responses import run_to_wire
from agent_runtime.protocol.sse import (
    event_number,
    run_location_headers,
)
from agent_runtime.replica.handles import call, iterate
from agent_runtime.runs.run_service import RunOutcome
from agent_runtime.runs.thread_stream import parse_modes
from agent_runtime.tenancy.open_streams import OpenStream

runs = APIRouter(tags=["runs"])

INVALID_RUN = "Invalid run ID: must be a UUID"
Action = Literal["interrupt", "rollback"]


def run_uuid(run_id: str) -> str:
    return require_uuid(run_id, INVALID_RUN)


def flag(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1", "yes")


RunHandler = Callable[[Services, Principal, OpenStream, str | None, RunCreate], Awaitable[Response]]


def _with_headers(body: RunCreate, request: Request, services: Services) -> RunCreate:
    return body.with_headers(configurable_headers(request.headers, services.settings.http))


def _on_thread_and_stateless(suffix: str, handler: RunHandler, verb: str) -> None:
    """Route ``POST /threads/{thread_id}/runs{suffix}`` (route ``{verb}_run``) and the
    stateless ``POST /runs{suffix}`` (``{verb}_stateless_run``, no thread) to ``handler``,
    which holds an open-stream slot (``agent_runtime/api/held_streams.py``)."""

    async def on_thread(
        thread_id: str,
        body: RunCreate,
        request: Request,
        services: ServicesDep,
        principal: RunPrincipal,
        slot: HeldSlot,
    ) -> Response:
        thread_id = thread_uuid(thread_id)
        body = _with_headers(body, request, services)
        body = await services.guard.run_create(principal, thread_id, body)
        return await handler(services, principal, slot, thread_id, body)

    async def stateless(
        body: RunCreate,
        request: Request,
        services: ServicesDep,
        principal: RunPrincipal,
        slot: HeldSlot,
    ) -> Response:
        body = _with_headers(body, request, services)
        body = await services.guard.run_create(principal, None, body)
        return await handler(services, principal, slot, None, body)

    runs.add_api_route(
        f"/threads/{{thread_id}}/runs{suffix}", on_thread, methods=["POST"], name=f"{verb}_run"
    )
    runs.add_api_route(f"/runs{suffix}", stateless, methods=["POST"], name=f"{verb}_stateless_run")


# -- create (no slot: a background run holds no connection) ------------------------------
async def _create(
    services: Services, principal: Principal, thread_id: str | None, body: RunCreate
) -> JSONResponse:
    body = await services.guard.run_create(principal, thread_id, body)
    run: RunRecord = await call(services.orchestrator.create_run.remote(principal, thread_id, body))
    return JSONResponse(
        run_to_wire(run), headers=run_location_headers(run.run_id, thread_id, "create")
    )


@runs.post("/threads/{thread_id}/runs", name="create_run")
async def create_run(
    thread_id: str,
    body: RunCreate,
    request: Request,
    services: ServicesDep,
    principal: RunPrincipal,
) -> Response:
    thread_id = thread_uuid(thread_id)
    return await _create(services, principal, thread_id, _with_headers(body, request, services))


@runs.post("/runs", name="create_stateless_run")
async def create_stateless_run(
    body: RunCreate, request: Request, services: ServicesDep, principal: RunPrincipal
) -> Response:
    return await _create(services, principal, None, _with_headers(body, request, services))


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
        item = await services.guard.run_create(principal, None, item)
        run: RunRecord = await call(services.orchestrator.create_run.remote(principal, None, item))
        created.append(run_to_wire(run))
    return created


# -- wait --------------------------------------------------------------------------------
def wait_response(outcome: RunOutcome, hop_ms: float, thread_id: str | None) -> Response:
    timing = outcome.timings.server_timing(orchestrator=hop_ms, graph=outcome.graph_ms)
    # A stateless run's headers name its temporary thread, as on Platform.
    headers = run_location_headers(outcome.run_id, outcome.thread_id or thread_id, "wait")
    headers["Server-Timing"] = timing
    return Response(outcome.body, media_type="application/json", headers=headers)


async def _wait(
    services: Services,
    principal: Principal,
    slot: OpenStream,
    thread_id: str | None,
    body: RunCreate,
) -> Response:
    start = time.perf_counter()
    outcome: RunOutcome = await held(
        slot, call(services.orchestrator.wait.remote(principal, thread_id, body))
    )
    return wait_response(outcome, (time.perf_counter() - start) * 1000, thread_id)


_on_thread_and_stateless("/wait", _wait, "wait")


@runs.get("/threads/{thread_id}/runs/{run_id}/join")
async def join_run(
    thread_id: str, run_id: str, services: ServicesDep, principal: ReadPrincipal, slot: HeldSlot
) -> Response:
    start = time.perf_counter()
    outcome: RunOutcome = await held(
        slot,
        call(
            services.orchestrator.join.remote(principal, thread_uuid(thread_id), run_uuid(run_id))
        ),
    )
    return wait_response(outcome, (time.perf_counter() - start) * 1000, thread_id)


# -- streams -----------------------------------------------------------------------------
async def _sse(
    services: Services,
    slot: OpenStream,
    events: AsyncIterator[bytes],
    headers: dict[str, str],
    modes: list[str] | None = None,
) -> StreamingResponse:
    # The first frame comes once the run is recorded: waiting for it turns a missing
    # thread or a rejected double-text into a proper 404/409 instead of a broken stream.
    first: bytes | None = await until_ended(slot, anext(events, None))

    async def body() -> AsyncIterator[bytes]:
        if first is not None and _wanted(first, modes):
            yield first
        async for event in events:
            if _wanted(event, modes):
                yield event

    return held_sse(services, slot, body(), headers)


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
    services: Services,
    principal: Principal,
    slot: OpenStream,
    thread_id: str | None,
    body: RunCreate,
) -> StreamingResponse:
    events = iterate(
        services.orchestrator.options(stream=True).stream.remote(principal, thread_id, body)
    )
    first: bytes | None = await until_ended(slot, anext(events, None))
    run_id = _run_id_of(first)

    async def replay() -> AsyncIterator[bytes]:
        if first is not None:
            yield first
        async for event in events:
            yield event

    headers = run_location_headers(run_id, thread_id, "stream") if run_id else {}
    return await _sse(services, slot, replay(), headers)


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
    slot: HeldSlot,
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
            principal, thread_id, run_id, last_event_id, flag(cancel_on_disconnect)
        )
    )
    headers = run_location_headers(run_id, thread_id, "stream")
    return await _sse(services, slot, events, headers, modes)


@runs.get("/threads/{thread_id}/stream")
async def join_thread_stream(
    thread_id: str,
    services: ServicesDep,
    principal: ReadPrincipal,
    slot: HeldSlot,
    last_event_id: Annotated[str | None, Header()] = None,
    stream_modes: Annotated[list[str] | None, Query()] = None,
    stream_mode: Annotated[list[str] | None, Query()] = None,
) -> StreamingResponse:
    """Every run on the thread as it runs, then each new one, until the client leaves, the
    thread is deleted or the stream's slot ends (``agent_runtime/runs/thread_stream.py``,
    ``agent_runtime/api/held_streams.py``). ``stream_modes`` as Platform reads it; the SDK's
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
            generator.cancel()  # a stream the client (or its slot) ends stops there too

    return held_sse(services, slot, body())


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
