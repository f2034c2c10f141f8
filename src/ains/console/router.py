"""The operator console's pages and forms (SPEC 19), under /console.

Server-rendered Jinja2 templates with a little vanilla JavaScript (static/console.js): no build step, nothing
loaded from outside the machine. Sign-in takes an admin or client API key and keeps an HttpOnly, SameSite=Strict
session cookie (ains.console.session); every POST carries a CSRF token and is refused (403) without a valid one.
Actions go through the same services as the API, as the signed-in principal, so the API's rules (who may cancel,
what may change) hold here too. None of these routes are part of the JSON API: they are left out of the schema.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from pydantic import ValidationError

from ains import __version__
from ains.agents import service as agents
from ains.agents.schemas import REGISTERED_STATUSES
from ains.auth import service as auth
from ains.auth.keys import hash_key
from ains.auth.schemas import ApiKeyCreate, ApiKeyRotate
from ains.console import service
from ains.console.session import COOKIE, Session, SessionSigner
from ains.core.clock import exact_text, relative_text, utc_text, utcnow
from ains.core.context import AppContext
from ains.core.errors import AinsError
from ains.core.principal import CLIENT_SCOPES, Principal
from ains.tasks import reads
from ains.tasks import service as tasks
from ains.tasks.schemas import FINAL_STATUSES, CancelRequest, PriorityRequest, TaskStatus
from ains.trust import service as trust
from ains.trust.levels import trust_level
from ains.trust.schemas import TrustAdjust
from ains.webhooks import service as webhooks
from ains.webhooks.schemas import DeliveryStatus
from ains.workflows.schemas import WorkflowStatus

HERE = Path(__file__).parent
PREFIX = "/console"
LIVE_INTERVAL_MS = 3000  # how often an open page asks whether anything it shows has changed
MAX_FORM_BYTES = 16384
KEYS_PER_PAGE = 100
# How long a rotated key keeps working, as the keys page offers it (the API takes any number up to 30 days).
GRACE_CHOICES = ((0, "none"), (300, "5 min"), (3600, "1 h"), (86400, "1 day"), (604800, "7 days"))

router = APIRouter(prefix=PREFIX, include_in_schema=False)


# ---------------------------------------------------------------- rendering helpers


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def relative(value: datetime | None, now: datetime | None = None) -> str:
    if value is None:
        return "never"
    return relative_text(_aware(value), now or utcnow(), just_now_seconds=5)


def when(value: datetime | None) -> Markup:
    """A time as people read it (relative, updated by the page's script) with the exact UTC time beside it."""
    if value is None:
        return Markup('<span class="muted">—</span>')
    stamp = _aware(value).astimezone(UTC)
    iso = utc_text(stamp)
    exact = exact_text(stamp)
    return Markup('<time datetime="{0}" title="{1}">{2}</time> <span class="exact">{1}</span>').format(
        iso, exact, relative(stamp)
    )


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def status_badge(status: str | None) -> Markup:
    text = status or "—"
    return Markup('<span class="badge badge-{0}">{1}</span>').format(text.lower(), text)


templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.filters.update(when=when, pretty_json=pretty_json, badge=status_badge, level=trust_level)
templates.globals.update(
    version=__version__,
    live_interval=LIVE_INTERVAL_MS,
    statuses=tuple(TaskStatus),
    agent_statuses=REGISTERED_STATUSES,
    delivery_statuses=tuple(DeliveryStatus),
    client_scopes=CLIENT_SCOPES,
    grace_choices=GRACE_CHOICES,
)

SECURITY_HEADERS = {
    # Nothing from outside, no inline script: the pages' only script is static/console.js.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class Viewer:
    """The request's console user: their session, principal (None when signed out) and CSRF token."""

    def __init__(self, request: Request, session: Session, principal: Principal | None, signer: SessionSigner):
        self.request = request
        self.session = session
        self.principal = principal
        self.csrf = signer.csrf_token(session)
        self.fresh_cookie: str | None = None

    @property
    def user(self) -> Principal:
        """The signed-in principal, on pages that are shown only after sign-in."""
        assert self.principal is not None, "a page past sign-in was reached signed out"
        return self.principal


def _ctx(request: Request) -> AppContext:
    return request.app.state.ctx


def _signer(ctx: AppContext) -> SessionSigner:
    signer = getattr(ctx, "_console_signer", None)
    if signer is None or signer.source != ctx.admin_key_hash:
        signer = SessionSigner(ctx.admin_key_hash)
        signer.source = ctx.admin_key_hash  # type: ignore[attr-defined]
        ctx._console_signer = signer  # type: ignore[attr-defined]
    return signer


async def _principal_for(ctx: AppContext, digest: str) -> Principal | None:
    principal = auth.resolve_admin(digest, ctx.admin_key_hash)
    if principal is None:
        async with ctx.db.read() as session:
            principal = await auth.resolve(session, digest)
    if principal is None or principal.kind == "agent":
        return None
    return principal


async def _viewer(request: Request) -> Viewer:
    ctx = _ctx(request)
    signer = _signer(ctx)
    session = signer.load(request.cookies.get(COOKIE))
    fresh = session is None
    if session is None:
        session = signer.new()
    principal = await _principal_for(ctx, session.key_digest) if session.key_digest else None
    if session.key_digest and principal is None:  # the key was revoked: the session ends
        session, fresh = signer.new(), True
    viewer = Viewer(request, session, principal, signer)
    if fresh:
        viewer.fresh_cookie = signer.dump(session)
    return viewer


def _set_cookie(response: Response, request: Request, value: str) -> None:
    response.set_cookie(
        COOKIE,
        value,
        max_age=12 * 3600,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def _finish(response: Response, viewer: Viewer) -> Response:
    response.headers.update(SECURITY_HEADERS)
    if viewer.fresh_cookie:
        _set_cookie(response, viewer.request, viewer.fresh_cookie)
    return response


async def render(viewer: Viewer, template: str, status_code: int = 200, **values: Any) -> Response:
    request = viewer.request
    live_stamp = ""
    if viewer.principal is not None:  # the page's script compares this with /console/live to see changes
        async with _ctx(request).db.read() as session:
            live_stamp = await service.stamp(session, viewer.principal)
    page = templates.get_template(template).render(
        live_stamp=live_stamp,
        viewer=viewer,
        principal=viewer.principal,
        csrf=viewer.csrf,
        path=request.url.path,
        notice=request.query_params.get("notice"),
        problem=request.query_params.get("problem"),
        **values,
    )
    return _finish(HTMLResponse(page, status_code=status_code), viewer)


def redirect(viewer: Viewer, url: str, *, notice: str | None = None, problem: str | None = None) -> Response:
    query = {k: v for k, v in (("notice", notice), ("problem", problem)) if v}
    if query:
        url += ("&" if "?" in url else "?") + urlencode(query)
    return _finish(RedirectResponse(url, status_code=303), viewer)


def sign_in_redirect(viewer: Viewer) -> Response:
    target = viewer.request.url.path
    if viewer.request.url.query:
        target += "?" + viewer.request.url.query
    return redirect(viewer, f"{PREFIX}/sign-in?next={quote(target, safe='')}")


async def problem_page(viewer: Viewer, status_code: int, title: str, detail: str) -> Response:
    return await render(viewer, "problem.html", status_code=status_code, title=title, detail=detail)


async def read_form(request: Request, viewer: Viewer) -> dict[str, str] | Response:
    """The posted form, or the 403 page when its CSRF token is missing or not this session's."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return await problem_page(viewer, 413, "Form too large", "The form sent more than the console accepts.")
    try:
        fields = {k: v[0] for k, v in parse_qs(body.decode("utf-8"), keep_blank_values=True).items()}
    except UnicodeDecodeError:
        fields = {}
    if not _signer(_ctx(request)).csrf_ok(viewer.session if not viewer.fresh_cookie else None, fields.get("csrf")):
        return await problem_page(
            viewer,
            403,
            "Refused: no valid CSRF token",
            "This form did not carry this session's CSRF token, so nothing was changed. Reload the page and try again.",
        )
    return fields


async def _signed_in_post(request: Request) -> tuple[Viewer, dict[str, str]] | Response:
    """A posted action's viewer and form, or the answer that ends it: the 403 page for a missing or foreign CSRF
    token, the sign-in page for a signed-out viewer. Past it, `viewer.user` is the signed-in principal."""
    viewer = await _viewer(request)
    form = await read_form(request, viewer)
    if isinstance(form, Response):
        return form
    if viewer.principal is None:
        return sign_in_redirect(viewer)
    return viewer, form


def _error_text(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ()))
        return f"{where}: {first.get('msg')}" if where else str(first.get("msg"))
    if isinstance(exc, AinsError):
        detail = exc.detail
        return detail if isinstance(detail, str) else json.dumps(detail, default=str)
    return str(exc)


def _safe_next(value: str | None) -> str:
    if value and value.startswith(PREFIX) and not value.startswith("//") and "\\" not in value:
        return value
    return PREFIX


# ---------------------------------------------------------------- sign-in


@router.get("/sign-in")
async def sign_in_page(request: Request) -> Response:
    viewer = await _viewer(request)
    return await render(viewer, "sign_in.html", next=_safe_next(request.query_params.get("next")), error=None)


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    viewer = await _viewer(request)
    form = await read_form(request, viewer)
    if isinstance(form, Response):
        return form
    key = form.get("api_key", "").strip()
    target = _safe_next(form.get("next"))
    ctx = _ctx(request)
    principal = await _principal_for(ctx, hash_key(key)) if key else None
    if principal is None:
        error = "That key was not accepted: use an admin key or a client API key that has not been revoked."
        return await render(viewer, "sign_in.html", status_code=401, next=target, error=error)
    signer = _signer(ctx)
    session = signer.new(hash_key(key))  # a new session id: nothing from before sign-in carries over
    viewer.fresh_cookie = signer.dump(session)
    return redirect(viewer, target)


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    viewer = await _viewer(request)
    form = await read_form(request, viewer)
    if isinstance(form, Response):
        return form
    viewer.fresh_cookie = _signer(_ctx(request)).dump(_signer(_ctx(request)).new())
    return redirect(viewer, f"{PREFIX}/sign-in", notice="Signed out.")


@router.get("/live")
async def live(request: Request) -> Response:
    """What the open page polls: a fingerprint that changes when anything the viewer can see does."""
    viewer = await _viewer(request)
    if viewer.principal is None:
        return _finish(JSONResponse({"signed_in": False}, status_code=401), viewer)
    async with _ctx(request).db.read() as session:
        value = await service.stamp(session, viewer.principal)
    return _finish(JSONResponse({"signed_in": True, "stamp": value}), viewer)


# ---------------------------------------------------------------- overview


@router.get("")
async def overview(request: Request) -> Response:
    viewer = await _viewer(request)
    if viewer.principal is None:
        return sign_in_redirect(viewer)
    ctx = _ctx(request)
    async with ctx.reading() as work:
        data = await service.overview(work, viewer.principal)
    depth = data.metrics["queue_depth_by_priority"]
    return await render(
        viewer,
        "overview.html",
        data=data,
        depth=depth,
        depth_max=max(list(depth.values()) + [0]),
        capability_max=max([count for _, count in data.depth_by_capability] + [0]),
        nav="overview",
    )


# ---------------------------------------------------------------- tasks


def scope(name: str) -> str:
    """A scope by its current name: `webhooks:read` where keys have read/write scopes, else `webhooks`."""
    return name if name in CLIENT_SCOPES else name.split(":", 1)[0]


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


@router.get("/tasks")
async def task_list(request: Request) -> Response:
    viewer = await _viewer(request)
    if viewer.principal is None:
        return sign_in_redirect(viewer)
    if not viewer.principal.has_scope(scope("tasks:read")):
        return await problem_page(viewer, 403, "No tasks scope", "This key lacks the tasks:read scope.")
    query = request.query_params
    filters: dict[str, Any] = {
        "status": query.get("status") if query.get("status") in tuple(TaskStatus) else None,
        "capability": (query.get("capability") or "").strip()[:130] or None,
        "priority": p if (p := _int(query.get("priority"))) and 1 <= p <= 10 else None,
        "client_id": (query.get("client_id") or "").strip()[:64] or None,
    }
    cursor = (query.get("cursor") or "")[:500] or None
    ctx = _ctx(request)
    try:
        async with ctx.db.read() as session:
            rows, next_cursor = await reads.list_tasks(session, viewer.principal, limit=50, cursor=cursor, **filters)
    except AinsError as exc:  # a cursor that is not ours
        return await problem_page(viewer, exc.status_code, "Cannot list tasks", _error_text(exc))
    now = utcnow()
    shown = [(task, reads.effective_priority(task, now, ctx.settings)) for task in rows]
    older = None
    if next_cursor:
        older = f"{PREFIX}/tasks?" + urlencode({**{k: v for k, v in filters.items() if v}, "cursor": next_cursor})
    return await render(
        viewer,
        "tasks.html",
        tasks=shown,
        filters=filters,
        filtered=any(filters.values()),
        older=older,
        paged=cursor is not None,
        nav="tasks",
    )


async def _task_page(viewer: Viewer, task_id: str, status_code: int = 200, **extra: Any) -> Response:
    if not viewer.user.has_scope(scope("tasks:read")):
        return await problem_page(viewer, 403, "No tasks scope", "This key lacks the tasks:read scope.")
    ctx = _ctx(viewer.request)
    try:
        async with ctx.db.read() as session:
            task, attempts, events = await service.task_detail(session, viewer.user, task_id)
    except AinsError as exc:
        return await problem_page(viewer, exc.status_code, "Task not found", _error_text(exc))
    principal = viewer.user
    can_act = (
        task.status not in FINAL_STATUSES
        and (principal.is_admin or task.client_id == principal.id)
        and principal.has_scope(scope("tasks:write"))
    )
    return await render(
        viewer,
        "task.html",
        status_code=status_code,
        task=task,
        attempts=attempts,
        events=events,
        effective=reads.effective_priority(task, utcnow(), ctx.settings),
        can_act=can_act,
        nav="tasks",
        **extra,
    )


@router.get("/tasks/{task_id}")
async def task_page(request: Request, task_id: str) -> Response:
    viewer = await _viewer(request)
    if viewer.principal is None:
        return sign_in_redirect(viewer)
    return await _task_page(viewer, task_id[:64])


@router.post("/tasks/{task_id}/cancel")
async def task_cancel(request: Request, task_id: str) -> Response:
    posted = await _signed_in_post(request)
    if isinstance(posted, Response):
        return posted
    viewer, form = posted
    page = f"{PREFIX}/tasks/{quote(task_id, safe='')}"
    if form.get("confirmed") != "yes":  # without the page's script: ask on a page of its own
        return await _task_page(viewer, task_id, confirm="cancel", reason=form.get("reason", ""))
    ctx = _ctx(request)
    try:
        body = CancelRequest(reason=form.get("reason") or "Cancelled from the console")
        async with ctx.work() as work:
            await tasks.cancel(work, viewer.user, task_id, body.reason)
    except (AinsError, ValidationError) as exc:
        if isinstance(exc, AinsError) and exc.status_code == 404:
            return await problem_page(viewer, 404, "Task not found", _error_text(exc))
        return redirect(viewer, page, problem=f"Not cancelled: {_error_text(exc)}")
    return redirect(viewer, page, notice=f"Task {task_id} cancelled.")


@router.post("/tasks/{task_id}/priority")
async def task_priority(request: Request, task_id: str) -> Response:
    posted = await _signed_in_post(request)
    if isinstance(posted, Response):
        return posted
    viewer, form = posted
    page = f"{PREFIX}/tasks/{quote(task_id, safe='')}"
    if form.get("confirmed") != "yes":
        return await _task_page(viewer, task_id, confirm="priority", new_priority=form.get("priority", ""))
    ctx = _ctx(request)
    try:
        body = PriorityRequest(priority=_int(form.get("priority")) or 0)
        async with ctx.work() as work:
            await tasks.set_priority(work, viewer.user, task_id, body.priority)
    except (AinsError, ValidationError) as exc:
        if isinstance(exc, AinsError) and exc.status_code == 404:
            return await problem_page(viewer, 404, "Task not found", _error_text(exc))
        return redirect(viewer, page, problem=f"Priority not changed: {_error_text(exc)}")
    return redirect(viewer, page, notice=f"Priority set to {body.priority}.")


# ---------------------------------------------------------------- agents


@router.get("/agents")
async def agent_list(request: Request) -> Response:
    viewer = await _viewer(request)
    if viewer.principal is None:
        return sign_in_redirect(viewer)
    status = request.query_params.get("status") or None
    capability = (request.query_params.get("capability") or "").strip()[:130] or None
    async with _ctx(request).db.read() as session:
        rows, total = await agents.list_agents(
            session, capability=capability, status=status, tag=None, min_trust=None, limit=500, offset=0
        )
        held = await service.held_counts(session, [agent.agent_id for agent in rows])
    return await render(
        viewer,
        "agents.html",
        agents=rows,
        total=total,
        held=held,
        filters={"status": status, "capability": capability},
        now=utcnow(),
        nav="agents",
    )


async def _agent_page(viewer: Viewer, agent_id: str, **extra: Any) -> Response:
    async with _ctx(viewer.request).db.read() as session:
        view = await service.agent_detail(session, agent_id)
    if view is None:
        return await problem_page(viewer, 404, "Agent not found", f"Agent {agent_id} not found")
    principal = viewer.user
    held = [task for task in view.held if reads.can_see(principal, task)]
    return await render(
        viewer,
        "agent.html",
        view=view,
        held=held,
        hidden_held=len(view.held) - len(held),
        chart=service.trust_chart(view.history),
        nav="agents",
        **extra,
    )


@router.get("/agents/{agent_id}")
async def agent_page(request: Request, agent_id: str) -> Response:
    viewer = await _viewer(request)
    if viewer.principal is None:
        return sign_in_redirect(viewer)
    return await _agent_page(viewer, agent_id[:64])


@router.post("/agents/{agent_id}/trust")
async def agent_trust_adjust(request: Request, agent_id: str) -> Response:
    posted = await _signed_in_post(request)
    if isinstance(posted, Response):
        return posted
    viewer, form = posted
    if not viewer.user.is_admin:
        return await problem_page(viewer, 403, "Admin only", "Only the admin adjusts trust.")
    page = f"{PREFIX}/agents/{quote(agent_id, safe='')}"
    try:
        delta = float(form.get("delta", ""))
        if not math.isfinite(delta):
            raise ValueError
    except ValueError:
        return redirect(viewer, page, problem="Trust not adjusted: delta must be a number from -1 to 1.")
    if form.get("confirmed") != "yes":
        return await _agent_page(viewer, agent_id, confirm=True, delta=delta, reason=form.get("reason", ""))
    try:
        body = TrustAdjust(delta=delta, reason=form.get("reason", ""))
        async with _ctx(request).work() as work:
            agent, _record = await trust.adjust(work, viewer.user, agent_id, float(body.delta), body.reason)
            score = agent.trust_score
    except (AinsError, ValidationError) as exc:
        return redirect(viewer, page, problem=f"Trust not adjusted: {_error_text(exc)}")
    return redirect(viewer, page, notice=f"Trust adjusted by {delta:+g}; the score is now {score}.")


# ---------------------------------------------------------------- webhooks


@router.get("/webhooks")
async def webhook_list(request: Request) -> Response:
    viewer = await _viewer(request)
    if viewer.principal is None:
        return sign_in_redirect(viewer)
    if not viewer.principal.has_scope(scope("webhooks:read")):
        return await problem_page(viewer, 403, "No webhooks scope", "This key lacks the webhooks scope.")
    async with _ctx(request).db.read() as session:
        rows = await service.webhook_rows(session, viewer.principal)
    return await render(viewer, "webhooks.html", hooks=rows, nav="webhooks")


@router.get("/webhooks/{webhook_id}")
async def webhook_page(request: Request, webhook_id: str) -> Response:
    viewer = await _viewer(request)
    if viewer.principal is None:
        return sign_in_redirect(viewer)
    before = _int(request.query_params.get("before"))
    try:
        async with _ctx(request).db.read() as session:
            hook = await webhooks.get_owned(session, viewer.principal, webhook_id[:64])
            rows = await webhooks.deliveries(session, viewer.principal, webhook_id, limit=50, before_id=before)
    except AinsError as exc:
        return await problem_page(viewer, exc.status_code, "Webhook not found", _error_text(exc))
    older = f"{PREFIX}/webhooks/{quote(webhook_id, safe='')}?before={rows[-1][0].id}" if len(rows) == 50 else None
    return await render(viewer, "webhook.html", hook=hook, deliveries=rows, older=older, nav="webhooks")


@router.post("/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver")
async def webhook_redeliver(request: Request, webhook_id: str, delivery_id: str) -> Response:
    posted = await _signed_in_post(request)
    if isinstance(posted, Response):
        return posted
    viewer, form = posted
    page = f"{PREFIX}/webhooks/{quote(webhook_id, safe='')}"
    try:
        async with _ctx(request).work() as work:
            await webhooks.redeliver(work, viewer.user, webhook_id, delivery_id)
    except AinsError as exc:
        if exc.status_code == 404:
            return await problem_page(viewer, 404, "Not found", _error_text(exc))
        return redirect(viewer, page, problem=f"Not redelivered: {_error_text(exc)}")
    return redirect(viewer, page, notice=f"Delivery {delivery_id} queued to be sent again.")


# ---------------------------------------------------------------- workflows and schedules


@router.get("/workflows")
async def workflow_list(request: Request) -> Response:
    from ains.workflows import service as workflows

    viewer = await _viewer(request)
    if viewer.principal is None:
        return sign_in_redirect(viewer)
    if not viewer.principal.has_scope(scope("workflows:read")):
        return await problem_page(viewer, 403, "No workflows scope", "This key lacks the workflows:read scope.")
    status = request.query_params.get("status")
    status = status if status in tuple(WorkflowStatus) else None
    cursor = (request.query_params.get("cursor") or "")[:500] or None
    try:
        async with _ctx(request).db.read() as session:
            rows, next_cursor = await workflows.list_workflows(
                session, viewer.principal, status=status, client_id=None, limit=50, cursor=cursor
            )
    except AinsError as exc:
        return await problem_page(viewer, exc.status_code, "Cannot list workflows", _error_text(exc))
    older = None
    if next_cursor:
        older = f"{PREFIX}/workflows?" + urlencode({**({"status": status} if status else {}), "cursor": next_cursor})
    return await render(
        viewer,
        "workflows.html",
        workflows=rows,
        status=status,
        workflow_statuses=tuple(WorkflowStatus),
        older=older,
        nav="workflows",
    )


async def _workflow_page(viewer: Viewer, workflow_id: str, **extra: Any) -> Response:
    from ains.workflows import service as workflows

    principal = viewer.user
    if not principal.has_scope(scope("workflows:read")):
        return await problem_page(viewer, 403, "No workflows scope", "This key lacks the workflows:read scope.")
    try:
        async with _ctx(viewer.request).db.read() as session:
            workflow = await workflows.get(session, principal, workflow_id[:64])
    except AinsError as exc:
        return await problem_page(viewer, exc.status_code, "Workflow not found", _error_text(exc))
    can_cancel = workflow["status"] == WorkflowStatus.RUNNING and principal.has_scope(scope("workflows:write"))
    return await render(
        viewer,
        "workflow.html",
        workflow=workflow,
        graph=service.workflow_graph(workflow["steps"]),
        can_cancel=can_cancel,
        nav="workflows",
        **extra,
    )


@router.get("/workflows/{workflow_id}")
async def workflow_page(request: Request, workflow_id: str) -> Response:
    viewer = await _viewer(request)
    if viewer.principal is None:
        return sign_in_redirect(viewer)
    return await _workflow_page(viewer, workflow_id)


@router.post("/workflows/{workflow_id}/cancel")
async def workflow_cancel(request: Request, workflow_id: str) -> Response:
    from ains.workflows.cancellation import cancel_workflow
    from ains.workflows.schemas import WorkflowCancel

    posted = await _signed_in_post(request)
    if isinstance(posted, Response):
        return posted
    viewer, form = posted
    if not viewer.user.has_scope(scope("workflows:write")):
        return await problem_page(viewer, 403, "No workflows scope", "This key lacks the workflows:write scope.")
    page = f"{PREFIX}/workflows/{quote(workflow_id, safe='')}"
    if form.get("confirmed") != "yes":
        return await _workflow_page(viewer, workflow_id, confirm=True, reason=form.get("reason", ""))
    ctx = _ctx(request)
    try:
        body = WorkflowCancel(reason=form.get("reason") or "Cancelled from the console")
        await cancel_workflow(ctx, viewer.user, workflow_id, body.reason)
    except (AinsError, ValidationError) as exc:
        if isinstance(exc, AinsError) and exc.status_code == 404:
            return await problem_page(viewer, 404, "Workflow not found", _error_text(exc))
        return redirect(viewer, page, problem=f"Not cancelled: {_error_text(exc)}")
    return redirect(viewer, page, notice=f"Workflow {workflow_id} cancelled.")


@router.get("/schedules")
async def schedule_list(request: Request) -> Response:
    viewer = await _viewer(request)
    if viewer.principal is None:
        return sign_in_redirect(viewer)
    return await _schedule_list(viewer)


async def _schedule_list(viewer: Viewer, **extra: Any) -> Response:
    from ains.schedules import service as schedules

    request = viewer.request
    if not viewer.user.has_scope(scope("schedules:read")):
        return await problem_page(viewer, 403, "No schedules scope", "This key lacks the schedules:read scope.")
    cursor = (request.query_params.get("cursor") or "")[:500] or None
    try:
        async with _ctx(request).db.read() as session:
            rows, next_cursor = await schedules.list_schedules(
                session, viewer.user, client_id=None, limit=100, cursor=cursor
            )
    except AinsError as exc:
        return await problem_page(viewer, exc.status_code, "Cannot list schedules", _error_text(exc))
    older = f"{PREFIX}/schedules?" + urlencode({"cursor": next_cursor}) if next_cursor else None
    can_write = viewer.user.has_scope(scope("schedules:write"))
    return await render(
        viewer, "schedules.html", schedules=rows, older=older, can_write=can_write, nav="schedules", **extra
    )


@router.post("/schedules/{schedule_id}/{action}")
async def schedule_pause_resume(request: Request, schedule_id: str, action: str) -> Response:
    """Pause or resume a schedule, as PATCH /ains/schedules/{id} with `active` does (owner or admin)."""
    from ains.schedules import service as schedules
    from ains.schedules.schemas import ScheduleUpdate

    posted = await _signed_in_post(request)
    if isinstance(posted, Response):
        return posted
    viewer, form = posted
    if action not in ("pause", "resume"):
        return await problem_page(viewer, 404, "Not found", "A schedule is paused or resumed, nothing else.")
    if not viewer.user.has_scope(scope("schedules:write")):
        return await problem_page(viewer, 403, "No schedules scope", "This key lacks the schedules:write scope.")
    if form.get("confirmed") != "yes":
        return await _schedule_list(viewer, confirm=action, confirm_id=schedule_id)
    ctx = _ctx(request)
    try:
        async with ctx.work() as work:
            schedule = await schedules.update(work, viewer.user, schedule_id, ScheduleUpdate(active=action == "resume"))
            name = schedule.name
    except AinsError as exc:
        if exc.status_code == 404:
            return await problem_page(viewer, 404, "Schedule not found", _error_text(exc))
        return redirect(viewer, f"{PREFIX}/schedules", problem=f"Not changed: {_error_text(exc)}")
    done = "paused" if action == "pause" else "resumed"
    return redirect(viewer, f"{PREFIX}/schedules", notice=f"Schedule {name} ({schedule_id}) {done}.")


# ---------------------------------------------------------------- API keys (admin)


async def _admin_only(viewer: Viewer) -> Response | None:
    if viewer.user.is_admin:
        return None
    return await problem_page(viewer, 403, "Admin only", "API keys are managed by the admin.")


async def _keys_page(viewer: Viewer, status_code: int = 200, **extra: Any) -> Response:
    query = viewer.request.query_params
    client_id = (query.get("client_id") or "").strip()[:64] or None
    revoked = query.get("revoked") == "1"
    offset = max(0, min(_int(query.get("offset")) or 0, 1_000_000_000))
    async with _ctx(viewer.request).reading() as work:
        rows = await service.key_rows(
            work, client_id=client_id, include_revoked=revoked, limit=KEYS_PER_PAGE + 1, offset=offset
        )
    filters = {"client_id": client_id, "revoked": revoked}
    shown = {k: v for k, v in (("client_id", client_id), ("revoked", "1" if revoked else None)) if v}
    older = None
    if len(rows) > KEYS_PER_PAGE:
        older = f"{PREFIX}/keys?" + urlencode({**shown, "offset": offset + KEYS_PER_PAGE})
    return await render(
        viewer,
        "keys.html",
        status_code=status_code,
        keys=rows[:KEYS_PER_PAGE],
        filters=filters,
        older=older,
        paged=offset > 0,
        nav="keys",
        **extra,
    )


@router.get("/keys")
async def key_list(request: Request) -> Response:
    viewer = await _viewer(request)
    if viewer.principal is None:
        return sign_in_redirect(viewer)
    if refused := await _admin_only(viewer):
        return refused
    return await _keys_page(viewer)


@router.post("/keys")
async def key_create(request: Request) -> Response:
    posted = await _signed_in_post(request)
    if isinstance(posted, Response):
        return posted
    viewer, form = posted
    if refused := await _admin_only(viewer):
        return refused
    page = f"{PREFIX}/keys"
    try:
        body = ApiKeyCreate.model_validate(
            {
                "client_id": form.get("client_id", "").strip(),
                "name": form.get("name", "").strip(),
                "scopes": [name for name in CLIENT_SCOPES if form.get(f"scope.{name}")],
                "expires_at": form.get("expires_at", "").strip() or None,  # a datetime-local field, read as UTC
            }
        )
    except ValidationError as exc:
        return redirect(viewer, page, problem=f"No key created: {_error_text(exc)}")
    if form.get("confirmed") != "yes":
        return await _keys_page(viewer, confirm="create", new_key=body)
    ctx = _ctx(request)
    try:
        async with ctx.work() as work:
            row, secret = await auth.create_client_key(
                work, viewer.user, body.client_id, body.name, body.scopes, expires_at=body.expires_at
            )
    except AinsError as exc:
        return redirect(viewer, page, problem=f"No key created: {_error_text(exc)}")
    # The secret is shown on this answer only: not in a URL, not stored, and the page is never cached.
    return await _keys_page(
        viewer, status_code=201, secret={"value": secret, "key": row, "action": "created", "old_expires_at": None}
    )


@router.post("/keys/{key_id}/rotate")
async def key_rotate(request: Request, key_id: str) -> Response:
    posted = await _signed_in_post(request)
    if isinstance(posted, Response):
        return posted
    viewer, form = posted
    if refused := await _admin_only(viewer):
        return refused
    page = f"{PREFIX}/keys"
    try:
        body = ApiKeyRotate.model_validate({"grace_seconds": form.get("grace_seconds") or 3600})
    except ValidationError as exc:
        return redirect(viewer, page, problem=f"Not rotated: {_error_text(exc)}")
    if form.get("confirmed") != "yes":
        return await _keys_page(viewer, confirm="rotate", confirm_id=key_id, grace=int(body.grace_seconds))
    try:
        async with _ctx(request).work() as work:
            row, secret, old = await auth.rotate_key(work, viewer.user, key_id, body.grace_seconds)
    except AinsError as exc:
        return redirect(viewer, page, problem=f"Not rotated: {_error_text(exc)}")
    return await _keys_page(
        viewer,
        status_code=201,
        secret={"value": secret, "key": row, "action": "rotated", "old": old, "old_expires_at": old.expires_at},
    )


@router.post("/keys/{key_id}/revoke")
async def key_revoke(request: Request, key_id: str) -> Response:
    posted = await _signed_in_post(request)
    if isinstance(posted, Response):
        return posted
    viewer, form = posted
    if refused := await _admin_only(viewer):
        return refused
    page = f"{PREFIX}/keys"
    if form.get("confirmed") != "yes":
        return await _keys_page(viewer, confirm="revoke", confirm_id=key_id)
    try:
        async with _ctx(request).work() as work:
            await auth.revoke_key(work, viewer.user, key_id)
    except AinsError as exc:
        return redirect(viewer, page, problem=f"Not revoked: {_error_text(exc)}")
    return redirect(viewer, page, notice=f"Key {key_id} revoked: it no longer works.")


# ---------------------------------------------------------------- audit log


@router.get("/audit")
async def audit_page(request: Request) -> Response:
    viewer = await _viewer(request)
    if viewer.principal is None:
        return sign_in_redirect(viewer)
    if not viewer.principal.is_admin:
        return await problem_page(viewer, 403, "Admin only", "The audit log is for the admin.")
    query = request.query_params
    filters = {
        "action": (query.get("action") or "").strip()[:64] or None,
        "actor": (query.get("actor") or "").strip()[:64] or None,
        "target": (query.get("target") or "").strip()[:64] or None,
    }
    before = _int(query.get("before"))
    async with _ctx(request).db.read() as session:
        entries = await service.audit_entries(session, before=before, **filters)
    older = None
    if len(entries) == 100:
        older = f"{PREFIX}/audit?" + urlencode({**{k: v for k, v in filters.items() if v}, "before": entries[-1].id})
    return await render(viewer, "audit.html", entries=entries, filters=filters, older=older, nav="audit")


def install(app: FastAPI) -> None:
    """Mount the console: its pages, and its static files (shipped in the package) at /console/static."""
    app.include_router(router)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="console-static")
