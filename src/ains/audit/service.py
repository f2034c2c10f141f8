"""Writing and reading audit entries; every write joins the caller's transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ains.audit.models import AuditLog
from ains.core.principal import Principal
from ains.core.work import Work


def record(
    work: Work,
    actor: Principal,
    action: str,
    target_type: str,
    target_id: str | None,
    details: dict[str, Any] | None = None,
) -> None:
    """An audit entry, written with the work's transaction and stamped with its moment."""
    work.session.add(
        AuditLog(
            created_at=work.now,
            actor=actor.id,
            actor_kind=actor.kind,
            action=action,
            target_type=target_type,
            target_id=target_id,
            details=details or {},
        )
    )


async def list_entries(
    session: AsyncSession,
    *,
    action: str | None,
    actor: str | None,
    target_id: str | None,
    limit: int,
    before_id: int | None,
) -> list[AuditLog]:
    query = select(AuditLog).order_by(AuditLog.id.desc()).limit(limit)
    if action:
        query = query.where(AuditLog.action == action)
    if actor:
        query = query.where(AuditLog.actor == actor)
    if target_id:
        query = query.where(AuditLog.target_id == target_id)
    if before_id is not None:
        query = query.where(AuditLog.id < before_id)
    return list(await session.scalars(query))
