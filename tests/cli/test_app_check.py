"""``agent-runtime check``: an app's ``langgraph.json`` and graphs load, or exit 2 naming
what is wrong; run as a user runs it, in its own process and the app's folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

GRAPH = """
from typing_extensions import TypedDict
from langgraph.graph import StateGraph, START, END


class State(TypedDict):
    n: int


def step(state: State) -> State:
    return {"n": state["n"] + 1}


builder = StateGraph(State)
builder.add_node("step", step)
builder.add_edge(START, "step")
builder.add_edge("step", END)
graph = builder.compile()
"""


def check(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent_runtime.cli.admin", "check", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )


def write_app(folder: Path, config: object, files: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    text = config if isinstance(config, str) else json.dumps(config)
    (folder / "langgraph.json").write_text(text)
    for name, body in files.items():
        (folder / name).write_text(body)


def test_a_valid_app_lists_its_graphs(tmp_path: Path) -> None:
    config = {"graphs": {"counter": "./agent.py:graph"}, "dockerfile_lines": ["RUN true"]}
    write_app(tmp_path, config, {"agent.py": GRAPH})
    done = check(tmp_path)
    assert done.returncode == 0, done.stderr
    assert "counter\tgraph\t./agent.py:graph" in done.stdout
    assert "dockerfile_lines" in done.stderr  # known to LangGraph CLI, no effect here


def test_a_graph_that_fails_to_import_exits_2_naming_graph_and_file(tmp_path: Path) -> None:
    broken = "import not_a_module_anywhere\n" + GRAPH
    write_app(tmp_path, {"graphs": {"broken": "./broken.py:graph"}}, {"broken.py": broken})
    done = check(tmp_path)
    assert done.returncode == 2
    assert "graphs.broken" in done.stderr and "broken.py" in done.stderr
    assert "not_a_module_anywhere" in done.stderr
    assert "Traceback" not in done.stdout


def test_bad_json_an_unknown_key_and_a_missing_file_exit_2(tmp_path: Path) -> None:
    write_app(tmp_path / "bad", '{"graphs": {', {})
    done = check(tmp_path / "bad")
    assert done.returncode == 2 and "line 1" in done.stderr

    write_app(tmp_path / "unknown", {"graphs": {"g": "./agent.py:graph"}, "grpahs": {}}, {})
    done = check(tmp_path / "unknown")
    assert done.returncode == 2 and "grpahs" in done.stderr

    done = check(tmp_path, "-c", str(tmp_path / "nowhere.json"))
    assert done.returncode == 2 and "nowhere.json not found" in done.stderr


def test_an_apps_auth_is_listed_and_a_broken_one_exits_2(tmp_path: Path) -> None:
    auth = "from langgraph_sdk import Auth\nauth = Auth()\n"
    handler = "@auth.authenticate\nasync def who(authorization):\n    return 'ada'\n"
    config = {"graphs": {"counter": "./agent.py:graph"}, "auth": {"path": "./auth.py:auth"}}
    write_app(tmp_path / "ok", config, {"agent.py": GRAPH, "auth.py": auth + handler})
    done = check(tmp_path / "ok")
    assert done.returncode == 0, done.stderr
    assert "auth: ./auth.py:auth" in done.stdout

    write_app(tmp_path / "broken", config, {"agent.py": GRAPH, "auth.py": auth})
    done = check(tmp_path / "broken")
    assert done.returncode == 2
    assert "auth.path: './auth.py:auth' has no authenticate handler" in done.stderr


def test_a_store_index_is_listed_or_its_problem_exits_2(tmp_path: Path) -> None:
    index = {"embed": "./embed.py:embed", "dims": 2, "fields": ["text"]}
    embed = "def embed(texts):\n    return [[1.0, 0.0] for _ in texts]\n"
    config = {"graphs": {"counter": "./agent.py:graph"}, "store": {"index": index}}
    write_app(tmp_path / "ok", config, {"agent.py": GRAPH, "embed.py": embed})
    done = check(tmp_path / "ok")
    assert done.returncode == 0, done.stderr
    assert "store.index\tapp's function\t./embed.py:embed (2 dims; text)" in done.stdout

    no_dims = {**config, "store": {"index": {"embed": "openai:fake-embed"}}}
    write_app(tmp_path / "dims", no_dims, {"agent.py": GRAPH})
    done = check(tmp_path / "dims")
    assert done.returncode == 2
    assert "langgraph.json: store.index.dims: Field required" in done.stderr

    write_app(tmp_path / "missing", config, {"agent.py": GRAPH})
    done = check(tmp_path / "missing")
    assert done.returncode == 2
    assert "store.index.embed: './embed.py:embed': no such file" in done.stderr
    assert "Traceback" not in done.stderr
