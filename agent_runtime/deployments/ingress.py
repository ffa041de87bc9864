"""Ingress deployment: the HTTP API (Agent Protocol subset, health) under ``@serve.ingress``.

The ingress authenticates, rate-limits and validates; the orchestrator does the work. The
FastAPI app is built per replica by ``__serve_build_asgi_app__`` (see
``agent_runtime.api.app_factory``), so nothing is constructed at import time.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI
from ray import serve
from ray.serve.handle import DeploymentHandle

from agent_runtime.api.app_factory import create_api
from agent_runtime.api.deps import Services
from agent_runtime.api.graph_info import assistant_store
from agent_runtime.config.settings import RuntimeSettings
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.execution.item_store import ItemStores
from agent_runtime.replica import replica_logs
from agent_runtime.replica.metrics import IngressMetrics
from agent_runtime.tenancy.auth import Authenticator, AuthInvalidations
from agent_runtime.tenancy.budgets import build_budget_guard
from agent_runtime.tenancy.token_buckets import build_limiter
from graphs.registry import default_registry

logger = logging.getLogger(__name__)


@serve.deployment(name="Ingress")
@serve.ingress()
class IngressDeployment:
    # Serve awaits async constructors (replica start-up waits for the store and saver).
    async def __init__(  # type: ignore[misc]
        self,
        orchestrator: DeploymentHandle,
        router: DeploymentHandle,
        settings: RuntimeSettings,
    ) -> None:
        replica_logs.install(settings.serve.log_level)
        store = MetadataStore(settings.storage)
        await store.setup()
        items = ItemStores(settings.storage, settings.items)
        await items.setup()
        registry = default_registry()
        # With Redis, revocations and disabled tenants reach this replica at once.
        auth = Authenticator(
            store,
            settings.limits.auth_cache_ttl_s,
            invalidations=AuthInvalidations.from_settings(settings.limits),
        )
        await auth.start()
        metrics = IngressMetrics()
        self._services = Services(
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
            graphs=registry,
            assistants=assistant_store(store, registry),
            items=items,
            budgets=build_budget_guard(settings.limits, settings.budgets, store),
        )

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_api(self._services)

    async def __del__(self) -> None:
        await self._services.auth.close()
        await self._services.limiter.close()
        if self._services.items is not None:
            await self._services.items.close()
        if self._services.budgets is not None:
            await self._services.budgets.close()
        await self._services.store.close()
