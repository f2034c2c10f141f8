"""API keys: issue, list, revoke, and resolve a presented key to its principal."""

from __future__ import annotations

import hmac
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ains.agents.models import Agent
from ains.audit import service as audit
from ains.auth.keys import generate_key, hash_key
from ains.auth.models import ApiKey
from ains.core.clock import new_id, utcnow
from ains.core.context import AppContext
from ains.core.errors import Conflict, NotFound, Unprocessable
from ains.core.principal import ADMIN_ID, CLIENT_SCOPES, Principal
from ains.core.work import Work


def resolve_admin(digest: str, admin_key_hash: str) -> Principal | None:
    return Principal("admin", ADMIN_ID) if hmac.compare_digest(digest, admin_key_hash) else None


async def resolve(session: AsyncSession, digest: str) -> Principal | None:
    """The principal of a key that works now (not revoked, not expired), by the key's hash."""
    principal = await resolve_key(session, digest)
    if principal is None or is_expired(principal):
        return None
    return principal


def is_expired(principal: Principal) -> bool:
    return principal.expires_at is not None and principal.expires_at <= utcnow()


async def resolve_key(session: AsyncSession, digest: str) -> Principal | None:
    """The principal of an unrevoked key, by the key's hash, expired or not (the caller checks the time, so a
    cached principal is checked the same way)."""
    row = (
        await session.execute(
            select(
                ApiKey.key_id,
                ApiKey.kind,
                ApiKey.principal_id,
                ApiKey.scopes,
                ApiKey.expires_at,
                ApiKey.rate_limit_per_second,
                ApiKey.rate_limit_burst,
            ).where(ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None))
        )
    ).first()
    if row is None:
        return None
    return Principal(
        row.kind,
        row.principal_id,
        frozenset(row.scopes),
        key_id=row.key_id,
        expires_at=row.expires_at,
        rate_per_second=row.rate_limit_per_second,
        rate_burst=row.rate_limit_burst,
    )


async def note_expired_use(ctx: AppContext, principal: Principal) -> None:
    """Audit the first use of a key after it expired (once per key, however often it is presented)."""
    if principal.key_id is None or principal.key_id in _expired_noted:
        return
    async with ctx.work() as work:
        session = work.session
        noted = await session.execute(
            update(ApiKey)
            .where(ApiKey.key_id == principal.key_id, ApiKey.expired_use_logged_at.is_(None))
            .values(expired_use_logged_at=work.now)
        )
        if cast(CursorResult, noted).rowcount:
            audit.record(
                work,
                principal,
                "api_key.expired_use",
                "api_key",
                principal.key_id,
                {
                    "principal_id": principal.id,
                    "expired_at": principal.expires_at.isoformat() if principal.expires_at else None,
                },
            )
            work.announce_key(principal.id)
    if len(_expired_noted) > 100_000:
        _expired_noted.clear()
    _expired_noted.add(principal.key_id)


_expired_noted: set[str] = set()


def _new_key(
    kind: str,
    principal_id: str,
    name: str,
    scopes: list[str],
    now: datetime,
    *,
    expires_at: datetime | None = None,
    rate_per_second: float | None = None,
    rate_burst: int | None = None,
    rotated_from: str | None = None,
) -> tuple[ApiKey, str]:
    secret = generate_key(kind)
    row = ApiKey(
        key_id=new_id("key"),
        key_hash=hash_key(secret),
        kind=kind,
        principal_id=principal_id,
        name=name,
        scopes=scopes,
        created_at=now,
        expires_at=expires_at,
        rate_limit_per_second=rate_per_second,
        rate_limit_burst=rate_burst,
        rotated_from=rotated_from,
    )
    return row, secret


