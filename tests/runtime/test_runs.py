"""RunService on both storage backends: run lifecycle, failures, interrupts, streaming."""

from __future__ import annotations

import json
import operator
from collections.abc import AsyncIterator
from typing import Annotated, Any, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt

from runtime.checkpointers import Checkpointers
from runtime.errors import Conflict, NotFound, ProviderChainExhausted
from runtime.protocol import RunCreate, ThreadCreate
from runtime.records import Principal
from runtime.runs import RunService
from runtime.settings import StorageSettings
from runtime.storage import MetadataStore

TENANT = Principal(tenant_id="runs-tenant", key_id="k1")


class State(TypedDict):
    steps: Annotated[list[str], operator.add]
    mode: str


async def first(state: State) -> dict[str, Any]:
    return {"steps": ["first"]}


async def second(state: State) -> dict[str, Any]:
    if state["mode"] == "crash":
        raise ValueError("second step broke")
    if state["mode"] == "provider":
        raise ProviderChainExhausted("smart", ["fake-smart: HTTP 500"])
    if state["mode"] == "ask":
        answer = interrupt({"question": "approve?"})
        return {"steps": [f"approved:{answer}"]}
    return {"steps": ["second"]}


def build() -> StateGraph[State]:
    graph = StateGraph(State)
    graph.add_node("first", first)
    graph.add_node("second", second)
    graph.add_edge(START, "first")
    graph.add_edge("first", "second")
    graph.add_edge("second", END)
    return graph


@pytest.fixture
async def service(storage_settings: StorageSettings) -> AsyncIterator[tuple[RunService, Any]]:
    store = MetadataStore(storage_settings)
    await store.setup()
    await store.ensure_tenant(TENANT.tenant_id, "runs")
    checkpointers = Checkpointers(storage_settings)
    saver = await checkpointers.setup()
    finished: list[tuple[str, str]] = []
    runs = RunService(
        store,
        {"steps": build().compile(checkpointer=saver)},
        run_timeout_s=30,
        on_run_finished=lambda graph, status, ms, timings: finished.append((graph, status)),
    )
    yield runs, (store, finished)
    await checkpointers.close()
    await store.close()


async def new_thread(runs: RunService) -> str:
    thread = await runs.create_thread(TENANT, ThreadCreate())
    thread_id: str = thread["thread_id"]
    return thread_id


def body(mode: str, **extra: Any) -> RunCreate:
    return RunCreate.model_validate(
        {"assistant_id": "steps", "input": {"steps": [], "mode": mode}, **extra}
    )


async def test_successful_run_records_success(service: tuple[RunService, Any]) -> None:
    runs, (store, finished) = service
    thread_id = await new_thread(runs)
    outcome = await runs.wait(TENANT, thread_id, body("ok"))
    assert outcome.status == "success"
    assert json.loads(outcome.body) == {"steps": ["first", "second"], "mode": "ok"}
    run = await store.get_run(TENANT.tenant_id, outcome.run_id)
    assert run.status == "success"
    thread = await runs.get_thread(TENANT, thread_id)
    assert thread["status"] == "idle"
    assert thread["values"]["steps"] == ["first", "second"]
    assert finished == [("steps", "success")]


async def test_failed_run_leaves_the_last_good_checkpoint(
    service: tuple[RunService, Any],
) -> None:
    runs, (store, finished) = service
    thread_id = await new_thread(runs)
    await runs.wait(TENANT, thread_id, body("ok"))
    outcome = await runs.wait(TENANT, thread_id, body("crash"))
    # As LangGraph Platform: a graph error is a 200 body with __error__.
    assert json.loads(outcome.body) == {
        "__error__": {"error": "ValueError", "message": "second step broke"}
    }
    assert outcome.status == "error"
    run = await store.get_run(TENANT.tenant_id, outcome.run_id)
    assert run.status == "error"
    assert run.error == "ValueError: second step broke"
    state = await runs.get_state(TENANT, thread_id)
    # "first" of the failed run completed and was checkpointed; "second" never was.
    assert state["values"]["steps"] == ["first", "second", "first"]
    assert state["next"] == ["second"]
    assert (await runs.get_thread(TENANT, thread_id))["status"] == "error"
    # The thread is usable again after the failure.
    retry = await runs.wait(TENANT, thread_id, body("ok"))
    assert retry.status == "success"
    assert finished[-2:] == [("steps", "error"), ("steps", "success")]


