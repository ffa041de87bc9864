"""``langgraph.json``, typed and validated with LangGraph CLI's meaning of every key.

The schema is the CLI's (``langgraph_cli.schemas.Config``, checked as its
``validate_config`` does); paths in it are relative to the file's folder. Where this
runtime differs from the CLI it is stricter, so that a typo never silently drops a setting:

- a key the CLI does not know, at any depth, is an error naming it (the CLI warns); the
  editor hint ``$schema`` is accepted;
- a key the CLI knows that only shapes its Docker image (:data:`DOCKER_ONLY_KEYS`) is a
  warning naming it: here the app runs in the runtime's own environment;
- a key whose feature this runtime does not apply yet (:data:`NOT_APPLIED_KEYS`) is a
  warning saying so and what applies instead; a ``python_version`` other than the one the
  runtime runs is a warning too;
- duplicate keys, JavaScript graphs and the CLI's retired ``project_root``/``package`` are
  errors.

:func:`read_langgraph_json` raises :class:`LangGraphJsonError` with one ``file: where: what``
line per problem (the caller's exit code 2) and returns the warnings beside the config.
"""

from __future__ import annotations

import difflib
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, field_validator

from agent_runtime.user_app.config_sections import (
    AuthConfig,
    CheckpointerConfig,
    EncryptionConfig,
    GraphDef,
    HttpConfig,
    StoreConfig,
    StrictModel,
    UvSource,
    WebhooksConfig,
)

MIN_PYTHON_VERSION = (3, 11)
JS_SUFFIXES = (".ts", ".mts", ".cts", ".js", ".mjs", ".cjs")
DOCKER_ONLY_KEYS = (
    "_INTERNAL_docker_tag",
    "api_version",
    "base_image",
    "dockerfile_lines",
    "image_distro",
    "keep_pkg_tools",
    "node_version",
    "pip_config_file",
    "pip_installer",
    "source",
)
"""Keys that choose or extend the CLI's Docker image (base image, distro, Node, pip, extra
Dockerfile lines, the langgraph-api version, uv-based installs); they have no effect here."""
_CORS_OPTIONS = (
    "allow_methods",
    "allow_headers",
    "allow_credentials",
    "allow_origin_regex",
    "expose_headers",
    "max_age",
)
NOT_APPLIED_KEYS = {
    "checkpointer.serde": "the checkpointer's serializer settings are not applied",
    "auth.cache": "authenticate's results are not cached; the handler runs on every request",
    "auth.openapi": "the OpenAPI document does not describe the app's auth",
    "auth.disable_studio_auth": "there is no Studio auth here; every request needs an API key",
    "encryption": "custom encryption is not applied",
    **{
        f"http.{key}": "not applied yet (of http: app, cors.allow_origins, disable_*, "
        "enable_custom_route_auth, configurable_headers apply)"
        for key in (
            "logging_headers",
            "middleware_order",
            "mount_prefix",
            *(f"cors.{option}" for option in _CORS_OPTIONS),
        )
    },
    "webhooks": "webhook header templates and URL policy are not applied yet",
    "ui": "generative UI components are not served",
    "ui_config": "generative UI components are not served",
}
"""Keys of features this runtime does not apply (yet): each a warning with what applies."""


