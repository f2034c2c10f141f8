"""A workflow's steps counted by outcome, in the transactions that finish them (SPEC 17).

`count_steps` is registered with the tasks domain's `on_finished` hooks (by `ains.workflows.service`): every
transaction that makes tasks final (a report, a timeout, a cancellation, a cascade down the graph) adds them
to their workflows' counts with one UPDATE of each workflow row, which takes the row lock. The transaction
that sees every step final sets the workflow's status and emits its `workflow.*` event; two last steps
finishing at once are ordered by that lock, so exactly one of them finishes the workflow.
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import update

from ains.core.database import table_of
from ains.core.work import Work
from ains.tasks.dependencies import Ended
from ains.tasks.schemas import FINAL_STATUSES, TaskStatus
from ains.workflows import events
from ains.workflows.models import Workflow
from ains.workflows.schemas import WorkflowStatus

WORKFLOWS = table_of(Workflow)


async def count_steps(work: Work, ended: list[Ended]) -> None:
    """Add the steps that became final to their workflows' counts; finish a workflow whose steps all are."""
    session, now = work.session, work.now
    tallies: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(FINAL_STATUSES, 0))
    for task in ended:
        if task.workflow_id is not None:
            tallies[task.workflow_id][task.status] += 1
    for workflow_id in sorted(tallies):  # one lock order for every transaction
        tally = tallies[workflow_id]
        row = (
            await session.execute(
                update(WORKFLOWS)
                .where(WORKFLOWS.c.workflow_id == workflow_id)
                .values(
                    completed_steps=WORKFLOWS.c.completed_steps + tally[TaskStatus.COMPLETED],
                    failed_steps=WORKFLOWS.c.failed_steps + tally[TaskStatus.FAILED],
                    cancelled_steps=WORKFLOWS.c.cancelled_steps + tally[TaskStatus.CANCELLED],
                    updated_at=now,
                )
                .returning(*WORKFLOWS.c)
                .execution_options(synchronize_session=False)
            )
        ).first()
        if row is None:
            continue
        done = row.completed_steps + row.failed_steps + row.cancelled_steps
        if row.status != WorkflowStatus.RUNNING or done < row.total_steps:
            continue
        final = (
            WorkflowStatus.FAILED
            if row.failed_steps
            else WorkflowStatus.CANCELLED
            if row.cancelled_steps
            else WorkflowStatus.COMPLETED
        )
        await session.execute(
            update(WORKFLOWS)
            .where(WORKFLOWS.c.workflow_id == workflow_id, WORKFLOWS.c.status == WorkflowStatus.RUNNING)
            .values(status=final, completed_at=now, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        await events.emit_workflow_event(work, row, final)
