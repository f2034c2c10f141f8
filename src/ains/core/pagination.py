"""Opaque keyset cursors: a base64 of the sort key of the last row returned."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any

from ains.core.errors import AinsError


class InvalidCursor(AinsError):
    status_code = 422

    def __init__(self) -> None:
        super().__init__([{"loc": ["query", "cursor"], "msg": "cursor is not valid", "type": "value_error"}])


def encode_cursor(*values: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(values)).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, arity: int) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise InvalidCursor() from exc
    if not isinstance(values, list) or len(values) != arity:
        raise InvalidCursor()
    return values


def split_page(rows: list[Any], limit: int, sort_key: Callable[[Any], tuple[Any, ...]]) -> tuple[list[Any], str | None]:
    """Rows fetched with `limit + 1`: the page, and the cursor after its last row (None on the last page)."""
    if len(rows) <= limit:
        return rows, None
    return rows[:limit], encode_cursor(*sort_key(rows[limit - 1]))


def decode_position(cursor: str | None) -> int | None:
    """A cursor holding one integer position (a row id or sequence number), or None for the first page."""
    if not cursor:
        return None
    (position,) = decode_cursor(cursor, 1)
    if not isinstance(position, int):
        raise InvalidCursor()
    return position
