"""SPEC 3: start, complete, fail, the state machine's 409s, fencing, and the attempt history."""

import pytest

from ains.tasks import lifecycle
from ains.tasks.schemas import FINAL_STATUSES, TaskStatus
from tests.helpers import ADMIN, claim, create_client, register_agent, submit


@pytest.fixture
def settings_overrides():
    # Retries come back at once here; their delays have tests of their own (test_retry_delays.py).
    return {"retry_exponential_base_seconds": 0, "retry_linear_base_seconds": 0, "retry_fixed_seconds": 0}


@pytest.fixture
async def world(client):
    owner = await create_client(client, "client_1")
    agent = await register_agent(client, "agent_1")
    other = await register_agent(client, "agent_2")
    return owner, agent, other


async def post(client, path, headers, **body):
    return await client.post(path, json=body, headers=headers)


def test_final_statuses_allow_no_move():
    for status in FINAL_STATUSES:
        assert lifecycle.ALLOWED_MOVES[status] == frozenset()
    assert set(lifecycle.ALLOWED_MOVES) == set(TaskStatus)
    for targets in lifecycle.ALLOWED_MOVES.values():
        assert targets <= set(TaskStatus)


async def test_happy_path_and_attempt_history(client, world):
    owner, agent, _ = world
    task = await submit(client, owner)
    (claimed,) = await claim(client, agent)
    assert claimed["status"] == "ASSIGNED" and claimed["attempt"] == 1 and claimed["assigned_agent_id"] == "agent_1"
    started = await post(client, f"/ains/tasks/{task['task_id']}/start", agent.headers, attempt=1)
    assert started.status_code == 200 and started.json()["status"] == "ACTIVE" and started.json()["started_at"]
    done = await post(
        client, f"/ains/tasks/{task['task_id']}/complete", agent.headers, attempt=1, result_data={"answer": 42}
    )
    assert done.status_code == 200
    assert done.json()["status"] == "COMPLETED" and done.json()["result_data"] == {"answer": 42}
    assert done.json()["completed_at"]
    history = (await client.get(f"/ains/tasks/{task['task_id']}/attempts", headers=owner)).json()
    (attempt,) = history["attempts"]
    assert attempt["attempt"] == 1 and attempt["agent_id"] == "agent_1" and attempt["outcome"] == "completed"
    assert attempt["assigned_at"] and attempt["started_at"] and attempt["finished_at"]


async def test_illegal_moves_are_409_naming_the_status(client, world):
    owner, agent, _ = world
    task = await submit(client, owner)
    await claim(client, agent)
    path = f"/ains/tasks/{task['task_id']}"
    early = await post(client, f"{path}/complete", agent.headers)
    assert early.status_code == 409 and "ASSIGNED" in early.json()["detail"]
    await post(client, f"{path}/start", agent.headers)
    await post(client, f"{path}/complete", agent.headers)
    # A finished attempt takes no other report (repeating the same one is answered 200: test_repeated_reports).
    for action, body in (("start", {}), ("fail", {"error_message": "x"})):
        response = await post(client, f"{path}/{action}", agent.headers, **body)
        assert response.status_code == 409 and "COMPLETED" in response.json()["detail"]
    assert (await client.get(path, headers=owner)).json()["status"] == "COMPLETED"


async def test_only_the_assigned_agent_reports(client, world):
    owner, agent, other = world
    task = await submit(client, owner)
    path = f"/ains/tasks/{task['task_id']}"
    assert (await post(client, f"{path}/start", agent.headers)).status_code == 404  # not assigned to anyone yet
    await claim(client, agent)
    for headers in (other.headers,):
        assert (await post(client, f"{path}/start", headers)).status_code == 404
        assert (await post(client, f"{path}/complete", headers)).status_code == 404
        assert (await post(client, f"{path}/fail", headers, error_message="x")).status_code == 404
    for headers in (owner, ADMIN):
        assert (await post(client, f"{path}/start", headers)).status_code == 403
    assert (await post(client, f"{path}/start", {})).status_code == 401
    assert (await post(client, "/ains/tasks/task_nope/start", agent.headers)).status_code == 404
    assert (await client.get(path, headers=owner)).json()["status"] == "ASSIGNED"


