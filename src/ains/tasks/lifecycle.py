"""The task state machine, written once as data, and the one function that moves a task.

Every path that changes a task's status (claims, start, complete, fail,
leases, lost agents, deregistration, cancellation) is checked against
`ALLOWED_MOVES`. The object paths go through the named transitions here
(`assign`, `start`, `fail`, `requeue`, `cancel`), which also keep the attempt
history and the stored queue fields and deadlines in step with the status. The hot
paths write the same columns with one guarded statement each
(`ains.tasks.queries`): their WHERE lists `allowed_from(to)`, and what they set is
written down here beside the transitions (`claim_columns`, `failure_columns`) or in
the statement itself (start, complete), to be kept in step with them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from ains.core.config import Settings
from ains.core.errors import Conflict
from ains.core.transaction_state import Memo
from ains.core.work import Work
from ains.tasks import retry
from ains.tasks.models import Task, TaskAttempt
from ains.tasks.schemas import FINAL_STATUSES, HELD_STATUSES, TaskStatus
from ains.trust import service as trust
from ains.webhooks import outbox
from ains.webhooks.schemas import EventName

ALLOWED_MOVES: dict[TaskStatus, frozenset[TaskStatus]] = {
    # dependencies not all COMPLETED (SPEC 17): PENDING when the last one completes, or CANCELLED
    TaskStatus.WAITING: frozenset({TaskStatus.PENDING, TaskStatus.CANCELLED}),
    TaskStatus.PENDING: frozenset({TaskStatus.ASSIGNED, TaskStatus.CANCELLED}),
    # back to PENDING: lease expired, agent lost or deregistered
    TaskStatus.ASSIGNED: frozenset({TaskStatus.ACTIVE, TaskStatus.PENDING, TaskStatus.CANCELLED}),
    # back to PENDING: a retry, or the agent lost or deregistered
    TaskStatus.ACTIVE: frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.PENDING, TaskStatus.CANCELLED}),
    TaskStatus.COMPLETED: frozenset(),
    TaskStatus.FAILED: frozenset(),
    TaskStatus.CANCELLED: frozenset(),
}

# Kinds of stored deadline, for waking the duty that watches each.
DEADLINE_LEASE = "lease"
DEADLINE_TIMEOUT = "timeout"

# How an attempt ended, as written in the attempt history.
OUTCOME_COMPLETED = "completed"
OUTCOME_FAILED = "failed"
OUTCOME_TIMEOUT = "timeout"
OUTCOME_LEASE_EXPIRED = "lease_expired"
OUTCOME_AGENT_LOST = "agent_lost"
OUTCOME_RELEASED = "released"
OUTCOME_CANCELLED = "cancelled"

# The `reason` a task.failed or task.retrying event gives, by how the attempt ended.
_REASONS = {OUTCOME_FAILED: "error", OUTCOME_TIMEOUT: "timeout", OUTCOME_AGENT_LOST: "agent_lost"}

# Attempt endings that cost the agent trust: an explicit failure, a timeout, going silent.
TRUST_FAILURES = frozenset({OUTCOME_FAILED, OUTCOME_TIMEOUT, OUTCOME_AGENT_LOST})


def allowed_from(to: TaskStatus) -> frozenset[TaskStatus]:
    """The statuses a task may move to `to` from: the WHERE of every guarded statement that moves tasks."""
    return frozenset(status for status, targets in ALLOWED_MOVES.items() if to in targets)


def check_move(task: Any, to: TaskStatus) -> None:
    if to not in ALLOWED_MOVES[task.status]:
        raise Conflict(f"Task {task.task_id} is {task.status}; it cannot become {to}")


def check_attempt(task: Any, attempt: int | None) -> None:
    """Fencing: an answer about an attempt that was already given up changes nothing."""
    if attempt is not None and attempt != task.attempt:
        raise Conflict(
            f"Attempt {attempt} of task {task.task_id} is stale; the current attempt is {task.attempt} "
            f"and the task is {task.status}"
        )


def queue_position(available_at: datetime, priority: int, settings: Settings) -> float:
    return available_at.timestamp() - priority * settings.aging_interval_seconds


# Attempt rows this transaction created or loaded, by (task_id, attempt).
ATTEMPT_ROWS: Memo[dict[tuple[str, int], TaskAttempt]] = Memo("task_attempts", dict)


async def load_current_attempts(work: Work, tasks: list[Task]) -> None:
    """Read the current attempt row of each task in one statement, so moving them changes the rows in one flush."""
    held = [task.task_id for task in tasks if task.attempt > 0]
    if not held:
        return
    rows = await work.session.scalars(
        select(TaskAttempt)
        .join(Task, (Task.task_id == TaskAttempt.task_id) & (Task.attempt == TaskAttempt.attempt))
        .where(Task.task_id.in_(held))
    )
    known = work.memo(ATTEMPT_ROWS)
    for row in rows:
        known[(row.task_id, row.attempt)] = row


async def _update_attempt(work: Work, task: Task, **values: Any) -> None:
    """Change the task's current attempt row: in memory when this transaction holds it, else by one UPDATE."""
    row = work.memo(ATTEMPT_ROWS).get((task.task_id, task.attempt))
    if row is not None:
        for name, value in values.items():
            setattr(row, name, value)
        return
    await work.session.execute(
        update(TaskAttempt)
        .where(TaskAttempt.task_id == task.task_id, TaskAttempt.attempt == task.attempt)
        .values(**values)
    )


