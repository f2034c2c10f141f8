"""GET /ains/audit-logs (admin), newest first."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from ains.audit import service
from ains.audit.schemas import AuditEntry, AuditLogPage
from ains.auth.dependencies import Admin, admin_only
from ains.core.context import AppContext, get_context
from ains.core.pagination import decode_position, split_page

router = APIRouter(prefix="/ains/audit-logs", tags=["audit"])


@router.get("", response_model=AuditLogPage, dependencies=[admin_only()])
async def list_audit_logs(
    _admin: Admin,
    ctx: Annotated[AppContext, Depends(get_context)],
    action: str | None = None,
    actor: str | None = None,
    target_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> AuditLogPage:
    before_id = decode_position(cursor)
    async with ctx.db.read() as session:
        rows = await service.list_entries(
            session, action=action, actor=actor, target_id=target_id, limit=limit + 1, before_id=before_id
        )
    page, next_cursor = split_page(rows, limit, lambda entry: (entry.id,))
    return AuditLogPage(entries=[AuditEntry.model_validate(r) for r in page], next_cursor=next_cursor)