async def test_failure_with_retries_left_goes_back_to_the_queue(client, world):
    owner, agent, _ = world
    task = await submit(client, owner, max_retries=2)
    path = f"/ains/tasks/{task['task_id']}"
    errors = ["boom 1", "boom 2", "boom 3"]
    for n, error in enumerate(errors, start=1):
        (claimed,) = await claim(client, agent)
        assert claimed["attempt"] == n
        await post(client, f"{path}/start", agent.headers, attempt=n)
        failed = (await post(client, f"{path}/fail", agent.headers, attempt=n, error_message=error)).json()
        if n <= 2:
            assert failed["status"] == "PENDING" and failed["retry_count"] == n
            assert failed["last_error"] == error and failed["assigned_agent_id"] is None
    assert failed["status"] == "FAILED" and failed["error_message"] == "boom 3" and failed["retry_count"] == 2
    history = (await client.get(f"{path}/attempts", headers=owner)).json()["attempts"]
    assert [(a["attempt"], a["outcome"], a["error"]) for a in history] == [
        (1, "failed", "boom 1"),
        (2, "failed", "boom 2"),
        (3, "failed", "boom 3"),
    ]


@pytest.mark.parametrize("body", [{"max_retries": 0}, {}])
async def test_no_retries_or_not_retryable_fails_at_once(client, world, body):
    owner, agent, _ = world
    task = await submit(client, owner, **body)
    await claim(client, agent, start=True)
    retryable = "max_retries" in body  # the second case fails with retryable false
    response = await post(
        client, f"/ains/tasks/{task['task_id']}/fail", agent.headers, error_message="bad input", retryable=retryable
    )
    assert response.status_code == 200
    assert response.json()["status"] == "FAILED" and response.json()["error_message"] == "bad input"
    assert response.json()["retry_count"] == 0


async def test_fencing_refuses_a_stale_attempt_and_changes_nothing(client, world):
    owner, agent, _ = world
    task = await submit(client, owner)
    path = f"/ains/tasks/{task['task_id']}"
    await claim(client, agent, start=True)
    await post(client, f"{path}/fail", agent.headers, attempt=1, error_message="transient")
    (second,) = await claim(client, agent)
    assert second["attempt"] == 2
    assert (await post(client, f"{path}/start", agent.headers, attempt=1)).status_code == 409
    await post(client, f"{path}/start", agent.headers, attempt=2)
    before = (await client.get(path, headers=owner)).json()
    late = await post(client, f"{path}/complete", agent.headers, attempt=1, result_data={"stale": True})
    assert late.status_code == 409 and "stale" in late.json()["detail"]
    late_fail = await post(client, f"{path}/fail", agent.headers, attempt=1, error_message="late")
    assert late_fail.status_code == 409
    assert (await client.get(path, headers=owner)).json() == before
    assert (await post(client, f"{path}/complete", agent.headers, attempt=2)).json()["status"] == "COMPLETED"


async def test_previous_holder_gets_409_once_the_task_moved_on(client, world):
    owner, agent, other = world
    task = await submit(client, owner)
    path = f"/ains/tasks/{task['task_id']}"
    await claim(client, agent, start=True)
    await post(client, f"{path}/fail", agent.headers, error_message="transient")
    await claim(client, other, start=True)
    response = await post(client, f"{path}/complete", agent.headers, attempt=1)
    assert response.status_code == 409
    assert (await client.get(path, headers=owner)).json()["assigned_agent_id"] == "agent_2"


async def test_bad_report_bodies(client, world, settings):
    owner, agent, _ = world
    task = await submit(client, owner)
    path = f"/ains/tasks/{task['task_id']}"
    await claim(client, agent, start=True)
    response = await post(client, f"{path}/fail", agent.headers)
    assert response.status_code == 422 and response.json()["detail"][0]["loc"][-1] == "error_message"
    assert (await post(client, f"{path}/complete", agent.headers, attempt=0)).status_code == 422
    assert (await post(client, f"{path}/complete", agent.headers, result_data=[1])).status_code == 422
    big = {"x": "y" * settings.max_input_bytes}
    assert (await post(client, f"{path}/complete", agent.headers, result_data=big)).status_code == 413
    assert (await client.get(path, headers=owner)).json()["status"] == "ACTIVE"
