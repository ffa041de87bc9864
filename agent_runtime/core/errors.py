"""One exception tree for the runtime and one table from error to HTTP status.

Third-party errors (httpx, openai, SQLAlchemy, redis) are mapped to these at the boundary
where they are caught; the ingress turns any ``AgentRuntimeError`` into a JSON body with
:func:`error_body` and the status from :data:`HTTP_STATUS`. Messages never carry secrets.
"""

from __future__ import annotations

from typing import Any


class AgentRuntimeError(Exception):
    """Root of every error the runtime raises on purpose."""

    code = "internal_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def __reduce__(self) -> tuple[Any, ...]:
        # Errors cross Ray handles by pickle; subclasses take other constructor arguments,
        # so rebuild from message + details instead of from ``args``.
        return (_rebuild, (type(self), self.message, self.details))


def _rebuild(
    cls: type[AgentRuntimeError], message: str, details: dict[str, Any]
) -> AgentRuntimeError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.message = message
    error.details = details
    for name, value in details.items():
        setattr(error, name, value)
    return error


class BadRequest(AgentRuntimeError):
    """Well-formed but inconsistent (the Platform's 400s, e.g. resume without a thread)."""

    code = "bad_request"


class Unauthorized(AgentRuntimeError):
    code = "unauthorized"


class Forbidden(AgentRuntimeError):
    code = "forbidden"


class NotFound(AgentRuntimeError):
    code = "not_found"


class ModelNotFound(NotFound):
    """A model name the models config does not list (OpenAI's code for it)."""

    code = "model_not_found"


class Conflict(AgentRuntimeError):
    code = "conflict"


class PayloadTooLarge(AgentRuntimeError):
    code = "payload_too_large"


class InvalidRequest(AgentRuntimeError):
    code = "invalid_request"


class HeadersTooLarge(AgentRuntimeError):
    """Too many request headers, or too large in all (``AGENT_MAX_HEADERS``, ``..._BYTES``)."""

    code = "headers_too_large"


class DeadlineExceeded(AgentRuntimeError):
    """A route did not answer within its deadline (``AGENT_REQUEST_TIMEOUT_S``, ...)."""

    code = "timeout"


# How long a client should wait before retrying a request refused for an outage.
DEPENDENCY_RETRY_AFTER_S = 2.0


class RateLimited(AgentRuntimeError):
    code = "rate_limited"

    def __init__(self, message: str, retry_after: float, **details: Any) -> None:
        super().__init__(message, retry_after=retry_after, **details)
        self.retry_after = retry_after


class BudgetExceeded(AgentRuntimeError):
    code = "budget_exceeded"


class ProviderError(AgentRuntimeError):
    """One provider call failed (5xx, timeout, connection). Counts against its breaker."""

    code = "provider_error"

    def __init__(self, message: str, model: str, status: int | None = None) -> None:
        super().__init__(message, model=model, status=status)
        self.model = model
        self.status = status


class StreamInterrupted(ProviderError):
    """A streamed answer broke off after its first token: what was sent is partial."""

    def __init__(self, message: str, model: str, status: int | None = None) -> None:
        super().__init__(message, model=model, status=status)
        self.partial = True
        self.details["partial"] = True


class ProviderRejected(AgentRuntimeError):
    """The provider refused the caller's request (400/422): the caller's fault, no fallback."""

    code = "provider_rejected"


class CircuitOpen(AgentRuntimeError):
    code = "circuit_open"

    def __init__(self, model: str) -> None:
        super().__init__(f"circuit breaker for model {model!r} is open", model=model)
        self.model = model


class ProviderChainExhausted(AgentRuntimeError):
    code = "provider_chain_exhausted"

    def __init__(self, alias: str, attempts: list[str]) -> None:
        super().__init__(
            f"every model for {alias!r} failed or is unavailable ({'; '.join(attempts)}); "
            "retry later or check the provider's status",
            alias=alias,
            attempts=attempts,
        )
        self.alias = alias
        self.attempts = attempts


class EmbeddingFailed(AgentRuntimeError):
    """The store's embedding function failed, or gave vectors that do not fit its index."""

    code = "embedding_failed"


class DependencyUnavailable(AgentRuntimeError):
    """A backing service (database, Redis, a deployment) cannot be reached.

    Always answered with ``Retry-After``: clients (and load balancers) back off and retry
    rather than give up, since the outage is usually a restart."""

    code = "service_unavailable"

    def __init__(
        self, message: str, retry_after: float = DEPENDENCY_RETRY_AFTER_S, **details: Any
    ) -> None:
        super().__init__(message, retry_after=retry_after, **details)


class AuthRejected(AgentRuntimeError):
    """The app's own auth (``auth.path`` in its ``langgraph.json``) refused the request:
    its handler raised ``HTTPException`` (its status, detail and headers), failed an
    assertion (403) or returned ``False`` (403)."""

    _CODES = {401: "unauthorized", 403: "forbidden", 404: "not_found"}

    def __init__(
        self, message: str, status_code: int, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.headers = dict(headers or {})
        self.code = self._CODES.get(status_code, "http_error")


class AuthHandlerFailed(AgentRuntimeError):
    """The app's own auth handler raised something else, or answered what LangGraph's
    API does not accept (a 500: the app's fault, logged with its traceback, never sent)."""

    code = "auth_handler_error"


class RunFailed(AgentRuntimeError):
    """A graph run raised; the thread stays at its last good checkpoint."""

    code = "run_failed"


HTTP_STATUS: dict[type[AgentRuntimeError], int] = {
    BadRequest: 400,
    Unauthorized: 401,
    BudgetExceeded: 402,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    PayloadTooLarge: 413,
    InvalidRequest: 422,
    ProviderRejected: 422,
    RateLimited: 429,
    HeadersTooLarge: 431,
    RunFailed: 500,
    ProviderError: 502,
    EmbeddingFailed: 502,
    CircuitOpen: 503,
    ProviderChainExhausted: 503,
    DependencyUnavailable: 503,
    DeadlineExceeded: 504,
}


def http_status(error: AgentRuntimeError) -> int:
    """Status for an error, walking up the class tree; unknown runtime errors are 500."""
    if isinstance(error, AuthRejected):
        return error.status_code
    for cls in type(error).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500


def error_body(error: AgentRuntimeError) -> dict[str, Any]:
    """JSON body for an error, in the ``{"detail": ...}`` shape FastAPI and the SDK expect."""
    return {"detail": error.message, "error": error.code, **error.details}
