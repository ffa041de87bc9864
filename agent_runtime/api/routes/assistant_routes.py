"""HTTP routes: liveness and health, and the assistants API (LangGraph Platform's).

Assistant routes only validate and shape: :class:`agent_runtime.runs.assistants.AssistantStore` owns
the behaviour (versions, tenant scoping, default assistants) and
:mod:`agent_runtime.api.graph_info` the drawings and schemas. They never call the orchestrator
or the router, so they answer even when those deployments are busy. The app's own auth
handlers (``agent_runtime.api.route_auth``) decide about each assistant, or filter searches.
"""

from __future__ import annotations

import asyncio
import contextlib
from importlib import metadata
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends
from fastapi.responses import JSONResponse, Response

from agent_runtime.api import graph_info
from agent_runtime.api.deps import ReadPrincipal, RunPrincipal, Services, ServicesDep
from agent_runtime.api.route_auth import Check, search_value
from agent_runtime.core.errors import BadRequest, NotFound
from agent_runtime.protocol.agent_protocol import (
    AssistantCount,
    AssistantCreate,
    AssistantPatch,
    AssistantSearch,
    AssistantVersionChange,
    AssistantVersionsSearch,
)
from agent_runtime.protocol.agent_responses import AssistantVersion, assistant_to_wire, dumps
from agent_runtime.replica.handles import call
from agent_runtime.runs.assistants import BOTH_CONFIGURABLE_AND_CONTEXT, AssistantStore

system = APIRouter(tags=["system"])
meta = APIRouter(tags=["system"])  # http.disable_meta switches it off; /ok and /health stay
assistants = APIRouter(tags=["assistants"])

HEALTH_TIMEOUT_S = 3.0


@system.get("/ok")
async def ok() -> dict[str, bool]:
    """Liveness: the ingress answers."""
    return {"ok": True}


@meta.get("/info")
async def info() -> dict[str, Any]:
    """What LangGraph Studio and Agent Chat UI ask first (langgraph-api's shape): the
    server's version and which features it has. Public, as ``/ok``."""
    return {
        "version": _version("agent-runtime"),
        "langgraph_py_version": _version("langgraph"),
        "flags": {"assistants": True, "crons": True, "langsmith": False},
        "host": {
            "kind": "self-hosted",
            "project_id": None,
            "host_revision_id": None,
            "revision_id": None,
            "tenant_id": None,
        },
    }


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


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


def get_assistants(services: ServicesDep) -> AssistantStore:
    """The replica's assistant store."""
    assert services.assistants is not None, "Services.__post_init__ builds it"
    return services.assistants


AssistantsDep = Annotated[AssistantStore, Depends(get_assistants)]


