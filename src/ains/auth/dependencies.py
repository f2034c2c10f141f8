"""FastAPI dependencies that turn the bearer key into a Principal, and what each route requires of its caller.

Every route declares its access, once, in its decorator: `dependencies=[requires("tasks:write")]` (a client
key must hold that scope), `public()`, `admin_only()`, `agents_only()` or `any_key()`. That dependency is the
one place the requirement is checked, and `document_access` writes it into the OpenAPI document. The route
table can be read back with `route_access` (the tests check that every route declares one).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.routing import APIRoute

from ains.auth import service
from ains.auth.keys import hash_key
from ains.core.errors import AinsError, Forbidden, Unauthorized
from ains.core.principal import CLIENT_SCOPES, Principal

log = logging.getLogger("ains.auth")

# The bearer scheme as the OpenAPI document names it (written there by `document_access`).
BEARER_SCHEME = {
    "HTTPBearer": {"type": "http", "description": "An AINS API key: admin, client or agent", "scheme": "bearer"}
}

# Access levels besides the client scopes.
PUBLIC = "public"  # no key
ANY_KEY = "any key"  # any valid key, whatever its scopes
AGENT = "agent"  # an agent key (or the admin, where the route allows it); never a client key
ADMIN = "admin"  # the admin key only
ACCESS_LEVELS = (PUBLIC, ANY_KEY, AGENT, ADMIN, *CLIENT_SCOPES)


class TooManyRequests(AinsError):
    status_code = 429


def _bearer_token(request: Request) -> str | None:
    """The key in `Authorization: Bearer <key>` (the scheme in any case), or None."""
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


async def authenticate(request: Request) -> Principal:
    """The caller's principal, checked once per request: the route's access check calls this, and a route
    that asks for `CurrentPrincipal` as well gets the same answer (kept on the request), so a request is
    counted once against its key's rate limit.

    The header is read here rather than through FastAPI's `HTTPBearer` dependency: each dependency FastAPI
    solves costs a request several microseconds, and a cached read was mostly the framework
    (benchmarks/PROFILE.md). `document_access` writes the bearer scheme into the OpenAPI document instead."""
    known: Principal | None = getattr(request.state, "principal", None)
    if known is not None:
        return known
    key = _bearer_token(request)
    if key is None:
        raise Unauthorized()
    ctx = request.app.state.ctx
    digest = hash_key(key)
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
            principal = await service.resolve_key(session, digest)
        if principal is None:
            raise Unauthorized()
        if trusted:
            ctx.keys.put(digest, principal, generation)
    # Checked on every request, cached key or not: expiry is a time, not a change anyone announces.
    if service.is_expired(principal):
        await service.note_expired_use(ctx, principal)
        raise Unauthorized("API key expired")
    limiter = getattr(ctx, "limiter", None)
    if limiter is not None:
        bucket = principal.key_id or principal.id
        verdict = await limiter.take(bucket, principal.rate_per_second, principal.rate_burst)
        if not verdict.allowed:
            raise TooManyRequests(
                "Rate limit exceeded for this key; retry after Retry-After seconds", headers=verdict.headers()
            )
        # RateLimit-* on the answer, whatever it is (added by ains.core.middleware.RequestTelemetry).
        request.state.rate_limit_headers = verdict.headers()
    request.state.principal = principal
    return principal


def caller(request: Request) -> Principal:
    """The principal the route's access check (`requires`, `agents_only`, …) authenticated. For the hot routes,
    which take the `Request` instead of `CurrentPrincipal` and `Ctx`: each parameter FastAPI resolves as a
    dependency costs the request more than most of what a cached read does (benchmarks/PROFILE.md)."""
    principal: Principal = request.state.principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(authenticate)]


async def _admin(request: Request) -> Principal:
    principal = await authenticate(request)
    if not principal.is_admin:
        raise Forbidden("Admin only")
    return principal


Admin = Annotated[Principal, Depends(_admin)]


def _declared(check: Any, need: str) -> Any:
    check.ains_access = need
    return Depends(check)


def requires(scope: str) -> Any:
    """The route needs `scope`: a client key without it is 403 naming it; agents and the admin pass."""
    if scope not in CLIENT_SCOPES:
        raise ValueError(f"unknown scope {scope!r}")

    async def check(request: Request) -> None:
        principal = await authenticate(request)
        if not principal.has_scope(scope):
            raise Forbidden(f"This key lacks the {scope} scope")

    return _declared(check, scope)


def public() -> Any:
    """The route takes no key."""

    async def check() -> None:
        return None

    return _declared(check, PUBLIC)


def any_key() -> Any:
    """Any valid key, whatever its scopes."""

    async def check(request: Request) -> None:
        await authenticate(request)

    return _declared(check, ANY_KEY)


def agents_only() -> Any:
    """A route for agents (the admin too, where the route itself allows it): never a client key."""

    async def check(request: Request) -> None:
        principal = await authenticate(request)
        if principal.kind == "client":
            raise Forbidden("This route is for agents; client keys may not use it")

    return _declared(check, AGENT)


def admin_only() -> Any:
    async def check(request: Request) -> None:
        await _admin(request)

    return _declared(check, ADMIN)


def require_scope(principal: Principal, scope: str) -> None:
    """For checks inside a route body (prefer `requires` in the decorator)."""
    if not principal.has_scope(scope):
        raise Forbidden(f"This key lacks the {scope} scope")


# --- the route table ------------------------------------------------------------------------------------------


def api_routes(app: FastAPI) -> Iterator[APIRoute]:
    """Every API route of the app, through included routers (FastAPI versions differ in how they keep them)."""
    seen: set[int] = set()
    for route in app.routes:
        candidates: list[Any] = [route]
        contexts = getattr(route, "effective_route_contexts", None)
        if contexts is not None:
            candidates = [context.original_route for context in contexts()]
        for candidate in candidates:
            if isinstance(candidate, APIRoute) and id(candidate) not in seen:
                seen.add(id(candidate))
                yield candidate


def route_access(route: APIRoute) -> list[str]:
    """The access levels a route declares (exactly one when it is declared correctly)."""
    return [
        need
        for dependency in route.dependencies
        if (need := getattr(dependency.dependency, "ains_access", None)) is not None
    ]


def document_access(app: FastAPI) -> None:
    """Write each route's declared access into the OpenAPI document (`x-ains-access`, and the bearer
    requirement with its scope list on every route that takes a key)."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = original()
        schema.setdefault("components", {}).setdefault("securitySchemes", {}).update(BEARER_SCHEME)
        for route in api_routes(app):
            needs = route_access(route)
            for method in route.methods or ():
                operation = schema.get("paths", {}).get(route.path_format, {}).get(method.lower())
                if operation is None or not needs:
                    continue
                need = needs[0]
                operation["x-ains-access"] = need
                if need != PUBLIC:
                    operation["security"] = [{"HTTPBearer": [need] if need in CLIENT_SCOPES else []}]
                if need in CLIENT_SCOPES:
                    note = f"Client keys need the `{need}` scope."
                else:
                    note = {
                        PUBLIC: "Public: no key.",
                        ANY_KEY: "Any valid key.",
                        AGENT: "Agent keys (not client keys).",
                        ADMIN: "Admin key only.",
                    }[need]
                text = operation.get("description", "")
                operation["description"] = f"{text}\n\n**Access:** {note}".strip()
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
