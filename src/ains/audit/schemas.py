"""Response bodies of the audit log endpoint."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from ains.core.schemas import ApiModel, UTCTime


class AuditEntry(ApiModel):
    id: int
    created_at: UTCTime
    actor: str
    actor_kind: str
    action: str
    target_type: str
    target_id: str | None
    details: dict[str, Any]


class AuditLogPage(ApiModel):
    entries: list[AuditEntry]
    next_cursor: str | None = Field(description="Pass as `cursor` for older entries; null on the last page")
