"""RunService on both storage backends: outcomes, interrupts, streams, limits."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

import orjson
import pytest

from agent_runtime.config.settings import StorageSettings
from agent_runtime.core.errors import BadRequest, NotFound, ProviderChainExhausted
from agent_runtime.runs.executor import ExecutorSettings
from agent_runtime.runs.graph_runner import DRIVER_FAILED
from tests.runs.run_harness import (
    DRIVER_TEXT,
    GRAPH,
    OTHER,
    TENANT,
    Replica,
    body,
    new_thread,
    replica,
)


@pytest.fixture
async def one(storage_settings: StorageSettings) -> AsyncIterator[Replica]:
    async with replica(storage_settings) as r:
        yield r


def frames(raw: list[bytes]) -> list[tuple[str, object, str]]:
    """(event, data, id) of each SSE frame."""
    out = []
    for frame in raw:
        lines = dict(line.split(": ", 1) for line in frame.decode().strip().split("\r\n"))
        out.append((lines["event"], orjson.loads(lines["data"]), lines.get("id", "")))
    return out


async def test_wait_returns_final_values_and_records_success(one: Replica) -> None:
    thread_id = await new_thread(one)
    outcome = await one.runs.wait(TENANT, thread_id, body())
    assert outcome.status == "success"
    assert json.loads(outcome.body) == {"steps": ["first", "second"], "mode": "ok"}
    run = await one.runs.runs.get(TENANT.tenant_id, outcome.run_id)
    assert run.status == "success"
    assert run.graph_id == GRAPH
    thread = await one.store.get_thread(TENANT.tenant_id, thread_id)
    assert thread.status == "idle"
    assert thread.state_values == {"steps": ["first", "second"], "mode": "ok"}
    assert thread.metadata["graph_id"] == GRAPH
    assert one.finished == [(GRAPH, "success")]


async def test_graph_error_is_an_error_body_and_keeps_the_last_good_checkpoint(
    one: Replica,
) -> None:
    thread_id = await new_thread(one)
    await one.runs.wait(TENANT, thread_id, body())
    outcome = await one.runs.wait(TENANT, thread_id, body("crash"))
    assert json.loads(outcome.body) == {
        "__error__": {"error": "ValueError", "message": "second step broke"}
    }
    run = await one.runs.runs.get(TENANT.tenant_id, outcome.run_id)
    assert run.status == "error"
    assert json.loads(run.error or "")["error"] == "ValueError"
    thread = await one.store.get_thread(TENANT.tenant_id, thread_id)
    assert thread.status == "error"
    state = await one.threads.get_state(TENANT, thread_id)
    # "first" of the failed run landed; "second" never did.
    assert state["values"]["steps"] == ["first", "second", "first"]
    assert state["next"] == ["second"]


async def test_a_drivers_error_reaches_the_tenant_as_a_dependency_failure(
    one: Replica, caplog: pytest.LogCaptureFixture
) -> None:
    thread_id = await new_thread(one)
    with caplog.at_level(logging.WARNING, logger="agent_runtime.runs.graph_runner"):
        outcome = await one.runs.wait(TENANT, thread_id, body("driver"))
    error = json.loads(outcome.body)["__error__"]
    assert error == {"error": "DependencyUnavailable", "message": DRIVER_FAILED}
    run = await one.runs.runs.get(TENANT.tenant_id, outcome.run_id)
    assert "10.9.8.7" not in (run.error or "") and "ops_admin" not in (run.error or "")
    # The operator's log keeps what the driver said.
    assert any(DRIVER_TEXT in record.getMessage() for record in caplog.records)


async def test_runtime_errors_keep_their_type(one: Replica) -> None:
    thread_id = await new_thread(one)
    with pytest.raises(ProviderChainExhausted):
        await one.runs.wait(TENANT, thread_id, body("provider"))
    [run] = await one.runs.runs.search(TENANT.tenant_id, thread_id)
    assert run.status == "error"


async def test_interrupt_then_resume(one: Replica) -> None:
    thread_id = await new_thread(one)
    outcome = await one.runs.wait(TENANT, thread_id, body("ask"))
    output = json.loads(outcome.body)
    assert output["__interrupt__"][0]["value"] == {"question": "approve?"}
    assert outcome.status == "success"
    thread = await one.store.get_thread(TENANT.tenant_id, thread_id)
    assert thread.status == "interrupted"
    [task_interrupts] = thread.interrupts.values()
    assert task_interrupts[0]["value"] == {"question": "approve?"}

    resumed = await one.runs.wait(
        TENANT,
        thread_id,
        body().model_copy(update={"input": None, "command": _resume("yes")}),
    )
    assert json.loads(resumed.body)["steps"] == ["first", "approved:yes"]
    thread = await one.store.get_thread(TENANT.tenant_id, thread_id)
    assert (thread.status, thread.interrupts) == ("idle", {})


def _resume(value: str):  # type: ignore[no-untyped-def]
    from agent_runtime.protocol.agent_protocol import Command

    return Command(resume=value)


async def test_interrupt_before_a_node(one: Replica) -> None:
    thread_id = await new_thread(one)
    await one.runs.wait(TENANT, thread_id, body(interrupt_before=["second"]))
    state = await one.threads.get_state(TENANT, thread_id)
    assert state["next"] == ["second"]
    assert (await one.store.get_thread(TENANT.tenant_id, thread_id)).status == "interrupted"
    resumed = await one.runs.wait(TENANT, thread_id, body().model_copy(update={"input": None}))
    assert json.loads(resumed.body)["steps"] == ["first", "second"]


async def test_stream_starts_with_metadata_and_numbers_events(one: Replica) -> None:
    thread_id = await new_thread(one)
    raw = [
        f async for f in one.runs.stream(TENANT, thread_id, body(stream_mode=["values", "updates"]))
    ]
    parsed = frames(raw)
    assert parsed[0][0] == "metadata"
    assert [int(i) for _, _, i in parsed] == list(range(1, len(parsed) + 1))
    names = [name for name, _, _ in parsed]
    assert "updates" in names and "values" in names
    assert parsed[-1][1] == {"steps": ["first", "second"], "mode": "ok"}


async def test_custom_and_debug_modes(one: Replica) -> None:
    thread_id = await new_thread(one)
    raw = [
        f
        async for f in one.runs.stream(
            TENANT, thread_id, body("slow", stream_mode=["custom", "debug", "tasks"])
        )
    ]
    names = [name for name, _, _ in frames(raw)]
    assert ("custom", {"progress": "working"}) in [(n, d) for n, d, _ in frames(raw)]
    assert "debug" in names and "tasks" in names


async def test_events_mode_streams_langchain_events(one: Replica) -> None:
    thread_id = await new_thread(one)
    raw = [
        f async for f in one.runs.stream(TENANT, thread_id, body(stream_mode=["events", "values"]))
    ]
    parsed = frames(raw)
    kinds = {data["event"] for name, data, _ in parsed if name == "events"}  # type: ignore[index]
    assert {"on_chain_start", "on_chain_end"} <= kinds
    assert [d for n, d, _ in parsed if n == "values"][-1] == {
        "steps": ["first", "second"],
        "mode": "ok",
    }


async def test_stream_error_event(one: Replica) -> None:
    thread_id = await new_thread(one)
    parsed = frames([f async for f in one.runs.stream(TENANT, thread_id, body("crash"))])
    assert parsed[-1][0] == "error"
    assert parsed[-1][1] == {"error": "ValueError", "message": "second step broke"}


async def test_stateless_run_drops_its_thread(one: Replica) -> None:
    outcome = await one.runs.wait(TENANT, None, body())
    assert json.loads(outcome.body)["steps"] == ["first", "second"]
    with pytest.raises(NotFound):
        await one.store.get_thread(TENANT.tenant_id, outcome.thread_id)


async def test_stateless_run_can_keep_its_thread(one: Replica) -> None:
    outcome = await one.runs.wait(TENANT, None, body(on_completion="keep"))
    thread = await one.store.get_thread(TENANT.tenant_id, outcome.thread_id)
    assert thread.state_values["steps"] == ["first", "second"]


async def test_unknown_thread_and_other_tenants_thread_are_not_found(one: Replica) -> None:
    thread_id = await new_thread(one, OTHER)
    with pytest.raises(NotFound):
        await one.runs.wait(TENANT, thread_id, body())
    with pytest.raises(NotFound):
        await one.runs.wait(TENANT, "1e2f8c9a-0000-4000-8000-000000000000", body())


async def test_if_not_exists_create(one: Replica) -> None:
    thread_id = "1e2f8c9a-0000-4000-8000-00000000abcd"
    outcome = await one.runs.wait(TENANT, thread_id, body(if_not_exists="create"))
    assert outcome.thread_id == thread_id
    assert (await one.store.get_thread(TENANT.tenant_id, thread_id)).status == "idle"


async def test_resume_without_a_thread_is_a_bad_request(one: Replica) -> None:
    request = body().model_copy(update={"command": _resume("x")})
    with pytest.raises(BadRequest, match="thread_id when resuming"):
        await one.runs.wait(TENANT, None, request)


async def test_run_timeout(storage_settings: StorageSettings) -> None:
    async with replica(storage_settings, run_timeout_s=0.5) as r:
        thread_id = await new_thread(r)
        outcome = await r.runs.wait(TENANT, thread_id, body("hang"))
        assert json.loads(outcome.body)["__error__"]["error"] == "TimeoutError"
        assert outcome.status == "timeout"
        assert (await r.store.get_thread(TENANT.tenant_id, thread_id)).status == "error"


async def test_max_steps_caps_recursion(storage_settings: StorageSettings) -> None:
    async with replica(storage_settings) as r:
        thread_id = await new_thread(r)
        outcome = await r.runs.wait(TENANT, thread_id, body(config={"recursion_limit": 1}))
        assert json.loads(outcome.body)["__error__"]["error"] == "GraphRecursionError"


async def test_background_run_then_join(one: Replica) -> None:
    thread_id = await new_thread(one)
    started = await one.runs.start(TENANT, thread_id, body("slow"), "background")
    assert started.run.status in ("pending", "running")
    joined = await one.runs.join(TENANT, thread_id, started.run.run_id)
    assert json.loads(joined.body)["steps"] == ["first", "second"]


async def test_background_runs_store_events_for_late_joiners(one: Replica) -> None:
    thread_id = await new_thread(one)
    started = await one.runs.start(
        TENANT, thread_id, body(stream_mode=["values", "custom"]), "background"
    )
    await one.runs.join(TENANT, thread_id, started.run.run_id)
    replay = frames(
        [
            f
            async for f in one.runs.join_stream(
                TENANT,
                thread_id,
                started.run.run_id,
                last_event_id=None,
                cancel_on_disconnect=False,
            )
        ]
    )
    assert replay[0][0] == "metadata"
    assert replay[-1] == ("values", {"steps": ["first", "second"], "mode": "ok"}, replay[-1][2])
    # Last-Event-ID: only what came after it.
    after = frames(
        [
            f
            async for f in one.runs.join_stream(
                TENANT,
                thread_id,
                started.run.run_id,
                last_event_id=replay[1][2],
                cancel_on_disconnect=False,
            )
        ]
    )
    assert after == replay[2:]


async def test_executor_settings_are_validated() -> None:
    with pytest.raises(ValueError):
        ExecutorSettings(lease_s=0)


async def test_streamed_runs_keep_their_events_and_wait_runs_do_not(one: Replica) -> None:
    thread_id = await new_thread(one)
    raw = [f async for f in one.runs.stream(TENANT, thread_id, body(stream_mode=["values"]))]
    streamed = frames(raw)
    run_id = streamed[0][1]["run_id"]  # type: ignore[index]
    stored = await one.runs.runs.events.read(run_id, 0)
    # Another replica can replay the whole stream for a client that reconnects.
    assert [(name, orjson.loads(data)) for _, name, data in stored] == [
        (name, data) for name, data, _ in streamed
    ]
    waited = await one.runs.wait(TENANT, thread_id, body())
    assert await one.runs.runs.events.read(waited.run_id, 0) == []


async def test_old_runs_events_are_purged(one: Replica) -> None:
    from datetime import timedelta

    from agent_runtime.db.tables import utcnow

    thread_id = await new_thread(one)
    [_ async for _ in one.runs.stream(TENANT, thread_id, body())]
    [run] = await one.runs.runs.search(TENANT.tenant_id, thread_id)
    # The stream's last event can reach the client before the run's end is recorded.
    await one.runs.join(TENANT, thread_id, run.run_id)
    assert await one.runs.runs.events.purge(utcnow() - timedelta(minutes=5)) == 0
    assert await one.runs.runs.events.purge(utcnow() + timedelta(seconds=1)) == 1
    assert await one.runs.runs.events.read(run.run_id, 0) == []
