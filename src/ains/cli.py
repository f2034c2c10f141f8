"""The `ains` command: serve, worker-less operations on the database, and identity helpers."""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path
from typing import Annotated

import typer

from ains.core.config import Settings

app = typer.Typer(help="AINS, the Agent Intelligence Network System.", no_args_is_help=True)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
tasks_app = typer.Typer(help="Submit, read, list, cancel and watch tasks.", no_args_is_help=True)
agents_app = typer.Typer(help="Registered agents and the leaderboard.", no_args_is_help=True)
agent_app = typer.Typer(help="Run an agent.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(tasks_app, name="tasks")
app.add_typer(agents_app, name="agents")
app.add_typer(agent_app, name="agent")

Url = Annotated[str | None, typer.Option("--url", envvar="AINS_URL", help="The AINS server")]
ApiKey = Annotated[str | None, typer.Option("--api-key", envvar="AINS_API_KEY", help="Your API key")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts")]
DEFAULT_URL = "http://127.0.0.1:8000"


def _need_url(url: str | None) -> str:
    return url or DEFAULT_URL


def _client(url: str, api_key: str | None):
    from ains.client import AINSClient

    return AINSClient(url, api_key)


def _print(data, as_json: bool, columns: list[str] | None = None, title: str | None = None) -> None:
    """JSON for scripts, a table (lists) or key/value lines (one record) for people."""
    if as_json:
        typer.echo(json.dumps(data, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if isinstance(data, list):
        headers = columns or (list(data[0]) if data else [])
        table = Table(*headers, title=title)
        for row in data:
            table.add_row(*(str(row.get(header, "")) for header in headers))
        console.print(table)
    else:
        for key, value in data.items():
            console.print(f"[bold]{key}[/bold]: {value}")


def _errors(function):
    """Turn AINS errors into a one-line message and exit code 1."""
    import functools

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        from ains.client import AINSError

        try:
            return function(*args, **kwargs)
        except AINSError as exc:
            typer.echo(f"error {exc.status_code}: {exc.detail}", err=True)
            raise typer.Exit(1) from exc

    return wrapper


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    workers: Annotated[
        int, typer.Option(min=1, help="Server processes sharing the port (PostgreSQL only)")
    ] = 1,
) -> None:
    """Run the API server (migrations are applied on start)."""
    import uvicorn

    from ains.core.logging import configure_logging
    from ains.main import create_app, prepare_workers

    settings = Settings()
    configure_logging(settings.log_level)
    if workers == 1:
        uvicorn.run(create_app(settings), host=host, port=port, log_config=None, access_log=False)
        return
    if settings.is_sqlite:
        typer.echo(
            "error: --workers needs PostgreSQL. SQLite allows one writer at a time, so several server "
            "processes would only queue behind each other's locks; set AINS_DATABASE_URL="
            "postgresql+asyncpg://user@host/db, or run one process.",
            err=True,
        )
        raise typer.Exit(2)
    # Migrations and the admin key once, here, rather than raced by every worker.
    prepare_workers(settings)
    uvicorn.run(
        "ains.main:worker_app",
        factory=True,
        workers=workers,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
    )


@app.command()
def worker() -> None:
    """Run only the background duties (timeouts, leases, stale agents, retries), for scaling out.

    Run servers with AINS_RUN_BACKGROUND=false and any number of workers on one PostgreSQL.
    """
    import signal

    from ains.background.runner import DutyRunner
    from ains.core.logging import configure_logging
    from ains.main import open_context

    settings = Settings()
    configure_logging(settings.log_level)

    async def run() -> None:
        ctx = await open_context(settings, with_admin_key=False)
        runner = DutyRunner(ctx)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, lambda: asyncio.ensure_future(runner.stop()))
        runner.start()
        try:
            await runner.wait()
        finally:
            await runner.stop()
            await ctx.close()

    asyncio.run(run())


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply the migrations to AINS_DATABASE_URL (or the embedded SQLite file)."""
    from ains.migrate import upgrade

    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url, revision)
    typer.echo(f"database at {revision}")


@keys_app.command("create")
@_errors
def keys_create(
    client_id: Annotated[str, typer.Option("--client-id", help="The client the key acts as")],
    name: Annotated[str, typer.Option("--name", help="A label for the key")],
    url: Url = None,
    api_key: ApiKey = None,
    as_json: Json = False,
) -> None:
    """Create a client API key and print it (shown only once).

    With --url (or AINS_URL) it asks that server, with an admin key; without, it
    writes directly to the local database (AINS_DATABASE_URL or the embedded one).
    """
    if url:
        with _client(url, api_key) as ains:
            created = ains.create_key(client_id, name)
        _print(created.model_dump(mode="json"), as_json)
        return
    from ains.auth import service
    from ains.auth.principal import ADMIN_ID, Principal
    from ains.core.clock import utcnow
    from ains.core.database import Database
    from ains.core.schemas import AGENT_ID_PATTERN
    from ains.migrate import upgrade

    if not re.fullmatch(AGENT_ID_PATTERN, client_id):
        raise typer.BadParameter("3-64 characters of A-Z a-z 0-9 _ . : -", param_hint="--client-id")
    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)

    async def create() -> tuple[str, str]:
        db = Database(settings.resolved_database_url)
        try:
            async with db.transaction() as session:
                row, secret = await service.create_client_key(
                    session, Principal("admin", ADMIN_ID), client_id, name, None, utcnow()
                )
            return row.key_id, secret
        finally:
            await db.dispose()

    key_id, secret = asyncio.run(create())
    typer.echo(json.dumps({"key_id": key_id, "client_id": client_id, "api_key": secret}))


@keys_app.command("list")
@_errors
def keys_list(url: Url = None, api_key: ApiKey = None, as_json: Json = False) -> None:
    """List API keys (admin key needed)."""
    with _client(_need_url(url), api_key) as ains:
        keys = ains.list_keys().api_keys
    rows = [k.model_dump(mode="json") for k in keys]
    _print(rows, as_json, columns=["key_id", "kind", "client_id", "name", "created_at"])


@keys_app.command("revoke")
@_errors
def keys_revoke(key_id: str, url: Url = None, api_key: ApiKey = None, as_json: Json = False) -> None:
    """Revoke an API key (admin key needed)."""
    with _client(_need_url(url), api_key) as ains:
        ains.revoke_key(key_id)
    _print({"key_id": key_id, "revoked": True}, as_json)


@app.command()
def keygen(path: Annotated[Path, typer.Argument(help="Where to write the new Ed25519 key file")]) -> None:
    """Write a new agent identity (Ed25519 key pair) readable only by its owner."""
    from ains.identity import Identity

    if path.exists():
        raise typer.BadParameter(f"{path} exists; refusing to overwrite an identity", param_hint="PATH")
    identity = Identity.generate()
    identity.save(path)
    typer.echo(json.dumps({"path": str(path), "public_key": identity.public_key}))


@app.command()
def sign(
    key_file: Annotated[Path, typer.Option("--key-file", help="An identity written by `ains keygen`")],
    agent_id: Annotated[str, typer.Option("--agent-id")],
    token: Annotated[bool, typer.Option("--token", help="Sign a key re-issue instead of a registration")] = False,
) -> None:
    """Print the signed JSON fields for a registration (or, with --token, a key re-issue)."""
    from ains.identity import Identity

    identity = Identity.load(key_file)
    fields = identity.token_request(agent_id) if token else identity.registration(agent_id)
    typer.echo(json.dumps(fields))


@tasks_app.command("submit")
@_errors
def tasks_submit(
    capability: Annotated[str, typer.Option("--capability", help="name:version the task needs")],
    task_type: Annotated[str, typer.Option("--type", help="The task's type")] = "task",
    input_json: Annotated[str, typer.Option("--input", help="input_data as JSON")] = "{}",
    priority: Annotated[int, typer.Option(min=1, max=10)] = 5,
    max_retries: Annotated[int, typer.Option(min=0, max=10)] = 3,
    timeout: Annotated[int, typer.Option("--timeout", min=1, max=3600, help="timeout_seconds")] = 300,
    idempotency_key: Annotated[str | None, typer.Option("--idempotency-key")] = None,
    count: Annotated[int, typer.Option("--count", min=1, help="Submit this many (in batches of 100)")] = 1,
    url: Url = None,
    api_key: ApiKey = None,
    as_json: Json = False,
) -> None:
    """Submit a task (or --count of them)."""
    try:
        input_data = json.loads(input_json)
    except ValueError as exc:
        raise typer.BadParameter(f"not JSON: {exc}", param_hint="--input") from exc
    fields = {
        "task_type": task_type,
        "capability_required": capability,
        "input_data": input_data,
        "priority": priority,
        "max_retries": max_retries,
        "timeout_seconds": timeout,
    }
    with _client(_need_url(url), api_key) as ains:
        if count == 1:
            task = ains.submit_task(**fields, **({"idempotency_key": idempotency_key} if idempotency_key else {}))
            _print(task.model_dump(mode="json"), as_json)
            return
        ids: list[str] = []
        for start in range(0, count, 100):
            result = ains.submit_batch([fields] * min(100, count - start))
            ids += [item.task_id for item in result.submitted]
        _print({"submitted": len(ids), "task_ids": ids}, as_json)


@tasks_app.command("get")
@_errors
def tasks_get(task_id: str, url: Url = None, api_key: ApiKey = None, as_json: Json = False) -> None:
    """Show one task."""
    with _client(_need_url(url), api_key) as ains:
        _print(ains.get_task(task_id).model_dump(mode="json"), as_json)


@tasks_app.command("list")
@_errors
def tasks_list(
    status: Annotated[
        str | None, typer.Option(help="PENDING, ASSIGNED, ACTIVE, COMPLETED, FAILED or CANCELLED")
    ] = None,
    capability: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many")] = 50,
    url: Url = None,
    api_key: ApiKey = None,
    as_json: Json = False,
) -> None:
    """List your tasks, newest first."""
    with _client(_need_url(url), api_key) as ains:
        tasks = []
        for task in ains.list_tasks(limit=min(limit, 500), status=status, capability=capability):
            tasks.append(task.model_dump(mode="json"))
            if len(tasks) >= limit:
                break
    _print(
        tasks,
        as_json,
        columns=["task_id", "status", "priority", "capability_required", "assigned_agent_id", "created_at"],
    )


@tasks_app.command("cancel")
@_errors
def tasks_cancel(
    task_id: str,
    reason: Annotated[str, typer.Option()] = "Client requested cancellation",
    url: Url = None,
    api_key: ApiKey = None,
    as_json: Json = False,
) -> None:
    """Cancel a task."""
    with _client(_need_url(url), api_key) as ains:
        _print(ains.cancel_task(task_id, reason).model_dump(mode="json"), as_json)


@tasks_app.command("watch")
@_errors
def tasks_watch(
    task_ids: Annotated[list[str], typer.Argument(help="One or more task ids")],
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds")] = 600,
    interval: Annotated[float, typer.Option(help="Seconds between looks")] = 1.0,
    url: Url = None,
    api_key: ApiKey = None,
    as_json: Json = False,
) -> None:
    """Follow tasks until they are all final, with a progress bar."""
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from ains.client import FINAL_STATUSES

    deadline = time.monotonic() + timeout
    statuses: dict[str, str] = {}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with _client(_need_url(url), api_key) as ains, Progress(*columns, disable=as_json) as bar:
        progress = bar.add_task("tasks", total=len(task_ids))
        while True:
            for task_id in task_ids:
                if statuses.get(task_id) not in FINAL_STATUSES:
                    statuses[task_id] = ains.get_task(task_id).status
            done = sum(1 for s in statuses.values() if s in FINAL_STATUSES)
            counts = {s: list(statuses.values()).count(s) for s in sorted(set(statuses.values()))}
            bar.update(progress, completed=done, description=" ".join(f"{k}:{v}" for k, v in counts.items()))
            if done == len(task_ids) or time.monotonic() > deadline:
                break
            time.sleep(interval)
    summary = {s: list(statuses.values()).count(s) for s in sorted(set(statuses.values()))}
    _print({"statuses": statuses, "summary": summary} if as_json else summary, as_json)
    if any(s not in FINAL_STATUSES for s in statuses.values()):
        raise typer.Exit(2)


@agents_app.command("list")
@_errors
def agents_list(
    capability: Annotated[str | None, typer.Option()] = None,
    status: Annotated[str | None, typer.Option()] = None,
    url: Url = None,
    as_json: Json = False,
) -> None:
    """List registered agents."""
    with _client(_need_url(url), None) as ains:
        agents = ains.list_agents(limit=500, capability=capability, status=status).agents
    _print(
        [a.model_dump(mode="json") for a in agents],
        as_json,
        columns=["agent_id", "status", "trust_score", "trust_level", "capabilities", "max_concurrency"],
    )


@agents_app.command("leaderboard")
@_errors
def agents_leaderboard(
    limit: Annotated[int, typer.Option(min=1, max=100)] = 10,
    min_tasks: Annotated[int, typer.Option(min=0)] = 0,
    url: Url = None,
    as_json: Json = False,
) -> None:
    """The most trusted agents."""
    with _client(_need_url(url), None) as ains:
        board = ains.leaderboard(limit=limit, min_tasks=min_tasks).leaderboard
    _print(
        [e.model_dump(mode="json") for e in board],
        as_json,
        title="Leaderboard",
        columns=["agent_id", "display_name", "trust_score", "trust_level", "total_tasks_completed", "success_rate"],
    )


@agent_app.command("run")
def agent_run(target: Annotated[str, typer.Argument(help="module:attribute of an ains.agent.Agent")]) -> None:
    """Run an agent defined in Python until SIGTERM or SIGINT."""
    import importlib
    import sys

    from ains.agent import Agent
    from ains.core.logging import configure_logging

    module_name, _, attribute = target.partition(":")
    if not attribute:
        raise typer.BadParameter("expected module:attribute", param_hint="TARGET")
    sys.path.insert(0, os.getcwd())
    agent = getattr(importlib.import_module(module_name), attribute)
    if not isinstance(agent, Agent):
        raise typer.BadParameter(f"{target} is not an ains.agent.Agent", param_hint="TARGET")
    configure_logging(Settings().log_level)
    agent.run()
