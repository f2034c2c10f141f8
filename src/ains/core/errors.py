"""Domain errors and their JSON answers: every error is `{"detail": ...}` with its status code."""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError

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

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> Response:
        # Like FastAPI's own answer, but always serialisable: the offending input may be NaN, infinite or
        # hold a lone surrogate, none of which strict JSON (or UTF-8) can carry.
        errors = jsonable_encoder(exc.errors())
        if errors and all(tuple(error.get("loc", ()))[:2] == ("query", "cursor") for error in errors):
            # A cursor too long to be one AINS issued: refused like any other forged cursor (SPEC 13).
            return safe_json(
                {"detail": "cursor is not valid: pass back a next_cursor exactly as AINS returned it"}, 400
            )
        return safe_json({"detail": errors}, 422)

    @app.exception_handler(OperationalError)
    @app.exception_handler(DBAPIError)
    async def _database_error(_request: Request, exc: Exception) -> JSONResponse:
        if is_refused_value(exc):
            log.warning("database refused a value", extra={"error": str(exc).splitlines()[0][:300]})
            return JSONResponse(REFUSED_VALUE, status_code=422)
        log.error("database error", extra={"error": str(exc).splitlines()[0][:300]})
        return JSONResponse({"detail": "Database unavailable"}, status_code=503)

    @app.exception_handler(UnicodeError)
    @app.exception_handler(OverflowError)
    async def _unstorable_value(_request: Request, exc: Exception) -> JSONResponse:
        # SQLite's driver raises these itself (text it cannot encode, an integer beyond 64 bits).
        log.warning("value cannot be stored", extra={"error": f"{type(exc).__name__}: {exc}"[:300]})
        return JSONResponse(REFUSED_VALUE, status_code=422)

    @app.exception_handler(ConnectionError)
    @app.exception_handler(OSError)
    async def _connection_error(_request: Request, exc: Exception) -> JSONResponse:
        # Requests reach no other service than the database, so a refused connection is its.
        log.error("connection error", extra={"error": str(exc)[:300]})
        return JSONResponse({"detail": "Database unavailable"}, status_code=503)


REFUSED_VALUE = {
    "detail": [
        {"loc": ["body"], "msg": "A value in the request cannot be stored by the database", "type": "value_error"}
    ]
}


def is_refused_value(exc: BaseException) -> bool:
    """True when the database refused a value of the request (SQLSTATE class 22, "data exception", or the
    driver's own data error), as opposed to being unreachable or failing."""
    if isinstance(exc, DataError):
        return True
    orig = getattr(exc, "orig", None)
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if isinstance(code, str) and code.startswith("22"):
        return True
    cause = getattr(orig, "__cause__", None)
    return isinstance(orig, UnicodeError | OverflowError) or isinstance(cause, UnicodeError | OverflowError)


def _strict(value: Any) -> Any:
    """`value` made safe for strict JSON in UTF-8: non-finite floats and lone surrogates become text."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8") if _has_surrogate(value) else value
    if isinstance(value, dict):
        return {_strict(k): _strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v) for v in value]
    return value


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def safe_json(content: Any, status_code: int) -> Response:
    body = json.dumps(_strict(content), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return Response(body.encode("utf-8"), status_code=status_code, media_type="application/json")
