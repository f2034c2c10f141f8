"""An agent's reports on the tasks it holds: `/start`, `/complete`, `/fail` and the batch forms (SPEC 3, 14).

One request, one statement per concern, whatever the number of items:

1. the agent row, locked (complete and fail: the trust chain's head; lock order is agent, then tasks);
2. the move: start and complete are one guarded `UPDATE … FROM <items> … RETURNING` (`queries.START`,
   `queries.COMPLETE`); fail reads its tasks locked (`queries.REPORTED_LOCKED`), computes each retry in
   Python (`lifecycle.failure_columns`) and writes them with one guarded executemany (`queries.FAIL`);
3. only when some item did not move: one read of those tasks to say why (404, 409, or a repeat);
4. the attempt rows (one executemany), the trust records and the agent (`trust.record_outcomes`: one INSERT,
   one UPDATE), the outbox (`outbox.emit_many`: one INSERT of events, one of deliveries).

Every move is checked against `lifecycle.ALLOWED_MOVES` twice over: the guarded statements' WHERE lists
the allowed-from statuses, and a refused item is judged by `lifecycle.check_move` and `check_attempt`.

Reports are idempotent per attempt (SPEC 14): the same report again for the task's current attempt by the
agent that made it is answered with the task as it is, and changes nothing. Items of one batch are
answered as if sent one after the other: a task named twice moves at most once, and the later item is
judged against the task as the earlier one left it (in the order of the items: the k-th item naming a
task goes in the k-th round of statements, which only batches that repeat a task need).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from ains.core.cache import TASK as TASK_CACHE
from ains.core.database import dialect_name, note_changed_key
from ains.core.errors import AinsError, Conflict, Forbidden, NotFound, PayloadTooLarge
from ains.core.metrics import RETRIES_SCHEDULED, TASKS_FAILED
from ains.core.principal import Principal
from ains.core.schemas import json_size
from ains.core.work import Work
from ains.tasks import lifecycle, queries
from ains.tasks.answers import TaskRow
from ains.tasks.schemas import FINAL_STATUSES, TaskStatus
from ains.trust import service as trust
from ains.webhooks import outbox
from ains.webhooks.schemas import EventName


@dataclass
class Report:
    """One report: the body of `/start`, `/complete` or `/fail`, for the task named."""

    task_id: str
    attempt: int | None = None
    result_data: dict[str, Any] = field(default_factory=dict)
    error_message: str = ""
    retryable: bool = True
    retry_after_seconds: float | None = None


class AlreadyReported(Exception):
    """The same report again for the task's current attempt (its answer was lost): answer with the task as it is."""

    def __init__(self, task: Any) -> None:
        self.task = task


# The attempt outcome each report writes: a repeat must find the same one.
_REPORTED_OUTCOME = {TaskStatus.COMPLETED: lifecycle.OUTCOME_COMPLETED, TaskStatus.FAILED: lifecycle.OUTCOME_FAILED}


def judge(row: Any, task_id: str, agent_id: str, to: TaskStatus, attempt: int | None) -> None:
    """Raise why this report cannot move the task (404, 409), or `AlreadyReported` for a repeat; None if it can.

    `row` is a task row with `reported_outcome` (this agent's outcome of the current attempt) and `held_before`.
    """
    if row is None:
        raise NotFound(f"Task {task_id} not found")
    try:
        if row.assigned_agent_id != agent_id:
            if not row.held_before:
                raise NotFound(f"Task {task_id} not found")
            raise Conflict(f"Task {task_id} is {row.status} and no longer assigned to you")
        lifecycle.check_move(row, to)
        lifecycle.check_attempt(row, attempt)
    except Conflict:
        if _is_repeat(row, agent_id, to, attempt):
            raise AlreadyReported(row) from None
        raise


def _is_repeat(row: Any, agent_id: str, to: TaskStatus, attempt: int | None) -> bool:
    if row.attempt == 0 or (attempt is not None and attempt != row.attempt):
        return False
    if to == TaskStatus.ACTIVE:
        return row.status == TaskStatus.ACTIVE and row.assigned_agent_id == agent_id
    return row.reported_outcome is not None and row.reported_outcome == _REPORTED_OUTCOME.get(to)


@dataclass
class _Move:
    index: int  # the item that moved the task
    before: Any  # the task as it was (fail) or as the move returned it (start, complete)
    after: Any  # the task now


