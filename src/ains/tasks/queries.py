"""The hot statements of the tasks domain, in one place so their shape can be read at a glance.

Claim (`ains.tasks.claim`) and submission (`ains.tasks.submission`) use the
statements named here too; the reports (`ains.tasks.reports`) and the task read
use nothing else. Plain SQL where SQLAlchemy would otherwise build, key and
compile a statement per call; the few spots where PostgreSQL and SQLite differ
are per-dialect fragments, so both run the same statement shape.

Every statement that moves a task is guarded: its WHERE names the statuses the
move may start from (`lifecycle.allowed_from`, read from `lifecycle.ALLOWED_MOVES`),
the holder and the attempt (fencing), so a row that changed meanwhile is left alone.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Boolean, Float, Integer, String, bindparam, column, text
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.selectable import TextualSelect

from ains.auth.quota import TAKE
from ains.core.bulk import BulkInsert
from ains.core.database import UTCDateTime, table_of
from ains.tasks import lifecycle
from ains.tasks.models import Task
from ains.tasks.schemas import TaskStatus

# (attribute, column) of every task column. Statements return them under the attribute's name (`metadata` as
# `task_metadata`), so a row reads like a `Task` object: `row.task_metadata`, `row.status`.
TASK_COLUMNS: list[tuple[str, Any]] = [
    (attribute.key, attribute.columns[0]) for attribute in sa_inspect(Task).column_attrs
]
TASK_ATTRIBUTES = [attribute for attribute, _ in TASK_COLUMNS]

# SELECT list for Core queries built with SQLAlchemy (listing, read): rows with the attribute names.
TASK_SELECT = [col.label(attribute) for attribute, col in TASK_COLUMNS]

_RETURNING = ", ".join(f"tasks.{col.name} AS {attribute}" for attribute, col in TASK_COLUMNS)
_TYPED = [column(attribute, col.type) for attribute, col in TASK_COLUMNS]


def _statuses(statuses: Any) -> str:
    """SQL list of status literals (members of `TaskStatus`, never input)."""
    assert all(isinstance(status, TaskStatus) for status in statuses)
    return ", ".join(f"'{status}'" for status in sorted(statuses))


# --- read ---------------------------------------------------------------------------------------------------------
# `GET /ains/tasks/{id}` on a cache miss: one task, as a row with the task's attribute names.
READ_TASK = text(f"SELECT {_RETURNING} FROM tasks WHERE tasks.task_id = :task_id").columns(*_TYPED)

# --- claim (PostgreSQL; SQLite claims through the ORM and `lifecycle.assign`, see `ains.tasks.claim`) ----------
# PostgreSQL's claim, as few statements as it can be: record the heartbeat, which locks the agent (one agent's
# claims take turns, so its free concurrency cannot be raced); then one statement counts what the agent holds,
# picks and assigns, and inserts the attempt rows. The count must come from that second statement: a statement
# that waits for a row lock keeps the snapshot it took before waiting, so only a later one sees what a
# concurrent claim of the same agent committed. Plain SQL where SQLAlchemy would otherwise build and key a
# statement per call.
CLAIM_LOCK_AGENT = text(
    """
    UPDATE agents SET last_heartbeat_at = :now,
        status = CASE WHEN status = 'INACTIVE' THEN 'AVAILABLE' ELSE status END
    WHERE agent_id = :agent_id
    RETURNING capabilities, trust_score, max_concurrency, status
    """
).bindparams(bindparam("now", type_=UTCDateTime))


# Pick and assign in one statement; the columns it sets are `lifecycle.claim_columns`. It takes at most
# :max_tasks, and no more than the agent's :free concurrency less what it already holds (`budget`, read through
# ix_tasks_held, which has only the tasks agents hold). With a limit it cannot know when planning, PostgreSQL
# would join `picked` to a scan of the whole table; `= ANY(ARRAY(...))`
# keeps the update to one primary-key lookup per picked task (tests/tasks/test_claim_plan.py counts the rows).
# Each of the agent's capabilities is walked on its own, in queue order along ix_tasks_claim_order, and the
# heads are merged: `capability_required = ANY(:capabilities)` over the whole queue made PostgreSQL sort every
# pending task of those capabilities on every claim (35-130 ms at 12,000 queued, against 0.2 ms now). With
# several capabilities the merge may leave rows a head locked; they are free again when the claim commits (see
# `claim._pick_and_assign`, which the budget returned as `claim_budget` tells whether it took all it could).
# The same statement writes each claimed task's attempt row (one round trip fewer per claim). It returns the
# columns by name, under their attribute names, in the model's order (`.columns()` matches them by position; a
# migration may have added them to the table elsewhere): rows that read like `Task` objects, and no ORM object
# is made.
CLAIM_PICK_AND_ASSIGN = (
    text(
        f"""
        WITH budget AS (SELECT GREATEST(0, LEAST(:max_tasks, :free - count(*))) AS n FROM tasks
            WHERE tasks.assigned_agent_id = :agent_id AND tasks.status IN ('ASSIGNED', 'ACTIVE')),
        picked AS (SELECT head.task_id FROM unnest(:capabilities) AS wanted_capability(capability)
            CROSS JOIN LATERAL (SELECT tasks.task_id, tasks.queue_position FROM tasks
                WHERE tasks.status = 'PENDING' AND tasks.capability_required = wanted_capability.capability
                  AND tasks.available_at <= :now
                  AND (tasks.min_trust_score IS NULL OR tasks.min_trust_score <= :trust_score)
                  AND tasks.priority <= :max_priority
                ORDER BY tasks.queue_position, tasks.task_id LIMIT (SELECT n FROM budget)
                FOR UPDATE SKIP LOCKED) AS head
            ORDER BY head.queue_position, head.task_id LIMIT (SELECT n FROM budget)),
        assigned AS (UPDATE tasks SET status = :status, attempt = tasks.attempt + 1, assigned_agent_id = :agent_id,
            assigned_at = :now, lease_expires_at = :lease_expires_at, next_retry_at = NULL, updated_at = :now,
            started_at = CASE WHEN :start THEN :now ELSE tasks.started_at END,
            deadline_at = CASE WHEN :start THEN :now + make_interval(secs => tasks.timeout_seconds)
                          ELSE tasks.deadline_at END
        WHERE tasks.task_id = ANY(ARRAY(SELECT task_id FROM picked))
        RETURNING {_RETURNING}),
        attempts AS (INSERT INTO task_attempts (task_id, attempt, agent_id, assigned_at, started_at)
            SELECT task_id, attempt, :agent_id, :now, CASE WHEN :start THEN CAST(:now AS TIMESTAMPTZ) END FROM assigned)
        SELECT assigned.*, (SELECT n FROM budget) AS claim_budget FROM assigned
        """
    )
    .bindparams(
        bindparam("capabilities", type_=ARRAY(String)),
        bindparam("now", type_=UTCDateTime),
        bindparam("lease_expires_at", type_=UTCDateTime),
        bindparam("start", type_=Boolean),
    )
    .columns(*_TYPED, column("claim_budget", Integer))
)


# The agent's tasks cancelled since it was last told (a heartbeat's answer, SPEC 7), marked told. A concurrent
# heartbeat of the same agent waits for these rows and then finds them told: each is told once.
TAKE_CANCELLED = (
    text(
        """
        UPDATE tasks SET cancel_acknowledged_at = :now
        WHERE assigned_agent_id = :agent_id AND status = 'CANCELLED' AND cancel_acknowledged_at IS NULL
        RETURNING task_id, cancelled_at
        """
    )
    .bindparams(bindparam("now", type_=UTCDateTime))
    .columns(column("task_id", String), column("cancelled_at", UTCDateTime))
)


# --- reports -----------------------------------------------------------------------------------------------------
# Items travel as one JSON array parameter, so a batch of fifty is one statement: PostgreSQL unpacks it with
# jsonb_to_recordset, SQLite with json_each. Only the first item of a task is in it (see `reports`).

_ITEMS = {
    "postgresql": ("jsonb_to_recordset(CAST(:items AS JSONB)) AS v(task_id TEXT, attempt INTEGER, result_data JSONB)"),
    "sqlite": (
        "(SELECT json_extract(value, '$.task_id') AS task_id, json_extract(value, '$.attempt') AS attempt,"
        " json_extract(value, '$.result_data') AS result_data FROM json_each(:items)) AS v"
    ),
}
# A started task's deadline: now + its timeout. SQLite keeps times as text with microseconds; whole seconds
# added by strftime keep them, so they are copied from `:now`.
_DEADLINE = {
    "postgresql": ":now + make_interval(secs => tasks.timeout_seconds)",
    "sqlite": "strftime('%Y-%m-%d %H:%M:%S', :now, '+' || tasks.timeout_seconds || ' seconds') || substr(:now, 20)",
}

_GUARD = """tasks.task_id = v.task_id AND tasks.assigned_agent_id = :agent_id AND tasks.status IN ({from_})
    AND tasks.attempt = COALESCE(v.attempt, tasks.attempt)"""

# `/start`: ASSIGNED → ACTIVE, with the timeout's deadline; the lease ends.
_START = """
UPDATE tasks SET status = '{to}', updated_at = :now, started_at = :now, lease_expires_at = NULL,
    deadline_at = {deadline}
