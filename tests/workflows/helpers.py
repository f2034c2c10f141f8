"""Helpers for the workflow tests: workflow bodies, and reading what the database holds."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from ains.schedules.models import Schedule
from ains.tasks.models import Task
from ains.workflows.models import TaskDependency, Workflow


def step(key: str, *depends_on: str, capability: str = "data:v1", **extra: Any) -> dict[str, Any]:
    return {
        "key": key,
        "depends_on": list(depends_on),
        "task_type": f"step-{key}",
        "capability_required": capability,
        "input_data": {"key": key},
    } | extra


def research_workflow(name: str = "report") -> dict[str, Any]:
    """plan → three research steps → write."""
    return {
        "name": name,
        "steps": [
            step("plan"),
            step("research-1", "plan"),
            step("research-2", "plan"),
            step("research-3", "plan"),
            step("write", "research-1", "research-2", "research-3"),
        ],
    }


async def stored_counts(db) -> dict[str, int]:
    async with db.read() as session:
        return {
            "tasks": await session.scalar(select(func.count()).select_from(Task)),
            "workflows": await session.scalar(select(func.count()).select_from(Workflow)),
            "dependencies": await session.scalar(select(func.count()).select_from(TaskDependency)),
            "schedules": await session.scalar(select(func.count()).select_from(Schedule)),
        }


async def complete(client, agent, task_id: str, result: dict[str, Any] | None = None) -> dict[str, Any]:
    response = await client.post(
        f"/ains/tasks/{task_id}/complete", json={"result_data": result or {}}, headers=agent.headers
    )
    assert response.status_code == 200, response.text
    return response.json()


async def workflow_events(db, workflow_id: str) -> list[str]:
    """The workflow.* events stored in the outbox for this workflow, in order."""
    from ains.webhooks.models import TaskEvent

    async with db.read() as session:
        rows = await session.scalars(
            select(TaskEvent.event).where(TaskEvent.task_id == workflow_id).order_by(TaskEvent.created_at)
        )
        return list(rows)
