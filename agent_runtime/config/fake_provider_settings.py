"""The built-in fake provider's settings (``AGENT_FAKE_*``): its latency and injected faults."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from agent_runtime.config.fault_profiles import MAX_DELAY_MS, FaultProfile


class FakeProviderSettings(BaseSettings):
    """The built-in OpenAI-compatible fake provider: latency and injected faults.

    The flat fields are shorthands for the fault table (:mod:`agent_runtime.fake.faults`):
    ``latency_ms``, ``jitter_ms``, ``fail_rate`` and ``fail_status`` describe the default
    profile unless ``default_profile`` gives it whole; ``failing_models``, ``hanging_models``
    and ``models`` (which wins) give models their own profiles.
    """

    model_config = SettingsConfigDict(env_prefix="AGENT_FAKE_", env_file=".env", extra="ignore")

    latency_ms: float = Field(
        default=50.0, ge=0, le=MAX_DELAY_MS, description="Fixed latency of every answer."
    )
    jitter_ms: float = Field(
        default=0.0, ge=0, le=MAX_DELAY_MS, description="Uniform extra latency, 0..jitter."
    )
    fail_rate: float = Field(default=0.0, ge=0, le=1, description="Share of calls that fail.")
    fail_status: int = Field(default=500, ge=400, le=599)
    failing_models: list[str] = Field(
        default_factory=list, description="Models that always fail with fail_status."
    )
    hanging_models: list[str] = Field(
        default_factory=list, description="Models that never answer (tests timeouts)."
    )
    default_profile: FaultProfile | None = Field(
        default=None,
        description="JSON FaultProfile of models without their own (replaces the flat fields).",
    )
    models: dict[str, FaultProfile] = Field(
        default_factory=dict, description='JSON model -> FaultProfile, e.g. {"m": {"hang": true}}.'
    )
    control_enabled: bool = Field(
        default=False,
        description="Development flag: serve /control/faults (with control_token); off: 404.",
    )
    control_token: SecretStr | None = Field(
        default=None, description="Bearer token of /control/faults; unset: the routes are 404."
    )
    seed: int = 0

    @field_validator("control_token", mode="before")
    @classmethod
    def _blank_token_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _one_default(self) -> FakeProviderSettings:
        flat = {"latency_ms", "jitter_ms", "fail_rate"} & self.model_fields_set
        if self.default_profile is not None and flat:
            names = ", ".join(f"AGENT_FAKE_{name.upper()}" for name in sorted(flat))
            raise ValueError(f"set AGENT_FAKE_DEFAULT_PROFILE or {names}, not both")
        return self
