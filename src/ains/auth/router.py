"""Admin key management: /ains/api-keys (create, list, rotate, revoke) and /ains/registration-tokens."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from ains.auth import registration, service
from ains.auth.dependencies import Admin, admin_only
from ains.auth.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyList,
    ApiKeyOut,
    ApiKeyRotate,
    RegistrationTokenCreate,
    RegistrationTokenCreated,
    RegistrationTokenList,
    RegistrationTokenOut,
)
from ains.core.context import AppContext, get_context

router = APIRouter(prefix="/ains/api-keys", tags=["keys"])
tokens_router = APIRouter(prefix="/ains/registration-tokens", tags=["keys"])
Ctx = Annotated[AppContext, Depends(get_context)]


def _created(row, secret: str, **extra) -> ApiKeyCreated:  # noqa: ANN001
    return ApiKeyCreated(
        key_id=row.key_id,
        client_id=row.principal_id,
        name=row.name,
        scopes=row.scopes,
        api_key=secret,
        created_at=row.created_at,
        expires_at=row.expires_at,
        rate_limit_per_second=row.rate_limit_per_second,
        rate_limit_burst=row.rate_limit_burst,
        rotated_from=row.rotated_from,
        **extra,
    )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ApiKeyCreated, dependencies=[admin_only()])
async def create_key(body: ApiKeyCreate, admin: Admin, ctx: Ctx) -> ApiKeyCreated:
    """A client key. `scopes` (default all), `expires_at` and the token bucket are optional."""
    async with ctx.work() as work:
        row, secret = await service.create_client_key(
            work,
            admin,
            body.client_id,
            body.name,
            body.scopes,
            expires_at=body.expires_at,
            rate_per_second=body.rate_limit_per_second,
            rate_burst=body.rate_limit_burst,
        )
    return _created(row, secret)


@router.get("", response_model=ApiKeyList, dependencies=[admin_only()])
async def list_keys(
    _admin: Admin,
    ctx: Ctx,
    client_id: str | None = None,
    include_revoked: bool = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> ApiKeyList:
    async with ctx.db.read() as session:
        rows = await service.list_keys(
            session, client_id=client_id, include_revoked=include_revoked, limit=limit, offset=offset
        )
    return ApiKeyList(api_keys=[ApiKeyOut.model_validate(row) for row in rows])


@router.post(
    "/{key_id}/rotate", status_code=status.HTTP_201_CREATED, response_model=ApiKeyCreated, dependencies=[admin_only()]
)
async def rotate_key(key_id: str, admin: Admin, ctx: Ctx, body: ApiKeyRotate | None = None) -> ApiKeyCreated:
    """A new key with the same principal, scopes and limits; the old one keeps working `grace_seconds`."""
    body = body or ApiKeyRotate()
    async with ctx.work() as work:
        row, secret, old = await service.rotate_key(work, admin, key_id, body.grace_seconds, expires_at=body.expires_at)
    return _created(row, secret, old_key_expires_at=old.expires_at)


@router.delete(
    "/{key_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response, dependencies=[admin_only()]
)
async def revoke_key(key_id: str, admin: Admin, ctx: Ctx) -> Response:
    async with ctx.work() as work:
        await service.revoke_key(work, admin, key_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@tokens_router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=RegistrationTokenCreated, dependencies=[admin_only()]
)
async def create_registration_token(body: RegistrationTokenCreate, admin: Admin, ctx: Ctx) -> RegistrationTokenCreated:
    """A token agents present to register when `agent_registration` is `token` (shown only here)."""
    async with ctx.work() as work:
        row, secret = await registration.create(
            work, admin, body.name, expires_at=body.expires_at, max_uses=body.max_uses
        )
    return RegistrationTokenCreated(**RegistrationTokenOut.model_validate(row).model_dump(), token=secret)


@tokens_router.get("", response_model=RegistrationTokenList, dependencies=[admin_only()])
async def list_registration_tokens(
    _admin: Admin,
    ctx: Ctx,
    include_revoked: bool = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> RegistrationTokenList:
    async with ctx.db.read() as session:
        rows = await registration.list_tokens(session, include_revoked=include_revoked, limit=limit, offset=offset)
    return RegistrationTokenList(registration_tokens=[RegistrationTokenOut.model_validate(row) for row in rows])


@tokens_router.delete(
    "/{token_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response, dependencies=[admin_only()]
)
async def revoke_registration_token(token_id: str, admin: Admin, ctx: Ctx) -> Response:
    async with ctx.work() as work:
        await registration.revoke(work, admin, token_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
