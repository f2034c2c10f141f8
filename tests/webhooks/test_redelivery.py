"""SPEC 15 redelivery and recovery, against a real receiver: a receiver down for longer than all the attempts
gets every event, with the same event_id and body bytes, once it is back and its owner asks for them again; one
delivery can be sent again; per-task order and the in-flight limit still hold; only the owner or an admin may."""

import threading
from datetime import UTC, datetime, timedelta

import pytest

from tests.helpers import ADMIN, create_client, submit, wait_for
from tests.webhooks.receiver import Answer
from tests.webhooks.test_delivery import deliveries, hook

MAX_IN_FLIGHT = 2
EVENTS = ["task.created", "task.cancelled"]


@pytest.fixture
def settings_overrides():
    return {
        "webhook_allow_private": True,
        "webhook_retry_delays": [0.05],
        "webhook_max_attempts": 2,
        "webhook_max_in_flight": MAX_IN_FLIGHT,
        "webhook_dispatch_interval_seconds": 0.2,
    }


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


async def all_finished(client, owner, webhook_id, count, status):
    async def done():
        rows = await deliveries(client, owner, webhook_id)
        return rows if len(rows) == count and all(d["status"] == status for d in rows) else None

    return await wait_for(done, timeout=30, interval=0.05)


async def audit_entries(client, action):
    response = await client.get("/ains/audit-logs", params={"action": action}, headers=ADMIN)
    assert response.status_code == 200, response.text
    return response.json()["entries"]  # newest first


def by_task(requests):
    events: dict[str, list[str]] = {}
    for request in requests:
        events.setdefault(request.payload["task_id"], []).append(request.payload["event"])
    return events


async def test_recover_sends_every_failed_delivery_again_in_order_within_the_limit(client, receivers):
    owner = await create_client(client, "client_1")
    up = threading.Event()
    receiver = receivers(by_payload=lambda _p: Answer(200, delay=0.05) if up.is_set() else Answer(503))
    created = await hook(client, owner, "/ains/clients/client_1", receiver.url, events=EVENTS)
    webhook_id = created["webhook_id"]
    before = datetime.now(UTC) - timedelta(seconds=1)
    tasks = [(await submit(client, owner))["task_id"] for _ in range(4)]
    for task_id in tasks:
        response = await client.post(f"/ains/tasks/{task_id}/cancel", json={}, headers=owner)
        assert response.status_code == 200, response.text

    # Down for longer than every attempt: each delivery ends failed, after both its attempts.
    failed = await all_finished(client, owner, webhook_id, 8, "failed")
    assert failed and all(d["attempts"] == 2 and len(d["history"]) == 2 for d in failed)
    sent_while_down = {r.payload["event_id"]: r for r in receiver.requests}
    assert len(sent_while_down) == 8

    up.set()
    receiver.most_at_once = 0
    too_late = await client.post(
        f"/ains/webhooks/{webhook_id}/recover",
        json={"since": iso(datetime.now(UTC) + timedelta(hours=1))},
        headers=owner,
    )
    assert too_late.status_code == 202 and too_late.json() == {"redelivering": 0}
    response = await client.post(f"/ains/webhooks/{webhook_id}/recover", json={"since": iso(before)}, headers=owner)
    assert response.status_code == 202, response.text
    assert response.json() == {"redelivering": 8}

    rows = await all_finished(client, owner, webhook_id, 8, "succeeded")
    assert rows, await deliveries(client, owner, webhook_id)
    # A new series of attempts; the earlier ones stay in the history.
    for row in rows:
        assert row["attempts"] == 1 and row["response_code"] == 200 and row["last_error"] is None
        assert [h["attempt"] for h in row["history"]] == [1, 2, 1]
        assert [h["response_code"] for h in row["history"]] == [503, 503, 200]
    # The same events, byte for byte, signed alike; each task's events in order; never more than the limit.
    assert len(receiver.answered) == 8
    for again in receiver.answered:
        first = sent_while_down[again.payload["event_id"]]
        assert again.body == first.body
        assert again.headers["X-Webhook-Signature"] == first.headers["X-Webhook-Signature"]
        assert again.headers["webhook-id"] == first.headers["webhook-id"]
    assert by_task(receiver.answered) == {task_id: EVENTS for task_id in tasks}
    assert receiver.most_at_once <= MAX_IN_FLIGHT

    # Nothing failed since: nothing to recover. The recovery is in the audit log.
    again = await client.post(f"/ains/webhooks/{webhook_id}/recover", json={"since": iso(before)}, headers=ADMIN)
    assert again.status_code == 202 and again.json() == {"redelivering": 0}
    entries = await audit_entries(client, "webhook.recover")
    mine = [e for e in entries if e["target_id"] == webhook_id]
    assert len(mine) == 3 and {e["actor"] for e in mine} >= {"client_1"}


