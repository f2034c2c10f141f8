"""The floor AINS's HTTP overhead is measured against (http_overhead.py): a minimal FastAPI app, no database.

It answers the same three requests as the AINS routes measured there, with the same
framework work a request can't avoid: the bearer header is read, the task-submission
body is validated by a Pydantic model with the same fields and constraints as AINS's
`TaskSubmit` (src/ains/tasks/schemas.py, copied so this file needs nothing from AINS),
and the answers are small JSON documents built by FastAPI from a response model.

- `POST /ains/tasks` validates the body, keeps it in a dict under a new id, answers 201;
- `GET /ains/tasks/{task_id}` answers that task (404 if unknown);
- `POST /ains/agents/{agent_id}/tasks/claim` answers one task (`{"tasks": [...], "reason": null}`).

Served like `ains serve` serves AINS (src/ains/cli.py): `uvicorn.run(app, log_config=None,
access_log=False)`, one process, uvicorn's default loop and HTTP parser (uvloop and
httptools, from `uvicorn[standard]`).

    .venv/bin/python benchmarks/minimal_app.py [--port 8001]
"""

from __future__ import annotations

import argparse
import itertools
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Header, HTTPException, status
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StringConstraints

AGENT_ID_PATTERN = r"^[A-Za-z0-9_.:-]{3,64}$"
CAPABILITY_PATTERN = r"^[A-Za-z0-9_.-]{1,64}:[A-Za-z0-9_.-]{1,64}$"
ClientId = Annotated[str, StringConstraints(pattern=AGENT_ID_PATTERN)]
Capability = Annotated[str, StringConstraints(pattern=CAPABILITY_PATTERN)]
Score = Annotated[StrictFloat | StrictInt, Field(ge=0.0, le=1.0)]


class TaskSubmit(BaseModel):
    """AINS's TaskSubmit: unknown fields ignored, known ones checked strictly."""

    model_config = ConfigDict(extra="ignore")

    client_id: ClientId | None = None
    task_type: Annotated[str, Field(min_length=1, max_length=100)]
    capability_required: Capability
    input_data: dict[str, Any] = Field(default_factory=dict)
    priority: Annotated[StrictInt, Field(ge=1, le=10)] = 5
    max_retries: Annotated[StrictInt, Field(ge=0, le=10)] = 3
    retry_policy: Literal["exponential", "linear", "fixed"] = "exponential"
    retry_jitter: StrictBool = False
    timeout_seconds: Annotated[StrictInt, Field(ge=1, le=3600)] = 300
    idempotency_key: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    min_trust_score: Score | None = None


class ClaimRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    max_tasks: Annotated[StrictInt, Field(ge=1, le=50)] = 1
    wait_seconds: Annotated[StrictInt | StrictFloat, Field(ge=0, le=30)] = 0
    start: StrictBool = False


class TaskOut(BaseModel):
    task_id: str
    client_id: str
    task_type: str
    capability_required: str
    input_data: dict[str, Any]
    priority: int
    status: str
    attempt: int


class ClaimResponse(BaseModel):
    tasks: list[TaskOut]
    reason: str | None = None


app = FastAPI(title="minimal")
tasks: dict[str, TaskOut] = {}
ids = itertools.count(1)
Authorization = Annotated[str | None, Header()]


def _check(authorization: str | None) -> None:
    if not authorization or not authorization.startswith("Bearer "):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Missing API key")


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/ains/tasks", status_code=status.HTTP_201_CREATED, response_model=TaskOut)
async def submit(body: TaskSubmit, authorization: Authorization = None) -> TaskOut:
    _check(authorization)
    task_id = f"task_{next(ids)}"
    task = TaskOut(
        task_id=task_id,
        client_id=body.client_id or "bench_client",
        task_type=body.task_type,
        capability_required=body.capability_required,
        input_data=body.input_data,
        priority=body.priority,
        status="PENDING",
        attempt=0,
    )
    if len(tasks) < 100_000:
        tasks[task_id] = task
    return task


@app.get("/ains/tasks/{task_id}", response_model=TaskOut)
async def get_task(task_id: str, authorization: Authorization = None) -> TaskOut:
    _check(authorization)
    task = tasks.get(task_id)
    if task is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"Task {task_id} not found")
    return task


@app.post("/ains/agents/{agent_id}/tasks/claim", response_model=ClaimResponse)
async def claim(agent_id: str, body: ClaimRequest | None = None, authorization: Authorization = None) -> ClaimResponse:
    _check(authorization)
    task = TaskOut(
        task_id=f"task_{next(ids)}",
        client_id="bench_client",
        task_type="bench",
        capability_required="bench:v1",
        input_data={"n": 1},
        priority=5,
        status="ASSIGNED",
        attempt=1,
    )
    return ClaimResponse(tasks=[task])


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, log_config=None, access_log=False)


if __name__ == "__main__":
    main()
