"""SPEC 17: a cascade is a cancellation like any other to the outside: each task it cancels sends its
`task.cancelled` event, with the reason naming the dependency, to a real receiver."""

from __future__ import annotations

import pytest

from tests.helpers import claim, create_client, register_agent, submit, wait_for
from tests.webhooks.receiver import Receiver


@pytest.fixture
def settings_overrides():
    return {"webhook_allow_private": True}


@pytest.fixture
def receiver():
    made = Receiver()
    yield made
    made.close()


async def test_every_task_a_failure_cancels_down_the_graph_sends_its_event(client, receiver):
    owner = await create_client(client, "client_1")
    agent = await register_agent(client, "agent_1")
    hook = {"url": receiver.url, "events": ["task.cancelled"]}
    assert (await client.post("/ains/clients/client_1/webhooks", json=hook, headers=owner)).status_code == 201
    root = await submit(client, owner, max_retries=0)
    child = await submit(client, owner, depends_on=[root["task_id"]])
    grandchild = await submit(client, owner, depends_on=[child["task_id"]])
    (claimed,) = await claim(client, agent, start=True)
    assert claimed["task_id"] == root["task_id"]
    failed = await client.post(
        f"/ains/tasks/{root['task_id']}/fail",
        json={"error_message": "broken", "retryable": False},
        headers=agent.headers,
    )
    assert failed.status_code == 200, failed.text

    async def two_arrived():
        return len(receiver.requests) >= 2

    assert await wait_for(two_arrived, timeout=20)
    reasons = {r.payload["task_id"]: r.payload["data"]["cancellation_reason"] for r in receiver.requests}
    assert reasons == {
        child["task_id"]: f"dependency {root['task_id']} FAILED",
        grandchild["task_id"]: f"dependency {child['task_id']} CANCELLED",
    }
    assert all(r.payload["event"] == "task.cancelled" for r in receiver.requests)