async def report(work: Work, principal: Principal, to: TaskStatus, reports: list[Report]) -> list[Any]:
    """Move each report's task to `to` (ACTIVE, COMPLETED or FAILED, the last meaning "failed: retry or fail").

    Answers one entry per report, in order: the task (an attribute row) after the report, or the `AinsError`
    that refused it. Nothing is written for a refused report.
    """
    if principal.kind != "agent":
        raise Forbidden("Only the assigned agent may report on a task")
    agent_id, settings = principal.id, work.settings
    answers: list[Any] = [None] * len(reports)
    if to == TaskStatus.COMPLETED:
        for index, item in enumerate(reports):
            if json_size(item.result_data) > settings.max_input_bytes:
                answers[index] = PayloadTooLarge(f"result_data is larger than {settings.max_input_bytes} bytes")
    agent = await trust.lock_agent_row(work.session, agent_id) if to != TaskStatus.ACTIVE else None

    moves: dict[str, _Move] = {}
    if to == TaskStatus.FAILED:
        await _fail(work, agent_id, reports, answers, moves)
    else:
        await _start_or_complete(work, agent_id, to, reports, answers, moves)

    ordered = sorted(moves.values(), key=lambda move: move.index)
    await _consequences(work, agent_id, agent, to, reports, ordered)
    if to != TaskStatus.ACTIVE:  # dependents and workflows of the tasks that became final (SPEC 17)
        final = [move.after for move in ordered if move.after.status in FINAL_STATUSES]
        await lifecycle.finished(work, final)
    return answers


def _rounds(reports: list[Report], answers: list[Any]) -> list[list[int]]:
    """The items still to answer, in rounds: the k-th item naming a task is in round k."""
    rounds: list[list[int]] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(reports):
        if answers[index] is not None:
            continue
        k = seen.get(item.task_id, 0)
        seen[item.task_id] = k + 1
        if k == len(rounds):
            rounds.append([])
        rounds[k].append(index)
    return rounds


def _after_move(row: Any) -> TaskRow:
    """A task moved by this request, as a later item of the same request sees it (no repeat of its own move)."""
    return TaskRow(row._mapping if hasattr(row, "_mapping") else row, reported_outcome=None, held_before=True)


async def _reported(session: AsyncSession, agent_id: str, task_ids: list[str], *, lock: bool) -> dict[str, Any]:
    dialect = dialect_name(session)
    statement = (queries.REPORTED_LOCKED if lock else queries.REPORTED)[dialect]
    ids: Any = task_ids if dialect == "postgresql" else json.dumps(task_ids)
    rows = await session.execute(statement, {"ids": ids, "agent_id": agent_id})
    return {row.task_id: row for row in rows}


def _answer_refusal(
    answers: list[Any], index: int, row: Any, task_id: str, agent_id: str, to: TaskStatus, attempt: Any
) -> bool:
    """Judge item `index` against `row`; record the refusal or the repeat. True when the item may move."""
    try:
        judge(row, task_id, agent_id, to, attempt)
    except AlreadyReported as repeat:
        answers[index] = TaskRow(repeat.task._mapping) if hasattr(repeat.task, "_mapping") else repeat.task
        return False
    except AinsError as exc:
        answers[index] = exc
        return False
    return True


async def _start_or_complete(
    work: Work, agent_id: str, to: TaskStatus, reports: list[Report], answers: list[Any], moves: dict[str, _Move]
) -> None:
    session, now = work.session, work.now
    statement = (queries.START if to == TaskStatus.ACTIVE else queries.COMPLETE)[dialect_name(session)]
    for round_ in _rounds(reports, answers):
        candidates = []
        for index in round_:
            item = reports[index]
            moved = moves.get(item.task_id)
            if moved is None:
                candidates.append(index)
            elif _answer_refusal(answers, index, moved.after, item.task_id, agent_id, to, item.attempt):
                answers[index] = Conflict(f"Task {item.task_id} changed while this report was made; send it again")
        if not candidates:
            continue
        items = [
            {"task_id": reports[i].task_id, "attempt": reports[i].attempt, "result_data": reports[i].result_data}
            for i in candidates
        ]
        rows = await session.execute(statement, {"items": json.dumps(items), "now": now, "agent_id": agent_id})
        returned = {row.task_id: row for row in rows}
        for index in candidates:
            row = returned.get(reports[index].task_id)
            if row is not None:
                moves[row.task_id] = _Move(index, row, _after_move(row))
                answers[index] = row
        missing = [i for i in candidates if answers[i] is None]
        if missing:
            known = await _reported(session, agent_id, sorted({reports[i].task_id for i in missing}), lock=False)
            for index in missing:
                item = reports[index]
                row = known.get(item.task_id)
                if _answer_refusal(answers, index, row, item.task_id, agent_id, to, item.attempt):
                    # It could move now, but did not when asked: something changed it in between.
                    answers[index] = Conflict(f"Task {item.task_id} changed while this report was made; send it again")


