"""The SDK's workflow builder, `submit_workflow`, `wait_for_workflow` and schedule calls, against a real server."""

from __future__ import annotations

import threading

import pytest

from ains.client import AINSClient, AINSError, Workflow
from ains.identity import Identity
from tests.helpers import ADMIN_KEY, ServerProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    process = ServerProcess(
        {"AINS_DATA_DIR": str(tmp_path_factory.mktemp("wf-sdk")), "AINS_TIMEOUT_CHECK_SECONDS": "0.2"}
    )
    yield process
    process.stop()


@pytest.fixture
def client(server):
    with AINSClient(server.url, ADMIN_KEY) as admin:
        key = admin.create_key("client_sdk", "workflow sdk").api_key
    with AINSClient(server.url, key) as client:
        yield client


def test_the_builder_takes_keys_or_steps():
    flow = Workflow("report", metadata={"topic": "tides"})
    plan = flow.step("plan", task_type="plan", capability_required="llm:v1")
    research = [flow.step(f"r{n}", task_type="research", capability_required="web:v1", depends_on=plan) for n in (1, 2)]
    flow.step("write", task_type="write", capability_required="llm:v1", depends_on=[*research, "plan"])
    body = flow.body()
    assert [s["key"] for s in body["steps"]] == ["plan", "r1", "r2", "write"]
    assert body["steps"][1]["depends_on"] == ["plan"]
    assert body["steps"][3]["depends_on"] == ["r1", "r2", "plan"]
    with pytest.raises(ValueError):
        flow.step("plan", task_type="x", capability_required="llm:v1")


def test_schedules_through_the_sdk(client):
    schedule = client.create_schedule(
        "nightly", "0 3 * * *", {"task_type": "report", "capability_required": "llm:v1"}, timezone="Europe/Berlin"
    )
    assert schedule.active and schedule.timezone == "Europe/Berlin" and schedule.next_run_at is not None
    assert client.pause_schedule(schedule.schedule_id).active is False
    assert client.resume_schedule(schedule.schedule_id).active is True
    assert [s.schedule_id for s in client.list_schedules().schedules] == [schedule.schedule_id]
    with pytest.raises(AINSError) as error:
        client.create_schedule("bad", "not cron", {"task_type": "x", "capability_required": "llm:v1"})
    assert error.value.status_code == 422
    client.delete_schedule(schedule.schedule_id)
    with pytest.raises(AINSError):
        client.get_schedule(schedule.schedule_id)


def test_a_workflow_submitted_and_waited_for(server, client):
    flow = Workflow("report")
    plan = flow.step("plan", task_type="plan", capability_required="wfsdk:v1", input_data={"topic": "tides"})
    research = [
        flow.step(f"r{n}", task_type="research", capability_required="wfsdk:v1", depends_on=plan) for n in (1, 2, 3)
    ]
    flow.step("write", task_type="write", capability_required="wfsdk:v1", depends_on=research)
    workflow = client.submit_workflow(flow)
    assert workflow.status == "RUNNING" and len(workflow.steps) == 5

    identity = Identity.generate()
    with AINSClient(server.url) as anonymous:
        registered = anonymous.register_agent("agent_wfsdk", identity, ["wfsdk:v1"], max_concurrency=5)
    seen: dict[str, dict] = {}

    def work() -> None:
        with AINSClient(server.url, registered.api_key) as agent:
            done = 0
            while done < 5:
                for task in agent.claim_tasks("agent_wfsdk", max_tasks=5, wait_seconds=5, start=True).tasks:
                    seen[task.step_key] = task.dependency_results or {}
                    agent.complete_task(task.task_id, {"step": task.step_key}, attempt=task.attempt)
                    done += 1

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    finished = client.wait_for_workflow(workflow.workflow_id, timeout=60, poll_interval=0.1)
    worker.join(timeout=10)
    assert finished.status == "COMPLETED" and {s.status for s in finished.steps} == {"COMPLETED"}
    assert sorted(seen["write"].values(), key=str) == [{"step": "r1"}, {"step": "r2"}, {"step": "r3"}]


async def test_the_agent_runtime_hands_dependency_results_to_the_handler(server, tmp_path):
    import asyncio

    from ains.agent import Agent, current_task
    from ains.client import AsyncAINSClient

    with AINSClient(server.url, ADMIN_KEY) as admin:
        key = admin.create_key("client_runtime_deps", "runtime").api_key
    agent = Agent(server.url, "agent_runtime_deps", tmp_path / "agent.key", ["wfrun:v1"], poll_wait_seconds=1)
    seen: dict[str, dict] = {}

    @agent.handler("wfrun:v1")
    async def handle(input_data: dict) -> dict:
        seen[input_data["name"]] = current_task().dependency_results
        return {"name": input_data["name"]}

    running = asyncio.create_task(agent.run_async(install_signal_handlers=False))
    try:
        async with AsyncAINSClient(server.url, key) as client:
            flow = Workflow("runtime")
            first = flow.step("first", task_type="t", capability_required="wfrun:v1", input_data={"name": "first"})
            flow.step(
                "second", task_type="t", capability_required="wfrun:v1", input_data={"name": "second"}, depends_on=first
            )
            workflow = await client.submit_workflow(flow)
            done = await client.wait_for_workflow(workflow.workflow_id, timeout=30, poll_interval=0.1)
        assert done.status == "COMPLETED"
        first_id = next(step.task_id for step in done.steps if step.key == "first")
        assert seen == {"first": {}, "second": {first_id: {"name": "first"}}}
    finally:
        agent.stop()
        await asyncio.wait_for(running, timeout=30)
