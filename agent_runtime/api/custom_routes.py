"""The app's own HTTP app (``http.app`` in its langgraph.json), mounted beside the API.

It answers the paths no route of the API takes, behind the same hardening and middleware.
With ``AGENT_CUSTOM_ROUTE_AUTH`` (an app's ``http.enable_custom_route_auth``), each of its
HTTP requests first passes the API's key check and per-key limit; the caller's
:class:`~agent_runtime.core.records.Principal` is then ``request.state.principal``.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from agent_runtime.api.deps import Services, authenticate
from agent_runtime.api.middleware import error_response
from agent_runtime.core.errors import AgentRuntimeError


class KeyRequired:
    """``app``, answered only for requests with a valid API key (the API's own check)."""

    def __init__(self, app: ASGIApp, services: Services) -> None:
        self._app = app
        self._services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            request = Request(scope, receive)
            try:
                request.state.principal = await authenticate(request, self._services)
            except AgentRuntimeError as error:
                await error_response(request, error)(scope, receive, send)
                return
        await self._app(scope, receive, send)


def mount_custom_app(app: FastAPI, custom_app: ASGIApp, services: Services) -> None:
    """Mount ``custom_app`` last, so that the API's own routes match first."""
    if services.settings.http.custom_route_auth:
        custom_app = KeyRequired(custom_app, services)
    app.mount("/", custom_app)