async def test_runtime_errors_keep_their_type(service: tuple[RunService, Any]) -> None:
    runs, (store, _) = service
    thread_id = await new_thread(runs)
    with pytest.raises(ProviderChainExhausted) as raised:
        await runs.wait(TENANT, thread_id, body("provider"))
    assert raised.value.details["run_id"]
    run = await store.get_run(TENANT.tenant_id, raised.value.details["run_id"])
    assert run.status == "error"
    assert (await runs.get_thread(TENANT, thread_id))["status"] == "error"


async def test_busy_thread_is_a_conflict(service: tuple[RunService, Any]) -> None:
    runs, (store, _) = service
    thread_id = await new_thread(runs)
    assert await store.start_run(TENANT.tenant_id, thread_id, graph_id="steps", assistant_id="x")
    with pytest.raises(Conflict):
        await runs.wait(TENANT, thread_id, body("ok"))


async def test_unknown_thread_and_assistant_are_not_found(
    service: tuple[RunService, Any],
) -> None:
    runs, _ = service
    with pytest.raises(NotFound):
        await runs.wait(TENANT, "00000000-0000-0000-0000-000000000000", body("ok"))
    thread_id = await new_thread(runs)
    with pytest.raises(NotFound, match="nope"):
        await runs.wait(
            TENANT, thread_id, RunCreate.model_validate({"assistant_id": "nope", "input": {}})
        )
    other = Principal(tenant_id="someone-else", key_id="k2")
    with pytest.raises(NotFound):
        await runs.get_state(other, thread_id)


async def test_interrupt_then_resume(service: tuple[RunService, Any]) -> None:
    runs, _ = service
    thread_id = await new_thread(runs)
    outcome = await runs.wait(TENANT, thread_id, body("ask"))
    assert outcome.status == "interrupted"
    assert json.loads(outcome.body)["__interrupt__"][0]["value"] == {"question": "approve?"}
    thread = await runs.get_thread(TENANT, thread_id)
    assert thread["status"] == "interrupted"
    assert next(iter(thread["interrupts"].values()))[0]["value"] == {"question": "approve?"}
    resumed = await runs.wait(
        TENANT,
        thread_id,
        RunCreate.model_validate({"assistant_id": "steps", "command": {"resume": "yes"}}),
    )
    assert resumed.status == "success"
    assert json.loads(resumed.body)["steps"] == ["first", "approved:yes"]


async def test_stateless_run_deletes_its_thread(service: tuple[RunService, Any]) -> None:
    runs, (store, _) = service
    outcome = await runs.wait(TENANT, None, body("ok"))
    assert outcome.status == "success"
    with pytest.raises(NotFound):
        await store.get_thread(TENANT.tenant_id, outcome.thread_id)


async def test_stream_sends_metadata_then_modes_then_error(
    service: tuple[RunService, Any],
) -> None:
    runs, _ = service
    thread_id = await new_thread(runs)
    events = [e async for e in runs.stream(TENANT, thread_id, body("ok", stream_mode=["updates"]))]
    names = [e.split(b"\r\n", 1)[0] for e in events]
    assert names == [b"event: metadata", b"event: updates", b"event: updates"]
    failing = [e async for e in runs.stream(TENANT, thread_id, body("crash"))]
    assert failing[-1].startswith(b"event: error")
    assert b"second step broke" in failing[-1]
    assert (await runs.get_thread(TENANT, thread_id))["status"] == "error"
