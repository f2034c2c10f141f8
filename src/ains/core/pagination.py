"""Opaque keyset cursors: the sort key of the last row returned, signed by this installation.

A cursor is `base64url(JSON list) "." base64url(HMAC-SHA256 tag)`. The tag's key is derived from the admin
key (`set_cursor_key`, called when the admin key is settled), so every process of one installation accepts
the cursors any of them issued, and a cursor AINS did not issue (garbage, edited, truncated, from another
installation, or issued before the admin key changed) is refused with 400 before any query sees its values.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ains.core.errors import AinsError

_TAG_BYTES = 16
_key = os.urandom(32)  # replaced by set_cursor_key; until then cursors live as long as this process


class InvalidCursor(AinsError):
    status_code = 400

    def __init__(self) -> None:
        super().__init__("cursor is not valid: pass back a next_cursor exactly as AINS returned it")


def set_cursor_key(secret: str) -> None:
    global _key
    _key = hmac.new(secret.encode(), b"ains-cursor-v1", hashlib.sha256).digest()


def _tag(payload: bytes) -> bytes:
    return hmac.new(_key, payload, hashlib.sha256).digest()[:_TAG_BYTES]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode((text + "=" * (-len(text) % 4)).encode("ascii"))


def encode_cursor(*values: Any) -> str:
    payload = json.dumps(list(values), separators=(",", ":")).encode()
    return f"{_b64(payload)}.{_b64(_tag(payload))}"


def decode_cursor(cursor: str, arity: int) -> list[Any]:
    try:
        body, _, tag = cursor.partition(".")
        payload = _unb64(body)
        if not hmac.compare_digest(_unb64(tag), _tag(payload)):
            raise InvalidCursor()
        values = json.loads(payload)
    except (binascii.Error, ValueError, UnicodeError) as exc:
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
    if not isinstance(position, int) or isinstance(position, bool) or not -(2**63) <= position < 2**63:
        raise InvalidCursor()
    return position


def newest_first(query: Any, created_at: Any, row_id: Any, cursor: str | None, limit: int) -> Any:
    """`query` paged newest first by (`created_at`, `row_id`): the rows after the cursor's, `limit + 1` of them
    so that `split_page` can tell whether another page follows."""
    from sqlalchemy import and_, or_

    if cursor:
        created_iso, last_id = decode_cursor(cursor, 2)
        try:
            created = datetime.fromisoformat(created_iso)
        except (TypeError, ValueError) as exc:
            raise InvalidCursor() from exc
        if not isinstance(last_id, str):
            raise InvalidCursor()
        query = query.where(or_(created_at < created, and_(created_at == created, row_id < last_id)))
    return query.order_by(created_at.desc(), row_id.desc()).limit(limit + 1)
