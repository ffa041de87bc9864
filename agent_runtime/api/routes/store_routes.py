"""HTTP routes of the store (long-term memory): items and namespaces, per tenant.

Paths, bodies, statuses and response shapes follow LangGraph Platform, so
``client.store.*`` of the official SDK works unchanged: puts and deletes answer 204, a
missing item is ``200 null``, a bad namespace label is a 422, an empty or reserved
namespace a 400. Every call acts on the caller's tenant only (:class:`TenantScopedStore`).

The app's own store handlers (``@auth.on.store``, ``agent_runtime.api.route_auth``) see each
call's namespace (and key, value ...) first and may rewrite it, e.g. put the user's identity
in front; a search filter they return narrows the search to items whose values match it.
With the app's ``store.index``, a put embeds the item and a search's ``query`` ranks the
items by similarity (``score``), the embeddings counted as the caller key's model calls.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from langgraph.store.base import NOT_PROVIDED, InvalidNamespaceError, NotProvided
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from agent_runtime.api.deps import ReadPrincipal, RunPrincipal, Services, ServicesDep
from agent_runtime.core.errors import AuthHandlerFailed, DependencyUnavailable, InvalidRequest
from agent_runtime.core.identity import RunIdentity, run_identity
from agent_runtime.core.metadata_filter import MetadataFilter
from agent_runtime.core.records import Principal
from agent_runtime.execution.item_store import TenantScopedStore
from agent_runtime.protocol.agent_protocol import MAX_OFFSET

store = APIRouter(tags=["store"])


def _label(label: str) -> str:
    """Platform's rule: labels are joined with "." in storage, so they cannot hold one."""
    if not label or "." in label or "\0" in label:
        raise ValueError(f"Namespace label {label!r} must be a non-empty string without periods")
    return label


Label = Annotated[str, AfterValidator(_label)]
MAX_TTL_MINUTES = 100 * 366 * 24 * 60
MIN_TTL_MINUTES = 0.0001


def _ttl(minutes: float | None) -> float | None:
    if minutes is not None and 0 < minutes < MIN_TTL_MINUTES:
        raise ValueError(f"ttl must be 0 or at least {MIN_TTL_MINUTES} minutes")
    return minutes


def _index(index: Any) -> Literal[False] | list[str] | None:
    """Which fields to index for search: false (none), null (the default) or their paths."""
    if index is None or index is False:
        return index
    if isinstance(index, list) and all(isinstance(path, str) for path in index):
        return index
    raise ValueError("index must be false, null or a list of field paths")


class _StoreRequest(BaseModel):
    # As agent_runtime.protocol.agent_protocol's requests: unknown fields ignored, known ones
    # strictly typed.
    model_config = ConfigDict(extra="ignore", strict=True)


class StorePut(_StoreRequest):
    namespace: list[Label]
    key: str
    value: dict[str, Any]
    # Typed by hand: a union would report one error per member, named after the member.
    index: Annotated[Any, AfterValidator(_index)] = None
    # Minutes; null: never expires. Absent (see ttl_minutes): the store's default TTL.
    # At most a century, and none in (0, 0.0001): the database is sent the number as text,
    # and a longer one overflowed its interval, a tinier one (1e-05) is not one (500s).
    ttl: Annotated[
        float | None,
        Field(ge=0, le=MAX_TTL_MINUTES, allow_inf_nan=False),
        AfterValidator(_ttl),
    ] = None

    def ttl_minutes(self) -> float | NotProvided | None:
        return self.ttl if "ttl" in self.model_fields_set else NOT_PROVIDED


class StoreDelete(_StoreRequest):
    namespace: list[Label] = Field(default_factory=list)
    key: str


class StoreSearch(_StoreRequest):
    namespace_prefix: list[Label] | None = None
    filter: dict[str, Any] | None = None
    limit: int = Field(default=10, ge=0, le=1000)
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET)
    query: str | None = None
    refresh_ttl: bool | None = None


class StoreListNamespaces(_StoreRequest):
    prefix: list[Label] | None = None
    suffix: list[Label] | None = None
    max_depth: int | None = Field(default=None, ge=0)
    limit: int = Field(default=100, ge=0, le=1000)
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET)


def tenant_store(services: Services, principal: Principal) -> TenantScopedStore:
    if services.items is None:
        raise DependencyUnavailable("the item store is not set up on this replica")
    return services.items.for_tenant(principal.tenant_id)


def caller(principal: Principal) -> AbstractContextManager[None]:
    """Embeddings made for the call (a store index's) count against the caller's key."""
    return run_identity(RunIdentity(principal.tenant_id, key_id=principal.key_id))


def bad_request(detail: str) -> JSONResponse:
    """Platform answers 400 with a bare ``detail`` where the store rejects a namespace."""
    return JSONResponse({"detail": detail, "error": "bad_request"}, status_code=400)


def query_namespace(dotted: str) -> tuple[str, ...]:
    """``GET`` carries the namespace dotted (``a.b``), as the SDK sends it."""
    labels = tuple(dotted.split("."))
    for index, label in enumerate(labels):
        try:
            _label(label)
        except ValueError as exc:
            raise RequestValidationError(
                [{"loc": ("query", "namespace", index), "msg": str(exc), "type": "value_error"}]
            ) from None
    return labels


