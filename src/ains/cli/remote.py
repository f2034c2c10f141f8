"""An operator's commands against a running server over HTTP: tasks, the queue, agents, trust, webhooks, the
audit log, and the list/cancel/show/resume half of `workflows` and `schedules`."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from ains.cli.common import ApiKey, Json, Remote, Url, _client, _console, _errors, _need_url, _print, _say, _when
from ains.workflows.cli import schedules_app, workflows_app

tasks_app = typer.Typer(help="Submit, read, list, cancel, re-prioritise and watch tasks.", no_args_is_help=True)
agents_app = typer.Typer(help="Registered agents and the leaderboard.", no_args_is_help=True)
queue_app = typer.Typer(help="The task queue.", no_args_is_help=True)
webhooks_app = typer.Typer(help="Webhooks and their deliveries.", no_args_is_help=True)
trust_app = typer.Typer(help="Agents' trust: history, chain verification, adjustment.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit log (admin).", no_args_is_help=True)

# ---------------------------------------------------------------- tasks

TASK_COLUMNS = ["task_id", "status", "priority", "capability_required", "client_id", "assigned_agent_id", "created_at"]


def _task_record(task: dict[str, Any]) -> dict[str, Any]:
    keys = [
        "task_id", "status", "task_type", "capability_required", "client_id", "priority", "effective_priority",
        "assigned_agent_id", "attempt", "retry_count", "max_retries", "timeout_seconds", "created_at",
        "updated_at", "next_retry_at", "completed_at", "cancelled_at", "cancellation_reason", "error_message",
        "input_data", "result_data",
    ]  # fmt: skip
    return {key: task.get(key) for key in keys if key in task and (task.get(key) is not None or key == "status")}


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
    client_id: Annotated[
        str | None, typer.Option("--client-id", help="With the admin key: the client the task is for")
    ] = None,
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
    if client_id:
        fields["client_id"] = client_id
    with _client(_need_url(url), api_key) as ains:
        if count == 1:
            task = ains.submit_task(**fields, **({"idempotency_key": idempotency_key} if idempotency_key else {}))
            data = task.model_dump(mode="json")
            if as_json:
                _print(data, True)
                return
            _say(f"submitted task {data['task_id']} ({data['status']}, priority {priority}, needs {capability})")
            return
        ids: list[str] = []
        for start in range(0, count, 100):
            result = ains.submit_batch([fields] * min(100, count - start))
            ids += [item.task_id for item in result.submitted]
    if as_json:
        _print({"submitted": len(ids), "task_ids": ids}, True)
        return
    _say(f"submitted {len(ids)} tasks needing {capability}; the first {ids[0]}, the last {ids[-1]}")


@tasks_app.command("get")
@_errors
def tasks_get(task_id: str, url: Url = None, api_key: ApiKey = None, as_json: Json = False) -> None:
    """Show one task."""
    with _client(_need_url(url), api_key) as ains:
        data = ains.get_task(task_id).model_dump(mode="json")
    _print(data if as_json else _task_record(data), as_json)


@tasks_app.command("attempts")
@_errors
def tasks_attempts(task_id: str, url: Url = None, api_key: ApiKey = None, as_json: Json = False) -> None:
    """A task's attempts: which agent, when, and how each ended."""
    with Remote(url, api_key) as remote:
        attempts = remote.call("GET", f"/ains/tasks/{task_id}/attempts")["attempts"]
    _print(
        attempts,
        as_json,
        columns=["attempt", "agent_id", "assigned_at", "started_at", "finished_at", "outcome", "error"],
        title=None if as_json else f"attempts of {task_id}",
        empty=f"task {task_id} has no attempts yet: no agent has claimed it",
    )


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
    """List your tasks (all of them with the admin key), newest first."""
    with _client(_need_url(url), api_key) as ains:
        tasks = []
        for task in ains.list_tasks(limit=min(limit, 500), status=status, capability=capability):
            tasks.append(task.model_dump(mode="json"))
            if len(tasks) >= limit:
                break
    _print(tasks, as_json, columns=TASK_COLUMNS, empty="no tasks")


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
        data = ains.cancel_task(task_id, reason).model_dump(mode="json")
    if as_json:
        _print(data, True)
        return
    _say(f"cancelled task {task_id} (was held by {data.get('assigned_agent_id') or 'no agent'})")


