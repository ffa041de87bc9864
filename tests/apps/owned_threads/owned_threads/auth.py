"""Who the caller is (a bearer token; a real app would verify a JWT with its identity
provider) and what they may touch: the threads, runs, assistants and crons they created,
and the store items under their own identity."""

from langgraph_sdk import Auth

auth = Auth()

# Fixed tokens keep the example self-contained.
USERS = {
    "alice-token": {"identity": "alice", "display_name": "Alice", "permissions": ["write"]},
    "bob-token": {"identity": "bob", "display_name": "Bob", "permissions": ["write"]},
}


@auth.authenticate
async def authenticate(authorization: str | None) -> Auth.types.MinimalUserDict:
    scheme, _, token = (authorization or "").partition(" ")
    user = USERS.get(token) if scheme.lower() == "bearer" else None
    if user is None:
        raise Auth.exceptions.HTTPException(status_code=401, detail="Invalid token")
    return user


@auth.on
async def owner_only(ctx: Auth.types.AuthContext, value: dict) -> Auth.types.FilterType:
    metadata = value.setdefault("metadata", {})
    metadata["owner"] = ctx.user.identity
    return {"owner": ctx.user.identity}


@auth.on.store
async def own_namespace(ctx: Auth.types.AuthContext, value: dict) -> None:
    namespace = tuple(value.get("namespace") or ())
    if not namespace or namespace[0] != ctx.user.identity:
        value["namespace"] = (ctx.user.identity, *namespace)
