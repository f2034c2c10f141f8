"""FastAPI dependencies that turn the bearer key into a Principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ains.auth import service
from ains.auth.principal import Principal
from ains.core.context import get_context
from ains.core.errors import Forbidden, Unauthorized

_bearer = HTTPBearer(auto_error=False, description="An AINS API key: admin, client or agent")


async def authenticate(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    if credentials is None or not credentials.credentials:
        raise Unauthorized()
    ctx = get_context(request)
    async with ctx.db.read() as session:
        principal = await service.resolve(session, credentials.credentials, ctx.admin_key_hash)
    if principal is None:
        raise Unauthorized()
    request.state.principal = principal
    return principal


async def require_admin(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
    if not principal.is_admin:
        raise Forbidden("Admin only")
    return principal


CurrentPrincipal = Annotated[Principal, Depends(authenticate)]
Admin = Annotated[Principal, Depends(require_admin)]


def require_scope(principal: Principal, scope: str) -> None:
    if not principal.has_scope(scope):
        raise Forbidden(f"This key lacks the {scope} scope")
