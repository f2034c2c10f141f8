"""Workflow endpoints (SPEC 17)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query, status

from ains.auth.dependencies import CurrentPrincipal, requires
from ains.core.context import AppContext, get_context
from ains.workflows import service
from ains.workflows.cancellation import cancel_workflow as cancel_workflow_in_rounds
from ains.workflows.schemas import WorkflowCancel, WorkflowList, WorkflowOut, WorkflowStatusValue, WorkflowSubmit

router = APIRouter(tags=["workflows"])
Ctx = Annotated[AppContext, Depends(get_context)]


@router.post(
    "/ains/workflows",
    status_code=status.HTTP_201_CREATED,
    response_model=WorkflowOut,
    dependencies=[requires("workflows:write")],
)
async def submit_workflow(body: WorkflowSubmit, principal: CurrentPrincipal, ctx: Ctx) -> WorkflowOut:
    """A graph of up to 100 steps in one transaction: a cycle, an unknown or duplicate key is 422 naming it,
    and nothing is stored then. Steps with `depends_on` start WAITING."""
    async with ctx.work() as work:
        workflow = await service.submit(work, principal, body)
    return WorkflowOut.model_validate(workflow)


@router.get("/ains/workflows", response_model=WorkflowList, dependencies=[requires("workflows:read")])
async def list_workflows(
    principal: CurrentPrincipal,
    ctx: Ctx,
    status: WorkflowStatusValue | None = None,
    client_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> WorkflowList:
    """Newest first: the caller's own workflows (the admin: all, or one client's with `client_id`)."""
    async with ctx.db.read() as session:
        rows, next_cursor = await service.list_workflows(
            session, principal, status=status, client_id=client_id, limit=limit, cursor=cursor
        )
    return WorkflowList.model_validate({"workflows": rows, "next_cursor": next_cursor})


@router.get("/ains/workflows/{workflow_id}", response_model=WorkflowOut, dependencies=[requires("workflows:read")])
async def get_workflow(workflow_id: str, principal: CurrentPrincipal, ctx: Ctx) -> WorkflowOut:
    async with ctx.db.read() as session:
        workflow = await service.get(session, principal, workflow_id)
    return WorkflowOut.model_validate(workflow)


@router.post(
    "/ains/workflows/{workflow_id}/cancel", response_model=WorkflowOut, dependencies=[requires("workflows:write")]
)
async def cancel_workflow(
    workflow_id: str, principal: CurrentPrincipal, ctx: Ctx, body: Annotated[WorkflowCancel | None, Body()] = None
) -> WorkflowOut:
    """Cancel every step not yet final (owner or admin)."""
    body = body or WorkflowCancel()
    workflow = await cancel_workflow_in_rounds(ctx, principal, workflow_id, body.reason)
    return WorkflowOut.model_validate(workflow)
