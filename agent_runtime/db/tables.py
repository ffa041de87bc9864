"""SQLModel table definitions of the metadata store (tenants, keys, threads, runs, audit ...).

The classes define the schema; :mod:`agent_runtime.db.metadata` queries the Core ``Table`` objects
(``TENANTS`` ...) directly because the hot path needs no ORM identity map. Column names
match the fields of the records in :mod:`agent_runtime.core.records`, so a row validates into one.
The schema is created and upgraded by the Alembic revisions in :mod:`agent_runtime.db.migrations`;
a change here needs a new revision there.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on both backends (SQLite stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, _dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, _dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


JSON_TYPE = JSON().with_variant(JSONB(), "postgresql")
DEFAULT_SCOPES_JSON = """'["read", "run"]'"""


def utcnow() -> datetime:
    return datetime.now(UTC)


def _json_column(name: str = "metadata") -> Any:
    # ``metadata`` is reserved on declarative classes, hence the attribute ``metadata_``.
    return Field(default_factory=dict, sa_column=Column(name, JSON_TYPE, nullable=False))


class TenantRow(SQLModel, table=True):
    __tablename__ = "agent_tenants"

    tenant_id: str = Field(primary_key=True, max_length=128)
    name: str = Field(max_length=256)
    disabled: bool = False
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)


class ApiKeyRow(SQLModel, table=True):
    __tablename__ = "agent_api_keys"

    key_id: str = Field(primary_key=True, max_length=128)
    tenant_id: str = Field(
        sa_column=Column(
            String(128), ForeignKey("agent_tenants.tenant_id"), nullable=False, index=True
        )
    )
    key_hash: str = Field(max_length=256)
    name: str = Field(default="", max_length=256)
    revoked: bool = False
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    # Since revision 0004: what the key may do (a JSON list); older keys read and run.
    scopes: list[str] = Field(
        default_factory=lambda: ["read", "run"],
        sa_column=Column(
            "scopes", JSON_TYPE, nullable=False, server_default=text(DEFAULT_SCOPES_JSON)
        ),
    )


class ThreadRow(SQLModel, table=True):
    """A thread; since revision 0008 keyed by (thread id, tenant): each tenant has its
    own thread ids, and no tenant can tell whether another uses one."""

    __tablename__ = "agent_threads"

    thread_id: str = Field(primary_key=True, max_length=128)
    tenant_id: str = Field(primary_key=True, index=True, max_length=128)
    graph_id: str | None = Field(default=None, max_length=256)
    status: str = Field(default="idle", max_length=32)
    metadata_: dict[str, Any] = _json_column()
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    # Since revision 0002: the latest state's values and interrupts (searchable), the
    # run that holds the thread, and the retention deadline.
    config: dict[str, Any] = _json_column("config")
    state_values: Any = Field(default=None, sa_column=Column("state_values", JSON_TYPE))
    interrupts: dict[str, Any] = _json_column("interrupts")
    current_run_id: str | None = Field(default=None, max_length=128)
    ttl_strategy: str | None = Field(default=None, max_length=32)
    ttl_minutes: float | None = None
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    state_updated_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class UnscopedCheckpointsRow(SQLModel, table=True):
    """A thread whose checkpoints are still filed under its bare id, as before revision
    0008, and its owner; the orchestrator moves them under the owner at start-up and
    deletes the row (:func:`agent_runtime.execution.checkpoint_ops.adopt_unscoped`)."""

    __tablename__ = "agent_unscoped_checkpoints"

    thread_id: str = Field(primary_key=True, max_length=128)
    tenant_id: str = Field(max_length=128)


class RunRow(SQLModel, table=True):
    __tablename__ = "agent_runs"
    # list_runs filters on the thread and sorts newest first: one index serves both.
    __table_args__ = (
        Index("ix_agent_runs_thread_created", "thread_id", "created_at"),
        Index("ix_agent_runs_status_created", "status", "created_at"),
    )

    run_id: str = Field(primary_key=True, max_length=128)
    thread_id: str | None = Field(default=None, max_length=128)
    tenant_id: str = Field(index=True, max_length=128)
    assistant_id: str = Field(max_length=256)
    status: str = Field(default="pending", max_length=32)
    metadata_: dict[str, Any] = _json_column()
    error: str | None = Field(default=None, sa_type=Text)
    input_tokens: int = 0
    output_tokens: int = 0
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    # Since revision 0002: what to run (so any replica can), double-texting, the lease.
    graph_id: str | None = Field(default=None, max_length=256)
    kwargs_: dict[str, Any] = _json_column("kwargs")
    multitask_strategy: str = Field(default="reject", max_length=16)
    attempt: int = 1
    worker_id: str | None = Field(default=None, max_length=128)
    heartbeat_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    cancel_action: str | None = Field(default=None, max_length=16)
    temporary: bool = False


class RunEventRow(SQLModel, table=True):
    """A run's stream events, kept so a client can join or resume it from any replica."""

    __tablename__ = "agent_run_events"

    run_id: str = Field(primary_key=True, max_length=128)
    seq: int = Field(primary_key=True)
    event: str = Field(max_length=256)
    data: bytes = Field(sa_type=LargeBinary, nullable=False)
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)


