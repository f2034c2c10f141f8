"""A client's plain submission on PostgreSQL: its allowance and its task in one autocommitted statement.

Every other submission test runs through this path too on PostgreSQL (a client's task without an idempotency key
or dependencies); these check what is particular to it.
"""

import asyncio

import pytest
from sqlalchemy import text

from tests.helpers import claim, create_client, register_agent, statements_seen, submit, task_body
from tests.webhooks.test_delivery import hook

pytestmark = pytest.mark.parametrize("backend", ["postgres"], indirect=True)


async def _allowance(db, client_id: str) -> int:
    async with db.read() as session:
        return await session.scalar(text("SELECT allowance FROM client_quotas WHERE client_id = :c"), {"c": client_id})


@pytest.mark.parametrize("settings_overrides", [{"run_background": False}])  # no duty's statements in the count
async def test_a_plain_submission_is_one_statement(client, db):
    """No BEGIN, no separate allowance statement, no COMMIT: one statement on the driver's connection."""
    owner = await create_client(client, "client_1")
    await submit(client, owner)  # the first counts the client's open tasks and stores its allowance
    async with statements_seen(db.engine) as seen:
        task = await submit(client, owner, priority=8, input_data={"x": [1, 2]}, metadata={"k": "v"})
    assert seen.through_sqlalchemy == []
    (statement,) = seen.through_driver
    assert statement.startswith("WITH taken AS (UPDATE client_quotas") and "INSERT INTO tasks" in statement
    stored = (await client.get(f"/ains/tasks/{task['task_id']}", headers=owner)).json()
    assert stored == task
    assert (stored["priority"], stored["input_data"], stored["metadata"]) == (8, {"x": [1, 2]}, {"k": "v"})


@pytest.mark.parametrize("settings_overrides", [{"webhook_allow_private": True, "run_background": False}])
async def test_submissions_that_need_more_take_the_general_path(client, db):
    """An idempotency key, dependencies, or a webhook hearing `task.created`: a transaction as before."""
    owner = await create_client(client, "client_1")
    first = await submit(client, owner)
    for extra in ({"idempotency_key": "k1"}, {"depends_on": [first["task_id"]]}):
        async with statements_seen(db.engine) as seen:
            await submit(client, owner, **extra)
        assert "BEGIN" in seen.through_driver or seen.through_sqlalchemy, extra
        assert not any(s.startswith("WITH taken AS") for s in seen.through_driver), extra
    await hook(client, owner, "/ains/clients/client_1", "http://127.0.0.1:9/hook", events=["task.created"])
    heard = await submit(client, owner)
    async with db.read() as session:
        events = await session.scalar(
            text("SELECT count(*) FROM task_events WHERE task_id = :t AND event = 'task.created'"),
            {"t": heard["task_id"]},
        )
    assert events == 1


async def test_a_task_the_database_refuses_takes_no_allowance(client, db):
    owner = await create_client(client, "client_1")
    await submit(client, owner)
    before = await _allowance(db, "client_1")
    refused = await client.post("/ains/tasks", json=task_body(input_data={"s": "\u0000"}), headers=owner)
    assert refused.status_code == 422, refused.text
    assert await _allowance(db, "client_1") == before
    await submit(client, owner)
    assert await _allowance(db, "client_1") == before - 1


@pytest.mark.parametrize("settings_overrides", [{"wakeup_fallback_seconds": 120}])
async def test_a_plain_submission_wakes_a_waiting_claim(client, db):
    """The wake-up a transaction's commit sends is sent after the statement too (the fallback poll is far off)."""
    owner = await create_client(client, "client_1")
    agent = await register_agent(client, "agent_1")
    await submit(client, owner)
    assert len(await claim(client, agent, max_tasks=5)) == 1
    waiting = asyncio.create_task(claim(client, agent, max_tasks=1, wait_seconds=20))
    await asyncio.sleep(0.3)
    async with statements_seen(db.engine) as seen:
        task = await submit(client, owner)
    assert any(s.startswith("WITH taken AS") for s in seen.through_driver)
    assert [t["task_id"] for t in await waiting] == [task["task_id"]]


@pytest.mark.parametrize("settings_overrides", [{"max_pending_tasks_per_client": 5}])
async def test_concurrent_plain_submissions_stay_within_the_cap(client):
    """Twenty at once against a cap of five: the allowance is taken under its row's lock, so five are stored."""
    owner = await create_client(client, "client_1")
    await submit(client, owner)
    answers = await asyncio.gather(*(client.post("/ains/tasks", json=task_body(), headers=owner) for _ in range(20)))
    assert sorted(a.status_code for a in answers) == [201] * 4 + [429] * 16
    listed = (await client.get("/ains/tasks", params={"limit": 100}, headers=owner)).json()["tasks"]
    assert len(listed) == 5
