"""What wraps every route: errors as JSON, request ids, the access log line and metrics.

Every error leaves as JSON with the status from ``agent_runtime.core.errors.HTTP_STATUS``;
nothing here ever sends a traceback or a secret to a client or a log line.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from agent_runtime.api.deps import Services
from agent_runtime.api.limit_headers import error_headers
from agent_runtime.core import logs
from agent_runtime.core.errors import (
    AgentRuntimeError,
    AuthRejected,
    PayloadTooLarge,
    error_body,
    http_status,
)
from agent_runtime.replica.handles import unwrap

logger = logging.getLogger("agent_runtime.ingress")


def error_response(request: Request, error: AgentRuntimeError) -> JSONResponse:
    headers = error_headers(request, error)
    if isinstance(error, AuthRejected):
        headers.update(error.headers)  # the app's handler's own, e.g. WWW-Authenticate
    return JSONResponse(error_body(error), status_code=http_status(error), headers=headers)


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AgentRuntimeError)
    async def runtime_error(request: Request, error: AgentRuntimeError) -> JSONResponse:
        return error_response(request, error)

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, error: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": _field_name(tuple(e["loc"])), "message": e["msg"], "type": e["type"]}
            for e in error.errors()
        ]
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        return JSONResponse(
            {"detail": f"invalid request: {summary}", "error": "invalid_request", "errors": errors},
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"detail": str(error.detail), "error": "http_error"},
            status_code=error.status_code,
            headers=getattr(error, "headers", None),
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        cause = unwrap(error)
        if isinstance(cause, AgentRuntimeError):
            return error_response(request, cause)
        # Type only: messages of unknown errors may quote inputs or connection strings.
        logger.error(
            "unhandled %s on %s %s (request %s)",
            type(cause).__name__,
            request.method,
            _route_template(request),
            getattr(request.state, "request_id", "-"),
        )
        return JSONResponse(
            {
                "detail": "internal error; the request id is in the x-request-id header",
                "error": "internal_error",
            },
            status_code=500,
        )


def _route_template(request: Request) -> str:
    route = request.scope.get("route")
    return getattr(route, "path", None) or "unmatched"


def _run_location(response: Response) -> tuple[str | None, str | None]:
    """(thread id, run id) of a run route's ``Content-Location`` (``/threads/{t}/runs/{r}``
    or ``/runs/{r}``), for the request's log line."""
    location = response.headers.get("content-location", "")
    parts = location.split("?", 1)[0].strip("/").split("/")
    thread_id = parts[1] if len(parts) >= 2 and parts[0] == "threads" else None
    run_id = parts[parts.index("runs") + 1] if "runs" in parts[:-1] else None
    return thread_id, run_id


def install_middleware(app: FastAPI, services: Services) -> None:
    max_bytes = services.settings.serve.max_request_bytes

    @app.middleware("http")
    async def observe(request: Request, call_next: Any) -> Response:
        start = time.perf_counter()
        given = request.headers.get("x-request-id")
        request_id = given or uuid.uuid4().hex
        request.state.request_id = request_id
        with logs.bind(request_id=request_id) as context:
            response = await _respond(request, call_next, max_bytes)
            latency_ms = (time.perf_counter() - start) * 1000
            route = _route_template(request)
            if context.run_id is None:
                thread_id, run_id = _run_location(response)
                logs.update(thread_id=context.thread_id or thread_id, run_id=run_id)
            logger.info("%s %s %d %.1f ms", request.method, route, response.status_code, latency_ms)
        if given is None:
            # Serve's proxy hands every request an x-request-id and puts it on the
            # response itself; a second copy here would make the header "id, id".
            response.headers["x-request-id"] = request_id
        for name, value in (getattr(request.state, "limit_headers", None) or {}).items():
            response.headers.setdefault(name, value)
        services.metrics.observe(route, request.method, response.status_code, latency_ms)
        return response


async def _respond(request: Request, call_next: Any, max_bytes: int) -> Response:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        error = PayloadTooLarge(
            f"request body of {length} bytes exceeds the limit of {max_bytes} bytes",
            limit=max_bytes,
        )
        return JSONResponse(error_body(error), status_code=http_status(error))
    response: Response = await call_next(request)
    return response