async def _fail(work: Work, agent_id: str, reports: list[Report], answers: list[Any], moves: dict[str, _Move]) -> None:
    session, now = work.session, work.now
    wanted = sorted({item.task_id for index, item in enumerate(reports) if answers[index] is None})
    if not wanted:
        return
    current: dict[str, Any] = await _reported(session, agent_id, wanted, lock=True)
    writes = []
    for index, item in enumerate(reports):
        if answers[index] is not None:
            continue
        row = current.get(item.task_id)
        if not _answer_refusal(answers, index, row, item.task_id, agent_id, TaskStatus.FAILED, item.attempt):
            continue
        assert row is not None, "a missing task is answered 404 by _answer_refusal"
        try:
            _status, values = lifecycle.failure_columns(
                row,
                item.error_message,
                retryable=item.retryable,
                retry_after_seconds=item.retry_after_seconds,
                now=now,
                settings=work.settings,
            )
        except AinsError as exc:
            answers[index] = exc
            continue
        after = TaskRow(getattr(row, "_mapping", row), **values)
        after.update(reported_outcome=None, held_before=True)
        moves[item.task_id] = _Move(index, row, after)
        current[item.task_id] = after
        answers[index] = after
        writes.append({**values, "now": now, "task_id": item.task_id, "agent_id": agent_id, "attempt": row.attempt})
    if writes:
        for write in writes:
            for name in ("updated_at", "lease_expires_at", "deadline_at"):  # the statement sets these itself
                del write[name]
        await session.execute(queries.FAIL, writes)


async def _consequences(
    work: Work, agent_id: str, agent: Any, to: TaskStatus, reports: list[Report], moves: list[_Move]
) -> None:
    """The attempt rows, trust, outbox, cache and wake-ups of the moves made, in the order of their items."""
    if not moves:
        return
    session, now = work.session, work.now
    # PostgreSQL's completing statement wrote the attempt rows already (see queries._ATTEMPT_WRITES).
    attempts_written = to == TaskStatus.COMPLETED and queries.ATTEMPTS_WRITTEN_BY_MOVE[dialect_name(session)]
    events: list[tuple[EventName, Any, str | None, str | None]] = []
    outcomes: list[trust.Outcome] = []
    if to == TaskStatus.ACTIVE:
        started = [{"now": now, "task_id": move.after.task_id, "attempt": move.after.attempt} for move in moves]
        await session.execute(queries.ATTEMPT_STARTED, started)
        for move in moves:
            if move.after.deadline_at is not None:
                work.announce_deadline(lifecycle.DEADLINE_TIMEOUT, move.after.deadline_at)
            events.append((EventName.TASK_STARTED, move.after, agent_id, None))
    else:
        finished = []
        for move in moves:
            task, item = move.after, reports[move.index]
            moves_trust = trust.moves_trust(move.before, agent_id)
            if to == TaskStatus.COMPLETED:
                finished.append(_finished(now, task, lifecycle.OUTCOME_COMPLETED, None))
                outcomes.append(trust.Outcome(task.task_id, True, moves_trust, started_at=task.started_at))
                events.append((EventName.TASK_COMPLETED, task, agent_id, None))
                continue
            error = item.error_message
            finished.append(_finished(now, task, lifecycle.OUTCOME_FAILED, error))
            outcomes.append(trust.Outcome(task.task_id, False, moves_trust, reason=error))
            reason = "error"  # lifecycle's reason for an attempt that ended `failed`
            if task.status == TaskStatus.PENDING:
                work.announce_task(task.capability_required)
                events.append((EventName.TASK_RETRYING, task, agent_id, reason))
                work.after_commit(RETRIES_SCHEDULED.inc)
            else:
                events.append((EventName.TASK_FAILED, task, agent_id, reason))
                work.after_commit(TASKS_FAILED.labels(lifecycle.OUTCOME_FAILED).inc)
        if not attempts_written:
            await session.execute(queries.ATTEMPT_FINISHED, finished)
        await trust.record_outcomes(work, agent, outcomes)
    await outbox.emit_many(work, events)
    for move in moves:
        note_changed_key(session, TASK_CACHE, move.after.task_id)


def _finished(now: datetime, task: Any, outcome: str, error: str | None) -> dict[str, Any]:
    return {"now": now, "task_id": task.task_id, "attempt": task.attempt, "outcome": outcome, "error": error}
