"""Request and response bodies of the task endpoints."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import AfterValidator, AliasChoices, Field, StrictBool, StrictFloat, StrictInt, model_validator

from ains.core.middleware import check_item
from ains.core.schemas import ApiModel, Capability, ClientId, RequestModel, UTCTime, bounded_metadata

RetryPolicy = Literal["exponential", "linear", "fixed"]


# The values are stored in `tasks.status` and sent as they are; the moves between them: `lifecycle.ALLOWED_MOVES`.
class TaskStatus(StrEnum):
    """A task's status: WAITING for its dependencies, PENDING in the queue, ASSIGNED or ACTIVE while an agent
    holds it, then COMPLETED, FAILED or CANCELLED for good."""

    WAITING = "WAITING"
    PENDING = "PENDING"
    ASSIGNED = "ASSIGNED"
    ACTIVE = "ACTIVE"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


# Ended for good: no move leads out of these (a workflow ends in the same three).
FINAL_STATUSES = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})
# Held by an agent: counted against its concurrency, given back when it is lost or deregisters.
HELD_STATUSES = (TaskStatus.ASSIGNED, TaskStatus.ACTIVE)
# A query parameter's type: a Literal of the values rather than the enum, so a wrong value gets the same 422.
TaskStatusValue: TypeAlias = Literal[tuple(status.value for status in TaskStatus)]  # type: ignore[valid-type]
Score = Annotated[StrictFloat | StrictInt, Field(ge=0.0, le=1.0)]


class TaskSubmit(RequestModel):
    client_id: ClientId | None = Field(
        None, description="The caller's own id; defaults to it. Admin may submit for anyone."
    )
    task_type: Annotated[str, Field(min_length=1, max_length=100)]
    capability_required: Capability
    input_data: dict[str, Any] = Field(default_factory=dict)
    priority: Annotated[StrictInt, Field(ge=1, le=10)] = 5
    max_retries: Annotated[StrictInt, Field(ge=0, le=10)] = 3
    retry_policy: RetryPolicy = "exponential"
    retry_jitter: StrictBool = False
    timeout_seconds: Annotated[StrictInt, Field(ge=1, le=3600)] = 300
    idempotency_key: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    metadata: Annotated[dict[str, Any], AfterValidator(bounded_metadata)] = Field(
        default_factory=dict, description="Free-form JSON object, at most `max_metadata_bytes` serialised (413)"
    )
    min_trust_score: Score | None = None
    depends_on: Annotated[list[Annotated[str, Field(min_length=1, max_length=64)]], Field(max_length=100)] = Field(
        default_factory=list, description="Ids of tasks of the same client this one waits for (at most 100)"
    )
    run_at: UTCTime | None = Field(None, description="Not claimable before this time")
    delay_seconds: Annotated[StrictInt, Field(ge=0, le=31_536_000)] | None = Field(
        None, description="Not claimable for this many seconds (not with run_at)"
    )

    @model_validator(mode="after")
    def _one_delay(self) -> TaskSubmit:
        if self.run_at is not None and self.delay_seconds is not None:
            raise ValueError("give run_at or delay_seconds, not both")
        return self

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        # A batch item holding text or a number AINS never accepts fails alone (the edge deferred it here).
        return check_item(data)


class TaskOut(ApiModel):
    task_id: str
    client_id: str
    task_type: str
    capability_required: str
    input_data: dict[str, Any]
    priority: int
    max_retries: int
    retry_policy: str
    retry_jitter: bool
    timeout_seconds: int
    idempotency_key: str | None
    metadata: dict[str, Any] = Field(validation_alias=AliasChoices("task_metadata", "metadata"))
    min_trust_score: float | None
    status: TaskStatus
    assigned_agent_id: str | None
    attempt: int = Field(description="Current attempt number (0 before the first claim)")
    effective_priority: float = Field(
        0.0,
        description="Priority plus one step per aging interval waited while claimable, rounded, at most 10",
    )
    created_at: UTCTime
    updated_at: UTCTime
    available_at: UTCTime
    assigned_at: UTCTime | None
    started_at: UTCTime | None
    completed_at: UTCTime | None
    result_data: dict[str, Any] | None
    error_message: str | None
    retry_count: int
    next_retry_at: UTCTime | None
    last_error: str | None
    cancelled_at: UTCTime | None
    cancelled_by: str | None
    cancellation_reason: str | None
    depends_on: list[str] | None = Field(None, description="The tasks this one waits for")
    workflow_id: str | None = None
    step_key: str | None = None


class ClaimedTask(TaskOut):
    dependency_results: dict[str, Any] | None = Field(
        None, description="{task_id: result_data} of each task this one depended on"
    )


class TaskList(ApiModel):
    tasks: list[TaskOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")


class AttemptOut(ApiModel):
    attempt: int
    agent_id: str
    assigned_at: UTCTime
    started_at: UTCTime | None
    finished_at: UTCTime | None
    outcome: str | None
    error: str | None


class AttemptHistory(ApiModel):
    task_id: str
    attempts: list[AttemptOut]


class ClaimRequest(RequestModel):
    max_tasks: Annotated[StrictInt, Field(ge=1, le=50)] = 1
    wait_seconds: Annotated[StrictInt | StrictFloat, Field(ge=0, le=30)] = 0
    start: StrictBool = False


class ClaimResponse(ApiModel):
    tasks: list[ClaimedTask]
    reason: str | None = Field(
        None, description="Why the agent's trust level blocked or narrowed this claim; null otherwise"
    )


Attempt = Annotated[StrictInt, Field(ge=1, description="The attempt this answer is about (fencing)")]


class StartRequest(RequestModel):
    attempt: Attempt | None = None


class CompleteRequest(RequestModel):
    result_data: dict[str, Any] = Field(default_factory=dict)
    attempt: Attempt | None = None


class FailRequest(RequestModel):
    error_message: Annotated[str, Field(min_length=1, max_length=10000)]
    retryable: StrictBool = True
    retry_after_seconds: Annotated[StrictInt | StrictFloat, Field(ge=0, le=31_536_000)] | None = None
    attempt: Attempt | None = None


class CancelRequest(RequestModel):
    reason: Annotated[str, Field(min_length=1, max_length=1000)] = "Client requested cancellation"


class CancelResponse(ApiModel):
    task_id: str
    status: TaskStatus
    cancelled_at: UTCTime
    cancelled_by: str
    cancellation_reason: str


class PriorityRequest(RequestModel):
    priority: Annotated[StrictInt, Field(ge=1, le=10)]


class QueueMetrics(ApiModel):
    tasks_by_priority: dict[str, int] = Field(description="Tasks not final, by priority")
    queue_depth_by_priority: dict[str, int] = Field(description="Claimable PENDING tasks, by priority")
    avg_wait_time_by_priority: dict[str, float] = Field(
        description="Mean seconds the claimable PENDING tasks of each priority have waited so far"
    )
    scheduled_retries: int = Field(description="PENDING tasks waiting for their retry delay to end")
    oldest_pending_age_seconds: float = Field(description="Age of the oldest PENDING task since submission; 0 if none")


MAX_BATCH = 100


class BatchSubmit(RequestModel):
    tasks: Annotated[list[dict[str, Any]], Field(min_length=1, max_length=MAX_BATCH)] = Field(
        description="Up to 100 task bodies, each validated like POST /ains/tasks"
    )
    atomic: StrictBool = Field(False, description="All or nothing: any invalid item means nothing is stored")


class BatchSubmitted(ApiModel):
    index: int
    task_id: str
    status: TaskStatus
    client_id: str
    created_at: UTCTime


class BatchFailed(ApiModel):
    index: int
    error: str


class BatchResult(ApiModel):
    submitted: list[BatchSubmitted]
    failed: list[BatchFailed]


ReportedTaskId = Annotated[str, Field(min_length=1, max_length=64)]


class CompleteItem(CompleteRequest):
    """The body of `/complete`, for the task named."""

    task_id: ReportedTaskId


class FailItem(FailRequest):
    """The body of `/fail`, for the task named."""

    task_id: ReportedTaskId


class CompleteBatch(RequestModel):
    items: Annotated[list[CompleteItem], Field(min_length=1, max_length=MAX_BATCH)]


class FailBatch(RequestModel):
    items: Annotated[list[FailItem], Field(min_length=1, max_length=MAX_BATCH)]


class ReportResult(ApiModel):
    task_id: str
    status: TaskStatus | None = Field(None, description="The task's status after this item; absent on error")
    error: str | None = Field(None, description="Why this item was refused; absent on success")
    status_code: int | None = Field(None, description="The HTTP status the single-task call would have answered")


class ReportResults(ApiModel):
    results: list[ReportResult]
