"""`GET /ains/agents/{id}` with the cache on and off: p50/p99 latency and database reads per 1,000 requests
(issue 7, figure 4).

Starts a real `ains serve` twice (cache on: the default in-process cache, or Redis
with AINS_REDIS_URL; cache off: both TTLs 0), registers 20 agents, then sends
REQUESTS reads spread over them from 8 concurrent loops. Database reads are the
server's own count of SELECT statements (`ains_db_statements_total{kind="read"}`),
which includes the key lookup of none here (the endpoint is public). Each figure
is the median of RUNS runs with min and max.

    .venv/bin/python benchmarks/agent_reads.py [REQUESTS] [RUNS]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time

import httpx

from ains.identity import Identity
from ains.testing import ServerProcess

ADMIN_KEY = "ains_admin_benchmark-key-0123456789"


def reads(metrics: str) -> float:
    for line in metrics.splitlines():
        if line.startswith('ains_db_statements_total{kind="read"}'):
            return float(line.split()[-1])
    return 0.0


async def run_once(cache_on: bool, requests: int) -> tuple[float, float, float]:
    env = {"AINS_ADMIN_KEY": ADMIN_KEY, "AINS_DATA_DIR": tempfile.mkdtemp()}
    if not cache_on:
        env |= {"AINS_AGENT_CACHE_TTL_SECONDS": "0", "AINS_TASK_CACHE_TTL_SECONDS": "0", "AINS_REDIS_URL": ""}
    server = ServerProcess(env)
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            ids = []
            for n in range(20):
                agent_id = f"reader_{n}"
                body = Identity.generate().registration(agent_id) | {"capabilities": ["data:v1"]}
                assert (await http.post("/ains/agents", json=body)).status_code == 201
                ids.append(agent_id)
            before = reads((await http.get("/metrics", headers=admin)).text)
            latencies: list[float] = []

            async def loop(offset: int) -> None:
                for i in range(offset, requests, 8):
                    started = time.perf_counter()
                    response = await http.get(f"/ains/agents/{ids[i % len(ids)]}")
                    latencies.append(time.perf_counter() - started)
                    assert response.status_code == 200

            await asyncio.gather(*(loop(o) for o in range(8)))
            # The /metrics call itself reads the database a few times; measured once and taken off.
            after = reads((await http.get("/metrics", headers=admin)).text)
            scrape = reads((await http.get("/metrics", headers=admin)).text) - after
        latencies.sort()
        per_thousand = (after - before - scrape) * 1000 / requests
        return latencies[len(latencies) // 2] * 1000, latencies[int(len(latencies) * 0.99)] * 1000, per_thousand
    finally:
        server.stop()


def describe(values: list[float], unit: str) -> str:
    return f"{statistics.median(values):.2f}{unit} ({min(values):.2f}–{max(values):.2f})"


async def main(requests: int, runs: int) -> None:
    for cache_on in (True, False):
        results = [await run_once(cache_on, requests) for _ in range(runs)]
        p50, p99, db = ([r[i] for r in results] for i in range(3))
        print(
            f"cache {'on ' if cache_on else 'off'}: p50 {describe(p50, ' ms')}, p99 {describe(p99, ' ms')}, "
            f"database reads per 1,000 requests {describe(db, '')}"
        )


if __name__ == "__main__":
    numbers = [int(a) for a in sys.argv[1:] if a.isdigit()]
    asyncio.run(main(numbers[0] if numbers else 5000, numbers[1] if len(numbers) > 1 else 3))
