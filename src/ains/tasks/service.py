"""Changing tasks after submission: the agent's reports (start, complete, fail, one or a batch), cancel,
priority, and releasing what an agent holds.

Functions here work inside the caller's transaction and never commit.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from ains.audit import service as audit
from ains.core.cache import TASK as TASK_CACHE
from ains.core.database import note_changed_key
from ains.core.errors import AinsError, Conflict, Forbidden
from ains.core.metrics import RETRIES_SCHEDULED, TASKS_FAILED
from ains.core.principal import Principal
from ains.core.work import Work
from ains.tasks import lifecycle, queries, reports, retry
from ains.tasks.models import Task
from ains.tasks.reads import get_visible, held_tasks
from ains.tasks.schemas import FINAL_STATUSES, TaskStatus


async def _report_one(work: Work, principal: Principal, to: TaskStatus, item: reports.Report) -> Any:
    (answer,) = await reports.report(work, principal, to, [item])
    if isinstance(answer, AinsError):
        raise answer
    return answer


async def start(work: Work, principal: Principal, task_id: str, attempt: int | None) -> Any:
    """`/start`: the task as a row (see `ains.tasks.reports`)."""
    return await _report_one(work, principal, TaskStatus.ACTIVE, reports.Report(task_id, attempt))


async def complete(
    work: Work, principal: Principal, task_id: str, attempt: int | None, result_data: dict[str, Any]
) -> Any:
    item = reports.Report(task_id, attempt, result_data=result_data)
    return await _report_one(work, principal, TaskStatus.COMPLETED, item)


async def fail(
    work: Work,
    principal: Principal,
    task_id: str,
    attempt: int | None,
    error_message: str,
    *,
    retryable: bool,
    retry_after_seconds: float | None,
) -> Any:
    item = reports.Report(
        task_id, attempt, error_message=error_message, retryable=retryable, retry_after_seconds=retry_after_seconds
    )
    return await _report_one(work, principal, TaskStatus.FAILED, item)


def _batch_results(answers: list[Any], items: list[Any]) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    for item, answer in zip(items, answers, strict=True):
        if isinstance(answer, AinsError):
            detail = answer.detail if isinstance(answer.detail, str) else str(answer.detail)
            results.append({"task_id": item.task_id, "error": detail, "status_code": answer.status_code})
        else:
            results.append({"task_id": item.task_id, "status": answer.status})
    return results


async def complete_many(work: Work, principal: Principal, items: list[Any]) -> list[dict[str, Any]]:
    """`POST /ains/tasks/complete-batch`: items with task_id, attempt and result_data."""
    batch = [reports.Report(item.task_id, item.attempt, result_data=item.result_data) for item in items]
    answers = await reports.report(work, principal, TaskStatus.COMPLETED, batch)
    return _batch_results(answers, items)


async def fail_many(work: Work, principal: Principal, items: list[Any]) -> list[dict[str, Any]]:
    """`POST /ains/tasks/fail-batch`: items as the body of `/fail`, each with its task_id; retry rules as `/fail`."""
    batch = [
        reports.Report(
            item.task_id,
            item.attempt,
            error_message=item.error_message,
            retryable=item.retryable,
            retry_after_seconds=item.retry_after_seconds,
        )
        for item in items
    ]
    answers = await reports.report(work, principal, TaskStatus.FAILED, batch)
    return _batch_results(answers, items)


async def fail_attempt(
    work: Work,
    task: Task,
    error_message: str,
    *,
    retryable: bool,
    outcome: str = lifecycle.OUTCOME_FAILED,
    retry_after_seconds: float | None = None,
) -> None:
    """A failed attempt: back to the queue after the retry delay while retries are left (SPEC 4), else FAILED."""
    if retryable and task.retry_count < task.max_retries:
        delay = retry.retry_delay(
            task.retry_policy,
            task.retry_count,
            retry.RetryBases.from_settings(work.settings),
            requested_seconds=retry_after_seconds,
            jitter=task.retry_jitter,
        )
        retry_at = work.now + timedelta(seconds=delay)
        task.retry_count += 1
        task.last_error = error_message
        await lifecycle.requeue(work, task, outcome=outcome, error=error_message, retry_at=retry_at)
        work.after_commit(RETRIES_SCHEDULED.inc)
    else:
        await lifecycle.fail(work, task, outcome=outcome, error=error_message)
        work.after_commit(TASKS_FAILED.labels(outcome).inc)


async def release_agent_tasks(work: Work, agent_id: str) -> int:
    """Put every task an agent holds back in the queue without using a retry (deregistration)."""
    held = await held_tasks(work.session, agent_id)
    for task in held:
        await lifecycle.requeue(work, task, outcome=lifecycle.OUTCOME_RELEASED)
    return len(held)


def require_owner(principal: Principal, task: Task, action: str) -> None:
    """Cancelling and re-prioritising belong to the task's client (or the admin), not to the agent running it."""
    if not (principal.is_admin or task.client_id == principal.id):
        raise Forbidden(f"Only the task's owner or an admin may {action} it")


async def cancel(work: Work, principal: Principal, task_id: str, reason: str) -> Task:
    task = await get_visible(work.session, principal, task_id, for_update=True)
    require_owner(principal, task, "cancel")
    await lifecycle.cancel(work, task, cancelled_by=principal.id, reason=reason)
    audit.record(
        work,
        principal,
        "task.cancel",
        "task",
        task.task_id,
        {"reason": reason, "assigned_agent_id": task.assigned_agent_id},
    )
    return task


async def set_priority(work: Work, principal: Principal, task_id: str, priority: int) -> Task:
    task = await get_visible(work.session, principal, task_id, for_update=True)
    require_owner(principal, task, "re-prioritise")
    if task.status in FINAL_STATUSES:
        raise Conflict(f"Task {task_id} is {task.status}; its priority can no longer change")
    previous = task.priority
    task.priority = priority
    task.queue_position = lifecycle.queue_position(task.available_at, priority, work.settings)
    task.updated_at = work.now
    if principal.is_admin:
        audit.record(work, principal, "task.priority", "task", task_id, {"from": previous, "to": priority})
    return task


async def take_cancelled_for_agent(work: Work, agent_id: str) -> list[str]:
    """Ids of the agent's tasks cancelled since it was last told, in the order they were cancelled; each is told
    once (a concurrent heartbeat's statement finds them told when it gets their rows)."""
    rows = (await work.session.execute(queries.TAKE_CANCELLED, {"now": work.now, "agent_id": agent_id})).all()
    rows = sorted(rows, key=lambda row: (row.cancelled_at, row.task_id))
    for row in rows:
        note_changed_key(work.session, TASK_CACHE, row.task_id)
    return [row.task_id for row in rows]
