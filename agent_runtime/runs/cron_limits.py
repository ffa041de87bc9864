"""What crons may cost: a minimum interval between two runs of one cron, and a number of
crons per tenant (``AGENT_CRON_MIN_INTERVAL_S``, ``AGENT_CRON_MAX_PER_TENANT``).

Without them one key could make the scheduler start a run every second, or hold
thousands of crons (issue 13, defect 4). A schedule is checked when a cron is created or
its schedule changed (422 naming ``schedule``); the count when one is created, under the
tenant's row lock (Postgres; SQLite serialises every writer), so racing creations never
pass it (429, ``limit`` ``crons``).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

from croniter import croniter
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from agent_runtime.core.errors import InvalidRequest, RateLimited
from agent_runtime.db.tables import CRONS, TENANTS

CRONS_LIMIT = "crons"
DAY_S = 86_400
# How long a refused caller is told to wait: a cron's place frees when one is deleted.
RETRY_AFTER_S = 60.0


@dataclass(frozen=True, slots=True)
class CronLimits:
    """``min_interval_s``: 0 allows any schedule; ``max_per_tenant``: None, no limit."""

    min_interval_s: float = 0.0
    max_per_tenant: int | None = None


def _values(field: list[int | str], size: int) -> list[int]:
    # croniter expands every field but writes an unrestricted one as ["*"].
    return list(range(size)) if field == ["*"] else sorted(int(v) for v in field)


def shortest_interval_s(schedule: str) -> int:
    """The shortest time between two runs of a valid ``schedule``, in seconds.

    From its hour, minute and (sixth) second fields: the gaps within a minute, between two
    minutes of the day that fire, and from the day's last run to the next day's first (as
    if the next day fired too: day and weekday fields only ever lengthen gaps).
    """
    fields = croniter(schedule).expanded
    minutes, hours = _values(fields[0], 60), _values(fields[1], 24)
    seconds = _values(fields[5], 60) if len(fields) > 5 else [0]
    day = [h * 60 + m for h in hours for m in minutes]  # minutes of the day that fire
    within_minute = min((b - a for a, b in pairwise(seconds)), default=DAY_S)
    # From a minute's last second to the next firing minute's first.
    span = seconds[-1] - seconds[0]
    following = [*day[1:], day[0] + DAY_S // 60]
    between = min((b - a) * 60 - span for a, b in zip(day, following, strict=True))
    return min(within_minute, between)


def check_interval(schedule: str, limits: CronLimits) -> None:
    """422 naming ``schedule`` when it would fire more often than ``min_interval_s``."""
    if limits.min_interval_s <= 0:
        return
    try:
        shortest = shortest_interval_s(schedule)
    except (ValueError, TypeError):  # a field croniter accepts but does not list as numbers
        raise InvalidRequest(
            f"Invalid cron schedule: '{schedule}': its minute, hour and second fields must "
            "be numbers, ranges, steps or '*' on this server",
            field="schedule",
        ) from None
    if shortest < limits.min_interval_s:
        raise InvalidRequest(
            f"Invalid cron schedule: '{schedule}' runs {shortest} s apart; crons may run at "
            f"most once every {limits.min_interval_s:g} s on this server "
            "(AGENT_CRON_MIN_INTERVAL_S)",
            field="schedule",
            minimum_interval_s=limits.min_interval_s,
        )


async def check_count(
    conn: AsyncConnection, tenant_id: str, limits: CronLimits, *, postgres: bool
) -> None:
    """429 (``limit`` ``crons``) when the tenant already has ``max_per_tenant`` crons;
    call it in the transaction that inserts the new one."""
    cap = limits.max_per_tenant
    if cap is None:
        return
    if postgres:
        await conn.execute(
            select(TENANTS.c.tenant_id).where(TENANTS.c.tenant_id == tenant_id).with_for_update()
        )
    count = select(func.count()).select_from(CRONS).where(CRONS.c.tenant_id == tenant_id)
    held = int((await conn.execute(count)).scalar_one())
    if held >= cap:
        raise RateLimited(
            f"this tenant may have at most {cap} crons (AGENT_CRON_MAX_PER_TENANT) and has "
            f"{held}; delete one first",
            retry_after=RETRY_AFTER_S,
            limit=CRONS_LIMIT,
            maximum=cap,
            remaining=0,
        )
