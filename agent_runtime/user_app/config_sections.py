"""The sections of ``langgraph.json`` (``store``, ``checkpointer``, ``auth``, ``http``, ...),
each with LangGraph CLI's meaning (``langgraph_cli.schemas``); unknown keys are errors.

Only the schema: :mod:`.langgraph_json` reads the file and reports its problems.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# pgvector's most dimensions for an indexed vector: larger would close that way forward.
MAX_INDEX_DIMS = 16_000


class IndexConfig(StrictModel):
    """The store's semantic-search index: ``embed`` is ``"openai:<model>"`` (embedded
    through the runtime's model router) or a function, ``"./file.py:fn"`` or
    ``"package.module:fn"``; vectors have ``dims`` dimensions; ``fields`` are the JSON
    paths embedded (default ``["$"]``, the whole value)."""

    dims: int = Field(ge=1, le=MAX_INDEX_DIMS)
    embed: str
    fields: list[str] | None = None

    @field_validator("embed")
    @classmethod
    def _embed(cls, value: str) -> str:
        target, _, name = value.rpartition(":")
        if not target.strip() or not name.strip():
            raise ValueError(
                f"{value!r} is neither 'openai:<model>' nor a function "
                "('./path/file.py:embed' or 'package.module:embed')"
            )
        return value

    @field_validator("fields")
    @classmethod
    def _fields(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (not value or not all(path.strip() for path in value)):
            raise ValueError('give at least one JSON path ("$": the whole value), none empty')
        return value


class StoreTTLConfig(StrictModel):
    """Store items' time-to-live, in minutes; reads refresh it unless told otherwise."""

    refresh_on_read: bool = True
    default_ttl: float | None = None
    sweep_interval_minutes: int | None = None


class StoreConfig(StrictModel):
    """The long-term memory store (``BaseStore``) the graphs see."""

    index: IndexConfig | None = None
    ttl: StoreTTLConfig | None = None


class ThreadTTLConfig(StrictModel):
    """Threads' time-to-live, in minutes: ``delete`` drops the thread, ``keep_latest``
    prunes all but its latest checkpoint."""

    strategy: Literal["delete", "keep_latest"] = "delete"
    default_ttl: float | None = None
    sweep_interval_minutes: int | None = None
    sweep_limit: int | None = None


class SerdeConfig(StrictModel):
    """Which modules' types checkpoints may deserialize (``true``: any), and whether pickle
    is the fallback."""

    allowed_json_modules: list[list[str]] | bool | None = None
    allowed_msgpack_modules: list[list[str]] | bool | None = True
    pickle_fallback: bool = True


class CheckpointerConfig(StrictModel):
    """The checkpointer: ``path`` names an async context manager yielding a
    ``BaseCheckpointSaver`` that replaces the built-in one."""

    path: str | None = None
    ttl: ThreadTTLConfig | None = None
    serde: SerdeConfig | None = None


class SecurityConfig(StrictModel):
    """OpenAPI security schemes and requirements (global and per path and method)."""

    securitySchemes: dict[str, dict[str, JsonValue]] | None = None
    security: list[dict[str, list[str]]] | None = None
    paths: dict[str, dict[str, list[dict[str, list[str]]]]] | None = None


class AuthCacheConfig(StrictModel):
    """Caching of the custom auth handler's results, keyed by these headers."""

    cache_keys: list[str] | None = None
    ttl_seconds: int | None = None
    max_size: int | None = None


class AuthConfig(StrictModel):
    """Custom authentication: ``path`` names a ``langgraph_sdk.Auth`` instance."""

    path: str | None = None
    disable_studio_auth: bool = False
    openapi: SecurityConfig | None = None
    cache: AuthCacheConfig | None = None


class EncryptionConfig(StrictModel):
    """At-rest encryption: ``path`` names a ``langgraph_sdk.Encryption`` instance."""

    path: str | None = None


class CorsConfig(StrictModel):
    """Cross-origin rules for the HTTP API (Starlette's ``CORSMiddleware`` arguments)."""

    allow_origins: list[str] | None = None
    allow_methods: list[str] | None = None
    allow_headers: list[str] | None = None
    allow_credentials: bool | None = None
    allow_origin_regex: str | None = None
    expose_headers: list[str] | None = None
    max_age: int | None = None


class HeaderPatterns(StrictModel):
    """Header names (``*`` wildcards) to include or exclude; exclusions win."""

    includes: list[str] | None = None
    excludes: list[str] | None = None


class HttpConfig(StrictModel):
    """The HTTP server: ``app`` names a Starlette/FastAPI app mounted beside the API;
    ``disable_*`` remove route groups; ``configurable_headers`` become run configurables."""

    app: str | None = None
    disable_assistants: bool = False
    disable_threads: bool = False
    disable_runs: bool = False
    disable_store: bool = False
    disable_mcp: bool = False
    disable_a2a: bool = False
    disable_meta: bool = False
    disable_ui: bool = False
    disable_webhooks: bool = False
    cors: CorsConfig | None = None
    configurable_headers: HeaderPatterns | None = None
    logging_headers: HeaderPatterns | None = None
    middleware_order: Literal["auth_first", "middleware_first"] | None = None
    enable_custom_route_auth: bool = False
    mount_prefix: str | None = None


class WebhookUrlPolicy(StrictModel):
    """Which webhook URLs runs may name."""

    require_https: bool | None = None
    allowed_domains: list[str] | None = None
    allowed_ports: list[int] | None = None
    max_url_length: int | None = None
    disable_loopback: bool | None = None


class WebhooksConfig(StrictModel):
    """Outbound webhooks: URL policy and static headers (``${{ env.VAR }}`` templates
    limited to variables starting with ``env_prefix``)."""

    env_prefix: str = "LG_WEBHOOK_"
    url: WebhookUrlPolicy | None = None
    headers: dict[str, str] | None = None


class GraphDef(StrictModel):
    """A graph with metadata: ``path`` as in the string form, ``description`` shown by the
    assistants API."""

    path: str
    description: str | None = None


class UvSource(StrictModel):
    """Install from a uv project (``root`` holds ``pyproject.toml`` and ``uv.lock``)."""

    kind: Literal["uv"]
    root: str = "."
    package: str | None = None
