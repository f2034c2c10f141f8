"""SPEC 15 order and concurrency, against a real receiver: one task's events arrive in order while other
tasks' events go on beside them, a held-back event holds back only its own task, and no more than
`webhook_max_in_flight` deliveries are at one webhook at once."""

import asyncio
import random
import threading

import pytest

from tests.helpers import claim, create_client, register_agent, wait_for
from tests.webhooks.receiver import Answer
from tests.webhooks.test_delivery import hook

MAX_IN_FLIGHT = 4
LIFE = ["task.created", "task.assigned", "task.started", "task.completed"]


@pytest.fixture
def settings_overrides():
    return {
        "webhook_allow_private": True,
        "webhook_max_in_flight": MAX_IN_FLIGHT,
        # Held answers must not time out: these tests release them themselves.
        "webhook_timeout_seconds": 30,
        "webhook_backoff_base_seconds": 0.05,
    }


async def submit_many(client, owner, count):
    body = {"task_type": "t", "capability_required": "data:v1", "input_data": {"n": 1}}
    response = await client.post("/ains/tasks/batch", json={"tasks": [body] * count}, headers=owner)
    assert response.status_code == 200, response.text
    return [t["task_id"] for t in response.json()["submitted"]]


def by_task(requests):
    events: dict[str, list[str]] = {}
    for request in requests:
        events.setdefault(request.payload["task_id"], []).append(request.payload["event"])
    return events


async def test_each_task_keeps_its_order_while_tasks_go_concurrently(client, receivers):
    owner = await create_client(client, "client_1")
    worker = await register_agent(client, "agent_1", max_concurrency=100)
    # Answers take a random few milliseconds, so deliveries overtake one another unless held in order.
    jitter = random.Random(7)
    receiver = receivers(by_payload=lambda _payload: Answer(200, delay=jitter.uniform(0, 0.02)))
    await hook(client, owner, "/ains/clients/client_1", receiver.url, events=LIFE)
    tasks = await submit_many(client, owner, 40)
    claimed = []
    while len(claimed) < len(tasks):
        claimed += await claim(client, worker, max_tasks=20, start=True)
    await asyncio.gather(
        *(
            client.post(f"/ains/tasks/{t['task_id']}/complete", json={"result_data": {}}, headers=worker.headers)
            for t in claimed
        )
    )

    async def all_arrived():
        return len(receiver.answered) >= len(tasks) * len(LIFE)

    assert await wait_for(all_arrived, timeout=60)
    assert by_task(receiver.answered) == {task_id: LIFE for task_id in tasks}
    # Several at once (other tasks' events went on concurrently), never more than the limit.
    assert 1 < receiver.most_at_once <= MAX_IN_FLIGHT


async def test_a_held_event_holds_back_only_the_later_events_of_its_own_task(client, receivers):
    owner = await create_client(client, "client_1")
    gate = threading.Event()
    slow_task: list[str] = []

    def answer(payload):
        first_of_slow_task = payload["task_id"] in slow_task and payload["event"] == "task.created"
        return Answer(200, gate=gate) if first_of_slow_task else None

    receiver = receivers(by_payload=answer)
    await hook(client, owner, "/ains/clients/client_1", receiver.url, events=["task.created", "task.cancelled"])
    try:
        body = {"task_type": "t", "capability_required": "data:v1", "input_data": {"n": 1}}
        held = (await client.post("/ains/tasks", json=body, headers=owner)).json()["task_id"]
        slow_task.append(held)
        assert await wait_for(lambda: _received(receiver, held, "task.created"))
        # The held task's next event waits; other tasks' events, before and after it, go past.
        cancelled = await client.post(f"/ains/tasks/{held}/cancel", json={"reason": "x"}, headers=owner)
        assert cancelled.status_code == 200, cancelled.text
        others = await submit_many(client, owner, 10)
        for other in others[:5]:
            await client.post(f"/ains/tasks/{other}/cancel", json={"reason": "x"}, headers=owner)

        async def others_arrived():
            return len(receiver.answered) >= len(others) + 5

        assert await wait_for(others_arrived)
        assert not await _received(receiver, held, "task.cancelled")
        assert by_task(receiver.answered) == {
            other: ["task.created", "task.cancelled"] if i < 5 else ["task.created"] for i, other in enumerate(others)
        }
    finally:
        gate.set()
    assert await wait_for(lambda: _received(receiver, held, "task.cancelled"))
    assert by_task(receiver.requests)[held] == ["task.created", "task.cancelled"]


class TestInFlightLimit:
    @pytest.fixture
    def settings_overrides(self):
        return {"webhook_allow_private": True, "webhook_max_in_flight": 3, "webhook_timeout_seconds": 30}

    async def test_no_more_than_the_limit_at_one_webhook(self, client, receivers):
        owner = await create_client(client, "client_1")
        gate = threading.Event()
        receiver = receivers(default=Answer(200, gate=gate))
        await hook(client, owner, "/ains/clients/client_1", receiver.url, events=["task.created"])
        try:
            tasks = await submit_many(client, owner, 12)

            async def limit_reached():
                return receiver.in_progress >= 3

            assert await wait_for(limit_reached)
            # Give the dispatcher every chance to overshoot before letting the answers go.
            await asyncio.sleep(0.5)
            assert receiver.in_progress == 3 and len(receiver.requests) == 3
        finally:
            gate.set()

        async def all_arrived():
            return len(receiver.answered) >= len(tasks)

        assert await wait_for(all_arrived)
        assert sorted(r.payload["task_id"] for r in receiver.answered) == sorted(tasks)
        assert receiver.most_at_once == 3


async def _received(receiver, task_id, event):
    return any(r.payload["task_id"] == task_id and r.payload["event"] == event for r in receiver.requests)