@tasks_app.command("priority")
@_errors
def tasks_priority(
    task_id: str,
    priority: Annotated[int, typer.Argument(min=1, max=10, help="The new base priority, 1-10")],
    url: Url = None,
    api_key: ApiKey = None,
    as_json: Json = False,
) -> None:
    """Change the priority of a task that is not final."""
    with Remote(url, api_key) as remote:
        data = remote.call("PATCH", f"/ains/tasks/{task_id}/priority", body={"priority": priority})
    if as_json:
        _print(data, True)
        return
    _say(f"task {task_id} now has priority {data['priority']} (effective {data.get('effective_priority')})")


@tasks_app.command("watch")
@_errors
def tasks_watch(
    task_ids: Annotated[list[str], typer.Argument(help="One or more task ids")],
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds (exit code 2)")] = 600,
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
    with (
        _client(_need_url(url), api_key) as ains,
        Progress(*columns, disable=as_json or not sys.stderr.isatty(), console=_console(stderr=True)) as bar,
    ):
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
    open_ids = [task_id for task_id, s in statuses.items() if s not in FINAL_STATUSES]
    if as_json:
        _print({"statuses": statuses, "summary": summary, "timed_out": bool(open_ids)}, True)
    else:
        _say(", ".join(f"{count} {status}" for status, count in summary.items()))
    if open_ids:
        typer.echo(
            f"error: timed out after {timeout:g} s with {len(open_ids)} task(s) not final: {', '.join(open_ids)}",
            err=True,
        )
        raise typer.Exit(2)


# ---------------------------------------------------------------- the queue


@queue_app.command("stats")
@_errors
def queue_stats(url: Url = None, api_key: ApiKey = None, as_json: Json = False) -> None:
    """Queue depth and waits by priority, retries waiting, and the oldest pending task's age."""
    with Remote(url, api_key) as remote:
        data = remote.call("GET", "/ains/queue/metrics")
    if as_json:
        _print(data, True)
        return
    rows = []
    for priority, count in data.get("tasks_by_priority", {}).items():
        rows.append(
            {
                "priority": priority,
                "open": count,
                "claimable": data.get("queue_depth_by_priority", {}).get(priority, 0),
                "avg_wait_s": data.get("avg_wait_time_by_priority", {}).get(priority, "—"),
            }
        )
    _print(rows, False, title="open tasks by priority", empty="the queue is empty: no open tasks")
    _say(
        f"waiting for a retry: {data.get('scheduled_retries', 0)}; "
        f"oldest pending: {data.get('oldest_pending_age_seconds', 0):g} s"
    )


# ---------------------------------------------------------------- agents and trust

AGENT_COLUMNS = ["agent_id", "status", "trust_score", "trust_level", "last_heartbeat_at", "capabilities"]


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
        columns=AGENT_COLUMNS + ["max_concurrency"],
        empty="no agents yet: start one with `ains agent run module:agent`",
    )


@agents_app.command("show")
@_errors
def agents_show(agent_id: str, url: Url = None, api_key: ApiKey = None, as_json: Json = False) -> None:
    """One agent: its record, trust metrics and whether its trust chain verifies."""
    with Remote(url, api_key) as remote:
        record = remote.call("GET", f"/ains/agents/{agent_id}")
        trust = remote.call("GET", f"/ains/agents/{agent_id}/trust")
        chain = remote.call("GET", f"/ains/agents/{agent_id}/trust/verify") if api_key else None
    data = record | {"metrics": trust.get("metrics", {}), "trust_chain": chain}
    if as_json:
        _print(data, True)
        return
    data.pop("public_key", None)
    if chain is None:
        data["trust_chain"] = "not checked (needs an API key)"
    elif chain.get("valid"):
        data["trust_chain"] = f"verified, {chain['records_checked']} records"
    else:
        data["trust_chain"] = f"BROKEN at record {chain.get('first_bad_record_id')}"
    _print(data, False)


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
        empty="no agents on the leaderboard yet",
    )


