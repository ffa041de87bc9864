"""The ingress's app in process with an app's own auth (``auth.path``): the Platform's
single-owner pattern written with ``langgraph_sdk.Auth``, over a real database and a real
orchestrator replica (the ``steps`` graph) called in process instead of through Ray."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from langgraph_sdk import Auth

from agent_runtime.api.app_factory import create_api
from agent_runtime.api.deps import Services
from agent_runtime.core.records import Principal, Scope
from agent_runtime.db.metadata import MetadataStore
from agent_runtime.replica.orchestration import Orchestration
from agent_runtime.tenancy.audit import CLI
from agent_runtime.tenancy.tenants import TenantAdmin
from agent_runtime.user_app.auth_handlers import app_auth
from agent_runtime.user_app.served_graphs import ServedGraphs
from tests.api.admin_app import admin_settings
from tests.api.app_services import services as app_services
from tests.backends import backend_settings
from tests.example_graphs import registry_graphs
from tests.runs.run_harness import REGISTRY, replica

auth = Auth()
USERS: dict[str, Auth.types.MinimalUserDict] = {
    "alice-token": {
        "identity": "alice",
        "display_name": "Alice",
        "permissions": ["assistants:create"],
    },
    "bob-token": {"identity": "bob", "permissions": []},
}
CALLS: list[str] = []  # the handlers that ran, "resource.action"


@auth.authenticate
async def authenticate(authorization: str | None) -> Auth.types.MinimalUserDict:
    token = (authorization or "").removeprefix("Bearer ").strip()
    if token == "broken-token":
        raise RuntimeError("the identity provider is down: secret=hunter2")
    user = USERS.get(token)
    if user is None:
        raise Auth.exceptions.HTTPException(
            401, "Invalid or missing token", headers={"WWW-Authenticate": "Bearer"}
        )
    return {**user, "org": "acme"}


@auth.on
async def owner_only(ctx: Auth.types.AuthContext, value: dict[str, Any]) -> dict[str, str]:
    """Every resource belongs to its creator (the Platform's documented pattern)."""
    CALLS.append(f"{ctx.resource}.{ctx.action}")
    metadata = value.setdefault("metadata", {})
    metadata["owner"] = ctx.user.identity
    return {"owner": ctx.user.identity}


@auth.on.assistants.create
async def create_assistant(ctx: Auth.types.AuthContext, value: dict[str, Any]) -> None:
    if "assistants:create" not in ctx.permissions:
        raise Auth.exceptions.HTTPException(403, "assistants:create is required")
    value["metadata"]["owner"] = ctx.user.identity


@auth.on.assistants.delete
async def never_delete(ctx: Auth.types.AuthContext, value: dict[str, Any]) -> bool:
    return False


@auth.on.crons.search
async def broken(ctx: Auth.types.AuthContext, value: dict[str, Any]) -> None:
    raise ValueError("a bug in the app's handler, with secret=hunter2")


@auth.on.store
async def own_namespace(ctx: Auth.types.AuthContext, value: dict[str, Any]) -> None:
    """Each user's items live under their identity, as the Platform's example scopes them."""
    namespace = tuple(value.get("namespace") or ())
    value["namespace"] = (ctx.user.identity, *namespace)


class LocalOrchestrator:
    """The orchestrator handle in process: ``handle.method.remote(*args)`` awaits the
    replica's own service, as the deployment's method of that name does."""

    def __init__(self, orchestration: Orchestration) -> None:
        threads, runs = orchestration.threads, orchestration.runs

        async def get_state(
            principal: Principal, thread_id: str, subgraphs: bool = False, checkpoint: Any = None
        ) -> dict[str, Any]:
            return await threads.get_state(
                principal, thread_id, subgraphs=subgraphs, checkpoint=checkpoint
            )

        self.get_state = _Remote(get_state)
        self.delete_thread = _Remote(threads.delete)
        self.copy_thread = _Remote(threads.copy)
        self.wait = _Remote(runs.wait)


class _Remote:
    def __init__(self, method: Callable[..., Awaitable[Any]]) -> None:
        self._method = method

    def remote(self, *args: Any) -> Awaitable[Any]:
        return self._method(*args)


@dataclass
class AuthApi:
    app: Any
    services: Services
    store: MetadataStore
    key: str

    def client(self, token: str | None = None, *, key: str | None = None) -> httpx.AsyncClient:
        """A client with the tenant's API key (or ``key``) and a user's bearer token."""
        headers = {"x-api-key": key if key is not None else self.key}
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        transport = httpx.ASGITransport(app=self.app)
        return httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers)

    async def new_key(self, *scopes: Scope) -> str:
        raw, _ = await TenantAdmin(self.store).create_key(CLI, "acme", "test", list(scopes))
        return raw


@asynccontextmanager
async def auth_api(backend: str, folder: Path) -> AsyncIterator[AuthApi]:
    """The app over ``backend``, one tenant (``acme``) and its key; alice and bob are
    users of that tenant, told apart by the app's own auth only."""
    CALLS.clear()
    async with backend_settings(backend, folder) as storage, replica(storage) as running:
        settings = admin_settings(storage)
        store = MetadataStore(storage)
        await store.setup()
        graphs = ServedGraphs(registry_graphs(REGISTRY), checkpointer=None, store=None)
        services = app_services(
            store,
            settings,
            graphs=graphs,
            orchestrator=LocalOrchestrator(running.orchestration),
            items=running.items,
            app_auth=app_auth(auth, "tests.api.auth_app:auth"),
        )
        admin = TenantAdmin(store)
        await admin.create_tenant(CLI, "acme", None)
        key, _ = await admin.create_key(CLI, "acme", "test", None)
        try:
            yield AuthApi(create_api(services), services, store, key)
        finally:
            await services.limiter.close()
            await store.close()
