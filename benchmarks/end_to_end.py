"""End to end (issue 7, figure 2): TASKS tasks submitted in batches of 100 and processed by 8 agents.

One real `ains serve` per run on a fresh database. The client has a webhook for
`task.completed` on a receiver in this process, so every completion writes its
outbox event in the completing transaction; trust records are always on. Eight
agents (SDK clients, one asyncio loop each) claim up to 50 tasks at a time,
started at once (`"start": true`, long poll 1 s), and report them with one
`complete-batch` call per claim. A ninth loop submits the tasks, 4 batches in
flight. tasks/s = TASKS / (first submission → last completion); each run also
prints when the last submission was answered. Afterwards the
rate at which the outbox then delivers the backlog is watched for 30 s.

    .venv/bin/python benchmarks/end_to_end.py [--backend postgres] [--runs 3] [--tasks 20000]
"""

from __future__ import annotations

import asyncio
import time

import common
from webhook_latency import Arrivals

from ains.client import AsyncAINSClient
from ains.identity import Identity

AGENTS = 8
CAPABILITY = "bench:v1"
BODY = {"task_type": "bench", "capability_required": CAPABILITY, "input_data": {"n": 1}}
DRAIN_WATCH_SECONDS = 30


async def agent_loop(url: str, number: int, done: list[int], total: int, ready: Ready) -> None:
    agent_id = f"bench_agent_{number}"
    async with AsyncAINSClient(url) as anonymous:
        key = (await anonymous.register_agent(agent_id, Identity.generate(), [CAPABILITY], max_concurrency=100)).api_key
    async with AsyncAINSClient(url, key, timeout=60) as agent:
        ready.set_one()
        while done[0] < total:
            claimed = (await agent.claim_tasks(agent_id, max_tasks=50, wait_seconds=1, start=True)).tasks
            if claimed:
                items = [{"task_id": t.task_id, "attempt": t.attempt} for t in claimed]
                results = (await agent.complete_tasks(items)).results
                done[0] += sum(r.status == "COMPLETED" for r in results)


class Ready:
    """Counts agents registered, so the clock starts with every agent polling."""

    def __init__(self, expected: int) -> None:
        self.expected, self.count, self.event = expected, 0, asyncio.Event()

    def set_one(self) -> None:
        self.count += 1
        if self.count == self.expected:
            self.event.set()


async def run_once(
    database_url: str, tasks: int, drain_watch_seconds: float = DRAIN_WATCH_SECONDS
) -> tuple[float, float]:
    ready = Ready(AGENTS)
    receiver = Arrivals()
    with common.server(database_url, {"AINS_WEBHOOK_ALLOW_PRIVATE": "true"}) as server:
        async with AsyncAINSClient(server.url, common.ADMIN_KEY) as admin:
            key = (await admin.create_key("bench_client", "end to end")).api_key
        async with AsyncAINSClient(server.url, key, timeout=60) as client:
            await client.create_webhook("bench_client", receiver.url, ["task.completed"])
            done = [0]
            agents = [asyncio.create_task(agent_loop(server.url, n, done, tasks, ready)) for n in range(AGENTS)]
            await ready.event.wait()
            started = time.perf_counter()
            semaphore = asyncio.Semaphore(4)

            async def submit_batch() -> None:
                async with semaphore:
                    result = await client.submit_batch([BODY] * 100)
                    assert not result.failed, result.failed

            await asyncio.gather(*(submit_batch() for _ in range(tasks // 100)))
            submitted_after = time.perf_counter() - started
            await asyncio.gather(*agents)
            elapsed = time.perf_counter() - started
            delivered_by_then = len(receiver.items)
            await asyncio.sleep(drain_watch_seconds)
            drain_rate = (len(receiver.items) - delivered_by_then) / drain_watch_seconds if drain_watch_seconds else 0.0
            print(
                f"run: {tasks / elapsed:,.0f} tasks/s (all submitted after {submitted_after:.1f} s, all done after "
                f"{elapsed:.1f} s); {delivered_by_then:,} of {tasks:,} task.completed deliveries "
                f"made by the last completion, then {drain_rate:,.0f}/s",
                flush=True,
            )
    receiver.server.shutdown()
    return tasks / elapsed, drain_rate


def main() -> None:
    args = common.arguments(__doc__.splitlines()[0], tasks=(int, 20_000))
    results = []
    for _ in range(args.runs):
        with common.database(args.backend) as url:
            results.append(asyncio.run(run_once(url, args.tasks)))
    print(
        f"end to end, {args.backend}, {args.tasks:,} tasks, {AGENTS} agents, {args.runs} runs: "
        f"{common.spread([r[0] for r in results])} tasks/s; "
        f"webhook deliveries {common.spread([r[1] for r in results])}/s (one webhook, after the last completion)"
    )


if __name__ == "__main__":
    main()
