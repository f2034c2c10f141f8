"""SPEC 18: a client holds at most `max_pending_tasks_per_client` non-final tasks; beyond, submission (single
or batch) is 429, and room comes back as its tasks finish."""

from __future__ import annotations

import pytest

from tests.helpers import ADMIN, claim, create_client, register_agent, submit, task_body


@pytest.fixture
def settings_overrides() -> dict:
    return {"max_pending_tasks_per_client": 3}


async def test_submissions_beyond_the_cap_are_429(client, clock):
    owner = await create_client(client)
    tasks = [await submit(client, owner, input_data={"n": n}) for n in range(3)]
    refused = await client.post("/ains/tasks", json=task_body(), headers=owner)
    assert refused.status_code == 429 and "max_pending_tasks_per_client" in refused.json()["detail"]
    assert "Retry-After" not in refused.headers  # waiting alone does not help: tasks must finish
    batch = await client.post("/ains/tasks/batch", json={"tasks": [task_body()]}, headers=owner)
    assert batch.status_code == 429
    # Another client is not affected.
    other = await create_client(client, "client_2")
    await submit(client, other)
    # A finished task makes room (counted again at most once a second while the client is at the cap).
    cancelled = await client.post(f"/ains/tasks/{tasks[0]['task_id']}/cancel", json={"reason": "x"}, headers=owner)
    assert cancelled.status_code == 200
    clock.advance(1)
    await submit(client, owner)
    assert (await client.post("/ains/tasks", json=task_body(), headers=owner)).status_code == 429


async def test_a_batch_must_fit_whole(client, clock):
    owner = await create_client(client)
    await submit(client, owner)
    too_many = await client.post("/ains/tasks/batch", json={"tasks": [task_body()] * 3}, headers=owner)
    assert too_many.status_code == 429
    clock.advance(1)
    fits = await client.post("/ains/tasks/batch", json={"tasks": [task_body()] * 2}, headers=owner)
    assert fits.status_code == 200 and len(fits.json()["submitted"]) == 2


async def test_tasks_that_finish_free_their_place(client, clock):
    owner = await create_client(client)
    agent = await register_agent(client)
    for _ in range(3):
        await submit(client, owner)
    for task in await claim(client, agent, max_tasks=3, start=True):
        done = await client.post(
            f"/ains/tasks/{task['task_id']}/complete", json={"result_data": {}}, headers=agent.headers
        )
        assert done.status_code == 200
    for _ in range(3):
        await submit(client, owner)


async def test_the_admin_submitting_for_a_client_counts_against_that_client(client, clock):
    owner = await create_client(client)
    for _ in range(3):
        await submit(client, ADMIN, client_id="client_1")
    assert (await client.post("/ains/tasks", json=task_body(), headers=owner)).status_code == 429
    response = await client.post("/ains/tasks", json=task_body(client_id="client_1"), headers=ADMIN)
    assert response.status_code == 429


async def test_idempotent_submissions_count_and_a_repeat_is_not_refused(client, clock):
    owner = await create_client(client)
    first = await submit(client, owner, idempotency_key="k0")
    for n in range(1, 3):
        await submit(client, owner, idempotency_key=f"k{n}")
    refused = await client.post("/ains/tasks", json=task_body(idempotency_key="k3"), headers=owner)
    assert refused.status_code == 429
    again = await client.post("/ains/tasks", json=task_body(idempotency_key="k0"), headers=owner)
    assert again.status_code == 200 and again.json()["task_id"] == first["task_id"]
    batch = await client.post("/ains/tasks/batch", json={"tasks": [task_body(idempotency_key="k4")]}, headers=owner)
    assert batch.status_code == 429
