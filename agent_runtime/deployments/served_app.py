"""The app the deployments serve: the one whose ``langgraph.json`` ``AGENT_APP_CONFIG``
names (the launcher's folder's by default; in this repository, the example graphs): its
graphs for the orchestrator and the ingress, its own HTTP app (``http.app``) for the
ingress.

Each replica loads the app itself, in its own process; the launcher loads it once before
starting anything, so an app that cannot load stops ``agent-runtime serve`` with every
problem named rather than failing replicas one by one.
"""

from __future__ import annotations

import logging

from agent_runtime.config.settings import RuntimeSettings
from agent_runtime.execution.openai_routing import route_openai_clients
from agent_runtime.user_app.graph_loader import LoadedApp, load_app

logger = logging.getLogger(__name__)


def load_served_app(settings: RuntimeSettings) -> LoadedApp:
    """The app, loaded in this process; its warnings logged."""
    config = settings.app.config
    if settings.app.route_openai_clients:
        route_openai_clients()  # before the app's modules build their clients
    app = load_app(config)
    for warning in app.warnings:
        logger.warning("%s", warning)
    logger.info("serving %s: graphs %s", config, ", ".join(app.graphs))
    return app
