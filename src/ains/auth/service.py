"""API keys: issue, list, revoke, and resolve a presented key to its principal."""

from __future__ import annotations

import hmac
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ains.agents.models import Agent
from ains.audit import service as audit
from ains.auth.keys import generate_key, hash_key
from ains.auth.models import ApiKey
from ains.auth.principal import ADMIN_ID, CLIENT_SCOPES, Principal
from ains.core.clock import new_id
from ains.core.errors import Conflict, NotFound
from ains.core.signals import announce_key


def resolve_admin(digest: str, admin_key_hash: str) -> Principal | None:
    return Principal("admin", ADMIN_ID) if hmac.compare_digest(digest, admin_key_hash) else None


async def resolve(session: AsyncSession, digest: str) -> Principal | None:
    """The principal of an unrevoked key, by the key's hash."""
    row = (
        await session.execute(
            select(ApiKey.kind, ApiKey.principal_id, ApiKey.scopes).where(
                ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None)
            )
        )
    ).first()
    if row is None:
        return None
    return Principal(row.kind, row.principal_id, frozenset(row.scopes))  # type: ignore[arg-type]


def _new_key(kind: str, principal_id: str, name: str, scopes: list[str], now: datetime) -> tuple[ApiKey, str]:
    secret = generate_key(kind)
    row = ApiKey(
        key_id=new_id("key"),
        key_hash=hash_key(secret),
        kind=kind,
        principal_id=principal_id,
        name=name,
        scopes=scopes,
        created_at=now,
    )
    return row, secret


async def create_client_key(
    session: AsyncSession, actor: Principal, client_id: str, name: str, scopes: list[str] | None, now: datetime
) -> tuple[ApiKey, str]:
    # One namespace for callers: a client may not take an agent's id and act as its owner.
    if await session.get(Agent, client_id) is not None:
        raise Conflict(f"{client_id} is an agent id; choose another client_id")
    row, secret = _new_key("client", client_id, name, list(scopes or CLIENT_SCOPES), now)
    session.add(row)
    audit.record(session, actor, "api_key.create", "api_key", row.key_id, {"client_id": client_id, "name": name})
    return row, secret


async def issue_agent_key(session: AsyncSession, agent_id: str, now: datetime, *, replace: bool) -> tuple[ApiKey, str]:
    """A new key for an agent; with `replace`, its earlier keys stop working (the lost-key path)."""
    if replace:
        await revoke_agent_keys(session, agent_id, now)
    row, secret = _new_key("agent", agent_id, f"agent {agent_id}", list(CLIENT_SCOPES), now)
    session.add(row)
    audit.record(
        session, Principal("agent", agent_id), "api_key.issue_agent", "api_key", row.key_id, {"agent_id": agent_id}
    )
    return row, secret


async def revoke_agent_keys(session: AsyncSession, agent_id: str, now: datetime) -> None:
    announce_key(session, agent_id)
    await session.execute(
        update(ApiKey)
        .where(ApiKey.kind == "agent", ApiKey.principal_id == agent_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=now)
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


async def revoke_key(session: AsyncSession, actor: Principal, key_id: str, now: datetime) -> ApiKey:
    key = await session.get(ApiKey, key_id)
    if key is None or key.revoked_at is not None:
        raise NotFound(f"API key {key_id} not found")
    key.revoked_at = now
    announce_key(session, key.principal_id)
    audit.record(session, actor, "api_key.revoke", "api_key", key_id, {"principal_id": key.principal_id})
    return key
