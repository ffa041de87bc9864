"""Cron routes (``client.crons``), answered by the ingress from the database.

``agent_runtime/runs/crons.py`` owns the behaviour; the orchestrators' scheduler
(``agent_runtime/runs/cron_scheduler.py``) starts the runs. Creating or changing a cron needs the
``run`` scope (it starts runs), reading one ``read``. The app's own auth handlers
(``agent_runtime.api.route_auth``) decide about each cron, or filter searches.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from agent_runtime.api.deps import ReadPrincipal, RunPrincipal, ServicesDep
from agent_runtime.api.route_auth import search_value
from agent_runtime.api.routes.assistant_routes import get_assistants
from agent_runtime.api.routes.thread_routes import thread_uuid
from agent_runtime.core.records import Principal
from agent_runtime.protocol.agent_protocol import require_uuid
from agent_runtime.runs.cron_limits import CronLimits
from agent_runtime.runs.crons import CronCount, CronCreate, CronPatch, CronSearch, CronStore
from agent_runtime.runs.webhooks import WebhookSender

crons = APIRouter(tags=["crons"])

INVALID_CRON = "Invalid cron ID: must be a UUID"


def _crons(services: ServicesDep) -> CronStore:
    """The crons, bound by this server's limits (``AGENT_CRON_*``)."""
    runs = services.settings.runs
    return CronStore(services.store, CronLimits(runs.cron_min_interval_s, runs.cron_max_per_tenant))


async def _check_webhook(services: ServicesDep, url: str) -> None:
    """As a run's webhook is checked, at once rather than at the first scheduled run."""
    runs = services.settings.runs
    sender = WebhookSender(allow_private=runs.webhook_allow_private, enabled=runs.webhooks_enabled)
    await sender.check(url)


async def _create(
    services: ServicesDep, principal: Principal, thread_id: str | None, body: CronCreate
) -> dict[str, Any]:
    body = await services.guard.cron_create(principal, thread_id, body)
    assistant = await get_assistants(services).resolve(principal.tenant_id, body.assistant_id)
    if thread_id is not None:
        await services.store.get_thread(principal.tenant_id, thread_id)
    if body.webhook is not None:
        await _check_webhook(services, body.webhook)
    cron = await _crons(services).create(
        principal.tenant_id, principal.key_id, thread_id, body, assistant
    )
    return cron.to_wire()


@crons.post("/runs/crons")
async def create_cron(
    body: CronCreate, services: ServicesDep, principal: RunPrincipal
) -> dict[str, Any]:
    """A cron whose every run gets a thread of its own (``on_run_completed``)."""
    return await _create(services, principal, None, body)


@crons.post("/threads/{thread_id}/runs/crons")
async def create_thread_cron(
    thread_id: str, body: CronCreate, services: ServicesDep, principal: RunPrincipal
) -> dict[str, Any]:
    """A cron whose runs go to this thread."""
    return await _create(services, principal, thread_uuid(thread_id), body)


@crons.post("/runs/crons/search")
async def search_crons(
    body: CronSearch, services: ServicesDep, principal: ReadPrincipal
) -> Response:
    if body.assistant_id:
        require_uuid(body.assistant_id, "Invalid assistant ID: must be a UUID")
    if body.thread_id:
        require_uuid(body.thread_id, "Invalid thread ID: must be a UUID")
    value = search_value(body, {"assistant_id", "thread_id", "limit", "offset"})
    allowed = await services.guard.authorize(principal, "crons", "search", value)
    page, more = await CronStore(services.store).search(principal.tenant_id, body, allowed)
    headers = {"X-Pagination-Total": str(body.offset + len(page))}
    if more:
        following = body.offset + body.limit
        headers = {"X-Pagination-Total": str(following + 1), "X-Pagination-Next": str(following)}
    return JSONResponse([cron.to_wire(body.select) for cron in page], headers=headers)


@crons.post("/runs/crons/count")
async def count_crons(body: CronCount, services: ServicesDep, principal: ReadPrincipal) -> int:
    if body.assistant_id:
        require_uuid(body.assistant_id, "Invalid assistant ID: must be a UUID")
    if body.thread_id:
        require_uuid(body.thread_id, "Invalid thread ID: must be a UUID")
    value = search_value(body, {"assistant_id", "thread_id"})
    allowed = await services.guard.authorize(principal, "crons", "search", value)
    return await CronStore(services.store).count(principal.tenant_id, body, allowed)


@crons.get("/runs/crons/{cron_id}")
async def get_cron(cron_id: str, services: ServicesDep, principal: ReadPrincipal) -> dict[str, Any]:
    cron = await CronStore(services.store).get(
        principal.tenant_id, require_uuid(cron_id, INVALID_CRON)
    )
    return cron.to_wire()


@crons.patch("/runs/crons/{cron_id}")
async def patch_cron(
    cron_id: str, body: CronPatch, services: ServicesDep, principal: RunPrincipal
) -> dict[str, Any]:
    if body.webhook is not None:
        await _check_webhook(services, body.webhook)
    cron = await _crons(services).update(
        principal.tenant_id, require_uuid(cron_id, INVALID_CRON), body
    )
    return cron.to_wire()


@crons.delete("/runs/crons/{cron_id}", status_code=204)
async def delete_cron(cron_id: str, services: ServicesDep, principal: RunPrincipal) -> Response:
    await CronStore(services.store).delete(principal.tenant_id, require_uuid(cron_id, INVALID_CRON))
    return Response(status_code=204)
