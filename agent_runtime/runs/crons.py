"""Crons: runs on a schedule (``client.crons``), per tenant, kept in ``agent_crons``.

A cron holds a run's payload (what ``POST /runs`` takes) and a cron schedule
(``minute hour day month weekday``, or six fields with seconds last, as croniter reads
them), in UTC or an IANA ``timezone``. On a thread (``/threads/{id}/runs/crons``) each
run goes to that thread; without one each run gets a thread of its own, deleted after
the run (``on_run_completed: "delete"``, the default) or kept (``"keep"``). A cron runs
from its next date until ``end_time``; ``enabled: false`` pauses it. The schedule's
dates are computed from "now" each time: dates missed while nothing ran are skipped,
not made up. :mod:`agent_runtime.runs.cron_scheduler` starts the runs.

The API's shapes and messages are LangGraph Platform's (langgraph-api's in-memory
runtime): creation resolves the assistant (graph ids too) and stores its UUID, a
``PATCH`` merges the payload and metadata, a changed schedule or time zone moves the
next date, an explicit ``end_time: null`` clears it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import ColumnElement, delete, func, insert, select, update

from agent_runtime.core.errors import BadRequest, InvalidRequest, NotFound
from agent_runtime.core.metadata_filter import MetadataFilter
from agent_runtime.core.records import AssistantRecord
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.db.tables import CRONS, utcnow
from agent_runtime.protocol.agent_protocol import MAX_OFFSET, RunCreate, SortOrder
from agent_runtime.runs.cron_limits import CronLimits, check_count, check_interval
from agent_runtime.runs.thread_rows import allowed_by, json_contains

OnRunCompleted = Literal["delete", "keep"]
CronSortBy = Literal[
    "cron_id", "assistant_id", "thread_id", "next_run_date", "end_time", "created_at", "updated_at"
]
CronField = Literal[
    "cron_id",
    "assistant_id",
    "thread_id",
    "on_run_completed",
    "end_time",
    "schedule",
    "timezone",
    "created_at",
    "updated_at",
    "user_id",
    "payload",
    "next_run_date",
    "metadata",
    "enabled",
]
# What a cron's body holds besides the run's payload.
CRON_ONLY = frozenset({"schedule", "timezone", "end_time", "on_run_completed", "enabled"})


class _CronFields(BaseModel):
    # Not strict: end_time arrives as ISO text in JSON bodies.
    model_config = ConfigDict(extra="ignore")

    schedule: str = Field(max_length=256)
    timezone: str | None = Field(default=None, max_length=64)
    end_time: datetime | None = None
    on_run_completed: OnRunCompleted | None = None
    enabled: bool = True


class CronCreate(_CronFields):
    """``POST /runs/crons`` and ``/threads/{id}/runs/crons``: a schedule and a run."""

    assistant_id: str = Field(max_length=256)
    input: Any = None
    metadata: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    webhook: str | None = None
    interrupt_before: Literal["*"] | list[str] | None = None
    interrupt_after: Literal["*"] | list[str] | None = None
    multitask_strategy: Literal["reject", "rollback", "interrupt", "enqueue"] | None = None
    stream_mode: str | list[str] | None = None
    stream_subgraphs: bool | None = None
    stream_resumable: bool | None = None
    durability: Literal["sync", "async", "exit"] | None = None


class CronPatch(BaseModel):
    """``PATCH /runs/crons/{id}``: every field optional; ``end_time: null`` clears it."""

    model_config = ConfigDict(extra="ignore")

    schedule: str | None = Field(default=None, max_length=256)
    timezone: str | None = Field(default=None, max_length=64)
    end_time: datetime | None = None
    on_run_completed: OnRunCompleted | None = None
    enabled: bool | None = None
    input: Any = None
    metadata: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    webhook: str | None = None
    interrupt_before: Literal["*"] | list[str] | None = None
    interrupt_after: Literal["*"] | list[str] | None = None
    stream_mode: str | list[str] | None = None
    stream_subgraphs: bool | None = None
    stream_resumable: bool | None = None
    durability: Literal["sync", "async", "exit"] | None = None


class CronSearch(BaseModel):
    model_config = ConfigDict(extra="ignore")

    assistant_id: str | None = None
    thread_id: str | None = None
    enabled: bool | None = None
    metadata: dict[str, Any] | None = None
    limit: int = Field(default=10, ge=1, le=1000)
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET)
    sort_by: CronSortBy | None = None
    sort_order: SortOrder | None = None
    select: list[CronField] | None = None


class CronCount(BaseModel):
    model_config = ConfigDict(extra="ignore")

    assistant_id: str | None = None
    thread_id: str | None = None
    metadata: dict[str, Any] | None = None


class CronRecord(BaseModel):
    cron_id: str
    tenant_id: str
    key_id: str | None = None
    assistant_id: str
    thread_id: str | None = None
    schedule: str
    timezone: str | None = None
    end_time: datetime | None = None
    next_run_date: datetime | None = None
    on_run_completed: OnRunCompleted | None = None
    enabled: bool = True
    failures: int = 0
    last_error: str | None = None
    payload: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    updated_at: datetime

    def to_wire(self, select: Sequence[str] | None = None) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "cron_id": self.cron_id,
            "assistant_id": self.assistant_id,
            "thread_id": self.thread_id,
            "on_run_completed": self.on_run_completed,
            "end_time": _iso(self.end_time),
            "schedule": self.schedule,
            "timezone": self.timezone,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
            "user_id": None,
            "payload": self.payload,
            "next_run_date": _iso(self.next_run_date),
            "metadata": self.metadata,
            "enabled": self.enabled,
        }
        return {k: v for k, v in wire.items() if k in select} if select else wire

    def run_body(self) -> RunCreate:
        """The run to start now: the payload, the cron's metadata under the payload's."""
        body = {k: v for k, v in self.payload.items() if k not in CRON_ONLY}
        body["metadata"] = {**self.metadata, **(body.get("metadata") or {})}
        if self.thread_id is None:
            body["on_completion"] = self.on_run_completed or "delete"
        return RunCreate.model_validate({k: v for k, v in body.items() if v is not None})


def check_run_body(cron: CronRecord) -> None:
    """422 naming the field when the cron's run could not start as written (checked when
    the cron is created or changed, so a bad one never reaches the scheduler)."""
    try:
        cron.run_body()
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or "payload"
        raise InvalidRequest(f"{field}: {error['msg']}", field=field) from None


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment is not None else None


def validate_schedule(schedule: str) -> None:
    if not croniter.is_valid(schedule):
        raise InvalidRequest(
            f"Invalid cron schedule: '{schedule}'. Reason: Invalid cron schedule. Ensure the "
            "schedule uses the standard cron format (minute hour day_of_month month "
            "day_of_week). Example: '*/5 * * * *' for every 5 minutes.",
            field="schedule",
        )


def validate_timezone(timezone: str | None) -> None:
    if timezone is None:
        return
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidRequest(
            f"Invalid timezone: '{timezone}'. Use IANA timezone format (e.g. 'America/New_York').",
            field="timezone",
        ) from None


def next_run_date(schedule: str, after: datetime, timezone: str | None = None) -> datetime:
    """The schedule's first date after ``after`` (in ``timezone``), in UTC."""
    base = after.astimezone(ZoneInfo(timezone)) if timezone else after.astimezone(UTC)
    following: datetime = croniter(schedule, base).get_next(datetime)
    return following.astimezone(UTC)


