"""`/start` on PostgreSQL: a lean transaction on the driver's connection, its attempt row an executemany there."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tests.helpers import claim, create_client, register_agent, statements_seen, submit
from tests.webhooks.test_delivery import hook

pytestmark = pytest.mark.parametrize("backend", ["postgres"], indirect=True)


@pytest.mark.parametrize("settings_overrides", [{"webhook_allow_private": True, "run_background": False}])
async def test_a_start_is_plain_statements_and_writes_its_attempt_and_event(client, db):
    owner = await create_client(client, "client_1")
    await hook(client, owner, "/ains/clients/client_1", "http://127.0.0.1:9/hook", events=["task.started"])
    agent = await register_agent(client, "agent_1")
    task = await submit(client, owner)
    (claimed,) = await claim(client, agent)
    async with statements_seen(db.engine) as seen:
        started = await client.post(f"/ains/tasks/{task['task_id']}/start", json={"attempt": 1}, headers=agent.headers)
    assert started.status_code == 200, started.text
    assert started.json()["status"] == "ACTIVE" and started.json()["started_at"] is not None
    assert seen.through_sqlalchemy == []
    work = seen.work()
    assert any(sql.startswith("UPDATE task_attempts SET started_at") for sql in work), work
    # A repeat answers the task as it is; another agent's start is refused; nothing is written twice.
    again = await client.post(f"/ains/tasks/{task['task_id']}/start", json={"attempt": 1}, headers=agent.headers)
    assert again.status_code == 200 and again.json() == started.json()
    other = await register_agent(client, "agent_2")
    refused = await client.post(f"/ains/tasks/{task['task_id']}/start", headers=other.headers)
    assert refused.status_code == 404, refused.text
    async with db.read() as session:
        attempt_started = await session.scalar(
            text("SELECT started_at FROM task_attempts WHERE task_id = :t AND attempt = 1"), {"t": task["task_id"]}
        )
        events = await session.scalar(
            text("SELECT count(*) FROM task_events WHERE task_id = :t AND event = 'task.started'"),
            {"t": task["task_id"]},
        )
    assert attempt_started is not None and events == 1
    assert claimed["task_id"] == task["task_id"]
