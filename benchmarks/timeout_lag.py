"""Timeout detection lag: how long after `started_at + timeout_seconds` a task is marked FAILED.

Starts a real `ains serve` with the default `timeout_check_seconds` (5; override
with AINS_TIMEOUT_CHECK_SECONDS), starts N tasks with `timeout_seconds: 1` at
staggered moments, and reads each task's lag from its attempt history
(`finished_at − started_at − 1 s`). Database: SQLite in a temporary directory,
or AINS_DATABASE_URL.

    .venv/bin/python benchmarks/timeout_lag.py [N] [--worker]

With --worker the server runs no duties (AINS_RUN_BACKGROUND=false) and a separate
`ains worker` does: it hears of no deadline set by the server, so its lag is
bounded by `timeout_check_seconds` alone.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import sys
import tempfile
import uuid
from datetime import datetime

import httpx

from ains.identity import Identity
from ains.testing import ServerProcess, WorkerProcess

ADMIN_KEY = "ains_admin_benchmark-key-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


async def main(count: int, separate_worker: bool) -> None:
    data_dir = tempfile.mkdtemp(prefix="ains-bench-")
    env = {"AINS_ADMIN_KEY": ADMIN_KEY, "AINS_DATA_DIR": data_dir}
    server = ServerProcess(env | ({"AINS_RUN_BACKGROUND": "false"} if separate_worker else {}))
    worker = WorkerProcess(env) if separate_worker else None
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            run = uuid.uuid4().hex[:8]  # a scratch database may hold earlier runs
            agent_id = f"bench_agent_{run}"
            client = {"client_id": f"bench_{run}", "name": "b"}
            key = (await http.post("/ains/api-keys", json=client, headers=ADMIN)).json()
            owner = {"Authorization": f"Bearer {key['api_key']}"}
            body = Identity.generate().registration(agent_id) | {
                "capabilities": ["data:v1"],
                "max_concurrency": 1000,
            }
            agent = {"Authorization": f"Bearer {(await http.post('/ains/agents', json=body)).json()['api_key']}"}
            task_ids = []
            rng = random.Random(1)
            for _ in range(count):
                submitted = await http.post(
                    "/ains/tasks",
                    json={"task_type": "t", "capability_required": "data:v1", "timeout_seconds": 1, "max_retries": 0},
                    headers=owner,
                )
                task_ids.append(submitted.json()["task_id"])
                await http.post(f"/ains/agents/{agent_id}/tasks/claim", json={"start": True}, headers=agent)
                # Spread the deadlines over the check interval so the figure is not one lucky phase.
                await asyncio.sleep(rng.uniform(0, 0.2))
            lags: list[float] = []
            while len(lags) < count:
                await asyncio.sleep(1)
                lags = []
                for task_id in task_ids:
                    history = (await http.get(f"/ains/tasks/{task_id}/attempts", headers=owner)).json()["attempts"]
                    attempt = history[0]
                    if attempt["outcome"] == "timeout":
                        lags.append((parse(attempt["finished_at"]) - parse(attempt["started_at"])).total_seconds() - 1)
        check = os.environ.get("AINS_TIMEOUT_CHECK_SECONDS", "5 (default)")
        print(f"timeout_check_seconds={check} tasks={count} duties={'worker' if separate_worker else 'in server'}")
        print(f"lag median={statistics.median(lags):.3f}s max={max(lags):.3f}s min={min(lags):.3f}s")
    finally:
        server.stop()
        if worker:
            worker.stop()


if __name__ == "__main__":
    numbers = [a for a in sys.argv[1:] if a.isdigit()]
    asyncio.run(main(int(numbers[0]) if numbers else 50, "--worker" in sys.argv))
