"""SPEC 17: workflows running. Fan-out and fan-in, cascades, cancellation, `workflow.*` events, the race on a
workflow's last two steps, and a dependency completing while its dependent's submission is in flight."""

from __future__ import annotations

import asyncio

import pytest

from tests.helpers import claim, create_client, register_agent, submit
from tests.workflows.helpers import complete, research_workflow, step, workflow_events


@pytest.fixture
def settings_overrides() -> dict:
    # Deliveries go nowhere (port 9); the events are read from the outbox.
    return {"webhook_allow_private": True, "webhook_dispatch_interval_seconds": 60}


@pytest.fixture
async def world(client):
    owner = await create_client(client, "client_1")
    agents = [await register_agent(client, f"agent_{n}", max_concurrency=50) for n in range(2)]
    hook = await client.post(
        "/ains/clients/client_1/webhooks",
        json={
            "url": "http://127.0.0.1:9/hook",
            "events": ["workflow.completed", "workflow.failed", "workflow.cancelled"],
        },
        headers=owner,
    )
    assert hook.status_code == 201, hook.text
    return owner, agents


async def workflow(client, owner, workflow_id):
    return (await client.get(f"/ains/workflows/{workflow_id}", headers=owner)).json()


def statuses(body):
    return {s["key"]: s["status"] for s in body["steps"]}


async def test_plan_research_write_runs_to_completion(client, world, db):
    owner, (agent, _) = world
    submitted = (await client.post("/ains/workflows", json=research_workflow(), headers=owner)).json()
    wf = submitted["workflow_id"]
    ids = {s["key"]: s["task_id"] for s in submitted["steps"]}

    (plan,) = await claim(client, agent, max_tasks=10, start=True)
    assert plan["task_id"] == ids["plan"] and plan["workflow_id"] == wf and plan["step_key"] == "plan"
    await complete(client, agent, plan["task_id"], {"outline": ["a", "b", "c"]})
    assert statuses(await workflow(client, owner, wf)) == {
        "plan": "COMPLETED",
        "research-1": "PENDING",
        "research-2": "PENDING",
        "research-3": "PENDING",
        "write": "WAITING",
    }
    research = await claim(client, agent, max_tasks=10, start=True)
    assert sorted(t["step_key"] for t in research) == ["research-1", "research-2", "research-3"]
    assert all(t["dependency_results"] == {ids["plan"]: {"outline": ["a", "b", "c"]}} for t in research)
    for task in research:
        await complete(client, agent, task["task_id"], {"found": task["step_key"]})
    (write,) = await claim(client, agent, max_tasks=10, start=True)
    assert write["dependency_results"] == {ids[f"research-{n}"]: {"found": f"research-{n}"} for n in (1, 2, 3)}
    await complete(client, agent, write["task_id"], {"text": "done"})
    done = await workflow(client, owner, wf)
    assert done["status"] == "COMPLETED" and done["completed_at"] is not None
    assert done["step_counts"] == {"total": 5, "completed": 5, "failed": 0, "cancelled": 0}
    assert await workflow_events(db, wf) == ["workflow.completed"]
    listed = (await client.get("/ains/tasks", params={"workflow_id": wf}, headers=owner)).json()["tasks"]
    assert sorted(t["step_key"] for t in listed) == sorted(ids)


async def test_a_failed_step_cancels_what_depends_on_it_and_fails_the_workflow(client, world, db):
    owner, (agent, _) = world
    body = {"name": "f", "steps": [step("a", max_retries=0), step("b", "a"), step("c", "b"), step("side")]}
    wf = (await client.post("/ains/workflows", json=body, headers=owner)).json()["workflow_id"]
    claimed = {t["step_key"]: t for t in await claim(client, agent, max_tasks=10, start=True)}
    assert set(claimed) == {"a", "side"}
    response = await client.post(
        f"/ains/tasks/{claimed['a']['task_id']}/fail",
        json={"error_message": "x", "retryable": False},
        headers=agent.headers,
    )
    assert response.status_code == 200
    now = await workflow(client, owner, wf)
    assert statuses(now) == {"a": "FAILED", "b": "CANCELLED", "c": "CANCELLED", "side": "ACTIVE"}
    assert now["status"] == "RUNNING"  # a step is still running
    await complete(client, agent, claimed["side"]["task_id"])
    now = await workflow(client, owner, wf)
    assert now["status"] == "FAILED" and now["step_counts"] == {"total": 4, "completed": 1, "failed": 1, "cancelled": 2}
    assert await workflow_events(db, wf) == ["workflow.failed"]