async def _finish_attempt(work: Work, task: Task, outcome: str, error: str | None) -> None:
    await _update_attempt(work, task, finished_at=work.now, outcome=outcome, error=error)


def _make_claimable(work: Work, task: Task, available_at: datetime | None) -> None:
    # Only a retry delay moves available_at (SPEC 6); a task released unstarted keeps its place and its age.
    if available_at is not None:
        task.available_at = available_at
    task.queue_position = queue_position(task.available_at, task.priority, work.settings)
    task.assigned_agent_id = None
    task.assigned_at = None
    task.started_at = None
    task.lease_expires_at = None
    task.deadline_at = None
    work.announce_task(task.capability_required)


async def _after_assignment(work: Work, task: Task) -> None:
    """What follows a task's assignment, however its columns were set: the attempt row, the event, the lease watch."""
    if task.lease_expires_at is not None:
        work.announce_deadline(DEADLINE_LEASE, task.lease_expires_at)
    attempt_row = TaskAttempt(
        task_id=task.task_id, attempt=task.attempt, agent_id=task.assigned_agent_id, assigned_at=work.now
    )
    work.session.add(attempt_row)
    work.memo(ATTEMPT_ROWS)[(task.task_id, task.attempt)] = attempt_row
    await outbox.emit(work, EventName.TASK_ASSIGNED, task, agent_id=task.assigned_agent_id)


async def _after_start(work: Work, task: Task) -> None:
    if task.deadline_at is not None:
        work.announce_deadline(DEADLINE_TIMEOUT, task.deadline_at)
    await _update_attempt(work, task, started_at=work.now)
    await outbox.emit(work, EventName.TASK_STARTED, task, agent_id=task.assigned_agent_id)


def claim_columns(now: datetime, settings: Settings, *, start: bool) -> dict[str, Any]:
    """What `assign` (and then `start`, with `start`) writes, as the values of the claim's one statement
    on PostgreSQL (`ains.tasks.claim`): attempt + 1, the agent, `assigned_at`, no retry time, and either the lease
    or, started, `started_at` and the deadline. Keep in step with `assign` and `start`."""
    check_claim_moves(start)
    return {
        "status": TaskStatus.ACTIVE if start else TaskStatus.ASSIGNED,
        "lease_expires_at": None if start else now + timedelta(seconds=settings.assign_lease_seconds),
        "start": start,
    }


