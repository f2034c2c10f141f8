"""Claim latency against queue depth (issue 7, figure 5): p50/p99 with 1,000, 100,000 and 1,000,000 tasks queued.

PostgreSQL only (a scratch database per depth). The queue is seeded with one
SQL statement (priorities 1–10, one capability), then for each run a real
`ains serve` starts and one agent makes CLAIMS claims of one task (started at
once), each timed from request to answer and completed, untimed, before the
next, so the depth stays where it was seeded. The server's peak resident memory
(VmHWM) is read at the end of each run. Prints the median (min–max) of each
figure over the runs, and the plan of the claim's picking query at the deepest
queue (EXPLAIN ANALYZE).

    .venv/bin/python benchmarks/claim_depth.py [--runs 3] [--claims 300] [--depths 1000,100000,1000000]
"""

from __future__ import annotations

import asyncio
import statistics
import time

import common

from ains.client import AsyncAINSClient
from ains.identity import Identity

CAPABILITY = "bench:v1"
AGING_SECONDS = 60  # the default aging_interval_seconds, which queue_position is built with

SEED = f"""
INSERT INTO tasks (task_id, client_id, task_type, capability_required, input_data, priority, max_retries,
                   retry_policy, retry_jitter, timeout_seconds, metadata, status, attempt, retry_count,
                   created_at, updated_at, available_at, queue_position)
SELECT 'task_seed_' || g, 'bench_client', 'bench', '{CAPABILITY}', '{{}}', p, 3, 'exponential', true, 300, '{{}}',
       'PENDING', 0, 0, t, t, t, extract(epoch FROM t) - p * {AGING_SECONDS}
FROM generate_series(1, $DEPTH) AS g,
     LATERAL (SELECT 1 + g % 10 AS p, now() - interval '2 hours' + g * interval '1 millisecond' AS t) AS s
"""

EXPLAIN = f"""
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT head.task_id FROM unnest(ARRAY['{CAPABILITY}']) AS wanted_capability(capability)
CROSS JOIN LATERAL (SELECT task_id, queue_position FROM tasks
    WHERE status = 'PENDING' AND capability_required = wanted_capability.capability AND available_at <= now()
      AND (min_trust_score IS NULL OR min_trust_score <= 0.5)
    ORDER BY queue_position, task_id LIMIT 50 FOR UPDATE SKIP LOCKED) AS head
ORDER BY head.queue_position, head.task_id LIMIT 50
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(url: str, claims: int, agent_number: int) -> tuple[float, float]:
    async with AsyncAINSClient(url) as anonymous:
        agent_id = f"bench_agent_{agent_number}"
        registered = await anonymous.register_agent(agent_id, Identity.generate(), [CAPABILITY], max_concurrency=10)
    async with AsyncAINSClient(url, registered.api_key) as agent:
        timings = []
        for _ in range(claims):
            started = time.perf_counter()
            (task,) = (await agent.claim_tasks(agent_id, max_tasks=1, start=True)).tasks
            timings.append((time.perf_counter() - started) * 1000)
            await agent.complete_task(task.task_id, attempt=task.attempt)
    return percentile(timings, 0.5), percentile(timings, 0.99)


def main() -> None:
    args = common.arguments(__doc__.splitlines()[0], claims=(int, 300), depths=(str, "1000,100000,1000000"))
    rows = []
    plan = ""
    for depth in (int(d) for d in args.depths.split(",")):
        with common.scratch_postgres() as database_url:
            seeded = False
            p50s, p99s, memory = [], [], []
            for run in range(args.runs):
                with common.server(database_url) as server:
                    if not seeded:  # the server has created the schema
                        started = time.perf_counter()
                        asyncio.run(
                            common.postgres_execute(database_url, SEED.replace("$DEPTH", str(depth)), "ANALYZE tasks")
                        )
                        print(f"seeded {depth:,} tasks in {time.perf_counter() - started:.0f} s", flush=True)
                        seeded = True
                    p50, p99 = asyncio.run(measure(server.url, args.claims, run))
                    p50s.append(p50)
                    p99s.append(p99)
                    memory.append(common.peak_memory_mib(server.process.pid))
            plan = "\n".join(r[0] for r in asyncio.run(common.postgres_execute(database_url, EXPLAIN)))
        rows.append((depth, p50s, p99s, memory))
        print(
            f"{depth:,} queued: p50 {common.spread(p50s, '{:.1f} ms'.format)}, "
            f"p99 {common.spread(p99s, '{:.1f} ms'.format)}, "
            f"server peak memory {common.spread(memory, '{:.0f} MiB'.format)}",
            flush=True,
        )
    shallow, deep = rows[0], rows[-1]
    print(
        f"p99 at {deep[0]:,} / p99 at {shallow[0]:,}: {statistics.median(deep[2]) / statistics.median(shallow[2]):.2f}×"
    )
    print(f"plan of the picking query at {deep[0]:,} queued:\n{plan}")


if __name__ == "__main__":
    main()
