"""Submission cost: 5,000 tasks one request each vs 50 batches of 100 (issue 7, figure 1).

Starts a real `ains serve` per run and drives it with the SDK's async client
(16 concurrent requests for singles, 4 concurrent batches), RUNS times each,
and prints tasks/s as median (min–max) and the batch/single ratio.
Database: SQLite in a temporary directory, or AINS_DATABASE_URL (a scratch database).

    .venv/bin/python benchmarks/submit_batch.py [RUNS]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
import uuid

from ains.client import AsyncAINSClient
from ains.testing import ServerProcess

ADMIN_KEY = "ains_admin_benchmark-key-0123456789"
TASKS = 5000
BODY = {"task_type": "bench", "capability_required": "bench:v1", "input_data": {"n": 1}}


async def timed(coroutines, concurrency: int) -> float:
    semaphore = asyncio.Semaphore(concurrency)

    async def one(coroutine):
        async with semaphore:
            await coroutine

    started = time.perf_counter()
    await asyncio.gather(*(one(c) for c in coroutines))
    return time.perf_counter() - started


async def run_once() -> tuple[float, float]:
    server = ServerProcess({"AINS_ADMIN_KEY": ADMIN_KEY, "AINS_DATA_DIR": tempfile.mkdtemp()})
    try:
        async with AsyncAINSClient(server.url, ADMIN_KEY) as admin:
            key = (await admin.create_key(f"bench_{uuid.uuid4().hex[:8]}", "b")).api_key
        async with AsyncAINSClient(server.url, key) as client:
            single = await timed((client.submit_task(**BODY) for _ in range(TASKS)), 16)
            batched = await timed((client.submit_batch([BODY] * 100) for _ in range(TASKS // 100)), 4)
        return TASKS / single, TASKS / batched
    finally:
        server.stop()


def describe(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f}/s ({min(values):,.0f}–{max(values):,.0f})"


async def main(runs: int) -> None:
    results = [await run_once() for _ in range(runs)]
    singles, batches = [r[0] for r in results], [r[1] for r in results]
    ratios = [b / s for s, b in results]
    print(
        f"{TASKS} tasks, {runs} runs: single requests {describe(singles)}, batches of 100 {describe(batches)}, "
        f"ratio {statistics.median(ratios):.1f}× ({min(ratios):.1f}–{max(ratios):.1f})"
    )


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 3))
