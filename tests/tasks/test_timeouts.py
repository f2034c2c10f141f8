"""SPEC 7 timeouts: an ACTIVE task past its deadline fails with the exact message,
within the configured lag, and is never retried."""

from datetime import datetime, timedelta

import pytest

from tests.helpers import claim, create_client, register_agent, submit, wait_for

CHECK = 0.3


@pytest.fixture
def settings_overrides():
    return {"timeout_check_seconds": CHECK}


def parse(ts):
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


async def test_started_task_times_out_and_is_not_retried(clock, client):
    owner = await create_client(client)
    agent = await register_agent(client)
    task = await submit(client, owner, timeout_seconds=1, max_retries=3)
    (claimed,) = await claim(client, agent, start=True)

    async def failed():
        current = (await client.get(f"/ains/tasks/{task['task_id']}", headers=owner)).json()
        return current if current["status"] == "FAILED" else None

    clock.advance(0.999)
    assert not await wait_for(failed, timeout=3 * CHECK)  # a millisecond before its deadline
    clock.advance(0.001)
    final = await wait_for(failed, timeout=10)
    assert final, "the task never timed out"
    assert final["error_message"] == "Task timed out after 1 seconds"
    assert final["retry_count"] == 0
    (attempt,) = (await client.get(f"/ains/tasks/{task['task_id']}/attempts", headers=owner)).json()["attempts"]
    assert attempt["outcome"] == "timeout" and attempt["error"] == "Task timed out after 1 seconds"
    # Found at the deadline itself: the clock stood there while the duty looked.
    assert parse(attempt["finished_at"]) == parse(claimed["started_at"]) + timedelta(seconds=1)
    assert await claim(client, agent) == []
    late = await client.post(f"/ains/tasks/{task['task_id']}/complete", headers=agent.headers)
    assert late.status_code == 409 and "FAILED" in late.json()["detail"]


async def test_assigned_but_unstarted_tasks_do_not_time_out(clock, client):
    owner = await create_client(client)
    agent = await register_agent(client)
    task = await submit(client, owner, timeout_seconds=1)
    await claim(client, agent)
    clock.advance(5)  # well past the timeout, within the lease (60 s by default)
    assert not await wait_for(lambda: _status_is(client, owner, task["task_id"], "FAILED"), timeout=3 * CHECK)


async def _status_is(client, headers, task_id, status):
    return (await client.get(f"/ains/tasks/{task_id}", headers=headers)).json()["status"] == status


class TestDeadlineWakeUp:
    """A deadline set in this process wakes the sleeping timeout duty, so the lag does not
    depend on where in its `timeout_check_seconds` sleep the duty was."""

    @pytest.fixture
    def settings_overrides(self):
        return {"timeout_check_seconds": 60}

    async def test_timeout_is_found_long_before_the_check_interval(self, client):
        owner = await create_client(client)
        agent = await register_agent(client)
        task = await submit(client, owner, timeout_seconds=1)
        await claim(client, agent, start=True)
        assert await wait_for(lambda: _status_is(client, owner, task["task_id"], "FAILED"), timeout=10)
