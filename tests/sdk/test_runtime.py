"""The agent runtime against a real server process: success, retries, NonRetryable, RetryAfter,
cancellation of a running handler, fencing, and draining on SIGTERM."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from ains.agent import Agent, NonRetryable, RetryAfter, TaskContext, current_task
from ains.client import AsyncAINSClient
from ains.tasks.schemas import ClaimResponse
from tests.helpers import wait_for


@pytest.fixture
async def setup(server, client_key, unique, tmp_path):
    _, key = client_key
    capability = f"{unique('cap')}:v1"
    agents: list[tuple[Agent, asyncio.Task]] = []

    def make_agent(**options) -> Agent:
        agent_id = unique("agent")
        return Agent(server.url, agent_id, tmp_path / f"{agent_id}.key", [capability], poll_wait_seconds=1, **options)

    def start(agent: Agent) -> None:
        agents.append((agent, asyncio.create_task(agent.run_async(install_signal_handlers=False))))

    async with AsyncAINSClient(server.url, key) as client:
        yield client, capability, make_agent, start
    for agent, running in agents:
        agent.stop()
        await asyncio.wait_for(running, timeout=30)


def task_body(capability, **extra):
    return {"task_type": "runtime", "capability_required": capability, "input_data": {"n": 21}, **extra}


async def test_a_handler_result_completes_the_task(setup, tmp_path):
    client, capability, make_agent, start = setup
    agent = make_agent()
    seen = []

    @agent.handler(capability)
    async def double(input_data):
        seen.append(current_task().attempt)
        return {"doubled": input_data["n"] * 2}

    start(agent)
    task = await client.submit_task(**task_body(capability))
    done = await client.wait_for_task(task.task_id, timeout=20)
    assert done.status == "COMPLETED" and done.result_data == {"doubled": 42} and seen == [1]
    # The identity file was made, private, and the key never touches it.
    key_file = tmp_path / f"{agent.agent_id}.key"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600" and "ains_agent_" not in key_file.read_text()


async def test_a_sync_handler_runs_in_a_thread(setup):
    client, capability, make_agent, start = setup
    agent = make_agent()

    @agent.handler(capability)
    def add(input_data):
        time.sleep(0.1)
        return input_data["n"] + current_task().attempt

    start(agent)
    task = await client.submit_task(**task_body(capability))
    assert (await client.wait_for_task(task.task_id, timeout=20)).result_data == {"result": 22}


async def test_an_exception_is_retried_then_fails(setup):
    client, capability, make_agent, start = setup
    agent = make_agent()

    @agent.handler(capability)
    async def broken(input_data):
        raise ValueError("bad day")

    start(agent)
    task = await client.submit_task(**task_body(capability, max_retries=1))
    done = await client.wait_for_task(task.task_id, timeout=20)
    assert done.status == "FAILED" and done.error_message == "ValueError: bad day" and done.retry_count == 1
    assert [a.error for a in (await client.task_attempts(task.task_id)).attempts] == ["ValueError: bad day"] * 2


async def test_non_retryable_fails_at_once(setup):
    client, capability, make_agent, start = setup
    agent = make_agent()

    @agent.handler(capability)
    async def refuse(input_data):
        raise NonRetryable("input is wrong")

    start(agent)
    task = await client.submit_task(**task_body(capability, max_retries=3))
    done = await client.wait_for_task(task.task_id, timeout=20)
    assert done.status == "FAILED" and done.retry_count == 0 and "input is wrong" in done.error_message


async def test_retry_after_asks_for_its_delay(setup):
    client, capability, make_agent, start = setup
    agent = make_agent()

    @agent.handler(capability)
    async def upstream_busy(input_data):
        if current_task().attempt == 1:
            raise RetryAfter(1.5)
        return {"ok": True}

    start(agent)
    task = await client.submit_task(**task_body(capability))
    done = await client.wait_for_task(task.task_id, timeout=20)
    assert done.status == "COMPLETED"
    first, second = (await client.task_attempts(task.task_id)).attempts
    assert (second.assigned_at - first.finished_at).total_seconds() >= 1.4  # not the 0.1 s policy delay


async def test_cancellation_reaches_a_running_async_handler(setup):
    client, capability, make_agent, start = setup
    agent = make_agent(heartbeat_seconds=0.5)
    cancelled_at: list[float] = []
    started = asyncio.Event()

    @agent.handler(capability)
    async def long_job(input_data):
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled_at.append(time.monotonic())
            raise

    start(agent)
    task = await client.submit_task(**task_body(capability))
    await asyncio.wait_for(started.wait(), timeout=20)
    asked = time.monotonic()
    await client.cancel_task(task.task_id, "stop it")
    assert await wait_for(lambda: _truthy(cancelled_at), timeout=10)
    assert cancelled_at[0] - asked <= 0.5 + 0.5  # within one heartbeat interval, plus a little slack
    assert (await client.get_task(task.task_id)).status == "CANCELLED"


async def _truthy(value):
    return bool(value)


async def test_fencing_after_a_lease_expiry(setup, server):
    client, capability, make_agent, start = setup
    slow, quick = make_agent(), make_agent()
    runs = []

    @slow.handler(capability)
    async def never_reached(input_data):
        runs.append("slow")
        return {}

    @quick.handler(capability)
    async def wins(input_data):
        runs.append("quick")
        return {"by": "quick"}

    # The slow agent claims, then stalls past its lease before starting.
    slow._prepare()
    await slow._connect()
    task = await client.submit_task(**task_body(capability))
    # A raw claim: what the runtime hands a handler as `current_task().task` is this answer, field for field.
    response = await slow._client._http.post(f"/ains/agents/{slow.agent_id}/tasks/claim", json={})
    (claimed,) = response.json()["tasks"]
    assert ClaimResponse.model_validate(response.json()).model_dump(mode="json")["tasks"] == [claimed]
    assert await wait_for(lambda: _status(client, task.task_id, "PENDING"), timeout=10)
    start(quick)
    assert (await client.wait_for_task(task.task_id, timeout=20)).result_data == {"by": "quick"}
    stale = TaskContext(claimed["task_id"], claimed["attempt"], capability, claimed["input_data"])
    slow._running[stale.task_id] = None  # bookkeeping only
    await slow._run_task(stale)  # sends start with attempt 1: refused, the handler never runs
    await slow._client.aclose()
    assert runs == ["quick"]
    history = (await client.task_attempts(task.task_id)).attempts
    assert [(a.attempt, a.outcome) for a in history] == [(1, "lease_expired"), (2, "completed")]


async def _status(client, task_id, status):
    return (await client.get_task(task_id)).status == status


@pytest.mark.slow
async def test_sigterm_drains_without_losing_or_repeating_a_task(server, client_key, unique, tmp_path):
    _, key = client_key
    capability = f"{unique('drain')}:v1"
    run_log = tmp_path / "runs.log"
    env = os.environ | {
        "AINS_URL": server.url,
        "SAMPLE_AGENT_ID": unique("agent"),
        "SAMPLE_KEY_FILE": str(tmp_path / "agent.key"),
        "SAMPLE_CAPABILITY": capability,
        "SAMPLE_RUN_LOG": str(run_log),
        "AINS_LOG_LEVEL": "WARNING",
    }
    async with AsyncAINSClient(server.url, key) as client:
        tasks = [await client.submit_task(**task_body(capability, input_data={"n": n})) for n in range(6)]
        process = subprocess.Popen(
            [sys.executable, "-m", "ains", "agent", "run", "tests.sdk.sample_agent:agent"],
            env=env,
            cwd=os.getcwd(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            assert await wait_for(lambda: _started(run_log), timeout=30)
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0
        finally:
            if process.poll() is None:
                process.kill()
        runs = run_log.read_text().split()
        starts = Counter(runs[i + 1] for i in range(0, len(runs), 2) if runs[i] == "start")
        ends = Counter(runs[i + 1] for i in range(0, len(runs), 2) if runs[i] == "end")
        assert starts == ends and set(starts.values()) == {1}  # every run finished, none twice
        final = {t.task_id: (await client.get_task(t.task_id)) for t in tasks}
        completed = {tid for tid, t in final.items() if t.status == "COMPLETED"}
        assert len(completed) == len(starts)
        # Nothing was lost: the rest are still in the queue (or back in it) for another agent.
        assert all(t.status in ("COMPLETED", "PENDING", "ASSIGNED") for t in final.values())
        for task_id in completed:
            assert len((await client.task_attempts(task_id)).attempts) == 1


async def _started(run_log):
    return run_log.exists() and "start" in run_log.read_text()
