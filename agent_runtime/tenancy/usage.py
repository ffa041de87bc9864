"""The usage ledger: one row per model call (tokens, model, latency, cost), and its totals.

:class:`UsageLedger` writes to table ``agent_usage`` over the metadata store's engine,
Postgres or SQLite. The router calls :meth:`UsageLedger.record` once per provider call
(after :meth:`agent_runtime.tenancy.budgets.BudgetGuard.settle`), the ``/usage`` routes and the CLI
call
:meth:`UsageLedger.totals` and :meth:`UsageLedger.all_tenants`; the budget guard sums a
window's spend (:meth:`UsageLedger.cost_micro_usd`) when its Redis counter was lost.

Costs are stored as integer micro-dollars (``cost_micro_usd``;
:func:`agent_runtime.config.pricing.to_micros` rounds half-even), so sums are exact on both
backends. Each row also keeps its UTC day
(``usage_day``, ``YYYY-MM-DD``): day and month buckets are a GROUP BY on that column (or
its first 7 characters), the same SQL on both dialects, served by the
``(tenant_id, usage_day)`` index.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator
from sqlalchemy import ColumnElement, func, insert, select

from agent_runtime.config.pricing import from_micros, to_micros
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.db.tables import USAGE, utcnow

Period = Literal["day", "month"]
GroupField = Literal["model", "alias", "key_id", "tenant_id"]
GROUP_FIELDS: tuple[GroupField, ...] = ("model", "alias", "key_id", "tenant_id")


class UsageEvent(BaseModel):
    """One model call. ``outcome`` is the router's (``ok``, ``error``, ...); failed calls
    are recorded too, with whatever tokens and cost the provider charged (often 0)."""

    tenant_id: str
    key_id: str | None = None
    thread_id: str | None = None
    run_id: str | None = None
    model: str = Field(description="The provider model that answered (or was tried).")
    alias: str | None = Field(default=None, description="What the caller asked for.")
    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    latency_ms: float = Field(default=0.0, ge=0)
    cost_usd: Decimal = Field(default=Decimal(0), ge=0)
    outcome: str = "ok"
    created_at: datetime = Field(default_factory=utcnow)

    @field_validator("created_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("created_at must be timezone-aware")
        return value


class UsageTotals(BaseModel):
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_micro_usd: int = 0

    @property
    def cost_usd(self) -> Decimal:
        return from_micros(self.cost_micro_usd)

    def add(self, other: UsageTotals) -> None:
        self.calls += other.calls
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cost_micro_usd += other.cost_micro_usd

    def as_json(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": float(self.cost_usd),
        }


class UsageRow(UsageTotals):
    """Totals of one bucket: a period (``2026-12-02`` or ``2026-12``, None when not
    bucketed by period) and the values of the grouped fields (None when not grouped)."""

    period: str | None = None
    tenant_id: str | None = None
    model: str | None = None
    alias: str | None = None
    key_id: str | None = None

    def as_json(self) -> dict[str, Any]:
        keys = {"period": self.period}
        for name in GROUP_FIELDS:
            keys[name] = getattr(self, name)
        return {**{k: v for k, v in keys.items() if v is not None}, **super().as_json()}


class UsageReport(BaseModel):
    """What :meth:`UsageLedger.totals` answers: rows sorted by period then group, and
    their grand total."""

    rows: list[UsageRow]
    total: UsageTotals

    def as_json(self) -> dict[str, Any]:
        return {"totals": self.total.as_json(), "rows": [row.as_json() for row in self.rows]}


class UsageLedger:
    """The ledger over a :class:`MetadataStore` (which must be set up); holds no state."""

    def __init__(self, store: MetadataStore) -> None:
        self._store = store

    async def record(self, event: UsageEvent) -> str:
        """Append one call: a single INSERT in its own transaction. Returns the row id.

        Raises :class:`DependencyUnavailable` when the database is down; the router may
        run this after answering (it is not on the response's critical path).
        """
        event_id = str(uuid.uuid4())
        created = event.created_at
        async with self._store.transaction() as conn:
            await conn.execute(
                insert(USAGE).values(
                    event_id=event_id,
                    tenant_id=event.tenant_id,
                    key_id=event.key_id,
                    thread_id=event.thread_id,
                    run_id=event.run_id,
                    model=event.model,
                    alias=event.alias,
                    input_tokens=event.input_tokens,
                    output_tokens=event.output_tokens,
                    latency_ms=event.latency_ms,
                    cost_micro_usd=to_micros(event.cost_usd),
                    outcome=event.outcome,
                    usage_day=day_of(created),
                    created_at=created,
                )
            )
        return event_id

    async def totals(
        self,
        tenant_id: str,
        *,
        since: date | None = None,
        until: date | None = None,
        period: Period | None = "day",
        group_by: Sequence[GroupField] = ("model",),
    ) -> UsageReport:
        """One tenant's calls, tokens and cost from ``since`` to ``until`` (UTC days, both
        inclusive; None: unbounded), in ``period`` buckets (None: one bucket for the range)
        and by the ``group_by`` fields (empty: none)."""
        return await self._query(tenant_id, since, until, period, group_by)

    async def all_tenants(
        self,
        *,
        since: date | None = None,
        until: date | None = None,
        period: Period | None = "day",
        group_by: Sequence[GroupField] = ("tenant_id", "model"),
    ) -> UsageReport:
        """The admin view: :meth:`totals` over every tenant (grouped by tenant by default)."""
        return await self._query(None, since, until, period, group_by)

    async def run_cost(self, tenant_id: str, run_id: str) -> Decimal:
        """What one run's model calls cost, summed over its ledger rows."""
        query = select(func.coalesce(func.sum(USAGE.c.cost_micro_usd), 0)).where(
            USAGE.c.tenant_id == tenant_id, USAGE.c.run_id == run_id
        )
        async with self._store.transaction() as conn:
            micros = (await conn.execute(query)).scalar_one()
        return from_micros(int(micros))

    async def cost_micro_usd(
        self, tenant_id: str, *, key_id: str | None = None, since: date, before: date
    ) -> int:
        """What the tenant's calls (with ``key_id``: that key's only) cost on the UTC days
        from ``since`` up to, not including, ``before``, in micro-dollars: a budget
        window's spend as the ledger has it, which
        :class:`~agent_runtime.tenancy.budgets.BudgetGuard` seeds lost counters from."""
        query = select(func.coalesce(func.sum(USAGE.c.cost_micro_usd), 0)).where(
            USAGE.c.tenant_id == tenant_id,
            USAGE.c.usage_day >= since.isoformat(),
            USAGE.c.usage_day < before.isoformat(),
        )
        if key_id is not None:
            query = query.where(USAGE.c.key_id == key_id)
        async with self._store.transaction() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def _query(
        self,
        tenant_id: str | None,
        since: date | None,
        until: date | None,
        period: Period | None,
        group_by: Sequence[GroupField],
    ) -> UsageReport:
        fields = list(dict.fromkeys(group_by))
        for name in fields:
            if name not in GROUP_FIELDS:
                raise ValueError(f"cannot group usage by {name!r}")
        if since is not None and until is not None and since > until:
            raise ValueError("since must not be after until")
        keys: list[ColumnElement[Any]] = []
        if period == "day":
            keys.append(USAGE.c.usage_day.label("period"))
        elif period == "month":
            keys.append(func.substr(USAGE.c.usage_day, 1, 7).label("period"))
        keys.extend(USAGE.c[name].label(name) for name in fields)
        query = select(
            *keys,
            func.count().label("calls"),
            func.coalesce(func.sum(USAGE.c.input_tokens), 0).label("input_tokens"),
            func.coalesce(func.sum(USAGE.c.output_tokens), 0).label("output_tokens"),
            func.coalesce(func.sum(USAGE.c.cost_micro_usd), 0).label("cost_micro_usd"),
        )
        if tenant_id is not None:
            query = query.where(USAGE.c.tenant_id == tenant_id)
        if since is not None:
            query = query.where(USAGE.c.usage_day >= since.isoformat())
        if until is not None:
            query = query.where(USAGE.c.usage_day <= until.isoformat())
        if keys:
            query = query.group_by(*keys)
        async with self._store.transaction() as conn:
            result = await conn.execute(query)
            records = result.mappings().all()
        rows: list[UsageRow] = []
        total = UsageTotals()
        for record in records:
            values = {k: (int(v) if k in _SUMS else v) for k, v in record.items()}
            if not keys and values["calls"] == 0:
                continue  # an aggregate over no rows still answers one row
            row = UsageRow.model_validate(values)
            total.add(row)
            rows.append(row)
        # Sorted here: the dialects disagree on where NULLs sort.
        rows.sort(key=lambda r: (r.period or "", *(getattr(r, n) or "" for n in fields)))
        return UsageReport(rows=rows, total=total)


_SUMS = frozenset({"calls", "input_tokens", "output_tokens", "cost_micro_usd"})


def day_of(moment: datetime) -> str:
    """The UTC day of an aware datetime, as the ledger stores it (``YYYY-MM-DD``)."""
    return moment.astimezone(UTC).date().isoformat()
