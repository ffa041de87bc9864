"""The app's OpenAPI document, made to say what the API really answers.

FastAPI documents each route's success and, for routes with parameters, a 422 in its own
``{"detail": [...]}`` shape. The runtime answers differently, everywhere, and the document
should say so (the fuzz suite, ``tests/fuzz``, checks every answer against it):

* every error is ``{"detail": str, "error": str, ...}`` (:data:`ERROR_SCHEMA`), including
  422; the OpenAI gateway's are OpenAI's ``{"error": {"message", "type", ...}}``, or the
  runtime's for what the request guard refuses before the route runs;
* the statuses each route can answer: what the request guard refuses (413, 422, 431, 504),
  what authentication and limits refuse (401, 403, 429, 503), and the resource errors
  (400, 404, 409; 402 where a model may be called);
* streams are ``text/event-stream``; ``/health`` has its own body; a cancel without
  ``wait`` is 202; and how to send a key (``x-api-key``, ``Authorization: Bearer``,
  ``x-admin-key`` for admins).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["detail", "error"],
    "properties": {
        "detail": {"type": "string"},
        "error": {"type": "string", "description": "A stable code, e.g. rate_limited."},
        "limit": {"type": "string", "description": "On 429s: the limit that refused."},
    },
    "additionalProperties": True,
}
OPENAI_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}
HEALTH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["status", "checks"],
    "properties": {
        "status": {"type": "string", "enum": ["ok", "unavailable"]},
        "checks": {"type": "object", "additionalProperties": {"type": "string"}},
        "detail": {"type": "string"},
    },
}
# One parsed server-sent event (OpenAPI 3.0/3.1 tools read a stream's schema per event):
# ``data`` is the JSON payload as text; heartbeats are comments and carry no event.
SSE_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "data": {"type": "string"},
        "event": {"type": "string"},
        "id": {"type": "string"},
        "retry": {"type": "integer"},
    },
}
PUBLIC = {"/ok", "/health", "/info"}
STREAMS = {
    "/runs/stream",
    "/threads/{thread_id}/runs/stream",
    "/threads/{thread_id}/runs/{run_id}/stream",
    "/threads/{thread_id}/stream",
}
MODEL_CALLS = {
    "/runs",
    "/runs/batch",
    "/runs/wait",
    "/runs/stream",
    "/threads/{thread_id}/runs",
    "/threads/{thread_id}/runs/wait",
    "/threads/{thread_id}/runs/stream",
    "/v1/chat/completions",
    "/v1/embeddings",
}
# Store operations that embed texts when the app's langgraph.json sets store.index.
EMBEDDING_CALLS = {("put", "/store/items"), ("post", "/store/items/search")}
DESCRIPTIONS = {
    "400": "Inconsistent request",
    "401": "Missing or invalid API key",
    "402": "A budget would be exceeded",
    "403": "The key lacks the route's scope",
    "404": "Not found (or, for /admin with no admin credential configured, absent)",
    "409": "Conflict (e.g. the thread is busy)",
    "413": "Request body too large",
    "422": "Invalid request (fields, or JSON nested too deep)",
    "429": "A limit refused it (`limit` names it); see Retry-After",
    "431": "Request headers too large",
    "502": "The app's embedding function failed, or gave vectors that do not fit the index",
    "503": "A dependency is unavailable",
    "504": "No answer within the route's deadline",
}
GUARD = ("413", "422", "431", "504")
AUTHENTICATED = ("400", "401", "403", "404", "409", "429", "503")
SECURITY_SCHEMES = {
    "ApiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
    "Bearer": {"type": "http", "scheme": "bearer"},
    "AdminKey": {"type": "apiKey", "in": "header", "name": "x-admin-key"},
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _error_content(path: str) -> dict[str, Any]:
    if path.startswith("/v1/"):
        schema: dict[str, Any] = {"anyOf": [_ref("OpenAIError"), _ref("Error")]}
    else:
        schema = _ref("Error")
    return {"application/json": {"schema": schema}}


def document(schema: dict[str, Any]) -> dict[str, Any]:
    """Patch a FastAPI-made OpenAPI document in place (and return it)."""
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Error"] = ERROR_SCHEMA
    schemas["OpenAIError"] = OPENAI_ERROR_SCHEMA
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    components["securitySchemes"] = SECURITY_SCHEMES
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            _document_operation(path, method, operation)
    return schema


def _document_operation(path: str, method: str, operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    codes = list(GUARD)
    if path == "/health":
        ok = {"application/json": {"schema": HEALTH_SCHEMA}}
        responses["200"]["content"] = ok
        responses["503"] = {"description": "A dependency is down", "content": ok}
    elif path not in PUBLIC:
        codes += AUTHENTICATED
        if path in MODEL_CALLS:
            codes.append("402")
        if (method, path) in EMBEDDING_CALLS:
            codes += ["402", "502"]
        if path.startswith("/admin/"):
            operation["security"] = [{"AdminKey": []}, {"ApiKey": []}, {"Bearer": []}]
        else:
            operation["security"] = [{"ApiKey": []}, {"Bearer": []}]
    for code in codes:
        responses[code] = {"description": DESCRIPTIONS[code], "content": _error_content(path)}
    if path in STREAMS or path == "/v1/chat/completions":
        content = responses["200"].setdefault("content", {})
        if path in STREAMS:
            content.clear()
        content["text/event-stream"] = {"schema": SSE_EVENT_SCHEMA}
    if path.endswith("/cancel") and method == "post" and "{run_id}" in path:
        responses["202"] = {"description": "Cancellation requested (without wait)"}


def install_openapi(app: FastAPI) -> None:
    """Serve the patched document at ``/openapi.json`` (built once, on first request)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
