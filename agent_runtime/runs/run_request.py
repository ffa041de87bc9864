"""A run-creating request made into the run to record.

The assistant's config, context and metadata are merged with the request's (the
request's win), ``configurable`` gets the run's ids, the recursion limit is capped by the
server's step limit, and the request's streaming, interrupt, webhook and lifetime options
become the run's kwargs, what the executor reads back when it runs it.

With the app's own auth, ``configurable`` also gets the end user, as LangGraph Platform
sets it: ``langgraph_auth_user`` (a dict: ``identity``, ``display_name``,
``is_authenticated``, ``permissions`` and the handler's other fields),
``langgraph_auth_user_id`` and ``langgraph_auth_permissions``. Values a client sends under
those names are dropped (as the Platform drops them), so a run never sees a user its
request only claimed.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from agent_runtime.core.records import AssistantRecord, Principal
from agent_runtime.protocol.agent_protocol import RunCreate
from agent_runtime.runs.run_queue import NewRun

RunKind = Literal["background", "wait", "stream"]
AUTH_USER_KEYS = ("langgraph_auth_user", "langgraph_auth_user_id", "langgraph_auth_permissions")


def _merge(*parts: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in parts:
        out.update(part or {})
    return out


def _without_auth_user(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if key not in AUTH_USER_KEYS}


def new_run(
    principal: Principal,
    thread_id: str | None,
    body: RunCreate,
    assistant: AssistantRecord,
    kind: RunKind,
    max_steps: int,
) -> NewRun:
    """The run ``body`` asks for, on ``thread_id`` (a new temporary thread when None)."""
    temporary = thread_id is None
    thread_id = thread_id or str(uuid.uuid4())
    run_id = str(uuid.uuid4())
    request_config, request_context = body.config_and_context()
    metadata = _merge(
        assistant.metadata,
        request_config.get("metadata"),
        body.metadata,
        {"assistant_id": assistant.assistant_id},
    )
    configurable = _merge(
        (assistant.config or {}).get("configurable"),
        request_config.get("configurable"),
        body.headers,
    )
    configurable = _without_auth_user(configurable)
    if principal.user is not None:
        configurable.update(
            langgraph_auth_user=principal.user.as_dict(),
            langgraph_auth_user_id=principal.user.identity,
            langgraph_auth_permissions=list(principal.user.permissions),
        )
    configurable.update(
        run_id=run_id,
        thread_id=thread_id,
        graph_id=assistant.graph_id,
        assistant_id=assistant.assistant_id,
        tenant_id=principal.tenant_id,
    )
    config = _merge(assistant.config, request_config)
    config["configurable"] = configurable
    config["metadata"] = metadata
    steps = config.get("recursion_limit")
    config["recursion_limit"] = min(
        steps if isinstance(steps, int) and steps > 0 else max_steps, max_steps
    )
    kwargs: dict[str, Any] = {
        "input": body.input,
        "command": body.command.model_dump(mode="json") if body.command else None,
        "config": config,
        "context": _without_auth_user(_merge(assistant.context, request_context)),
        "stream_mode": body.stream_modes,
        "interrupt_before": body.interrupt_before,
        "interrupt_after": body.interrupt_after,
        "subgraphs": body.stream_subgraphs,
        "resumable": body.stream_resumable,
        "temporary": temporary,
        "on_completion": body.effective_on_completion(temporary),
        "durability": body.effective_durability(),
        "webhook": body.webhook,
        "feedback_keys": body.feedback_keys,
        "background": kind == "background",
        "kind": kind,
        "key_id": principal.key_id,  # for the audit log; not on the wire
    }
    return NewRun(
        tenant_id=principal.tenant_id,
        thread_id=thread_id,
        graph_id=assistant.graph_id,
        assistant_id=assistant.assistant_id,
        kwargs=kwargs,
        metadata=metadata,
        multitask_strategy=body.multitask_strategy,
        if_not_exists=body.if_not_exists,
        after_seconds=body.after_seconds or 0.0,
        temporary=temporary,
        thread_metadata={
            "graph_id": assistant.graph_id,
            "assistant_id": assistant.assistant_id,
        },
        # A thread the run creates carries the run's own metadata too, as on the Platform
        # (so the owner an auth handler stamped on the run owns the thread); a thread that
        # exists keeps its own.
        created_thread_metadata={
            "graph_id": assistant.graph_id,
            "assistant_id": assistant.assistant_id,
            **(request_config.get("metadata") or {}),
            **(body.metadata or {}),
        },
        run_id=run_id,
    )
