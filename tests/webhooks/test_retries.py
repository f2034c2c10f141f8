"""SPEC 15 retry schedule: the delays list (its last value repeating), base·2ⁿ when a base is set,
Retry-After within the cap, and a receiver down for longer than the first version's 3 attempts that
still gets every event once it is back."""

import threading
from datetime import datetime

import pytest

from ains.core.config import Settings
from ains.webhooks.dispatcher import retry_delay
from tests.helpers import create_client, submit, wait_for
from tests.webhooks.receiver import Answer
from tests.webhooks.test_delivery import deliveries, hook


def test_the_default_schedule_spans_about_27_hours():
    settings = Settings()
    assert settings.webhook_max_attempts == 8 and settings.webhook_backoff_base_seconds is None
    waits = [retry_delay(n, settings) for n in range(1, settings.webhook_max_attempts)]
    assert waits == [5, 300, 1800, 7200, 18000, 36000, 36000]
    assert 26 * 3600 < sum(waits) < 28 * 3600


def test_past_the_list_its_last_value_repeats_and_a_base_replaces_it():
    listed = Settings(webhook_retry_delays=[1, 2], webhook_max_attempts=6)
    assert [retry_delay(n, listed) for n in range(1, 6)] == [1, 2, 2, 2, 2]
    doubled = Settings(webhook_backoff_base_seconds=0.5)
    assert [retry_delay(n, doubled) for n in range(1, 5)] == [0.5, 1, 2, 4]


def test_the_delays_come_from_a_comma_separated_variable(monkeypatch):
    monkeypatch.setenv("AINS_WEBHOOK_RETRY_DELAYS", "1, 2.5,60")
    monkeypatch.setenv("AINS_WEBHOOK_MAX_IN_FLIGHT", "4")
    settings = Settings()
    assert settings.webhook_retry_delays == [1, 2.5, 60] and settings.webhook_max_in_flight == 4
    monkeypatch.setenv("AINS_WEBHOOK_RETRY_DELAYS", "1,-2")
    with pytest.raises(ValueError):
        Settings()


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def _waits_between_attempts(client, owner, webhook_id, retries):
    """Each scheduled wait, from the delivery's history once it has made `retries` retries: an attempt's
    `retry_at` minus the time it was recorded (both written in one transaction)."""

    async def retried():
        (delivery,) = await deliveries(client, owner, webhook_id)
        scheduled = [entry for entry in delivery["history"] if "retry_at" in entry]
        return scheduled if len(scheduled) >= retries or delivery["status"] != "pending" else None

    scheduled = await wait_for(retried, timeout=30, interval=0.05)
    assert scheduled
    return [round((_time(entry["retry_at"]) - _time(entry["at"])).total_seconds(), 3) for entry in scheduled]


class TestListedDelays:
    @pytest.fixture
    def settings_overrides(self):
        return {
            "webhook_allow_private": True,
            "webhook_retry_delays": [0.3, 0.6, 0.9],
            "webhook_max_attempts": 5,
        }

    async def test_retries_wait_the_listed_delays_then_the_last_again(self, client, receivers):
        owner = await create_client(client, "client_1")
        received = receivers(default=Answer(500))
        created = await hook(client, owner, "/ains/clients/client_1", received.url, events=["task.created"])
        await submit(client, owner)
        assert await _waits_between_attempts(client, owner, created["webhook_id"], 4) == [0.3, 0.6, 0.9, 0.9]

        async def failed():
            (delivery,) = await deliveries(client, owner, created["webhook_id"])
            return delivery if delivery["status"] == "failed" else None

        delivery = await wait_for(failed, timeout=20)
        assert delivery["attempts"] == 5 and len(received.requests) == 5


class TestBackoffBase:
    @pytest.fixture
    def settings_overrides(self):
        return {
            "webhook_allow_private": True,
            "webhook_backoff_base_seconds": 0.2,
            "webhook_retry_delays": [50],  # ignored: the base wins
            "webhook_max_attempts": 4,
        }

    async def test_retries_double_from_the_base(self, client, receivers):
        owner = await create_client(client, "client_1")
        received = receivers(default=Answer(500))
        created = await hook(client, owner, "/ains/clients/client_1", received.url, events=["task.created"])
        await submit(client, owner)
        assert await _waits_between_attempts(client, owner, created["webhook_id"], 3) == [0.2, 0.4, 0.8]


class TestRetryAfterCap:
    @pytest.fixture
    def settings_overrides(self):
        return {
            "webhook_allow_private": True,
            "webhook_retry_delays": [0.1],
            "retry_max_delay_seconds": 0.7,
            "webhook_max_attempts": 3,
        }

    async def test_retry_after_is_honoured_up_to_the_cap(self, client, receivers):
        owner = await create_client(client, "client_1")
        script = [Answer(429, headers={"Retry-After": "0.4"}), Answer(503, headers={"Retry-After": "3600"})]
        received = receivers(script)
        created = await hook(client, owner, "/ains/clients/client_1", received.url, events=["task.created"])
        await submit(client, owner)
        assert await _waits_between_attempts(client, owner, created["webhook_id"], 2) == [0.4, 0.7]


class TestLongOutage:
    @pytest.fixture
    def settings_overrides(self):
        return {
            "webhook_allow_private": True,
            # Quick at first; from the fourth attempt on a second apart, so the test sees the outage outlast
            # three attempts well before the eighth and last one.
            "webhook_retry_delays": [0.05, 0.1, 0.2, 1.0],
            "webhook_dispatch_interval_seconds": 0.2,
        }

    async def test_a_receiver_down_past_three_attempts_gets_every_event_once_back(self, client, receivers):
        owner = await create_client(client, "client_1")
        up = threading.Event()
        received = receivers(by_payload=lambda _payload: None if up.is_set() else Answer(503))
        created = await hook(client, owner, "/ains/clients/client_1", received.url, events=["task.created"])
        tasks = [(await submit(client, owner))["task_id"] for _ in range(5)]

        async def long_down():  # every event has been refused more often than the old schedule allowed
            rows = await deliveries(client, owner, created["webhook_id"])
            return len(rows) == 5 and all(len(d["history"]) >= 4 for d in rows)

        assert await wait_for(long_down, timeout=30, interval=0.05)
        up.set()

        async def all_delivered():
            rows = await deliveries(client, owner, created["webhook_id"])
            return rows if all(d["status"] == "succeeded" for d in rows) else None

        rows = await wait_for(all_delivered, timeout=30)
        assert rows and all(d["attempts"] >= 5 for d in rows)
        assert sorted(r.payload["task_id"] for r in received.answered) == sorted(tasks)
