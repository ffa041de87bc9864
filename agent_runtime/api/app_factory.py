"""The ingress's FastAPI application: the routes of every resource behind the middleware.

The routes (``agent_runtime.api.routes``, one module per resource) declare what they need
through ``agent_runtime.api.deps``; :func:`create_api` puts them behind the middleware
(``agent_runtime.api.middleware``) and the request hardening.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from starlette.types import ASGIApp

from agent_runtime.api.custom_routes import mount_custom_app
from agent_runtime.api.deps import Services
from agent_runtime.api.hardening import install_cors, install_hardening
from agent_runtime.api.middleware import install_error_handlers, install_middleware
from agent_runtime.api.openapi_doc import install_openapi
from agent_runtime.api.routes.admin_routes import admin
from agent_runtime.api.routes.assistant_routes import assistants, meta, system
from agent_runtime.api.routes.cron_routes import crons
from agent_runtime.api.routes.openai_routes import openai
from agent_runtime.api.routes.run_record_routes import run_records
from agent_runtime.api.routes.run_routes import runs
from agent_runtime.api.routes.store_routes import store
from agent_runtime.api.routes.thread_routes import threads
from agent_runtime.api.routes.usage_routes import usage
from agent_runtime.config.http_settings import RouteGroup

# What an app's http.disable_<group> switches off (AGENT_DISABLED_ROUTES), as LangGraph
# Platform groups them: crons are runs' routes; meta is /info (and the docs, above).
ROUTE_GROUPS: dict[RouteGroup, tuple[APIRouter, ...]] = {
    "meta": (meta,),
    "assistants": (assistants,),
    "threads": (threads,),
    "runs": (runs, run_records, crons),
    "store": (store,),
}


def create_api(services: Services, custom_app: ASGIApp | None = None) -> FastAPI:
    """The API over ``services``, less the route groups its settings switch off;
    ``custom_app`` (the user's ``http.app``) answers the paths no route of the API takes,
    behind the same hardening and middleware."""
    disabled = set(services.settings.http.disabled_routes)
    docs = "meta" not in disabled
    app = FastAPI(
        title="Agent Runtime",
        version="0.1.0",
        description="LangGraph agents on Ray Serve, speaking the Agent Protocol.",
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.services = services
    install_error_handlers(app)
    install_hardening(app, services.settings.http, services.settings.serve.max_request_bytes)
    install_middleware(app, services)
    install_cors(app, services.settings.http)
    install_openapi(app)
    app.include_router(system)
    for group, routers in ROUTE_GROUPS.items():
        if group not in disabled:
            for router in routers:
                app.include_router(router)
    app.include_router(openai)
    app.include_router(usage)
    app.include_router(admin)
    if custom_app is not None:
        mount_custom_app(app, custom_app, services)
    return app
