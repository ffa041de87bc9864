"""Request models and helpers for the LangGraph Platform "Agent Protocol" HTTP API.

Field names, defaults and response shapes follow what ``langgraph-sdk`` sends and what
langgraph-api answers, so the official SDK works against this runtime unchanged. Request
models ignore unknown fields (newer SDKs send more) but are strict on known ones, the way
langgraph-api's JSON-schema validation is: ``"5"`` is not an integer, ``1`` is not a string.
The response bodies are :mod:`agent_runtime.protocol.agent_responses`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Literal, get_args

from langgraph.types import Command as LangGraphCommand
from langgraph.types import Send as LangGraphSend
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from agent_runtime.core.errors import InvalidRequest
from agent_runtime.core.records import MultitaskStrategy, ThreadStatus

StreamMode = Literal[
    "values", "messages", "updates", "events", "tasks", "checkpoints",
    "debug", "custom", "messages-tuple", "tools", "lifecycle",
]  # fmt: skip
STREAM_MODES: tuple[str, ...] = get_args(StreamMode)
IfExists = Literal["raise", "do_nothing"]
IfNotExists = Literal["create", "reject"]
OnCompletion = Literal["delete", "keep"]
OnDisconnect = Literal["cancel", "continue"]
Durability = Literal["sync", "async", "exit"]
SortOrder = Literal["asc", "desc"]
All = Literal["*"]

# langgraph-api names a graph's default assistant uuid5(NAMESPACE_GRAPH, graph_id).
NAMESPACE_GRAPH = uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8")
# Pagination offsets past this are refused (422): the database's OFFSET is an integer,
# and a larger one failed the query (a 500) instead.
MAX_OFFSET = 2**31 - 1


MAX_AFTER_SECONDS = 366 * 24 * 3600


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


class CheckpointConfig(_Request):
    thread_id: str | None = None
    checkpoint_ns: str | None = None
    checkpoint_id: str | None = None
    checkpoint_map: dict[str, Any] | None = None


class Send(_Request):
    node: str
    input: Any = None


class Command(_Request):
    """``command`` of a run: resume an interrupt, update state, jump to nodes."""

    update: dict[str, Any] | list[Any] | None = None
    resume: Any = None
    goto: Send | str | list[Send | str] | None = None

    def to_langgraph(self) -> LangGraphCommand[Any]:
        """The LangGraph ``Command`` to pass as graph input (as langgraph-api's map_cmd)."""
        goto = self.goto if isinstance(self.goto, list) else [self.goto] if self.goto else []
        update: Any = self.update
        if isinstance(update, list) and all(
            isinstance(t, list) and len(t) == 2 and isinstance(t[0], str) for t in update
        ):
            update = [tuple(t) for t in update]
        return LangGraphCommand(
            update=update,
            goto=[g if isinstance(g, str) else LangGraphSend(g.node, g.input) for g in goto],
            resume=self.resume,
        )


class SuperstepUpdate(_Request):
    """One state update of a superstep (langgraph-api's ``ThreadSuperstepUpdate``)."""

    values: dict[str, Any] | list[dict[str, Any]] | None = None
    as_node: str
    task_id: str | None = None


class Superstep(_Request):
    updates: list[SuperstepUpdate]


class ThreadCreate(_Request):
    """``POST /threads``. The SDK sends ``graph_id=`` inside ``metadata``."""

    thread_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    if_exists: IfExists = "raise"
    ttl: dict[str, Any] | None = None
    supersteps: list[Superstep] | None = None

    @property
    def graph_id(self) -> str | None:
        value = self.metadata.get("graph_id")
        return value if isinstance(value, str) else None


class ThreadPatch(_Request):
    metadata: dict[str, Any] = Field(default_factory=dict)
    ttl: dict[str, Any] | None = None


class ThreadCount(_Request):
    metadata: dict[str, Any] | None = None
    values: dict[str, Any] | None = None
    status: ThreadStatus | None = None


class ThreadPrune(_Request):
    thread_ids: list[str] = Field(default_factory=list)
    strategy: Literal["delete", "keep_latest"] = "delete"


class ThreadHistory(_Request):
    """``POST /threads/{id}/history`` (``threads.get_history``)."""

    limit: int = Field(default=10, ge=1, le=1000)
    before: str | dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    checkpoint: dict[str, Any] | None = None
    select: list[str] | None = None


class RunsCancel(_Request):
    """``POST /runs/cancel``: by thread and run ids, or every run with a status."""

    thread_id: str | None = None
    run_ids: list[str] | None = None
    status: Literal["pending", "running", "all"] | None = None


ThreadField = Literal[
    "thread_id", "created_at", "updated_at", "state_updated_at", "metadata", "config",
    "status", "values", "interrupts",
]  # fmt: skip


class ThreadSearch(_Request):
    ids: list[str] | None = None
    metadata: dict[str, Any] | None = None
    values: dict[str, Any] | None = None
    status: ThreadStatus | None = None
    limit: int = Field(default=10, ge=1, le=1000)
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET)
    sort_by: (
        Literal["thread_id", "status", "created_at", "updated_at", "state_updated_at"] | None
    ) = None
    sort_order: SortOrder | None = None
    select: list[ThreadField] | None = None
    extract: dict[str, str] | None = None


