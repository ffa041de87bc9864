"""The SDK's assistant calls parsed by our request models and answered with our bodies."""

from __future__ import annotations

import uuid

import httpx
import orjson
from langgraph_sdk.schema import Assistant as SdkAssistant

from agent_runtime.core.records import AssistantRecord
from agent_runtime.protocol.agent_protocol import (
    NAMESPACE_GRAPH,
    AssistantSearch,
    default_assistant_id,
)
from agent_runtime.protocol.agent_responses import assistant_to_wire
from tests.protocol.sdk_recorder import WHEN, Recorder, json_response, sdk_client, sdk_keys


async def test_assistants_get_and_search_default_assistant() -> None:
    record = AssistantRecord(
        tenant_id="acme",
        assistant_id=default_assistant_id("agent"),
        graph_id="agent",
        name="agent",
        description="A helpful agent",
        metadata={"created_by": "system"},
        created_at=WHEN,
        updated_at=WHEN,
    )
    wire = assistant_to_wire(record)

    def respond(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/assistants/search":
            criteria = AssistantSearch.model_validate(orjson.loads(request.content))
            return json_response([wire] if criteria.graph_id == "agent" else [])
        return json_response(wire)

    recorder = Recorder(respond)
    async with sdk_client(recorder) as client:
        fetched = await client.assistants.get(record.assistant_id)
        found = await client.assistants.search(graph_id="agent", limit=3)
    get, search = recorder.requests
    assert get.url.path == f"/assistants/{record.assistant_id}"
    assert AssistantSearch.model_validate(orjson.loads(search.content)).limit == 3
    assert sdk_keys(SdkAssistant) <= set(fetched)
    assert fetched["assistant_id"] == str(uuid.uuid5(NAMESPACE_GRAPH, "agent"))
    assert (fetched["graph_id"], fetched["name"], fetched["version"]) == ("agent", "agent", 1)
    assert fetched["metadata"] == {"created_by": "system"}
    assert fetched["description"] == "A helpful agent" and fetched["config"] == {}
    assert found == [fetched]
