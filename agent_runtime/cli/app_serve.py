"""``agent-runtime serve`` and ``agent-runtime stop``: the user's app on the local stack.

``serve [-c langgraph.json] [--host H] [--port N]`` names the app (``AGENT_APP_CONFIG``) and
its data folder, then runs the launcher of ``make run`` (:mod:`agent_runtime.cli.launch`),
which loads the app as ``check`` does (one that cannot load stops there, every problem
named) and serves it. The app's state, key and pid file live under ``.agent-data/`` in its
folder unless ``AGENT_DATA_DIR`` says otherwise. ``stop`` ends the stack started from that
folder, from another terminal.
"""

from __future__ import annotations

import os
from pathlib import Path

from agent_runtime.cli import app_check, launch, stop

PID_FILE = "launcher.pid"


def data_dir(config: Path) -> Path:
    """Where the app's local state lives: ``AGENT_DATA_DIR``, else its folder's
    ``.agent-data``."""
    configured = os.environ.get("AGENT_DATA_DIR")
    return Path(configured) if configured else config.resolve().parent / ".agent-data"


def serve(config: Path, host: str | None, port: int | None) -> int:
    if not config.is_file():  # before anything is written in a folder that has no app
        return app_check.check(config)
    folder = data_dir(config)
    os.environ["AGENT_APP_CONFIG"] = str(config.resolve())
    os.environ["AGENT_DATA_DIR"] = str(folder)
    if host is not None:
        os.environ["AGENT_HTTP_HOST"] = host
    if port is not None:
        os.environ["AGENT_HTTP_PORT"] = str(port)
    return launch.main(["--pid-file", str(folder / PID_FILE), "--stop-hint", "agent-runtime stop"])


def stop_app(config: Path) -> int:
    return stop.stop(data_dir(config) / PID_FILE)
