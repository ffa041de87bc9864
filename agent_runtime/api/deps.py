"""The routes' dependencies: the replica's services, the caller's principal and its scopes.

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
           ``POST /v1/chat/completions``, ``POST /v1/embeddings``
``admin``  every ``/admin/...`` route
=========  ==============================================================================

Admins: a key with the ``admin`` scope, or the bootstrap ``AGENT_ADMIN_API_KEY`` (in
``x-admin-key``, ``Authorization: Bearer`` or ``x-api-key``). With the bootstrap key unset,
a request that carries no admin-scoped key gets 404 from ``/admin`` routes, as if absent.

An app with its own auth (``auth.path`` in its ``langgraph.json``): after the key and its
request limit, the app's ``authenticate`` handler finds the end user (the principal's
``user``; the key then travels in ``x-api-key``, the user's credential in
``Authorization``), and after the scope the app's authorization handlers decide about the
route's resource (``agent_runtime.api.route_auth``). Admin routes take no end user.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from ray.serve.handle import DeploymentHandle

from agent_runtime.api.graph_info import assistant_store
from agent_runtime.api.limit_headers import check_request_limit
from agent_runtime.api.route_auth import RouteGuard
from agent_runtime.config.settings import RuntimeSettings
from agent_runtime.core import logs
from agent_runtime.core.errors import Forbidden, NotFound, Unauthorized
from agent_runtime.core.records import Principal, Scope
from agent_runtime.core.types import EmbeddingRequest, EmbeddingResult
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.db.pg_pool import Pool, open_replica_pool
from agent_runtime.execution.item_store import ItemStores
from agent_runtime.execution.store_index import StoreIndex
from agent_runtime.replica.handles import call
from agent_runtime.replica.health import BackgroundLoops, Probe
from agent_runtime.replica.metrics import IngressMetrics
from agent_runtime.runs.assistants import AssistantStore
from agent_runtime.runs.run_queue import RunStore
from agent_runtime.runs.thread_rows import ThreadStore
from agent_runtime.runs.trace_rows import TraceReader
from agent_runtime.tenancy.audit import Actor
from agent_runtime.tenancy.auth import Authenticator, AuthInvalidations, extract_api_key
from agent_runtime.tenancy.budgets import BudgetGuard, build_budget_guard
from agent_runtime.tenancy.fair_use import RequestLimiter, TenantLimitsCache
from agent_runtime.tenancy.open_streams import OpenStreams
from agent_runtime.tenancy.rate_limiter import RateLimiter
from agent_runtime.tenancy.tenants import TenantStore
from agent_runtime.tenancy.token_buckets import build_limiter
from agent_runtime.user_app.auth_handlers import AppAuth
from agent_runtime.user_app.served_graphs import ServedGraphs


@dataclass
class Services:
    """What one ingress replica holds: built once by :meth:`open` (the deployment's
    constructor); tests build partial ones in process."""

    settings: RuntimeSettings
    store: MetadataStore
    auth: Authenticator
    limiter: RateLimiter
    orchestrator: DeploymentHandle
    router: DeploymentHandle
    metrics: IngressMetrics
    graphs: ServedGraphs
    assistants: AssistantStore | None = None  # built from the graphs if not given
    items: ItemStores | None = None  # the store's items; ingress builds and sets it up
    budgets: BudgetGuard | None = None  # spend counters; usage routes build one if not
    # Requests per key sized by each tenant's limits, over ``limiter`` (built if not given).
    requests: RequestLimiter | None = None
    app_auth: AppAuth | None = None  # the app's own auth handlers (auth.path), if any
    # Each tenant's open streams, joins and waits (built from the settings if not given).
    streams: OpenStreams | None = None
    # Postgres: the replica's one pool, which the store and the items share (ingress opens
    # it and closes it last).
    pool: Pool | None = None
    # Row queries over the same engine, answered without a hop to the orchestrator.
    threads: ThreadStore = field(init=False)
    runs: RunStore = field(init=False)
    traces: TraceReader = field(init=False)
    guard: RouteGuard = field(init=False)  # app_auth on the routes (lets all pass without)

    def __post_init__(self) -> None:
        self.threads = ThreadStore(self.store)
        self.runs = RunStore(self.store)
        self.traces = TraceReader(self.store)
        if self.assistants is None:
            self.assistants = assistant_store(self.store, self.graphs)
        self.guard = RouteGuard(self.app_auth, self.store, self.assistants)
        if self.requests is None:
            limits = self.settings.limits
            self.requests = RequestLimiter(
                self.limiter,
                TenantLimitsCache(TenantStore(self.store), limits.tenant_limits_cache_ttl_s),
                default_rate_per_s=limits.rate_limit_per_second,
                default_burst=limits.rate_limit_burst,
            )
        if self.streams is None:
            self.streams = OpenStreams.from_settings(self.settings.limits, self.store)

    @classmethod
    async def open(
        cls,
        settings: RuntimeSettings,
        orchestrator: DeploymentHandle,
        router: DeploymentHandle,
        metrics: IngressMetrics,
        graphs: ServedGraphs,
        app_auth: AppAuth | None = None,
        *,
        store_index: StoreIndex | None = None,
    ) -> Services:
        """Everything an ingress replica holds, its storage set up; :meth:`aclose` closes it.
        ``store_index`` (the app's ``store.index``) embeds through the router's handle."""
        pool = await open_replica_pool(settings.storage, "ingress")
        store = MetadataStore(settings.storage, pool)
        await store.setup()

        async def embed(request: EmbeddingRequest) -> EmbeddingResult:
            result: EmbeddingResult = await call(router.embed.remote(request))
            return result

        items = ItemStores(
            settings.storage, settings.items, index=store_index, embed=embed, pool=pool
        )
        await items.setup()
        # With Redis, revocations and disabled tenants reach this replica at once.
        auth = Authenticator(
            store,
            settings.limits.auth_cache_ttl_s,
            invalidations=AuthInvalidations.from_settings(settings.limits),
        )
        await auth.start()
        streams = OpenStreams.from_settings(
            settings.limits, store, on_unavailable=metrics.record_limiter_unavailable
        )
        await streams.start()
        return cls(
            settings=settings,
            store=store,
            auth=auth,
            # AGENT_RATE_LIMIT_FAILURE_MODE applies when Redis is away; the metric counts it.
            limiter=build_limiter(
                settings.limits, on_unavailable=metrics.record_limiter_unavailable
            ),
            orchestrator=orchestrator,
            router=router,
            metrics=metrics,
            graphs=graphs,
            items=items,
            budgets=build_budget_guard(settings.limits, settings.budgets, store),
            app_auth=app_auth,
            streams=streams,
            pool=pool,
        )

    async def forget_key(self, key_id: str) -> None:
        """After an admin changed a key: the authenticators and the streams it opened."""
        await self.auth.forget_key(key_id)
        assert self.streams is not None
        self.streams.forget_key(key_id)

    async def forget_tenant(self, tenant_id: str) -> None:
        """After an admin disabled or enabled a tenant: as :meth:`forget_key`."""
        await self.auth.forget_tenant(tenant_id)
        assert self.streams is not None
        self.streams.forget_tenant(tenant_id)

    def dependency_probes(self) -> dict[str, Probe]:
        """What this replica's health check pings: the database, and Redis when set."""
        probes: dict[str, Probe] = {"database": self.store.ping}
        if self.settings.limits.redis_url is not None:
            probes["redis"] = self.limiter.ping
        return probes

    def loop_parts(self) -> list[BackgroundLoops]:
        """Its parts with background loops (auth invalidations, open streams' leases)."""
        return [self.auth] if self.streams is None else [self.auth, self.streams]

    async def aclose(self) -> None:
        if self.streams is not None:
            await self.streams.close()
        await self.auth.close()
        await self.limiter.close()
        if self.items is not None:
            await self.items.close()
        if self.budgets is not None:
            await self.budgets.close()
        await self.store.close()
        if self.pool is not None:  # after its users
            await self.pool.close(timeout=self.settings.storage.db_timeout_s)


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def authenticate(request: Request, services: ServicesDep) -> Principal:
    """The key (:func:`authenticate_key`), then the app's own ``authenticate``, if any."""
    principal = await authenticate_key(request, services)
    if services.app_auth is not None:
        user = await services.app_auth.authenticate(request)
        principal = principal.model_copy(update={"user": user})
    return principal


async def authenticate_key(request: Request, services: Services) -> Principal:
    """API key from ``x-api-key`` or ``Authorization: Bearer``, then the per-key limit."""
    principal = await services.auth.authenticate(extract_api_key(request.headers))
    params = request.path_params
    logs.update(
        tenant_id=principal.tenant_id,
        thread_id=params.get("thread_id"),
        run_id=params.get("run_id"),
    )
    # The request id crosses the handle calls with the principal
    # (agent_runtime.deployments.orchestrator).
    principal = principal.model_copy(update={"request_id": request.state.request_id})
    assert services.requests is not None, "Services.__post_init__ builds it"
    await check_request_limit(request, services.requests, services.metrics, principal)
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

    async def __call__(
        self, request: Request, principal: CurrentPrincipal, services: ServicesDep
    ) -> Principal:
        if self.scope not in principal.scopes:
            raise missing_scope(self.scope)
        await services.guard.check_route(request, principal)
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
                principal = await authenticate_key(request, services)
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
