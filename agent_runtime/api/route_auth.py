"""The app's own auth handlers (``auth.path``) on the API's routes, as LangGraph Platform
runs them: which handler each route asks, with what ``value``, and what its answer does.

Under it the runtime's own checks stay: a request has passed its API key, the key's request
limit, the app's ``authenticate`` (``agent_runtime.api.deps``) and the key's scope before any
handler here runs. Then:

- a route on one thread, run, assistant or cron (:data:`ROUTE_CHECKS`) asks its resource's
  handler (runs are the ``threads`` resource's, as on the Platform); a filter it answers
  must match the object's metadata, else the object is *not found* (404, never 403: a user
  does not learn what exists beyond its reach);
- searches and counts (threads, assistants, crons) show only what the filter matches;
- creates and updates hand the handler the body's ``metadata``, which it may change (stamp
  an owner): the changed metadata is what gets stored; a run the user starts must also
  see its thread and its assistant (``threads.create_run``, ``assistants.read``);
- store routes hand the handler the namespace (and key, value ...), which it may rewrite.

``ROUTE_RULES`` lists every authenticated route (a test keeps it complete): a
:class:`Check`, ``IN_ROUTE`` (the route calls :class:`RouteGuard` itself) or ``NO_RESOURCE``.
Without an app auth every method here lets everything through unchanged.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel
from pydantic_core import to_jsonable_python
from starlette.requests import Request

from agent_runtime.core.errors import (
    AuthHandlerFailed,
    Conflict,
    InvalidRequest,
    NotFound,
    Unauthorized,
)
from agent_runtime.core.metadata_filter import MetadataFilter
from agent_runtime.core.records import AssistantRecord, Principal
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.protocol.agent_protocol import AssistantCreate, RunCreate, ThreadCreate
from agent_runtime.runs.assistants import AssistantStore
from agent_runtime.runs.crons import CronCreate, CronStore
from agent_runtime.user_app.auth_handlers import AppAuth, Resource

Target = Literal["thread", "assistant", "cron"]


@dataclass(frozen=True)
class Check:
    """Ask ``resource.action`` about the path's ``target`` (its id in ``{target}_id``)."""

    resource: Resource
    action: str
    target: Target


IN_ROUTE = "in route"
NO_RESOURCE = "no resource"
T, R, A = "/threads/{thread_id}", "/threads/{thread_id}/runs/{run_id}", "/assistants/{assistant_id}"
C = "/runs/crons/{cron_id}"
_READ_THREAD = Check("threads", "read", "thread")
_READ_ASSISTANT = Check("assistants", "read", "assistant")
ROUTE_RULES: dict[tuple[str, str], Check | str] = {
    # threads: runs are the threads resource's, as on the Platform
    ("POST", "/threads"): IN_ROUTE,
    ("POST", "/threads/search"): IN_ROUTE,
    ("POST", "/threads/count"): IN_ROUTE,
    ("POST", "/threads/prune"): IN_ROUTE,
    ("GET", T): _READ_THREAD,
    ("PATCH", T): IN_ROUTE,
    ("DELETE", T): Check("threads", "delete", "thread"),
    ("POST", f"{T}/copy"): IN_ROUTE,
    ("GET", f"{T}/state"): _READ_THREAD,
    ("GET", f"{T}/state/{{checkpoint_id}}"): _READ_THREAD,
    ("POST", f"{T}/state/checkpoint"): _READ_THREAD,
    ("POST", f"{T}/state"): Check("threads", "update", "thread"),
    ("GET", f"{T}/history"): _READ_THREAD,
    ("POST", f"{T}/history"): _READ_THREAD,
    ("GET", f"{T}/stream"): _READ_THREAD,
    # runs
    **{("POST", f"{T}/runs{suffix}"): IN_ROUTE for suffix in ("", "/wait", "/stream")},
    **{("POST", f"/runs{suffix}"): IN_ROUTE for suffix in ("", "/wait", "/stream", "/batch")},
    ("GET", f"{T}/runs"): Check("threads", "search", "thread"),
    ("GET", R): _READ_THREAD,
    ("GET", f"{R}/join"): _READ_THREAD,
    ("GET", f"{R}/stream"): _READ_THREAD,
    ("GET", f"{R}/trace"): _READ_THREAD,
    ("DELETE", R): Check("threads", "delete", "thread"),
    ("POST", f"{R}/cancel"): Check("threads", "update", "thread"),
    ("POST", "/runs/cancel"): IN_ROUTE,
    # assistants
    ("POST", "/assistants"): IN_ROUTE,
    ("POST", "/assistants/search"): IN_ROUTE,
    ("POST", "/assistants/count"): IN_ROUTE,
    ("GET", A): _READ_ASSISTANT,
    ("PATCH", A): IN_ROUTE,
    ("DELETE", A): Check("assistants", "delete", "assistant"),
    ("POST", f"{A}/versions"): _READ_ASSISTANT,
    ("POST", f"{A}/latest"): Check("assistants", "update", "assistant"),
    ("GET", f"{A}/graph"): _READ_ASSISTANT,
    ("GET", f"{A}/schemas"): _READ_ASSISTANT,
    ("GET", f"{A}/subgraphs"): _READ_ASSISTANT,
    ("GET", f"{A}/subgraphs/{{namespace}}"): _READ_ASSISTANT,
    # crons
    ("POST", "/runs/crons"): IN_ROUTE,
    ("POST", f"{T}/runs/crons"): IN_ROUTE,
    ("POST", "/runs/crons/search"): IN_ROUTE,
    ("POST", "/runs/crons/count"): IN_ROUTE,
    ("GET", C): Check("crons", "read", "cron"),
    ("PATCH", C): Check("crons", "update", "cron"),
    ("DELETE", C): Check("crons", "delete", "cron"),
    # store
    **{(method, "/store/items"): IN_ROUTE for method in ("PUT", "GET", "DELETE")},
    ("POST", "/store/items/search"): IN_ROUTE,
    ("POST", "/store/namespaces"): IN_ROUTE,
    # not LangGraph resources: the app's authenticate still runs on them
    ("GET", "/v1/models"): NO_RESOURCE,
    ("POST", "/v1/chat/completions"): NO_RESOURCE,
    ("POST", "/v1/embeddings"): NO_RESOURCE,
    ("GET", "/usage"): NO_RESOURCE,
    ("GET", "/budgets"): NO_RESOURCE,
}