def check_claim_moves(start: bool) -> None:
    """A claim moves PENDING tasks to ASSIGNED, and with `start` on to ACTIVE: both must be allowed moves."""
    if TaskStatus.ASSIGNED not in ALLOWED_MOVES[TaskStatus.PENDING] or (
        start and TaskStatus.ACTIVE not in ALLOWED_MOVES[TaskStatus.ASSIGNED]
    ):
        raise Conflict("A claim cannot move PENDING tasks there")


async def after_claim(work: Work, tasks: list[Task], *, start: bool) -> None:
    """The consequences of a claim whose columns and attempt rows one statement already wrote (see
    `claim_columns` and `queries.CLAIM_PICK_AND_ASSIGN`): the deadlines to watch and the webhook events."""
    if not tasks:
        return
    events: list[tuple[EventName, Any, str | None, str | None]] = []
    for task in tasks:
        if task.lease_expires_at is not None:
            work.announce_deadline(DEADLINE_LEASE, task.lease_expires_at)
        if task.deadline_at is not None:
            work.announce_deadline(DEADLINE_TIMEOUT, task.deadline_at)
        events.append((EventName.TASK_ASSIGNED, task, task.assigned_agent_id, None))
        if start:
            events.append((EventName.TASK_STARTED, task, task.assigned_agent_id, None))
    await outbox.emit_many(work, events)


# -- the named transitions ---------------------------------------------------------------------------------------
# Each moves one task inside the caller's transaction, or raises 409, over one core (`_enter`, `_settle`): the move
# is checked against ALLOWED_MOVES, the status and `updated_at` change, trust follows how the attempt ended
# (SPEC 8), and a task that became final resolves its dependents. Each then keeps its own columns, attempt row and
# webhook event (outbox) in step.


async def _enter(
    work: Work, task: Task, to: TaskStatus, *, outcome: str | None, error: str | None
) -> tuple[str, str | None]:
    """The part every move shares, before its own columns: returns the status it left and the agent holding it."""
    check_move(task, to)
    previous, holder = task.status, task.assigned_agent_id
    task.status = to
    task.updated_at = work.now
    # Failures, timeouts and lost agents cost trust; cancellations, leases and releases leave it alone.
    if outcome in TRUST_FAILURES and holder is not None:
        await trust.attempt_failed(
            work,
            holder,
            task.task_id,
            timeout=outcome == OUTCOME_TIMEOUT,
            reason=error,
            moves_trust=trust.moves_trust(task, holder),
        )
    return previous, holder


async def _settle(work: Work, task: Task) -> None:
    if task.status in FINAL_STATUSES:
        await finished(work, [task])


async def assign(work: Work, task: Task, agent_id: str) -> None:
    """PENDING → ASSIGNED to `agent_id`: a new attempt, with a lease to start it within (SQLite's claim)."""
    await _enter(work, task, TaskStatus.ASSIGNED, outcome=None, error=None)
    task.attempt += 1
    task.assigned_agent_id = agent_id
    task.assigned_at = work.now
    task.lease_expires_at = work.now + timedelta(seconds=work.settings.assign_lease_seconds)
    task.next_retry_at = None
    await _after_assignment(work, task)


async def start(work: Work, task: Task) -> None:
    """ASSIGNED → ACTIVE: the lease gives way to the task's own deadline (SQLite's claim with `start`)."""
    await _enter(work, task, TaskStatus.ACTIVE, outcome=None, error=None)
    task.started_at = work.now
    task.lease_expires_at = None
    task.deadline_at = work.now + timedelta(seconds=task.timeout_seconds)
    await _after_start(work, task)


async def fail(work: Work, task: Task, *, outcome: str, error: str) -> None:
    """→ FAILED for good: the attempt ends with `outcome` (failed, timeout, agent_lost)."""
    _previous, holder = await _enter(work, task, TaskStatus.FAILED, outcome=outcome, error=error)
    task.error_message = error
    task.last_error = error
    task.lease_expires_at = None
    task.deadline_at = None
    await _finish_attempt(work, task, outcome, error)
    await outbox.emit(work, EventName.TASK_FAILED, task, agent_id=holder, reason=_REASONS.get(outcome))
    await _settle(work, task)


