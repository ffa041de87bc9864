"""Human in the loop on the Serve stack (Postgres): the approval graph's interrupt() and
resumes, and ``interrupt_before``/``interrupt_after`` on the react and multi_agent graphs."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.support import Api, msg

pytestmark = pytest.mark.e2e

QUESTION = "what is 6 * 7?"


def types(values: dict[str, Any]) -> list[str]:
    return [m["type"] for m in values["messages"]]


async def interrupted_thread(api: Api) -> tuple[str, dict[str, Any]]:
    tid = (await api.sdk.threads.create())["thread_id"]
    out = await api.sdk.runs.wait(tid, "approval", input=msg(QUESTION))
    return tid, out


async def test_interrupt_then_approve(api: Api) -> None:
    sdk = api.sdk
    tid, out = await interrupted_thread(api)
    [pending] = out["__interrupt__"]
    assert len(pending["id"]) == 32
    assert pending["value"]["question"] == "Approve these tool calls?"
    [call] = pending["value"]["tool_calls"]
    assert (call["name"], call["args"]) == ("calculator", {"expression": "6 * 7"})
    assert types(out) == ["human", "ai"]

    # The run succeeded; the thread waits for a human.
    assert [r["status"] for r in await sdk.runs.list(tid)] == ["success"]
    thread = await sdk.threads.get(tid)
    assert thread["status"] == "interrupted"
    [(task_id, interrupts)] = thread["interrupts"].items()
    assert [i["id"] for i in interrupts] == [pending["id"]]
    state = await sdk.threads.get_state(tid)
    assert state["next"] == ["review"]
    assert [i["id"] for i in state["interrupts"]] == [pending["id"]]
    [task] = state["tasks"]
    assert (task["id"], task["name"]) == (task_id, "review")
    assert task["interrupts"][0]["value"] == pending["value"]
    found = await sdk.threads.search(status="interrupted")
    assert [t["thread_id"] for t in found] == [tid]

    done = await sdk.runs.wait(tid, "approval", command={"resume": {"approved": True}})
    assert "__interrupt__" not in done
    assert types(done) == ["human", "ai", "tool", "ai"]
    assert done["messages"][2]["content"] == "42"
    assert done["decisions"] == ["approved: calculator"] and done["tool_calls"] == 1
    thread = await sdk.threads.get(tid)
    assert (thread["status"], thread["interrupts"]) == ("idle", {})
    assert (await sdk.threads.get_state(tid))["next"] == []


async def test_streamed_interrupt_then_refuse(api: Api) -> None:
    sdk = api.sdk
    tid = (await sdk.threads.create())["thread_id"]
    parts = [
        p
        async for p in sdk.runs.stream(
            tid, "approval", input=msg(QUESTION), stream_mode=["values", "updates"]
        )
    ]
    updates = [p.data for p in parts if p.event == "updates"]
    assert list(updates[-1]) == ["__interrupt__"]
    last_values = [p.data for p in parts if p.event == "values"][-1]
    assert last_values["__interrupt__"] == updates[-1]["__interrupt__"]

    refused = await sdk.runs.wait(
        tid, "approval", command={"resume": {"approved": False, "reason": "not now"}}
    )
    assert types(refused) == ["human", "ai", "tool", "ai"]
    assert refused["messages"][2]["content"] == "The reviewer refused this tool call: not now"
    assert refused["decisions"] == ["refused: calculator (not now)"]
    assert refused["tool_calls"] == 0  # nothing ran
    assert (await sdk.threads.get(tid))["status"] == "idle"


async def test_resume_by_interrupt_id_and_without_a_pending_interrupt(api: Api) -> None:
    sdk = api.sdk
    tid, out = await interrupted_thread(api)
    interrupt_id = out["__interrupt__"][0]["id"]
    done = await sdk.runs.wait(tid, "approval", command={"resume": {interrupt_id: True}})
    assert done["decisions"] == ["approved: calculator"]

    # No tool call, no interrupt; a resume then has nothing to do.
    quiet = (await sdk.threads.create())["thread_id"]
    answered = await sdk.runs.wait(quiet, "approval", input=msg("hello"))
    assert "__interrupt__" not in answered
    assert (await sdk.threads.get(quiet))["status"] == "idle"
    again = await sdk.runs.wait(quiet, "approval", command={"resume": True})
    assert again["messages"] == answered["messages"]


async def test_update_state_on_an_interrupted_thread(api: Api) -> None:
    sdk = api.sdk
    tid, _ = await interrupted_thread(api)
    # Answering for the review node skips the interrupt: "agent" is next.
    await sdk.threads.update_state(tid, {"decisions": ["decided by hand"]}, as_node="review")
    thread = await sdk.threads.get(tid)
    state = await sdk.threads.get_state(tid)
    assert state["next"] == ["agent"]
    assert (thread["status"], thread["interrupts"]) == ("interrupted", {})
    assert thread["values"]["decisions"] == ["decided by hand"]


async def test_interrupt_before_and_after(api: Api) -> None:
    sdk = api.sdk
    react = (await sdk.threads.create())["thread_id"]
    stopped = await sdk.runs.wait(react, "react", input=msg(QUESTION), interrupt_before=["tools"])
    assert "__interrupt__" not in stopped  # a breakpoint, not an interrupt() call
    assert types(stopped) == ["human", "ai"] and stopped["messages"][1]["tool_calls"]
    thread = await sdk.threads.get(react)
    assert (thread["status"], thread["interrupts"]) == ("interrupted", {})
    assert (await sdk.threads.get_state(react))["next"] == ["tools"]
    assert (await sdk.runs.list(react))[0]["status"] == "success"
    resumed = await sdk.runs.wait(react, "react", input=None)
    assert types(resumed) == ["human", "ai", "tool", "ai"]
    assert (await sdk.threads.get(react))["status"] == "idle"

    routed = (await sdk.threads.create())["thread_id"]
    first = await sdk.runs.wait(
        routed, "multi_agent", input=msg("hello"), interrupt_after=["router"]
    )
    assert first["agent"] == "general" and types(first) == ["human"]
    assert (await sdk.threads.get_state(routed))["next"] == ["general"]
    assert (await sdk.threads.get(routed))["status"] == "interrupted"
    rest = await sdk.runs.wait(routed, "multi_agent", input=None)
    assert rest["messages"][-1]["content"] == "[fake-smart] You said: hello"

    everything = (await sdk.threads.create())["thread_id"]
    await sdk.runs.wait(everything, "react", input=msg("hi"), interrupt_before="*")
    assert (await sdk.threads.get_state(everything))["next"] == ["agent"]
    parts = [
        p
        async for p in sdk.runs.stream(
            everything, "react", input=None, interrupt_after=["agent"], stream_mode="updates"
        )
    ]
    assert parts[-1].event == "updates" and parts[-1].data == {"__interrupt__": []}
