"""Workflow rules: submit a graph of steps in one transaction, read it, list, cancel (SPEC 17).

Functions here work inside the caller's transaction and never commit. A workflow's steps are ordinary tasks
(with `workflow_id` and `step_key`); a step with dependencies starts WAITING and the dependency machinery
(`ains.workflows.dependencies`) moves it on.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ains.audit import service as audit
from ains.auth import quota
from ains.core.clock import new_id
from ains.core.errors import NotFound, PayloadTooLarge, Unprocessable
from ains.core.pagination import newest_first, split_page
from ains.core.principal import Principal
from ains.core.schemas import json_size
from ains.core.work import Work
from ains.tasks import dependencies as deps
from ains.tasks.schemas import FINAL_STATUSES, TaskStatus
from ains.tasks.submission import resolve_client_id
from ains.trust import service as trust
from ains.webhooks.schemas import EventName
from ains.workflows.dependencies import count_steps
from ains.workflows.graph import GraphError, check_graph
from ains.workflows.models import Workflow
from ains.workflows.schemas import WorkflowStatus, WorkflowSubmit

TASKS = deps.TASKS
# Every transaction that makes tasks final counts their workflows' steps (and finishes a workflow) too.
deps.on_finished(count_steps)


def available_at(step: Any, now: datetime) -> datetime:
    """When a task may first be claimed: `run_at`, `now + delay_seconds`, or now."""
    if getattr(step, "run_at", None) is not None:
        return step.run_at
    if getattr(step, "delay_seconds", None):
        return now + timedelta(seconds=step.delay_seconds)
    return now


async def submit(work: Work, principal: Principal, body: WorkflowSubmit) -> dict[str, Any]:
    """Check the graph and store the workflow, its steps and their edges; nothing at all when a check fails."""
    from ains.webhooks import outbox

    session, now, settings = work.session, work.now, work.settings

    client_id = resolve_client_id(principal, body.client_id)
    try:
        check_graph([(step.key, step.depends_on) for step in body.steps])
    except GraphError as exc:
        raise Unprocessable(exc.field, exc.message) from exc
    for position, step in enumerate(body.steps):
        if step.client_id is not None and step.client_id != client_id:
            raise Unprocessable(f"steps.{position}.client_id", "a step belongs to the workflow's client")
        if json_size(step.input_data) > settings.max_input_bytes:
            raise PayloadTooLarge(f"steps.{position}.input_data is larger than {settings.max_input_bytes} bytes")

    await quota.reserve(work, client_id, len(body.steps))  # max_pending_tasks_per_client (SPEC 18)
    trusted = await trust.submitter_trusted(session, principal)
    workflow_id = new_id("wf")
    task_ids = {step.key: new_id("task") for step in body.steps}
    rows = []
    for step in body.steps:
        waits_for = list(dict.fromkeys(step.depends_on))
        at = available_at(step, now)
        rows.append(
            deps.task_row(
                task_id=task_ids[step.key],
                client_id=client_id,
                task_type=step.task_type,
                capability_required=step.capability_required,
                input_data=step.input_data,
                priority=step.priority,
                max_retries=step.max_retries,
                retry_policy=step.retry_policy,
                retry_jitter=step.retry_jitter,
                timeout_seconds=step.timeout_seconds,
                idempotency_key=step.idempotency_key,
                metadata=step.metadata,
                min_trust_score=step.min_trust_score,
                submitter_trusted=trusted,
                status=TaskStatus.WAITING if waits_for else TaskStatus.PENDING,
                attempt=0,
                retry_count=0,
                created_at=now,
                updated_at=now,
                available_at=at,
                queue_position=at.timestamp() - step.priority * settings.aging_interval_seconds,
                depends_on=[task_ids[key] for key in waits_for],
                pending_dependencies=len(waits_for),
                workflow_id=workflow_id,
                step_key=step.key,
            )
        )
    workflow = Workflow(
        workflow_id=workflow_id,
        client_id=client_id,
        name=body.name,
        status=WorkflowStatus.RUNNING,
        workflow_metadata=body.metadata,
        total_steps=len(body.steps),
        completed_steps=0,
        failed_steps=0,
        cancelled_steps=0,
        created_at=now,
        updated_at=now,
        completed_at=None,
    )
    session.add(workflow)
    await session.flush()
    await session.execute(TASKS.insert(), rows)
    await deps.insert_edges(
        session,
        [(task_ids[step.key], task_ids[key]) for step in body.steps for key in dict.fromkeys(step.depends_on)],
    )
    created = [_as_task(row) for row in rows]
    await outbox.emit_many(work, [(EventName.TASK_CREATED, task, None, None) for task in created])
    for task in created:
        if task.status == TaskStatus.PENDING:
            work.announce_task(task.capability_required)
    if principal.is_admin:
        audit.record(work, principal, "workflow.submit", "workflow", workflow_id, {"client_id": client_id})
    return answer(workflow, rows)


def _as_task(row: dict[str, Any]) -> Any:
    values = dict(row)
    values["task_metadata"] = values.pop("metadata", None)
    return SimpleNamespace(**values)


def _counts(workflow: Any) -> dict[str, int]:
    return {
        "total": workflow.total_steps,
        "completed": workflow.completed_steps,
        "failed": workflow.failed_steps,
        "cancelled": workflow.cancelled_steps,
    }


def summary(workflow: Any) -> dict[str, Any]:
    metadata = getattr(workflow, "workflow_metadata", None)
    if metadata is None:
        metadata = getattr(workflow, "metadata", None)
    return {
        "workflow_id": workflow.workflow_id,
        "client_id": workflow.client_id,
        "name": workflow.name,
        "status": workflow.status,
        "metadata": metadata if isinstance(metadata, dict) else {},
        "step_counts": _counts(workflow),
        "created_at": workflow.created_at,
        "updated_at": workflow.updated_at,
        "completed_at": workflow.completed_at,
    }


def answer(workflow: Any, steps: list[Any]) -> dict[str, Any]:
    """The workflow with its steps in dependency order (each after the steps it waits for)."""

    def get(step: Any, name: str) -> Any:
        return step[name] if isinstance(step, dict) else getattr(step, name)

    key_of = {get(step, "task_id"): get(step, "step_key") for step in steps}
    by_key = {get(step, "step_key"): step for step in steps}
    graph = [
        (get(step, "step_key"), [key_of[task_id] for task_id in (get(step, "depends_on") or []) if task_id in key_of])
        for step in sorted(steps, key=lambda s: get(s, "task_id"))
    ]
    try:
        order = check_graph(graph, max_steps=len(graph) or 1, max_dependencies=len(graph) or 1)
    except GraphError:  # never for a stored workflow; keep the answer readable regardless
        order = [key for key, _ in graph]
    return summary(workflow) | {
        "steps": [
            {
                "key": key,
                "task_id": get(by_key[key], "task_id"),
                "status": get(by_key[key], "status"),
                "depends_on": [key_of[t] for t in (get(by_key[key], "depends_on") or []) if t in key_of],
            }
            for key in order
        ]
    }


def _may_see(principal: Principal, workflow: Any) -> bool:
    return principal.is_admin or workflow.client_id == principal.id


async def _steps(session: AsyncSession, workflow_id: str, *, lock: bool = False) -> list[Any]:
    """The workflow's steps; with `lock`, only the open ones this transaction could lock (skipping those another
    transaction holds, such as a step being completed right now)."""
    query = select(TASKS.c.task_id, TASKS.c.step_key, TASKS.c.status, TASKS.c.depends_on, TASKS.c.workflow_id).where(
        TASKS.c.workflow_id == workflow_id
    )
    if lock:
        query = (
            query.where(TASKS.c.status.not_in(FINAL_STATUSES))
            .order_by(TASKS.c.task_id)
            .with_for_update(skip_locked=True)
        )
    return list(await session.execute(query))


async def get(session: AsyncSession, principal: Principal, workflow_id: str) -> dict[str, Any]:
    workflow = await session.get(Workflow, workflow_id)
    if workflow is None or not _may_see(principal, workflow):
        raise NotFound(f"Workflow {workflow_id} not found")
    return answer(workflow, await _steps(session, workflow_id))


async def list_workflows(
    session: AsyncSession,
    principal: Principal,
    *,
    status: str | None,
    client_id: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    query = select(Workflow)
    if not principal.is_admin:
        query = query.where(Workflow.client_id == principal.id)
    if client_id:
        query = query.where(Workflow.client_id == client_id)
    if status:
        query = query.where(Workflow.status == status)
    query = newest_first(query, Workflow.created_at, Workflow.workflow_id, cursor, limit)
    rows = list(await session.scalars(query))
    page, next_cursor = split_page(rows, limit, lambda w: (w.created_at.isoformat(), w.workflow_id))
    return [summary(workflow) for workflow in page], next_cursor


async def cancel(
    work: Work, principal: Principal, workflow_id: str, reason: str, *, first_round: bool = True
) -> tuple[dict[str, Any], bool]:
    """Cancel every step not yet final that no other transaction holds: the WAITING ones here, the others through
    the task state machine. Answers the workflow, and whether some open step was held (send another round, in a
    new transaction, once the holder has committed: waiting for it here could deadlock with a completion that
    waits for a dependent this transaction locked)."""
    from ains.tasks import lifecycle
    from ains.tasks.models import Task
    from ains.webhooks import outbox

    session, now = work.session, work.now
    workflow = await session.get(Workflow, workflow_id)
    if workflow is None or not _may_see(principal, workflow):
        raise NotFound(f"Workflow {workflow_id} not found")
    steps = await _steps(session, workflow_id, lock=True)  # task_id order, as every path locks tasks
    open_steps = [step for step in await _steps(session, workflow_id) if step.status not in FINAL_STATUSES]
    busy = len(open_steps) > len(steps)
    waiting = [step.task_id for step in steps if step.status == TaskStatus.WAITING]
    if waiting:
        await session.execute(
            update(TASKS)
            .where(TASKS.c.task_id.in_(waiting), TASKS.c.status == TaskStatus.WAITING)
            .values(
                status=TaskStatus.CANCELLED,
                cancelled_at=now,
                cancelled_by=principal.id,
                cancellation_reason=reason,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        deps._note_changed(session, waiting)
        rows = list(await session.execute(select(TASKS).where(TASKS.c.task_id.in_(waiting)).order_by(TASKS.c.task_id)))
        await outbox.emit_many(work, [(EventName.TASK_CANCELLED, deps._as_task(row), None, None) for row in rows])
        await deps.after_finished(work, rows)
    live = [step.task_id for step in steps if step.status not in FINAL_STATUSES and step.status != TaskStatus.WAITING]
    if live:
        tasks = list(await session.scalars(select(Task).where(Task.task_id.in_(live)).order_by(Task.task_id)))
        for task in tasks:
            if task.status in FINAL_STATUSES:
                continue
            await lifecycle.cancel(work, task, cancelled_by=principal.id, reason=reason)
    if first_round:
        audit.record(work, principal, "workflow.cancel", "workflow", workflow_id, {"reason": reason})
    await session.flush()
    await session.refresh(workflow)
    return answer(workflow, await _steps(session, workflow_id)), busy