class RouteGuard:
    """The app's handlers over this replica's rows (a pass-through without app auth)."""

    def __init__(
        self, auth: AppAuth | None, store: MetadataStore, assistants: AssistantStore
    ) -> None:
        self._auth = auth
        self._store = store
        self._assistants = assistants

    async def check_route(self, request: Request, principal: Principal) -> None:
        """The route's :class:`Check`, if it has one (called once its scope is checked)."""
        route = request.scope.get("route")
        rule = ROUTE_RULES.get((request.method, getattr(route, "path", "")))
        if self._auth is None or not isinstance(rule, Check):
            return
        params = request.path_params
        value: dict[str, Any] = {}
        if rule.target == "thread" and "run_id" in params:
            value["run_id"] = _uuid(params["run_id"], "run")
        await self.check(principal, rule, params[f"{rule.target}_id"], value)

    async def check(
        self,
        principal: Principal,
        rule: Check,
        target_id: str,
        value: dict[str, Any] | None = None,
    ) -> None:
        """Ask the handler about one object; 404 unless its filter matches the object."""
        if self._auth is None:
            return
        target_id, key = self._target(rule.target, target_id)
        value = {f"{rule.target}_id": key, **(value or {})}
        allowed = await self.authorize(principal, rule.resource, rule.action, value)
        await self.require_visible(principal, rule.target, target_id, allowed)

    def _target(self, target: Target, target_id: str) -> tuple[str, uuid.UUID]:
        """The stored id of a path's object, and its UUID (what handlers get)."""
        if target == "assistant":
            target_id = self._assistants.canonical_id(target_id)
        return target_id, _uuid(target_id, target)

    async def authorize(
        self, principal: Principal, resource: Resource, action: str, value: dict[str, Any]
    ) -> MetadataFilter | None:
        """The handler's answer about ``value`` (which it may change in place)."""
        if self._auth is None:
            return None
        if principal.user is None:  # never from a route: authenticate sets it
            raise Unauthorized("the app's authenticate handler found no user")
        return await self._auth.authorize(principal.user, resource, action, value)

    async def require_visible(
        self, principal: Principal, target: Target, target_id: str, allowed: MetadataFilter | None
    ) -> None:
        """NotFound, as for a missing one, unless ``allowed`` matches the object."""
        if allowed is None:
            return
        tenant = principal.tenant_id
        if target == "thread":
            missing = f"Thread with ID {target_id} not found"
            metadata = (await self._store.get_thread(tenant, target_id)).metadata
        elif target == "assistant":
            missing = f"Assistant {target_id} not found"
            metadata = (await self._assistants.get(tenant, target_id)).metadata
        else:
            missing = f"Cron '{target_id}' not found"
            metadata = (await CronStore(self._store).get(tenant, target_id)).metadata
        if not allowed.matches(metadata):
            raise NotFound(missing)

    async def visible_threads(self, principal: Principal, thread_ids: list[str]) -> list[str]:
        """Of ``thread_ids``, those ``threads.delete`` lets the caller prune."""
        value = {"thread_ids": [_uuid(t, "thread") for t in thread_ids]}
        allowed = await self.authorize(principal, "threads", "delete", value)
        if allowed is None:
            return thread_ids
        found = await _threads_metadata(self._store, principal.tenant_id, thread_ids)
        return [t for t in thread_ids if t in found and allowed.matches(found[t])]

    async def thread_copy(self, principal: Principal, thread_id: str) -> None:
        """Copying reads the thread (404 unless visible) and creates one (``threads.create``
        may refuse; its filter and changes do not apply: the copy keeps the metadata)."""
        await self.check(principal, _READ_THREAD, thread_id)
        await self.authorize(principal, "threads", "create", {"thread_id": uuid.uuid4()})

    # -- creates and updates: the handler may change the body's metadata -----------------
    async def thread_create(self, principal: Principal, body: ThreadCreate) -> ThreadCreate:
        """``threads.create``; an existing thread (``if_exists``) the filter does not
        match is a conflict, as on the Platform."""
        if self._auth is None:
            return body
        thread_id = body.thread_id or str(uuid.uuid4())
        value = {
            "thread_id": _uuid(thread_id, "thread"),
            "metadata": dict(body.metadata),
            "if_exists": body.if_exists,
            "ttl": body.ttl,
        }
        allowed = await self.authorize(principal, "threads", "create", value)
        if allowed is not None and body.thread_id is not None:
            found = await _threads_metadata(self._store, principal.tenant_id, [thread_id])
            if thread_id in found and not allowed.matches(found[thread_id]):
                raise Conflict(f"Thread with ID {thread_id} already exists")
        update = {"thread_id": thread_id, "metadata": _metadata(value, "threads.create")}
        return body.model_copy(update=update)

    async def updated(
        self,
        principal: Principal,
        rule: Check,
        target_id: str,
        body: BaseModel,
        value: dict[str, Any],
    ) -> Any:
        """``rule`` (an update) about one object with ``value`` (the body's fields): 404
        unless its filter matches; ``body`` with the metadata the handler left."""
        if self._auth is None:
            return body
        given = getattr(body, "metadata", None)
        target_id, key = self._target(rule.target, target_id)
        value = {**value, f"{rule.target}_id": key, "metadata": dict(given or {})}
        allowed = await self.authorize(principal, rule.resource, rule.action, value)
        await self.require_visible(principal, rule.target, target_id, allowed)
        changed = _metadata(value, f"{rule.resource}.{rule.action}")
        return body.model_copy(update={"metadata": changed or given})

    async def run_create(
        self, principal: Principal, thread_id: str | None, body: RunCreate
    ) -> RunCreate:
        """``threads.create_run`` (its filter must match the thread, if it exists) and
        ``assistants.read`` of the run's assistant (unless a graph's default)."""
        if self._auth is None:
            return body
        missing = "Thread or assistant not found."
        assistant = await self._readable_assistant(principal, body.assistant_id, missing)
        kwargs = body.model_dump(mode="json", exclude={"metadata"}, exclude_none=True)
        value = {
            "thread_id": _uuid(thread_id, "thread") if thread_id else None,
            "assistant_id": _uuid(assistant.assistant_id, "assistant"),
            "run_id": None,
            "status": "pending",
            "metadata": dict(body.metadata),
            "prevent_insert_if_inflight": body.multitask_strategy == "reject",
            "multitask_strategy": body.multitask_strategy,
            "if_not_exists": body.if_not_exists,
            "after_seconds": body.after_seconds or 0,
            "kwargs": kwargs,
        }
        allowed = await self.authorize(principal, "threads", "create_run", value)
        if allowed is not None and thread_id is not None:
            found = await _threads_metadata(self._store, principal.tenant_id, [thread_id])
            if thread_id in found and not allowed.matches(found[thread_id]):
                raise NotFound(missing)
        return body.model_copy(update={"metadata": _metadata(value, "threads.create_run")})

    async def _readable_assistant(
        self, principal: Principal, assistant_id: str, missing: str
    ) -> AssistantRecord:
        """The assistant a run or cron names, if ``assistants.read`` lets the caller see
        it (a graph's default assistant is everyone's, as on the Platform)."""
        assistant = await self._assistants.resolve(principal.tenant_id, assistant_id)
        if assistant.metadata.get("created_by") != "system":
            read = {"assistant_id": _uuid(assistant.assistant_id, "assistant")}
            readable = await self.authorize(principal, "assistants", "read", read)
            if readable is not None and not readable.matches(assistant.metadata):
                raise NotFound(missing)
        return assistant

    async def assistant_create(
        self, principal: Principal, body: AssistantCreate
    ) -> AssistantCreate:
        """``assistants.create``, as :meth:`thread_create` for threads."""
        if self._auth is None:
            return body
        value = body.model_dump(exclude={"description"})
        value["metadata"] = dict(body.metadata or {})
        if body.assistant_id is not None:
            value["assistant_id"] = self._target("assistant", body.assistant_id)[1]
        allowed = await self.authorize(principal, "assistants", "create", value)
        if allowed is not None and body.assistant_id is not None:
            try:
                existing = await self._assistants.get(principal.tenant_id, body.assistant_id)
            except NotFound:
                pass
            else:
                if not allowed.matches(existing.metadata):
                    raise Conflict(f"Assistant {body.assistant_id} already exists")
        return body.model_copy(update={"metadata": _metadata(value, "assistants.create")})

    async def cron_create(
        self, principal: Principal, thread_id: str | None, body: CronCreate
    ) -> CronCreate:
        """``crons.create`` (a thread's cron also reads its thread: 404 unless visible)."""
        if self._auth is None:
            return body
        if thread_id is not None:
            await self.check(principal, _READ_THREAD, thread_id)
        missing = f"Assistant {body.assistant_id} not found"
        await self._readable_assistant(principal, body.assistant_id, missing)
        value = {
            "payload": body.model_dump(mode="json", exclude={"metadata"}, exclude_none=True),
            "schedule": body.schedule,
            "cron_id": None,
            "thread_id": _uuid(thread_id, "thread") if thread_id else None,
            "user_id": principal.user.identity if principal.user else None,
            "end_time": body.end_time,
            "metadata": dict(body.metadata or {}),
        }
        await self.authorize(principal, "crons", "create", value)
        return body.model_copy(update={"metadata": _metadata(value, "crons.create")})


