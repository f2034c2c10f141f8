"""ASGI middleware: request metrics and access logs, and the input guard (body size limit and text that is
never accepted)."""

from __future__ import annotations

import contextvars
import json
import logging
import math
import re
import time
from typing import Any
from urllib.parse import parse_qsl

from ains.core.metrics import HTTP_LATENCY, HTTP_REQUESTS

log = logging.getLogger("ains.access")

# The limits of the request being served, for validators that have no access to the settings
# (`metadata`'s size, SPEC 13). Set by `BodySizeLimit` for the duration of each request.
# Bodies whose list items the route validates one by one (a non-atomic batch answers per item, SPEC 5): a
# refused value inside one of those items fails that item alone instead of the whole request.
PER_ITEM = {("POST", "/ains/tasks/batch"): "tasks"}
DEFERRED_ITEMS: contextvars.ContextVar[bool] = contextvars.ContextVar("ains_deferred_items", default=False)
MAX_METADATA_BYTES: contextvars.ContextVar[int] = contextvars.ContextVar("ains_max_metadata_bytes", default=16384)


class RequestTelemetry:
    def __init__(self, app: Any) -> None:
        self.app = app
        # The metrics' children by (method, route, status): `labels()` checks and locks on every call, a few
        # per cent of a cached read. Routes, methods and statuses are few, so this stays small.
        self._counters: dict[tuple[str, str, int], Any] = {}
        self._latencies: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_holder = {"status": 500}

        async def send_wrapper(message: dict) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                # The key's rate limit state, set by ains.auth.dependencies.authenticate (SPEC 18).
                limit_headers = scope.get("state", {}).get("rate_limit_headers")
                if limit_headers:
                    message["headers"] = [
                        *message.get("headers", ()),
                        *((name.lower().encode(), value.encode()) for name, value in limit_headers.items()),
                    ]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            route_path = getattr(route, "path", "unmatched")
            method = scope["method"]
            status = status_holder["status"]
            counter = self._counters.get((method, route_path, status))
            if counter is None:
                counter = self._counters[(method, route_path, status)] = HTTP_REQUESTS.labels(
                    method, route_path, str(status)
                )
            counter.inc()
            latency = self._latencies.get((method, route_path))
            if latency is None:
                latency = self._latencies[(method, route_path)] = HTTP_LATENCY.labels(method, route_path)
            latency.observe(elapsed)
            log.info(
                "request",
                extra={
                    "method": method,
                    "path": scope["path"],
                    "route": route_path,
                    "status": status_holder["status"],
                    "duration_ms": round(elapsed * 1000, 2),
                },
            )


# --- text and numbers that are never accepted (SPEC 13) -------------------------------------------------------

_BAD_CHAR = re.compile("[\x00\ud800-\udfff]")

# A cheap scan of the raw body for anything that *might* be refused: a `\u0000` or surrogate escape, a raw NUL
# byte (also the mark of a UTF-16/32 body), UTF-8-encoded surrogates, the NaN/Infinity tokens, and numbers
# with a three-digit exponent or hundreds of digits. Only a body that matches is parsed a second time (with
# hooks) to find the offending field; a false alarm (the words inside a string) costs that parse and passes.
_SUSPECT = re.compile(
    rb"\\u(?:0000|[dD][89abcdefABCDEF][0-9a-fA-F]{2})|\x00|\xed[\xa0-\xbf]|NaN|Infinity|[eE][+-]?[0-9]{3}|[0-9]{300}"
)


class _BadNumber:
    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _parse_float(text: str) -> Any:
    value = float(text)
    return value if math.isfinite(value) else _BadNumber(text)


def _visible(text: str) -> str:
    """`text` with its refused characters written as escapes, so it can be shown in an error."""
    return _BAD_CHAR.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _error(loc: list[Any], msg: str, kind: str) -> dict[str, Any]:
    return {"loc": [_visible(part) if isinstance(part, str) else part for part in loc], "msg": msg, "type": kind}


def _text_error(loc: list[Any], text: str) -> dict[str, Any] | None:
    match = _BAD_CHAR.search(text)
    if match is None:
        return None
    if match.group() == "\x00":
        return _error(loc, "Text must not contain the NUL character (U+0000)", "string_nul")
    return _error(loc, "Text must not contain a lone surrogate (U+D800-U+DFFF)", "string_surrogate")


