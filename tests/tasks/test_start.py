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


@pytest.mark.parametrize("settings_overrides", [{"run_background": False}])
async def test_a_completion_without_dependents_is_lean_and_one_with_them_runs_in_a_session(client, db):
    """A report that ends a task looks for its dependents in plain SQL; resolving them is Core, so a task with
    dependents is completed again in a session, and everything of it is written once."""
    owner = await create_client(client, "client_1")
    agent = await register_agent(client, "agent_1", max_concurrency=5)
    plain = await submit(client, owner)
    first = await submit(client, owner)
    waiting = await submit(client, owner, depends_on=[first["task_id"]])
    claimed = {t["task_id"]: t for t in await claim(client, agent, max_tasks=5, start=True)}
    assert set(claimed) == {plain["task_id"], first["task_id"]}
    path = "/ains/tasks/{}/complete"
    async with statements_seen(db.engine) as seen:
        done = await client.post(path.format(plain["task_id"]), json={"result_data": {"n": 1}}, headers=agent.headers)
    assert done.status_code == 200, done.text
    assert seen.through_sqlalchemy == []
    async with statements_seen(db.engine) as seen:
        done = await client.post(path.format(first["task_id"]), json={"result_data": {"n": 2}}, headers=agent.headers)
    assert done.status_code == 200 and done.json()["status"] == "COMPLETED", done.text
    assert seen.through_sqlalchemy, "resolving the dependent took the session"
    assert (await client.get(f"/ains/tasks/{waiting['task_id']}", headers=owner)).json()["status"] == "PENDING"
    async with db.read() as session:
        records = await session.scalar(
            text("SELECT count(*) FROM trust_records WHERE task_id = :t"), {"t": first["task_id"]}
        )
        attempts = (
            await session.execute(
                text("SELECT outcome, finished_at IS NOT NULL FROM task_attempts WHERE task_id = :t"),
                {"t": first["task_id"]},
            )
        ).all()
    assert records == 1
    assert [tuple(a) for a in attempts] == [("completed", True)]
