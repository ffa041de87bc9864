"""HTTP routes of cost: a tenant's usage and budgets, and the admins' usage of all tenants.

* ``GET /usage`` — the caller's tenant: calls, tokens in/out and cost, by ``period``
  (``day`` or ``month``) and ``group_by`` (``model``, ``alias``, ``key_id``; repeatable;
  ``none`` for no grouping), from ``since`` to ``until`` (ISO dates, UTC, both inclusive;
  default: the current month so far).
* ``GET /budgets`` — the caller's tenant's budgets (its own and its keys') with the
  current window's spend (reservations in flight included), remaining and reset time.
* ``GET /admin/usage`` — the same report over every tenant (``tenant_id`` narrows it),
  grouped by tenant too. For admins (:data:`agent_runtime.api.deps.AdminPrincipal`): the
  bootstrap ``AGENT_ADMIN_API_KEY`` (``x-admin-key`` or ``Authorization: Bearer``) or an
  ``admin``-scoped API key; with neither, 404 as if absent (bootstrap key unset) or 401.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from agent_runtime.api.deps import AdminPrincipal, ReadPrincipal, ServicesDep
from agent_runtime.config.pricing import from_micros
from agent_runtime.core.errors import InvalidRequest
from agent_runtime.tenancy.budgets import BudgetGuard, BudgetStatus, build_budget_guard, iso_z
from agent_runtime.tenancy.usage import GroupField, UsageLedger, UsageReport

usage = APIRouter(tags=["usage"])

GroupParam = Literal["model", "alias", "key_id", "none"]
_GROUPS: dict[str, GroupField] = {"model": "model", "alias": "alias", "key_id": "key_id"}


def get_budget_guard(services: ServicesDep) -> BudgetGuard:
    """The replica's guard (built on first use when the ingress did not set one)."""
    if services.budgets is None:
        services.budgets = build_budget_guard(
            services.settings.limits, services.settings.budgets, services.store
        )
    return services.budgets


BudgetGuardDep = Annotated[BudgetGuard, Depends(get_budget_guard)]


class UsageQuery:
    """The query parameters both usage routes share."""

    def __init__(
        self,
        since: Annotated[date | None, Query(description="First UTC day (inclusive).")] = None,
        until: Annotated[date | None, Query(description="Last UTC day (inclusive).")] = None,
        period: Annotated[Literal["day", "month"], Query()] = "day",
        group_by: Annotated[list[GroupParam] | None, Query()] = None,
    ) -> None:
        today = datetime.now(UTC).date()
        self.until = until or today
        self.since = since or min(self.until, today).replace(day=1)
        if self.since > self.until:
            raise InvalidRequest("since must not be after until", field="since")
        self.period: Literal["day", "month"] = period
        chosen = group_by if group_by is not None else ["model"]
        self.group_by = [_GROUPS[g] for g in chosen if g in _GROUPS]

    def body(self, report: UsageReport, **scope: Any) -> dict[str, Any]:
        return {
            **scope,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "period": self.period,
            "group_by": self.group_by,
            **report.as_json(),
        }


UsageQueryDep = Annotated[UsageQuery, Depends()]


@usage.get("/usage")
async def tenant_usage(
    principal: ReadPrincipal, services: ServicesDep, query: UsageQueryDep
) -> dict[str, Any]:
    report = await UsageLedger(services.store).totals(
        principal.tenant_id,
        since=query.since,
        until=query.until,
        period=query.period,
        group_by=query.group_by,
    )
    return query.body(report, tenant_id=principal.tenant_id)


@usage.get("/budgets")
async def tenant_budgets(principal: ReadPrincipal, guard: BudgetGuardDep) -> dict[str, Any]:
    statuses = await guard.status(principal.tenant_id)
    return {"tenant_id": principal.tenant_id, "budgets": [_budget_json(s) for s in statuses]}


@usage.get("/admin/usage")
async def admin_usage(
    _admin: AdminPrincipal,
    services: ServicesDep,
    query: UsageQueryDep,
    tenant_id: Annotated[str | None, Query(description="Only this tenant.")] = None,
) -> dict[str, Any]:
    ledger = UsageLedger(services.store)
    if tenant_id is not None:
        fields: list[GroupField] = ["tenant_id", *query.group_by]
        report = await ledger.totals(
            tenant_id, since=query.since, until=query.until, period=query.period, group_by=fields
        )
    else:
        report = await ledger.all_tenants(
            since=query.since,
            until=query.until,
            period=query.period,
            group_by=["tenant_id", *query.group_by],
        )
    return query.body(report, tenant_id=tenant_id)


def _budget_json(status: BudgetStatus) -> dict[str, Any]:
    budget = status.budget
    return {
        "scope": budget.scope,
        "key_id": budget.key_id,
        "period": budget.period,
        "limit_usd": float(budget.limit_usd),
        "spent_usd": float(from_micros(status.spent_micro_usd)),
        "remaining_usd": float(from_micros(status.remaining_micro_usd)),
        "window_start": iso_z(status.window_start),
        "resets_at": iso_z(status.resets_at),
        "label": budget.label,
    }
