"""Request and response bodies of the trust endpoints (SPEC 8 field names)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StrictFloat, StrictInt

from ains.core.schemas import ApiModel, RequestModel, UTCTime


class TrustMetrics(ApiModel):
    total_tasks_completed: int
    total_tasks_failed: int = Field(description="Failed attempts: explicit failures, timeouts, agent lost")
    success_rate: float = Field(description="completed / (completed + failed); 0 before any")
    avg_completion_time_seconds: float = Field(description="Mean seconds from start to completion; 0 before any")
    last_task_completed_at: UTCTime | None


class TrustSummary(ApiModel):
    agent_id: str
    trust_score: float
    trust_level: str
    metrics: TrustMetrics


class TrustRecordOut(ApiModel):
    record_id: str
    agent_id: str
    event_type: str
    task_id: str | None
    trust_delta: float
    trust_score_before: float
    trust_score_after: float
    reason: str | None
    created_at: UTCTime
    record_hash: str


class TrustHistory(ApiModel):
    agent_id: str
    records: list[TrustRecordOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for older records; null on the last page")


class TrustAdjust(RequestModel):
    delta: Annotated[StrictFloat | StrictInt, Field(ge=-1.0, le=1.0)]
    reason: Annotated[str, Field(min_length=1, max_length=1000)]


class TrustAdjusted(ApiModel):
    agent_id: str
    trust_score: float
    trust_level: str
    record: TrustRecordOut


class ChainVerification(ApiModel):
    valid: bool
    records_checked: int
    first_bad_record_id: str | None


class LeaderboardEntry(ApiModel):
    agent_id: str
    display_name: str | None
    trust_score: float
    trust_level: str
    total_tasks_completed: int
    success_rate: float


class Leaderboard(ApiModel):
    leaderboard: list[LeaderboardEntry]
