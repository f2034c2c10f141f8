"""Dependency graphs: a fan-in of 10,000 steps and a chain of 1,000, time per step, at two sizes each.

Resolving a completed task's dependents reads only its dependents (the index on
`task_dependencies.depends_on_task_id`) and takes their counts down under their row locks, so the time per
step should not grow with the graph. Each shape runs at a small and a large size:

- fan-in: N leaf tasks (batches of 100), N/100 joins each depending on 100 leaves, and one sink depending on
  the joins (`depends_on` holds at most 100 ids, so a fan-in of 10,000 is two levels). Four SDK agents claim
  50 at a time (started) and complete them with one `complete-batch` call. Timed from the first claim to the
  sink's completion; per step = that time / (N + N/100 + 1).
- chain: N tasks, each depending on the one before (submitted in order, one request each). One agent
  long-polls one task at a time and completes it; each completion makes the next one claimable. Timed from
  the first claim to the last completion; per step = that time / N.
- plain: the same number of tasks as the fan-in without dependencies, the same agents: the baseline.

    cd benchmarks && ../.venv/bin/python workflow_graphs.py --backend postgres --runs 3 [--shapes fan-in,plain,chain]
"""

from __future__ import annotations

import asyncio
import time

from common import ADMIN_KEY, arguments, database, server, spread

from ains.client import AsyncAINSClient
from ains.identity import Identity

CAPABILITY = "graph:v1"
AGENTS = 4


async def _clients(url: str) -> tuple[AsyncAINSClient, list[tuple[str, AsyncAINSClient]]]:
    async with AsyncAINSClient(url, ADMIN_KEY) as admin:
        key = (await admin.create_key("bench_client", "workflow graphs")).api_key
    owner = AsyncAINSClient(url, key, timeout=300)
    agents = []
    async with AsyncAINSClient(url) as anonymous:
        for n in range(AGENTS):
            agent_id = f"graph_agent_{n}"
            registered = await anonymous.register_agent(agent_id, Identity.generate(), [CAPABILITY], max_concurrency=50)
            agents.append((agent_id, AsyncAINSClient(url, registered.api_key, timeout=300)))
    return owner, agents


def _task(**extra) -> dict:
    return {"task_type": "step", "capability_required": CAPABILITY, "input_data": {}, "max_retries": 0} | extra


async def _submit_batches(owner: AsyncAINSClient, bodies: list[dict]) -> list[str]:
    ids: list[str] = []
    for start in range(0, len(bodies), 100):
        result = await owner.submit_batch(bodies[start : start + 100], atomic=True)
        assert not result.failed, result.failed
        ids.extend(item.task_id for item in result.submitted)
    return ids


async def _work(agents, total: int) -> float:
    """Agents claim (started) and complete until `total` tasks are done; seconds from the first claim."""
    done = 0
    started = time.perf_counter()

    async def loop(agent_id: str, agent: AsyncAINSClient) -> None:
        nonlocal done
        while done < total:
            claimed = (await agent.claim_tasks(agent_id, max_tasks=50, wait_seconds=1, start=True)).tasks
            if claimed:
                items = [{"task_id": t.task_id, "attempt": t.attempt, "result_data": {"ok": 1}} for t in claimed]
                await agent.complete_tasks(items)
                done += len(claimed)

    await asyncio.gather(*(loop(agent_id, agent) for agent_id, agent in agents))
    return time.perf_counter() - started


async def fan_in(url: str, leaves: int) -> tuple[float, int]:
    owner, agents = await _clients(url)
    try:
        leaf_ids = await _submit_batches(owner, [_task() for _ in range(leaves)])
        joins = [_task(depends_on=leaf_ids[start : start + 100]) for start in range(0, leaves, 100)]
        join_ids = await _submit_batches(owner, joins)
        sink = await owner.submit_task(**_task(depends_on=join_ids))
        total = leaves + len(join_ids) + 1
        seconds = await _work(agents, total)
        assert (await owner.get_task(sink.task_id)).status == "COMPLETED"
        return seconds, total
    finally:
        await owner.aclose()
        for _, agent in agents:
            await agent.aclose()


async def plain(url: str, count: int) -> tuple[float, int]:
    owner, agents = await _clients(url)
    try:
        await _submit_batches(owner, [_task() for _ in range(count)])
        return await _work(agents, count), count
    finally:
        await owner.aclose()
        for _, agent in agents:
            await agent.aclose()


async def chain(url: str, length: int) -> tuple[float, int]:
    owner, agents = await _clients(url)
    agent_id, agent = agents[0]
    try:
        previous = None
        ids = []
        for _ in range(length):
            task = await owner.submit_task(**_task(depends_on=[previous] if previous else []))
            ids.append(task.task_id)
            previous = task.task_id
        started = time.perf_counter()
        for expected in ids:
            (task,) = (await agent.claim_tasks(agent_id, max_tasks=1, wait_seconds=10, start=True)).tasks
            assert task.task_id == expected
            await agent.complete_task(task.task_id, {"ok": 1}, attempt=task.attempt)
        return time.perf_counter() - started, length
    finally:
        await owner.aclose()
        for _, other in agents:
            await other.aclose()


SHAPES = {
    "fan-in": (fan_in, (1_000, 10_000)),
    "plain": (plain, (1_000, 10_000)),  # the same tasks without dependencies
    "chain": (chain, (100, 1_000)),
}


def main() -> None:
    args = arguments(__doc__.splitlines()[0], runs=3, shapes=(str, ",".join(SHAPES)))
    for shape in args.shapes.split(","):
        run, sizes = SHAPES[shape]
        for size in sizes:
            totals, per_step = [], []
            for _ in range(args.runs):
                with database(args.backend) as url, server(url, {"AINS_TIMEOUT_CHECK_SECONDS": "1"}) as process:
                    seconds, steps = asyncio.run(run(process.url, size))
                totals.append(seconds)
                per_step.append(seconds / steps * 1000)
            print(
                f"{args.backend:8} {shape:7} {size:>6,}: {spread(totals, '{:.2f} s'.format)}, "
                f"per step {spread(per_step, '{:.2f} ms'.format)}",
                flush=True,
            )


if __name__ == "__main__":
    main()
