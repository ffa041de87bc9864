"""Which app the runtime serves (``AGENT_APP_*``): the ``langgraph.json`` of the folder it
starts in, or the one ``AGENT_APP_CONFIG`` names (``agent-runtime serve -c`` sets it)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class AppSettings(BaseSettings):
    """The app to serve. In this repository, ``langgraph.json`` serves the example graphs."""

    model_config = SettingsConfigDict(env_prefix="AGENT_APP_", env_file=".env", extra="ignore")

    config: Path = Field(
        default=Path("langgraph.json"),
        validate_default=True,
        description="The app's langgraph.json (LangGraph CLI's format).",
    )

    route_openai_clients: bool = Field(
        default=False,
        description=(
            "Send the calls of OpenAI clients the app builds itself (ChatOpenAI, "
            "init_chat_model('openai:...')) through the model router: OPENAI_BASE_URL is "
            "replaced by a host answered inside each replica."
        ),
    )

    @field_validator("config")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        # Replicas run in other processes (and, on a cluster, other folders): the path is
        # made absolute where the settings are built, by the launcher.
        return value.expanduser().resolve()
