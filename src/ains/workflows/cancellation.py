"""Cancelling a workflow as one use case: rounds of transactions until no open step is left.

A cancel skips the steps other transactions hold (a step being completed locks
its dependents, which the cancel locks too: waiting for each other would
deadlock) and cancels them in a later round, once free. Each round is its own
transaction, so this, unlike a service, commits; the API and the console both
call it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ains.core.context import AppContext
from ains.core.principal import Principal
from ains.workflows import service

ROUNDS = 100
PAUSE_SECONDS = 0.01


async def cancel_workflow(ctx: AppContext, principal: Principal, workflow_id: str, reason: str) -> dict[str, Any]:
    """Cancel every step not yet final (owner or admin); answers the workflow as the last round left it."""
    workflow: dict[str, Any] = {}
    for round_ in range(ROUNDS):
        async with ctx.work() as work:
            workflow, busy = await service.cancel(work, principal, workflow_id, reason, first_round=round_ == 0)
        if not busy:
            break
        await asyncio.sleep(PAUSE_SECONDS)
    return workflow
