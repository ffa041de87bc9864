"""``agent-runtime build [-c langgraph.json] [-o serve_config.yaml] [--app-dir DIR]``: a Serve
config that serves the app on a Ray cluster (``serve deploy``, or ``serve run`` locally).

The app must load here first (as ``check``). The config names the runtime's app builder
(one application: without a model provider configured, its router serves the built-in
fake in process, never at a public route) and, in its ``runtime_env``:
``AGENT_APP_CONFIG``, where the app's ``langgraph.json`` is on every node (``--app-dir``,
default ``~/<the app's folder name>``: cluster.yaml's ``file_mounts`` puts the folder
there, see docs/deploy.md), and the app's package ``dependencies`` as ``pip``
requirements, which Ray installs on every node that runs a replica. The app's ``env`` is
not copied: each replica reads it from the app's folder, as ``serve`` does, so no secret
of a ``.env`` file lands in the config.
"""

from __future__ import annotations

import sys
from pathlib import Path, PurePosixPath
from typing import Any, TextIO

import yaml

from agent_runtime.cli import app_check
from agent_runtime.user_app.app_defaults import settings_env
from agent_runtime.user_app.langgraph_json import ConfigFile, read_langgraph_json

DEFAULT_OUTPUT = Path("serve_config.yaml")
HEADER = """\
# Serve config for the app {config}, written by `agent-runtime build`.
# Deploy: `serve deploy {output}` on a cluster whose nodes have the app's folder at
# {app_dir} (cluster.yaml's file_mounts; docs/deploy.md). To try it on this machine, build
# it with --app-dir "$PWD" and `serve run {output}`.
# Settings are AGENT_* variables under each application's runtime_env.env_vars (README.md);
# on a cluster, use Postgres (AGENT_DATABASE_URL) and Redis (AGENT_REDIS_URL).
"""


def build(
    config: Path,
    output: Path,
    app_dir: str | None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    if app_check.check(config, out=err, err=err) != 0:
        return app_check.EXIT_INVALID
    config_file = read_langgraph_json(config)
    folder = app_dir or f"~/{config_file.folder.name}"
    document = serve_config(config_file, folder)
    text = HEADER.format(config=config, output=output, app_dir=folder)
    output.write_text(text + yaml.safe_dump(document, sort_keys=False))
    print(f"wrote {output}: serve deploy {output} (the app at {folder} on every node)", file=out)
    return 0


def serve_config(config_file: ConfigFile, app_dir: str) -> dict[str, Any]:
    """The Serve config document (``ServeDeploySchema``'s shape) for the app."""
    env_vars = {"AGENT_APP_CONFIG": str(PurePosixPath(app_dir) / config_file.path.name)}
    env_vars.update(settings_env(config_file.config))  # its thread and item TTLs
    runtime_env: dict[str, Any] = {"env_vars": env_vars}
    packages = [d for d in config_file.config.dependencies if not d.startswith(".")]
    if packages:
        runtime_env["pip"] = packages
    applications: list[dict[str, Any]] = [
        {
            "name": "agent-runtime",
            "route_prefix": "/",
            "import_path": "agent_runtime.deployments.app:build_app",
            "runtime_env": runtime_env,
        }
    ]
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": "0.0.0.0", "port": 8000},
        "logging_config": {"enable_access_log": False},
        "applications": applications,
    }
