"""AINS demo: a server on SQLite, three agents of different reliability, 200 tasks, a leaderboard.

    scripts/demo            (or: .venv/bin/python examples/demo.py)

Everything runs on this machine: the server in its own process (a temporary data
directory), the agents in this one, talking to it over HTTP with the SDK and the
agent runtime.
"""

from __future__ import annotations

import asyncio
import logging
import random
import tempfile
import time
from collections import Counter
from pathlib import Path

from ains.agent import Agent, NonRetryable
from ains.client import AsyncAINSClient
from ains.testing import ServerProcess

TASKS = 200
ADMIN_KEY = "ains_admin_demo-key-not-for-production-0000"
RELIABILITY = {"agent_steady": 0.98, "agent_flaky": 0.8, "agent_shaky": 0.55}


def make_agent(url: str, agent_id: str, success_rate: float, keys: Path) -> Agent:
    agent = Agent(
        url,
        agent_id,
        keys / f"{agent_id}.key",
        ["text:v1"],
        max_concurrency=5,
        display_name=agent_id.replace("agent_", "").title(),
        poll_wait_seconds=2,
    )
    rng = random.Random(agent_id)

    @agent.handler("text:v1")
    async def count_words(input_data: dict) -> dict:
        await asyncio.sleep(rng.uniform(0.01, 0.05))
        roll = rng.random()
        if roll > success_rate:
            if roll > 0.97:
                raise NonRetryable("malformed input")
            raise RuntimeError("upstream model timed out")
        return {"words": len(input_data["text"].split())}

    return agent


async def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    data_dir = Path(tempfile.mkdtemp(prefix="ains-demo-"))
    print(f"starting AINS on SQLite in {data_dir} …")
    server = ServerProcess(
        {
            "AINS_ADMIN_KEY": ADMIN_KEY,
            "AINS_DATA_DIR": str(data_dir),
            "AINS_RETRY_EXPONENTIAL_BASE_SECONDS": "0.2",
        }
    )
    agents = [make_agent(server.url, agent_id, rate, data_dir) for agent_id, rate in RELIABILITY.items()]
    runs = [asyncio.create_task(a.run_async(install_signal_handlers=False)) for a in agents]
    started = time.monotonic()
    try:
        async with AsyncAINSClient(server.url, ADMIN_KEY) as admin:
            key = (await admin.create_key("demo_client", "demo")).api_key
        async with AsyncAINSClient(server.url, key) as client:
            words = ["the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog"]
            bodies = [
                {
                    "task_type": "word-count",
                    "capability_required": "text:v1",
                    "priority": random.randint(1, 10),
                    "max_retries": 2,
                    "input_data": {"text": " ".join(random.choices(words, k=random.randint(3, 12)))},
                }
                for _ in range(TASKS)
            ]
            ids = []
            for start in range(0, TASKS, 100):
                result = await client.submit_batch(bodies[start : start + 100])
                ids += [item.task_id for item in result.submitted]
            print(f"submitted {len(ids)} tasks; three agents at work …")
            while True:
                metrics = await client.queue_metrics()
                if not metrics.tasks_by_priority:
                    break
                await asyncio.sleep(0.5)
            statuses = Counter([t.status async for t in client.list_tasks(limit=500)])
            board = (await client.leaderboard(limit=10)).leaderboard
    finally:
        for agent in agents:
            agent.stop()
        await asyncio.gather(*runs, return_exceptions=True)
        server.stop()

    print(
        f"\nall {TASKS} tasks final in {time.monotonic() - started:.1f} s: "
        + ", ".join(f"{status} {count}" for status, count in sorted(statuses.items()))
    )
    print("\nLeaderboard")
    print(f"{'agent':<14} {'trust':>6} {'level':<10} {'completed':>9} {'success':>8}")
    for entry in board:
        print(
            f"{entry.agent_id:<14} {entry.trust_score:>6.2f} {entry.trust_level:<10} "
            f"{entry.total_tasks_completed:>9} {entry.success_rate:>8.0%}"
        )


if __name__ == "__main__":
    asyncio.run(main())
