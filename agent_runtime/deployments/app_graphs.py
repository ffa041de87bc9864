"""The graphs the deployments serve: the user's app that ``AGENT_APP_CONFIG`` names (its
``langgraph.json``), else the runtime's example graphs (``graphs.registry``).

Each replica loads the app itself, in its own process; the launcher loads it once before
starting anything, so an app that cannot load stops ``agent-runtime serve`` with every
problem named rather than failing replicas one by one.
"""

from __future__ import annotations

import logging

from agent_runtime.config.settings import RuntimeSettings
from agent_runtime.execution.graph_registry import ModelFactory
from agent_runtime.user_app.graph_loader import LoadedGraph, load_app
from agent_runtime.user_app.served_graphs import registry_graphs
from graphs.registry import default_registry

logger = logging.getLogger(__name__)


def app_graphs(settings: RuntimeSettings, models: ModelFactory) -> list[LoadedGraph]:
    """The graphs to serve; ``models`` is what the example graphs call their models with."""
    config = settings.app.config
    if config is None:
        return registry_graphs(default_registry(), models)
    app = load_app(config)
    for warning in app.warnings:
        logger.warning("%s", warning)
    logger.info("serving %s: graphs %s", config, ", ".join(app.graphs))
    return list(app.graphs.values())
