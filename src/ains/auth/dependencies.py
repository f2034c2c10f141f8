"""FastAPI dependencies that turn the bearer key into a Principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ains.auth import service
from ains.auth.keys import hash_key
from ains.auth.principal import Principal
from ains.core.errors import Forbidden, Unauthorized

_bearer = HTTPBearer(auto_error=False, description="An AINS API key: admin, client or agent")


async def authenticate(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    if credentials is None or not credentials.credentials:
        raise Unauthorized()
    ctx = request.app.state.ctx
    digest = hash_key(credentials.credentials)
    principal = service.resolve_admin(digest, ctx.admin_key_hash)
    # The key cache is used only while revocations made in other processes can reach it: on PostgreSQL with
    # the wake-up link up. SQLite has no such link (another process on the file would go unheard), so there
    # every request reads its key; that is a local file read.
    trusted = ctx.listener is not None and ctx.signals.connected
    if principal is None and trusted:
        principal = ctx.keys.get(digest)
    if principal is None:
        generation = ctx.keys.generation
        async with ctx.db.read() as session:
            principal = await service.resolve(session, digest)
        if principal is None:
            raise Unauthorized()
        if trusted:
            ctx.keys.put(digest, principal, generation)
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