def cron_of(row: Any) -> CronRecord:
    data = dict(row)
    data["metadata"] = data.pop("metadata", None) or {}
    return CronRecord.model_validate(data)


class CronStore:
    """The tenants' crons; ``limits`` (:mod:`agent_runtime.runs.cron_limits`) bound the
    schedules and the number of crons a tenant creates."""

    def __init__(self, store: MetadataStore, limits: CronLimits | None = None) -> None:
        self._store = store
        self._limits = limits or CronLimits()

    def _where(
        self,
        tenant_id: str,
        assistant_id: str | None,
        thread_id: str | None,
        metadata: Any,
        allowed: MetadataFilter | None,
    ) -> list[ColumnElement[bool]]:
        where = [CRONS.c.tenant_id == tenant_id]
        where += allowed_by(self._store.is_postgres, CRONS.c["metadata"], allowed)
        if assistant_id:
            where.append(CRONS.c.assistant_id == assistant_id)
        if thread_id:
            where.append(CRONS.c.thread_id == thread_id)
        if metadata:
            where += json_contains(self._store.is_postgres, CRONS.c["metadata"], metadata)
        return where

    async def create(
        self,
        tenant_id: str,
        key_id: str | None,
        thread_id: str | None,
        body: CronCreate,
        assistant: AssistantRecord,
    ) -> CronRecord:
        """Record a cron; the caller has resolved the assistant and checked the thread."""
        validate_schedule(body.schedule)
        check_interval(body.schedule, self._limits)
        validate_timezone(body.timezone)
        cron_id = str(uuid.uuid4())
        payload = body.model_dump(mode="json", exclude_unset=True)
        payload["assistant_id"] = assistant.assistant_id
        config = payload.setdefault("config", None) or {}
        config["configurable"] = {**(config.get("configurable") or {}), "cron_id": cron_id}
        payload["config"] = config
        now = utcnow()
        record = CronRecord(
            cron_id=cron_id,
            tenant_id=tenant_id,
            key_id=key_id,
            assistant_id=assistant.assistant_id,
            thread_id=thread_id,
            schedule=body.schedule,
            timezone=body.timezone,
            end_time=body.end_time,
            next_run_date=next_run_date(body.schedule, now, body.timezone),
            on_run_completed=None if thread_id else (body.on_run_completed or "delete"),
            enabled=body.enabled,
            payload=payload,
            metadata=body.metadata or {},
            created_at=now,
            updated_at=now,
        )
        check_run_body(record)
        async with self._store.transaction(write_lock=True) as conn:
            await check_count(conn, tenant_id, self._limits, postgres=self._store.is_postgres)
            await conn.execute(insert(CRONS).values(**record.model_dump()))
        return record

    async def get(self, tenant_id: str, cron_id: str) -> CronRecord:
        query = select(CRONS).where(CRONS.c.cron_id == cron_id, CRONS.c.tenant_id == tenant_id)
        async with self._store.transaction() as conn:
            row = (await conn.execute(query)).mappings().one_or_none()
        if row is None:
            raise NotFound(f"Cron '{cron_id}' not found")
        return cron_of(row)

    async def update(self, tenant_id: str, cron_id: str, patch: CronPatch) -> CronRecord:
        given = patch.model_dump(mode="json", exclude_unset=True)
        clear_end_time = "end_time" in given and given["end_time"] is None
        if not clear_end_time and not any(v is not None for v in given.values()):
            raise BadRequest("No fields to update")
        if patch.schedule is not None:
            validate_schedule(patch.schedule)
            check_interval(patch.schedule, self._limits)
        validate_timezone(patch.timezone)
        async with self._store.transaction(write_lock=True) as conn:
            query = select(CRONS).where(CRONS.c.cron_id == cron_id, CRONS.c.tenant_id == tenant_id)
            row = (await conn.execute(query)).mappings().one_or_none()
            if row is None:
                raise NotFound(f"Cron '{cron_id}' not found")
            cron = cron_of(row)
            changes: dict[str, Any] = {"updated_at": utcnow()}
            if patch.timezone is not None:
                changes["timezone"] = patch.timezone
            schedule = patch.schedule or cron.schedule
            if patch.schedule is not None or patch.timezone is not None:
                changes["schedule"] = schedule
                changes["next_run_date"] = next_run_date(
                    schedule, utcnow(), patch.timezone or cron.timezone
                )
            if clear_end_time:
                changes["end_time"] = None
            elif patch.end_time is not None:
                changes["end_time"] = patch.end_time
            if patch.enabled is not None:
                changes["enabled"] = patch.enabled
            if patch.on_run_completed is not None:
                changes["on_run_completed"] = patch.on_run_completed
            if patch.metadata is not None:
                changes["metadata"] = {**cron.metadata, **patch.metadata}
            run_fields = {k: v for k, v in given.items() if k not in CRON_ONLY and v is not None}
            if run_fields:
                merged = {**cron.payload, **run_fields, "assistant_id": cron.assistant_id}
                config = dict(merged.get("config") or {})
                config["configurable"] = {
                    **(config.get("configurable") or {}),
                    "cron_id": cron_id,
                }
                merged["config"] = config
                changes["payload"] = merged
            check_run_body(cron.model_copy(update=changes))
            if changes.get("enabled"):
                changes.update(failures=0, last_error=None)  # re-enabled: a fresh start
            await conn.execute(update(CRONS).where(CRONS.c.cron_id == cron_id).values(**changes))
            row = (await conn.execute(query)).mappings().one()
        return cron_of(row)

    async def delete(self, tenant_id: str, cron_id: str) -> None:
        async with self._store.transaction() as conn:
            result = await conn.execute(
                delete(CRONS).where(CRONS.c.cron_id == cron_id, CRONS.c.tenant_id == tenant_id)
            )
        if result.rowcount == 0:
            raise NotFound(f"Cron '{cron_id}' not found")

    async def search(
        self, tenant_id: str, query: CronSearch, allowed: MetadataFilter | None = None
    ) -> tuple[list[CronRecord], bool]:
        """A page of the tenant's crons (newest first by default; those ``allowed`` lets
        the caller see) and whether more follow."""
        where = self._where(tenant_id, query.assistant_id, query.thread_id, query.metadata, allowed)
        if query.enabled is not None:
            where.append(CRONS.c.enabled.is_(query.enabled))
        column = CRONS.c[query.sort_by or "created_at"]
        ascending = query.sort_by is not None and query.sort_order == "asc"
        order = column.asc() if ascending else column.desc()
        statement = (
            select(CRONS)
            .where(*where)
            .order_by(order, CRONS.c.cron_id)
            .offset(query.offset)
            .limit(query.limit + 1)
        )
        async with self._store.transaction() as conn:
            rows = (await conn.execute(statement)).mappings().all()
        found = [cron_of(row) for row in rows]
        return found[: query.limit], len(found) > query.limit

    async def count(
        self, tenant_id: str, query: CronCount, allowed: MetadataFilter | None = None
    ) -> int:
        where = self._where(tenant_id, query.assistant_id, query.thread_id, query.metadata, allowed)
        statement = select(func.count()).select_from(CRONS).where(*where)
        async with self._store.transaction() as conn:
            return int((await conn.execute(statement)).scalar_one())
