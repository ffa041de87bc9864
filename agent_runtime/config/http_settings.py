"""What the ingress accepts and adds to every answer, and which of its routes it serves
(``AGENT_*``: limits of requests, deadlines, CORS, an app's ``http`` section)."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode

from agent_runtime.config.provider_settings import ENV as _ENV

RouteGroup = Literal["assistants", "threads", "runs", "store", "meta"]


class HttpSettings(BaseSettings):
    """What the ingress accepts and adds to every answer (agent_runtime/api/hardening.py).

    Requests past a limit are refused before any route, body parser or model sees them,
    with the JSON error shape of every other error (``{"detail", "error", ...}``).
    """

    model_config = _ENV

    max_header_bytes: int = Field(
        default=16_384, ge=1024, description="Total size of a request's headers (431 past it)."
    )
    max_headers: int = Field(default=100, ge=8, description="Headers per request (431 past it).")
    max_json_depth: int = Field(
        default=64, ge=2, description="Nesting of a JSON body's arrays and objects (422 past it)."
    )
    request_timeout_s: float = Field(
        default=30.0, gt=0, description="Deadline of an ordinary route's answer (504 past it)."
    )
    wait_timeout_s: float = Field(
        default=360.0,
        gt=0,
        description="Deadline of routes that wait for a run or a model (the .../wait and "
        "join routes, cancel with wait, chat completions).",
    )
    stream_max_lifetime_s: float = Field(
        default=3600.0,
        ge=1,
        description="A stream open this long ends (cleanly: the client reconnects with "
        "Last-Event-ID).",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Origins allowed by CORS (JSON list or comma-separated); empty: CORS off.",
    )
    hsts_max_age_s: int | None = Field(
        default=None, ge=0, description="Send Strict-Transport-Security with this max-age."
    )
    disabled_routes: Annotated[list[RouteGroup], NoDecode] = Field(
        default_factory=list,
        description="Route groups not served (JSON list or comma-separated; an app's "
        "http.disable_*): assistants, threads, runs (crons too), store, meta (/info, /docs).",
    )
    configurable_headers_includes: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Request headers (names, * wildcards) passed into runs' configurable "
        "(an app's http.configurable_headers.includes); none by default.",
    )
    configurable_headers_excludes: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Headers never passed, even if included (exclusions win).",
    )
    custom_route_auth: bool = Field(
        default=False,
        description="The app's own routes (http.app) ask for an API key, as the API's do "
        "(an app's http.enable_custom_route_auth).",
    )

    @field_validator(
        "cors_origins",
        "disabled_routes",
        "configurable_headers_includes",
        "configurable_headers_excludes",
        mode="before",
    )
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("hsts_max_age_s", mode="before")
    @classmethod
    def _blank_hsts_is_unset(cls, value: object) -> object:
        return None if value == "" else value
