"""A small builder for `POST /ains/workflows` bodies: steps by key, `depends_on` by key or by step.

flow = Workflow("report")
plan = flow.step("plan", task_type="plan", capability_required="llm:v1", input_data={"topic": "tides"})
research = [flow.step(f"research-{n}", task_type="research", capability_required="web:v1", depends_on=[plan])
            for n in (1, 2, 3)]
flow.step("write", task_type="write", capability_required="llm:v1", depends_on=research)
workflow = client.submit_workflow(flow)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Step:
    key: str
    fields: dict[str, Any]
    depends_on: list[str] = field(default_factory=list)

    def body(self) -> dict[str, Any]:
        return {"key": self.key, "depends_on": list(self.depends_on), **self.fields}


class Workflow:
    """The steps of one workflow, in the order they were added."""

    def __init__(self, name: str, *, metadata: dict[str, Any] | None = None, client_id: str | None = None) -> None:
        self.name = name
        self.metadata = metadata or {}
        self.client_id = client_id
        self.steps: dict[str, Step] = {}

    def step(
        self, key: str, *, depends_on: Iterable[str | Step] | str | Step | None = None, **task_fields: Any
    ) -> Step:
        """Add a step: `task_fields` are those of a task (task_type, capability_required, input_data, …)."""
        if key in self.steps:
            raise ValueError(f"step {key!r} is already in this workflow")
        if depends_on is None:
            depends_on = []
        elif isinstance(depends_on, (str, Step)):
            depends_on = [depends_on]
        keys = [dep.key if isinstance(dep, Step) else dep for dep in depends_on]
        step = Step(key, dict(task_fields), keys)
        self.steps[key] = step
        return step

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": self.name,
            "steps": [step.body() for step in self.steps.values()],
            "metadata": self.metadata,
        }
        if self.client_id is not None:
            body["client_id"] = self.client_id
        return body
