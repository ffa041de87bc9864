"""The ingress's FastAPI application: dependencies, error mapping and middleware.

Routes live in ``deployments.routes``; this module wires them to the per-replica services.
Every error leaves as JSON with the status from ``runtime.errors.HTTP_STATUS``; nothing
here ever sends a traceback or a secret to a client or a log line.

Every route declares what it needs with exactly one of :data:`ReadPrincipal`,
:data:`RunPrincipal` or :data:`AdminPrincipal` (a route-table test enforces it; only
``/ok``, ``/health`` and the OpenAPI pages are public). A key without the scope gets a 403
``{"detail": "this API key lacks the 'run' scope", "error": "forbidden",
"missing_scope": "run"}``. Keys made without scopes, and keys older than scopes, have
``read`` and ``run``. There are exactly three scopes; writes that are not runs go with
``run`` (a read-only key cannot change anything):

=========  ==============================================================================
scope      routes
=========  ==============================================================================
``read``   ``GET`` of assistants (and their graph, schemas, subgraphs), threads, state,
           history, runs and store items; ``POST`` searches and counts (assistants,
           threads, store items and namespaces), assistant versions, ``POST`` state at a
           checkpoint and history; joining a run (``GET .../join``); ``GET /usage``,
           ``GET /budgets``, ``GET /v1/models``
``run``    creating, updating and deleting assistants (and setting the latest version),
           threads (copy, prune, state updates) and store items; every run route that
           starts, cancels or deletes runs (``/runs``, ``/runs/wait``, ``/runs/stream``,
           ``/runs/batch``, ``/runs/cancel``, the thread's runs); joining a run's stream
           (``GET .../runs/{id}/stream``: it may cancel the run on disconnect);
           ``POST /v1/chat/completions``
``admin``  every ``/admin/...`` route
=========  ==============================================================================

Admins: a key with the ``admin`` scope, or the bootstrap ``AGENT_ADMIN_API_KEY`` (in
``x-admin-key``, ``Authorization: Bearer`` or ``x-api-key``). With the bootstrap key unset,
a request that carries no admin-scoped key gets 404 from ``/admin`` routes, as if absent.
"""

from __future__ import annotations

import hmac
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from ray.serve.handle import DeploymentHandle
from starlette.exceptions import HTTPException as StarletteHTTPException

from deployments.handles import unwrap
from deployments.hardening import install_cors, install_hardening
from deployments.limiting import check_request_limit, error_headers
from deployments.metrics import IngressMetrics
from deployments.openapi_doc import install_openapi
from graphs.registry import GraphRegistry
from runtime import logs
from runtime.assistants import AssistantStore
from runtime.audit import Actor
from runtime.auth import Authenticator, extract_api_key
from runtime.budgets import BudgetGuard
from runtime.errors import (
    AgentRuntimeError,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    error_body,
    http_status,
)
from runtime.fair_use import RequestLimiter, TenantLimitsCache
from runtime.limits import RateLimiter
from runtime.records import Principal, Scope
from runtime.run_store import RunStore
from runtime.settings import RuntimeSettings
from runtime.storage import MetadataStore
from runtime.store import ItemStores
from runtime.tenants import TenantStore
from runtime.thread_store import ThreadStore
from runtime.trace_store import TraceReader

logger = logging.getLogger("agent_runtime.ingress")


@dataclass
class Services:
    """What one ingress replica holds, built once in its constructor."""

    settings: RuntimeSettings
    store: MetadataStore
    auth: Authenticator
    limiter: RateLimiter
    orchestrator: DeploymentHandle
    router: DeploymentHandle
    metrics: IngressMetrics
    graphs: GraphRegistry
    assistants: AssistantStore | None = None  # ingress builds it; routes build one if not
    items: ItemStores | None = None  # the store's items; ingress builds and sets it up
    budgets: BudgetGuard | None = None  # spend counters; usage routes build one if not
    # Requests per key sized by each tenant's limits, over ``limiter`` (built if not given).
    requests: RequestLimiter | None = None
    # Row queries over the same engine, answered without a hop to the orchestrator.
    threads: ThreadStore = field(init=False)
    runs: RunStore = field(init=False)
    traces: TraceReader = field(init=False)

    def __post_init__(self) -> None:
        self.threads = ThreadStore(self.store)
        self.runs = RunStore(self.store)
        self.traces = TraceReader(self.store)
        if self.requests is None:
            limits = self.settings.limits
            self.requests = RequestLimiter(
                self.limiter,
                TenantLimitsCache(TenantStore(self.store), limits.tenant_limits_cache_ttl_s),
                default_rate_per_s=limits.rate_limit_per_second,
                default_burst=limits.rate_limit_burst,
            )


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def authenticate(request: Request, services: ServicesDep) -> Principal:
    """API key from ``x-api-key`` or ``Authorization: Bearer``, then the per-key limit."""
    principal = await services.auth.authenticate(extract_api_key(request.headers))
    params = request.path_params
    logs.update(
        tenant_id=principal.tenant_id,
        thread_id=params.get("thread_id"),
        run_id=params.get("run_id"),
    )
    # The request id crosses the handle calls with the principal (deployments.orchestrator).
    principal = principal.model_copy(update={"request_id": request.state.request_id})
    await check_request_limit(request, services, principal)
    return principal


