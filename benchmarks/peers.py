"""AINS beside the queues people would otherwise pick (issue 7, figure 3): the same no-op jobs through each.

In one run, on the same PostgreSQL and Redis: JOBS jobs enqueued in batches of
100 and processed with 8-way concurrency by
- Procrastinate (PostgreSQL; worker `concurrency=8`, stops when the queue is empty),
- pgqueuer (PostgreSQL; asyncpg, default settings: dequeues 10 at a time, no cap on concurrent jobs),
- Celery (Redis broker; `celery worker -c 8`, prefork; jobs sent in chunks of 100 through one connection),
- AINS (`benchmarks/end_to_end.py`'s run: a real server, 8 agents claiming 50 at a time and
  completing them in one call, trust records and a `task.completed` webhook on).
jobs/s = JOBS / (first enqueue → last job done). Each library gets a scratch
database or a fresh Redis queue and counter, removed afterwards. The libraries
are the `bench` extra (`pip install -e '.[bench]'`), never part of AINS.

    .venv/bin/python benchmarks/peers.py [--runs 3] [--jobs 20000] [--workers N]

`--workers N` runs AINS as `ains serve --workers N` (the target is met only if it holds with 1 and with 2).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import common
import end_to_end
from sqlalchemy.engine import make_url

AGENTS = 8
BATCH = 100


def libpq_url(sqlalchemy_url: str) -> str:
    return make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(hide_password=False)


async def procrastinate_run(database_url: str, jobs: int) -> float:
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=libpq_url(database_url)))

    @app.task(name="noop")
    async def noop() -> None:
        return None

    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        started = time.perf_counter()
        for _ in range(jobs // BATCH):
            await noop.batch_defer_async(*([{}] * BATCH))
        await app.run_worker_async(concurrency=AGENTS, wait=False, install_signal_handlers=False)
        return jobs / (time.perf_counter() - started)


async def pgqueuer_run(database_url: str, jobs: int) -> float:
    import asyncpg
    from pgqueuer import AsyncpgDriver, PgQueuer, Queries

    dsn = libpq_url(database_url)
    producer = await asyncpg.connect(dsn)
    consumer = await asyncpg.connect(dsn)
    try:
        queries = Queries(AsyncpgDriver(producer))
        await queries.install()
        worker = PgQueuer(AsyncpgDriver(consumer))
        done = 0

        @worker.entrypoint("noop")
        async def noop(job: object) -> None:
            nonlocal done
            done += 1
            if done == jobs:
                worker.shutdown.set()

        started = time.perf_counter()
        for _ in range(jobs // BATCH):
            await queries.enqueue(["noop"] * BATCH, [None] * BATCH, [0] * BATCH)
        await worker.run()  # defaults: batches of 10, no cap on concurrent jobs
        return jobs / (time.perf_counter() - started)
    finally:
        await producer.close()
        await consumer.close()


def celery_run(jobs: int) -> float:
    import redis

    queue = f"ains_bench_{uuid.uuid4().hex[:8]}"
    counter = f"{queue}:done"
    env = os.environ | {"AINS_BENCH_CELERY_BROKER": "redis://127.0.0.1:6379/0", "AINS_BENCH_CELERY_COUNTER": counter}
    os.environ.update(env)
    import peers_celery

    client = redis.Redis.from_url(env["AINS_BENCH_CELERY_BROKER"])
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "peers_celery",
            "worker",
            "-c",
            str(AGENTS),
            "-Q",
            queue,
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel",
            "WARNING",
        ],
        cwd=Path(__file__).parent,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(3)  # the worker's processes start before the clock does
        started = time.perf_counter()
        with peers_celery.app.producer_or_acquire() as producer:
            for _ in range(jobs // BATCH):
                for _ in range(BATCH):
                    peers_celery.noop.apply_async(queue=queue, producer=producer)
        while int(client.get(counter) or 0) < jobs:
            time.sleep(0.01)
        return jobs / (time.perf_counter() - started)
    finally:
        worker.terminate()
        worker.wait(30)
        # Kombu's bindings of the queue too: nothing of a run stays in Redis.
        client.delete(counter, queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")


def main() -> None:
    args = common.arguments(__doc__.splitlines()[0], jobs=(int, 20_000), workers=(int, 1))
    serve_args: tuple[str, ...] = ("--workers", str(args.workers)) if args.workers > 1 else ()
    results: dict[str, list[float]] = {"AINS": [], "Procrastinate": [], "pgqueuer": [], "Celery (Redis)": []}
    for run in range(args.runs):
        with common.scratch_postgres() as url:
            ains_run = end_to_end.run_once(url, args.jobs, drain_timeout_seconds=0, serve_args=serve_args)
            results["AINS"].append(asyncio.run(ains_run)[0])
        with common.scratch_postgres() as url:
            results["Procrastinate"].append(asyncio.run(procrastinate_run(url, args.jobs)))
        with common.scratch_postgres() as url:
            results["pgqueuer"].append(asyncio.run(pgqueuer_run(url, args.jobs)))
        results["Celery (Redis)"].append(celery_run(args.jobs))
        print(
            f"run {run + 1}: " + ", ".join(f"{name} {values[-1]:,.0f}/s" for name, values in results.items()),
            flush=True,
        )
    ains = results["AINS"]
    workers = f", AINS with --workers {args.workers}" if args.workers > 1 else ""
    print(f"{args.jobs:,} no-op jobs, {args.runs} runs{workers}, jobs/s median (min–max):")
    for name, values in results.items():
        ratios = [a / v for a, v in zip(ains, values, strict=True)]
        print(f"| {name} | {common.spread(values)} | {common.spread(ratios, '{:.2f}×'.format)} |")


if __name__ == "__main__":
    main()
