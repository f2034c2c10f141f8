"""Registration tokens (SPEC 18): with `agent_registration=token`, `POST /ains/agents` needs one.

A token is shown once and stored as its SHA-256, like a key. A registration
spends one use in the same transaction that creates the agent, through one
guarded statement (`UPDATE … SET uses = uses + 1 WHERE … AND uses < max_uses`):
the database's row lock orders concurrent registrations, so `max_uses` holds
exactly however many arrive at once, and a registration that fails afterwards
(a duplicate agent id, say) rolls its use back.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ains.audit import service as audit
from ains.auth.keys import hash_key
from ains.auth.models import RegistrationToken
from ains.core.clock import new_id, random_token
from ains.core.errors import NotFound, Unauthorized, Unprocessable
from ains.core.principal import Principal
from ains.core.work import Work


def generate_token() -> str:
    return f"ains_reg_{random_token(32)}"


async def create(
    work: Work, actor: Principal, name: str, *, expires_at: datetime | None, max_uses: int | None
) -> tuple[RegistrationToken, str]:
    session, now = work.session, work.now
    if expires_at is not None and expires_at <= now:
        raise Unprocessable("expires_at", "expires_at must be in the future")
    secret = generate_token()
    row = RegistrationToken(
        token_id=new_id("regtok"),
        token_hash=hash_key(secret),
        name=name,
        created_at=now,
        expires_at=expires_at,
        max_uses=max_uses,
        uses=0,
    )
    session.add(row)
    audit.record(
        work,
        actor,
        "registration_token.create",
        "registration_token",
        row.token_id,
        {"name": name, "max_uses": max_uses, "expires_at": expires_at.isoformat() if expires_at else None},
    )
    return row, secret


async def list_tokens(
    session: AsyncSession, *, include_revoked: bool, limit: int, offset: int
) -> list[RegistrationToken]:
    query = (
        select(RegistrationToken)
        .order_by(RegistrationToken.created_at.desc(), RegistrationToken.token_id)
        .limit(limit)
        .offset(offset)
    )
    if not include_revoked:
        query = query.where(RegistrationToken.revoked_at.is_(None))
    return list(await session.scalars(query))


async def revoke(work: Work, actor: Principal, token_id: str) -> RegistrationToken:
    row = await work.session.get(RegistrationToken, token_id)
    if row is None or row.revoked_at is not None:
        raise NotFound(f"Registration token {token_id} not found")
    row.revoked_at = work.now
    audit.record(work, actor, "registration_token.revoke", "registration_token", token_id, {"name": row.name})
    return row


async def consume(work: Work, token: str | None, agent_id: str) -> str | None:
    """Spend one use of `token` when registration needs one; its id (None when registration is open)."""
    session, now = work.session, work.now
    if work.settings.agent_registration != "token":
        return None
    if not token:
        raise Unauthorized("Registration needs a registration_token")
    spent = await session.execute(
        update(RegistrationToken)
        .where(
            RegistrationToken.token_hash == hash_key(token),
            RegistrationToken.revoked_at.is_(None),
            or_(RegistrationToken.expires_at.is_(None), RegistrationToken.expires_at > now),
            or_(RegistrationToken.max_uses.is_(None), RegistrationToken.uses < RegistrationToken.max_uses),
        )
        .values(uses=RegistrationToken.uses + 1)
        .returning(RegistrationToken.token_id)
    )
    token_id = spent.scalar()
    if token_id is None:
        raise Unauthorized("registration_token is unknown, revoked, expired or used up")
    audit.record(work, Principal("agent", agent_id), "registration_token.use", "registration_token", token_id, {})
    return token_id
