"""Loading an app's own auth (``auth.path``): a ``langgraph_sdk.Auth`` from a file or a
module, loaded with the graphs; every way it can be wrong is named at start (the CLI's exit
code 2), and handlers that leave requests uncovered are a warning."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_runtime.user_app.graph_loader import GraphLoadError, load_app
from tests.user_app.apps import STATE, write_app

GRAPH = "from state import builder\ngraph = builder().compile()"
AUTH = """
from langgraph_sdk import Auth

auth = Auth()


@auth.authenticate
async def authenticate(authorization: str | None, path: str) -> str:
    return "ada"


@auth.on
async def owner_only(ctx, value):
    return {"owner": ctx.user.identity}
"""


def app(folder: Path, auth_path: str, auth_file: str = AUTH) -> Path:
    return write_app(
        folder,
        {"dependencies": ["."], "graphs": {"g": "./graph.py:graph"}, "auth": {"path": auth_path}},
        {"state.py": STATE, "graph.py": GRAPH, "auth.py": auth_file, "pkg/__init__.py": ""},
    )


@pytest.mark.parametrize("auth_path", ["./auth.py:auth", "auth:auth"])
def test_the_auth_object_loads_from_a_file_or_a_module(tmp_path: Path, auth_path: str) -> None:
    loaded = load_app(app(tmp_path, auth_path))
    assert loaded.auth is not None and loaded.auth.source == auth_path
    assert loaded.auth.uncovered() == []
    assert loaded.warnings == []


def test_no_auth_path_no_auth(tmp_path: Path) -> None:
    config = write_app(
        tmp_path, {"graphs": {"g": "./graph.py:graph"}}, {"state.py": STATE, "graph.py": GRAPH}
    )
    assert load_app(config).auth is None


def test_handlers_that_leave_actions_uncovered_are_named_in_a_warning(tmp_path: Path) -> None:
    partial = AUTH.replace("@auth.on\n", "@auth.on.threads\n")
    loaded = load_app(app(tmp_path, "./auth.py:auth", partial))
    (warning,) = loaded.warnings
    assert warning.startswith("langgraph.json: auth.path: no handler covers assistants.create")
    assert "store.list_namespaces" in warning and "threads.read" not in warning


@pytest.mark.parametrize(
    ("auth_path", "auth_file", "problem"),
    [
        ("./missing.py:auth", AUTH, "no such file"),
        ("./auth.py:nope", AUTH, "has no 'nope'"),
        ("./auth.py:auth", "auth = 42", "is a int, not a langgraph_sdk.Auth"),
        (
            "./auth.py:auth",
            "from langgraph_sdk import Auth\nauth = Auth()",
            "has no authenticate handler",
        ),
        (
            "./auth.py:auth",
            AUTH.replace("path: str)", "path: str, token: str)"),
            "the authenticate handler takes token; it may take request, path",
        ),
        ("./auth.py:auth", "raise RuntimeError('boom at import')", "boom at import"),
    ],
)
def test_a_wrong_auth_path_stops_the_app_with_a_clear_line(
    tmp_path: Path, auth_path: str, auth_file: str, problem: str
) -> None:
    with pytest.raises(GraphLoadError) as raised:
        load_app(app(tmp_path, auth_path, auth_file))
    (line,) = raised.value.problems
    assert line.startswith(f"langgraph.json: auth.path: '{auth_path}'"), line
    assert problem in line, line
