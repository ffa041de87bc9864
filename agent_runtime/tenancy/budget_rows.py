"""Spending budgets as rows of ``agent_budgets``: what a budget is, and setting, listing and
deleting them (:class:`BudgetStore`).

A tenant budget limits every call of the tenant; a key budget limits the calls made with
that key, on top of the tenant's. Limits are kept in integer micro-dollars. Enforcing them
is :class:`agent_runtime.tenancy.budgets.BudgetGuard`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Literal, Protocol

from pydantic import BaseModel
from sqlalchemy import ColumnElement, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from agent_runtime.config.pricing import format_usd, from_micros, to_micros
from agent_runtime.core.errors import NotFound
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.db.tables import API_KEYS, BUDGETS, TENANTS, utcnow

Scope = Literal["tenant", "key"]
BudgetPeriod = Literal["day", "month"]
PERIODS: tuple[BudgetPeriod, ...] = ("day", "month")
# Limits are stored as integer micro-dollars in a 64-bit column: a trillion dollars fits.
MAX_LIMIT_USD = Decimal(1_000_000_000_000)


# -- the budgets (database) -------------------------------------------------------------
class Budget(BaseModel):
    """One spending limit: ``key_id`` is None for a tenant budget."""

    tenant_id: str
    scope: Scope
    key_id: str | None = None
    period: BudgetPeriod
    limit_micro_usd: int
    created_at: datetime
    updated_at: datetime

    @property
    def limit_usd(self) -> Decimal:
        return from_micros(self.limit_micro_usd)

    @property
    def label(self) -> str:
        """``tenant acme, daily, $5.00`` or ``key k1 of tenant acme, monthly, $20.00``."""
        who = f"tenant {self.tenant_id}"
        if self.scope == "key":
            who = f"key {self.key_id} of {who}"
        every = "daily" if self.period == "day" else "monthly"
        return f"{who}, {every}, {format_usd(self.limit_micro_usd)}"

    def applies_to(self, key_id: str | None) -> bool:
        return self.scope == "tenant" or (key_id is not None and self.key_id == key_id)


class BudgetSource(Protocol):
    """Where a guard reads budgets from (:class:`BudgetStore`, or a fixed list in tests)."""

    async def list_budgets(self, tenant_id: str) -> list[Budget]: ...


def _row_to_budget(row: Mapping[str, object]) -> Budget:
    values = dict(row)
    values["key_id"] = values["key_id"] or None
    return Budget.model_validate(values)


def _pk(tenant_id: str, period: str, key_id: str | None) -> tuple[ColumnElement[bool], ...]:
    return (
        BUDGETS.c.tenant_id == tenant_id,
        BUDGETS.c.scope == ("key" if key_id else "tenant"),
        BUDGETS.c.key_id == (key_id or ""),
        BUDGETS.c.period == period,
    )


class BudgetStore:
    """Budgets in table ``agent_budgets`` of a (set up) :class:`MetadataStore`."""

    def __init__(self, store: MetadataStore) -> None:
        self._store = store

    async def set_budget(
        self,
        tenant_id: str,
        period: BudgetPeriod,
        limit_usd: Decimal | float | int | str,
        *,
        key_id: str | None = None,
    ) -> Budget:
        """Create or replace the tenant's (or, with ``key_id``, that key's) budget for
        ``period``. NotFound when the tenant does not exist or the key is not the tenant's.
        """
        if period not in PERIODS:
            raise ValueError(f"period must be one of {PERIODS}, got {period!r}")
        if not Decimal(0) <= Decimal(str(limit_usd)) <= MAX_LIMIT_USD:
            raise ValueError(f"a budget's limit must be between 0 and {MAX_LIMIT_USD} USD")
        limit = to_micros(Decimal(str(limit_usd)))
        try:
            return await self._upsert(tenant_id, period, limit, key_id)
        except IntegrityError:
            # Postgres: another process inserted the same budget first; now it updates.
            return await self._upsert(tenant_id, period, limit, key_id)

    async def _upsert(
        self, tenant_id: str, period: BudgetPeriod, limit: int, key_id: str | None
    ) -> Budget:
        now = utcnow()
        async with self._store.transaction(write_lock=True) as conn:
            if key_id:
                owner = await conn.execute(
                    select(API_KEYS.c.tenant_id).where(API_KEYS.c.key_id == key_id)
                )
                if owner.scalar_one_or_none() != tenant_id:
                    raise NotFound(f"api key {key_id} of tenant {tenant_id} not found")
            else:
                tenant = await conn.execute(
                    select(TENANTS.c.tenant_id).where(TENANTS.c.tenant_id == tenant_id)
                )
                if tenant.first() is None:
                    raise NotFound(f"tenant {tenant_id} not found")
            result = await conn.execute(
                update(BUDGETS)
                .where(*_pk(tenant_id, period, key_id))
                .values(limit_micro_usd=limit, updated_at=now)
                .returning(*BUDGETS.c)
            )
            row = result.mappings().one_or_none()
            if row is None:
                values = {
                    "tenant_id": tenant_id,
                    "scope": "key" if key_id else "tenant",
                    "key_id": key_id or "",
                    "period": period,
                    "limit_micro_usd": limit,
                    "created_at": now,
                    "updated_at": now,
                }
                await conn.execute(insert(BUDGETS).values(**values))
                return _row_to_budget(values)
        return _row_to_budget(dict(row))

    async def list_budgets(self, tenant_id: str) -> list[Budget]:
        """The tenant's budgets and its keys', tenant first, then by key, day before month."""
        async with self._store.transaction() as conn:
            result = await conn.execute(select(BUDGETS).where(BUDGETS.c.tenant_id == tenant_id))
            rows = result.mappings().all()
        budgets = [_row_to_budget(dict(row)) for row in rows]
        return sorted(budgets, key=_budget_order)

    async def delete_budget(
        self, tenant_id: str, period: BudgetPeriod, *, key_id: str | None = None
    ) -> None:
        async with self._store.transaction() as conn:
            result = await conn.execute(delete(BUDGETS).where(*_pk(tenant_id, period, key_id)))
            if result.rowcount == 0:
                who = f"key {key_id}" if key_id else f"tenant {tenant_id}"
                raise NotFound(f"no {period} budget for {who}")


def _budget_order(budget: Budget) -> tuple[int, str, int]:
    return (budget.scope == "key", budget.key_id or "", PERIODS.index(budget.period))