async def test_cancelling_a_workflow_cancels_every_open_step(client, world, db):
    owner, (agent, _) = world
    submitted = (await client.post("/ains/workflows", json=research_workflow(), headers=owner)).json()
    wf = submitted["workflow_id"]
    (plan,) = await claim(client, agent, max_tasks=10, start=True)
    response = await client.post(f"/ains/workflows/{wf}/cancel", json={"reason": "changed my mind"}, headers=owner)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "CANCELLED" and set(statuses(body).values()) == {"CANCELLED"}
    plan_now = (await client.get(f"/ains/tasks/{plan['task_id']}", headers=owner)).json()
    assert plan_now["cancellation_reason"] == "changed my mind"
    assert await workflow_events(db, wf) == ["workflow.cancelled"]
    again = await client.post(f"/ains/workflows/{wf}/cancel", json={}, headers=owner)
    assert again.status_code == 200 and again.json()["status"] == "CANCELLED"
    assert await workflow_events(db, wf) == ["workflow.cancelled"]


async def test_fan_out_and_fan_in(client, world):
    owner, (agent, _) = world
    leaves = [step(f"leaf-{n}", "root") for n in range(40)]
    body = {"name": "wide", "steps": [step("root"), *leaves, step("sink", *[s["key"] for s in leaves])]}
    wf = (await client.post("/ains/workflows", json=body, headers=owner)).json()["workflow_id"]
    (root,) = await claim(client, agent, max_tasks=50, start=True)
    await complete(client, agent, root["task_id"])
    fanned = await claim(client, agent, max_tasks=50, start=True)
    assert len(fanned) == 40
    gate = asyncio.Semaphore(8)  # concurrent, within what a shared PostgreSQL's connection limit allows

    async def finish(task):
        async with gate:
            await complete(client, agent, task["task_id"], {"n": task["step_key"]})

    await asyncio.gather(*(finish(task) for task in fanned))
    (sink,) = await claim(client, agent, max_tasks=50, start=True)
    assert sink["step_key"] == "sink" and len(sink["dependency_results"]) == 40
    await complete(client, agent, sink["task_id"])
    assert (await workflow(client, owner, wf))["status"] == "COMPLETED"


async def test_the_last_two_steps_finishing_at_once_finish_the_workflow_once(client, world, db):
    owner, agents = world
    for _round in range(15):
        body = {"name": "race", "steps": [step("left"), step("right")]}
        wf = (await client.post("/ains/workflows", json=body, headers=owner)).json()["workflow_id"]
        held = [(agent, await claim(client, agent, max_tasks=1, start=True)) for agent in agents]
        assert all(len(tasks) == 1 for _, tasks in held)
        await asyncio.gather(*(complete(client, agent, tasks[0]["task_id"]) for agent, tasks in held))
        now = await workflow(client, owner, wf)
        assert now["status"] == "COMPLETED", now
        assert now["step_counts"]["completed"] == 2
        assert await workflow_events(db, wf) == ["workflow.completed"]


async def test_a_dependency_completing_while_its_dependent_is_submitted(client, world):
    owner, (agent, _) = world
    for _round in range(15):
        dependency = await submit(client, owner)
        (held,) = await claim(client, agent, max_tasks=1, start=True)
        assert held["task_id"] == dependency["task_id"]
        _, dependent = await asyncio.gather(
            complete(client, agent, held["task_id"], {"v": _round}),
            client.post(
                "/ains/tasks",
                json={"task_type": "t", "capability_required": "data:v1", "depends_on": [held["task_id"]]},
                headers=owner,
            ),
        )
        assert dependent.status_code == 201, dependent.text
        task = (await client.get(f"/ains/tasks/{dependent.json()['task_id']}", headers=owner)).json()
        assert task["status"] == "PENDING", task  # never left WAITING for a dependency that already completed
        (claimed,) = await claim(client, agent, max_tasks=1, start=True)
        assert claimed["dependency_results"] == {held["task_id"]: {"v": _round}}
        await complete(client, agent, claimed["task_id"])


async def test_cancelling_a_workflow_while_a_step_completes(client, world):
    owner, (agent, _) = world
    for _round in range(10):
        body = {"name": "race", "steps": [step("a"), step("b", "a"), step("c", "b"), step("d", "a")]}
        wf = (await client.post("/ains/workflows", json=body, headers=owner)).json()["workflow_id"]
        (held,) = await claim(client, agent, max_tasks=1, start=True)
        done, cancelled = await asyncio.gather(
            client.post(f"/ains/tasks/{held['task_id']}/complete", json={"result_data": {}}, headers=agent.headers),
            client.post(f"/ains/workflows/{wf}/cancel", json={"reason": "stop"}, headers=owner),
        )
        assert done.status_code in (200, 409), done.text  # 409: the cancel came first
        assert cancelled.status_code == 200, cancelled.text
        now = await workflow(client, owner, wf)
        assert now["status"] == "CANCELLED", now
        expected_a = "COMPLETED" if done.status_code == 200 else "CANCELLED"
        assert statuses(now) == {"a": expected_a, "b": "CANCELLED", "c": "CANCELLED", "d": "CANCELLED"}
