"""Response bodies of the LangGraph Platform "Agent Protocol" HTTP API.

Threads, runs, assistants and thread states as langgraph-api answers them: field names,
field order and datetime format are its own (orjson's), so the official ``langgraph-sdk``
reads them unchanged. The request models are :mod:`agent_runtime.protocol.agent_protocol`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, cast

from langgraph.types import StateSnapshot
from pydantic import BaseModel, ConfigDict, Field

from agent_runtime.core.records import (
    AssistantRecord,
    MultitaskStrategy,
    RunRecord,
    RunStatus,
    ThreadRecord,
    ThreadStatus,
)
from agent_runtime.protocol.sse import (
    checkpoint_from_config,
    interrupt_to_wire,
    json_dumpb,
    to_jsonable,
)


class _Response(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def wire(self) -> dict[str, Any]:
        """The JSON body langgraph-api sends (orjson's datetime format, not pydantic's)."""
        return cast(dict[str, Any], to_jsonable(self.model_dump()))


class Thread(_Response):
    thread_id: str
    created_at: dt.datetime
    updated_at: dt.datetime
    state_updated_at: dt.datetime
    metadata: dict[str, Any]
    status: ThreadStatus
    config: dict[str, Any] = Field(default_factory=dict)
    values: Any = None
    interrupts: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)


class Run(_Response):
    run_id: str
    thread_id: str | None
    assistant_id: str
    created_at: dt.datetime
    updated_at: dt.datetime
    status: RunStatus
    metadata: dict[str, Any]
    kwargs: dict[str, Any] = Field(default_factory=dict)
    multitask_strategy: MultitaskStrategy = "enqueue"


class Assistant(_Response):
    """An assistant (its latest version), fields in langgraph-api's order."""

    assistant_id: str
    graph_id: str
    config: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    name: str
    created_at: dt.datetime
    updated_at: dt.datetime
    version: int = 1
    description: str | None = None


class AssistantVersion(_Response):
    """One item of ``POST /assistants/{id}/versions`` (no ``updated_at``)."""

    assistant_id: str
    version: int
    graph_id: str
    config: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: dt.datetime
    name: str
    description: str | None = None


def assistant_to_wire(
    record: AssistantRecord, select: Sequence[str] | None = None
) -> dict[str, Any]:
    """An ``Assistant`` body; ``select`` keeps only those fields (search's ``select``)."""
    body = Assistant.model_validate(record.model_dump(exclude={"tenant_id"})).wire()
    return body if not select else {k: v for k, v in body.items() if k in select}


def dumps(obj: Any) -> bytes:
    """JSON bytes as langgraph-api writes response bodies (see
    :func:`agent_runtime.protocol.sse.json_dumpb`)."""
    return json_dumpb(obj)


def thread_to_wire(record: ThreadRecord, *, include_ttl: bool = False) -> dict[str, Any]:
    """A ``Thread`` body from its row (which keeps the latest values and interrupts)."""
    body = Thread(
        thread_id=record.thread_id,
        created_at=record.created_at,
        updated_at=record.updated_at,
        state_updated_at=record.state_updated_at or record.updated_at,
        metadata=record.metadata,
        status=record.status,
        config=record.config,
        values=record.state_values,
        interrupts=record.interrupts,
    ).wire()
    if include_ttl and record.ttl_minutes is not None:
        body["ttl"] = to_jsonable(
            {
                "strategy": record.ttl_strategy,
                "ttl_minutes": record.ttl_minutes,
                "expires_at": record.expires_at,
            }
        )
    return body


# Run kwargs that are the runtime's own bookkeeping, not part of the Platform's shape.
_PRIVATE_KWARGS = ("background", "kind", "on_completion", "key_id")


def run_to_wire(record: RunRecord) -> dict[str, Any]:
    kwargs = {k: v for k, v in record.kwargs.items() if k not in _PRIVATE_KWARGS}
    return Run(
        run_id=record.run_id,
        thread_id=record.thread_id,
        assistant_id=record.assistant_id,
        created_at=record.created_at,
        updated_at=record.updated_at,
        status=record.status,
        metadata=record.metadata,
        kwargs=kwargs,
        multitask_strategy=record.multitask_strategy,
    ).wire()


def thread_interrupts(snapshot: StateSnapshot) -> dict[str, list[dict[str, Any]]]:
    """The ``Thread.interrupts`` map (task id to interrupts) of a state snapshot."""
    return {
        t.id: [interrupt_to_wire(i) for i in t.interrupts] for t in snapshot.tasks if t.interrupts
    }


def state_to_wire(snapshot: StateSnapshot) -> dict[str, Any]:
    """A ``ThreadState`` body, as langgraph-api's state_snapshot_to_thread_state."""
    tasks = [
        {
            "id": t.id,
            "name": t.name,
            "path": t.path,
            "error": t.error,
            "interrupts": [interrupt_to_wire(i) for i in t.interrupts],
            "checkpoint": t.state.get("configurable")
            if t.state is not None and not isinstance(t.state, StateSnapshot)
            else None,
            "state": state_to_wire(t.state) if isinstance(t.state, StateSnapshot) else None,
            "result": getattr(t, "result", None),
        }
        for t in snapshot.tasks
    ]
    config, parent = snapshot.config or {}, snapshot.parent_config or {}
    return cast(
        dict[str, Any],
        to_jsonable(
            {
                "values": snapshot.values,
                "next": list(snapshot.next),
                "tasks": tasks,
                "metadata": snapshot.metadata,
                "created_at": snapshot.created_at,
                "checkpoint": checkpoint_from_config(config),
                "parent_checkpoint": checkpoint_from_config(parent),
                "interrupts": [interrupt_to_wire(i) for i in snapshot.interrupts],
                # deprecated, still sent by langgraph-api
                "checkpoint_id": config.get("configurable", {}).get("checkpoint_id"),
                "parent_checkpoint_id": parent.get("configurable", {}).get("checkpoint_id"),
            }
        ),
    )
