"""What a graph factory is called with: nothing, the ``RunnableConfig``, or a ``ServerRuntime``.

LangGraph's server calls a factory for every use of its graph: a run
(``threads.create_run``), a state read (``threads.read``), a state update
(``threads.update``) or a schema or drawing (``assistants.read``). A factory whose parameter
is annotated ``langgraph_sdk.runtime.ServerRuntime`` gets one, as the Platform builds it:
why it is called (:class:`GraphUse`), the run's store, the authenticated end user (from the
app's ``auth.path`` handlers, carried in the run's configurable as
``langgraph_auth_user``; None without custom auth) and, for runs, the run's context, made
an instance of the type the annotation names (``ServerRuntime[MyContext]``).
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

from langchain_core.runnables import RunnableConfig
from langgraph.store.base import BaseStore
from langgraph_sdk.auth.types import BaseUser
from langgraph_sdk.runtime import (  # the variants: the SDK leaves making them to servers
    AccessContext,
    ServerRuntime,
    _ExecutionRuntime,
    _ReadRuntime,
)
from pydantic import BaseModel

from agent_runtime.user_app.auth_handlers import UserView

FactoryArgument = Literal["none", "config", "runtime"]


@dataclass(frozen=True)
class GraphUse:
    """Why a graph is opened, and the run's context when it is to run."""

    access: AccessContext = "assistants.read"
    context: Mapping[str, Any] | None = None


READ_SCHEMAS = GraphUse()
THREADS_READ = GraphUse("threads.read")
THREADS_UPDATE = GraphUse("threads.update")


class FactorySignatureError(ValueError):
    """The factory takes something the server cannot give it."""


def factory_argument(factory: Callable[..., Any]) -> FactoryArgument:
    """What ``factory`` takes: nothing, the ``RunnableConfig``, or a ``ServerRuntime``."""
    try:
        parameters = list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError) as exc:
        raise FactorySignatureError(f"cannot read the factory's signature ({exc})") from exc
    named = [p for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if len(named) > 1:
        raise FactorySignatureError(
            f"the factory takes {len(named)} parameters; it may take none, a RunnableConfig "
            "or a ServerRuntime"
        )
    if not named:
        return "none"
    if named[0].kind is named[0].KEYWORD_ONLY:
        raise FactorySignatureError("the factory's parameter must be positional")
    return "runtime" if "ServerRuntime" in str(named[0].annotation) else "config"


def context_type(factory: Callable[..., Any]) -> type | None:
    """The ``MyContext`` of a parameter annotated ``ServerRuntime[MyContext]``, if any."""
    try:
        hints = typing.get_type_hints(factory)
    except Exception:  # unresolvable annotations: the context stays a mapping
        return None
    for name, hint in hints.items():
        if name != "return":
            args = typing.get_args(hint)
            return args[0] if args and isinstance(args[0], type) else None
    return None


def _user(config: RunnableConfig) -> BaseUser | None:
    user = (config.get("configurable") or {}).get("langgraph_auth_user")
    if user is None:
        return None
    if isinstance(user, Mapping):
        return cast(BaseUser, UserView(user))
    return cast(BaseUser, user)


def _context(raw: Mapping[str, Any] | None, kind: type | None) -> Any:
    values = dict(raw or {})
    if kind is None:
        return values
    if dataclasses.is_dataclass(kind):
        names = {f.name for f in dataclasses.fields(kind)}
        return kind(**{k: v for k, v in values.items() if k in names})
    if issubclass(kind, BaseModel):
        return kind.model_validate(values)
    return values  # a TypedDict or a mapping type: the mapping itself


def server_runtime(
    use: GraphUse, config: RunnableConfig, store: BaseStore | None, kind: type | None
) -> ServerRuntime[Any]:
    """The ``ServerRuntime`` for one use of a graph."""
    # The ingress opens graphs only for schemas and drawings, with no store of its own.
    store_ = cast(BaseStore, store)
    user = _user(config)
    if use.access == "threads.create_run":
        context = _context(use.context, kind)
        return _ExecutionRuntime(
            access_context=use.access, user=user, store=store_, context=context
        )
    return _ReadRuntime(access_context=use.access, user=user, store=store_)
