"""The end user a run sees (``langgraph_auth_user*`` in its configurable) comes from the
principal the app's auth set, never from the request: a client's values under those names
are dropped, with or without an app auth (as the Platform drops them)."""

from __future__ import annotations

from datetime import UTC, datetime

from agent_runtime.core.records import AssistantRecord, AuthUser, Principal
from agent_runtime.protocol.agent_protocol import RunCreate
from agent_runtime.runs.run_request import AUTH_USER_KEYS, new_run

NOW = datetime.now(UTC)
CLAIMED = {
    "langgraph_auth_user": {"identity": "root"},
    "langgraph_auth_user_id": "root",
    "langgraph_auth_permissions": ["admin"],
}
ASSISTANT = AssistantRecord(
    tenant_id="t",
    assistant_id="a",
    graph_id="g",
    name="g",
    config={"configurable": {"langgraph_auth_user_id": "from-the-assistant", "model": "m"}},
    created_at=NOW,
    updated_at=NOW,
)


def run_config(principal: Principal, **body: object) -> tuple[dict[str, object], object]:
    request = RunCreate.model_validate({"assistant_id": "g", **body})
    made = new_run(principal, "thread", request, ASSISTANT, "wait", 10)
    return made.kwargs["config"]["configurable"], made.kwargs["context"]


def test_a_client_cannot_claim_a_user() -> None:
    configurable, _ = run_config(
        Principal(tenant_id="t", key_id="k"), config={"configurable": CLAIMED}
    )
    assert not set(AUTH_USER_KEYS) & set(configurable)
    assert configurable["model"] == "m"  # the assistant's other values stay
    _, context = run_config(Principal(tenant_id="t", key_id="k"), context=CLAIMED)
    assert context == {}


def test_the_apps_user_is_the_runs() -> None:
    user = AuthUser(identity="ada", display_name="Ada", permissions=("w",), fields={"org": "x"})
    principal = Principal(tenant_id="t", key_id="k", user=user)
    configurable, _ = run_config(principal, config={"configurable": CLAIMED})
    assert configurable["langgraph_auth_user_id"] == "ada"
    assert configurable["langgraph_auth_permissions"] == ["w"]
    assert configurable["langgraph_auth_user"] == {
        "org": "x",
        "identity": "ada",
        "display_name": "Ada",
        "is_authenticated": True,
        "permissions": ["w"],
    }
