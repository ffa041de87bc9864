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
from agent_runtime.config.settings import RuntimeSettings
from agent_runtime.deployments.served_app import load_served_app
from agent_runtime.replica import replica_logs
from agent_runtime.replica.health import ReplicaHealth
from agent_runtime.replica.metrics import IngressMetrics
from agent_runtime.replica.single_node import alive_nodes, refuse_sqlite_across_nodes
from agent_runtime.user_app.served_graphs import ServedGraphs

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
        refuse_sqlite_across_nodes(settings.storage, alive_nodes())
        # Only inspected here (schemas, drawings): no checkpointer, no store.
        app = load_served_app(settings)
        graphs = ServedGraphs(app.graphs.values(), checkpointer=None, store=None)
        self._custom_app = app.http_app
        self._services = await Services.open(
            settings,
            orchestrator,
            router,
            IngressMetrics(),
            graphs,
            app_auth=app.auth,
            store_index=app.store_index,
        )

        self._health = ReplicaHealth.from_settings(
            settings.serve, self._services.dependency_probes(), self._services.loop_parts()
        )

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_api(self._services, self._custom_app)

    async def check_health(self) -> None:
        """Serve's health check: see :mod:`agent_runtime.replica.health`."""
        await self._health.check()

    async def __del__(self) -> None:
        await self._services.aclose()
