"""The ingress's FastAPI application: the routes of every resource behind the middleware.

The routes (``agent_runtime.api.routes``, one module per resource) declare what they need
through ``agent_runtime.api.deps``; :func:`create_api` puts them behind the middleware
(``agent_runtime.api.middleware``) and the request hardening.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import ASGIApp

from agent_runtime.api.deps import Services
from agent_runtime.api.hardening import install_cors, install_hardening
from agent_runtime.api.middleware import install_error_handlers, install_middleware
from agent_runtime.api.openapi_doc import install_openapi
from agent_runtime.api.routes.admin_routes import admin
from agent_runtime.api.routes.assistant_routes import assistants, system
from agent_runtime.api.routes.cron_routes import crons
from agent_runtime.api.routes.openai_routes import openai
from agent_runtime.api.routes.run_routes import runs
from agent_runtime.api.routes.store_routes import store
from agent_runtime.api.routes.thread_routes import threads
from agent_runtime.api.routes.usage_routes import usage


def create_api(services: Services, custom_app: ASGIApp | None = None) -> FastAPI:
    """The API over ``services``; ``custom_app`` (the user's ``http.app``) answers the
    paths no route of the API takes, behind the same hardening and middleware."""
    app = FastAPI(
        title="Agent Runtime",
        version="0.1.0",
        description="LangGraph agents on Ray Serve, speaking the Agent Protocol.",
    )
    app.state.services = services
    install_error_handlers(app)
    install_hardening(app, services.settings.http, services.settings.serve.max_request_bytes)
    install_middleware(app, services)
    install_cors(app, services.settings.http)
    install_openapi(app)
    app.include_router(system)
    app.include_router(assistants)
    app.include_router(threads)
    app.include_router(runs)
    app.include_router(crons)
    app.include_router(store)
    app.include_router(openai)
    app.include_router(usage)
    app.include_router(admin)
    if custom_app is not None:
        app.mount("/", custom_app)  # last: the API's own routes match first
    return app
