"""`ains workflows submit|show` and `ains schedules list|create|pause|delete`, hooked into `ains` by `register`."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any

import typer

DEFAULT_URL = "http://127.0.0.1:8000"

Url = Annotated[str | None, typer.Option("--url", envvar="AINS_URL", help="The AINS server [default: local]")]
ApiKey = Annotated[str | None, typer.Option("--api-key", envvar="AINS_API_KEY", help="Your API key")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts")]

workflows_app = typer.Typer(help="Workflows: graphs of tasks that wait for each other.", no_args_is_help=True)
schedules_app = typer.Typer(help="Schedules: a task on every tick of a cron expression.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add `workflows` and `schedules` to the `ains` command."""
    app.add_typer(workflows_app, name="workflows")
    app.add_typer(schedules_app, name="schedules")


def _client(url: str | None, api_key: str | None):
    from ains.client import AINSClient

    return AINSClient((url or os.environ.get("AINS_URL") or DEFAULT_URL).rstrip("/"), api_key, timeout=30)


def _errors(function: Callable) -> Callable:
    """AINS errors and unreadable files as one line on stderr, exit code 1."""

    @wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import httpx

        from ains.client import AINSError

        try:
            return function(*args, **kwargs)
        except AINSError as exc:
            _fail(f"AINS answered {exc.status_code}: {_detail(exc.detail)}")
        except httpx.TransportError as exc:
            _fail(f"cannot reach AINS ({type(exc).__name__}); is `ains serve` running there? (--url or AINS_URL)")
        except (OSError, ValueError) as exc:
            _fail(str(exc))

    return wrapper


def _detail(detail: Any) -> str:
    if isinstance(detail, list):
        return "; ".join(
            f"{'.'.join(str(p) for p in item.get('loc', [])[1:])}: {item.get('msg')}"
            if isinstance(item, dict)
            else str(item)
            for item in detail
        )
    return str(detail)


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _load(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        return yaml.safe_load(text)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc


def _status_style() -> dict[str, str]:
    """Rich styles by task and workflow status (imported here, so `ains --help` stays quick)."""
    from ains.tasks.schemas import TaskStatus
    from ains.workflows.schemas import WorkflowStatus

    return {
        TaskStatus.WAITING: "dim",
        TaskStatus.PENDING: "yellow",
        TaskStatus.ASSIGNED: "cyan",
        TaskStatus.ACTIVE: "blue",
        WorkflowStatus.RUNNING: "blue",
        TaskStatus.COMPLETED: "green",
        TaskStatus.FAILED: "red",
        TaskStatus.CANCELLED: "magenta",
    }


def _console():
    from rich.console import Console

    return Console()


def tree(workflow: Any):
    """The workflow as a rich Tree: each step under the steps it depends on (a step with several is drawn under
    each, its children only the first time), roots at the top, each with its status."""
    from rich.tree import Tree

    steps = {step.key: step for step in workflow.steps}
    children: dict[str, list[str]] = {key: [] for key in steps}
    for step in workflow.steps:
        for dependency in step.depends_on:
            children[dependency].append(step.key)
    status_style = _status_style()
    style = status_style.get(workflow.status, "")
    root = Tree(f"[bold]{workflow.name}[/bold] {workflow.workflow_id} [{style}]{workflow.status}[/{style}]")
    drawn: set[str] = set()

    def add(parent: Any, key: str) -> None:
        step = steps[key]
        style = status_style.get(step.status, "")
        label = f"{key} [{style}]{step.status}[/{style}] [dim]{step.task_id}[/dim]"
        if key in drawn:
            parent.add(f"{label} [dim](above)[/dim]")
            return
        drawn.add(key)
        node = parent.add(label)
        for child in children[key]:
            add(node, child)

    for step in workflow.steps:
        if not step.depends_on:
            add(root, step.key)
    return root


@workflows_app.command("submit")
@_errors
def submit(
    file: Annotated[Path, typer.Argument(help="The workflow: {name, steps: [{key, depends_on, …task}]}, JSON or YAML")],
    url: Url = None,
    api_key: ApiKey = None,
    as_json: Json = False,
) -> None:
    """Submit a workflow from a JSON or YAML file and draw it."""
    body = _load(file)
    if not isinstance(body, dict):
        raise ValueError(f"{file} must hold one object: {{name, steps}}")
    with _client(url, api_key) as client:
        workflow = client.submit_workflow(body)
    if as_json:
        typer.echo(workflow.model_dump_json())
    else:
        _console().print(tree(workflow))


@workflows_app.command("show")
@_errors
def show(workflow_id: str, url: Url = None, api_key: ApiKey = None, as_json: Json = False) -> None:
    """A workflow as a tree of its steps, each with its status."""
    with _client(url, api_key) as client:
        workflow = client.get_workflow(workflow_id)
    if as_json:
        typer.echo(workflow.model_dump_json())
    else:
        _console().print(tree(workflow))


@schedules_app.command("list")
@_errors
def list_schedules(url: Url = None, api_key: ApiKey = None, as_json: Json = False) -> None:
    """Your schedules (the admin: all), newest first."""
    from rich.table import Table

    with _client(url, api_key) as client:
        page = client.list_schedules(limit=500)
    if as_json:
        typer.echo(page.model_dump_json())
        return
    table = Table("schedule_id", "name", "cron", "timezone", "active", "next_run_at", "last_task_id")
    for s in page.schedules:
        table.add_row(
            s.schedule_id, s.name, s.cron, s.timezone, "yes" if s.active else "paused",
            s.next_run_at.isoformat() if s.next_run_at else "-", s.last_task_id or "-",
        )  # fmt: skip
    _console().print(table)


@schedules_app.command("create")
@_errors
def create(
    name: Annotated[str, typer.Option(help="A name for the schedule")],
    cron: Annotated[str, typer.Option(help='Five fields, e.g. "0 3 * * *", or @hourly, @daily, …')],
    task: Annotated[str, typer.Option(help="The task body: JSON, or @FILE (JSON or YAML)")],
    timezone: Annotated[str, typer.Option(help="IANA time zone")] = "UTC",
    url: Url = None,
    api_key: ApiKey = None,
    as_json: Json = False,
) -> None:
    """Create a schedule that submits `task` on every tick."""
    body = _load(Path(task[1:])) if task.startswith("@") else json.loads(task)
    with _client(url, api_key) as client:
        schedule = client.create_schedule(name, cron, body, timezone=timezone)
    typer.echo(schedule.model_dump_json() if as_json else f"{schedule.schedule_id} next run {schedule.next_run_at}")


@schedules_app.command("pause")
@_errors
def pause(schedule_id: str, url: Url = None, api_key: ApiKey = None) -> None:
    """Pause a schedule (resume it with the SDK or PATCH active: true)."""
    with _client(url, api_key) as client:
        client.pause_schedule(schedule_id)
    typer.echo(f"{schedule_id} paused")


@schedules_app.command("delete")
@_errors
def delete(schedule_id: str, url: Url = None, api_key: ApiKey = None) -> None:
    """Delete a schedule (tasks it already submitted stay)."""
    with _client(url, api_key) as client:
        client.delete_schedule(schedule_id)
    typer.echo(f"{schedule_id} deleted")