async def requeue(
    work: Work, task: Task, *, outcome: str, error: str | None = None, retry_at: datetime | None = None
) -> None:
    """ASSIGNED or ACTIVE → PENDING: the attempt ends with `outcome`; with `retry_at` it is a retry that waits until
    then (a task.retrying event), else the task keeps its place in the queue (lease expired, released, lost)."""
    _previous, holder = await _enter(work, task, TaskStatus.PENDING, outcome=outcome, error=error)
    await _finish_attempt(work, task, outcome, error)
    _make_claimable(work, task, retry_at)
    if retry_at is not None:
        task.next_retry_at = task.available_at
        await outbox.emit(work, EventName.TASK_RETRYING, task, agent_id=holder, reason=_REASONS.get(outcome))


async def cancel(work: Work, task: Task, *, cancelled_by: str, reason: str) -> None:
    """→ CANCELLED from any status that is not final; the agent holding it is told through its heartbeat."""
    previous, holder = await _enter(work, task, TaskStatus.CANCELLED, outcome=None, error=None)
    task.lease_expires_at = None
    task.deadline_at = None
    task.cancelled_at = work.now
    task.cancelled_by = cancelled_by
    task.cancellation_reason = reason
    if previous in HELD_STATUSES and holder is not None:
        await _finish_attempt(work, task, OUTCOME_CANCELLED, None)
        work.announce_cancel(holder)
    await outbox.emit(work, EventName.TASK_CANCELLED, task, agent_id=holder)
    await _settle(work, task)


async def finished(work: Work, tasks: list[Any]) -> None:
    """Tasks became final in this transaction: resolve or cancel their dependents and count their workflows'
    steps (SPEC 17), in the same transaction. Every path that makes a task final calls this once for it."""
    from ains.tasks.dependencies import after_finished

    await after_finished(work, tasks)


def failure_columns(
    task: Any,
    error: str,
    *,
    retryable: bool,
    retry_after_seconds: float | None,
    now: datetime,
    settings: Settings,
) -> tuple[str, dict[str, Any]]:
    """What a reported failure of the task's current attempt writes, as (new status, the columns `/fail`'s one
    statement sets): back to PENDING after the retry delay while retries are left (SPEC 4), else FAILED.
    Keep in step with `ains.tasks.service.fail_attempt`, `requeue` and `fail`."""
    values = {
        "retry_count": task.retry_count,
        "error_message": task.error_message,
        "last_error": error,
        "available_at": task.available_at,
        "queue_position": task.queue_position,
        "assigned_agent_id": task.assigned_agent_id,
        "assigned_at": task.assigned_at,
        "started_at": task.started_at,
        "next_retry_at": task.next_retry_at,
    }
    if retryable and task.retry_count < task.max_retries:
        check_move(task, TaskStatus.PENDING)
        delay = retry.retry_delay(
            task.retry_policy,
            task.retry_count,
            retry.RetryBases.from_settings(settings),
            requested_seconds=retry_after_seconds,
            jitter=task.retry_jitter,
        )
        available_at = now + timedelta(seconds=delay)
        values |= {
            "status": TaskStatus.PENDING,
            "retry_count": task.retry_count + 1,
            "available_at": available_at,
            "queue_position": queue_position(available_at, task.priority, settings),
            "assigned_agent_id": None,
            "assigned_at": None,
            "started_at": None,
            "next_retry_at": available_at,
        }
    else:
        check_move(task, TaskStatus.FAILED)
        values |= {"status": TaskStatus.FAILED, "error_message": error}
    values |= {"updated_at": now, "lease_expires_at": None, "deadline_at": None}
    return values["status"], values
