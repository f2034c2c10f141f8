"""What the per-key rate limit costs a request, against the time of a claim (target: under 5 %).

Every authenticated request spends one token of its key's bucket: a few
microseconds in the process without Redis, one Redis round trip (one Lua
script, EVALSHA) with it. Each run, on a scratch PostgreSQL database and the
Redis of AINS_BENCH_REDIS_URL (default redis://127.0.0.1:6379/0, under a key
prefix of the run's own, removed afterwards):

1. a real `ains serve` (with that Redis) answers CLAIMS claims of one task
   (started at once) from one agent, each timed from request to answer and
   completed, untimed, before the next (the queue is seeded by batches first);
2. in this process, the limiter the server uses (`ains.auth.ratelimit.RateLimiter`)
   takes CHECKS tokens one after another, from Redis and from the in-process
   bucket, each timed.

Prints the median (min–max) over the runs of: claim p50, check p50 (Redis and
in-process), and check / claim.

    .venv/bin/python benchmarks/rate_limit_cost.py [--runs 3] [--claims 200] [--checks 5000]
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid

import common

from ains.auth.ratelimit import RateLimiter
from ains.client import AsyncAINSClient
from ains.core.config import Settings
from ains.identity import Identity

CAPABILITY = "bench:v1"
REDIS_URL = os.environ.get("AINS_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


async def claim_p50(url: str, claims: int) -> float:
    async with AsyncAINSClient(url, common.ADMIN_KEY) as admin:
        key = await admin.create_key("bench_client", "bench")
    async with AsyncAINSClient(url, key.api_key) as client:
        body = {"task_type": "bench", "capability_required": CAPABILITY, "input_data": {}}
        for _ in range(0, claims, 100):
            await client.submit_batch([body] * 100)
    async with AsyncAINSClient(url) as anonymous:
        agent = await anonymous.register_agent("bench_agent", Identity.generate(), [CAPABILITY], max_concurrency=10)
    timings = []
    async with AsyncAINSClient(url, agent.api_key) as client:
        for _ in range(claims):
            started = time.perf_counter()
            claimed = await client.claim_tasks("bench_agent", max_tasks=1, start=True)
            timings.append(time.perf_counter() - started)
            for task in claimed.tasks:
                await client.complete_task(task.task_id, {}, attempt=task.attempt)
    return statistics.median(timings)


async def check_p50(settings: Settings, checks: int) -> float:
    limiter = RateLimiter(settings)
    try:
        timings = []
        for n in range(checks):
            started = time.perf_counter()
            await limiter.take(f"bench_key_{n % 50}", 1_000_000, 1_000_000)
            timings.append(time.perf_counter() - started)
        return statistics.median(timings)
    finally:
        if limiter.shared:
            keys = [k async for k in limiter._redis.scan_iter(match=f"{settings.redis_prefix}*")]
            if keys:
                await limiter._redis.delete(*keys)
        await limiter.close()


def main() -> None:
    args = common.arguments(__doc__.splitlines()[0], claims=(int, 200), checks=(int, 5000))
    prefix = f"ains_bench_{uuid.uuid4().hex[:8]}:"
    claim, redis_check, local_check = [], [], []
    for run in range(args.runs):
        with common.database("postgres") as database_url:
            env = {"AINS_REDIS_URL": REDIS_URL, "AINS_REDIS_PREFIX": prefix}
            with common.server(database_url, env) as server:
                claim.append(asyncio.run(claim_p50(server.url, args.claims)))
        redis_check.append(asyncio.run(check_p50(Settings(redis_url=REDIS_URL, redis_prefix=prefix), args.checks)))
        local_check.append(asyncio.run(check_p50(Settings(redis_url=None), args.checks)))
        print(
            f"run {run + 1}: claim p50 {claim[-1] * 1000:.2f} ms, check p50 (Redis) {redis_check[-1] * 1000:.3f} ms, "
            f"check p50 (in-process) {local_check[-1] * 1e6:.1f} µs",
            flush=True,
        )
    ratios = [check / claimed for check, claimed in zip(redis_check, claim, strict=True)]
    local_ratios = [check / claimed for check, claimed in zip(local_check, claim, strict=True)]
    print(f"claim of one task, p50: {common.spread([c * 1000 for c in claim], '{:.2f} ms'.format)}")
    print(f"rate limit check with Redis, p50: {common.spread([c * 1000 for c in redis_check], '{:.3f} ms'.format)}")
    print(f"rate limit check in-process, p50: {common.spread([c * 1e6 for c in local_check], '{:.1f} µs'.format)}")
    print(f"check / claim with Redis (target < 5 %): {common.spread([r * 100 for r in ratios], '{:.2f} %'.format)}")
    print(f"check / claim in-process: {common.spread([r * 100 for r in local_ratios], '{:.3f} %'.format)}")


if __name__ == "__main__":
    main()
