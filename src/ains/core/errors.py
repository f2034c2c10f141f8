"""Domain errors and their JSON answers: every error is `{"detail": ...}` with its status code."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

log = logging.getLogger("ains.errors")


class AinsError(Exception):
    status_code = 400

    def __init__(self, detail: Any, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers


class Unauthorized(AinsError):
    status_code = 401

    def __init__(self, detail: Any = "Missing or invalid API key") -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(AinsError):
    status_code = 403


class NotFound(AinsError):
    status_code = 404


class Conflict(AinsError):
    status_code = 409


class PayloadTooLarge(AinsError):
    status_code = 413


class Unprocessable(AinsError):
    status_code = 422

    def __init__(self, field: str, message: str) -> None:
        # Same shape as FastAPI's own validation errors, so clients parse one format.
        super().__init__([{"loc": ["body", *field.split(".")], "msg": message, "type": "value_error"}])


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AinsError)
    async def _ains_error(_request: Request, exc: AinsError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(IntegrityError)
    async def _integrity_error(_request: Request, exc: IntegrityError) -> JSONResponse:
        # Only reached by a race the service could not see coming (two inserts of one key).
        log.warning("integrity conflict", extra={"error": str(exc.orig)[:300]})
        return JSONResponse({"detail": "Conflicts with existing data"}, status_code=409)

    @app.exception_handler(OperationalError)
    @app.exception_handler(DBAPIError)
    async def _database_down(_request: Request, exc: Exception) -> JSONResponse:
        log.error("database error", extra={"error": str(exc).splitlines()[0][:300]})
        return JSONResponse({"detail": "Database unavailable"}, status_code=503)

    @app.exception_handler(ConnectionError)
    @app.exception_handler(OSError)
    async def _connection_error(_request: Request, exc: Exception) -> JSONResponse:
        # Requests reach no other service than the database, so a refused connection is its.
        log.error("connection error", extra={"error": str(exc)[:300]})
        return JSONResponse({"detail": "Database unavailable"}, status_code=503)