# Authenticated, whatever the key's scopes: not for routes (the route-table test fails a
# route that has no scope dependency); use the scoped aliases below.
CurrentPrincipal = Annotated[Principal, Depends(authenticate)]


def missing_scope(scope: Scope) -> Forbidden:
    return Forbidden(f"this API key lacks the {scope!r} scope", missing_scope=scope)


class RequireScope:
    """A dependency: the caller's key must have ``scope`` (403 naming it otherwise)."""

    def __init__(self, scope: Scope) -> None:
        self.scope: Scope = scope

    async def __call__(self, principal: CurrentPrincipal) -> Principal:
        if self.scope not in principal.scopes:
            raise missing_scope(self.scope)
        return principal

    def __repr__(self) -> str:
        return f"RequireScope({self.scope!r})"


class RequireAdmin:
    """A dependency: the bootstrap admin key or an ``admin``-scoped API key; who it was."""

    scope: Scope = "admin"

    async def __call__(self, request: Request, services: ServicesDep) -> Actor:
        secret = services.settings.budgets.admin_api_key
        bootstrap = secret.get_secret_value() if secret is not None else ""
        headers = request.headers
        if bootstrap:
            offered = [headers.get("x-admin-key", ""), extract_api_key(headers) or ""]
            if any(o and hmac.compare_digest(o.encode(), bootstrap.encode()) for o in offered):
                return Actor("admin-api-key")
        if extract_api_key(headers) is not None:
            try:
                principal = await authenticate(request, services)
            except Unauthorized:
                if not bootstrap:
                    raise NotFound("Not Found") from None
                raise
            if "admin" in principal.scopes:
                return Actor("api-key", key_id=principal.key_id, tenant_id=principal.tenant_id)
            if bootstrap:
                raise missing_scope("admin")
        if not bootstrap:
            raise NotFound("Not Found")
        raise Unauthorized(
            "admin credential missing or invalid: send AGENT_ADMIN_API_KEY as x-admin-key, "
            "or an API key with the 'admin' scope"
        )

    def __repr__(self) -> str:
        return "RequireAdmin()"


require_read = RequireScope("read")
require_run = RequireScope("run")
require_admin = RequireAdmin()
ReadPrincipal = Annotated[Principal, Depends(require_read)]
RunPrincipal = Annotated[Principal, Depends(require_run)]
AdminPrincipal = Annotated[Actor, Depends(require_admin)]


def _error_response(request: Request, error: AgentRuntimeError) -> JSONResponse:
    headers = error_headers(request, error)
    return JSONResponse(error_body(error), status_code=http_status(error), headers=headers)


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AgentRuntimeError)
    async def runtime_error(request: Request, error: AgentRuntimeError) -> JSONResponse:
        return _error_response(request, error)

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
            return _error_response(request, cause)
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


def create_api(services: Services) -> FastAPI:
    from deployments.admin_routes import admin
    from deployments.cron_routes import crons
    from deployments.openai_routes import openai
    from deployments.routes import assistants, system  # routes import api's deps
    from deployments.run_routes import runs
    from deployments.store_routes import store
    from deployments.thread_routes import threads
    from deployments.usage_routes import usage

    app = FastAPI(
        title="Agent Runtime",
        version="0.1.0",
        description="LangGraph agents on Ray Serve, speaking the Agent Protocol.",
    )
    app.state.services = services
    install_error_handlers(app)
    install_hardening(app, services.settings.http, services.settings.serve.max_request_bytes)
    install_middleware(app, services)
    install_cors(app, services.settings.http)
    install_openapi(app)
    app.include_router(system)
    app.include_router(assistants)
    app.include_router(threads)
    app.include_router(runs)
    app.include_router(crons)
    app.include_router(store)
    app.include_router(openai)
    app.include_router(usage)
    app.include_router(admin)
    return app
