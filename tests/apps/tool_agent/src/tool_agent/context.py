"""What a run may choose (LangGraph's Runtime context)."""

from dataclasses import dataclass


@dataclass(kw_only=True)
class Context:
    model: str = "fake-fast"
    system_prompt: str = "You are a helpful assistant."
