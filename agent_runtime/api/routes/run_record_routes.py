"""HTTP routes of run rows: list, read, trace, delete, and cancel (one run or many).

Listing, reading and deleting run rows are answered from the database; cancelling goes to
the orchestrator. The app's own auth handlers (``agent_runtime.api.route_auth``) decide
first.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import Response

from agent_runtime.api.deps import ReadPrincipal, RunPrincipal, ServicesDep
from agent_runtime.api.held_streams import held, holding
from agent_runtime.api.route_auth import Check
from agent_runtime.api.routes.run_routes import Action, flag, run_uuid, wait_response
from agent_runtime.api.routes.thread_routes import thread_uuid
from agent_runtime.core.errors import InvalidRequest
from agent_runtime.core.records import RunStatus
from agent_runtime.execution.run_trace import RunTrace
from agent_runtime.protocol.agent_protocol import MAX_OFFSET, RunsCancel
from agent_runtime.protocol.agent_responses import run_to_wire
from agent_runtime.replica.handles import call
from agent_runtime.runs.run_service import RunOutcome

run_records = APIRouter(tags=["runs"])


# -- read, list, delete, cancel ----------------------------------------------------------
@run_records.get("/threads/{thread_id}/runs")
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


@run_records.get("/threads/{thread_id}/runs/{run_id}")
async def get_run(
    thread_id: str, run_id: str, services: ServicesDep, principal: ReadPrincipal
) -> dict[str, Any]:
    run = await services.runs.get(principal.tenant_id, run_uuid(run_id), thread_uuid(thread_id))
    return run_to_wire(run)


@run_records.get("/threads/{thread_id}/runs/{run_id}/trace")
async def get_run_trace(
    thread_id: str, run_id: str, services: ServicesDep, principal: ReadPrincipal
) -> RunTrace:
    """The run's path: nodes visited, model calls (model, tokens, latency, fallbacks,
    cost) and tool calls, with totals. Kept with the run once it has ended; a run still
    pending or running has no spans yet. Not part of LangGraph Platform's API."""
    return await services.traces.get(principal.tenant_id, thread_uuid(thread_id), run_uuid(run_id))


@run_records.delete("/threads/{thread_id}/runs/{run_id}", status_code=204)
async def delete_run(
    thread_id: str, run_id: str, services: ServicesDep, principal: RunPrincipal
) -> Response:
    thread_id, run_id = thread_uuid(thread_id), run_uuid(run_id)
    await call(services.orchestrator.delete_run.remote(principal, thread_id, run_id))
    return Response(status_code=204)


@run_records.post("/threads/{thread_id}/runs/{run_id}/cancel")
async def cancel_run(
    thread_id: str,
    run_id: str,
    request: Request,
    services: ServicesDep,
    principal: RunPrincipal,
    wait: str | None = None,
    action: str = "interrupt",
) -> Response:
    thread_id, run_id = thread_uuid(thread_id), run_uuid(run_id)
    chosen: Action = "rollback" if action == "rollback" else "interrupt"
    if not flag(wait):  # no slot: a tenant holding all its streams can still cancel
        await call(services.orchestrator.cancel.remote(principal, thread_id, [run_id], chosen))
        return Response(status_code=202)
    async with holding(request, services, principal) as slot:  # it waits: it holds a slot
        await call(services.orchestrator.cancel.remote(principal, thread_id, [run_id], chosen))
        outcome: RunOutcome = await held(
            slot, call(services.orchestrator.join.remote(principal, thread_id, run_id))
        )
    return wait_response(outcome, 0.0, thread_id)


@run_records.post("/runs/cancel", status_code=204)
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
        value = {"thread_id": None, "action": chosen, "metadata": {"status": query.status}}
        allowed = await services.guard.authorize(principal, "threads", "update", value)
        # Under an auth filter, only the runs on threads it lets the caller see.
        ids = (
            None
            if allowed is None
            else await services.runs.in_flight(principal.tenant_id, status, allowed)
        )
        await call(
            services.orchestrator.cancel.remote(principal, None, ids, chosen, status or "all")
        )
        return Response(status_code=204)
    if not query.thread_id or query.run_ids is None:
        raise InvalidRequest(
            "Must provide either a status, an assistant_id, or both 'thread_id' and 'run_ids'"
        )
    run_ids = [run_uuid(r) for r in query.run_ids]
    update = Check("threads", "update", "thread")
    await services.guard.check(principal, update, thread_uuid(query.thread_id), {"action": chosen})
    await call(
        services.orchestrator.cancel.remote(
            principal, thread_uuid(query.thread_id), run_ids, chosen
        )
    )
    return Response(status_code=204)
