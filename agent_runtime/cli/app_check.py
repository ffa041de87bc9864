"""``agent-runtime check [-c langgraph.json]``: would this app load? Nothing is started.

Reads the ``langgraph.json`` (LangGraph CLI's format) and imports every graph it names, as
serving the app will: each problem is printed naming its key, graph and file (an import
error with its traceback), and the exit code is 2; settings that have no effect here are
warnings. On success each graph is listed with where it comes from, the app's own auth
(``auth.path``) if it has one, and the store's index with what embeds it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from agent_runtime.config.app_settings import AppSettings
from agent_runtime.execution.openai_routing import route_openai_clients
from agent_runtime.user_app.graph_loader import load_app
from agent_runtime.user_app.langgraph_json import UserAppError

DEFAULT_CONFIG = Path("langgraph.json")
EXIT_INVALID = 2


def check(config: Path, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    if not config.is_file():
        print(
            f"error: {config} not found: run this in your app's folder or pass -c PATH",
            file=err,
        )
        return EXIT_INVALID
    if AppSettings().route_openai_clients:
        route_openai_clients()  # as the replicas will, before the app builds its clients
    try:
        app = load_app(config)
    except UserAppError as error:
        print(f"error: {config} cannot be served:", file=err)
        for problem in error.problems:
            print(f"  {problem}", file=err)
        return EXIT_INVALID
    for warning in app.warnings:
        print(f"warning: {warning}", file=err)
    print(f"{config}: {len(app.graphs)} graph(s)", file=out)
    for graph in app.graphs.values():
        kind = "factory (built per run)" if graph.is_factory else "graph"
        print(f"  {graph.graph_id}\t{kind}\t{graph.source}", file=out)
    if app.auth is not None:
        print(f"auth: {app.auth.source} (after the API key, on every request)", file=out)
    index = app.store_index
    if index is not None:
        by = "model router" if index.model is not None else "app's function"
        fields = ", ".join(index.fields)
        print(f"  store.index\t{by}\t{index.embed} ({index.dims} dims; {fields})", file=out)
    return 0
