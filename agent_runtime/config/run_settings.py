"""Run settings: a run's limits, the run queue's leases and notifications, crons, webhooks
and thread retention."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings

from agent_runtime.config.provider_settings import ENV as _ENV
from agent_runtime.config.provider_settings import no_limit


class RunSettings(BaseSettings):
    """Limits of runs, the run queue's leases and the thread retention sweeper."""

    model_config = _ENV

    run_timeout_s: float = Field(default=300.0, gt=0, description="A run past this: timeout.")
    run_max_steps: int = Field(
        default=100, ge=1, description="Most graph supersteps per run (recursion_limit cap)."
    )
    run_heartbeat_s: float = Field(default=1.0, gt=0, description="Lease refresh interval.")
    run_lease_s: float = Field(
        default=10.0, gt=0, description="A running run not heartbeated this long is resumed."
    )
    # Push, not poll: waiters, joiners, thread streams and the run queue are told of
    # changes; the database is read on a timer only for messages that were missed.
    run_notify: bool = Field(
        default=True,
        description="Tell waiters, joiners, thread streams and the run queue of changes (in "
        "memory; across replicas through Redis when AGENT_REDIS_URL is set); off: they poll.",
    )
    run_fallback_poll_s: float = Field(
        default=2.0,
        gt=0,
        description="How often each of them checks the database anyway (a missed message, "
        "no Redis); with AGENT_RUN_NOTIFY off, their poll interval. Also the reaper's.",
    )
    run_claim_min_interval_s: float = Field(
        default=0.05, ge=0, description="Least time between two claims of queued runs."
    )
    run_notify_channel: str = Field(
        default="agent:runs", min_length=1, description="The Redis pub/sub channel."
    )
    run_notify_max_watchers: int = Field(
        default=10_000,
        ge=1,
        description="Waits and streams one replica tells at once; more fall back to polling.",
    )
    run_notify_max_pending: int = Field(
        default=10_000,
        ge=1,
        description="Notifications (and delayed-run timers) a replica holds before Redis "
        "takes them; more are dropped (the fallback poll catches them).",
    )
    run_notify_retry_min_s: float = Field(
        default=0.1, gt=0, description="First wait before resubscribing to Redis; doubles."
    )
    run_notify_retry_max_s: float = Field(
        default=5.0, gt=0, description="Longest wait before resubscribing to Redis."
    )
    run_notify_ping_s: float = Field(
        default=5.0,
        gt=0,
        description="A quiet subscription is pinged after this; silent 3 times as long: "
        "reconnected.",
    )
    run_max_attempts: int = Field(default=3, ge=1, description="Tries when replicas die.")
    run_max_concurrent: int = Field(
        default=64, ge=1, description="Queued runs one orchestrator replica takes at once."
    )
    thread_ttl_minutes: float | None = Field(
        default=None, gt=0, description="Default thread TTL (unset: threads are kept)."
    )
    thread_ttl_strategy: Literal["delete", "keep_latest"] = Field(
        default="delete",
        description="What the default TTL does: delete the thread, or keep its latest state.",
    )
    thread_sweep_interval_s: float = Field(default=60.0, gt=0, description="TTL sweeper.")
    thread_sweep_limit: int = Field(default=100, ge=1, description="Threads swept per pass.")
    run_events_ttl_minutes: float = Field(
        default=60.0, gt=0, description="Stored stream events are kept this long after a run."
    )
    run_events_flush_attempts: int = Field(
        default=3, ge=1, description="Tries to store a batch of stream events before it is lost."
    )
    run_events_flush_backoff_s: float = Field(
        default=0.1, ge=0, description="Wait after a batch's first failed try; doubles each try."
    )
    cron_poll_s: float = Field(
        default=5.0, gt=0, description="How often each orchestrator replica starts due crons."
    )
    cron_max_failures: int = Field(
        default=5, ge=1, description="A cron failing this many times in a row is disabled."
    )
    # Fan-out (issue 13): what one request or one tenant may make the runtime start.
    run_batch_max: int = Field(
        default=100,
        ge=1,
        le=10_000,
        description="Runs in one POST /runs/batch (each costs one request of the key's bucket).",
    )
    cron_min_interval_s: float = Field(
        default=60.0, ge=0, description="Shortest time between two runs of a cron; 0: any."
    )
    cron_max_per_tenant: int | None = Field(
        default=100, ge=1, description="Crons per tenant; none: no limit."
    )
    webhooks_enabled: bool = Field(default=True, description="Call runs' webhook URLs.")
    webhook_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Most time one webhook try takes: resolve, connect, send and read.",
    )
    webhook_max_in_flight: int = Field(
        default=64,
        ge=1,
        description="Webhook deliveries one orchestrator replica makes at once; more are dropped.",
    )
    webhook_allow_private: bool = Field(
        default=False, description="Allow webhooks to loopback/private addresses (SSRF risk)."
    )

    @model_validator(mode="after")
    def _retry_bounds(self) -> RunSettings:
        if self.run_notify_retry_min_s > self.run_notify_retry_max_s:
            raise ValueError(
                "AGENT_RUN_NOTIFY_RETRY_MIN_S must not be above AGENT_RUN_NOTIFY_RETRY_MAX_S"
            )
        return self

    @property
    def default_thread_ttl(self) -> tuple[str, float] | None:
        """(strategy, minutes) of threads created without a TTL; None: kept."""
        if self.thread_ttl_minutes is None:
            return None
        return self.thread_ttl_strategy, self.thread_ttl_minutes

    @field_validator("thread_ttl_minutes", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("cron_max_per_tenant", mode="before")
    @classmethod
    def _none_is_no_limit(cls, value: object) -> object:
        return no_limit(value)
