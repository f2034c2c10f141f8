"""Webhook throughput: deliveries per second to one local receiver through one dispatcher (target ≥ 1,000/s).

Per run: a server without background duties fills the outbox (N tasks in
batches of 100, one webhook hearing `task.created`, so N deliveries of N
different tasks), then stops; one `ains worker` (a single dispatcher, default
settings: 16 in flight per webhook) drains the backlog into a receiver on
127.0.0.1. The figure is deliveries from the first arrival to the last. The
receiver is a minimal asyncio HTTP/1.1 server with keep-alive in this process,
so it costs little next to the dispatcher; on a shared machine figures are noisy.

    cd benchmarks && ../.venv/bin/python webhook_throughput.py [--backend postgres] [--runs 3] [--deliveries 5000]
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time

import httpx
from common import ADMIN, ADMIN_KEY, arguments, database, spread

from ains.testing import ServerProcess, WorkerProcess


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Receiver:
    """Answers every POST with 200 at once and notes when each event arrived."""

    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}
        self.requests = 0
        self.most_connections = 0
        self._connections = 0
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/hook"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections += 1
        self._writers.add(writer)
        self.most_connections = max(self.most_connections, self._connections)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                self.requests += 1
                self.arrivals.setdefault(json.loads(body)["event_id"], time.monotonic())
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._connections -= 1
            self._writers.discard(writer)
            writer.close()

    async def wait(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.arrivals) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        self.server.close()
        for writer in list(self._writers):
            writer.close()
        await asyncio.sleep(0.1)  # the handlers see their connections end


async def fill_outbox(url: str, receiver_url: str, deliveries: int) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        key = (await http.post("/ains/api-keys", json={"client_id": "bench", "name": "b"}, headers=ADMIN)).json()
        owner = {"Authorization": f"Bearer {key['api_key']}"}
        hook = {"url": receiver_url, "events": ["task.created"]}
        assert (await http.post("/ains/clients/bench/webhooks", json=hook, headers=owner)).status_code == 201
        task = {"task_type": "t", "capability_required": "data:v1", "input_data": {}}
        for start in range(0, deliveries, 100):
            batch = {"tasks": [task] * min(100, deliveries - start)}
            assert (await http.post("/ains/tasks/batch", json=batch, headers=owner)).status_code == 200


async def one_run(url: str, deliveries: int) -> float:
    receiver = Receiver()
    receiver_url = await receiver.start()
    with tempfile.TemporaryDirectory(prefix="ains-bench-") as data_dir:
        env = {
            "AINS_ADMIN_KEY": ADMIN_KEY,
            "AINS_DATA_DIR": data_dir,
            "AINS_DATABASE_URL": url,
            "AINS_WEBHOOK_ALLOW_PRIVATE": "true",
            "AINS_RUN_BACKGROUND": "false",
        }
        filler = ServerProcess(env)
        try:
            await fill_outbox(filler.url, receiver_url, deliveries)
        finally:
            filler.stop()
        worker = await asyncio.to_thread(WorkerProcess, env | {"AINS_RUN_BACKGROUND": "true"})
        try:
            cpu_before = cpu_seconds(worker.process.pid)
            await receiver.wait(deliveries, timeout=600)
            cpu = cpu_seconds(worker.process.pid) - cpu_before
        finally:
            worker.stop()
    await receiver.close()
    times = sorted(receiver.arrivals.values())
    assert len(times) == deliveries, f"{len(times)} of {deliveries} arrived"
    rate = (len(times) - 1) / (times[-1] - times[0])
    print(
        f"  {deliveries} deliveries in {times[-1] - times[0]:.2f} s = {rate:,.0f}/s "
        f"({receiver.requests} requests, {receiver.most_connections} connections at most); "
        f"dispatcher CPU {cpu * 1000 / deliveries:.2f} ms per delivery = {deliveries / cpu:,.0f} per CPU second"
    )
    return rate


def main() -> None:
    args = arguments(__doc__.splitlines()[0], deliveries=(int, 5000))
    rates = []
    for _ in range(args.runs):
        with database(args.backend) as url:  # a fresh database per run
            rates.append(asyncio.run(one_run(url, args.deliveries)))
    print(f"webhook deliveries/s, one dispatcher, one webhook, {args.backend}: {spread(rates)}")


if __name__ == "__main__":
    main()