class AssistantRow(SQLModel, table=True):
    __tablename__ = "agent_assistants"
    __table_args__ = (Index("ix_agent_assistants_tenant_graph", "tenant_id", "graph_id"),)

    tenant_id: str = Field(primary_key=True, max_length=128)
    assistant_id: str = Field(primary_key=True, max_length=128)
    graph_id: str = Field(max_length=256)
    name: str = Field(max_length=256)
    description: str | None = Field(default=None, sa_type=Text)
    config: dict[str, Any] = _json_column("config")
    context: dict[str, Any] = _json_column("context")
    metadata_: dict[str, Any] = _json_column()
    version: int = 1
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(sa_type=UTCDateTime, nullable=False)


class AssistantVersionRow(SQLModel, table=True):
    __tablename__ = "agent_assistant_versions"

    tenant_id: str = Field(primary_key=True, max_length=128)
    assistant_id: str = Field(primary_key=True, max_length=128)
    version: int = Field(primary_key=True)
    graph_id: str = Field(max_length=256)
    name: str = Field(max_length=256)
    description: str | None = Field(default=None, sa_type=Text)
    config: dict[str, Any] = _json_column("config")
    context: dict[str, Any] = _json_column("context")
    metadata_: dict[str, Any] = _json_column()
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)


class UsageEventRow(SQLModel, table=True):
    """One model call in the usage ledger (since revision 0003); see
    :mod:`agent_runtime.tenancy.usage`."""

    __tablename__ = "agent_usage"
    # A tenant's totals scan its rows of a day range; the admin view scans a day range.
    __table_args__ = (
        Index("ix_agent_usage_tenant_day", "tenant_id", "usage_day"),
        Index("ix_agent_usage_day", "usage_day"),
    )

    event_id: str = Field(primary_key=True, max_length=36)
    tenant_id: str = Field(max_length=128)
    key_id: str | None = Field(default=None, max_length=128)
    thread_id: str | None = Field(default=None, max_length=128)
    run_id: str | None = Field(default=None, max_length=128)
    model: str = Field(max_length=256)
    alias: str | None = Field(default=None, max_length=256)
    input_tokens: int = 0
    output_tokens: int = 0
    latency_ms: float = 0.0
    cost_micro_usd: int = Field(default=0, sa_type=BigInteger)
    outcome: str = Field(default="ok", max_length=32)
    # The UTC day (YYYY-MM-DD) of created_at: day and month buckets without dialect SQL.
    usage_day: str = Field(max_length=10)
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)


class BudgetRow(SQLModel, table=True):
    """A spending limit of a tenant or of one key (since revision 0003); key_id is "" for
    tenant budgets. See :mod:`agent_runtime.tenancy.budget_rows`."""

    __tablename__ = "agent_budgets"

    tenant_id: str = Field(primary_key=True, max_length=128)
    scope: str = Field(primary_key=True, max_length=8)
    key_id: str = Field(primary_key=True, max_length=128)
    period: str = Field(primary_key=True, max_length=8)
    limit_micro_usd: int = Field(sa_type=BigInteger)
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(sa_type=UTCDateTime, nullable=False)


