"""End to end (issue 7, figure 2): TASKS tasks submitted in batches of 100 and processed by 8 agents.

One real `ains serve` per run on a fresh database. The client has a webhook for
`task.completed` on a receiver in a process of its own, so every completion writes its
outbox event in the completing transaction; trust records are always on. Eight
agents (SDK clients, one asyncio loop each) claim up to 50 tasks at a time,
started at once (`"start": true`, long poll 1 s), and report them with one
`complete-batch` call per claim. A ninth loop submits the tasks, 4 batches in
flight. tasks/s = TASKS / (first submission → last completion); each run also
prints when the last submission was answered. Afterwards the run waits (up to
120 s) for the rest of the `task.completed` deliveries and prints how long after
the last completion the last one arrived (target: within 5 s) and the rate of
that backlog.

Server CPU per task: the CPU time (user + system, from /proc/<pid>/stat) of the
server process and all its descendants (uvicorn workers with `--workers`) from the
first submission to the last completion, divided by TASKS (PostgreSQL's CPU is not
in it). Most webhook deliveries come after the last completion, so the CPU per
delivery is also measured from the last completion to the last delivery and the
figure "with its delivery" adds it for the deliveries the run left over.
`--workers N` is passed to `ains serve --workers N` (the script stops with a message
if this AINS's `ains serve` has no such option).

    .venv/bin/python benchmarks/end_to_end.py [--backend postgres] [--runs 3] [--tasks 20000] [--workers N]
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time
from multiprocessing.connection import Connection

import common
from webhook_throughput import Receiver

from ains.client import AsyncAINSClient
from ains.identity import Identity

AGENTS = 8
CAPABILITY = "bench:v1"
BODY = {"task_type": "bench", "capability_required": CAPABILITY, "input_data": {"n": 1}}
DRAIN_TIMEOUT_SECONDS = 120


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


def _receive(commands: Connection) -> None:
    """The receiver process: webhook_throughput's Receiver, answering `count`, `times` and `stop` on the pipe."""

    async def main() -> None:
        receiver = Receiver()
        commands.send(await receiver.start())
        offset = time.time() - time.monotonic()  # arrivals as wall-clock times, comparable across processes
        stopped = asyncio.Event()

        def answer() -> None:
            command = commands.recv()
            if command == "count":
                commands.send(len(receiver.arrivals))
            elif command == "times":
                commands.send([at + offset for at in receiver.arrivals.values()])
            else:
                stopped.set()

        asyncio.get_running_loop().add_reader(commands.fileno(), answer)
        await stopped.wait()
        await receiver.close()

    asyncio.run(main())


