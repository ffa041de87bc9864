"""Which app the runtime serves (``AGENT_APP_*``): a user's ``langgraph.json``, or, unset,
the runtime's own example graphs."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class AppSettings(BaseSettings):
    """The app to serve. ``agent-runtime serve`` sets ``config`` from its ``-c`` option."""

    model_config = SettingsConfigDict(env_prefix="AGENT_APP_", env_file=".env", extra="ignore")

    config: Path | None = Field(
        default=None,
        description="The app's langgraph.json; unset: the runtime's example graphs.",
    )

    @field_validator("config")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        # Replicas run in other processes (and, on a cluster, other folders): the path is
        # made absolute where the settings are built, by the launcher.
        return None if value is None or str(value) == "" else value.expanduser().resolve()
