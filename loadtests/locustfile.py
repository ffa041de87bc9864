"""Locust users for the agent runtime: each one holds a thread and keeps talking to it.

Run through ``loadtests/loadtest.py`` (which checks the stack and summarises), or directly:
``locust -f loadtests/locustfile.py --host http://127.0.0.1:8000``. Locust monkey-patches the
standard library with gevent, so this file is never imported by pytest nor next to Ray.

Environment:
  AGENT_API_KEY                    key sent as ``x-api-key``; default: the dev key that
                                   ``make run`` writes to ``$AGENT_DATA_DIR/dev-api-key``
  AGENT_LOADTEST_ASSISTANT         assistant_id of each run (default ``multi_agent``)
  AGENT_LOADTEST_WAIT_MIN_S/MAX_S  think time between messages (default 0.1 .. 0.5 s)
  AGENT_LOADTEST_TURNS_PER_THREAD  messages before a user starts a new thread (default 10)
  AGENT_LOADTEST_TIMEOUT_S         per-request timeout (default 120 s)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from locust import HttpUser, between, task
from locust.clients import ResponseContextManager

RUN_ROUTE = "/threads/{thread_id}/runs/wait"

# Deterministic prompts, one per kind of work the multi-agent graph routes.
MESSAGES = (
    "Write a Python function that returns the n-th Fibonacci number iteratively.",
    "Analyse these quarterly sales figures and describe the trend: 120, 135, 160, 152.",
    "In two sentences, what is the difference between a process and a thread?",
)


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


def resolve_api_key() -> str:
    """AGENT_API_KEY, else the dev key file written by ``make run``."""
    key = os.environ.get("AGENT_API_KEY", "").strip()
    if key:
        return key
    key_file = Path(os.environ.get("AGENT_DATA_DIR", ".agent-data")) / "dev-api-key"
    if key_file.is_file():
        return key_file.read_text().strip()
    raise RuntimeError(
        f"no API key: set AGENT_API_KEY or start the stack with `make run` (writes {key_file})"
    )


def is_answer(body: Any) -> bool:
    """A final state whose last message is not the user's own: the graph answered."""
    if not isinstance(body, dict):
        return False
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not isinstance(messages[-1], dict):
        return False
    last = messages[-1]
    from_user = last.get("type") in ("human", "user") or last.get("role") in ("human", "user")
    return not from_user and bool(last.get("content"))


class AgentUser(HttpUser):
    """Creates a thread, then sends messages to it one after another."""

    wait_time = between(
        _env_float("AGENT_LOADTEST_WAIT_MIN_S", 0.1), _env_float("AGENT_LOADTEST_WAIT_MAX_S", 0.5)
    )

    def on_start(self) -> None:
        self.headers = {"x-api-key": resolve_api_key()}
        self.assistant_id = os.environ.get("AGENT_LOADTEST_ASSISTANT", "multi_agent")
        self.turns_per_thread = int(_env_float("AGENT_LOADTEST_TURNS_PER_THREAD", 10))
        self.timeout_s = _env_float("AGENT_LOADTEST_TIMEOUT_S", 120.0)
        self.sent = 0
        self.turns = 0
        self.thread_id: str | None = None
        self._new_thread()

    def _new_thread(self) -> None:
        self.thread_id = None
        with self.client.post(
            "/threads",
            json={"metadata": {"source": "loadtest"}},
            headers=self.headers,
            timeout=self.timeout_s,
            catch_response=True,
        ) as response:
            body = _json_or_none(response) if response.ok else None
            thread_id = body.get("thread_id") if isinstance(body, dict) else None
            if not isinstance(thread_id, str) or not thread_id:
                response.failure(_describe(response))
                return
            self.thread_id = thread_id
            self.turns = 0

    @task
    def send_message(self) -> None:
        if self.thread_id is None or self.turns >= self.turns_per_thread:
            self._new_thread()
            if self.thread_id is None:
                return
        content = MESSAGES[self.sent % len(MESSAGES)]
        self.sent += 1
        self.turns += 1
        payload = {
            "assistant_id": self.assistant_id,
            "input": {"messages": [{"role": "user", "content": content}]},
        }
        with self.client.post(
            f"/threads/{self.thread_id}/runs/wait",
            json=payload,
            headers=self.headers,
            timeout=self.timeout_s,
            name=RUN_ROUTE,
            catch_response=True,
        ) as response:
            if not response.ok or not is_answer(_json_or_none(response)):
                response.failure(_describe(response))


def _json_or_none(response: ResponseContextManager) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _describe(response: ResponseContextManager) -> str:
    """Short failure text; Locust groups failures by it, so keep it free of ids."""
    if response.error is not None and not response.status_code:
        return f"request error: {type(response.error).__name__}"
    return f"HTTP {response.status_code}: {response.text[:200]}"
