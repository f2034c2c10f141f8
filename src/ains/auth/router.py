"""Admin key management: /ains/api-keys."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from ains.auth import service
from ains.auth.dependencies import Admin
from ains.auth.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyList, ApiKeyOut
from ains.core.clock import utcnow
from ains.core.context import AppContext, get_context

router = APIRouter(prefix="/ains/api-keys", tags=["keys"])
Ctx = Annotated[AppContext, Depends(get_context)]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ApiKeyCreated)
async def create_key(body: ApiKeyCreate, admin: Admin, ctx: Ctx) -> ApiKeyCreated:
    async with ctx.db.transaction() as session:
        row, secret = await service.create_client_key(session, admin, body.client_id, body.name, body.scopes, utcnow())
    return ApiKeyCreated(
        key_id=row.key_id,
        client_id=row.principal_id,
        name=row.name,
        scopes=row.scopes,
        api_key=secret,
        created_at=row.created_at,
    )


@router.get("", response_model=ApiKeyList)
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


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
async def revoke_key(key_id: str, admin: Admin, ctx: Ctx) -> Response:
    async with ctx.db.transaction() as session:
        await service.revoke_key(session, admin, key_id, utcnow())
    return Response(status_code=status.HTTP_204_NO_CONTENT)