class ThreadStateCheckpointRequest(_Request):
    """``POST /threads/{id}/state/checkpoint`` (``threads.get_state(checkpoint=...)``)."""

    checkpoint: CheckpointConfig
    subgraphs: bool = False


class ThreadStateUpdate(_Request):
    values: dict[str, Any] | list[Any] | None = None
    as_node: str | None = None
    checkpoint: CheckpointConfig | None = None
    checkpoint_id: str | None = None


class RunCreate(_Request):
    """Body of every run-creating call: ``/runs``, ``/runs/wait``, ``/runs/stream`` and the
    ``/threads/{id}/runs...`` variants. Defaults are langgraph-api's, not its OpenAPI text's
    (the code defaults ``on_disconnect`` to "continue")."""

    assistant_id: str
    input: Any = None
    command: Command | None = None
    _headers: dict[str, str] = PrivateAttr(default_factory=dict)
    # Typed loosely so callers can pass it on as ``str | list[str]``; checked below.
    stream_mode: str | list[str] = "values"
    stream_subgraphs: bool = False
    stream_resumable: bool = False
    metadata: dict[str, Any] = Field(default_factory=dict)
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    checkpoint_id: str | None = None
    checkpoint: CheckpointConfig | None = None
    checkpoint_during: bool | None = None
    interrupt_before: All | list[str] | None = None
    interrupt_after: All | list[str] | None = None
    feedback_keys: list[str] | None = None
    webhook: str | None = None
    multitask_strategy: MultitaskStrategy = "enqueue"
    if_not_exists: IfNotExists = "reject"
    on_completion: OnCompletion | None = None
    on_disconnect: OnDisconnect = "continue"
    # Finite, not negative, and no later than a year (1e12 overflowed the date: a 500).
    after_seconds: float | None = Field(
        default=None, ge=0, le=MAX_AFTER_SECONDS, allow_inf_nan=False
    )
    durability: Durability | None = None
    strict_resume: bool | None = None
    langsmith_tracer: dict[str, Any] | None = None

    @field_validator("stream_mode")
    @classmethod
    def _known_modes(cls, value: str | list[str]) -> str | list[str]:
        unknown = [
            m for m in ([value] if isinstance(value, str) else value) if m not in STREAM_MODES
        ]
        if unknown:
            raise ValueError(f"unknown stream mode(s) {unknown}; expected any of {STREAM_MODES}")
        v2_only = sorted({"tools", "lifecycle"} & set([value] if isinstance(value, str) else value))
        if v2_only:
            # As langgraph-api: these belong to the v2 event-streaming protocol only.
            raise ValueError(
                f"stream_mode entries {v2_only!r} are only supported on the v2 event "
                "streaming endpoints."
            )
        return value

    @field_validator("config")
    @classmethod
    def _config_shape(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        # As langgraph-api checks a run's config: configurable an object, tags strings...
        return _checked_config(value)

    @property
    def stream_modes(self) -> list[str]:
        return normalise_stream_modes(self.stream_mode)

    def effective_durability(self) -> Durability:
        if self.durability is not None:
            return self.durability
        return "async" if self.checkpoint_during in (None, True) else "exit"

    def effective_on_completion(self, stateless: bool) -> OnCompletion:
        """Stateless runs delete their temporary thread unless asked to keep it."""
        return self.on_completion or ("delete" if stateless else "keep")

    def semantic_error(self, thread_id: str | None) -> str | None:
        """langgraph-api's 400 detail for a well-typed but inconsistent request, or None."""
        if thread_id is None and self.command is not None and self.command.resume:
            return "You must provide a thread_id when resuming."
        if (self.config or {}).get("configurable") and self.context:
            return (
                "Cannot specify both configurable and context. Prefer setting context alone. "
                "Context was introduced in LangGraph 0.6.0 and is the long term planned "
                "replacement for configurable."
            )
        return None

    def with_headers(self, headers: dict[str, str]) -> RunCreate:
        """This body, carrying request headers for the run's configurable (set by the
        ingress from the app's ``http.configurable_headers``; never read from JSON)."""
        copy = self.model_copy()
        copy._headers = headers
        return copy

    @property
    def headers(self) -> dict[str, str]:
        return self._headers

    def config_and_context(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Run config and context kept in sync (langgraph-api copies one into the other),
        with ``checkpoint_id``/``checkpoint`` merged into ``configurable``."""
        config = dict(self.config or {})
        configurable = dict(config.get("configurable") or {})
        context = dict(self.context or {})
        if context:
            configurable = dict(context)
        else:
            context = dict(configurable)
        if self.checkpoint_id:
            configurable["checkpoint_id"] = self.checkpoint_id
        if self.checkpoint is not None:
            configurable.update(self.checkpoint.model_dump(exclude_none=True))
        config["configurable"] = configurable
        return config, context


AssistantSortBy = Literal["assistant_id", "graph_id", "name", "created_at", "updated_at"]
AssistantField = Literal[
    "assistant_id", "graph_id", "name", "description", "config", "context",
    "created_at", "updated_at", "metadata", "version",
]  # fmt: skip


class AssistantConfig(_Request):
    """The shape langgraph-api checks an assistant's ``config`` against; other keys pass."""

    model_config = ConfigDict(extra="allow", strict=True)

    tags: list[str] = Field(default_factory=list)
    recursion_limit: int = 0
    configurable: dict[str, Any] = Field(default_factory=dict)


def _checked_config(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is not None:
        AssistantConfig.model_validate(value)
    return value


class AssistantCreate(_Request):
    """``POST /assistants``. Defaults are applied by the store (name "Untitled" ...)."""

    graph_id: str
    assistant_id: str | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    if_exists: IfExists = "raise"
    name: str | None = None
    description: str | None = None

    _config_shape = field_validator("config")(_checked_config)


class AssistantPatch(_Request):
    """``PATCH /assistants/{id}``: omitted fields keep their value; metadata is merged."""

    graph_id: str | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    name: str | None = None
    description: str | None = None

    _config_shape = field_validator("config")(_checked_config)


class AssistantSearch(_Request):
    metadata: dict[str, Any] | None = None
    graph_id: str | None = None
    name: str | None = None
    limit: int = Field(default=10, ge=1, le=1000)
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET)
    sort_by: AssistantSortBy | None = None
    sort_order: SortOrder | None = None
    select: list[AssistantField] | None = None


class AssistantCount(_Request):
    metadata: dict[str, Any] | None = None
    graph_id: str | None = None
    name: str | None = None


class AssistantVersionsSearch(_Request):
    metadata: dict[str, Any] | None = None
    limit: int = Field(default=10, ge=1, le=1000)
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET)


class AssistantVersionChange(_Request):
    """``POST /assistants/{id}/latest``; a missing version is Platform's 404, not a 422."""

    version: int | None = None


def normalise_stream_modes(value: str | Sequence[str] | None) -> list[str]:
    """``stream_mode`` as a list without repeats; empty means ``["values"]``."""
    modes = [value] if isinstance(value, str) else list(value or [])
    unknown = [m for m in modes if m not in STREAM_MODES]
    if unknown:
        raise InvalidRequest(f"stream_mode: unknown mode(s) {unknown}; expected {STREAM_MODES}")
    return list(dict.fromkeys(modes)) or ["values"]


def require_uuid(value: str | None, message: str) -> str:
    """``value`` when it is a UUID; otherwise the Platform's 422 (e.g. "Invalid thread ID")."""
    try:
        uuid.UUID(str(value))
    except ValueError:
        raise InvalidRequest(message) from None
    return str(value)


def default_assistant_id(graph_id: str) -> str:
    return str(uuid.uuid5(NAMESPACE_GRAPH, graph_id))