async def authorized(
    services: Services, principal: Principal, action: str, value: dict[str, Any]
) -> MetadataFilter | None:
    """The app's store handler on ``value`` (a namespace it rewrote is checked again)."""
    allowed = await services.guard.authorize(principal, "store", action, value)
    for name in ("namespace", "suffix"):
        if value.get(name) is not None:
            try:
                value[name] = tuple(_label(label) for label in value[name])
            except (ValueError, TypeError) as exc:
                raise InvalidRequest(f"{name} (as the app's auth left it): {exc}") from None
    return allowed


def with_filter(given: dict[str, Any] | None, allowed: MetadataFilter | None) -> Any:
    """The search's filter and the auth filter's (equality only in the store); ``None``
    when they ask different values of one key: nothing can match."""
    if allowed is None:
        return given
    if allowed.contains:
        raise AuthHandlerFailed(
            "the app's store search handler returned $contains; the store filters by equality only"
        )
    merged = dict(given or {})
    for key, wanted in allowed.equals.items():
        if key in merged and merged[key] != wanted:
            return None
        merged[key] = wanted
    return merged


@store.put("/store/items", status_code=204)
async def put_item(services: ServicesDep, principal: RunPrincipal, body: StorePut) -> Response:
    items = tenant_store(services, principal)
    value: dict[str, Any] = {
        "namespace": tuple(body.namespace),
        "key": body.key,
        "value": body.value,
        "index": body.index,
        "ttl": body.ttl,
    }
    await authorized(services, principal, "put", value)
    try:
        with caller(principal):  # its embeddings (store.index) are the key's model calls
            await items.aput(
                value["namespace"],
                value["key"],
                value["value"],
                index=value["index"],
                ttl=body.ttl_minutes(),
            )
    except InvalidNamespaceError as exc:
        return bad_request(str(exc))
    return Response(status_code=204)


@store.get("/store/items", response_model=None)
async def get_item(
    services: ServicesDep,
    principal: ReadPrincipal,
    namespace: Annotated[str, Query()] = "",
    key: Annotated[str | None, Query()] = None,
    refresh_ttl: Annotated[str | None, Query()] = None,
) -> JSONResponse:
    labels = query_namespace(namespace)
    if not key:
        return bad_request("Key is required")
    # As Platform: "true" (any case) refreshes, anything else does not, absent is the default.
    refresh = None if refresh_ttl is None else refresh_ttl.lower() == "true"
    value: dict[str, Any] = {"namespace": labels, "key": key, "refresh_ttl": refresh}
    await authorized(services, principal, "get", value)
    item = await tenant_store(services, principal).aget(
        value["namespace"], value["key"], refresh_ttl=value["refresh_ttl"]
    )
    return JSONResponse(None if item is None else item.dict())


@store.delete("/store/items", status_code=204)
async def delete_item(
    services: ServicesDep, principal: RunPrincipal, body: StoreDelete
) -> Response:
    value: dict[str, Any] = {"namespace": tuple(body.namespace), "key": body.key}
    await authorized(services, principal, "delete", value)
    await tenant_store(services, principal).adelete(value["namespace"], value["key"])
    return Response(status_code=204)


@store.post("/store/items/search")
async def search_items(
    services: ServicesDep, principal: ReadPrincipal, body: StoreSearch
) -> dict[str, Any]:
    value: dict[str, Any] = {
        "namespace": tuple(body.namespace_prefix or ()),
        "filter": body.filter,
        "limit": body.limit,
        "offset": body.offset,
        "query": body.query,
        "refresh_ttl": body.refresh_ttl,
    }
    item_filter = with_filter(body.filter, await authorized(services, principal, "search", value))
    if item_filter is None and body.filter is not None:
        return {"items": []}
    try:
        with caller(principal):
            found = await tenant_store(services, principal).asearch(
                value["namespace"],
                query=value["query"],
                filter=item_filter,
                limit=value["limit"],
                offset=value["offset"],
                refresh_ttl=value["refresh_ttl"],
            )
    except ValueError as exc:
        # The stores reject unknown filter operators and (SQLite) odd filter keys.
        raise RequestValidationError(
            [{"loc": ("body", "filter"), "msg": str(exc), "type": "value_error"}]
        ) from None
    return {"items": [item.dict() for item in found]}


@store.post("/store/namespaces")
async def list_namespaces(
    services: ServicesDep, principal: ReadPrincipal, body: StoreListNamespaces
) -> dict[str, list[list[str]]]:
    value: dict[str, Any] = {
        "namespace": tuple(body.prefix) if body.prefix else None,
        "suffix": tuple(body.suffix) if body.suffix else None,
        "max_depth": body.max_depth,
        "limit": body.limit,
        "offset": body.offset,
    }
    await authorized(services, principal, "list_namespaces", value)
    found = await tenant_store(services, principal).alist_namespaces(
        prefix=value["namespace"],
        suffix=value["suffix"],
        max_depth=value["max_depth"],
        limit=value["limit"],
        offset=value["offset"],
    )
    return {"namespaces": [list(namespace) for namespace in found]}
