"""What each task event's `data` carries (the webhook payload's body)."""

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from ains.webhooks import outbox
from ains.webhooks.schemas import EventName

AT = datetime(2026, 11, 27, 12, 0, 0, 123000, tzinfo=UTC)


def task(**fields) -> SimpleNamespace:
    base = dict(
        status="PENDING",
        client_id="client_1",
        task_type="summarise",
        capability_required="text:v1",
        priority=5,
        created_at=AT,
        attempt=2,
        assigned_at=AT,
        started_at=AT,
        completed_at=AT,
        result_data={"words": 3},
        error_message="boom",
        retry_count=1,
        next_retry_at=AT,
        last_error="boom",
        cancelled_at=AT,
        cancelled_by="client_1",
        cancellation_reason="not needed",
    )
    return SimpleNamespace(**(base | fields))


def test_timestamps_are_utc_with_a_z():
    assert outbox.iso(AT) == "2026-11-27T12:00:00.123000Z"


def test_a_missing_timestamp_stays_null():
    assert outbox.iso(None) is None


def test_created_describes_the_task():
    assert outbox.event_data(EventName.TASK_CREATED, task()) == {
        "status": "PENDING",
        "client_id": "client_1",
        "task_type": "summarise",
        "capability_required": "text:v1",
        "priority": 5,
        "created_at": "2026-11-27T12:00:00.123000Z",
    }


def test_completed_carries_the_result():
    data = outbox.event_data(EventName.TASK_COMPLETED, task(status="COMPLETED"))
    assert data == {"status": "COMPLETED", "attempt": 2, "result_data": {"words": 3}, "completed_at": outbox.iso(AT)}


def test_failed_says_why():
    data = outbox.event_data(EventName.TASK_FAILED, task(status="FAILED"), reason="timeout")
    assert data["reason"] == "timeout"


def test_retrying_says_when():
    data = outbox.event_data(EventName.TASK_RETRYING, task(status="PENDING"), reason="error")
    assert data["next_retry_at"] == outbox.iso(AT)


def test_cancelled_says_by_whom():
    data = outbox.event_data(EventName.TASK_CANCELLED, task(status="CANCELLED"))
    assert data["cancelled_by"] == "client_1"


@pytest.mark.parametrize("event", list(EventName))
def test_every_event_carries_the_status(event):
    assert outbox.event_data(event, task(status="ACTIVE"))["status"] == "ACTIVE"