class UserAppError(ValueError):
    """The user's app cannot be served; ``problems`` are ``file: where: what`` lines."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


class LangGraphJsonError(UserAppError):
    """``langgraph.json`` is not valid JSON or not a config LangGraph CLI accepts."""


class LangGraphJson(StrictModel):
    """The whole file. ``graphs`` maps graph ids to ``"./file.py:attr"`` or
    ``"package.module:attr"`` (or a :class:`GraphDef`); ``dependencies`` are packages the
    image installs (here: already installed), local folders (``"."``, ``"./src"``) being put
    on ``sys.path``; ``env`` is a mapping or a dotenv file's path."""

    model_config = ConfigDict(populate_by_name=True)

    schema_uri: str | None = Field(default=None, alias="$schema")
    python_version: str | None = None
    dependencies: list[str] = []
    graphs: dict[str, str | GraphDef]
    env: dict[str, str] | str = {}
    store: StoreConfig | None = None
    checkpointer: CheckpointerConfig | None = None
    auth: AuthConfig | None = None
    encryption: EncryptionConfig | None = None
    http: HttpConfig | None = None
    webhooks: WebhooksConfig | None = None
    ui: dict[str, str] | None = None
    ui_config: dict[str, JsonValue] | None = None
    # Docker image options (DOCKER_ONLY_KEYS): validated, then ignored with a warning.
    node_version: str | None = None
    api_version: str | None = None
    INTERNAL_docker_tag: str | None = Field(default=None, alias="_INTERNAL_docker_tag")
    base_image: str | None = None
    image_distro: Literal["debian", "wolfi", "bullseye", "bookworm"] | None = None
    pip_config_file: str | None = None
    pip_installer: Literal["auto", "pip", "uv"] | None = None
    dockerfile_lines: list[str] = []
    keep_pkg_tools: bool | list[Literal["pip", "setuptools", "wheel"]] | None = None
    source: UvSource | None = None
    # Retired by the CLI; known so that the error says what replaced them.
    project_root: str | None = None
    package: str | None = None

    @field_validator("python_version")
    @classmethod
    def _python_version(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = value.split(".")
        if len(parts) != 2 or not all(part.isdigit() for part in parts):
            raise ValueError(f"{value!r} is not 'major.minor' (e.g. '3.11')")
        if (int(parts[0]), int(parts[1])) < MIN_PYTHON_VERSION:
            raise ValueError(f"{value} is not supported; the minimum is 3.11")
        return value

    @field_validator("graphs")
    @classmethod
    def _graphs(cls, value: dict[str, str | GraphDef]) -> dict[str, str | GraphDef]:
        if not value:
            raise ValueError('no graphs; add one, e.g. "agent": "./agent.py:graph"')
        for graph_id, spec in value.items():
            ref = spec if isinstance(spec, str) else spec.path
            module, _, attr = ref.rpartition(":")
            if not graph_id:
                raise ValueError("a graph id is empty")
            if not module or not attr:
                raise ValueError(
                    f"{graph_id}: {ref!r} is not '<module>:<attribute>' "
                    "('./path/file.py:graph' or 'package.module:graph')"
                )
            if module.endswith(JS_SUFFIXES):
                raise ValueError(f"{graph_id}: JavaScript graphs ({ref!r}) are not supported")
        return value

    @field_validator("auth", "encryption", "http")
    @classmethod
    def _import_paths(cls, value: StrictModel | None) -> StrictModel | None:
        for name in ("path", "app"):
            ref = getattr(value, name, None)
            if ref is not None and ":" not in ref:
                raise ValueError(f"{name}: {ref!r} is not './path/to/file.py:attribute'")
        return value

    def docker_only_keys(self) -> list[str]:
        """The Docker image options this file sets, as written."""
        return [key for key in DOCKER_ONLY_KEYS if key in self._keys_set()]

    def _keys_set(self) -> set[str]:
        fields = type(self).model_fields
        return {fields[name].alias or name for name in self.model_fields_set}


@dataclass(frozen=True)
class ConfigFile:
    """A read ``langgraph.json``: where it is, what it says, and what it sets in vain."""

    path: Path
    config: LangGraphJson
    warnings: list[str]

    @property
    def folder(self) -> Path:
        """The folder every relative path in the file is resolved against."""
        return self.path.parent


def read_langgraph_json(path: str | Path) -> ConfigFile:
    """Read and validate ``path``; raises :class:`LangGraphJsonError` naming every problem."""
    path = Path(path).resolve()
    name = path.name
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise LangGraphJsonError([f"{path}: cannot read the file ({why})"]) from exc
    try:
        raw = json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as exc:
        raise LangGraphJsonError(
            [f"{name}: line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg})"]
        ) from exc
    except _DuplicateKey as exc:
        raise LangGraphJsonError([f"{name}: key {exc.key!r} appears twice"]) from exc
    if not isinstance(raw, dict):
        raise LangGraphJsonError([f"{name}: the file must hold a JSON object"])
    retired = [key for key in ("project_root", "package") if key in raw]
    if retired:
        raise LangGraphJsonError(
            [
                f"{name}: {key}: no longer supported; use source.root and source.package"
                for key in retired
            ]
        )
    try:
        config = LangGraphJson.model_validate_json(text)
    except ValidationError as exc:
        raise LangGraphJsonError([f"{name}: {p}" for p in _problems(exc, raw)]) from exc
    warnings = [
        f"{name}: {key}: a Docker image option of LangGraph CLI; ignored, the app runs in "
        "the runtime's own environment"
        for key in config.docker_only_keys()
    ]
    warnings += [
        f"{name}: {key}: not applied by this runtime: {NOT_APPLIED_KEYS[key]}"
        for key in NOT_APPLIED_KEYS
        if _has(raw, key)
    ]
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    if config.python_version is not None and config.python_version != running:
        warnings.append(
            f"{name}: python_version: the app asks for {config.python_version}; the "
            f"runtime runs Python {running}"
        )
    return ConfigFile(path=path, config=config, warnings=warnings)


def _has(raw: dict[str, Any], dotted: str) -> bool:
    node: Any = raw
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


def _problems(error: ValidationError, raw: object) -> list[str]:
    """One line per wrong place, ``where: what``. Of a union's members, those whose type
    the input has speak for it; when none has, their type errors are joined with "or"."""
    found: list[tuple[str, str, str | None]] = []  # (path, message, union's path)
    for item in error.errors():
        keyed = item["type"] in ("extra_forbidden", "missing")
        path, node, union = _input_path(item["loc"], raw, keyed)
        message = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(item["loc"][-1]), _known_keys(), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            message = f"unknown key (LangGraph CLI does not know it){hint}"
        elif isinstance(node, dict) and message.partition(": ")[0] in node:
            # A check of the whole mapping about one of its keys: "agent: ..."
            key, _, message = message.partition(": ")
            path = f"{path}.{key}" if path else key
        if not item["type"].endswith("_type"):
            union = None  # not a type mismatch: this member fits the input
        found.append((path, message, union))
    fitting = {path for path, _, union in found if union is None}
    by_path: dict[str, list[str]] = {}
    for path, message, union in found:
        if union is not None and any(f == union or f.startswith(union + ".") for f in fitting):
            continue  # a member of another type, while one of the input's type was wrong
        messages = by_path.setdefault(path, [])
        if message not in messages:
            messages.append(message)
    return [f"{path}: {' or '.join(messages)}" for path, messages in by_path.items()]


def _input_path(
    loc: tuple[int | str, ...], raw: object, keyed: bool
) -> tuple[str, object, str | None]:
    """``loc`` as a path in the input, what is there, and the path of the union whose
    member's tag ``loc`` holds (``None`` if none): pydantic's tags are not in the file."""
    path, node, union = "", raw, None
    for index, part in enumerate(loc):
        in_dict = isinstance(node, dict) and part in node
        if in_dict or (isinstance(node, list) and isinstance(part, int) and part < len(node)):
            node = node[part]  # type: ignore[index]
        elif not (keyed and index == len(loc) - 1):
            union = path if union is None else union
            continue
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path, node, union


def _known_keys() -> list[str]:
    keys: set[str] = set()
    pending: list[type[BaseModel]] = [LangGraphJson]
    visited: set[type[BaseModel]] = set()
    while pending:
        model = pending.pop()
        visited.add(model)
        for name, field in model.model_fields.items():
            keys.add(field.alias or name)
            pending.extend(m for m in _models_in(field.annotation) if m not in visited)
    return sorted(keys)


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in getattr(annotation, "__args__", ()) for m in _models_in(arg)]
