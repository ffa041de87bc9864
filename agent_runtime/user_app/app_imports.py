"""Bringing the user's code into the process, as ``langgraph dev`` does, minus its surprises.

- The app's roots (the config's folder, its local ``dependencies`` folders, and their
  ``src/`` where they are src-layout packages, as the CLI's image would install them) go
  *first* on ``sys.path``, so the app's sibling imports (``from graphs.tools import x``)
  find the app's own modules rather than an installed one of the same name.
- A graph given as a file is imported under a name made from a digest of its path
  (``_user_app_<digest>_<stem>``), never its own stem: a user's ``registry.py`` or
  ``graphs/__init__.py`` cannot replace a module already imported.
- A top-level name the app provides that is already imported from elsewhere would make its
  sibling imports silently run foreign code (and one of the standard library's, put first
  on the path, would break the runtime). The runtime's example graphs
  (:data:`YIELDING_PACKAGES`) give way, with a warning; any other such name is an error.

These are process-wide changes (``sys.path``, ``sys.modules``, ``os.environ``): one process
serves one app.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import re
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from types import ModuleType

from dotenv import dotenv_values
from packaging.requirements import InvalidRequirement, Requirement

from agent_runtime.user_app.langgraph_json import ConfigFile, UserAppError

YIELDING_PACKAGES = ("graphs",)
"""Top-level packages of this repository an app may take the name of: the example graphs,
which the process serving a user's app does not run."""


class AppImportError(UserAppError):
    """The app's code cannot be put on the import path as its config says."""


def app_roots(config_file: ConfigFile) -> list[Path]:
    """The folders the app imports from, in order: the config's folder, then each local
    dependency (and its ``src/`` when it is a src-layout package)."""
    folder = config_file.folder
    roots = [folder]
    problems = []
    for dependency in config_file.config.dependencies:
        if not dependency.startswith("."):
            problem = _missing_distribution(dependency)
            if problem is not None:
                problems.append(f"{config_file.path.name}: dependencies: {problem}")
            continue
        root = (folder / dependency).resolve()
        if not root.is_dir():
            problems.append(
                f"{config_file.path.name}: dependencies: {dependency!r} is not a folder"
            )
            continue
        if not root.is_relative_to(folder):
            problems.append(
                f"{config_file.path.name}: dependencies: {dependency!r} is outside the "
                "config's folder"
            )
            continue
        installable = (root / "pyproject.toml").exists() or (root / "setup.py").exists()
        candidates = [root, root / "src"] if installable and (root / "src").is_dir() else [root]
        roots.extend(c for c in candidates if c not in roots)
    if problems:
        raise AppImportError(problems)
    return roots


def _missing_distribution(dependency: str) -> str | None:
    """Why a package dependency is not satisfied where the runtime runs (it installs
    nothing itself: the user does, as they installed the runtime); ``None`` when it is."""
    try:
        requirement = Requirement(dependency)
    except InvalidRequirement:
        return f"{dependency!r} is neither a local folder ('./...') nor a package requirement"
    if requirement.url is not None or (requirement.marker and not requirement.marker.evaluate()):
        return None  # a URL cannot be checked by name; a marker may exclude this machine
    try:
        installed = metadata.version(requirement.name)
    except metadata.PackageNotFoundError:
        return f"{dependency!r} is not installed here: pip install '{dependency}'"
    if not requirement.specifier.contains(installed, prereleases=True):
        return f"{dependency!r}: {installed} is installed: pip install '{dependency}'"
    return None


def app_environment(config_file: ConfigFile) -> dict[str, str]:
    """``env``: the mapping, or the dotenv file's variables (its path relative to the config)."""
    env = config_file.config.env
    if isinstance(env, dict):
        return dict(env)
    path = config_file.folder / env
    if not path.is_file():
        raise AppImportError([f"{config_file.path.name}: env: {env!r} is not a file"])
    return {key: value for key, value in dotenv_values(path).items() if value is not None}


def apply_environment(env: Mapping[str, str]) -> list[str]:
    """Set the app's variables the process does not already set (the operator's win);
    returns the names left as they were."""
    kept = sorted(name for name in env if name in os.environ and os.environ[name] != env[name])
    for name, value in env.items():
        os.environ.setdefault(name, value)
    return kept


def activate(roots: list[Path]) -> list[str]:
    """Put ``roots`` first on ``sys.path`` and free the app's top-level names; returns
    warnings. Raises :class:`AppImportError` for a name it cannot take."""
    problems: list[str] = []
    warnings: list[str] = []
    for name, where in _top_level_names(roots).items():
        if name in sys.stdlib_module_names:
            problems.append(f"{where}: the name {name!r} is the standard library's; rename it")
            continue
        module = sys.modules.get(name)
        origin = _origin(module) if module is not None else None
        if origin is None or any(origin.is_relative_to(root) for root in roots):
            continue
        if name in YIELDING_PACKAGES:
            for loaded in [m for m in sys.modules if m == name or m.startswith(f"{name}.")]:
                del sys.modules[loaded]
            warnings.append(f"{where}: takes the name {name!r} from {origin}")
        else:
            problems.append(
                f"{where}: the name {name!r} is already imported from {origin}; "
                "rename the app's module"
            )
    if problems:
        raise AppImportError(problems)
    for root in reversed(roots):
        if str(root) in sys.path:
            sys.path.remove(str(root))
        sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    return warnings


def import_file(path: Path) -> ModuleType:
    """Import the file at ``path`` under a name no other module has (see the module doc)."""
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
    stem = re.sub(r"\W", "_", path.stem)
    name = f"_user_app_{digest}_{stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path} as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before running it: dataclasses and pickling look it up
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def import_module(name: str) -> ModuleType:
    return importlib.import_module(name)


def _top_level_names(roots: list[Path]) -> dict[str, Path]:
    """The importable names each root provides: ``name.py`` files and ``name/`` packages."""
    names: dict[str, Path] = {}
    for root in roots:
        for entry in sorted(root.iterdir()):
            if entry.suffix == ".py" and entry.is_file():
                names.setdefault(entry.stem, entry)
            elif entry.is_dir() and (entry / "__init__.py").is_file():
                names.setdefault(entry.name, entry)
    return {name: where for name, where in names.items() if name.isidentifier()}


def _origin(module: ModuleType) -> Path | None:
    """Where ``module`` was imported from (a package's folder, a module's file)."""
    file = getattr(module, "__file__", None)
    if file:
        path = Path(file).resolve()
        return path.parent if path.name == "__init__.py" else path
    locations = list(getattr(module, "__path__", []))
    return Path(locations[0]).resolve() if locations else None
