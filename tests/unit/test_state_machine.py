"""The task state machine, as data: which moves exist, and the guard every moving statement uses."""

from types import SimpleNamespace

import pytest

from ains.core.errors import Conflict
from ains.tasks.lifecycle import ALLOWED_MOVES, check_attempt, check_move
from ains.tasks.schemas import FINAL_STATUSES, TaskStatus


def allowed_from(to: str) -> set[str]:
    return {status for status, targets in ALLOWED_MOVES.items() if to in targets}


def test_every_status_has_an_entry():
    assert set(ALLOWED_MOVES) == set(TaskStatus)


@pytest.mark.parametrize("status", sorted(FINAL_STATUSES))
def test_a_final_status_has_no_way_out(status):
    assert ALLOWED_MOVES[status] == frozenset()


def test_only_a_pending_task_can_be_assigned():
    assert allowed_from(TaskStatus.ASSIGNED) == {TaskStatus.PENDING}


def test_only_an_assigned_task_can_start():
    assert allowed_from(TaskStatus.ACTIVE) == {TaskStatus.ASSIGNED}


def test_only_an_active_task_can_complete():
    assert allowed_from(TaskStatus.COMPLETED) == {TaskStatus.ACTIVE}


def test_any_unfinished_task_can_be_cancelled():
    assert allowed_from(TaskStatus.CANCELLED) == {
        TaskStatus.WAITING,
        TaskStatus.PENDING,
        TaskStatus.ASSIGNED,
        TaskStatus.ACTIVE,
    }


def test_a_waiting_task_becomes_pending_or_cancelled_only():
    assert ALLOWED_MOVES[TaskStatus.WAITING] == {TaskStatus.PENDING, TaskStatus.CANCELLED}
    assert TaskStatus.WAITING not in allowed_from(TaskStatus.ASSIGNED)


def test_a_move_outside_the_table_is_a_conflict():
    with pytest.raises(Conflict, match="COMPLETED; it cannot become ACTIVE"):
        check_move(SimpleNamespace(task_id="t", status=TaskStatus.COMPLETED), TaskStatus.ACTIVE)


def test_a_move_inside_the_table_passes():
    assert check_move(SimpleNamespace(task_id="t", status=TaskStatus.ASSIGNED), TaskStatus.ACTIVE) is None


def test_a_stale_attempt_is_fenced_off():
    with pytest.raises(Conflict, match="stale"):
        check_attempt(SimpleNamespace(task_id="t", status=TaskStatus.ACTIVE, attempt=3), 2)


def test_no_attempt_given_is_not_fenced():
    assert check_attempt(SimpleNamespace(task_id="t", status=TaskStatus.ACTIVE, attempt=3), None) is None
