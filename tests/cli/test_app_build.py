"""``agent-runtime build``: a valid Serve config that names the app where the cluster's
nodes have it, its package dependencies for Ray to install, and none of its secrets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml
from ray.serve.schema import ServeDeploySchema

from tests.user_app.apps import write_app

GRAPH = """
from typing_extensions import TypedDict
from langgraph.graph import StateGraph, START


class State(TypedDict):
    n: int


builder = StateGraph(State)
builder.add_node("step", lambda state: {"n": state["n"] + 1})
builder.add_edge(START, "step")
graph = builder.compile()
"""
SECRET = "sk-never-in-the-config-5c1e"


def build(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent_runtime.cli.admin", "build", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_config_serves_the_app_from_its_folder_on_every_node(tmp_path: Path) -> None:
    folder = tmp_path / "my-agent"
    config = {
        "dependencies": [".", "langchain-openai>=1"],
        "graphs": {"agent": "./agent.py:graph"},
        "env": ".env",
        "checkpointer": {"ttl": {"strategy": "keep_latest", "default_ttl": 1440}},
    }
    write_app(folder, config, {"agent.py": GRAPH, ".env": f"OPENAI_API_KEY={SECRET}\n"})
    done = build(folder)
    assert done.returncode == 0, done.stderr
    text = (folder / "serve_config.yaml").read_text()
    assert SECRET not in text
    document = yaml.safe_load(text)
    schema = ServeDeploySchema.parse_obj(document)
    apps = {app.name: app for app in schema.applications}
    # One application: the fake provider (when no provider is configured) is served inside
    # the router, never at a public route (issue 13, defect 6).
    assert set(apps) == {"agent-runtime"}
    assert apps["agent-runtime"].import_path == "agent_runtime.deployments.app:build_app"
    runtime_env = apps["agent-runtime"].runtime_env
    assert runtime_env["env_vars"] == {
        "AGENT_APP_CONFIG": "~/my-agent/langgraph.json",
        # The app's thread TTL, as settings every replica reads.
        "AGENT_THREAD_TTL_STRATEGY": "keep_latest",
        "AGENT_THREAD_TTL_MINUTES": "1440",
    }
    assert runtime_env["pip"] == ["langchain-openai>=1"]


def test_the_apps_folder_on_the_nodes_and_the_output_can_be_named(tmp_path: Path) -> None:
    write_app(tmp_path, {"graphs": {"agent": "./agent.py:graph"}}, {"agent.py": GRAPH})
    done = build(tmp_path, "-o", "deploy.yaml", "--app-dir", "/srv/apps/agent")
    assert done.returncode == 0, done.stderr
    document = yaml.safe_load((tmp_path / "deploy.yaml").read_text())
    (app,) = [a for a in document["applications"] if a["name"] == "agent-runtime"]
    assert app["runtime_env"] == {
        "env_vars": {"AGENT_APP_CONFIG": "/srv/apps/agent/langgraph.json"}
    }


def test_an_app_that_cannot_load_gets_no_config(tmp_path: Path) -> None:
    (tmp_path / "langgraph.json").write_text(json.dumps({"graphs": {"a": "./a.py:nope"}}))
    (tmp_path / "a.py").write_text("graph = None\n")
    done = build(tmp_path)
    assert done.returncode == 2
    assert "graphs.a" in done.stderr and "has no 'nope'" in done.stderr
    assert not (tmp_path / "serve_config.yaml").exists()