FROM {items}
WHERE {guard}
RETURNING {returning}
"""

# `/complete` and complete-batch: ACTIVE → COMPLETED with each item's result.
_COMPLETE = """
UPDATE tasks SET status = '{to}', updated_at = :now, completed_at = :now, result_data = v.result_data,
    deadline_at = NULL
FROM {items}
WHERE {guard}
RETURNING {returning}
"""


# On PostgreSQL the completing statement also writes the tasks' current attempt rows (one round trip fewer per
# report); SQLite writes them afterwards (`ATTEMPT_FINISHED`). All parts of one statement share its snapshot, so
# the attempt row must have been committed before the statement began: a completion holds the agent's lock, which
# every claim of the agent takes too, so the attempt it completes was claimed, row and all, before it. `/start`
# holds no such lock (a requeue and a new claim of the task could commit while it waits for the task's row), so
# it writes the attempt row in a statement of its own (`ATTEMPT_STARTED`).
_ATTEMPT_WRITES = {
    TaskStatus.COMPLETED: f"finished_at = :now, outcome = '{lifecycle.OUTCOME_COMPLETED}', error = NULL",
}
_WITH_ATTEMPTS = """
WITH moved AS ({move}),
attempts AS (UPDATE task_attempts SET {attempt} FROM moved
    WHERE task_attempts.task_id = moved.task_id AND task_attempts.attempt = moved.attempt)
