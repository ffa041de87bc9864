"""Every tunable of the runtime, one ``BaseSettings`` per concern, gathered in
:class:`RuntimeSettings`. The provider, fake provider, HTTP, Serve, run and trace settings
have their own modules (``*_settings.py``); the others are here.

Settings are read from ``AGENT_*`` environment variables (and a ``.env`` file) once, at
start-up, by :meth:`RuntimeSettings.from_env`, then passed down to each part. Nothing in
this module reads the environment at import time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from agent_runtime.config.app_settings import AppSettings
from agent_runtime.config.builtin_models import configured
from agent_runtime.config.fake_provider_settings import FakeProviderSettings
from agent_runtime.config.http_settings import HttpSettings
from agent_runtime.config.models_file import ModelsConfig
from agent_runtime.config.pricing import ModelPrice
from agent_runtime.config.provider_settings import ENV as _ENV
from agent_runtime.config.provider_settings import ProviderSettings, no_limit
from agent_runtime.config.run_settings import RunSettings
from agent_runtime.config.serve_settings import ServeSettings
from agent_runtime.config.trace_settings import TraceSettings


class StorageSettings(BaseSettings):
    """Where metadata (tenants, keys, threads, runs) and checkpoints live."""

    model_config = _ENV

    data_dir: Path = Field(default=Path(".agent-data"), description="Embedded databases' folder.")
    database_url: str | None = Field(
        default=None,
        description="postgresql://... or sqlite:///path; default: SQLite under data_dir.",
    )
    db_pool_size: int = Field(
        default=10,
        ge=4,
        description="Postgres connections per replica process, at most: its one pool, which "
        "the metadata store, the checkpointer and the item store share (docs/scaling.md).",
    )
    db_prepared_statements: bool = Field(
        default=True,
        description="Postgres: prepare statements at first use (LangGraph's setting). Off "
        "behind a transaction-mode pooler that does not keep prepared statements (PgBouncer "
        "before 1.22, or max_prepared_statements = 0).",
    )
    db_application_name: str = Field(
        default="agent-runtime",
        min_length=1,
        max_length=40,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Postgres: each replica's pool shows in pg_stat_activity (and PgBouncer) "
        "as <this>-<deployment>, e.g. agent-runtime-orchestrator.",
    )
    db_timeout_s: float = Field(default=10.0, gt=0, description="Connect/statement timeout.")
    db_retry_s: float = Field(
        default=1.0,
        gt=0,
        description="Postgres, while it cannot be reached: calls that find no idle connection "
        "fail at once (503), except one every this many seconds, which tries to connect and "
        "reopens the way when it can; the pool stops reconnecting in the background after "
        "three times this (its callers' attempts take over).",
    )
    sqlite_write_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="SQLite only: how long a write waits its turn (behind this process's "
        "other writes, then other processes') before the database is reported unavailable; "
        "the default is AGENT_REQUEST_TIMEOUT_S's, so a queued write fails no sooner than "
        "its request would.",
    )

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("postgresql://", "postgres://", "sqlite:///")):
            raise ValueError("AGENT_DATABASE_URL must start with postgresql:// or sqlite:///")
        return value

    @property
    def is_postgres(self) -> bool:
        return self.database_url is not None and self.database_url.startswith("postgres")

    @property
    def postgres_dsn(self) -> str:
        """libpq DSN (psycopg) for the Postgres database."""
        assert self.database_url is not None and self.is_postgres
        return "postgresql://" + self.database_url.split("://", 1)[1]

    @property
    def sqlite_path(self) -> Path:
        """Metadata SQLite file (embedded default)."""
        if self.database_url and self.database_url.startswith("sqlite:///"):
            return Path(self.database_url.removeprefix("sqlite:///"))
        return self.data_dir / "runtime.db"

    @property
    def checkpoint_sqlite_path(self) -> Path:
        """Checkpoints get their own SQLite file so the saver's connection never blocks metadata."""
        return self.sqlite_path.with_name(self.sqlite_path.stem + "-checkpoints.db")

    @property
    def sqlalchemy_url(self) -> str:
        """Async SQLAlchemy URL: psycopg for Postgres, aiosqlite for SQLite. (The metadata
        store's engine borrows from the replica's pool instead: agent_runtime.db.engine.)"""
        if self.is_postgres:
            return "postgresql+psycopg://" + self.postgres_dsn.split("://", 1)[1]
        return f"sqlite+aiosqlite:///{self.sqlite_path}"


