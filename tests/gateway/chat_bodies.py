"""Chat Completions request bodies and SSE decoding shared by the OpenAI-compat tests."""

from __future__ import annotations

import json
from typing import Any

from agent_runtime.gateway.openai_compat import ChatCompletionRequest

CREATED = 1_700_000_000
MISSING = object()  # a field left out of the body


def body(**fields: Any) -> ChatCompletionRequest:
    fields.setdefault("model", "fast")
    fields.setdefault("messages", [{"role": "user", "content": "hello"}])
    return ChatCompletionRequest.model_validate(
        {name: value for name, value in fields.items() if value is not MISSING}
    )


def decode(events: list[bytes]) -> list[Any]:
    out: list[Any] = []
    for event in events:
        assert event.startswith(b"data: ") and event.endswith(b"\n\n")
        data = event[len(b"data: ") : -2]
        out.append("[DONE]" if data == b"[DONE]" else json.loads(data))
    return out
