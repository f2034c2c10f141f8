"""Chaos (issue 11): SDK agents work through 2,000 tasks while the server is SIGKILLed and restarted.

One real `ains serve` per run on a fresh database (PostgreSQL by default). AGENTS agent
processes (`ains.agent.Agent`, the SDK's runtime, MAX_CONCURRENCY each, an async handler
that sleeps WORK_MS ± 50 %) take TASKS tasks submitted in batches of 100. Each time a
further 1/(KILLS+1) of the tasks has been handled, the server gets SIGKILL and is started
again DOWN_SECONDS later on the same port and database. Every handler run is logged by
its agent process (start and end, with the attempt); afterwards the tasks and their
attempts are read from the API.

Reported per run (target 0, 0, 0):
- lost: tasks not final when the run ends (120 s after the last restart at most), or
  completed without a handler run;
- duplicated: tasks whose handler ran twice at once (overlapping runs), ran more than
  once at all, or have more than one completed attempt;
- failed: tasks FAILED (or CANCELLED).
Also: each outage (SIGKILL → the new server answering `/health`; of that, DOWN_SECONDS
down and the rest `ains serve` starting up), tasks that needed a second attempt (and
their first attempts' outcomes), the agents' "server unreachable" log lines (one per
outage is right), tracebacks in the agents' output, and how long the run took.

    .venv/bin/python benchmarks/chaos.py [--backend postgres] [--runs 1] [--tasks 2000] [--kills 1]
        [--down-seconds 3.5] [--agents 4] [--max-concurrency 8] [--work-ms 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import common
import httpx

from ains.client import AINSError, AsyncAINSClient
from ains.testing import free_port

CAPABILITY = "chaos:v1"
FINISH_SECONDS = 120


class Server:
    """`ains serve` on a fixed port that can be SIGKILLed and started again (same port, same database)."""

    def __init__(self, database_url: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = os.environ | {
            "AINS_ADMIN_KEY": common.ADMIN_KEY,
            "AINS_DATABASE_URL": database_url,
            "AINS_DATA_DIR": tempfile.mkdtemp(prefix="ains-chaos-"),
            "AINS_LOG_LEVEL": "WARNING",
        }
        self.log = tempfile.NamedTemporaryFile(prefix="ains-chaos-serve-", suffix=".log", delete=False)  # noqa: SIM115
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        command = [sys.executable, "-m", "ains", "serve", "--port", str(self.port)]
        self.process = subprocess.Popen(command, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {Path(self.log.name).read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("server did not start within 60 s")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        os.unlink(self.log.name)


# -- the agent processes ---------------------------------------------------------------------------------------


def agent_main(url: str, agent_id: str, directory: str, max_concurrency: int, work_ms: float) -> None:
    """One agent process: the SDK runtime, logging each handler run to `directory/agent_id.runs`."""
    import logging

    from ains.agent import Agent, current_task

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    runs = open(Path(directory) / f"{agent_id}.runs", "a", buffering=1)  # noqa: SIM115 - open for the run
    agent = Agent(
        url, agent_id, Path(directory) / f"{agent_id}.key", [CAPABILITY], max_concurrency, poll_wait_seconds=5
    )

    @agent.handler(CAPABILITY)
    async def work(input_data: dict) -> dict:
        task = current_task()
        runs.write(f"start {task.task_id} {task.attempt} {time.time():.6f}\n")
        try:
            await asyncio.sleep(work_ms / 1000 * random.uniform(0.5, 1.5))
        finally:
            runs.write(f"end {task.task_id} {task.attempt} {time.time():.6f}\n")
        return {"n": input_data["n"]}

    agent.run()


def read_runs(directory: Path) -> list[tuple[str, str, int, float]]:
    """Every handler run event: (start|end, task id, attempt, time)."""
    events = []
    for path in directory.glob("*.runs"):
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 4:
                events.append((parts[0], parts[1], int(parts[2]), float(parts[3])))
    return events


def ended(directory: Path) -> int:
    """Handler runs finished so far, over all agent processes."""
    return sum(line.startswith("end ") for path in directory.glob("*.runs") for line in path.read_text().splitlines())


# -- one run -----------------------------------------------------------------------------------------------------


async def not_final(client: AsyncAINSClient) -> int:
    return sum((await client.queue_metrics()).tasks_by_priority.values())


async def run_once(database_url: str, args: argparse.Namespace) -> dict:
    directory = Path(tempfile.mkdtemp(prefix="ains-chaos-agents-"))
    server = Server(database_url)
    agents: list[subprocess.Popen] = []
    agent_logs: list[Path] = []
    downtimes: list[float] = []  # SIGKILL → answering /health again
    start_times: list[float] = []  # of that, `ains serve` starting up
    try:
        async with AsyncAINSClient(server.url, common.ADMIN_KEY) as admin:
            key = (await admin.create_key("chaos_client", "chaos")).api_key
        for number in range(args.agents):
            agent_id = f"chaos_agent_{number}"
            log_path = directory / f"{agent_id}.log"
            agent_logs.append(log_path)
            command = [
                sys.executable,
                __file__,
                "--agent",
                json.dumps([server.url, agent_id, str(directory), args.max_concurrency, args.work_ms]),
            ]
            with open(log_path, "w") as log:
                agents.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))
        started = time.monotonic()
        async with AsyncAINSClient(server.url, key, timeout=60) as client:
            for first in range(0, args.tasks, 100):
                count = min(100, args.tasks - first)
                batch = [
                    {"task_type": "chaos", "capability_required": CAPABILITY, "input_data": {"n": n}}
                    for n in range(first, first + count)
                ]
                result = await client.submit_batch(batch)
                assert not result.failed, result.failed
            for kill in range(1, args.kills + 1):
                threshold = args.tasks * kill // (args.kills + 1)
                while ended(directory) < threshold:
                    await asyncio.sleep(0.02)
                server.kill()
                down = time.monotonic()
                print(f"  kill {kill}: SIGKILL after {ended(directory):,} handler runs", flush=True)
                await asyncio.sleep(args.down_seconds)
                restarted = time.monotonic()
                await asyncio.to_thread(server.start)
                downtimes.append(time.monotonic() - down)
                start_times.append(time.monotonic() - restarted)
            deadline = time.monotonic() + FINISH_SECONDS
            while True:
                try:
                    remaining = await not_final(client)
                except (httpx.HTTPError, AINSError) as exc:  # the server may still be coming back
                    print(f"  queue metrics: {exc}", flush=True)
                    remaining = -1
                if remaining == 0 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
            elapsed = time.monotonic() - started
            tasks = [task async for task in client.list_tasks(limit=500)]
            semaphore = asyncio.Semaphore(8)

            async def attempts(task_id: str) -> list:
                async with semaphore:
                    return (await client.task_attempts(task_id)).attempts

            histories = dict(
                zip(
                    [t.task_id for t in tasks], await asyncio.gather(*(attempts(t.task_id) for t in tasks)), strict=True
                )
            )
    finally:
        for process in agents:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in agents:
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
        server.stop()

    # Handler runs per task, and runs of one task that overlapped in time.
    events = sorted(read_runs(directory), key=lambda e: e[3])
    runs_per_task: Counter = Counter()
    live: Counter = Counter()
    overlapping: set[str] = set()
    for kind, task_id, _attempt, _at in events:
        if kind == "start":
            runs_per_task[task_id] += 1
            live[task_id] += 1
            if live[task_id] > 1:
                overlapping.add(task_id)
        else:
            live[task_id] -= 1
    statuses = Counter(task.status for task in tasks)
    completed_attempts = {tid: sum(a.outcome == "completed" for a in h) for tid, h in histories.items()}
    retried = {tid: h for tid, h in histories.items() if len(h) > 1}
    first_outcomes = Counter(h[0].outcome for h in retried.values())
    unreachable_lines = defaultdict(int)
    for path in agent_logs:
        text = path.read_text()
        unreachable_lines[path.stem] = text.count("server unreachable")
    tracebacks = sum(path.read_text().count("Traceback") for path in agent_logs)
    figures = {
        "tasks": len(tasks),
        "lost": (args.tasks - len(tasks))
        + sum(t.status not in ("COMPLETED", "FAILED", "CANCELLED") for t in tasks)
        + sum(t.status == "COMPLETED" and runs_per_task[t.task_id] == 0 for t in tasks),
        "ran_twice_at_once": len(overlapping),
        "ran_more_than_once": sum(count > 1 for count in runs_per_task.values()),
        "completed_twice": sum(count > 1 for count in completed_attempts.values()),
        "failed": statuses["FAILED"] + statuses["CANCELLED"],
        "statuses": dict(statuses),
        "second_attempts": len(retried),
        "first_attempt_outcomes": dict(first_outcomes),
        "unreachable_lines_per_agent": dict(unreachable_lines),
        "agent_tracebacks": tracebacks,
        "downtimes": [round(d, 1) for d in downtimes],
        "server_start_seconds": [round(d, 1) for d in start_times],
        "seconds": round(elapsed, 1),
    }
    figures["duplicated"] = figures["ran_twice_at_once"] + figures["completed_twice"]
    return figures


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--agent":
        agent_main(*json.loads(sys.argv[2]))
        return
    args = common.arguments(
        __doc__.splitlines()[0],
        runs=1,
        tasks=(int, 2000),
        kills=(int, 1),
        down_seconds=(float, 3.5),
        agents=(int, 4),
        max_concurrency=(int, 8),
        work_ms=(float, 50.0),
    )
    if "--backend" not in sys.argv:
        args.backend = "postgres"
    results = []
    for run in range(1, args.runs + 1):
        with common.database(args.backend) as database_url:
            figures = asyncio.run(run_once(database_url, args))
        results.append(figures)
        print(f"run {run}: " + json.dumps(figures), flush=True)
    print(
        f"{args.backend}, {args.tasks:,} tasks, {args.agents} agent processes × {args.max_concurrency}, "
        f"{args.kills} SIGKILL(s) with the server down {args.down_seconds} s, {args.runs} run(s): "
        f"lost {sum(r['lost'] for r in results)}, duplicated {sum(r['duplicated'] for r in results)} "
        f"(ran more than once: {sum(r['ran_more_than_once'] for r in results)}), "
        f"failed {sum(r['failed'] for r in results)}",
        flush=True,
    )


if __name__ == "__main__":
    main()