async def test_redeliver_sends_a_succeeded_delivery_again(client, receivers):
    owner = await create_client(client, "client_1")
    receiver = receivers()
    created = await hook(client, owner, "/ains/clients/client_1", receiver.url, events=["task.created"])
    webhook_id = created["webhook_id"]
    await submit(client, owner)
    (delivery,) = await all_finished(client, owner, webhook_id, 1, "succeeded")

    response = await client.post(
        f"/ains/webhooks/{webhook_id}/deliveries/{delivery['delivery_id']}/redeliver", headers=owner
    )
    assert response.status_code == 202, response.text
    queued = response.json()
    assert queued["delivery_id"] == delivery["delivery_id"] and queued["event_id"] == delivery["event_id"]
    assert queued["status"] == "pending" and queued["attempts"] == 0 and queued["next_attempt_at"]
    assert len(queued["history"]) == 1

    async def twice():
        return len(receiver.answered) == 2

    assert await wait_for(twice, timeout=20, interval=0.05)
    first, second = receiver.answered
    assert second.body == first.body and second.headers["webhook-id"] == first.headers["webhook-id"]
    assert second.headers["X-Webhook-Signature"] == first.headers["X-Webhook-Signature"]
    (row,) = await all_finished(client, owner, webhook_id, 1, "succeeded")
    assert row["attempts"] == 1 and [h["response_code"] for h in row["history"]] == [200, 200]

    # An admin may too; each redelivery is audited with its actor.
    by_admin = await client.post(
        f"/ains/webhooks/{webhook_id}/deliveries/{delivery['delivery_id']}/redeliver", headers=ADMIN
    )
    assert by_admin.status_code == 202, by_admin.text
    entries = [e for e in await audit_entries(client, "webhook.redeliver") if e["target_id"] == webhook_id]
    assert len(entries) == 2  # newest first: the admin's, then the owner's
    assert entries[-1]["actor"] == "client_1" and entries[-1]["details"]["delivery_id"] == delivery["delivery_id"]


async def test_who_may_redeliver_and_what_is_refused(client, receivers):
    owner = await create_client(client, "client_1")
    stranger = await create_client(client, "client_2")
    gate = threading.Event()
    receiver = receivers(default=Answer(200, gate=gate))  # holds every answer: the delivery stays pending
    created = await hook(client, owner, "/ains/clients/client_1", receiver.url, events=["task.created"])
    webhook_id = created["webhook_id"]
    try:
        await submit(client, owner)

        async def in_flight():
            return receiver.requests

        assert await wait_for(in_flight, timeout=20, interval=0.05)
        (delivery,) = await deliveries(client, owner, webhook_id)
        assert delivery["status"] == "pending"
        path = f"/ains/webhooks/{webhook_id}/deliveries/{delivery['delivery_id']}/redeliver"

        pending = await client.post(path, headers=owner)
        assert pending.status_code == 409 and "pending" in pending.json()["detail"]
        for attempt in (
            client.post(path, headers=stranger),
            client.post(
                f"/ains/webhooks/{webhook_id}/recover", json={"since": iso(datetime.now(UTC))}, headers=stranger
            ),
        ):
            response = await attempt
            assert response.status_code == 404, response.text
            assert delivery["delivery_id"] not in response.text
        unknown = await client.post(f"/ains/webhooks/{webhook_id}/deliveries/dlv_nope/redeliver", headers=owner)
        assert unknown.status_code == 404
        other_hook = await client.post("/ains/webhooks/wh_nope/deliveries/x/redeliver", headers=ADMIN)
        assert other_hook.status_code == 404

        recover = f"/ains/webhooks/{webhook_id}/recover"
        for body in ({}, {"since": "yesterday"}, {"since": None}, {"since": "2026-13-01T00:00:00Z"}):
            response = await client.post(recover, json=body, headers=owner)
            assert response.status_code == 422, (body, response.text)
            assert any(error["loc"][-1] == "since" for error in response.json()["detail"])
    finally:
        gate.set()

    await all_finished(client, owner, webhook_id, 1, "succeeded")
    # An inactive webhook is refused until it is PATCHed active again.
    response = await client.patch(f"/ains/webhooks/{webhook_id}", json={"active": False}, headers=owner)
    assert response.status_code == 200
    for path, body in (
        (f"/ains/webhooks/{webhook_id}/recover", {"since": iso(datetime.now(UTC))}),
        (f"/ains/webhooks/{webhook_id}/deliveries/{delivery['delivery_id']}/redeliver", None),
    ):
        response = await client.post(path, json=body, headers=owner)
        assert response.status_code == 409 and "inactive" in response.json()["detail"], response.text
    await client.patch(f"/ains/webhooks/{webhook_id}", json={"active": True}, headers=owner)
    path = f"/ains/webhooks/{webhook_id}/deliveries/{delivery['delivery_id']}/redeliver"
    assert (await client.post(path, headers=owner)).status_code == 202
