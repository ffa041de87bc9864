"""``to_jsonable``: every value a graph may hold, as langgraph-api's encoder writes it."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import decimal
import uuid
from typing import Any

import orjson
import pydantic
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langgraph.types import Interrupt

from agent_runtime.protocol.sse import json_dumpb, to_jsonable


@dataclasses.dataclass
class Point:
    x: int
    _hidden: int = 0


class Reply(pydantic.BaseModel):
    answer: str


Pair = collections.namedtuple("Pair", "left right")


def rich_sample() -> dict[Any, Any]:
    return {
        "messages": [
            HumanMessage("hi", id="h"),
            AIMessage("", id="a", tool_calls=[{"name": "calc", "args": {"x": 1}, "id": "c1"}]),
            ToolMessage("2", tool_call_id="c1", id="t"),
            AIMessageChunk("par", id="k"),
        ],
        "interrupts": [
            Interrupt(value={"q": 1}, id="i"),
            Interrupt(value="v", id="j", response_schema=Reply),
        ],
        "when": dt.datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC),
        "day": dt.date(2025, 1, 2),
        "naive": dt.datetime(2025, 1, 2, 3, 4, 5),
        "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "tags": {"only"},
        "pair": Pair(1, 2),
        "tuple": (1, "two"),
        "point": Point(3),
        "error": ValueError("nope"),
        "money": decimal.Decimal("1.50"),
        "count": decimal.Decimal("3"),
        "span": dt.timedelta(seconds=90),
        "raw": b"\x00\x01",
        "nan": float("nan"),
        "nul": "a\x00b",
        "opaque": object(),
        1: "int key",
        None: "none key",
    }


def test_to_jsonable_matches_the_encoder() -> None:
    sample = rich_sample()
    assert to_jsonable(sample) == orjson.loads(json_dumpb(sample))


def test_to_jsonable_shapes() -> None:
    out = to_jsonable(rich_sample())
    human, ai, tool, chunk = out["messages"]
    sample_messages = rich_sample()["messages"]
    assert [human, ai, tool, chunk] == [to_jsonable(m.model_dump()) for m in sample_messages]
    assert set(human) == {"content", "additional_kwargs", "response_metadata", "type", "name", "id"}
    assert ai["tool_calls"] == [{"name": "calc", "args": {"x": 1}, "id": "c1", "type": "tool_call"}]
    assert (tool["type"], tool["tool_call_id"], chunk["type"]) == ("tool", "c1", "AIMessageChunk")
    plain, typed = out["interrupts"]
    assert plain == {"value": {"q": 1}, "id": "i", "response_schema": None}
    assert typed["response_schema"] == Reply.model_json_schema()
    when = rich_sample()["when"]
    assert out["when"] == orjson.loads(orjson.dumps(when)) == "2025-01-02T03:04:05.000006+00:00"
    assert (out["day"], out["naive"]) == ("2025-01-02", "2025-01-02T03:04:05")
    assert out["id"] == "12345678-1234-5678-1234-567812345678"
    assert (out["tags"], out["pair"], out["tuple"], out["point"]) == (
        ["only"],
        {"left": 1, "right": 2},
        [1, "two"],
        {"x": 3},
    )
    assert out["error"] == {"error": "ValueError", "message": "nope"}
    assert (out["money"], out["count"], out["span"]) == (1.5, 3, 90.0)
    assert (out["raw"], out["nan"], out["nul"], out["opaque"]) == ("AAE=", None, "ab", None)
    assert (out["1"], out["null"]) == ("int key", "none key")
