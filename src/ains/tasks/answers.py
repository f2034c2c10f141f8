"""Task answers built once from rows: plain dicts shaped exactly like `TaskOut`, serialised in one call.

A list of fifty tasks is one `to_json` over dicts, not fifty Pydantic models validated
and dumped. `task_answer` reads attributes, so it takes a row of `ains.tasks.queries`
(attribute names), a `Task` object or a `TaskRow`; `tests/tasks/test_answers.py`
checks it against `TaskOut` field for field.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, get_args

from fastapi import Response
from pydantic_core import to_json
from sqlalchemy import Row

from ains.core.clock import utc_text
from ains.core.config import Settings
from ains.core.database import DriverRow
from ains.tasks.schemas import TaskOut, TaskStatus


class TaskRow(dict):
    """A task's columns by attribute name, read and written as attributes too (`row.status`), like a `Task` or a
    row."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value


def iso(value: datetime | None) -> str | None:
    """As `UTCTime` serialises it: ISO 8601 UTC ending in Z."""
    return None if value is None else utc_text(value)


def _is_time(annotation: Any) -> bool:
    """UTCTime or UTCTime | None."""
    return any(arg is datetime for arg in (annotation, *get_args(annotation), *_flat(annotation)))


def _flat(annotation: Any) -> list[Any]:
    return [inner for arg in get_args(annotation) for inner in (arg, *get_args(arg))]


def effective_priority(status: str, priority: int, available_at: datetime, now: datetime, settings: Settings) -> float:
    """SPEC 6: base priority plus one step per aging interval waited while claimable; shown rounded, at most 10."""
    if status != TaskStatus.PENDING:
        return float(priority)
    waited = max(0.0, (now - available_at).total_seconds())
    return round(min(10.0, priority + waited / settings.aging_interval_seconds), 1)


_COMPUTED = {"metadata", "min_trust_score", "effective_priority"}
# Fields copied as they are, and times, in TaskOut's order. A field TaskOut gains is read from the attribute of
# its name (a time is written like `UTCTime`), so the answers follow the model without an edit here.
_ORDER = tuple(TaskOut.model_fields)
_TIMES = frozenset(name for name, info in TaskOut.model_fields.items() if _is_time(info.annotation))
_PLAIN = tuple(name for name in _ORDER if name not in _TIMES and name not in _COMPUTED)


def task_answer(
    task: Any, now: datetime, settings: Settings, times: dict[datetime, str] | None = None
) -> dict[str, Any]:
    """The task as `TaskOut` would serialise it, with the effective priority as of `now`.

    `times`, shared by the answers of one list, writes each moment once: the tasks of one claim were assigned at
    one time, and mostly created at one."""
    field = _reader(task)
    values: dict[str, Any] = {name: field(name) for name in _PLAIN}
    for name in _TIMES:
        moment = field(name)
        if moment is None or times is None:
            values[name] = iso(moment)
        else:
            text = times.get(moment)
            if text is None:
                text = times[moment] = utc_text(moment)
            values[name] = text
    values["metadata"] = field("task_metadata")
    score = field("min_trust_score")
    values["min_trust_score"] = None if score is None else float(score)
    values["effective_priority"] = effective_priority(
        values["status"], values["priority"], field("available_at"), now, settings
    )
    return {name: values[name] for name in _ORDER}


def _reader(task: Any) -> Callable[[str], Any]:
    """How to read a column of this task by name: a key of a `TaskRow` or of a row's mapping (C lookups), else an
    attribute (a `Task`). `getattr` on a `TaskRow` fails over to `__getattr__`: most of an answer's cost."""
    if type(task) is TaskRow:
        return task.__getitem__
    if isinstance(task, Row | DriverRow):
        return task._mapping.__getitem__
    return lambda name: getattr(task, name)


def refresh_priority(answer: dict[str, Any], now: datetime, settings: Settings) -> dict[str, Any]:
    """A stored answer (the task cache holds them) with its effective priority as of `now`."""
    available_at = datetime.fromisoformat(answer["available_at"])
    answer["effective_priority"] = effective_priority(answer["status"], answer["priority"], available_at, now, settings)
    return answer


def batch_answer(submitted: list[tuple[int, Any]], failed: list[tuple[int, str]]) -> dict[str, Any]:
    """A batch submission's answer as `BatchResult` would serialise it: (index, task) and (index, error) pairs."""
    # The new tasks of a batch share one creation time: written once, not once per task.
    times = {moment: iso(moment) for moment in {task.created_at for _, task in submitted}}
    return {
        "submitted": [
            {
                "index": index,
                "task_id": task.task_id,
                "status": task.status,
                "client_id": task.client_id,
                "created_at": times[task.created_at],
            }
            for index, task in submitted
        ],
        "failed": [{"index": index, "error": error} for index, error in failed],
    }


def json_response(content: Any, status_code: int = 200) -> Response:
    """An answer already shaped for JSON (dicts, lists, strings, numbers), serialised once."""
    return Response(to_json(content), status_code=status_code, media_type="application/json")