@trust_app.command("history")
@_errors
def trust_history(
    agent_id: str,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    url: Url = None,
    as_json: Json = False,
) -> None:
    """An agent's trust records, newest first."""
    with Remote(url, None) as remote:
        records = remote.call("GET", f"/ains/agents/{agent_id}/trust/history", params={"limit": limit})["records"]
    _print(
        records,
        as_json,
        columns=["seq", "event_type", "trust_delta", "trust_score_after", "task_id", "reason", "created_at"],
        empty=f"agent {agent_id} has no trust records yet",
    )


@trust_app.command("verify")
@_errors
def trust_verify(agent_id: str, url: Url = None, api_key: ApiKey = None, as_json: Json = False) -> None:
    """Recompute an agent's trust hash chain; exit 1 when it is broken."""
    with Remote(url, api_key) as remote:
        check = remote.call("GET", f"/ains/agents/{agent_id}/trust/verify")
    if as_json:
        _print(check, True)
    elif check["valid"]:
        _say(f"trust chain of {agent_id} verified: {check['records_checked']} records intact")
    if not check["valid"]:
        if not as_json:
            typer.echo(
                f"error: trust chain of {agent_id} is broken at record {check['first_bad_record_id']} "
                f"({check['records_checked']} checked)",
                err=True,
            )
        raise typer.Exit(1)


@trust_app.command("adjust")
@_errors
def trust_adjust(
    agent_id: str,
    delta: Annotated[float, typer.Argument(min=-1.0, max=1.0, help="How much to move the score (-1 to 1)")],
    reason: Annotated[str, typer.Option("--reason", help="Why; recorded in the trust chain and the audit log")],
    url: Url = None,
    api_key: ApiKey = None,
    as_json: Json = False,
) -> None:
    """Move an agent's trust score (admin key needed)."""
    with Remote(url, api_key) as remote:
        data = remote.call("POST", f"/ains/agents/{agent_id}/trust/adjust", body={"delta": delta, "reason": reason})
    if as_json:
        _print(data, True)
        return
    record = data["record"]
    _say(
        f"trust of {agent_id} moved {record['trust_score_before']} → {data['trust_score']} "
        f"({data['trust_level']}); record {record['record_id']}"
    )


# ---------------------------------------------------------------- webhooks

WEBHOOK_COLUMNS = [
    "webhook_id", "url", "events", "active", "consecutive_failures", "last_success_at", "last_failure_at"
]  # fmt: skip


@webhooks_app.command("list")
@_errors
def webhooks_list(
    client_id: Annotated[str | None, typer.Option("--client-id", help="A client's webhooks")] = None,
    agent_id: Annotated[str | None, typer.Option("--agent-id", help="An agent's webhooks")] = None,
    url: Url = None,
    api_key: ApiKey = None,
    as_json: Json = False,
) -> None:
    """A client's (or an agent's) webhooks and their health."""
    if bool(client_id) == bool(agent_id):
        raise typer.BadParameter("give one of --client-id or --agent-id", param_hint="--client-id")
    path = f"/ains/clients/{client_id}/webhooks" if client_id else f"/ains/agents/{agent_id}/webhooks"
    with Remote(url, api_key) as remote:
        hooks = remote.call("GET", path)["webhooks"]
    _print(hooks, as_json, columns=WEBHOOK_COLUMNS, empty="no webhooks")


@webhooks_app.command("deliveries")
@_errors
def webhooks_deliveries(
    webhook_id: str,
    limit: Annotated[int, typer.Option(min=1, max=200)] = 50,
    url: Url = None,
    api_key: ApiKey = None,
    as_json: Json = False,
) -> None:
    """A webhook's deliveries, newest first."""
    with Remote(url, api_key) as remote:
        deliveries = remote.call("GET", f"/ains/webhooks/{webhook_id}/deliveries", params={"limit": limit})
    _print(
        deliveries["deliveries"],
        as_json,
        columns=["delivery_id", "event", "task_id", "status", "attempts", "response_code", "last_error", "updated_at"],
        empty=f"webhook {webhook_id} has no deliveries yet",
    )


