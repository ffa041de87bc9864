"""Small LangGraph apps written to a folder: a ``langgraph.json`` and its Python files."""

from __future__ import annotations

import json
from pathlib import Path
from textwrap import dedent
from typing import Any

STATE = """
import operator
from typing import Annotated, TypedDict

from langgraph.graph import START, StateGraph


class State(TypedDict):
    log: Annotated[list[str], operator.add]


def builder(word: str = "hello") -> StateGraph:
    graph = StateGraph(State)
    graph.add_node("say", lambda state: {"log": [word]})
    graph.add_edge(START, "say")
    return graph
"""
"""A module the apps' graph files import as a sibling (``from state import builder``)."""


def write_app(folder: Path, config: dict[str, Any] | str, files: dict[str, str]) -> Path:
    """Write ``files`` (dedented) and ``langgraph.json`` (``config``, or raw text) under
    ``folder``; returns the config's path."""
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dedent(text).lstrip(), encoding="utf-8")
    folder.mkdir(parents=True, exist_ok=True)
    config_path = folder / "langgraph.json"
    text = config if isinstance(config, str) else json.dumps(config, indent=2)
    config_path.write_text(text, encoding="utf-8")
    return config_path
