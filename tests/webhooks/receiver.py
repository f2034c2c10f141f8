"""A real HTTP receiver on 127.0.0.1 for webhook tests: records every request, answers from a script (or per
payload), can hold answers back on a gate, and counts how many requests it is answering at once."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    gate: threading.Event | None = None  # answer only once this is set


class Receiver:
    """Answers requests with `by_payload(payload)` if it gives an answer, else in order from `script`, then
    with `default`; `requests` records them all, `answered` those that got a 2xx answer."""

    def __init__(
        self,
        script: list[Answer] | None = None,
        default: Answer | None = None,
        by_payload: Callable[[dict[str, Any]], Answer | None] | None = None,
    ) -> None:
        self.script = list(script or [])
        self.default = default or Answer()
        self.by_payload = by_payload
        self.requests: list[Received] = []
        self.answered: list[Received] = []
        self.finished = 0  # requests fully answered
        self.in_progress = 0  # requests being answered now
        self.most_at_once = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                received = Received(self.path, dict(self.headers.items()), body, time.time())
                answer = receiver.by_payload(received.payload) if receiver.by_payload else None
                with receiver._lock:
                    receiver.requests.append(received)
                    if answer is None:
                        answer = receiver.script.pop(0) if receiver.script else receiver.default
                    receiver.in_progress += 1
                    receiver.most_at_once = max(receiver.most_at_once, receiver.in_progress)
                if answer.gate is not None:
                    answer.gate.wait(60)
                if answer.delay:
                    time.sleep(answer.delay)
                with receiver._lock:
                    # Before answering: once the answer is out, the sender may rightly send the next one.
                    receiver.in_progress -= 1
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header("content-length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the client gave up (timeout)
                with receiver._lock:
                    receiver.finished += 1
                    if 200 <= answer.status < 300:
                        receiver.answered.append(received)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def events(self) -> list[str]:
        return [r.payload["event"] for r in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
