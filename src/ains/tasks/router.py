"""Task endpoints (SPEC 3)."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Body, Depends, Query, Request, Response, status

from ains.auth.dependencies import CurrentPrincipal, agents_only, caller, requires
from ains.core.clock import utcnow
from ains.core.config import Settings
from ains.core.context import AppContext, context_of, get_context
from ains.core.errors import Forbidden
from ains.core.principal import Principal
from ains.core.work import Work
from ains.tasks import claim as claiming
from ains.tasks import dependencies, reads, service, submission
from ains.tasks.answers import batch_answer, json_response, task_answer
from ains.tasks.models import Task
from ains.tasks.schemas import (
    AttemptHistory,
    AttemptOut,
    BatchResult,
    BatchSubmit,
    CancelRequest,
    CancelResponse,
    ClaimRequest,
    ClaimResponse,
    CompleteBatch,
    CompleteRequest,
    FailBatch,
    FailRequest,
    PriorityRequest,
    QueueMetrics,
    ReportResults,
    StartRequest,
    TaskList,
    TaskOut,
    TaskStatusValue,
    TaskSubmit,
)

# The hot routes (submit, read, claim, start, reports) take the `Request` and read the caller and the context
# from it (`caller`, `context_of`) instead of asking for `CurrentPrincipal` and `Ctx`: FastAPI resolves each
# dependency parameter on every request, and for a cached read that was a tenth of the server's CPU
# (benchmarks/PROFILE.md). The route's access check (`requires`, `agents_only`) has authenticated it already.
#
# Routes are matched in the order they are declared here, on every request, and FastAPI spends about a
# microsecond on each route it tries (twice over in the router that matches): the routes come in order of
# traffic, busiest first (tests/ops/test_routing.py checks the order and that no route takes another's path).
router = APIRouter(tags=["tasks"])
CLAIM_LIMIT_HEADER = "X-AINS-Claim-Limit"
Ctx = Annotated[AppContext, Depends(get_context)]


def present(task: Task | TaskOut, settings: Settings) -> TaskOut:
    out = task if isinstance(task, TaskOut) else TaskOut.model_validate(task)
    out.effective_priority = reads.effective_priority(out, utcnow(), settings)
    return out


@router.get("/ains/tasks/{task_id}", response_model=TaskOut, dependencies=[requires("tasks:read")])
async def get_task(task_id: str, request: Request) -> Response:
    return json_response(await reads.read_task(context_of(request), caller(request), task_id))


@router.post("/ains/agents/{agent_id}/tasks/claim", response_model=ClaimResponse, dependencies=[agents_only()])
async def claim_tasks(agent_id: str, request: Request, body: Annotated[ClaimRequest | None, Body()] = None) -> Response:
    """Up to `max_tasks` tasks, now ASSIGNED to the caller (ACTIVE with `start`); waits up to `wait_seconds`."""
    ctx, principal = context_of(request), caller(request)
    if not principal.is_agent(agent_id):
        raise Forbidden("An agent may claim only for itself")
    body = body or ClaimRequest()
    result = await claiming.claim(
        ctx, agent_id, max_tasks=body.max_tasks, wait_seconds=body.wait_seconds, start=body.start, request=request
    )
    now = utcnow()
    times: dict[datetime, str] = {}
    tasks = [task_answer(task, now, ctx.settings, times) for task in result.tasks]
    waited = [task["task_id"] for task in tasks if task["depends_on"]]
    results = {}
    if waited:  # SPEC 17: what each dependency answered
        async with ctx.db.read() as session:
            results = await dependencies.dependency_results(session, waited)
    for task in tasks:
        task["dependency_results"] = results.get(task["task_id"], {}) if task["depends_on"] else None
    answer = json_response({"tasks": tasks, "reason": result.limited_reason})
    if result.limited_reason:
        answer.headers[CLAIM_LIMIT_HEADER] = result.limited_reason
    return answer


@router.post("/ains/tasks/{task_id}/start", response_model=TaskOut, dependencies=[agents_only()])
async def start_task(task_id: str, request: Request, body: Annotated[StartRequest | None, Body()] = None) -> Response:
    ctx, principal = context_of(request), caller(request)
    attempt = body.attempt if body else None
    # Reports are plain SQL (see ains.tasks.reports): a lean transaction on PostgreSQL.
    task = await ctx.run(lambda work: service.start(work, principal, task_id, attempt), lean=True)
    return json_response(task_answer(task, utcnow(), ctx.settings))


@router.post("/ains/tasks/{task_id}/complete", response_model=TaskOut, dependencies=[agents_only()])
async def complete_task(
    task_id: str, request: Request, body: Annotated[CompleteRequest | None, Body()] = None
) -> Response:
    ctx, principal = context_of(request), caller(request)
    report = body or CompleteRequest()
    task = await ctx.run(
        lambda work: service.complete(work, principal, task_id, report.attempt, report.result_data), lean=True
    )
    return json_response(task_answer(task, utcnow(), ctx.settings))


@router.post("/ains/tasks/{task_id}/fail", response_model=TaskOut, dependencies=[agents_only()])
async def fail_task(task_id: str, body: FailRequest, request: Request) -> Response:
    ctx, principal = context_of(request), caller(request)
    task = await ctx.run(
        lambda work: service.fail(
            work,
            principal,
            task_id,
            body.attempt,
            body.error_message,
            retryable=body.retryable,
            retry_after_seconds=body.retry_after_seconds,
        ),
        lean=True,
    )
    return json_response(task_answer(task, utcnow(), ctx.settings))


@router.post(
    "/ains/tasks/complete-batch",
    response_model=ReportResults,
    response_model_exclude_none=True,
    dependencies=[agents_only()],
)
async def complete_batch(body: CompleteBatch, request: Request) -> Response:
    """The calling agent completes up to 100 tasks; each item is answered on its own."""
    return await _report_batch(service.complete_many, body.items, caller(request), context_of(request))


@router.post(
    "/ains/tasks/fail-batch",
    response_model=ReportResults,
    response_model_exclude_none=True,
    dependencies=[agents_only()],
)
async def fail_batch(body: FailBatch, request: Request) -> Response:
    """The calling agent fails up to 100 tasks (retry rules as /fail); each item is answered on its own."""
    return await _report_batch(service.fail_many, body.items, caller(request), context_of(request))


class _ReportMany(Protocol):
    """`service.complete_many` or `service.fail_many`, typed so a wrong argument is a type error."""

    def __call__(self, work: Work, principal: Principal, items: list[Any]) -> Awaitable[list[dict[str, Any]]]: ...


async def _report_batch(
    report_many: _ReportMany,
    items: list[Any],
    principal: Principal,
    ctx: AppContext,
) -> Response:
    if principal.kind != "agent":
        raise Forbidden("Only agents report on tasks")
    results = await ctx.run(lambda work: report_many(work, principal, items), lean=True)
    return json_response({"results": results})


@router.post(
    "/ains/tasks",
    status_code=status.HTTP_201_CREATED,
    response_model=TaskOut,
    responses={200: {"model": TaskOut, "description": "A repeated idempotency key: the first task"}},
    dependencies=[requires("tasks:write")],
)
async def submit_task(body: TaskSubmit, request: Request) -> Response:
    ctx, principal = context_of(request), caller(request)
    task, created = await submission.submit_one(ctx, principal, body)
    answer = task_answer(task, utcnow(), ctx.settings)
    return json_response(answer, status.HTTP_201_CREATED if created else status.HTTP_200_OK)


@router.post("/ains/tasks/batch", response_model=BatchResult, dependencies=[requires("tasks:write")])
async def submit_batch(body: BatchSubmit, request: Request) -> Response:
    """Up to 100 tasks in one transaction; each item is validated and answered on its own."""
    ctx, principal = context_of(request), caller(request)
    async with ctx.work() as work:
        submitted, failed = await submission.submit_batch(work, principal, body.tasks, atomic=body.atomic)
    return json_response(batch_answer(submitted, failed))


@router.get("/ains/tasks", response_model=TaskList, dependencies=[requires("tasks:read")])
async def list_tasks(
    principal: CurrentPrincipal,
    ctx: Ctx,
    status: TaskStatusValue | None = None,
    client_id: str | None = None,
    capability: str | None = None,
    priority: Annotated[int | None, Query(ge=1, le=10)] = None,
    workflow_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> Response:
    """Newest first. A client sees its own tasks, an agent those it submitted or holds, the admin all."""
    async with ctx.db.read() as session:
        rows, next_cursor = await reads.list_tasks(
            session,
            principal,
            status=status,
            client_id=client_id,
            capability=capability,
            priority=priority,
            limit=limit,
            cursor=cursor,
            workflow_id=workflow_id,
        )
    now = utcnow()
    times: dict[datetime, str] = {}
    tasks = [task_answer(row, now, ctx.settings, times) for row in rows]
    return json_response({"tasks": tasks, "next_cursor": next_cursor})


@router.get("/ains/tasks/{task_id}/attempts", response_model=AttemptHistory, dependencies=[requires("tasks:read")])
async def task_attempts(task_id: str, principal: CurrentPrincipal, ctx: Ctx) -> AttemptHistory:
    async with ctx.db.read() as session:
        task = await reads.get_visible(session, principal, task_id)
        rows = await reads.attempts(session, task)
    return AttemptHistory(task_id=task_id, attempts=[AttemptOut.model_validate(r) for r in rows])


@router.post("/ains/tasks/{task_id}/cancel", response_model=CancelResponse, dependencies=[requires("tasks:write")])
async def cancel_task(
    task_id: str, principal: CurrentPrincipal, ctx: Ctx, body: Annotated[CancelRequest | None, Body()] = None
) -> CancelResponse:
    """PENDING, ASSIGNED or ACTIVE → CANCELLED (owner or admin); 409 on a final task."""
    body = body or CancelRequest()
    async with ctx.work() as work:
        task = await service.cancel(work, principal, task_id, body.reason)
    return CancelResponse.model_validate(task)


@router.patch("/ains/tasks/{task_id}/priority", response_model=TaskOut, dependencies=[requires("tasks:write")])
async def set_priority(task_id: str, body: PriorityRequest, principal: CurrentPrincipal, ctx: Ctx) -> TaskOut:
    """Change the base priority of a task that is not final (owner or admin); takes effect at once."""
    async with ctx.work() as work:
        task = await service.set_priority(work, principal, task_id, body.priority)
    return present(task, ctx.settings)


@router.get("/ains/queue/metrics", response_model=QueueMetrics, dependencies=[requires("tasks:read")])
async def queue_metrics(principal: CurrentPrincipal, ctx: Ctx) -> QueueMetrics:
    """Queue figures: over all tasks for the admin, over the caller's own tasks otherwise."""
    async with ctx.reading() as work:
        figures = await reads.queue_metrics(work, principal)
    return QueueMetrics(**figures)