class TenantLimitsRow(SQLModel, table=True):
    """A tenant's own limits (since revision 0004); NULL: the runtime's default.
    See :class:`agent_runtime.core.records.TenantLimits`."""

    __tablename__ = "agent_tenant_limits"

    tenant_id: str = Field(primary_key=True, max_length=128)
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = Field(default=None, sa_type=BigInteger)
    max_concurrent_runs: int | None = None
    max_queued_runs: int | None = None
    updated_at: datetime = Field(sa_type=UTCDateTime, nullable=False)


class AuditRow(SQLModel, table=True):
    """One admin action or ended run (since revision 0004); see :mod:`agent_runtime.tenancy.audit`.
    Never holds a key's secret nor its hash."""

    __tablename__ = "agent_audit"
    __table_args__ = (
        Index("ix_agent_audit_created", "created_at"),
        Index("ix_agent_audit_tenant_created", "tenant_id", "created_at"),
        Index("ix_agent_audit_action_created", "action", "created_at"),
    )

    audit_id: str = Field(primary_key=True, max_length=36)
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    # The tenant the entry is about; the acting key (none for the CLI or the bootstrap
    # admin key) and how the actor proved itself (agent_runtime.tenancy.audit.ActorKind).
    tenant_id: str | None = Field(default=None, max_length=128)
    key_id: str | None = Field(default=None, max_length=128)
    actor: str = Field(max_length=32)
    action: str = Field(max_length=64)
    target: str | None = Field(default=None, max_length=256)
    details: dict[str, Any] = _json_column("details")


class RunTraceRow(SQLModel, table=True):
    """A run's path, written in the transaction that ends the run (since revision 0005);
    see :mod:`agent_runtime.execution.run_trace`. Deleted with its run."""

    __tablename__ = "agent_run_traces"

    run_id: str = Field(primary_key=True, max_length=128)
    tenant_id: str = Field(max_length=128)
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    trace: dict[str, Any] = _json_column("trace")


class CronRow(SQLModel, table=True):
    """A scheduled run (since revision 0006; its failures since 0007); see
    :mod:`agent_runtime.runs.crons`."""

    __tablename__ = "agent_crons"
    __table_args__ = (
        Index("ix_agent_crons_due", "enabled", "next_run_date"),
        Index("ix_agent_crons_tenant_created", "tenant_id", "created_at"),
    )

    cron_id: str = Field(primary_key=True, max_length=64)
    tenant_id: str = Field(max_length=128)
    key_id: str | None = Field(default=None, max_length=128)  # the key that created it
    assistant_id: str = Field(max_length=128)
    thread_id: str | None = Field(default=None, max_length=64)
    schedule: str = Field(max_length=256)
    timezone: str | None = Field(default=None, max_length=64)
    end_time: datetime | None = Field(default=None, sa_type=UTCDateTime)
    next_run_date: datetime | None = Field(default=None, sa_type=UTCDateTime)
    on_run_completed: str | None = Field(default=None, max_length=16)
    enabled: bool = True
    # Consecutive runs that could not start, and why the last did not; the scheduler
    # disables the cron past AGENT_CRON_MAX_FAILURES.
    failures: int = Field(default=0, sa_column_kwargs={"server_default": text("0")})
    last_error: str | None = Field(default=None, max_length=1000)
    payload: dict[str, Any] = _json_column("payload")
    metadata_: dict[str, Any] = _json_column()
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(sa_type=UTCDateTime, nullable=False)


def _table(model: type[SQLModel]) -> Table:
    table = sa_inspect(model).local_table
    assert isinstance(table, Table)
    return table


TENANTS = _table(TenantRow)
API_KEYS = _table(ApiKeyRow)
THREADS = _table(ThreadRow)
UNSCOPED_CHECKPOINTS = _table(UnscopedCheckpointsRow)
RUNS = _table(RunRow)
RUN_EVENTS = _table(RunEventRow)
ASSISTANTS = _table(AssistantRow)
ASSISTANT_VERSIONS = _table(AssistantVersionRow)
USAGE = _table(UsageEventRow)
BUDGETS = _table(BudgetRow)
TENANT_LIMITS = _table(TenantLimitsRow)
AUDIT = _table(AuditRow)
RUN_TRACES = _table(RunTraceRow)
CRONS = _table(CronRow)