@webhooks_app.command("redeliver")
@_errors
def webhooks_redeliver(
    webhook_id: str, delivery_id: str, url: Url = None, api_key: ApiKey = None, as_json: Json = False
) -> None:
    """Send a finished delivery again."""
    with Remote(url, api_key) as remote:
        data = remote.call("POST", f"/ains/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver")
    if as_json:
        _print(data, True)
        return
    _say(f"delivery {delivery_id} queued to be sent again ({data['event']} of task {data['task_id']})")


# ---------------------------------------------------------------- the audit log


@audit_app.command("list")
@_errors
def audit_list(
    action: Annotated[str | None, typer.Option(help="Only this action, e.g. task.cancel")] = None,
    actor: Annotated[str | None, typer.Option(help="Only this actor's")] = None,
    target_id: Annotated[str | None, typer.Option("--target", help="Only about this id")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    url: Url = None,
    api_key: ApiKey = None,
    as_json: Json = False,
) -> None:
    """Audited actions, newest first (admin key needed)."""
    with Remote(url, api_key) as remote:
        page = remote.call(
            "GET",
            "/ains/audit-logs",
            params={"action": action, "actor": actor, "target_id": target_id, "limit": limit},
        )
    _print(
        page["entries"],
        as_json,
        columns=["id", "created_at", "actor", "action", "target_type", "target_id", "details"],
        empty="nothing audited yet" if not (action or actor or target_id) else "no entry matches",
    )


# ---------------------------------------------------------------- workflows and schedules (SPEC 17)

# `workflows submit|show` and `schedules list|create|pause|delete` live with the workflows domain
# (ains.workflows.cli); the operator's other commands join those same groups here.


def _step_counts(workflow: dict[str, Any]) -> str:
    counts = workflow.get("step_counts") or {}
    return (
        f"{counts.get('completed', 0)} completed, {counts.get('failed', 0)} failed, "
        f"{counts.get('cancelled', 0)} cancelled, of {counts.get('total', 0)}"
    )


@workflows_app.command("list")
@_errors
def workflows_list(
    status: Annotated[str | None, typer.Option(help="RUNNING, COMPLETED, FAILED or CANCELLED")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    url: Url = None,
    api_key: ApiKey = None,
    as_json: Json = False,
) -> None:
    """Your workflows (all of them with the admin key), newest first."""
    with Remote(url, api_key) as remote:
        rows = remote.call("GET", "/ains/workflows", params={"status": status, "limit": limit})["workflows"]
    if not as_json:
        rows = [row | {"steps": _step_counts(row)} for row in rows]
    _print(
        rows,
        as_json,
        columns=["workflow_id", "name", "status", "steps", "client_id", "created_at"],
        empty="no workflows yet: submit one with `ains workflows submit FILE`",
    )


@workflows_app.command("cancel")
@_errors
def workflows_cancel(
    workflow_id: str,
    reason: Annotated[str, typer.Option()] = "Client requested cancellation",
    url: Url = None,
    api_key: ApiKey = None,
    as_json: Json = False,
) -> None:
    """Cancel a workflow's steps that are not final."""
    with Remote(url, api_key) as remote:
        workflow = remote.call("POST", f"/ains/workflows/{workflow_id}/cancel", body={"reason": reason})
    if as_json:
        _print(workflow, True)
        return
    _say(f"workflow {workflow_id} is {workflow['status']}: {_step_counts(workflow)}")


@schedules_app.command("show")
@_errors
def schedules_show(schedule_id: str, url: Url = None, api_key: ApiKey = None, as_json: Json = False) -> None:
    """One schedule: its expression, zone, the task it submits, and its next and last run."""
    with Remote(url, api_key) as remote:
        _print(remote.call("GET", f"/ains/schedules/{schedule_id}"), as_json)


@schedules_app.command("resume")
@_errors
def schedules_resume(schedule_id: str, url: Url = None, api_key: ApiKey = None, as_json: Json = False) -> None:
    """Start a paused schedule again from its next tick."""
    with Remote(url, api_key) as remote:
        schedule = remote.call("PATCH", f"/ains/schedules/{schedule_id}", body={"active": True})
    if as_json:
        _print(schedule, True)
        return
    _say(f"schedule {schedule_id} resumed; next run {_when(schedule.get('next_run_at')) or 'not set'}")
