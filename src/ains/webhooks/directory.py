"""Who hears task events, kept in the process: the active webhooks by owner, so most events need no query.

A submission, claim or report asked the database which webhooks hear its events (a query per
transaction, one in five of a claim's statements) although webhooks change rarely. The directory
holds the active webhooks' owners and events, loaded once by the first transaction that needs it.
Every change of a webhook (created, changed, deleted, disabled by the dispatcher) announces
`signals.WEBHOOKS`; like a key change it is sent inside its own transaction, so it is never lost,
and it empties the directory of this process at commit and of the others as soon as the wake-up link
brings it. The directory is used only while that link is up (PostgreSQL; `Work.listening`): where a
change made elsewhere could go unheard (SQLite, or the link down) every transaction queries instead.

What the directory cannot answer alone is `task.created` for agents' webhooks: whether an agent may
claim the new task depends on its capabilities and trust score, which change all the time. When any
agent's webhook hears `task.created`, those events are still asked of the database.
"""

from __future__ import annotations

import json
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from ains.webhooks.schemas import EventName

# Past this many active webhooks the directory is not kept: each transaction queries, as before.
MAX_WEBHOOKS = 10_000

_ACTIVE = text(f"SELECT webhook_id, owner_kind, owner_id, events FROM webhooks WHERE active LIMIT {MAX_WEBHOOKS + 1}")

Hearing = list[tuple[str, list[str]]]  # (webhook id, its events), as the subscriber query answers


class WebhookDirectory:
    def __init__(self) -> None:
        # (owner kind, owner id) → that owner's active webhooks; None: not loaded (or too many to keep).
        self._owners: dict[tuple[str, str], Hearing] | None = None
        self._agents_hear_created = False
        # Bumped by every change, so a load that began before a change cannot store what it read.
        self.generation = 0
        # The generation at which there were too many to keep: not loaded again until something changes.
        self._too_many_at: int | None = None

    def forget(self, _subject: str = "", _value: str = "") -> None:
        """Some webhook changed (or, after a gap in the link, may have)."""
        self.generation += 1
        self._owners = None

    def hearing(self, client_id: str, agent_id: str | None, created: bool) -> Hearing | None:
        """The webhooks of this audience (see `outbox._SUBSCRIBERS`), or None when the database must say."""
        owners = self._owners
        if owners is None or (created and self._agents_hear_created):
            return None
        found = list(owners.get(("client", client_id), ()))
        found += owners.get(("agent", client_id), ())
        if agent_id and agent_id != client_id:
            found += owners.get(("agent", agent_id), ())
        return found

    @property
    def worth_loading(self) -> bool:
        return self._owners is None and self._too_many_at != self.generation

    async def load(self, session: AsyncSession) -> None:
        generation = self.generation
        rows = (await session.execute(_ACTIVE)).all()
        if len(rows) > MAX_WEBHOOKS:
            self._too_many_at = generation
            return
        if generation != self.generation:
            return
        owners: dict[tuple[str, str], Hearing] = {}
        agents_hear_created = False
        for webhook_id, owner_kind, owner_id, events in rows:
            events = as_list(events)
            owners.setdefault((owner_kind, owner_id), []).append((webhook_id, events))
            agents_hear_created |= owner_kind == "agent" and EventName.TASK_CREATED in events
        self._owners, self._agents_hear_created = owners, agents_hear_created


def as_list(events: Any) -> list[str]:
    # JSONB comes back decoded; SQLite's JSON column through a text() query comes back as its text.
    return json.loads(events) if isinstance(events, str) else list(events)


# One directory per database (engine): tests run several apps in one process.
_directories: WeakKeyDictionary[Any, WebhookDirectory] = WeakKeyDictionary()


def directory_for(engine: AsyncEngine) -> WebhookDirectory:
    return _directories.setdefault(engine.sync_engine, WebhookDirectory())
