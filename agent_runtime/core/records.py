"""Typed records the metadata store returns and the API layer serialises."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator

# What an API key may do (see agent_runtime.api.deps): ``read`` gets and searches, ``run``
# starts runs and model calls and makes every other tenant write, ``admin`` the /admin routes.
Scope = Literal["read", "run", "admin"]
ALL_SCOPES: tuple[Scope, ...] = ("read", "run", "admin")
# Keys made without scopes, and every key made before scopes existed (revision 0004).
DEFAULT_SCOPES: tuple[Scope, ...] = ("read", "run")


def normalise_scopes(scopes: Any) -> list[Scope]:
    """Known scopes, each once, in :data:`ALL_SCOPES` order; ``None`` or empty: the default."""
    given = set(scopes or DEFAULT_SCOPES)
    unknown = given - set(ALL_SCOPES)
    if unknown:
        raise ValueError(f"unknown scope {sorted(unknown)[0]!r}; known: {', '.join(ALL_SCOPES)}")
    return [scope for scope in ALL_SCOPES if scope in given]


ThreadStatus = Literal["idle", "busy", "interrupted", "error"]
RunStatus = Literal["pending", "running", "success", "error", "timeout", "interrupted"]
MultitaskStrategy = Literal["reject", "interrupt", "rollback", "enqueue"]
CancelAction = Literal["interrupt", "rollback"]


class Tenant(BaseModel):
    tenant_id: str
    name: str
    disabled: bool = False
    created_at: datetime


class ApiKeyRecord(BaseModel):
    """A stored key: only its public id (the prefix users see) and the hash of the whole key."""

    key_id: str
    tenant_id: str
    key_hash: str
    name: str = ""
    revoked: bool = False
    created_at: datetime
    scopes: list[Scope] = Field(default_factory=lambda: list(DEFAULT_SCOPES))

    @field_validator("scopes", mode="before")
    @classmethod
    def _known_scopes(cls, value: Any) -> list[Scope]:
        return normalise_scopes(value)


class AuthUser(BaseModel):
    """The end user the app's own ``authenticate`` handler (``auth.path`` in its
    ``langgraph.json``) found behind a request: what its handlers see as ``ctx.user`` and
    its runs as ``config["configurable"]["langgraph_auth_user"]``. ``fields`` are the other
    keys the handler returned, as JSON."""

    model_config = ConfigDict(frozen=True)

    identity: str
    display_name: str
    is_authenticated: bool = True
    permissions: tuple[str, ...] = ()
    fields: dict[str, JsonValue] = Field(default_factory=dict)

    def as_dict(self) -> dict[str, JsonValue]:
        """The user as LangGraph Platform shows it to a graph: every field, the fixed
        four last (a handler's own ``identity`` field cannot shadow them)."""
        return {
            **self.fields,
            "identity": self.identity,
            "display_name": self.display_name,
            "is_authenticated": self.is_authenticated,
            "permissions": list(self.permissions),
        }


class Principal(BaseModel):
    """Who is calling: the authenticated key, its tenant and what the key may do; with an
    app's own auth, also the end user its ``authenticate`` handler found."""

    tenant_id: str
    key_id: str
    scopes: tuple[Scope, ...] = DEFAULT_SCOPES
    user: AuthUser | None = None
    # The request being served, for its log lines on every hop (agent_runtime.core.logs); not part
    # of who is calling. Set per request by the ingress on a copy of the cached principal.
    request_id: str | None = None


INT32_MAX = 2**31 - 1


class TenantLimits(BaseModel):
    """A tenant's own limits; ``None`` means "the runtime's default" (``AGENT_*``).

    Stored by the admin API and CLI (``agent_tenant_limits``, revision 0004); the rate
    limiter reads them with :meth:`agent_runtime.tenancy.tenants.TenantStore.get_limits`.
    """

    # Bounded by their columns (32-bit; tokens 64-bit, kept far from its end).
    requests_per_minute: int | None = Field(
        default=None, ge=1, le=INT32_MAX, description="Per API key."
    )
    tokens_per_minute: int | None = Field(default=None, ge=1, le=10**15, description="Per tenant.")
    max_concurrent_runs: int | None = Field(
        default=None, ge=1, le=INT32_MAX, description="Per tenant."
    )
    max_queued_runs: int | None = Field(
        default=None, ge=0, le=INT32_MAX, description="Background runs waiting, per tenant."
    )


class ThreadRecord(BaseModel):
    thread_id: str
    tenant_id: str
    graph_id: str | None = None
    # "busy" while the thread has a pending or running run.
    status: ThreadStatus = "idle"
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    updated_at: datetime
    config: dict[str, Any] = Field(default_factory=dict)
    # The latest state's values (JSON) and interrupts by task id, kept with the row so
    # reads and searches need no checkpoint; None until a run or update wrote state.
    state_values: Any = None
    interrupts: dict[str, Any] = Field(default_factory=dict)
    current_run_id: str | None = None
    ttl_strategy: str | None = None
    ttl_minutes: float | None = None
    expires_at: datetime | None = None
    state_updated_at: datetime | None = None


class RunRecord(BaseModel):
    # "forbid" also keeps pydantic's mypy plugin from adding a ``**kwargs`` to __init__,
    # which would clash with the ``kwargs`` field.
    model_config = ConfigDict(extra="forbid")

    run_id: str
    thread_id: str | None
    tenant_id: str
    assistant_id: str
    status: RunStatus = "pending"
    metadata: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    created_at: datetime
    updated_at: datetime
    graph_id: str | None = None
    # The validated run request (input, command, config, stream modes ...), so that any
    # replica can execute a queued run or resume one whose replica died.
    kwargs: dict[str, Any] = Field(default_factory=dict)
    multitask_strategy: MultitaskStrategy = "reject"
    attempt: int = 1
    worker_id: str | None = None
    heartbeat_at: datetime | None = None
    cancel_action: CancelAction | None = None
    # A stateless run's thread, deleted (or kept) when the run ends.
    temporary: bool = False


class AssistantRecord(BaseModel):
    tenant_id: str
    assistant_id: str
    graph_id: str
    name: str
    description: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    version: int = 1
    created_at: datetime
    updated_at: datetime
