"""Who is calling: the admin, a client, or an agent."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

PrincipalKind = Literal["admin", "client", "agent"]

CLIENT_SCOPES = ("tasks:read", "tasks:write", "webhooks")
ADMIN_ID = "admin"


@dataclass(frozen=True)
class Principal:
    kind: PrincipalKind
    id: str
    scopes: frozenset[str] = field(default_factory=lambda: frozenset(CLIENT_SCOPES))

    @property
    def is_admin(self) -> bool:
        return self.kind == "admin"

    def is_agent(self, agent_id: str) -> bool:
        return self.kind == "agent" and self.id == agent_id

    def has_scope(self, scope: str) -> bool:
        return self.kind != "client" or scope in self.scopes
