"""What every benchmark shares: a real server on a fresh database per run, and median (min–max) figures.

`--backend postgres` gives each run its own scratch database on the local
PostgreSQL (AINS_BENCH_POSTGRES_URL, default the `test` server), dropped after
the run; `sqlite` gives each run a temporary data directory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence

from sqlalchemy.engine import make_url

from ains.testing import ServerProcess, WorkerProcess, free_port

ADMIN_KEY = "ains_admin_benchmark-key-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
POSTGRES_URL = os.environ.get("AINS_BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


def arguments(description: str, runs: int = 3, **extra: tuple[type, object]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--runs", type=int, default=runs)
    for name, (kind, default) in extra.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=default)
    return parser.parse_args()


async def postgres_execute(url: str, *statements: str) -> list:
    """Run statements on `url` (asyncpg) and return the last one's rows."""
    import asyncpg

    parsed = make_url(url)
    conn = await asyncpg.connect(
        host=parsed.host, port=parsed.port or 5432, user=parsed.username, database=parsed.database, timeout=10
    )
    try:
        rows: list = []
        for statement in statements:
            rows = await conn.fetch(statement)
        return rows
    finally:
        await conn.close()


@contextlib.contextmanager
def scratch_postgres() -> Iterator[str]:
    """A new, empty PostgreSQL database for one run (SQLAlchemy URL), dropped afterwards."""
    name = f"ains_bench_{uuid.uuid4().hex[:10]}"
    asyncio.run(postgres_execute(POSTGRES_URL, f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(postgres_execute(POSTGRES_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextlib.contextmanager
def database(backend: str) -> Iterator[str]:
    """An AINS_DATABASE_URL for one run of `backend`."""
    if backend == "postgres":
        with scratch_postgres() as url:
            yield url
    else:
        with tempfile.TemporaryDirectory(prefix="ains-bench-") as directory:
            yield f"sqlite+aiosqlite:///{directory}/ains.db"


class BenchServer(ServerProcess):
    """ServerProcess with extra `ains serve` options (e.g. `--workers 2`)."""

    def __init__(self, env: dict[str, str], serve_args: Sequence[str] = ()) -> None:
        # ServerProcess.__init__ with the extra options; src/ains/testing.py has no hook for them.
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = os.environ | {"AINS_LOG_LEVEL": self.log_level} | env
        self.log = tempfile.NamedTemporaryFile(prefix="ains-serve-", suffix=".log", delete=False)  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ains", "serve", "--port", str(self.port), *serve_args],
            env=full_env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.wait_ready()


def require_serve_option(option: str) -> None:
    """Exit with a clear message when this AINS's `ains serve` lacks `option` (e.g. `--workers`)."""
    result = subprocess.run(
        [sys.executable, "-m", "ains", "serve", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    if option not in result.stdout:
        raise SystemExit(f"`ains serve` has no {option} option in this version of AINS; run without it")


@contextlib.contextmanager
def server(
    database_url: str, env: dict[str, str] | None = None, serve_args: Sequence[str] = ()
) -> Iterator[ServerProcess]:
    """A real `ains serve` on `database_url`, with the benchmark's admin key (and extra `serve_args`)."""
    process = BenchServer(
        {"AINS_ADMIN_KEY": ADMIN_KEY, "AINS_DATABASE_URL": database_url, "AINS_DATA_DIR": tempfile.mkdtemp()}
        | (env or {}),
        serve_args,
    )
    try:
        yield process
    finally:
        process.stop()


@contextlib.contextmanager
def worker(database_url: str, env: dict[str, str] | None = None) -> Iterator[WorkerProcess]:
    """A real `ains worker` (background duties only) on `database_url`."""
    process = WorkerProcess(
        {"AINS_ADMIN_KEY": ADMIN_KEY, "AINS_DATABASE_URL": database_url, "AINS_DATA_DIR": tempfile.mkdtemp()}
        | (env or {})
    )
    try:
        yield process
    finally:
        process.stop()


def _stat(pid: int) -> list[str]:
    """/proc/<pid>/stat's fields after the command name: [0] state, [1] ppid, [11:15] utime stime cutime cstime."""
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().rsplit(")", 1)[1].split()


def process_tree(pid: int) -> list[int]:
    """`pid` and all its live descendants (uvicorn workers, multiprocessing helpers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                children.setdefault(int(_stat(int(entry))[1]), []).append(int(entry))
            except (OSError, IndexError):
                continue  # gone meanwhile
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by `pid` and its descendants, live and reaped (Linux /proc)."""
    ticks = 0
    for member in process_tree(pid):
        try:
            ticks += sum(int(field) for field in _stat(member)[11:15])
        except (OSError, IndexError):
            continue
    return ticks / os.sysconf("SC_CLK_TCK")


def peak_memory_mib(pid: int) -> float:
    """The process's peak resident set size so far (VmHWM), in MiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def spread(values: list[float], fmt: Callable[[float], str] = "{:,.0f}".format) -> str:
    """Median (min–max), the form of every figure in benchmarks/README.md."""
    return f"{fmt(statistics.median(values))} ({fmt(min(values))}–{fmt(max(values))})"
