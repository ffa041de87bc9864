"""The app's own auth (``auth.path`` in its ``langgraph.json``): a ``langgraph_sdk.Auth``,
its handlers called as LangGraph Platform calls them.

``@auth.authenticate`` may take, by name, ``request``, ``path``, ``method``,
``path_params``, ``query_params``, ``headers`` (raw: ``dict[bytes, bytes]``),
``authorization`` (the ``Authorization`` header) and ``scope`` (the ASGI scope); it may be
sync (run in a thread) or async. It returns the user: a string (the identity), a dict with
``identity`` (and optionally ``display_name``, ``is_authenticated``, ``permissions``, any
other keys), an object with those attributes, or a ``(permissions, user)`` pair.

Authorization handlers (``@auth.on``, ``@auth.on.threads``, ``@auth.on.threads.read``, ...)
get ``ctx`` (an ``AuthContext``: the user, its permissions, the resource and action) and
the request's ``value``; the most specific one registered runs: resource and action, then
resource, then action, then global; none: allowed. It answers ``None`` or ``True``
(allowed), ``False`` (403) or a filter on the resources' metadata
(:class:`~agent_runtime.core.metadata_filter.MetadataFilter`), and may change ``value``
(e.g. set ``value["metadata"]["owner"]``), which the request then uses.

A handler's ``Auth.exceptions.HTTPException`` (or Starlette's) becomes its status, detail and
headers, an ``AssertionError`` a 403 (:class:`AuthRejected`); anything else is logged with its
traceback and answered as a 500 without it (:class:`AuthHandlerFailed`).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NoReturn

from langgraph_sdk import Auth
from langgraph_sdk.auth.exceptions import HTTPException as AuthHTTPException
from langgraph_sdk.auth.types import AuthContext
from pydantic import JsonValue
from pydantic_core import to_jsonable_python
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request

from agent_runtime.core.errors import AuthHandlerFailed, AuthRejected
from agent_runtime.core.metadata_filter import MetadataFilter
from agent_runtime.core.records import AuthUser

logger = logging.getLogger(__name__)

Resource = Literal["threads", "assistants", "crons", "store"]
AUTHENTICATE_PARAMETERS = (
    "request",
    "path",
    "method",
    "path_params",
    "query_params",
    "headers",
    "authorization",
    "scope",
)
ACTIONS: dict[Resource, tuple[str, ...]] = {
    "threads": ("create", "read", "update", "delete", "search", "create_run"),
    "assistants": ("create", "read", "update", "delete", "search"),
    "crons": ("create", "read", "update", "delete", "search"),
    "store": ("put", "get", "search", "delete", "list_namespaces"),
}
"""What the runtime asks handlers about, as LangGraph Platform does (runs are the
``threads`` resource's)."""
_USER_KEYS = ("identity", "display_name", "is_authenticated", "permissions")


class AppAuth:
    """The app's ``Auth`` object, checked at load (:func:`app_auth`), called per request."""

    def __init__(self, auth: Auth, source: str, authenticate: Callable[..., Any]) -> None:
        self._auth = auth
        self.source = source
        self._authenticate = authenticate
        self._parameters = _parameters(authenticate)

    async def authenticate(self, request: Request) -> AuthUser:
        """The user behind ``request``, as the app's ``authenticate`` handler says."""
        arguments = _arguments(request, self._parameters)
        try:
            if inspect.iscoroutinefunction(self._authenticate):
                found = await self._authenticate(**arguments)
            else:
                found = await asyncio.to_thread(self._authenticate, **arguments)
        except Exception as error:
            _reraise(error, "authenticate")
        return user_of(found)

    async def authorize(
        self, user: AuthUser, resource: Resource, action: str, value: dict[str, Any]
    ) -> MetadataFilter | None:
        """Run the most specific handler for ``resource.action`` on ``value`` (which it may
        change); the filter it answers, or ``None`` for "allowed, unfiltered"."""
        handler = self._handler(resource, action)
        if handler is None:
            return None
        where = f"{resource}.{action}"
        context = AuthContext(
            permissions=list(user.permissions),
            user=UserView(user.as_dict()),
            resource=resource,
            action=action,  # type: ignore[arg-type]  # one of ACTIONS, typed as str here
        )
        try:
            answer = await handler(ctx=context, value=value)
        except Exception as error:
            _reraise(error, where)
        if answer is None or answer is True:
            return None
        if answer is False:
            raise AuthRejected("Forbidden", 403)
        if not isinstance(answer, dict):
            raise AuthHandlerFailed(
                f"the app's auth handler for {where} returned a {type(answer).__name__}; "
                "it may return None, a bool or a filter dict"
            )
        try:
            return MetadataFilter.parse(answer)
        except ValueError as error:
            raise AuthHandlerFailed(
                f"the app's auth handler for {where} returned an unsupported filter: {error}"
            ) from None

    def _handler(self, resource: str, action: str) -> Callable[..., Awaitable[Any]] | None:
        handlers = self._auth._handlers
        for key in ((resource, action), (resource, "*"), ("*", action), ("*", "*")):
            if key in handlers:
                return handlers[key][-1]
        globals_ = self._auth._global_handlers
        return globals_[-1] if globals_ else None

    def uncovered(self) -> list[str]:
        """``resource.action`` pairs no handler covers while some are registered: those
        requests are allowed unfiltered (the Platform warns of them too)."""
        if not self._auth._handlers and not self._auth._global_handlers:
            return []
        return [
            f"{resource}.{action}"
            for resource, actions in ACTIONS.items()
            for action in actions
            if self._handler(resource, action) is None
        ]


def app_auth(value: object, source: str) -> AppAuth:
    """``value`` (what ``auth.path`` names) as the app's auth; ValueError saying why not."""
    if not isinstance(value, Auth):
        raise ValueError(
            f"{source!r} is a {type(value).__name__}, not a langgraph_sdk.Auth "
            "(auth = Auth(), with an @auth.authenticate handler)"
        )
    authenticate = value._authenticate_handler
    if authenticate is None:
        raise ValueError(
            f"{source!r} has no authenticate handler; define one with @auth.authenticate"
        )
    unsupported = [
        name
        for name, parameter in inspect.signature(authenticate).parameters.items()
        if name not in AUTHENTICATE_PARAMETERS
        and parameter.default is parameter.empty
        and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
    ]
    if unsupported:
        raise ValueError(
            f"{source!r}: the authenticate handler takes {', '.join(unsupported)}; it may "
            f"take {', '.join(AUTHENTICATE_PARAMETERS)}"
        )
    return AppAuth(value, source, authenticate)


def _parameters(authenticate: Callable[..., Any]) -> frozenset[str]:
    names = inspect.signature(authenticate).parameters
    return frozenset(name for name in names if name in AUTHENTICATE_PARAMETERS)


def _arguments(request: Request, wanted: frozenset[str]) -> dict[str, Any]:
    scope = request.scope
    raw_headers: dict[bytes, bytes] = dict(scope.get("headers") or [])
    available: dict[str, Callable[[], Any]] = {
        "request": lambda: request,
        "scope": lambda: scope,
        "path": lambda: scope["path"],
        "method": lambda: request.method,
        "path_params": lambda: dict(request.path_params),
        "query_params": lambda: request.query_params,
        "headers": lambda: raw_headers,
        "authorization": lambda: request.headers.get("authorization"),
    }
    return {name: make() for name, make in available.items() if name in wanted}


def _reraise(error: Exception, where: str) -> NoReturn:
    """A handler's exception as the runtime's: a refusal, or a 500 with the trace logged."""
    if isinstance(error, AuthHTTPException | StarletteHTTPException):
        status = error.status_code if 400 <= error.status_code < 600 else 500
        headers = dict(error.headers) if error.headers else None
        raise AuthRejected(str(error.detail), status, headers) from None
    if isinstance(error, AssertionError):
        raise AuthRejected(str(error) or "Forbidden", 403) from None
    logger.error("the app's auth handler for %s raised", where, exc_info=error)
    raise AuthHandlerFailed(
        f"the app's auth handler for {where} failed; its error is in the server's log"
    ) from None


def user_of(found: object) -> AuthUser:
    """What ``authenticate`` returned, as the runtime's :class:`AuthUser`."""
    permissions: object = ()
    user = found
    if isinstance(found, tuple) and len(found) == 2:
        permissions, user = found
    elif isinstance(found, Mapping):
        permissions = found.get("permissions", ())
    elif hasattr(found, "permissions"):
        permissions = found.permissions
    fields = _fields(user)
    identity = user if isinstance(user, str) else fields.get("identity")
    if not isinstance(identity, str) or not identity:
        raise AuthHandlerFailed(
            "the app's authenticate handler returned no identity: it must return a user "
            "id string or a user with a non-empty string 'identity'"
        )
    if isinstance(permissions, str) or not isinstance(permissions, Sequence):
        raise AuthHandlerFailed("the app's authenticate handler returned permissions not a list")
    display_name = fields.get("display_name")
    authenticated = fields.get("is_authenticated", True)
    return AuthUser(
        identity=identity,
        display_name=display_name if isinstance(display_name, str) else identity,
        is_authenticated=authenticated if isinstance(authenticated, bool) else True,
        permissions=tuple(str(permission) for permission in permissions),
        fields={key: value for key, value in fields.items() if key not in _USER_KEYS},
    )


def _fields(user: object) -> dict[str, JsonValue]:
    """The user's fields as JSON: a mapping's items, a model's dump, or the attributes
    LangGraph's user protocol names."""
    if isinstance(user, Mapping):
        raw: dict[str, Any] = dict(user)
    elif callable(getattr(user, "model_dump", None)):
        raw = user.model_dump()  # type: ignore[attr-defined]
    else:
        raw = {key: getattr(user, key) for key in _USER_KEYS if hasattr(user, key)}
    jsonable = to_jsonable_python(raw, fallback=str)
    return {str(key): value for key, value in jsonable.items()}


@dataclass(frozen=True)
class UserView:
    """An end user carried as a mapping (:meth:`AuthUser.as_dict`, a run's
    ``langgraph_auth_user``), seen as ``langgraph_sdk``'s ``BaseUser``: ``ctx.user`` in the
    app's handlers, a ``ServerRuntime``'s user; other fields by key or as attributes, as
    the Platform's user objects allow."""

    fields: Mapping[str, Any]

    @property
    def identity(self) -> str:
        return str(self.fields.get("identity", ""))

    @property
    def display_name(self) -> str:
        return str(self.fields.get("display_name") or self.identity)

    @property
    def is_authenticated(self) -> bool:
        return bool(self.fields.get("is_authenticated", True))

    @property
    def permissions(self) -> Sequence[str]:
        return list(self.fields.get("permissions") or [])

    def dict(self) -> dict[str, Any]:
        return dict(self.fields)

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]

    def __contains__(self, key: object) -> bool:
        return key in self.fields

    def __iter__(self) -> Iterator[str]:
        return iter(self.fields)

    def __getattr__(self, name: str) -> Any:
        fields = self.__dict__.get("fields") or {}
        if not name.startswith("_") and name in fields:
            return fields[name]
        raise AttributeError(f"the user has no field {name!r}")
