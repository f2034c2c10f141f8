"""Webhook delivery: time from event to delivery on a local receiver, and deliveries per second.

Starts a real `ains serve` (default settings, private targets allowed) and a
receiver on 127.0.0.1 in this process.
1. latency: N tasks submitted one by one (20 ms apart); for each `task.created`
   delivery, arrival time minus the event's `timestamp` (same clock).
2. throughput: 50 webhooks on one client, then M tasks in quick succession:
   M × 50 deliveries through the server's single dispatcher; deliveries per
   second from the first arrival to the last.
Database: SQLite in a temporary directory, or AINS_DATABASE_URL (a scratch database).

    .venv/bin/python benchmarks/webhook_latency.py [N] [M]
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from ains.testing import ServerProcess

ADMIN_KEY = "ains_admin_benchmark-key-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


class Arrivals:
    def __init__(self) -> None:
        self.items: list[tuple[float, dict]] = []
        self.lock = threading.Lock()
        arrivals = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["content-length"]))
                at = time.time()
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()
                with arrivals.lock:
                    arrivals.items.append((at, json.loads(body)))

            def log_message(self, *args) -> None:
                pass

        class Server(ThreadingHTTPServer):
            # The default listen backlog (5) resets connections when a dispatcher opens dozens at once, and the
            # deliveries it failed then wait out the retry schedule: the benchmark measured the receiver.
            request_queue_size = 1024

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    async def wait(self, count: int, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while len(self.items) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.05)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(latency_tasks: int, throughput_tasks: int) -> None:
    env = {"AINS_ADMIN_KEY": ADMIN_KEY, "AINS_DATA_DIR": tempfile.mkdtemp(), "AINS_WEBHOOK_ALLOW_PRIVATE": "true"}
    server = ServerProcess(env)
    receiver = Arrivals()
    run = uuid.uuid4().hex[:8]
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
            client_id = f"bench_{run}"
            key = (await http.post("/ains/api-keys", json={"client_id": client_id, "name": "b"}, headers=ADMIN)).json()
            owner = {"Authorization": f"Bearer {key['api_key']}"}
            task = {"task_type": "t", "capability_required": "data:v1"}
            hook = {"url": receiver.url, "events": ["task.created"]}
            await http.post(f"/ains/clients/{client_id}/webhooks", json=hook, headers=owner)
            for _ in range(latency_tasks):
                await http.post("/ains/tasks", json=task, headers=owner)
                await asyncio.sleep(0.02)
            await receiver.wait(latency_tasks)
            lags = [
                at - datetime.fromisoformat(payload["timestamp"].replace("Z", "+00:00")).timestamp()
                for at, payload in receiver.items
            ]
            print(
                f"event -> delivery over {len(lags)} events: median {statistics.median(lags) * 1000:.1f} ms, "
                f"p99 {percentile(lags, 0.99) * 1000:.1f} ms, max {max(lags) * 1000:.1f} ms"
            )

            for _ in range(49):
                await http.post(f"/ains/clients/{client_id}/webhooks", json=hook, headers=owner)
            receiver.items.clear()
            expected = throughput_tasks * 50
            for _ in range(throughput_tasks):
                await http.post("/ains/tasks", json=task, headers=owner)
            await receiver.wait(expected)
            times = [at for at, _ in receiver.items]
            span = max(times) - min(times)
            print(
                f"throughput: {len(times)} deliveries in {span:.2f} s = {len(times) / span:.0f} deliveries/s "
                "(one dispatcher, 50 webhooks)"
            )
    finally:
        server.stop()
        receiver.server.shutdown()


if __name__ == "__main__":
    numbers = [int(a) for a in sys.argv[1:] if a.isdigit()]
    asyncio.run(main(numbers[0] if numbers else 200, numbers[1] if len(numbers) > 1 else 40))