def _json(body: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    # orjson, as langgraph-api encodes bodies (see agent_runtime.protocol.agent_responses.dumps).
    return Response(dumps(body), status_code, headers, media_type="application/json")


def _both_configurable_and_context(config: dict[str, Any] | None, context: Any) -> None:
    """Platform's 400 (not 422): each is valid alone, the pair is inconsistent."""
    if (config or {}).get("configurable") and context:
        raise BadRequest(BOTH_CONFIGURABLE_AND_CONTEXT)


@assistants.post("/assistants")
async def create_assistant(
    body: AssistantCreate, store: AssistantsDep, services: ServicesDep, principal: RunPrincipal
) -> Response:
    _both_configurable_and_context(body.config, body.context)
    body = await services.guard.assistant_create(principal, body)
    record = await store.create(
        principal.tenant_id,
        graph_id=body.graph_id,
        assistant_id=body.assistant_id,
        config=body.config,
        context=body.context,
        metadata=body.metadata,
        if_exists=body.if_exists,
        name=body.name,
        description=body.description,
    )
    return _json(assistant_to_wire(record))


@assistants.post("/assistants/search")
async def search_assistants(
    store: AssistantsDep,
    services: ServicesDep,
    principal: ReadPrincipal,
    body: Annotated[AssistantSearch | None, Body()] = None,
) -> Response:
    query = body or AssistantSearch()
    search = search_value(query, {"graph_id", "metadata", "limit", "offset"})
    allowed = await services.guard.authorize(principal, "assistants", "search", search)
    page, next_offset = await store.search(
        principal.tenant_id,
        graph_id=query.graph_id,
        name=query.name,
        metadata=query.metadata,
        limit=query.limit,
        offset=query.offset,
        sort_by=query.sort_by,
        sort_order=query.sort_order,
        allowed=allowed,
    )
    # Platform's headers: the total is a lower bound while there is a next page.
    if next_offset is None:
        headers = {"X-Pagination-Total": str(query.offset + len(page))}
    else:
        headers = {
            "X-Pagination-Total": str(next_offset + 1),
            "X-Pagination-Next": str(next_offset),
        }
    return _json([assistant_to_wire(r, query.select) for r in page], headers=headers)


@assistants.post("/assistants/count")
async def count_assistants(
    store: AssistantsDep,
    services: ServicesDep,
    principal: ReadPrincipal,
    body: Annotated[AssistantCount | None, Body()] = None,
) -> Response:
    query = body or AssistantCount()
    search = search_value(query, {"graph_id", "metadata"})
    allowed = await services.guard.authorize(principal, "assistants", "search", search)
    count = await store.count(
        principal.tenant_id,
        graph_id=query.graph_id,
        name=query.name,
        metadata=query.metadata,
        allowed=allowed,
    )
    return _json(count)


@assistants.get("/assistants/{assistant_id}")
async def get_assistant(
    assistant_id: str, store: AssistantsDep, principal: ReadPrincipal
) -> Response:
    return _json(assistant_to_wire(await store.get(principal.tenant_id, assistant_id)))


@assistants.patch("/assistants/{assistant_id}")
async def patch_assistant(
    assistant_id: str,
    store: AssistantsDep,
    services: ServicesDep,
    principal: RunPrincipal,
    body: Annotated[AssistantPatch | None, Body()] = None,
) -> Response:
    patch = body or AssistantPatch()
    _both_configurable_and_context(patch.config, patch.context)
    fields = patch.model_dump(exclude={"metadata", "description"})
    update = Check("assistants", "update", "assistant")
    patch = await services.guard.updated(principal, update, assistant_id, patch, fields)
    record = await store.update(
        principal.tenant_id,
        assistant_id,
        graph_id=patch.graph_id,
        config=patch.config,
        context=patch.context,
        metadata=patch.metadata,
        name=patch.name,
        description=patch.description,
    )
    return _json(assistant_to_wire(record))


@assistants.delete("/assistants/{assistant_id}", status_code=204)
async def delete_assistant(
    assistant_id: str,
    store: AssistantsDep,
    services: ServicesDep,
    principal: RunPrincipal,
    delete_threads: str = "",
) -> Response:
    owned = await store.delete(
        principal.tenant_id, assistant_id, delete_threads=delete_threads.lower() == "true"
    )
    for thread_id in owned:
        # The orchestrator deletes a thread the whole way: runs, checkpoints, store items.
        with contextlib.suppress(NotFound):
            await call(services.orchestrator.delete_thread.remote(principal, thread_id))
    return Response(status_code=204)


@assistants.post("/assistants/{assistant_id}/versions")
async def list_assistant_versions(
    assistant_id: str,
    store: AssistantsDep,
    principal: ReadPrincipal,
    body: Annotated[AssistantVersionsSearch | None, Body()] = None,
) -> Response:
    query = body or AssistantVersionsSearch()
    found = await store.versions(
        principal.tenant_id,
        assistant_id,
        metadata=query.metadata,
        limit=query.limit,
        offset=query.offset,
    )
    if not found:
        # Platform answers 404 for an empty page too (a filter matching nothing).
        raise NotFound(f"Assistant {assistant_id} not found")
    versions = [AssistantVersion.model_validate(v.model_dump(exclude={"tenant_id"})) for v in found]
    return _json([v.wire() for v in versions])


@assistants.post("/assistants/{assistant_id}/latest")
async def set_latest_assistant_version(
    assistant_id: str,
    store: AssistantsDep,
    principal: RunPrincipal,
    body: Annotated[AssistantVersionChange | None, Body()] = None,
) -> Response:
    version = (body or AssistantVersionChange()).version
    record = await store.set_latest(principal.tenant_id, assistant_id, version)
    return _json(assistant_to_wire(record))


async def _graph_id(
    services: Services, store: AssistantStore, tenant_id: str, assistant_id: str
) -> str:
    """The served graph of the tenant's assistant (404 for either missing)."""
    record = await store.get(tenant_id, assistant_id)
    return services.graphs.get(record.graph_id).graph_id


@assistants.get("/assistants/{assistant_id}/graph")
async def get_assistant_graph(
    assistant_id: str,
    services: ServicesDep,
    store: AssistantsDep,
    principal: ReadPrincipal,
    xray: str | None = None,
) -> Response:
    depth = graph_info.parse_xray(xray)
    graph_id = await _graph_id(services, store, principal.tenant_id, assistant_id)
    return _json(await graph_info.drawing(services.graphs, graph_id, depth))


@assistants.get("/assistants/{assistant_id}/schemas")
async def get_assistant_schemas(
    assistant_id: str, services: ServicesDep, store: AssistantsDep, principal: ReadPrincipal
) -> Response:
    graph_id = await _graph_id(services, store, principal.tenant_id, assistant_id)
    return _json(await graph_info.schemas(services.graphs, graph_id))


@assistants.get("/assistants/{assistant_id}/subgraphs")
@assistants.get("/assistants/{assistant_id}/subgraphs/{namespace}")
async def get_assistant_subgraphs(
    assistant_id: str,
    services: ServicesDep,
    store: AssistantsDep,
    principal: ReadPrincipal,
    namespace: str | None = None,
    recurse: str = "false",
) -> Response:
    graph_id = await _graph_id(services, store, principal.tenant_id, assistant_id)
    found = await graph_info.subgraphs(
        services.graphs, graph_id, namespace, recurse in ("true", "True")
    )
    return _json(found)
