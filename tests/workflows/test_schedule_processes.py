"""SPEC 17: each tick of a schedule submits exactly one task however many processes run the schedules duty.

Two real `ains serve` processes share one PostgreSQL and one clock the test moves (`AINS_TEST_CLOCK_FILE`,
test-only): both run the duty every 0.1 s, so both find every tick due at once.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime

import httpx

from tests.helpers import ADMIN, ServerProcess, bearer, task_body

SCHEDULES = 20


async def _settled(clients, owner, ids: list[str], after: str) -> None:
    """Until every schedule's next tick is past `after` in both processes' view (each has run that tick)."""
    for _ in range(300):
        states = [
            (await clients[n % 2].get(f"/ains/schedules/{schedule_id}", headers=owner)).json()
            for n, schedule_id in enumerate(ids)
        ]
        if all(state["next_run_at"] > after for state in states):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"schedules did not run the tick at {after}")


async def _tasks_by_schedule(client, owner) -> Counter:
    keys: Counter = Counter()
    cursor = None
    while True:
        page = (await client.get("/ains/tasks", params={"limit": 500, "cursor": cursor}, headers=owner)).json()
        for task in page["tasks"]:
            keys[task["idempotency_key"]] += 1
        cursor = page["next_cursor"]
        if cursor is None:
            return keys


async def test_two_processes_submit_each_tick_once(postgres_only_url, tmp_path):
    clock = tmp_path / "clock"
    clock.write_text(datetime(2026, 11, 27, 12, 0, 30, tzinfo=UTC).isoformat())
    env = {
        "AINS_DATABASE_URL": postgres_only_url,
        "AINS_DATA_DIR": str(tmp_path),
        "AINS_TIMEOUT_CHECK_SECONDS": "0.1",
        "AINS_TEST_CLOCK_FILE": str(clock),
    }
    servers = [ServerProcess(env), ServerProcess(env)]
    try:
        clients = [httpx.AsyncClient(base_url=s.url, timeout=30) for s in servers]
        key = await clients[0].post("/ains/api-keys", json={"client_id": "client_1", "name": "t"}, headers=ADMIN)
        owner = bearer(key.json()["api_key"])
        ids = []
        for n in range(SCHEDULES):
            body = {"name": f"s{n}", "cron": "* * * * *", "timezone": "Europe/Berlin", "task": task_body()}
            response = await clients[n % 2].post("/ains/schedules", json=body, headers=owner)
            assert response.status_code == 201, response.text
            assert response.json()["next_run_at"] == "2026-11-27T12:01:00Z"
            ids.append(response.json()["schedule_id"])
        await asyncio.sleep(0.5)
        assert await _tasks_by_schedule(clients[0], owner) == Counter()

        # One tick: both processes find all twenty due at once.
        clock.write_text(datetime(2026, 11, 27, 12, 1, 0, tzinfo=UTC).isoformat())
        await _settled(clients, owner, ids, "2026-11-27T12:01:00Z")
        await asyncio.sleep(0.5)  # a few more passes of both duties: nothing more may come
        submitted = await _tasks_by_schedule(clients[1], owner)
        assert submitted == Counter({f"schedule:{i}:2026-11-27T12:01:00Z": 1 for i in ids})

        # Both processes "down" for half an hour: only the latest missed tick is submitted.
        clock.write_text(datetime(2026, 11, 27, 12, 31, 20, tzinfo=UTC).isoformat())
        await _settled(clients, owner, ids, "2026-11-27T12:31:00Z")
        await asyncio.sleep(0.5)
        submitted = await _tasks_by_schedule(clients[0], owner)
        expected = {f"schedule:{i}:2026-11-27T12:01:00Z": 1 for i in ids}
        expected |= {f"schedule:{i}:2026-11-27T12:31:00Z": 1 for i in ids}
        assert submitted == Counter(expected)
        state = (await clients[0].get(f"/ains/schedules/{ids[0]}", headers=owner)).json()
        assert state["next_run_at"] == "2026-11-27T12:32:00Z" and state["last_run_at"] == "2026-11-27T12:31:00Z"
        for http in clients:
            await http.aclose()
    finally:
        for server in servers:
            server.stop()
