"""What an app's ``langgraph.json`` says about the runtime's own settings, as ``AGENT_*``
variables: thread retention (``checkpointer.ttl``), store items' expiry (``store.ttl``),
with LangGraph CLI's meaning (minutes), the origins CORS allows (``http.cors``), the route
groups switched off (``http.disable_*``) and whether its own routes ask for a key
(``http.enable_custom_route_auth``).

They are defaults: a variable the operator sets wins, as it does over the app's ``env``.
The launcher sets them in its environment before it reads the settings; ``agent-runtime
build`` writes them into the Serve config's ``env_vars``.
"""

from __future__ import annotations

import json
import os
from collections.abc import MutableMapping

from agent_runtime.user_app.langgraph_json import LangGraphJson

# The API's route groups an app may switch off (http.disable_<group>); the others it names
# (mcp, a2a, ui) are not served here at all.
ROUTE_GROUPS = ("assistants", "threads", "runs", "store", "meta")


def settings_env(config: LangGraphJson) -> dict[str, str]:
    """The ``AGENT_*`` variables ``config`` sets, in the order of its keys."""
    env: dict[str, str] = {}
    threads = config.checkpointer.ttl if config.checkpointer is not None else None
    if threads is not None:
        env["AGENT_THREAD_TTL_STRATEGY"] = threads.strategy
        if threads.default_ttl is not None:
            env["AGENT_THREAD_TTL_MINUTES"] = _number(threads.default_ttl)
        if threads.sweep_interval_minutes is not None:
            env["AGENT_THREAD_SWEEP_INTERVAL_S"] = _number(threads.sweep_interval_minutes * 60)
        if threads.sweep_limit is not None:
            env["AGENT_THREAD_SWEEP_LIMIT"] = str(threads.sweep_limit)
    items = config.store.ttl if config.store is not None else None
    if items is not None:
        env["AGENT_STORE_REFRESH_ON_READ"] = "true" if items.refresh_on_read else "false"
        if items.default_ttl is not None:
            env["AGENT_STORE_DEFAULT_TTL_MINUTES"] = _number(items.default_ttl)
        if items.sweep_interval_minutes is not None:
            env["AGENT_STORE_SWEEP_INTERVAL_MINUTES"] = str(items.sweep_interval_minutes)
    http = config.http
    if http is not None:
        if http.cors is not None and http.cors.allow_origins is not None:
            env["AGENT_CORS_ORIGINS"] = json.dumps(http.cors.allow_origins)
        disabled = [group for group in ROUTE_GROUPS if getattr(http, f"disable_{group}")]
        if disabled:
            env["AGENT_DISABLED_ROUTES"] = json.dumps(disabled)
        if http.disable_webhooks:
            env["AGENT_WEBHOOKS_ENABLED"] = "false"
        if http.enable_custom_route_auth:
            env["AGENT_CUSTOM_ROUTE_AUTH"] = "true"
        headers = http.configurable_headers
        if headers is not None and headers.includes:
            env["AGENT_CONFIGURABLE_HEADERS_INCLUDES"] = json.dumps(headers.includes)
        if headers is not None and headers.excludes:
            env["AGENT_CONFIGURABLE_HEADERS_EXCLUDES"] = json.dumps(headers.excludes)
    return env


def apply_settings_env(
    config: LangGraphJson, environ: MutableMapping[str, str] = os.environ
) -> dict[str, str]:
    """Set the variables ``config`` implies where ``environ`` has none; returns those set."""
    applied = {}
    for name, value in settings_env(config).items():
        if name not in environ:
            environ[name] = value
            applied[name] = value
    return applied


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