SELECT * FROM moved
"""
ATTEMPTS_WRITTEN_BY_MOVE = {"postgresql": True, "sqlite": False}  # for a completion (see above)


def _move_statement(template: str, to: TaskStatus, dialect: str, **more: str) -> TextualSelect:
    sql = template.format(
        to=to,
        items=_ITEMS[dialect],
        guard=_GUARD.format(from_=_statuses(lifecycle.allowed_from(to))),
        returning=_RETURNING,
        deadline=_DEADLINE[dialect],
        **more,
    )
    if ATTEMPTS_WRITTEN_BY_MOVE[dialect] and to in _ATTEMPT_WRITES:
        sql = _WITH_ATTEMPTS.format(move=sql.strip(), attempt=_ATTEMPT_WRITES[to])
    return text(sql).bindparams(bindparam("now", type_=UTCDateTime)).columns(*_TYPED)


START = {dialect: _move_statement(_START, TaskStatus.ACTIVE, dialect) for dialect in _ITEMS}
COMPLETE = {dialect: _move_statement(_COMPLETE, TaskStatus.COMPLETED, dialect) for dialect in _ITEMS}

# The tasks of a report that did not move (or, for `/fail`, all of them, locked), with what judging the report
# needs besides the row: the outcome this agent reported for the current attempt, and whether it ever held the
# task (409 rather than 404 when it no longer does).
_REPORTED = """
SELECT {returning},
    (SELECT a.outcome FROM task_attempts a
     WHERE a.task_id = tasks.task_id AND a.attempt = tasks.attempt AND a.agent_id = :agent_id) AS reported_outcome,
    EXISTS (SELECT 1 FROM task_attempts a WHERE a.task_id = tasks.task_id AND a.agent_id = :agent_id) AS held_before
