"""The one source of "now" and the id format, so every module agrees on both."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def random_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)
