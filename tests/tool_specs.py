"""The calculator tool as OpenAI's wire format writes it: the tool the fake provider's model
calls for arithmetic, shared by the gateway, API and fake-provider tests."""

from __future__ import annotations

from typing import Any

CALCULATOR: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "calculator",
        "description": "Evaluate an arithmetic expression.",
        "parameters": {
            "type": "object",
            "properties": {"expression": {"type": "string"}},
            "required": ["expression"],
        },
    },
}
