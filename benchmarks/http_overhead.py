"""HTTP overhead: AINS's req/s on three routes beside a minimal FastAPI app's (minimal_app.py), in the same run.

Per run: one real `ains serve` on a scratch PostgreSQL database (default settings,
so the access log is written at INFO, as a production server does), and one
`minimal_app.py` (same uvicorn settings, one process, no database). wrk drives
each route with CONNECTIONS concurrent keep-alive connections for SECONDS seconds
(after a WARMUP-second run whose figures are dropped):

- submit: `POST /ains/tasks` with a client key, one task per request (a Lua script sets the body);
- read:   `GET /ains/tasks/{id}` with a client key, cycling over 500 existing tasks;
- claim:  `POST /ains/agents/{id}/tasks/claim` `{"max_tasks": 1}` with agent keys, cycling over 32 agents
          (max_concurrency 1000 each, so concurrency limits don't bite) with enough tasks queued
          (checked afterwards: a run whose queue ran dry says so).

For each route it prints AINS's req/s, the minimal app's, and their ratio (target
>= 0.5x), and each server's CPU per request (/proc/<pid>/stat, user + system),
then the median (min-max) over the runs. wrk and both servers share the machine's
cores: on 2 cores the figures are noisy and the CPU per request is the steadier one.

wrk must be installed (scripts/bench installs it with apt-get when missing).

`--profile DIR` measures nothing against the minimal app: it runs one AINS server under
five loads in turn (submit, read, claim, claim-with-start + complete, an authenticated
GET), records each with `py-spy record --format raw` (needs root) into DIR and prints a
summary of where the time goes; `--summarise RAW` only summarises a raw profile. See
benchmarks/PROFILE.md.

    .venv/bin/python benchmarks/http_overhead.py [--runs 3] [--seconds 10] [--connections 16] [--warmup 2]
    sudo .venv/bin/python benchmarks/http_overhead.py --profile /tmp/ains-profile [--seconds 20]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import common
import httpx

from ains.client import AINSClient
from ains.identity import Identity
from ains.testing import ServerProcess, free_port

CAPABILITY = "bench:v1"
TASK = {"task_type": "bench", "capability_required": CAPABILITY, "input_data": {"n": 1}, "priority": 5}
AGENTS = 32
READ_IDS = 500
ROUTES = {
    "submit": "POST /ains/tasks",
    "read": "GET /ains/tasks/{id}",
    "claim": "POST /ains/agents/{id}/tasks/claim (max_tasks 1)",
}


@dataclass
class Measure:
    rate: float  # requests per second
    cpu_ms: float  # server CPU per request


def lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string of ASCII text is a valid Lua string literal


def submit_script(key: str) -> str:
    return (
        'wrk.method = "POST"\n'
        f"wrk.body = {lua_string(json.dumps(TASK))}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = {lua_string("Bearer " + key)}\n'
    )


def read_script(key: str, task_ids: list[str]) -> str:
    ids = ", ".join(lua_string(t) for t in task_ids)
    return (
        f"local ids = {{{ids}}}\n"
        "local i = 0\n"
        f'wrk.headers["Authorization"] = {lua_string("Bearer " + key)}\n'
        "request = function()\n"
        "  i = i % #ids + 1\n"
        '  return wrk.format("GET", "/ains/tasks/" .. ids[i])\n'
        "end\n"
    )


def claim_script(agents: list[tuple[str, str]]) -> str:
    rows = ", ".join(f"{{{lua_string(a)}, {lua_string('Bearer ' + k)}}}" for a, k in agents)
    return (
        f"local agents = {{{rows}}}\n"
        "local i = 0\n"
        "request = function()\n"
        "  i = i % #agents + 1\n"
        "  local a = agents[i]\n"
        '  return wrk.format("POST", "/ains/agents/" .. a[1] .. "/tasks/claim",\n'
        '    {["Content-Type"] = "application/json", ["Authorization"] = a[2]}, \'{"max_tasks": 1}\')\n'
        "end\n"
    )


def complete_script(agents: list[tuple[str, str]]) -> str:
    """Claims (started at once) and completes what they got: each claim's answer queues its /complete."""
    keys = ", ".join(f"[{lua_string(a)}] = {lua_string('Bearer ' + k)}" for a, k in agents)
    names = ", ".join(lua_string(a) for a, _ in agents)
    return (
        f"local keys = {{{keys}}}\n"
        f"local agents = {{{names}}}\n"
        "local todo, head, tail, i = {}, 1, 0, 0\n"
        "request = function()\n"
        "  if head <= tail then\n"
        "    local t = todo[head]; todo[head] = nil; head = head + 1\n"
        '    return wrk.format("POST", "/ains/tasks/" .. t[2] .. "/complete",\n'
        '      {["Content-Type"] = "application/json", ["Authorization"] = keys[t[1]]},\n'
        '      \'{"result_data": {"ok": true}, "attempt": \' .. t[3] .. "}")\n'
        "  end\n"
        "  i = i % #agents + 1\n"
        '  return wrk.format("POST", "/ains/agents/" .. agents[i] .. "/tasks/claim",\n'
        '    {["Content-Type"] = "application/json", ["Authorization"] = keys[agents[i]]},\n'
        '    \'{"max_tasks": 1, "start": true}\')\n'
        "end\n"
        "response = function(status, headers, body)\n"
        "  if string.sub(body, 1, 11) == '{\"tasks\":[{' then\n"
        '    local task = string.match(body, \'"task_id":"([^"]+)"\')\n'
        '    local agent = string.match(body, \'"assigned_agent_id":"([^"]+)"\')\n'
        "    local attempt = string.match(body, '\"attempt\":(%d+)')\n"
        "    tail = tail + 1; todo[tail] = {agent, task, attempt}\n"
        "  end\n"
        "end\n"
    )


