"""Queue order: a task's place is its arrival moved earlier by one aging interval per priority step,
and its effective priority grows by one step per interval waited, up to 10."""

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from ains.tasks.lifecycle import queue_position
from ains.tasks.reads import effective_priority

SETTINGS = SimpleNamespace(aging_interval_seconds=60)
NOON = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def pending(priority: int, waited_seconds: float, status: str = "PENDING") -> SimpleNamespace:
    return SimpleNamespace(status=status, priority=priority, available_at=NOON - timedelta(seconds=waited_seconds))


def test_one_priority_step_is_worth_one_aging_interval():
    assert queue_position(NOON, 6, SETTINGS) == queue_position(NOON + timedelta(seconds=60), 7, SETTINGS)


def test_higher_priority_comes_first_at_the_same_arrival():
    assert queue_position(NOON, 9, SETTINGS) < queue_position(NOON, 8, SETTINGS)


def test_a_long_wait_overtakes_a_higher_priority():
    older_low = queue_position(NOON - timedelta(minutes=10), 1, SETTINGS)
    assert older_low < queue_position(NOON, 5, SETTINGS)


def test_a_fresh_task_has_its_own_priority():
    assert effective_priority(pending(3, 0), NOON, SETTINGS) == 3.0


def test_each_interval_waited_adds_a_step():
    assert effective_priority(pending(3, 120), NOON, SETTINGS) == 5.0


def test_effective_priority_is_shown_rounded():
    assert effective_priority(pending(3, 90 + 1 / 3), NOON, SETTINGS) == 4.5


def test_effective_priority_stops_at_ten():
    assert effective_priority(pending(8, 3600), NOON, SETTINGS) == 10.0


def test_a_task_not_yet_available_does_not_age():
    assert effective_priority(pending(4, -300), NOON, SETTINGS) == 4.0


def test_only_a_pending_task_ages():
    assert effective_priority(pending(4, 3600, status="ACTIVE"), NOON, SETTINGS) == 4.0
