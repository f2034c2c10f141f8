"""SPEC 9 deliveries to a real receiver on 127.0.0.1: signatures, routing, order, retries, timeouts,
Retry-After, 410, auto-disable, redirects, and an API that never waits for a receiver."""

import asyncio
import time

import pytest

from ains.core.metrics import DUTY_RUNS
from ains.webhooks.schemas import EventName
from ains.webhooks.signing import verify
from tests.helpers import claim, create_client, register_agent, submit, wait_for
from tests.webhooks.receiver import Answer

TIMEOUT = 0.5


FAST = {
    "webhook_allow_private": True,
    "webhook_backoff_base_seconds": 0.05,
    "webhook_max_attempts": 3,
    "webhook_timeout_seconds": TIMEOUT,
    "retry_exponential_base_seconds": 0,
    "timeout_check_seconds": 0.2,
}


@pytest.fixture
def settings_overrides():
    return FAST


async def hook(client, headers, owner_path, url, events=None, **extra):
    body = {
        "url": url,
        "events": events or [event.value for event in EventName if event.startswith("task.")],
        **extra,
    }
    response = await client.post(f"{owner_path}/webhooks", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def deliveries(client, headers, webhook_id):
    return (await client.get(f"/ains/webhooks/{webhook_id}/deliveries", headers=headers)).json()["deliveries"]


async def settled(client, headers, webhook_id, count):
    async def done():
        rows = await deliveries(client, headers, webhook_id)
        return rows if len(rows) >= count and all(d["status"] != "pending" for d in rows) else None

    return await wait_for(done, timeout=20)


LIFE = [
    "task.created",
    "task.assigned",
    "task.started",
    "task.retrying",
    "task.assigned",
    "task.started",
    "task.completed",
]


# Deliveries are at least once: an answer later than the attempt's deadline is sent again. This test counts every
# request, so it gives a loaded machine's receiver time to answer (with 0.5 s CI once saw an event twice).
@pytest.mark.parametrize("settings_overrides", [FAST | {"webhook_timeout_seconds": 10}], ids=["patient"])
async def test_a_task_life_reaches_the_right_owners_signed_and_in_order(client, receivers):
    owner = await create_client(client, "client_1")
    other_client = await create_client(client, "client_2")
    worker = await register_agent(client, "agent_1", capabilities=["data:v1"])
    unrelated = await register_agent(client, "agent_2", capabilities=["image:v1"])
    to_owner, to_other, to_worker, to_unrelated = receivers(), receivers(), receivers(), receivers()
    owner_hook = await hook(client, owner, "/ains/clients/client_1", to_owner.url)
    await hook(client, other_client, "/ains/clients/client_2", to_other.url)
    worker_hook = await hook(client, worker.headers, "/ains/agents/agent_1", to_worker.url)
    await hook(client, unrelated.headers, "/ains/agents/agent_2", to_unrelated.url)

    task = await submit(client, owner)
    (claimed,) = await claim(client, worker, start=True)
    await client.post(f"/ains/tasks/{task['task_id']}/fail", json={"error_message": "flaky"}, headers=worker.headers)
    (claimed,) = await claim(client, worker, start=True, wait_seconds=5)
    await client.post(f"/ains/tasks/{task['task_id']}/complete", json={"result_data": {"x": 1}}, headers=worker.headers)

    assert await wait_for(lambda: _at_least(to_owner, len(LIFE)), timeout=20)
    assert await wait_for(lambda: _at_least(to_worker, len(LIFE)), timeout=20)
    assert to_owner.events() == LIFE
    # The agent hears task.created through its capability, the rest because the task is assigned to it.
    assert to_worker.events() == LIFE
    await asyncio.sleep(0.3)
    assert to_other.requests == [] and to_unrelated.requests == []

    for received, secret in ((to_owner, owner_hook["secret"]), (to_worker, worker_hook["secret"])):
        for request in received.requests:
            assert verify(secret, request.headers, request.body, now=int(time.time()))
            assert request.headers["webhook-id"] == request.payload["event_id"]
            assert request.headers["Content-Type"] == "application/json"
    payloads = [r.payload for r in to_owner.requests]
    assert all(p["task_id"] == task["task_id"] for p in payloads)
    assert len({p["event_id"] for p in payloads}) == len(LIFE)
    completed = payloads[-1]
    assert completed["agent_id"] == "agent_1" and completed["timestamp"].endswith("Z")
    assert completed["data"]["status"] == "COMPLETED" and completed["data"]["result_data"] == {"x": 1}
    assert completed["data"]["completed_at"]
    retrying = payloads[3]
    assert retrying["data"]["status"] == "PENDING" and retrying["data"]["last_error"] == "flaky"
    assert payloads[0]["agent_id"] is None and payloads[0]["data"]["status"] == "PENDING"


async def _at_least(receiver, count):
    return len(receiver.requests) >= count


async def test_event_filters_and_cancel_and_timeout_events(client, receivers):
    owner = await create_client(client, "client_1")
    worker = await register_agent(client, "agent_1")
    received = receivers()
    await hook(client, owner, "/ains/clients/client_1", received.url, events=["task.cancelled", "task.failed"])
    cancelled = await submit(client, owner)
    await client.post(f"/ains/tasks/{cancelled['task_id']}/cancel", json={"reason": "stop"}, headers=owner)
    timed_out = await submit(client, owner, timeout_seconds=1, max_retries=0)
    await claim(client, worker, start=True)
    assert await wait_for(lambda: _at_least(received, 2), timeout=20)
    first, second = (r.payload for r in received.requests)
    assert first["event"] == "task.cancelled" and first["data"]["cancellation_reason"] == "stop"
    assert first["data"]["cancelled_by"] == "client_1"
    assert second["event"] == "task.failed" and second["task_id"] == timed_out["task_id"]
    assert second["data"]["reason"] == "timeout"
    assert second["data"]["error_message"] == "Task timed out after 1 seconds"


async def test_two_failures_then_success_keeps_every_attempt(client, receivers):
    owner = await create_client(client, "client_1")
    received = receivers([Answer(500), Answer(500)])
    created = await hook(client, owner, "/ains/clients/client_1", received.url, events=["task.created"])
    await submit(client, owner)
    (delivery,) = await settled(client, owner, created["webhook_id"], 1)
    assert delivery["status"] == "succeeded" and delivery["attempts"] == 3 and delivery["response_code"] == 200
    assert [h["response_code"] for h in delivery["history"]] == [500, 500, 200]
    assert all(h["duration_ms"] >= 0 for h in delivery["history"])
    # The same event, with the same id, each time: receivers can de-duplicate.
    assert len({r.payload["event_id"] for r in received.requests}) == 1 and len(received.requests) == 3
    state = (await client.get("/ains/clients/client_1/webhooks", headers=owner)).json()["webhooks"][0]
    assert state["consecutive_failures"] == 0 and state["last_success_at"]


async def test_a_receiver_that_never_answers_fails_after_the_timeout(client, receivers):
    owner = await create_client(client, "client_1")
    silence = 60  # the receiver would answer only after this; each attempt must give up at TIMEOUT
    received = receivers(default=Answer(200, delay=silence))
    created = await hook(client, owner, "/ains/clients/client_1", received.url, events=["task.created"])
    await submit(client, owner)
    (delivery,) = await settled(client, owner, created["webhook_id"], 1)
    assert delivery["status"] == "failed" and delivery["attempts"] == 3
    assert all("no answer" in h["error"] for h in delivery["history"])
    assert all(h["duration_ms"] < silence * 1000 for h in delivery["history"])


async def test_retry_after_is_honoured(client, receivers):
    owner = await create_client(client, "client_1")
    received = receivers([Answer(503, headers={"Retry-After": "1"})])
    created = await hook(client, owner, "/ains/clients/client_1", received.url, events=["task.created"])
    await submit(client, owner)
    (delivery,) = await settled(client, owner, created["webhook_id"], 1)
    assert delivery["status"] == "succeeded" and delivery["attempts"] == 2
    first, second = received.requests
    assert second.at - first.at >= 0.9  # the backoff alone would have been 0.05 s


async def test_gone_disables_at_once(client, receivers):
    owner = await create_client(client, "client_1")
    received = receivers([Answer(410)])
    created = await hook(client, owner, "/ains/clients/client_1", received.url, events=["task.created"])
    await submit(client, owner)
    (delivery,) = await settled(client, owner, created["webhook_id"], 1)
    assert delivery["status"] == "failed" and delivery["attempts"] == 1
    state = (await client.get("/ains/clients/client_1/webhooks", headers=owner)).json()["webhooks"][0]
    assert state["active"] is False and "410" in state["disabled_reason"]
    # The dispatcher's disabling is heard like an owner's: the next task's event goes to nobody.
    await submit(client, owner)
    assert len(await deliveries(client, owner, created["webhook_id"])) == 1


class TestAutoDisable:
    @pytest.fixture
    def settings_overrides(self):
        return {"webhook_allow_private": True, "webhook_max_attempts": 1, "webhook_disable_after": 2}

    async def test_disabled_after_n_failures_in_a_row_and_enabled_again(self, client, receivers):
        owner = await create_client(client, "client_1")
        received = receivers([Answer(500), Answer(500)])
        created = await hook(client, owner, "/ains/clients/client_1", received.url, events=["task.created"])
        await submit(client, owner)
        await submit(client, owner)
        await settled(client, owner, created["webhook_id"], 2)
        state = (await client.get("/ains/clients/client_1/webhooks", headers=owner)).json()["webhooks"][0]
        assert state["active"] is False and state["consecutive_failures"] == 2
        await submit(client, owner)  # not delivered: the webhook is off
        await asyncio.sleep(0.5)
        assert len(received.requests) == 2
        enabled = await client.patch(f"/ains/webhooks/{created['webhook_id']}", json={"active": True}, headers=owner)
        assert enabled.json()["active"] is True and enabled.json()["consecutive_failures"] == 0
        await submit(client, owner)
        assert await wait_for(lambda: _at_least(received, 3), timeout=10)


async def test_redirects_are_not_followed(client, receivers):
    owner = await create_client(client, "client_1")
    elsewhere = receivers()
    received = receivers(default=Answer(302, headers={"Location": elsewhere.url}))
    created = await hook(client, owner, "/ains/clients/client_1", received.url, events=["task.created"])
    await submit(client, owner)
    (delivery,) = await settled(client, owner, created["webhook_id"], 1)
    assert delivery["status"] == "failed" and "redirect" in delivery["last_error"]
    assert elsewhere.requests == []


async def test_the_api_never_waits_for_a_receiver(client, receivers):
    owner = await create_client(client, "client_1")
    slow = receivers(default=Answer(200, delay=3))
    await hook(client, owner, "/ains/clients/client_1", slow.url, events=["task.created"])
    await submit(client, owner)
    # The request has answered; the receiver has not even finished answering its delivery.
    assert slow.finished == 0
    assert await wait_for(lambda: _finished(slow), timeout=15)


async def _finished(receiver):
    return receiver.finished >= 1


async def test_deliveries_page(client, receivers):
    owner = await create_client(client, "client_1")
    received = receivers()
    created = await hook(client, owner, "/ains/clients/client_1", received.url, events=["task.created"])
    for _ in range(3):
        await submit(client, owner)
    await settled(client, owner, created["webhook_id"], 3)
    path = f"/ains/webhooks/{created['webhook_id']}/deliveries"
    first = (await client.get(path, params={"limit": 2}, headers=owner)).json()
    second = (await client.get(path, params={"limit": 2, "cursor": first["next_cursor"]}, headers=owner)).json()
    ids = [d["delivery_id"] for d in first["deliveries"] + second["deliveries"]]
    assert len(set(ids)) == 3 and second["next_cursor"] is None
    assert all(d["event"] == "task.created" and d["status"] == "succeeded" for d in first["deliveries"])


class TestBacklog:
    @pytest.fixture
    def settings_overrides(self):
        # No periodic passes: every pass counted below was woken by an event or a finished delivery. Two in
        # flight at once, so most of the backlog is leased by the recordings of the ones before.
        return {"webhook_allow_private": True, "webhook_dispatch_interval_seconds": 30, "webhook_max_in_flight": 2}

    async def test_a_backlog_drains_without_a_pass_per_delivery(self, client, receivers):
        """The transaction that records finished deliveries leases the webhook's next due ones."""
        owner = await create_client(client, "client_1")
        receiver = receivers()
        await hook(client, owner, "/ains/clients/client_1", receiver.url, events=["task.created"])
        passes_before = DUTY_RUNS.labels("webhooks")._value.get()
        body = {"task_type": "t", "capability_required": "data:v1", "input_data": {"n": 1}}
        batch = await client.post("/ains/tasks/batch", json={"tasks": [body] * 20}, headers=owner)
        created = [t["task_id"] for t in batch.json()["submitted"]]

        async def all_arrived():
            return receiver.finished >= 20

        assert await wait_for(all_arrived)
        assert sorted(r.payload["task_id"] for r in receiver.requests) == sorted(created)
        assert DUTY_RUNS.labels("webhooks")._value.get() - passes_before <= 3