def search_value(query: BaseModel, fields: set[str]) -> dict[str, Any]:
    """A search's ``value`` for its handler: those of the query's fields, ``metadata`` a
    dict (handlers add to it, as the Platform's examples do)."""
    value = query.model_dump(include=fields)
    if "metadata" in fields:
        value["metadata"] = dict(value.get("metadata") or {})
    return value


def _uuid(value: str, what: str) -> uuid.UUID:
    """A path's id as the Platform hands it to handlers; 422 as the route's own check."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidRequest(f"Invalid {what} ID: must be a UUID") from None


def _metadata(value: dict[str, Any], where: str) -> dict[str, Any]:
    """``value["metadata"]`` as the handler left it, as JSON."""
    metadata = value.get("metadata")
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise AuthHandlerFailed(
            f"the app's auth handler for {where} set metadata to a {type(metadata).__name__}"
        )
    jsonable: dict[str, Any] = to_jsonable_python(metadata, fallback=str)
    return jsonable


async def _threads_metadata(
    store: MetadataStore, tenant_id: str, thread_ids: list[str]
) -> dict[str, dict[str, Any]]:
    """The metadata of those of ``thread_ids`` that exist."""
    found: dict[str, dict[str, Any]] = {}
    for thread_id in thread_ids:
        try:
            found[thread_id] = (await store.get_thread(tenant_id, thread_id)).metadata
        except NotFound:
            continue
    return found