def find_refused(value: Any, loc: list[Any]) -> dict[str, Any] | None:
    """The first refused value in a parsed JSON document (keys included), as a validation error, or None."""
    stack: list[tuple[Any, list[Any]]] = [(value, loc)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            error = _text_error(where, item)
            if error:
                return error
        elif isinstance(item, float) and not math.isfinite(item):
            return _error(where, f"Number must be finite and within the float range (got {item})", "finite_number")
        elif isinstance(item, _BadNumber):
            return _error(
                where, f"Number must be finite and within the float range (got {item.text[:40]})", "finite_number"
            )
        elif isinstance(item, dict):
            for key, child in item.items():
                error = _text_error([*where, key], key)
                if error:
                    return error
                stack.append((child, [*where, key]))
        elif isinstance(item, list):
            stack.extend((child, [*where, index]) for index, child in enumerate(item))
    return None


def refused_body(body: bytes, per_item: str | None = None) -> tuple[dict[str, Any] | None, bool]:
    """The validation error for a JSON body holding text or a number AINS never accepts (or None), and whether
    refused values were found inside the objects of the list `per_item`, which the route checks item by item
    (`check_item`) so that such an item fails alone."""
    if not body or _SUSPECT.search(body) is None:
        return None, False
    try:
        document = json.loads(body, parse_float=_parse_float, parse_constant=_BadNumber)
    except (ValueError, RecursionError):
        return None, False  # not JSON: the route's own parsing answers it
    if per_item and isinstance(document, dict) and isinstance(document.get(per_item), list):
        items = document[per_item]
        rest = {key: value for key, value in document.items() if key != per_item}
        error = find_refused(rest, ["body"])
        for index, item in enumerate(items):
            if error:
                break
            # Keys of every item, and whole items that are not objects, are the request's own.
            error = find_refused(item, ["body", per_item, index]) if not isinstance(item, dict) else None
        if error:
            return error, False
        return None, any(find_refused(item, []) for item in items)
    return find_refused(document, ["body"]), False


def check_item(item: Any) -> Any:
    """For a model validating one item of a `PER_ITEM` list: raise ValueError naming the refused value in it.
    Costs nothing unless the edge found one in this request's items."""
    if DEFERRED_ITEMS.get():
        error = find_refused(item, [])
        if error:
            where = ".".join(str(part) for part in error["loc"])
            raise ValueError(f"{where}: {error['msg']}" if where else error["msg"])
    return item


def refused_url(scope: dict) -> dict[str, Any] | None:
    """The validation error for a path or query parameter holding NUL or a lone surrogate, or None."""
    query = scope.get("query_string", b"")
    if query:
        for key, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
            error = _text_error(["query", key], key) or _text_error(["query", key], value)
            if error:
                return error
    path = scope.get("path", "")
    if _BAD_CHAR.search(path) is None:
        return None
    return _path_error(scope, path)


def _path_error(scope: dict, path: str) -> dict[str, Any]:
    """Name the path parameter that holds the character, from the app's own path templates."""
    app = scope.get("app")
    for pattern in _path_patterns(app):
        match = pattern.match(path)
        if match:
            for name, value in match.groupdict().items():
                error = _text_error(["path", name], value)
                if error:
                    return error
    return _text_error(["path"], path) or _error(["path"], "Path is not valid", "value_error")


_PATTERNS: dict[int, list[re.Pattern[str]]] = {}


def _path_patterns(app: Any) -> list[re.Pattern[str]]:
    if app is None or not hasattr(app, "openapi"):
        return []
    patterns = _PATTERNS.get(id(app))
    if patterns is None:
        from starlette.routing import compile_path

        patterns = [compile_path(template)[0] for template in app.openapi().get("paths", {}) if "{" in template]
        _PATTERNS[id(app)] = patterns
    return patterns


class BodySizeLimit:
    """The edge of every route: refuses a body over `limit` bytes with 413, counting the bytes received (with
    or without Content-Length) and reading no further; and refuses with 422, naming the field, text holding
    U+0000 or a lone surrogate anywhere (body keys and values at any depth, path, query) and numbers that are
    NaN, ±Infinity or beyond the float range. Routes then see only input every database can store."""

    def __init__(self, app: Any, limit: int, max_metadata_bytes: int = 16384) -> None:
        self.app = app
        self.limit = limit
        self.max_metadata_bytes = max_metadata_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.limit
                except ValueError:
                    too_big = False
                if too_big:
                    await self._refuse(send)
                    return
        error = refused_url(scope)
        if error:
            await _answer(send, 422, {"detail": [error]})
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                # Stop reading here: the server closes the connection after this answer.
                await self._refuse(send)
                return
            if chunk:
                chunks.append(chunk)
            more = message.get("more_body", False)
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        error, deferred = refused_body(body, PER_ITEM.get((scope["method"], scope["path"])))
        if error:
            await _answer(send, 422, {"detail": [error]})
            return
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        token = MAX_METADATA_BYTES.set(self.max_metadata_bytes)
        deferred_token = DEFERRED_ITEMS.set(deferred)
        try:
            await self.app(scope, replay, send)
        finally:
            DEFERRED_ITEMS.reset(deferred_token)
            MAX_METADATA_BYTES.reset(token)

    async def _refuse(self, send: Any) -> None:
        # `Connection: close`: the server closes the connection after the answer instead of draining the rest.
        await _answer(send, 413, {"detail": f"Request body is larger than {self.limit} bytes"}, close=True)


async def _answer(send: Any, status: int, content: dict[str, Any], *, close: bool = False) -> None:
    body = json.dumps(content).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