class LimitSettings(BaseSettings):
    """Per-key request limits (token bucket) and where they are kept."""

    model_config = _ENV

    redis_url: SecretStr | None = Field(
        default=None, description="redis://host:port/db; unset means an in-process limiter."
    )
    redis_timeout_s: float = Field(default=2.0, gt=0)
    rate_limit_per_second: float = Field(default=50.0, gt=0, description="Refill rate per key.")
    rate_limit_burst: int = Field(default=100, ge=1, description="Bucket size per key.")
    auth_cache_ttl_s: float = Field(default=2.0, ge=0, description="Key lookup cache.")
    # Fair use (agent_runtime/tenancy/fair_use.py); a tenant's own limits (admin API) override
    # these.
    rate_limit_failure_mode: Literal["fail_open", "fail_closed"] = Field(
        default="fail_open",
        description="Redis unreachable: fail_open limits per replica; fail_closed answers 503.",
    )
    rate_limit_redis_retry_s: float = Field(
        default=1.0, gt=0, description="After a Redis failure, how long limits skip Redis."
    )
    tenant_limits_cache_ttl_s: float = Field(
        default=5.0, ge=0, description="How long a replica caches a tenant's own limits."
    )
    tokens_per_minute: int | None = Field(
        default=None, ge=1, description="Model tokens per tenant per minute; unset: no limit."
    )
    # Run limits default to what one small deployment (one orchestrator replica, which
    # takes AGENT_RUN_MAX_CONCURRENT runs at once) can give a tenant without one tenant
    # filling it; "none" turns a limit off.
    max_concurrent_runs: int | None = Field(
        default=16, ge=1, description="Running runs per tenant; none: no limit."
    )
    max_queued_runs: int | None = Field(
        default=100, ge=0, description="Queued background runs per tenant; none: no limit."
    )
    max_open_streams: int = Field(
        default=32,
        ge=1,
        description="Streams, joins and waits a tenant holds open at once (429 past it); "
        "below the ingress's and orchestrator's max_ongoing_requests: one tenant never fills "
        "a replica.",
    )
    open_streams_lease_s: float = Field(
        default=30.0,
        ge=1,
        description="Lease of an open stream's slot in Redis, renewed every third of it: a "
        "dead replica's slots free themselves after it.",
    )

    @field_validator("tokens_per_minute", "max_concurrent_runs", "max_queued_runs", mode="before")
    @classmethod
    def _blank_limit_is_unset(cls, value: object) -> object:
        return no_limit(value)


class ItemStoreSettings(BaseSettings):
    """Expiry and semantic search of stored items (``AGENT_STORE_*``); where they live is
    ``StorageSettings``."""

    model_config = SettingsConfigDict(env_prefix="AGENT_STORE_", env_file=".env", extra="ignore")

    default_ttl_minutes: float | None = Field(
        default=None, gt=0, description="TTL of items put without one; unset: they never expire."
    )
    refresh_on_read: bool = Field(
        default=True, description="Reads restart an item's TTL unless the caller says otherwise."
    )
    sweep_interval_minutes: float = Field(
        default=5.0, gt=0, description="How often each replica deletes expired items."
    )
    index_max_items: int = Field(
        default=100_000,
        ge=1,
        description="Most items one semantic search (store.index, a query) scores: it is "
        "brute force over the items under its prefix that pass its filter; more: 400.",
    )
    embed_batch_size: int = Field(
        default=128, ge=1, le=2048, description="Texts per embeddings request of store.index."
    )


def _default_model_prices() -> dict[str, ModelPrice]:
    # The built-in fake provider's models, priced like small and large hosted models.
    return {
        "fake-fast": ModelPrice(0.15, 0.60),
        "fake-fallback": ModelPrice(0.15, 0.60),
        "fake-smart": ModelPrice(2.50, 10.00),
        "fake-embed": ModelPrice(0.02, 0),
    }


