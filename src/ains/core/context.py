"""What a running AINS process shares between requests and background duties."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request

from ains.core.config import Settings
from ains.core.database import Database
from ains.core.signals import TaskAvailability


@dataclass
class AppContext:
    settings: Settings
    db: Database
    admin_key_hash: str
    signals: TaskAvailability

    @property
    def cache(self) -> Any:
        """The cache the database invalidates after each commit (ains.core.cache)."""
        return self.db.cache


def get_context(request: Request) -> AppContext:
    return request.app.state.ctx
