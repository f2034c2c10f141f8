"""The framework's share of a request: a cached `GET /ains/tasks/{id}` through the app alone, beside the minimal app.

No server and no socket: each app is called as an ASGI callable, in a loop, after its
lifespan has started, and the figure is this process's CPU time per request
(`time.process_time`), for AINS on a scratch PostgreSQL database (the key cache on,
rate limits out of the way) and for `minimal_app.py`. Rounds agree to about a
microsecond, so a change to routing, dependencies or logging can be measured on its
own, where `http_overhead.py` (wrk, uvicorn, the database) varies by more than
the change. Log lines go to /dev/null, in the JSON format `ains serve` writes.

    cd benchmarks && ../.venv/bin/python asgi_read.py [--requests 5000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import minimal_app
from common import ADMIN, ADMIN_KEY, scratch_postgres

from ains.core.config import Settings
from ains.core.logging import configure_logging
from ains.main import create_app

NO_RATE_LIMIT = {"rate_limit_per_second": 1_000_000, "rate_limit_burst": 1_000_000}
TASK = {"task_type": "noop", "capability_required": "bench:noop", "input_data": {"n": 1}}


async def cpu_per_request(app: Any, path: str, key: str, requests: int) -> float:
    """Microseconds of CPU per `GET path` through `app`, after a warm-up; every answer must be 200."""
    headers = [(b"host", b"bench"), (b"authorization", f"Bearer {key}".encode())]
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    def scope() -> dict[str, Any]:
        return {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
        }

    for _ in range(200):
        await app(scope(), receive, send)
    statuses.clear()
    started = time.process_time()
    for _ in range(requests):
        await app(scope(), receive, send)
    elapsed = time.process_time() - started
    if set(statuses) != {200}:
        raise SystemExit(f"{path}: answers other than 200: {sorted(set(statuses))}")
    return elapsed / requests * 1e6


async def ains_rounds(url: str, requests: int, rounds: int) -> list[float]:
    settings = Settings(
        database_url=url, data_dir=Path(tempfile.mkdtemp()), admin_key=ADMIN_KEY, auto_migrate=True, **NO_RATE_LIMIT
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as http:
            created = await http.post("/ains/api-keys", json={"client_id": "bench_client", "name": "b"}, headers=ADMIN)
            key = created.json()["api_key"]
            submitted = await http.post("/ains/tasks", json=TASK, headers={"Authorization": f"Bearer {key}"})
            task_id = submitted.json()["task_id"]
        await asyncio.sleep(0.5)  # the wake-up link up, so verified keys and tasks are cached
        return [await cpu_per_request(app, f"/ains/tasks/{task_id}", key, requests) for _ in range(rounds)]


async def minimal_rounds(requests: int, rounds: int) -> list[float]:
    app = minimal_app.app
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as http:
        submitted = await http.post("/ains/tasks", json=TASK, headers={"Authorization": "Bearer any"})
        task_id = submitted.json()["task_id"]
    return [await cpu_per_request(app, f"/ains/tasks/{task_id}", "any", requests) for _ in range(rounds)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    configure_logging("INFO", "json")
    logging.getLogger().handlers[0].setStream(open(os.devnull, "w"))  # noqa: SIM115 (for the process's life)
    with scratch_postgres() as url:
        ains = asyncio.run(ains_rounds(url, args.requests, args.rounds))
    minimal = asyncio.run(minimal_rounds(args.requests, args.rounds))
    print(f"cached GET /ains/tasks/{{id}} through the app alone, {args.requests:,} requests a round, CPU per request:")
    print(f"  AINS:    {' '.join(f'{v:.0f}' for v in ains)} µs (min {min(ains):.1f})")
    print(f"  minimal: {' '.join(f'{v:.0f}' for v in minimal)} µs (min {min(minimal):.1f})")
    print(f"  AINS / minimal (min of each): {min(ains) / min(minimal):.2f}x")


if __name__ == "__main__":
    main()
