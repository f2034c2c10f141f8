"""SPEC 17 schedules: create, read, list, pause, delete; bad cron or zone refused; one task per tick."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ains.schedules.duty import run_due_schedules
from tests.helpers import ADMIN, create_client, task_body
from tests.workflows.helpers import stored_counts

START = datetime(2026, 11, 27, 12, 0, 30, tzinfo=UTC)


@pytest.fixture
def settings_overrides() -> dict:
    return {"run_background": False}  # the test runs the schedules duty's passes itself


@pytest.fixture
def clock(clock):
    """The suite's test clock (tests/conftest.py), started at START; the tests move it."""
    clock.at(START)
    return clock


@pytest.fixture
async def owner(client):
    return await create_client(client, "client_1")


def schedule_body(**extra):
    return {"name": "every five minutes", "cron": "*/5 * * * *", "task": task_body()} | extra


async def test_a_schedule_is_created_with_its_next_tick(client, owner, clock):
    response = await client.post("/ains/schedules", json=schedule_body(timezone="Europe/Berlin"), headers=owner)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["schedule_id"].startswith("sched_") and body["active"] is True
    assert body["timezone"] == "Europe/Berlin" and body["cron"] == "*/5 * * * *"
    assert body["next_run_at"] == "2026-11-27T12:05:00Z"
    assert (await client.get(f"/ains/schedules/{body['schedule_id']}", headers=owner)).json() == body
    listed = (await client.get("/ains/schedules", headers=owner)).json()
    assert [s["schedule_id"] for s in listed["schedules"]] == [body["schedule_id"]]


@pytest.mark.parametrize(
    "bad",
    [
        {"cron": "61 * * * *"},
        {"cron": "every day"},
        {"cron": "* * * * * *"},
        {"timezone": "Mars/Olympus_Mons"},
        {"timezone": "../../etc/passwd"},
        {"task": {"task_type": "x"}},
        {"task": task_body(priority=99)},
    ],
)
async def test_a_bad_cron_zone_or_task_is_refused_and_nothing_stored(client, owner, db, clock, bad):
    before = await stored_counts(db)
    response = await client.post("/ains/schedules", json=schedule_body(**bad), headers=owner)
    assert response.status_code == 422, response.text
    assert await stored_counts(db) == before


async def test_pause_resume_change_and_delete(client, owner, clock):
    schedule = (await client.post("/ains/schedules", json=schedule_body(), headers=owner)).json()
    url = f"/ains/schedules/{schedule['schedule_id']}"
    paused = await client.patch(url, json={"active": False}, headers=owner)
    assert paused.status_code == 200 and paused.json()["active"] is False and paused.json()["next_run_at"] is None
    clock.at(START + timedelta(minutes=7))
    resumed = (await client.patch(url, json={"active": True}, headers=owner)).json()
    assert resumed["next_run_at"] == "2026-11-27T12:10:00Z"
    hourly = (await client.patch(url, json={"cron": "0 * * * *", "timezone": "Asia/Kolkata"}, headers=owner)).json()
    assert hourly["next_run_at"] == "2026-11-27T12:30:00Z"  # :00 in Kolkata (+05:30)
    assert (await client.patch(url, json={"cron": "nope"}, headers=owner)).status_code == 422
    stranger = await create_client(client, "client_2")
    assert (await client.get(url, headers=stranger)).status_code == 404
    assert (await client.delete(url, headers=stranger)).status_code == 404
    assert (await client.delete(url, headers=owner)).status_code == 204
    assert (await client.get(url, headers=owner)).status_code == 404
    assert (await client.get(url, headers=ADMIN)).status_code == 404


async def test_each_tick_submits_one_task_and_missed_ticks_are_not_replayed(app, client, owner, clock):
    ctx = app.state.ctx
    schedule = (await client.post("/ains/schedules", json=schedule_body(), headers=owner)).json()

    async def tasks():
        return (await client.get("/ains/tasks", headers=owner)).json()["tasks"]

    assert (await run_due_schedules(ctx)).handled == 0 and await tasks() == []
    clock.at(datetime(2026, 11, 27, 12, 5, tzinfo=UTC))
    assert (await run_due_schedules(ctx)).handled == 1
    assert (await run_due_schedules(ctx)).handled == 0  # the same tick again: nothing
    (task,) = await tasks()
    assert task["idempotency_key"] == f"schedule:{schedule['schedule_id']}:2026-11-27T12:05:00Z"
    assert task["task_type"] == "analysis"
    # Down for an hour: only the latest missed tick is submitted, then the schedule waits for the next one.
    clock.at(datetime(2026, 11, 27, 13, 7, tzinfo=UTC))
    assert (await run_due_schedules(ctx)).handled == 1
    listed = await tasks()
    assert len(listed) == 2
    assert listed[0]["idempotency_key"].endswith(":2026-11-27T13:05:00Z")
    state = (await client.get(f"/ains/schedules/{schedule['schedule_id']}", headers=owner)).json()
    assert state["next_run_at"] == "2026-11-27T13:10:00Z" and state["last_task_id"] == listed[0]["task_id"]
    # Paused: no tick.
    await client.patch(f"/ains/schedules/{schedule['schedule_id']}", json={"active": False}, headers=owner)
    clock.at(datetime(2026, 11, 27, 14, 0, tzinfo=UTC))
    assert (await run_due_schedules(ctx)).handled == 0


async def test_schedule_scopes(client, clock):
    reader = await create_client(client, "client_3", scopes=["schedules:read"])
    response = await client.post("/ains/schedules", json=schedule_body(), headers=reader)
    assert response.status_code == 403 and "schedules:write" in response.json()["detail"]
