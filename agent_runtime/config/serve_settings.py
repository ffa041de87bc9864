"""Serve's settings: the HTTP address and each deployment's autoscaling and concurrency."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from agent_runtime.config.provider_settings import no_limit

DEFAULT_HTTP_PORT = 8000
# Half of a replica's AGENT_MAX_CONCURRENT_RUNS (64): room for a burst while a replica starts.
DEFAULT_TARGET_RUNS = 32.0
# Serve's controller imports it by this path (a string here: config imports no replica code).
RUNS_POLICY = "agent_runtime.replica.autoscaling:RunsPolicy"


class DeploymentScaling(BaseModel):
    """Autoscaling and concurrency of one Serve deployment (Serve's own option names)."""

    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=2, ge=1)
    target_ongoing_requests: float = Field(default=32, gt=0)
    max_ongoing_requests: int = Field(default=128, ge=1)
    upscale_delay_s: float = Field(default=5.0, ge=0)
    downscale_delay_s: float = Field(default=60.0, ge=0)
    # Longer than Serve's metrics interval (10 s), which Serve will soon require.
    look_back_period_s: float = Field(
        default=30.0, gt=10, description="The window Serve averages the load over."
    )
    # A replica's CPU reservation is what makes Ray's autoscaler add nodes on a cluster.
    num_cpus: float = Field(default=0.5, ge=0, description="CPUs reserved per replica.")
    # A stopping replica checks for requests still in flight this often; Serve's 2 s made
    # each deployment's stop take 2 s, one deployment after the other.
    graceful_shutdown_wait_loop_s: float = Field(
        default=0.2, gt=0, description="How often a stopping replica checks it is idle."
    )
    graceful_shutdown_timeout_s: float = Field(
        default=20.0, ge=0, description="How long a stopping replica may drain requests."
    )
    # Serve replaces a replica after three failed checks in a row (agent_runtime.replica.health).
    health_check_period_s: float = Field(
        default=10.0, gt=0, description="How often Serve calls each replica's check_health."
    )
    health_check_timeout_s: float = Field(
        default=30.0, gt=0, description="How long one check_health may take before it fails."
    )

    # Only the orchestrator's runs are reported to Serve (agent_runtime.replica.autoscaling).
    target_runs: float | None = Field(
        default=None,
        gt=0,
        description="Orchestrator: runs (executing and queued) per replica its autoscaling "
        "aims at, besides requests in flight; unset: requests only.",
    )

    @field_validator("target_runs", mode="before")
    @classmethod
    def _none_turns_it_off(cls, value: object) -> object:
        return no_limit(value)

    def autoscaling_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "min_replicas": self.min_replicas,
            "initial_replicas": max(self.min_replicas, 1),
            "max_replicas": self.max_replicas,
            "target_ongoing_requests": self.target_ongoing_requests,
            "upscale_delay_s": self.upscale_delay_s,
            "downscale_delay_s": self.downscale_delay_s,
            "look_back_period_s": self.look_back_period_s,
        }
        if self.target_runs is not None:
            config["policy"] = {
                "policy_function": RUNS_POLICY,
                "policy_kwargs": {"target_runs": self.target_runs},
            }
        return config


class ServeSettings(BaseSettings):
    """HTTP address and per-deployment scaling; a Serve config file can override the latter."""

    model_config = SettingsConfigDict(
        env_prefix="AGENT_", env_file=".env", extra="ignore", env_nested_delimiter="__"
    )

    http_host: str = "127.0.0.1"
    http_port: int = DEFAULT_HTTP_PORT
    metrics_port: int = Field(default=8085, description="Ray's Prometheus endpoint.")
    local_num_cpus: int = Field(
        default=8,
        ge=1,
        description="Logical CPUs of the local Ray cluster (replicas are I/O-bound).",
    )
    max_request_bytes: int = Field(default=1_048_576, ge=1024)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Longer than a database or Redis restart: a short outage is answered with 503s, not by
    # replacing every replica at once (agent_runtime.replica.health).
    health_dependency_grace_s: float = Field(
        default=60.0,
        ge=0,
        description="How long the database or Redis may stay unreachable from a replica "
        "before its check_health fails.",
    )
    health_probe_timeout_s: float = Field(
        default=5.0, gt=0, description="How long check_health waits for one dependency's ping."
    )
    ingress: DeploymentScaling = Field(default_factory=DeploymentScaling)
    orchestrator: DeploymentScaling = Field(
        default_factory=lambda: DeploymentScaling(target_runs=DEFAULT_TARGET_RUNS)
    )
    router: DeploymentScaling = Field(default_factory=DeploymentScaling)
    fake_provider: DeploymentScaling = Field(
        default_factory=lambda: DeploymentScaling(max_replicas=1)
    )
