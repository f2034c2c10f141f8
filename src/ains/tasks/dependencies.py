"""Tasks that wait for other tasks (SPEC 17): dependencies at submission, and what a task's end means for them.

Called inside the transaction that made tasks final (`after_finished`, from `lifecycle.finished`), so the
consequences commit with the change that caused them, or not at all:

- A COMPLETED task takes one off `pending_dependencies` of each dependent; a WAITING task whose count reaches
  zero becomes PENDING, its queue position counting from then (or from its `run_at`, if later). Dependents are
  found through `task_dependencies`' index on `depends_on_task_id`: only they are read, never a scan. They are
  locked in `task_id` order, so concurrent completions with shared dependents queue instead of deadlocking;
  the row lock orders them, and the one that takes the count to zero moves the task, once.
- A FAILED or CANCELLED task cancels its WAITING dependents (`cancellation_reason` "dependency <task_id>
  <status>"), and theirs, down the graph, each with its `task.cancelled` event.
- Then the hooks registered with `on_finished` (the workflows count their steps there) hear every task that
  became final, cascaded ones included, in the same transaction.

At submission (`check_dependencies`) the dependencies are locked (FOR SHARE) and read: a dependency that
completes while its dependent's submission is in flight either completed before the lock (and counts as
done) or waits for the submission to commit (and then finds the new edge and resolves it).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Float, Integer, String, Text, bindparam, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from ains.core.database import UTCDateTime, dialect_name, table_of
from ains.core.errors import Unprocessable
from ains.core.work import Work
from ains.tasks.models import Task
from ains.tasks.schemas import FINAL_STATUSES, TaskStatus
from ains.webhooks.schemas import EventName
from ains.workflows.models import TaskDependency

MAX_DEPENDS_ON = 100
CASCADE_BY = "ains"  # `cancelled_by` of a task cancelled because a dependency failed or was cancelled

# Core statements over the tasks table (plain rows by column name: `metadata`, not `task_metadata`).
TASKS = table_of(Task)
DEPS = table_of(TaskDependency)


@dataclass(frozen=True)
class Ended:
    """A task that became final in this transaction, as the `on_finished` hooks hear of it."""

    task_id: str
    status: str
    workflow_id: str | None


FinishedHook = Callable[[Work, list[Ended]], Awaitable[None]]
_FINISHED_HOOKS: list[FinishedHook] = []


def on_finished(hook: FinishedHook) -> None:
    """Call `hook(work, ended)` in every transaction that makes tasks final (once per hook)."""
    if hook not in _FINISHED_HOOKS:
        _FINISHED_HOOKS.append(hook)


def task_row(**values: Any) -> dict[str, Any]:
    """A full row for `TASKS` (every column present, unset ones None), for a multi-row INSERT."""
    row = dict.fromkeys(TASKS.c.keys())
    row.update(values)
    return row


# --- submission -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dependencies:
    task_ids: list[str]  # as given, without repeats
    pending: int  # how many are not COMPLETED yet
    ended: tuple[str, str] | None  # (task_id, status) of one that FAILED or was CANCELLED: the new task is cancelled


async def check_dependencies(
    session: AsyncSession, client_id: str, depends_on: Sequence[str], *, field: str = "depends_on"
) -> Dependencies:
    """Lock and read the dependencies of a task being submitted; unknown or other clients' ids are 422."""
    ids = list(dict.fromkeys(depends_on))
    if len(ids) > MAX_DEPENDS_ON:
        raise Unprocessable(field, f"at most {MAX_DEPENDS_ON} dependencies")
    if not ids:
        return Dependencies([], 0, None)
    query = (
        select(TASKS.c.task_id, TASKS.c.client_id, TASKS.c.status)
        .where(TASKS.c.task_id.in_(ids))
        .order_by(TASKS.c.task_id)
    )
    if dialect_name(session) == "postgresql":
        # FOR SHARE: a completion (which takes FOR UPDATE on the task) waits until this submission commits.
        query = query.with_for_update(read=True)
    found = {row.task_id: row for row in await session.execute(query)}
    for task_id in ids:
        row = found.get(task_id)
        if row is None or row.client_id != client_id:
            raise Unprocessable(field, f"unknown task {task_id!r}: dependencies must be tasks of the same client")
    pending = sum(1 for task_id in ids if found[task_id].status != TaskStatus.COMPLETED)
    ended = next(
        (
            (task_id, found[task_id].status)
            for task_id in ids
            if found[task_id].status in (TaskStatus.FAILED, TaskStatus.CANCELLED)
        ),
        None,
    )
    return Dependencies(ids, pending, ended)


def dependency_reason(task_id: str, status: str) -> str:
    return f"dependency {task_id} {status}"


