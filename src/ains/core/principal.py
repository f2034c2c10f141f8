"""Who is calling: the admin, a client, or an agent; and the scopes a client key may hold."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

PrincipalKind = Literal["admin", "client", "agent"]

# SPEC 18: what a client key may be limited to. A key holds all of them unless created with fewer.
CLIENT_SCOPES = (
    "tasks:read",
    "tasks:write",
    "webhooks:read",
    "webhooks:write",
    "workflows:read",
    "workflows:write",
    "schedules:read",
    "schedules:write",
)
ADMIN_ID = "admin"


@dataclass(frozen=True)
class Principal:
    kind: PrincipalKind
    id: str
    scopes: frozenset[str] = field(default_factory=lambda: frozenset(CLIENT_SCOPES))
    key_id: str | None = None  # None for the admin key (it has no row)
    expires_at: datetime | None = None
    rate_per_second: float | None = None  # None: the server's defaults
    rate_burst: int | None = None

    @property
    def is_admin(self) -> bool:
        return self.kind == "admin"

    def is_agent(self, agent_id: str) -> bool:
        return self.kind == "agent" and self.id == agent_id

    def has_scope(self, scope: str) -> bool:
        # Scopes narrow client keys only: the admin may do everything, and an agent is bounded by what its
        # routes allow an agent (its own tasks, heartbeats and webhooks).
        return self.kind != "client" or scope in self.scopes