class ReceiverProcess:
    """The webhook receiver, in a process of its own: a minimal asyncio HTTP/1.1 server that answers 200 at once and
    notes when each event arrived. (Until the tenth session it was a threaded `http.server` in this process,
    sharing the GIL with the eight agents and the submitter: the benchmark measured it as much as AINS.)"""

    def __init__(self) -> None:
        self._commands, theirs = multiprocessing.Pipe()
        self._process = multiprocessing.get_context("spawn").Process(target=_receive, args=(theirs,), daemon=True)
        self._process.start()
        self.url: str = self._commands.recv()

    def count(self) -> int:
        self._commands.send("count")
        return self._commands.recv()

    def times(self) -> list[float]:
        self._commands.send("times")
        return self._commands.recv()

    async def wait(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.count() < count and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    def close(self) -> None:
        self._commands.send("stop")
        self._process.join(5)


class Ready:
    """Counts agents registered, so the clock starts with every agent polling."""

    def __init__(self, expected: int) -> None:
        self.expected, self.count, self.event = expected, 0, asyncio.Event()

    def set_one(self) -> None:
        self.count += 1
        if self.count == self.expected:
            self.event.set()


async def run_once(
    database_url: str,
    tasks: int,
    drain_timeout_seconds: float = DRAIN_TIMEOUT_SECONDS,
    serve_args: tuple[str, ...] = (),
    separate_worker: bool = False,
) -> tuple[float, float, float, float, float]:
    """tasks/s, backlog deliveries/s, CPU ms per task, the same with its delivery, seconds from the last
    completion to the last delivery (nan when not waited for, or when some never arrived)."""
    ready = Ready(AGENTS)
    receiver = ReceiverProcess()
    nan = float("nan")
    env = {"AINS_WEBHOOK_ALLOW_PRIVATE": "true"}
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(
            common.server(database_url, env | ({"AINS_RUN_BACKGROUND": "false"} if separate_worker else {}), serve_args)
        )
        pids = [server.process.pid]
        if separate_worker:
            worker = stack.enter_context(common.worker(database_url, env))
            pids.append(worker.process.pid)

        def cpu_seconds() -> float:
            return sum(common.cpu_seconds(pid) for pid in pids)

        async with AsyncAINSClient(server.url, common.ADMIN_KEY) as admin:
            key = (await admin.create_key("bench_client", "end to end")).api_key
        async with AsyncAINSClient(server.url, key, timeout=60) as client:
            await client.create_webhook("bench_client", receiver.url, ["task.completed"])
            done = [0]
            agents = [asyncio.create_task(agent_loop(server.url, n, done, tasks, ready)) for n in range(AGENTS)]
            await ready.event.wait()
            cpu_before = cpu_seconds()
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
            completed_at = time.time()
            cpu_ms_per_task = (cpu_seconds() - cpu_before) * 1000 / tasks
            delivered_by_then = receiver.count()
            cpu_drain_start = cpu_seconds()
            backlog_seconds = drain_rate = cpu_ms_per_delivery = nan
            cpu_ms_with_delivery = cpu_ms_per_task
            delivery = ""
            if drain_timeout_seconds:
                await receiver.wait(tasks, timeout=drain_timeout_seconds)
                cpu_drain = cpu_seconds() - cpu_drain_start
                times = receiver.times()
                arrived = len(times)
                drained = arrived - delivered_by_then
                last_arrival = max(times, default=completed_at)
                if arrived >= tasks:
                    backlog_seconds = max(0.0, last_arrival - completed_at)
                if drained and backlog_seconds > 0:
                    drain_rate = drained / backlog_seconds
                if drained:
                    cpu_ms_per_delivery = cpu_drain * 1000 / drained
                    # What each task costs once its webhook delivery, mostly left for after the run, is counted too.
                    cpu_ms_with_delivery = cpu_ms_per_task + cpu_ms_per_delivery * (tasks - delivered_by_then) / tasks
                late = (
                    f"the last {backlog_seconds:.1f} s after the last completion ({drain_rate:,.0f}/s)"
                    if arrived >= tasks
                    else f"only {arrived:,} arrived within {drain_timeout_seconds:.0f} s"
                )
                delivery = (
                    f"; {cpu_ms_per_delivery:.2f} ms per delivery afterwards, so {cpu_ms_with_delivery:.2f} ms/task "
                    "with its delivery"
                    if drained
                    else ""
                )
                delivery = f"; deliveries: {late}{delivery}"
            print(
                f"run: {tasks / elapsed:,.0f} tasks/s (all submitted after {submitted_after:.1f} s, all done after "
                f"{elapsed:.1f} s); {delivered_by_then:,} of {tasks:,} task.completed deliveries "
                f"made by the last completion; server CPU {cpu_ms_per_task:.2f} ms/task "
                f"until the last completion{delivery}",
                flush=True,
            )
    receiver.close()
    return tasks / elapsed, drain_rate, cpu_ms_per_task, cpu_ms_with_delivery, backlog_seconds


def main() -> None:
    args = common.arguments(__doc__.splitlines()[0], tasks=(int, 20_000), workers=(int, None), separate_worker=(int, 0))
    serve_args: tuple[str, ...] = ()
    if args.workers is not None:
        common.require_serve_option("--workers")
        serve_args = ("--workers", str(args.workers))
    results = []
    for _ in range(args.runs):
        with common.database(args.backend) as url:
            results.append(
                asyncio.run(
                    run_once(url, args.tasks, serve_args=serve_args, separate_worker=bool(args.separate_worker))
                )
            )
    workers = f", {args.workers} server workers" if args.workers is not None else ""
    print(
        f"end to end, {args.backend}, {args.tasks:,} tasks, {AGENTS} agents{workers}, {args.runs} runs: "
        f"{common.spread([r[0] for r in results])} tasks/s; "
        f"the last webhook delivery {common.spread([r[4] for r in results], '{:.1f}'.format)} s after the last "
        f"completion (target <= 5 s), the backlog at {common.spread([r[1] for r in results])}/s; "
        f"server CPU {common.spread([r[2] for r in results], '{:.2f}'.format)} ms/task (target <= 0.5), "
        f"{common.spread([r[3] for r in results], '{:.2f}'.format)} ms/task with its webhook delivery"
    )


if __name__ == "__main__":
    main()