async def insert_edges(session: AsyncSession, edges: Iterable[tuple[str, str]]) -> None:
    """Store (task_id, depends_on_task_id) pairs in one INSERT."""
    rows = [{"task_id": task_id, "depends_on_task_id": dep} for task_id, dep in edges]
    if rows:
        await session.execute(DEPS.insert(), rows)


# --- claim --------------------------------------------------------------------------------------------------------


async def dependency_results(session: AsyncSession, task_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """{task_id: {dependency_task_id: result_data}} for the given tasks (those without dependencies are absent)."""
    if not task_ids:
        return {}
    dep = TASKS.alias("dependency")
    rows = await session.execute(
        select(DEPS.c.task_id, DEPS.c.depends_on_task_id, dep.c.result_data)
        .join(dep, dep.c.task_id == DEPS.c.depends_on_task_id)
        .where(DEPS.c.task_id.in_(list(task_ids)))
    )
    out: dict[str, dict[str, Any]] = defaultdict(dict)
    for task_id, dependency_id, result in rows:
        out[task_id][dependency_id] = result
    return dict(out)


# --- a task became final ------------------------------------------------------------------------------------------


async def after_finished(work: Work, finished: Sequence[Any]) -> None:
    """The consequences of tasks becoming final in this transaction (each object has `task_id` and `status`;
    `workflow_id` too when known). Call once per task that became final, never twice."""
    finished = [task for task in finished if task.status in FINAL_STATUSES]
    if not finished:
        return
    workflow_of = await _workflow_ids(work.session, finished)
    ended: list[tuple[str, str]] = [(task.task_id, task.status) for task in finished]
    completed = [task_id for task_id, status in ended if status == TaskStatus.COMPLETED]
    if completed:
        await _resolve(work, completed)
    doomed = [(task_id, status) for task_id, status in ended if status in (TaskStatus.FAILED, TaskStatus.CANCELLED)]
    if doomed:
        for row in await _cascade(work, doomed):
            ended.append((row.task_id, TaskStatus.CANCELLED))
            if row.workflow_id is not None:
                workflow_of[row.task_id] = row.workflow_id
    finals = [Ended(task_id, status, workflow_of.get(task_id)) for task_id, status in ended]
    for hook in _FINISHED_HOOKS:
        await hook(work, finals)


async def _workflow_ids(session: AsyncSession, tasks: Sequence[Any]) -> dict[str, str]:
    known: dict[str, str] = {}
    unknown: list[str] = []
    for task in tasks:
        if hasattr(task, "workflow_id"):
            if task.workflow_id is not None:
                known[task.task_id] = task.workflow_id
        else:
            unknown.append(task.task_id)
    if unknown:
        rows = await session.execute(
            select(TASKS.c.task_id, TASKS.c.workflow_id).where(
                TASKS.c.task_id.in_(unknown), TASKS.c.workflow_id.is_not(None)
            )
        )
        known.update({task_id: workflow_id for task_id, workflow_id in rows})
    return known


async def _lock_waiting(session: AsyncSession, task_ids: Iterable[str]) -> list[Any]:
    """Lock the WAITING ones among these tasks, in task_id order (one order for every transaction)."""
    ids = sorted(set(task_ids))
    if not ids:
        return []
    rows: list[Any] = []
    for start in range(0, len(ids), 1000):
        rows.extend(
            await session.execute(
                select(
                    TASKS.c.task_id,
                    TASKS.c.available_at,
                    TASKS.c.priority,
                    TASKS.c.capability_required,
                )
                .where(TASKS.c.task_id.in_(ids[start : start + 1000]), TASKS.c.status == TaskStatus.WAITING)
                .order_by(TASKS.c.task_id)
                .with_for_update()
            )
        )
    return rows


async def _dependents(session: AsyncSession, task_ids: Sequence[str]) -> list[tuple[str, str]]:
    """(dependent, dependency) edges out of these tasks, through the index on depends_on_task_id."""
    if not task_ids:
        return []
    dialect = dialect_name(session)
    ids: Any = list(task_ids) if dialect == "postgresql" else json.dumps(list(task_ids))
    rows = await session.execute(_DEPENDENTS[dialect], {"ids": ids})
    return [(row.task_id, row.depends_on_task_id) for row in rows]


# Plain SQL: it runs after every report that ends a task, which is a lean transaction on PostgreSQL (see
# `ains.core.database.DriverSession`); most tasks have no dependents, so that is all the report needs of this module.
_DEPENDENTS = {
    "postgresql": text(
        "SELECT task_id, depends_on_task_id FROM task_dependencies WHERE depends_on_task_id = ANY(:ids)"
    ).bindparams(bindparam("ids", type_=ARRAY(String))),
    "sqlite": text(
        "SELECT task_id, depends_on_task_id FROM task_dependencies"
        " WHERE depends_on_task_id IN (SELECT value FROM json_each(:ids))"
    ),
}


_DECREMENT = (
    update(TASKS)
    .where(TASKS.c.task_id == bindparam("b_task_id"), TASKS.c.status == TaskStatus.WAITING)
    .values(pending_dependencies=TASKS.c.pending_dependencies - bindparam("b_n", type_=Integer()))
)


async def _resolve(work: Work, completed: list[str]) -> None:
    session, now = work.session, work.now
    edges = await _dependents(session, completed)
    if not edges:
        return
    counts: dict[str, int] = defaultdict(int)
    for dependent, _ in edges:
        counts[dependent] += 1
    waiting = await _lock_waiting(session, counts)
    if not waiting:
        return
    # Rows are locked: read-modify-write is safe, and one executemany takes each count down.
    await session.execute(
        _DECREMENT.execution_options(synchronize_session=False),
        [{"b_task_id": row.task_id, "b_n": counts[row.task_id]} for row in waiting],
    )
    zero: set[str] = set()
    for chunk in _chunks([row.task_id for row in waiting]):
        zero.update(
            await session.scalars(
                select(TASKS.c.task_id).where(TASKS.c.task_id.in_(chunk), TASKS.c.pending_dependencies <= 0)
            )
        )
    ready = [row for row in waiting if row.task_id in zero]
    if not ready:
        return
    aging = work.settings.aging_interval_seconds
    values = []
    for row in ready:
        available_at = max(row.available_at, now)  # a run_at still ahead keeps its time
        values.append(
            {
                "b_task_id": row.task_id,
                "b_available_at": available_at,
                "b_queue_position": available_at.timestamp() - row.priority * aging,
            }
        )
        work.announce_task(row.capability_required)
    await session.execute(
        update(TASKS)
        .where(TASKS.c.task_id == bindparam("b_task_id"), TASKS.c.status == TaskStatus.WAITING)
        .values(
            status=TaskStatus.PENDING,
            available_at=bindparam("b_available_at", type_=UTCDateTime()),
            queue_position=bindparam("b_queue_position", type_=Float()),
            updated_at=now,
        )
        .execution_options(synchronize_session=False),
        values,
    )
    _note_changed(session, [row.task_id for row in ready])


async def _cascade(work: Work, doomed: list[tuple[str, str]]) -> list[Any]:
    """Cancel the WAITING dependents of these ended tasks, and theirs, down the graph; the cancelled rows."""
    from ains.webhooks import outbox

    session, now = work.session, work.now

    cancelled: list[Any] = []
    frontier = doomed
    seen: set[str] = set()
    while frontier:
        status_of = dict(frontier)
        edges = await _dependents(session, sorted(status_of))
        cause: dict[str, str] = {}
        for dependent, dependency in sorted(edges):
            if dependent not in seen:
                cause.setdefault(dependent, dependency)
        waiting = await _lock_waiting(session, cause)
        if not waiting:
            break
        reasons = {row.task_id: dependency_reason(cause[row.task_id], status_of[cause[row.task_id]]) for row in waiting}
        await session.execute(
            update(TASKS)
            .where(TASKS.c.task_id == bindparam("b_task_id"), TASKS.c.status == TaskStatus.WAITING)
            .values(
                status=TaskStatus.CANCELLED,
                cancelled_at=now,
                cancelled_by=CASCADE_BY,
                cancellation_reason=bindparam("b_reason", type_=Text()),
                updated_at=now,
            )
            .execution_options(synchronize_session=False),
            [{"b_task_id": task_id, "b_reason": reason} for task_id, reason in reasons.items()],
        )
        ids = list(reasons)
        rows: list[Any] = []
        for chunk in _chunks(ids):
            rows.extend(
                await session.execute(select(TASKS).where(TASKS.c.task_id.in_(chunk)).order_by(TASKS.c.task_id))
            )
        _note_changed(session, ids)
        seen.update(ids)
        await outbox.emit_many(work, [(EventName.TASK_CANCELLED, _as_task(row), None, None) for row in rows])
        cancelled.extend(rows)
        frontier = [(row.task_id, TaskStatus.CANCELLED) for row in rows]
    return cancelled


def _chunks(ids: Sequence[str], size: int = 1000) -> Iterable[list[str]]:
    """Ids in lists short enough for one IN (...) on either database."""
    for start in range(0, len(ids), size):
        yield list(ids[start : start + size])


def _as_task(row: Any) -> Any:
    """A row of TASKS read like a Task (the outbox reads `task_metadata`, `status` and such by attribute)."""
    values = dict(row._mapping)
    values["task_metadata"] = values.pop("metadata", None)
    return SimpleNamespace(**values)


def _note_changed(session: AsyncSession, task_ids: Iterable[str]) -> None:
    from ains.core.cache import TASK as TASK_CACHE
    from ains.core.database import note_changed_key

    for task_id in task_ids:
        note_changed_key(session, TASK_CACHE, task_id)