FROM tasks
WHERE {ids}
ORDER BY tasks.task_id
{lock}
"""
_IDS = {
    "postgresql": "tasks.task_id = ANY(:ids)",
    "sqlite": "tasks.task_id IN (SELECT value FROM json_each(:ids))",
}
_LOCK = {"postgresql": "FOR UPDATE OF tasks", "sqlite": ""}


def _reported(dialect: str, *, lock: bool) -> TextualSelect:
    sql = _REPORTED.format(returning=_RETURNING, ids=_IDS[dialect], lock=_LOCK[dialect] if lock else "")
    statement = text(sql)
    if dialect == "postgresql":
        statement = statement.bindparams(bindparam("ids", type_=ARRAY(String)))
    return statement.columns(*_TYPED, column("reported_outcome", String), column("held_before", Boolean))


REPORTED = {dialect: _reported(dialect, lock=False) for dialect in _ITEMS}
REPORTED_LOCKED = {dialect: _reported(dialect, lock=True) for dialect in _ITEMS}

# `/fail` and fail-batch: the tasks were read locked (`REPORTED_LOCKED`), so the new values are computed in
# Python (the retry delay follows the task's policy, `ains.tasks.retry`) and written by one executemany. The
# guard still checks the status, holder and attempt the values were computed from.
# A failure goes to FAILED, or back to PENDING for a retry: from where both are allowed.
_FAIL_FROM = _statuses(lifecycle.allowed_from(TaskStatus.FAILED) & lifecycle.allowed_from(TaskStatus.PENDING))
FAIL = text(
    f"""
        UPDATE tasks SET status = :status, updated_at = :now, retry_count = :retry_count,
            error_message = :error_message, last_error = :last_error, available_at = :available_at,
            queue_position = :queue_position, assigned_agent_id = :assigned_agent_id, assigned_at = :assigned_at,
            started_at = :started_at, lease_expires_at = NULL, deadline_at = NULL, next_retry_at = :next_retry_at
        WHERE task_id = :task_id AND assigned_agent_id = :agent_id AND attempt = :attempt
            AND status IN ({_FAIL_FROM})
        """
).bindparams(
    bindparam("now", type_=UTCDateTime),
    bindparam("available_at", type_=UTCDateTime),
    bindparam("assigned_at", type_=UTCDateTime),
    bindparam("started_at", type_=UTCDateTime),
    bindparam("next_retry_at", type_=UTCDateTime),
    bindparam("queue_position", type_=Float),
    bindparam("retry_count", type_=Integer),
)

# The current attempt's row, as a report ends or starts it (one executemany for a batch).
ATTEMPT_FINISHED = text(
    "UPDATE task_attempts SET finished_at = :now, outcome = :outcome, error = :error"
    " WHERE task_id = :task_id AND attempt = :attempt"
).bindparams(bindparam("now", type_=UTCDateTime))
ATTEMPT_STARTED = text(
    "UPDATE task_attempts SET started_at = :now WHERE task_id = :task_id AND attempt = :attempt"
).bindparams(bindparam("now", type_=UTCDateTime))

# --- submission ---------------------------------------------------------------------------------------------------
# New tasks, many rows in one statement (`submission._insert`; with an idempotency key,
# `submission._insert_unless_duplicate` adds ON CONFLICT DO NOTHING).
INSERT_TASKS = BulkInsert(table_of(Task))

# A client's plain submission on PostgreSQL (`submission.submit_one`): one autocommitted statement on the driver's
# connection takes one from the client's allowance (`quota.TAKE`: $1 the client, $2 the count) and inserts the task
# ($3: its row as JSON text) only if that worked, so a task refused by the database takes no allowance. Nothing
# inserted: the allowance is used up, and the general path counts the client's open tasks.
SUBMIT_ALONE = f"WITH taken AS ({TAKE}) " + INSERT_TASKS.sql(
    tuple(column.name for column in table_of(Task).columns), rows="$3::text", only_if="EXISTS (SELECT 1 FROM taken)"
)
