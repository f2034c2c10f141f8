"""Request and response bodies of the workflow endpoints (SPEC 17)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import AfterValidator, Field, StrictInt, StringConstraints, model_validator

from ains.core.schemas import ApiModel, ClientId, RequestModel, UTCTime, bounded_metadata
from ains.tasks.schemas import TaskSubmit

STEP_KEY_PATTERN = r"^[A-Za-z0-9_.:-]{1,100}$"
StepKey = Annotated[str, StringConstraints(pattern=STEP_KEY_PATTERN)]
MAX_DELAY_SECONDS = 31_536_000


class WorkflowStatus(StrEnum):
    """A workflow's status: RUNNING until every step is final, then FAILED if a step failed, else CANCELLED if one
    was cancelled, else COMPLETED."""

    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


# A query parameter's type: a Literal of the values rather than the enum, so a wrong value gets the same 422.
WorkflowStatusValue: TypeAlias = Literal[tuple(status.value for status in WorkflowStatus)]  # type: ignore[valid-type]


class WorkflowStep(TaskSubmit):
    """One step: a task body, its key in this workflow, and the keys of the steps it waits for."""

    key: StepKey
    depends_on: Annotated[list[StepKey], Field(max_length=1000)] = Field(
        default_factory=list, description="Keys of the steps this one waits for (at most 100)"
    )
    run_at: UTCTime | None = Field(None, description="Not claimable before this time")
    delay_seconds: Annotated[StrictInt, Field(ge=0, le=MAX_DELAY_SECONDS)] | None = None

    @model_validator(mode="after")
    def _one_delay(self) -> WorkflowStep:
        if self.run_at is not None and self.delay_seconds is not None:
            raise ValueError("give run_at or delay_seconds, not both")
        return self


class WorkflowSubmit(RequestModel):
    client_id: ClientId | None = Field(None, description="The caller's own id; the admin submits for anyone")
    name: Annotated[str, Field(min_length=1, max_length=200)]
    steps: Annotated[list[WorkflowStep], Field(min_length=1, max_length=1000)] = Field(
        description="Up to 100 steps; a cycle, an unknown or a duplicate key is 422"
    )
    metadata: Annotated[dict[str, Any], AfterValidator(bounded_metadata)] = Field(default_factory=dict)


class WorkflowCancel(RequestModel):
    reason: Annotated[str, Field(min_length=1, max_length=1000)] = "Client requested cancellation"


class WorkflowStepOut(ApiModel):
    key: str
    task_id: str
    status: str
    depends_on: list[str]


class StepCounts(ApiModel):
    total: int
    completed: int
    failed: int
    cancelled: int


class WorkflowSummary(ApiModel):
    workflow_id: str
    client_id: str
    name: str
    status: WorkflowStatus
    metadata: dict[str, Any]
    step_counts: StepCounts
    created_at: UTCTime
    updated_at: UTCTime
    completed_at: UTCTime | None


class WorkflowOut(WorkflowSummary):
    steps: list[WorkflowStepOut]


class WorkflowList(ApiModel):
    workflows: list[WorkflowSummary]
    next_cursor: str | None
