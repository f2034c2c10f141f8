"""SPEC 4 through the API: delays hold tasks back, agents may ask for a delay, the cap applies,
and a task failing every attempt ends FAILED after exactly max_retries + 1 attempts."""

from datetime import datetime

import pytest

from tests.helpers import claim, create_client, register_agent, submit


def parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


@pytest.fixture
def settings_overrides():
    return {
        "retry_exponential_base_seconds": 0.4,
        "retry_linear_base_seconds": 0.3,
        "retry_fixed_seconds": 0.5,
        "retry_max_delay_seconds": 2,
        "timeout_check_seconds": 0.2,
    }


async def fail_now(client, agent, task, **body):
    await client.post(f"/ains/tasks/{task['task_id']}/start", json={"attempt": task["attempt"]}, headers=agent.headers)
    response = await client.post(
        f"/ains/tasks/{task['task_id']}/fail",
        json={"attempt": task["attempt"], "error_message": "boom"} | body,
        headers=agent.headers,
    )
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize(
    ("policy", "first", "second"), [("exponential", 0.4, 0.8), ("linear", 0.3, 0.6), ("fixed", 0.5, 0.5)]
)
async def test_next_retry_at_follows_the_policy(client, policy, first, second):
    owner = await create_client(client)
    agent = await register_agent(client)
    task = await submit(client, owner, retry_policy=policy)
    for expected in (first, second):
        (claimed,) = await claim(client, agent, wait_seconds=5)
        failed = await fail_now(client, agent, claimed)
        delay = (parse(failed["next_retry_at"]) - parse(failed["updated_at"])).total_seconds()
        assert delay == pytest.approx(expected, abs=0.01)
        assert failed["status"] == "PENDING" and parse(failed["available_at"]) == parse(failed["next_retry_at"])
    assert failed["retry_count"] == 2 and task["task_id"] == failed["task_id"]


async def test_a_task_is_not_claimable_before_next_retry_at_and_is_after(client):
    owner = await create_client(client)
    agent = await register_agent(client)
    await submit(client, owner, retry_policy="fixed")
    (claimed,) = await claim(client, agent)
    failed = await fail_now(client, agent, claimed)
    assert await claim(client, agent) == []
    (again,) = await claim(client, agent, wait_seconds=5)
    assert again["task_id"] == failed["task_id"] and again["attempt"] == 2
    assert datetime.now(parse(failed["next_retry_at"]).tzinfo) >= parse(failed["next_retry_at"])


async def test_agent_requested_delay_is_used_and_capped(client):
    owner = await create_client(client)
    agent = await register_agent(client)
    await submit(client, owner)
    (claimed,) = await claim(client, agent)
    failed = await fail_now(client, agent, claimed, retry_after_seconds=1.5)
    assert (parse(failed["next_retry_at"]) - parse(failed["updated_at"])).total_seconds() == pytest.approx(
        1.5, abs=0.01
    )
    (claimed,) = await claim(client, agent, wait_seconds=5)
    failed = await fail_now(client, agent, claimed, retry_after_seconds=100)
    assert (parse(failed["next_retry_at"]) - parse(failed["updated_at"])).total_seconds() == pytest.approx(2, abs=0.01)


async def test_jitter_draws_within_half_to_full_delay(client):
    owner = await create_client(client)
    agent = await register_agent(client, max_concurrency=50)
    delays = []
    for _ in range(12):
        await submit(client, owner, retry_policy="fixed", retry_jitter=True)
    for claimed in await claim(client, agent, max_tasks=12):
        failed = await fail_now(client, agent, claimed)
        delays.append((parse(failed["next_retry_at"]) - parse(failed["updated_at"])).total_seconds())
    assert all(0.25 - 0.001 <= d <= 0.5 + 0.001 for d in delays)
    assert len({round(d, 4) for d in delays}) > 1


async def test_failing_every_attempt_ends_failed_after_max_retries_plus_one(client):
    owner = await create_client(client)
    agent = await register_agent(client)
    task = await submit(client, owner, max_retries=3, retry_policy="linear")
    for n in range(1, 5):
        (claimed,) = await claim(client, agent, wait_seconds=5)
        assert claimed["attempt"] == n
        await client.post(f"/ains/tasks/{task['task_id']}/start", headers=agent.headers)
        await client.post(
            f"/ains/tasks/{task['task_id']}/fail", json={"error_message": f"error {n}"}, headers=agent.headers
        )
    final = (await client.get(f"/ains/tasks/{task['task_id']}", headers=owner)).json()
    assert final["status"] == "FAILED" and final["error_message"] == "error 4" and final["retry_count"] == 3
    history = (await client.get(f"/ains/tasks/{task['task_id']}/attempts", headers=owner)).json()["attempts"]
    assert [(a["attempt"], a["error"]) for a in history] == [(n, f"error {n}") for n in range(1, 5)]
    assert await claim(client, agent, wait_seconds=1) == []
