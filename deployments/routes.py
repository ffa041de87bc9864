"""HTTP routes: liveness and health, and assistants."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse

from deployments.api import CurrentPrincipal, ServicesDep
from deployments.handles import call
from runtime.errors import NotFound
from runtime.protocol import default_assistant_id

system = APIRouter(tags=["system"])
assistants = APIRouter(tags=["assistants"])

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
