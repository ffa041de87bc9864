"""Trace settings: each run's trace and its OpenTelemetry export."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class TraceSettings(BaseSettings):
    """Run traces (``AGENT_TRACE_*``; agent_runtime/execution/run_trace.py) and their OpenTelemetry
    export.

    Every run keeps its path (nodes, model and tool calls) with it, readable at
    ``GET /threads/{thread_id}/runs/{run_id}/trace``. Export as OTLP/HTTP spans is off
    until an endpoint is set.
    """

    model_config = SettingsConfigDict(env_prefix="AGENT_TRACE_", env_file=".env", extra="ignore")

    enabled: bool = Field(default=True, description="Keep each run's trace with the run.")
    max_spans: int = Field(default=2000, ge=1, description="Spans kept per run; later: dropped.")
    otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP traces URL (e.g. http://collector:4318/v1/traces); unset: off.",
    )
    otlp_headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="Headers sent with each export (JSON object)."
    )
    otlp_timeout_s: float = Field(default=5.0, gt=0, description="Per export request.")
    service_name: str = Field(default="agent-runtime", min_length=1)

    @field_validator("otlp_endpoint", mode="before")
    @classmethod
    def _blank_endpoint_is_unset(cls, value: object) -> object:
        return None if value == "" else value
