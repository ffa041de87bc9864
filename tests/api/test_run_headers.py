"""Request headers an app lets into its runs' configurable (``http.configurable_headers``):
matched as LangGraph Platform matches them, carried with the run body across the handle
call, merged under the run's own ids."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime

from agent_runtime.api.run_headers import configurable_headers
from agent_runtime.config.http_settings import HttpSettings
from agent_runtime.core.records import AssistantRecord, Principal
from agent_runtime.protocol.agent_protocol import RunCreate
from agent_runtime.runs.run_request import new_run

HEADERS = {
    "X-User-Id": "ada",
    "x-org-id": "acme",
    "my-prefix-region": "eu",
    "my-prefix-secret": "s",
    "user-agent": "sdk",
    "Authorization": "Bearer t",
    "x-api-key": "ar_key",
    "thread_id": "not-the-thread",
}


def settings(includes: list[str], excludes: list[str] | None = None) -> HttpSettings:
    return HttpSettings(
        configurable_headers_includes=includes, configurable_headers_excludes=excludes or []
    )


def test_no_header_is_passed_unless_included() -> None:
    assert configurable_headers(HEADERS, HttpSettings()) == {}


def test_includes_with_wildcards_and_exclusions_win() -> None:
    chosen = configurable_headers(
        HEADERS, settings(["x-user-id", "X-ORG-*", "my-prefix-*"], ["my-prefix-secret"])
    )
    assert chosen == {"x-user-id": "ada", "x-org-id": "acme", "my-prefix-region": "eu"}


def test_credentials_are_never_passed_even_with_a_catch_all() -> None:
    chosen = configurable_headers(HEADERS, settings(["*"]))
    assert "authorization" not in chosen and "x-api-key" not in chosen
    assert chosen["user-agent"] == "sdk"


def test_patterns_are_literal_but_for_the_star() -> None:
    # A regex metacharacter in a pattern is a character, not an operator.
    assert configurable_headers({"x-a": "1", "xxa": "2"}, settings(["x.a"])) == {}
    assert configurable_headers({"x.a": "1"}, settings(["x.a"])) == {"x.a": "1"}


def test_headers_cross_the_handle_call_and_land_under_the_runs_ids() -> None:
    body = RunCreate(assistant_id="agent", config={"configurable": {"model": "fast"}})
    chosen = configurable_headers(HEADERS, settings(["x-user-id", "thread_id"]))
    sent = pickle.loads(pickle.dumps(body.with_headers(chosen)))  # as Ray passes it on
    assert sent.headers == {"x-user-id": "ada", "thread_id": "not-the-thread"}
    assert body.headers == {}  # the original is untouched
    now = datetime.now(UTC)
    assistant = AssistantRecord(
        tenant_id="acme",
        assistant_id="a-1",
        graph_id="agent",
        name="agent",
        created_at=now,
        updated_at=now,
    )
    run = new_run(Principal(tenant_id="acme", key_id="k"), "t-1", sent, assistant, "wait", 50)
    configurable = run.kwargs["config"]["configurable"]
    assert configurable["x-user-id"] == "ada"
    assert configurable["model"] == "fast"
    assert configurable["thread_id"] == "t-1"  # a header never overrides the run's ids


def test_a_header_field_in_the_json_body_is_not_a_way_in() -> None:
    body = RunCreate.model_validate({"assistant_id": "agent", "_headers": {"x-user-id": "eve"}})
    assert body.headers == {}
