"""The provider settings (``AGENT_PROVIDER_*``, ``AGENT_MODELS_FILE`` ...) and how every
settings class reads the environment. Apart from :mod:`agent_runtime.config.settings` because
the built-in models config (:mod:`agent_runtime.config.builtin_models`) is built from them."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Every settings class: AGENT_* variables, then a .env file; unknown variables ignored.
ENV = SettingsConfigDict(env_prefix="AGENT_", env_file=".env", extra="ignore")

FAKE_PROVIDER_ROUTE = "/fake-provider"


def no_limit(value: object) -> object:
    """A limit's environment value: "" or "none" turn it off (None)."""
    return None if isinstance(value, str) and value.strip().lower() in ("", "none") else value


class ProviderSettings(BaseSettings):
    """The OpenAI-compatible provider the router calls, its models and fallback chains.

    With ``models_file`` (``AGENT_MODELS_FILE``) set, that file alone describes the
    providers, models and aliases (:mod:`agent_runtime.config.models_file`); without one, the
    router's config is built from the settings below
    (:func:`agent_runtime.config.builtin_models.builtin_config`).
    """

    model_config = ENV

    models_file: Path | None = Field(
        default=None, description="A models file (YAML); unset: the settings below."
    )
    provider_base_url: str | None = Field(
        default=None,
        description="OpenAI-compatible base URL (ends in /v1); unset means the built-in fake.",
    )
    provider_api_key: SecretStr = Field(default=SecretStr("fake-key"))
    provider_timeout_s: float = Field(default=30.0, gt=0)
    model_aliases: dict[str, list[str]] = Field(
        default_factory=lambda: {
            "fast": ["fake-fast", "fake-fallback"],
            "smart": ["fake-smart", "fake-fallback"],
        },
        description='JSON alias -> fallback chain, e.g. {"smart": ["gpt-4o", "gpt-4o-mini"]}',
    )
    embedding_models: list[str] = Field(
        default_factory=lambda: ["fake-embed"],
        description="Embedding models served (POST /v1/embeddings, a store index's "
        '"openai:<model>"), besides the aliases\' models; JSON list.',
    )
    provider_max_retries: int = Field(
        default=1, ge=0, le=10, description="Tries of a model after a retryable failure."
    )
    router_deadline_s: float = Field(
        default=60.0, gt=0, description="One model request, every retry and fallback included."
    )
    breaker_fail_max: int = Field(default=5, ge=1)
    breaker_reset_timeout_s: float = Field(default=30.0, gt=0)

    @field_validator("models_file", mode="before")
    @classmethod
    def _blank_file_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("model_aliases")
    @classmethod
    def _non_empty_chains(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for alias, chain in value.items():
            if not chain:
                raise ValueError(f"model alias {alias!r} has an empty fallback chain")
        return value

    def base_url(self, http_port: int) -> str:
        if self.provider_base_url:
            return self.provider_base_url.rstrip("/")
        return self.fake_base_url(http_port)

    @staticmethod
    def fake_base_url(http_port: int) -> str:
        """Where the built-in fake provider's Serve app answers."""
        return f"http://127.0.0.1:{http_port}{FAKE_PROVIDER_ROUTE}/v1"