async def create_client_key(
    work: Work,
    actor: Principal,
    client_id: str,
    name: str,
    scopes: list[str] | None,
    *,
    expires_at: datetime | None = None,
    rate_per_second: float | None = None,
    rate_burst: int | None = None,
) -> tuple[ApiKey, str]:
    session, now = work.session, work.now
    # One namespace for callers: a client may not take an agent's id and act as its owner.
    if await session.get(Agent, client_id) is not None:
        raise Conflict(f"{client_id} is an agent id; choose another client_id")
    if expires_at is not None and expires_at <= now:
        raise Unprocessable("expires_at", "expires_at must be in the future")
    chosen = [scope for scope in CLIENT_SCOPES if scope in set(scopes or CLIENT_SCOPES)]
    row, secret = _new_key(
        "client",
        client_id,
        name,
        chosen,
        now,
        expires_at=expires_at,
        rate_per_second=rate_per_second,
        rate_burst=rate_burst,
    )
    session.add(row)
    audit.record(
        work,
        actor,
        "api_key.create",
        "api_key",
        row.key_id,
        {
            "client_id": client_id,
            "name": name,
            "scopes": chosen,
            "expires_at": expires_at.isoformat() if expires_at else None,
            "rate_limit_per_second": rate_per_second,
            "rate_limit_burst": rate_burst,
        },
    )
    return row, secret


async def rotate_key(
    work: Work, actor: Principal, key_id: str, grace_seconds: float, *, expires_at: datetime | None = None
) -> tuple[ApiKey, str, ApiKey]:
    """A new key with the old one's principal, scopes and limits; the old one works `grace_seconds` more.

    The new key lives as long as the old one was meant to (its expiry minus its creation), from now, unless
    `expires_at` is given. Answers (new row, new secret, old row).
    """
    session, now = work.session, work.now
    old = await session.scalar(select(ApiKey).where(ApiKey.key_id == key_id).with_for_update())
    if old is None or old.revoked_at is not None:
        raise NotFound(f"API key {key_id} not found")
    if old.expires_at is not None and old.expires_at <= now:
        raise Conflict(f"API key {key_id} has expired; create a new key instead")
    if expires_at is None and old.expires_at is not None:
        expires_at = now + (old.expires_at - old.created_at)
    if expires_at is not None and expires_at <= now:
        raise Unprocessable("expires_at", "expires_at must be in the future")
    grace_end = now + timedelta(seconds=grace_seconds)
    previous_expiry = old.expires_at
    old.expires_at = grace_end if previous_expiry is None else min(previous_expiry, grace_end)
    row, secret = _new_key(
        old.kind,
        old.principal_id,
        old.name,
        list(old.scopes),
        now,
        expires_at=expires_at,
        rate_per_second=old.rate_limit_per_second,
        rate_burst=old.rate_limit_burst,
        rotated_from=old.key_id,
    )
    session.add(row)
    work.announce_key(old.principal_id)
    audit.record(
        work,
        actor,
        "api_key.rotate",
        "api_key",
        old.key_id,
        {
            "principal_id": old.principal_id,
            "new_key_id": row.key_id,
            "grace_seconds": grace_seconds,
            "old_key_expires_at": old.expires_at.isoformat(),
        },
    )
    return row, secret, old


async def issue_agent_key(work: Work, agent_id: str, *, replace: bool) -> tuple[ApiKey, str]:
    """A new key for an agent; with `replace`, its earlier keys stop working (the lost-key path)."""
    if replace:
        await revoke_agent_keys(work, agent_id)
    row, secret = _new_key("agent", agent_id, f"agent {agent_id}", list(CLIENT_SCOPES), work.now)
    work.session.add(row)
    audit.record(
        work, Principal("agent", agent_id), "api_key.issue_agent", "api_key", row.key_id, {"agent_id": agent_id}
    )
    return row, secret


async def revoke_agent_keys(work: Work, agent_id: str) -> None:
    work.announce_key(agent_id)
    await work.session.execute(
        update(ApiKey)
        .where(ApiKey.kind == "agent", ApiKey.principal_id == agent_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=work.now)
    )


async def list_keys(
    session: AsyncSession, *, client_id: str | None, include_revoked: bool, limit: int, offset: int
) -> list[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.created_at.desc(), ApiKey.key_id).limit(limit).offset(offset)
    if client_id:
        query = query.where(ApiKey.principal_id == client_id)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    return list(await session.scalars(query))


async def revoke_key(work: Work, actor: Principal, key_id: str) -> ApiKey:
    key = await work.session.get(ApiKey, key_id)
    if key is None or key.revoked_at is not None:
        raise NotFound(f"API key {key_id} not found")
    key.revoked_at = work.now
    work.announce_key(key.principal_id)
    audit.record(work, actor, "api_key.revoke", "api_key", key_id, {"principal_id": key.principal_id})
    return key
