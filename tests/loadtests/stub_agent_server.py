"""A stub of the Agent Protocol endpoints the locustfile drives (``POST /threads`` and
``runs/wait``), on a loopback port, for the load-test drivers' tests (Locust as a subprocess)."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class StubState:
    api_key: str
    answer: bool = True  # False: reply with an empty state, which the locustfile must fail
    run_delay_s: float = 0.0  # how long each run takes: the stub's latency, for SLO tests
    lock: threading.Lock = field(default_factory=threading.Lock)
    threads: set[str] = field(default_factory=set)
    runs: int = 0
    contents: set[str] = field(default_factory=set)
    rejected: int = 0


def _handler(state: StubState) -> type[BaseHTTPRequestHandler]:
    run_path = re.compile(r"^/threads/([^/]+)/runs/wait$")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the real proxy offers
        disable_nagle_algorithm = True  # headers and body go out as separate writes

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet test output

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/ok":
                self._reply(200, {"ok": True})
            else:
                self._reply(404, {"detail": "not found"})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
            if self.headers.get("x-api-key") != state.api_key:
                with state.lock:
                    state.rejected += 1
                self._reply(401, {"detail": "bad key"})
                return
            if self.path == "/threads":
                thread_id = str(uuid.uuid4())
                with state.lock:
                    state.threads.add(thread_id)
                self._reply(200, {"thread_id": thread_id, "metadata": body.get("metadata", {})})
                return
            match = run_path.match(self.path)
            if match is None or match.group(1) not in state.threads:
                self._reply(404, {"detail": "no such thread"})
                return
            content = body["input"]["messages"][0]["content"]
            if body.get("assistant_id") != "multi_agent" or not content:
                self._reply(422, {"detail": "bad run request"})
                return
            with state.lock:
                state.runs += 1
                state.contents.add(content)
            time.sleep(state.run_delay_s)  # the run's own duration, as a server would take
            if not state.answer:
                self._reply(200, {"messages": []})
                return
            human = {"type": "human", "content": content}
            self._reply(200, {"messages": [human, {"type": "ai", "content": "Done."}]})

    return Handler


@contextmanager
def serve_stub(state: StubState) -> Iterator[str]:
    """The stub answering from ``state`` until the block ends; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def new_state() -> StubState:
    return StubState(api_key=f"test-key-{uuid.uuid4().hex}")
