"""What a reference of ``langgraph.json`` names: ``"./path/file.py:attr"`` (imported from
the file, see :mod:`.app_imports`) or ``"package.module:attr"``, resolved against the
config's folder, each module imported once per load (:func:`attribute`). A reference that
cannot be followed is a :class:`Problem` saying why: no such file, the import's traceback
from the app's code down, or the attribute missing (with the closest names).
"""

from __future__ import annotations

import difflib
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

from langgraph.graph import StateGraph
from langgraph.pregel import Pregel

from agent_runtime.user_app import app_imports
from agent_runtime.user_app.langgraph_json import ConfigFile


class Problem(Exception):
    """Why one part of the app did not load (becomes one line of its ``UserAppError``)."""


def attribute(
    config_file: ConfigFile, source: str, modules: dict[str, ModuleType], *, graph: bool = True
) -> Any:
    """What ``source`` (``./file.py:attr`` or ``package.module:attr``) names; a missing
    ``attr`` is reported with the closest names (of graphs, when ``graph`` is sought)."""
    target, _, attr = source.rpartition(":")
    is_file = "/" in target or target.endswith(".py")
    where = str((config_file.folder / target).resolve()) if is_file else f"module {target}"
    module = modules.get(where)
    if module is None:
        if is_file and not Path(where).is_file():
            raise Problem(f"{source!r}: no such file {where}")
        try:
            if is_file:
                module = app_imports.import_file(Path(where))
            else:
                module = app_imports.import_module(target)
        except (Exception, SystemExit) as exc:
            raise Problem(f"{source!r} ({where}) failed to import:\n{_traceback(exc)}") from exc
        modules[where] = module
    if attr not in vars(module):
        hint = _suggestion(module, attr) if graph else _close(module, attr)
        raise Problem(f"{source!r}: {where} has no {attr!r}{hint}")
    return vars(module)[attr]


def _suggestion(module: ModuleType, attr: str) -> str:
    graphs = [
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and isinstance(value, Pregel | StateGraph)
    ]
    close = difflib.get_close_matches(attr, graphs or list(vars(module)), n=3)
    return f"; graphs it has: {', '.join(close or graphs)}" if close or graphs else ""


def _close(module: ModuleType, attr: str) -> str:
    public = [name for name in vars(module) if not name.startswith("_")]
    close = difflib.get_close_matches(attr, public, n=3)
    return f"; did you mean {', '.join(close)}?" if close else ""


def _traceback(exc: BaseException) -> str:
    """The traceback from the user's code down, without the import machinery's frames."""
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if not frame.filename.startswith("<frozen")
        and frame.filename not in (__file__, app_imports.__file__)
        and "importlib" not in Path(frame.filename).parts
    ]
    lines = ["Traceback (most recent call last):\n", *traceback.format_list(frames)]
    lines += traceback.format_exception_only(exc)
    return "".join(lines).rstrip()