class BudgetSettings(BaseSettings):
    """Usage ledger, spending budgets and model prices (``AGENT_*``); the admin credential.

    Budget counters live in the Redis of ``LimitSettings.redis_url`` (in process when unset).
    """

    model_config = _ENV

    admin_api_key: SecretStr | None = Field(
        default=None,
        description="Credential of the /admin routes (x-admin-key); unset: they answer 404.",
    )
    budget_cache_ttl_s: float = Field(
        default=5.0, ge=0, description="How long a replica caches a tenant's budgets."
    )
    budget_redis_prefix: str = Field(default="agent:budget:", min_length=1)
    model_prices: dict[str, ModelPrice] = Field(
        default_factory=_default_model_prices,
        description='JSON model -> price, e.g. {"gpt-4o": {"input_per_million_usd": 2.5, '
        '"output_per_million_usd": 10}}',
    )
    default_model_price: ModelPrice | None = Field(
        default_factory=lambda: ModelPrice(10.00, 30.00),
        description="Price of models not in model_prices; null: such calls are refused.",
    )
    default_max_output_tokens: int = Field(
        default=4096,
        ge=1,
        description="Completion bound reserved (and sent) when a request sets no max_tokens.",
    )

    @field_validator("admin_api_key", mode="before")
    @classmethod
    def _blank_key_is_unset(cls, value: object) -> object:
        return None if value == "" else value


class EvalSettings(BaseSettings):
    """Sampled online judging of finished runs (``AGENT_EVAL_*``; agent_runtime/evals/online.py).

    Off by default. A sampled run's last exchange is scored by the judge model in the
    background, after the run has ended; the run's caller never waits for it.
    """

    model_config = SettingsConfigDict(env_prefix="AGENT_EVAL_", env_file=".env", extra="ignore")

    sample_rate: float = Field(
        default=0.0, ge=0, le=1, description="Share of successful runs judged; 0: off."
    )
    judge_model: str = Field(
        default="smart", min_length=1, description="Alias (or model) the judge asks."
    )
    graphs: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Graphs whose runs are sampled (JSON list or comma-separated); empty: all.",
    )
    max_pending: int = Field(
        default=8, ge=1, description="Judgements in flight per replica; more are skipped."
    )

    @field_validator("graphs", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


def _models_config(data: dict[str, Any]) -> ModelsConfig:
    provider: ProviderSettings = data["provider"]
    budgets: BudgetSettings | None = data.get("budgets")
    return configured(provider, budgets.model_prices if budgets is not None else None)


class RuntimeSettings(BaseModel):
    """All concerns together, built once by the launcher and passed to every deployment."""

    storage: StorageSettings
    limits: LimitSettings
    provider: ProviderSettings
    fake: FakeProviderSettings
    serve: ServeSettings
    runs: RunSettings = Field(default_factory=RunSettings)
    items: ItemStoreSettings = Field(default_factory=ItemStoreSettings)
    budgets: BudgetSettings = Field(default_factory=BudgetSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    evals: EvalSettings = Field(default_factory=EvalSettings)
    trace: TraceSettings = Field(default_factory=TraceSettings)
    app: AppSettings = Field(default_factory=AppSettings)
    # The router's providers, models and aliases: AGENT_MODELS_FILE, read (keys included)
    # where the settings are built, or the provider settings above. Declared last: it is
    # built from the fields before it.
    models: ModelsConfig = Field(default_factory=_models_config)

    @model_validator(mode="after")
    def _streams_leave_room(self) -> RuntimeSettings:
        # A tenant holding all it may must leave a replica room for the others: each of its
        # streams holds a request of the ingress and one of the orchestrator.
        ongoing = min(
            self.serve.ingress.max_ongoing_requests, self.serve.orchestrator.max_ongoing_requests
        )
        if self.limits.max_open_streams >= ongoing:
            raise ValueError(
                f"AGENT_MAX_OPEN_STREAMS ({self.limits.max_open_streams}) must be below the "
                f"ingress's and the orchestrator's max_ongoing_requests ({ongoing})"
            )
        return self

    @classmethod
    def from_env(cls) -> RuntimeSettings:
        return cls(
            storage=StorageSettings(),
            limits=LimitSettings(),
            provider=ProviderSettings(),
            fake=FakeProviderSettings(),
            serve=ServeSettings(),
            runs=RunSettings(),
            items=ItemStoreSettings(),
        )