def auth_script(key: str) -> str:
    """An authenticated GET that does little else: the client's (empty) webhook list."""
    return (
        'wrk.path = "/ains/clients/bench_client/webhooks"\n'
        f'wrk.headers["Authorization"] = {lua_string("Bearer " + key)}\n'
    )


def start_wrk(url: str, script_path: str, seconds: int, connections: int) -> subprocess.Popen:
    return subprocess.Popen(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", script_path, url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wrk_rate(process: subprocess.Popen, url: str, seconds: int) -> float:
    """Wait for a wrk started by start_wrk; its req/s. Fails on any socket error or non-2xx answer."""
    out, err = process.communicate(timeout=seconds + 60)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if process.returncode != 0 or rate is None:
        raise RuntimeError(f"wrk failed ({process.returncode}): {out}{err}")
    problems = re.findall(r"(Non-2xx or 3xx responses: \d+|Socket errors: .*)", out)
    if problems:
        raise RuntimeError(f"wrk against {url}: {'; '.join(problems)}\n{out}")
    return float(rate.group(1))


@contextlib.contextmanager
def lua_file(script: str) -> Iterator[str]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", prefix="ains-wrk-") as lua:
        lua.write(script)
        lua.flush()
        yield lua.name


def wrk(url: str, script: str, seconds: int, connections: int) -> float:
    """Run wrk for `seconds` with `script`; req/s."""
    with lua_file(script) as path:
        return wrk_rate(start_wrk(url, path, seconds, connections), url, seconds)


def measure(pid: int, url: str, script: str, args: argparse.Namespace) -> Measure:
    if args.warmup > 0:
        wrk(url, script, args.warmup, args.connections)
    cpu_before = common.cpu_seconds(pid)
    started = time.perf_counter()
    rate = wrk(url, script, args.seconds, args.connections)
    elapsed = time.perf_counter() - started
    requests = rate * elapsed
    return Measure(rate, (common.cpu_seconds(pid) - cpu_before) * 1000 / requests if requests else float("nan"))


@contextlib.contextmanager
def minimal_server() -> Iterator[tuple[subprocess.Popen, str]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    script = Path(__file__).with_name("minimal_app.py")
    process = subprocess.Popen([sys.executable, str(script), "--port", str(port)])
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError("minimal_app.py exited")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError("minimal_app.py did not start within 30 s") from None
                time.sleep(0.1)
        yield process, url
    finally:
        process.terminate()
        process.wait(10)


def pending(client: AINSClient) -> int:
    return sum(client.queue_metrics().queue_depth_by_priority.values())


def queue(client: AINSClient, count: int) -> list[str]:
    ids = []
    for start in range(0, count, 100):
        result = client.submit_batch([TASK] * min(100, count - start))
        assert not result.failed, result.failed
        ids.extend(s.task_id for s in result.submitted)
    return ids


def top_up(client: AINSClient, args: argparse.Namespace, seconds: int) -> None:
    """Enough tasks queued for 1,000 claims/s through the warm-up and `seconds`."""
    queue(client, max(0, 1000 * (args.warmup + seconds) - pending(client)))


@dataclass
class Ains:
    server: ServerProcess
    client: AINSClient
    key: str
    agents: list[tuple[str, str]]


# One client key drives each load: the per-key rate limit (1,000/s by default) would cap the figure being measured
# (the cached read passes it), and the minimal app has none. Set far above anything this machine reaches.
NO_RATE_LIMIT = {"AINS_RATE_LIMIT_PER_SECOND": "1000000", "AINS_RATE_LIMIT_BURST": "1000000"}


@contextlib.contextmanager
def ains_server(args: argparse.Namespace) -> Iterator[Ains]:
    """A real `ains serve` on a scratch PostgreSQL database, a client key and AGENTS agents."""
    with (
        common.scratch_postgres() as database_url,
        common.server(database_url, {"AINS_LOG_LEVEL": args.log_level, **NO_RATE_LIMIT}) as server,
    ):
        with AINSClient(server.url, common.ADMIN_KEY) as admin:
            key = admin.create_key("bench_client", "http overhead").api_key
        agents = []
        with AINSClient(server.url) as anonymous:
            for n in range(AGENTS):
                agent_id = f"bench_agent_{n}"
                registered = anonymous.register_agent(agent_id, Identity.generate(), [CAPABILITY], max_concurrency=1000)
                agents.append((agent_id, registered.api_key))
        with AINSClient(server.url, key, timeout=60) as client:
            yield Ains(server, client, key, agents)


def run_once(args: argparse.Namespace) -> dict[str, tuple[Measure, Measure]]:
    results: dict[str, tuple[Measure, Measure]] = {}
    with ains_server(args) as ains, minimal_server() as (minimal, minimal_url):
        headers = {"Authorization": f"Bearer {ains.key}"}
        minimal_ids = [
            httpx.post(f"{minimal_url}/ains/tasks", json=TASK, headers=headers).json()["task_id"]
            for _ in range(READ_IDS)
        ]
        pid, url = ains.server.process.pid, ains.server.url
        results["submit"] = (
            measure(pid, f"{url}/ains/tasks", submit_script(ains.key), args),
            measure(minimal.pid, f"{minimal_url}/ains/tasks", submit_script(ains.key), args),
        )
        ains_ids = queue(ains.client, READ_IDS)
        results["read"] = (
            measure(pid, url, read_script(ains.key, ains_ids), args),
            measure(minimal.pid, minimal_url, read_script(ains.key, minimal_ids), args),
        )
        top_up(ains.client, args, args.seconds)
        results["claim"] = (
            measure(pid, url, claim_script(ains.agents), args),
            measure(minimal.pid, minimal_url, claim_script(ains.agents), args),
        )
        if pending(ains.client) == 0:
            print("  warning: the claim run emptied the queue, so some claims found nothing", flush=True)
    for name, (a, m) in results.items():
        print(
            f"  {name}: AINS {a.rate:,.0f}/s ({a.cpu_ms:.2f} ms CPU/request), minimal {m.rate:,.0f}/s "
            f"({m.cpu_ms:.2f} ms CPU/request), ratio {a.rate / m.rate:.2f}x",
            flush=True,
        )
    return results


def compare(args: argparse.Namespace) -> None:
    runs = []
    for number in range(1, args.runs + 1):
        print(f"run {number}:", flush=True)
        runs.append(run_once(args))
    print(
        f"HTTP overhead, PostgreSQL, {args.connections} connections, {args.seconds} s per route, {args.runs} runs, "
        "median (min-max):"
    )
    for name, route in ROUTES.items():
        ains = [r[name][0] for r in runs]
        minimal = [r[name][1] for r in runs]
        print(
            f"  {route}: AINS {common.spread([m.rate for m in ains])}/s, "
            f"minimal {common.spread([m.rate for m in minimal])}/s, "
            f"ratio {common.spread([a.rate / m.rate for a, m in zip(ains, minimal, strict=True)], '{:.2f}'.format)}x "
            f"(target >= 0.5x); server CPU/request AINS "
            f"{common.spread([m.cpu_ms for m in ains], '{:.2f}'.format)} ms, "
            f"minimal {common.spread([m.cpu_ms for m in minimal], '{:.2f}'.format)} ms"
        )


# --- profile mode: py-spy on the AINS server under each load -------------------------------------------------

# Where a sample's time is booked: the innermost frame whose file (as py-spy shortens it, relative to its sys.path
# entry) starts with one of these (first match wins); other standard library frames (contextlib, typing, …) are booked
# to their caller. The event loop's own time (uvloop is C) shows as its Python caller, asyncio's Runner.run.
CATEGORIES = [
    ("asyncpg (driver)", ("asyncpg/",)),
    ("SQLAlchemy ORM (session, unit of work, loading)", ("sqlalchemy/orm/",)),
    ("SQLAlchemy Core (compile, execute, results, pool, dialect)", ("sqlalchemy/",)),
    ("Pydantic (validation, serialisation)", ("pydantic/", "pydantic_core/", "pydantic_settings/")),
    ("FastAPI (routing, dependencies, body, response)", ("fastapi/",)),
    ("Starlette", ("starlette/",)),
    ("anyio (the thread-pool hop for sync dependencies)", ("anyio/",)),
    ("uvicorn HTTP protocol (httptools)", ("uvicorn/protocols/",)),
    ("logging and metrics middleware", ("ains/core/middleware.py", "ains/core/logging.py", "prometheus_client/")),
    ("logging and metrics middleware", ("logging/",)),
    ("JSON (stdlib)", ("json/",)),
    ("AINS auth (key hash, lookup)", ("ains/auth/",)),
    ("AINS own code (routers, services, lifecycle, database helpers, cache)", ("ains/",)),
    ("event loop, sockets (uvloop, uvicorn's server loop)", ("uvicorn/", "asyncio/runners.py", "asyncio/")),
]
PASS_THROUGH = "other (interpreter, stdlib)"
# Samples of threads waiting for work, which py-spy does not always recognise as idle: dropped.
IDLE = {("Condition.wait", "threading.py"), ("_worker", "concurrent/futures/thread.py"), ("Queue.get", "queue.py")}
# Inclusive shares: the share of samples with a frame of that name (qualified, as py-spy prints it) whose file
# starts with that path anywhere on the stack ("" matches any name). SQLAlchemy's asyncio layer runs the ORM's
# synchronous code in greenlets, whose stacks py-spy shows apart from the coroutine that awaits them: the
# share of an AINS function (authenticate, present) counts only its async side, not the ORM work it awaits.
MARKERS = [
    ("authenticate(): the auth dependency with its key lookup", "authenticate", "ains/auth/dependencies.py"),
    ("RequestTelemetry (access log + Prometheus) minus the app under it", "", "ains/core/middleware.py"),
    ("Logger.info: the access log record, JSON formatting, write", "Logger.info", "logging/__init__.py"),
    ("FastAPI body parsing + validation (request_body_to_args)", "request_body_to_args", "fastapi/"),
    ("FastAPI response serialisation (serialize_response)", "serialize_response", "fastapi/"),
    ("sync dependency run in the thread pool (run_in_threadpool)", "run_in_threadpool", "starlette/"),
    ("AINS present(): TaskOut.model_validate + effective priority", "present", "ains/tasks/router.py"),
    ("ORM flush (unit of work)", "Session.flush", "sqlalchemy/orm/session.py"),
    ("commit: session.begin()'s exit, with its flush", "TransactionalContext.__exit__", "sqlalchemy/engine/"),
    ("SQL compilation (_compile_w_cache)", "ClauseElement._compile_w_cache", "sqlalchemy/sql/elements.py"),
    ("connection pool checkout/return", "", "sqlalchemy/pool/"),
    ("pool pre-ping (BEGIN, ';', ROLLBACK)", "AsyncAdapt_asyncpg_connection._async_ping", "sqlalchemy/"),
    ("asyncpg anywhere", "", "asyncpg/"),
]


# AINS frames every request passes through, left out of the "AINS functions" list.
OUTER = ("ains/__main__.py", "ains/cli.py", "ains/core/middleware.py")


def _frames(stack: str) -> list[tuple[str, str]]:
    """'f (file:line);g (file:line)' -> [(f, file), (g, file)], root first."""
    frames = []
    for frame in stack.split(";"):
        name, _, where = frame.rpartition(" (")
        frames.append((name, where.rsplit(":", 1)[0]))
    return frames


def _category(frames: list[tuple[str, str]]) -> str:
    for _, path in reversed(frames):
        for name, prefixes in CATEGORIES:
            if path.startswith(prefixes):
                return name
    return PASS_THROUGH


def _marked(frames: list[tuple[str, str]], name: str, path: str) -> bool:
    if name == "" and path == "ains/core/middleware.py":
        # Own part of the middleware: samples whose innermost non-stdlib frame is the middleware (or logging under it).
        return _category(frames) == "logging and metrics middleware"
    return any((not name or f == name) and p.startswith(path) for f, p in frames)


def summarise(raw: Path, top: int = 15) -> str:
    """Shares of a py-spy raw profile ('stack count' lines): by category, marker functions, hottest functions."""
    total = idle = 0
    categories: dict[str, int] = {}
    markers: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    greenlets: dict[str, int] = {}
    own: dict[str, int] = {}
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = _frames(stack)
        if frames[-1] in IDLE:
            idle += count
            continue
        total += count
        category = _category(frames)
        categories[category] = categories.get(category, 0) + count
        for label, name, path in MARKERS:
            if _marked(frames, name, path):
                markers[label] = markers.get(label, 0) + count
        for name in {f"{f} ({p})" for f, p in frames if p.startswith("ains/") and p not in OUTER}:
            inclusive[name] = inclusive.get(name, 0) + count
        if frames[0][1].startswith("sqlalchemy/"):
            root = f"{frames[0][0]} ({frames[0][1]})"
            greenlets[root] = greenlets.get(root, 0) + count
        leaf = f"{frames[-1][0]} ({frames[-1][1]})"
        own[leaf] = own.get(leaf, 0) + count
    if not total:
        return "  no samples"

    def table(title: str, shares: dict[str, int], limit: int | None = None) -> list[str]:
        rows = sorted(shares.items(), key=lambda item: -item[1])[:limit]
        return [f"  {title}:"] + [f"    {100 * n / total:5.1f} %  {label}" for label, n in rows]

    lines = [f"  {total:,} busy samples ({idle:,} samples of idle worker threads dropped)"]
    lines += table("where the time goes (innermost library or AINS frame)", categories)
    lines += table("inclusive shares", {label: markers.get(label, 0) for label, _, _ in MARKERS})
    lines += table("ORM work in greenlets, by the Session call that runs it (stacks apart)", greenlets)
    lines += table(f"top {top} AINS functions, inclusive (async side only)", inclusive, top)
    lines += table(f"top {top} functions, self", own, top)
    return "\n".join(lines)


def profile(args: argparse.Namespace) -> None:
    """py-spy on the AINS server under each load in turn; raw profiles and summaries into args.profile."""
    out = Path(args.profile)
    out.mkdir(parents=True, exist_ok=True)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    with ains_server(args) as ains:
        url = ains.server.url
        loads = {
            "submit": (f"{url}/ains/tasks", submit_script(ains.key)),
            "read": (url, read_script(ains.key, queue(ains.client, READ_IDS))),
            "claim": (url, claim_script(ains.agents)),
            "complete": (url, complete_script(ains.agents)),
            "auth": (url, auth_script(ains.key)),
        }
        for name, (target, script) in loads.items():
            if name in ("claim", "complete"):
                top_up(ains.client, args, args.seconds + 4)
            with lua_file(script) as path:
                if args.warmup > 0:
                    wrk_rate(start_wrk(target, path, args.warmup, args.connections), target, args.warmup)
                load = start_wrk(target, path, args.seconds + 4, args.connections)
                time.sleep(2)
                raw = out / f"{name}.txt"
                cpu_before, started = common.cpu_seconds(ains.server.process.pid), time.perf_counter()
                subprocess.run(
                    [py_spy, "record", "-p", str(ains.server.process.pid), "-d", str(args.seconds), "-r", "100"]
                    + ["--format", "raw", "-o", str(raw)],
                    check=True,
                    capture_output=True,
                    timeout=args.seconds + 60,
                )
                cpu = common.cpu_seconds(ains.server.process.pid) - cpu_before
                elapsed = time.perf_counter() - started
                rate = wrk_rate(load, target, args.seconds + 4)
            summary = (
                f"{name}: {rate:,.0f} req/s under py-spy (100 Hz), server CPU {cpu * 1000 / (rate * elapsed):.2f} ms "
                f"per request, {cpu / elapsed:.0%} of one core\n{summarise(raw, args.top)}"
            )
            (out / f"{name}.summary.txt").write_text(summary + "\n")
            print(summary, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--log-level", default="INFO", help="AINS_LOG_LEVEL of the AINS server (its default: INFO)")
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="instead: profile the AINS server with py-spy under each load (submit, read, claim, complete, auth), "
        "writing raw profiles and summaries into DIR (keep it out of git, e.g. /tmp/ains-profile); needs root",
    )
    parser.add_argument("--top", type=int, default=25, help="with --profile: how many hottest functions to list")
    parser.add_argument("--summarise", metavar="RAW", help="instead: only summarise a py-spy raw profile")
    args = parser.parse_args()
    if args.summarise:
        print(summarise(Path(args.summarise), args.top))
        return
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: run scripts/bench (it installs it) or `apt-get install wrk`")
    if args.profile:
        profile(args)
    else:
        compare(args)


if __name__ == "__main__":
    main()
