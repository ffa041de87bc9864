"""The admin API: tenants, keys, limits, budgets and the audit log (``/admin/...``).

Every route needs :data:`agent_runtime.api.deps.AdminPrincipal` (the bootstrap
``AGENT_ADMIN_API_KEY`` or an ``admin``-scoped key) and every change is written to the
audit log with who made it. A created or rotated key is in the response once, as ``key``;
only its hash is stored, and listings show its id and prefix.

* ``POST /admin/tenants`` ``{"tenant_id", "name"?}`` (201), ``GET /admin/tenants``,
  ``GET /admin/tenants/{id}``, ``POST /admin/tenants/{id}/disable`` and ``.../enable``
* ``POST /admin/tenants/{id}/keys`` ``{"name"?, "scopes"?}`` (201, the key once),
  ``GET /admin/tenants/{id}/keys``, ``POST /admin/keys/{key_id}/rotate`` (the new key
  once), ``POST /admin/keys/{key_id}/revoke``
* ``PUT`` / ``GET /admin/tenants/{id}/limits`` (null fields: the runtime's defaults)
* ``PUT /admin/tenants/{id}/budgets`` ``{"period", "usd", "key_id"?}``, ``GET`` them,
  ``DELETE ...?period=day[&key_id=...]``
* ``GET /admin/audit`` (``tenant_id``, ``action`` (``key.`` for a prefix), ``since``,
  ``limit``, ``offset``), newest first

Revoking or rotating a key and disabling a tenant reach every ingress replica at once
when Redis is configured and within ``AGENT_AUTH_CACHE_TTL_S`` (2 s) otherwise.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from agent_runtime.api.deps import AdminPrincipal, ServicesDep
from agent_runtime.core.records import ApiKeyRecord, Scope, Tenant, TenantLimits
from agent_runtime.protocol.agent_protocol import MAX_OFFSET
from agent_runtime.tenancy.audit import AuditEntry
from agent_runtime.tenancy.auth import key_prefix
from agent_runtime.tenancy.budget_rows import MAX_LIMIT_USD, Budget, BudgetPeriod
from agent_runtime.tenancy.tenants import TenantAdmin

admin = APIRouter(prefix="/admin", tags=["admin"])
SHOWN_ONCE = "shown once: store it now; only its hash is kept and it cannot be shown again"


def get_admin(services: ServicesDep) -> TenantAdmin:
    guard = services.budgets
    return TenantAdmin(
        services.store,
        forget_key=services.forget_key,
        forget_tenant=services.forget_tenant,
        on_budget_change=guard.invalidate if guard is not None else None,
    )


AdminDep = Annotated[TenantAdmin, Depends(get_admin)]


class TenantCreate(BaseModel):
    tenant_id: str = Field(min_length=1, max_length=128)
    name: str | None = Field(default=None, max_length=256)


class KeyCreate(BaseModel):
    name: str = Field(default="", max_length=256)
    scopes: list[Scope] | None = Field(default=None, description="Default: read and run.")


class BudgetSet(BaseModel):
    period: BudgetPeriod
    usd: Decimal = Field(ge=0, le=MAX_LIMIT_USD, allow_inf_nan=False)
    key_id: str | None = None


def _tenant(tenant: Tenant) -> dict[str, Any]:
    return tenant.model_dump(mode="json")


def _key(record: ApiKeyRecord) -> dict[str, Any]:
    """A key as listings show it: never the hash, never the secret."""
    return {
        "key_id": record.key_id,
        "prefix": key_prefix(record.key_id),
        "tenant_id": record.tenant_id,
        "name": record.name,
        "scopes": list(record.scopes),
        "created_at": record.created_at.isoformat(),
        "revoked": record.revoked,
    }


def _new_key(raw: str, record: ApiKeyRecord) -> dict[str, Any]:
    return {**_key(record), "key": raw, "warning": SHOWN_ONCE}


def _budget(budget: Budget) -> dict[str, Any]:
    return {
        "tenant_id": budget.tenant_id,
        "scope": budget.scope,
        "key_id": budget.key_id,
        "period": budget.period,
        "limit_usd": float(budget.limit_usd),
        "label": budget.label,
    }


def _limits(tenant_id: str, limits: TenantLimits) -> dict[str, Any]:
    return {"tenant_id": tenant_id, **limits.model_dump()}


# -- tenants ---------------------------------------------------------------------------
@admin.post("/tenants", status_code=201)
async def create_tenant(
    body: TenantCreate, actor: AdminPrincipal, tenants: AdminDep
) -> dict[str, Any]:
    return _tenant(await tenants.create_tenant(actor, body.tenant_id, body.name))


@admin.get("/tenants")
async def list_tenants(
    _actor: AdminPrincipal,
    tenants: AdminDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> list[dict[str, Any]]:
    return [_tenant(t) for t in await tenants.tenants.list_tenants(limit, offset)]


@admin.get("/tenants/{tenant_id}")
async def get_tenant(tenant_id: str, _actor: AdminPrincipal, tenants: AdminDep) -> dict[str, Any]:
    return _tenant(await tenants.tenants.require_tenant(tenant_id))


@admin.post("/tenants/{tenant_id}/disable")
async def disable_tenant(
    tenant_id: str, actor: AdminPrincipal, tenants: AdminDep
) -> dict[str, Any]:
    return _tenant(await tenants.set_disabled(actor, tenant_id, True))


@admin.post("/tenants/{tenant_id}/enable")
async def enable_tenant(tenant_id: str, actor: AdminPrincipal, tenants: AdminDep) -> dict[str, Any]:
    return _tenant(await tenants.set_disabled(actor, tenant_id, False))


# -- keys ------------------------------------------------------------------------------
@admin.post("/tenants/{tenant_id}/keys", status_code=201)
async def create_key(
    tenant_id: str, actor: AdminPrincipal, tenants: AdminDep, body: KeyCreate | None = None
) -> dict[str, Any]:
    body = body or KeyCreate()
    return _new_key(*await tenants.create_key(actor, tenant_id, body.name, body.scopes))


@admin.get("/tenants/{tenant_id}/keys")
async def list_keys(
    tenant_id: str, _actor: AdminPrincipal, tenants: AdminDep
) -> list[dict[str, Any]]:
    return [_key(k) for k in await tenants.list_keys(tenant_id)]


@admin.post("/keys/{key_id}/rotate")
async def rotate_key(key_id: str, actor: AdminPrincipal, tenants: AdminDep) -> dict[str, Any]:
    return _new_key(*await tenants.rotate_key(actor, key_id))


@admin.post("/keys/{key_id}/revoke")
async def revoke_key(key_id: str, actor: AdminPrincipal, tenants: AdminDep) -> dict[str, Any]:
    return _key(await tenants.revoke_key(actor, key_id))


# -- limits and budgets ----------------------------------------------------------------
@admin.put("/tenants/{tenant_id}/limits")
async def set_limits(
    tenant_id: str, body: TenantLimits, actor: AdminPrincipal, tenants: AdminDep
) -> dict[str, Any]:
    return _limits(tenant_id, await tenants.set_limits(actor, tenant_id, body))


@admin.get("/tenants/{tenant_id}/limits")
async def get_limits(tenant_id: str, _actor: AdminPrincipal, tenants: AdminDep) -> dict[str, Any]:
    await tenants.tenants.require_tenant(tenant_id)
    return _limits(tenant_id, await tenants.tenants.get_limits(tenant_id))


@admin.put("/tenants/{tenant_id}/budgets")
async def set_budget(
    tenant_id: str, body: BudgetSet, actor: AdminPrincipal, tenants: AdminDep
) -> dict[str, Any]:
    budget = await tenants.set_budget(actor, tenant_id, body.period, body.usd, body.key_id)
    return _budget(budget)


@admin.get("/tenants/{tenant_id}/budgets")
async def list_budgets(
    tenant_id: str, _actor: AdminPrincipal, tenants: AdminDep
) -> list[dict[str, Any]]:
    await tenants.tenants.require_tenant(tenant_id)
    return [_budget(b) for b in await tenants.budgets.list_budgets(tenant_id)]


@admin.delete("/tenants/{tenant_id}/budgets", status_code=204)
async def delete_budget(
    tenant_id: str,
    actor: AdminPrincipal,
    tenants: AdminDep,
    period: Annotated[BudgetPeriod, Query()],
    key_id: Annotated[str | None, Query()] = None,
) -> None:
    await tenants.delete_budget(actor, tenant_id, period, key_id)


# -- audit -----------------------------------------------------------------------------
@admin.get("/audit")
async def audit_log(
    _actor: AdminPrincipal,
    tenants: AdminDep,
    tenant_id: Annotated[str | None, Query()] = None,
    action: Annotated[str | None, Query(description="Exact, or a prefix ending in '.'")] = None,
    since: Annotated[datetime | None, Query(description="ISO 8601, with a time zone")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> dict[str, Any]:
    entries: list[AuditEntry] = await tenants.audit.search(
        tenant_id=tenant_id, action=action, since=since, limit=limit, offset=offset
    )
    return {"entries": [e.model_dump(mode="json") for e in entries]}
