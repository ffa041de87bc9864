"""HTTP routes of threads: rows (answered here from the database), and state, history,
copies, deletes and pruning (answered by the orchestrator, which holds the graphs and the
checkpointer). Shapes, statuses and messages follow LangGraph Platform. The app's own auth
handlers (``agent_runtime.api.route_auth``) decide about each thread, or filter the search."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse, Response

from agent_runtime.api.deps import ReadPrincipal, RunPrincipal, ServicesDep
from agent_runtime.api.route_auth import Check, search_value
from agent_runtime.protocol.agent_protocol import (
    CheckpointConfig,
    ThreadCount,
    ThreadCreate,
    ThreadHistory,
    ThreadPatch,
    ThreadPrune,
    ThreadSearch,
    ThreadStateCheckpointRequest,
    ThreadStateUpdate,
    require_uuid,
)
from agent_runtime.protocol.agent_responses import thread_to_wire
from agent_runtime.replica.handles import call
from agent_runtime.runs.thread_rows import ttl_of

threads = APIRouter(tags=["threads"])

INVALID_THREAD = "Invalid thread ID: must be a UUID"


def thread_uuid(thread_id: str) -> str:
    return require_uuid(thread_id, INVALID_THREAD)


@threads.post("/threads")
async def create_thread(
    services: ServicesDep,
    principal: RunPrincipal,
    body: Annotated[ThreadCreate | None, Body()] = None,
) -> dict[str, Any]:
    body = body or ThreadCreate()
    if body.thread_id is not None:
        thread_uuid(body.thread_id)
    body = await services.guard.thread_create(principal, body)
    if body.supersteps:
        created: dict[str, Any] = await call(
            services.orchestrator.create_thread.remote(principal, body)
        )
        return created
    record = await services.store.create_thread(
        principal.tenant_id,
        thread_id=body.thread_id,
        metadata=body.metadata,
        graph_id=body.graph_id,
        if_exists=body.if_exists,
        ttl=ttl_of(body.ttl, services.settings.runs.default_thread_ttl),
    )
    return thread_to_wire(record)


@threads.post("/threads/search")
async def search_threads(
    services: ServicesDep,
    principal: ReadPrincipal,
    body: Annotated[ThreadSearch | None, Body()] = None,
) -> JSONResponse:
    query = body or ThreadSearch()
    search = search_value(query, {"metadata", "values", "status", "limit", "offset", "ids"})
    allowed = await services.guard.authorize(principal, "threads", "search", search)
    found, more = await services.threads.search(
        principal.tenant_id,
        ids=[thread_uuid(i) for i in query.ids] if query.ids else None,
        metadata=query.metadata,
        values=query.values,
        status=query.status,
        limit=query.limit,
        offset=query.offset,
        sort_by=query.sort_by,
        sort_order=query.sort_order,
        allowed=allowed,
    )
    rows = [_select(thread_to_wire(t), query.select) for t in found]
    if more:
        headers = {
            "X-Pagination-Total": str(query.offset + query.limit + 1),
            "X-Pagination-Next": str(query.offset + query.limit),
        }
    else:
        headers = {"X-Pagination-Total": str(query.offset + len(rows))}
    return JSONResponse(rows, headers=headers)


def _select(row: dict[str, Any], fields: Sequence[str] | None) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k in fields} if fields else row


@threads.post("/threads/count")
async def count_threads(
    services: ServicesDep,
    principal: ReadPrincipal,
    body: Annotated[ThreadCount | None, Body()] = None,
) -> int:
    query = body or ThreadCount()
    search = search_value(query, {"metadata", "values", "status"})
    allowed = await services.guard.authorize(principal, "threads", "search", search)
    return await services.threads.count(
        principal.tenant_id,
        metadata=query.metadata,
        values=query.values,
        status=query.status,
        allowed=allowed,
    )


@threads.post("/threads/prune")
async def prune_threads(
    body: ThreadPrune, services: ServicesDep, principal: RunPrincipal
) -> dict[str, int]:
    ids = await services.guard.visible_threads(principal, [thread_uuid(i) for i in body.thread_ids])
    if not ids:
        return {"pruned_count": 0}
    pruned: int = await call(
        services.orchestrator.prune_threads.remote(principal, ids, body.strategy)
    )
    return {"pruned_count": pruned}


@threads.get("/threads/{thread_id}")
async def get_thread(
    thread_id: str, services: ServicesDep, principal: ReadPrincipal, include: str = ""
) -> dict[str, Any]:
    record = await services.store.get_thread(principal.tenant_id, thread_uuid(thread_id))
    return thread_to_wire(record, include_ttl="ttl" in include.split(","))


@threads.patch("/threads/{thread_id}")
async def patch_thread(
    thread_id: str,
    request: Request,
    services: ServicesDep,
    principal: RunPrincipal,
    body: Annotated[ThreadPatch | None, Body()] = None,
) -> Response:
    patch = body or ThreadPatch()
    thread_id = thread_uuid(thread_id)
    update = Check("threads", "update", "thread")
    patch = await services.guard.updated(principal, update, thread_id, patch, {})
    record = await services.store.update_thread(
        principal.tenant_id,
        thread_id,
        metadata=patch.metadata,
        ttl=ttl_of(patch.ttl, None),
    )
    if request.headers.get("prefer") == "return=minimal":
        return Response(status_code=204)
    return JSONResponse(thread_to_wire(record))


@threads.delete("/threads/{thread_id}", status_code=204)
async def delete_thread(thread_id: str, services: ServicesDep, principal: RunPrincipal) -> Response:
    await call(services.orchestrator.delete_thread.remote(principal, thread_uuid(thread_id)))
    return Response(status_code=204)


@threads.post("/threads/{thread_id}/copy")
async def copy_thread(
    thread_id: str, services: ServicesDep, principal: RunPrincipal
) -> dict[str, Any]:
    thread_id = thread_uuid(thread_id)
    await services.guard.thread_copy(principal, thread_id)
    copied: dict[str, Any] = await call(
        services.orchestrator.copy_thread.remote(principal, thread_id)
    )
    return copied


# -- state and history ---------------------------------------------------------------------
def _flag(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1", "yes")


def _select_state(state: dict[str, Any], select: list[str] | None) -> dict[str, Any]:
    """``select``: top-level fields, or ``values.<key>`` for one key of the values."""
    if not select:
        return state
    out: dict[str, Any] = {}
    for field in select:
        if field.startswith("values."):
            key = field.removeprefix("values.")
            values = state.get("values") or {}
            out.setdefault("values", {})[key] = (
                values.get(key) if isinstance(values, dict) else None
            )
        elif field in state:
            out[field] = state[field]
    return out


@threads.get("/threads/{thread_id}/state")
async def get_thread_state(
    thread_id: str,
    services: ServicesDep,
    principal: ReadPrincipal,
    subgraphs: str | None = None,
    select: Annotated[list[str] | None, Query()] = None,
) -> dict[str, Any]:
    state: dict[str, Any] = await call(
        services.orchestrator.get_state.remote(principal, thread_uuid(thread_id), _flag(subgraphs))
    )
    return _select_state(state, select)


@threads.get("/threads/{thread_id}/state/{checkpoint_id}")
async def get_thread_state_at(
    thread_id: str,
    checkpoint_id: str,
    services: ServicesDep,
    principal: ReadPrincipal,
    subgraphs: str | None = None,
    select: Annotated[list[str] | None, Query()] = None,
) -> dict[str, Any]:
    checkpoint = CheckpointConfig(checkpoint_id=checkpoint_id)
    state: dict[str, Any] = await call(
        services.orchestrator.get_state.remote(
            principal, thread_uuid(thread_id), _flag(subgraphs), checkpoint
        )
    )
    return _select_state(state, select)


@threads.post("/threads/{thread_id}/state/checkpoint")
async def get_thread_state_at_checkpoint(
    thread_id: str,
    body: ThreadStateCheckpointRequest,
    services: ServicesDep,
    principal: ReadPrincipal,
) -> dict[str, Any]:
    state: dict[str, Any] = await call(
        services.orchestrator.get_state.remote(
            principal, thread_uuid(thread_id), body.subgraphs, body.checkpoint
        )
    )
    return state


@threads.post("/threads/{thread_id}/state")
async def update_thread_state(
    thread_id: str,
    body: ThreadStateUpdate,
    services: ServicesDep,
    principal: RunPrincipal,
) -> dict[str, Any]:
    result: dict[str, Any] = await call(
        services.orchestrator.update_state.remote(principal, thread_uuid(thread_id), body)
    )
    return result


@threads.get("/threads/{thread_id}/history")
async def get_thread_history(
    thread_id: str,
    services: ServicesDep,
    principal: ReadPrincipal,
    limit: Annotated[int, Query(ge=1, le=1000)] = 10,
    before: str | None = None,
) -> list[dict[str, Any]]:
    query = {"limit": limit, "before": before}
    states: list[dict[str, Any]] = await call(
        services.orchestrator.history.remote(principal, thread_uuid(thread_id), query)
    )
    return states


@threads.post("/threads/{thread_id}/history")
async def post_thread_history(
    thread_id: str,
    services: ServicesDep,
    principal: ReadPrincipal,
    body: Annotated[ThreadHistory | None, Body()] = None,
) -> list[dict[str, Any]]:
    search = body or ThreadHistory()
    query = {
        "limit": search.limit,
        "before": search.before,
        "metadata": search.metadata,
        "checkpoint": search.checkpoint,
    }
    states: list[dict[str, Any]] = await call(
        services.orchestrator.history.remote(principal, thread_uuid(thread_id), query)
    )
    return [_select_state(s, search.select) for s in states]
