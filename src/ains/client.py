"""The Python SDK: `AINSClient` (sync) and `AsyncAINSClient` (async), one typed method per endpoint.

Both speak the public HTTP API through httpx and return the same Pydantic models
the server answers with. An HTTP error raises `AINSError` with `status_code`
and `detail`. Connection errors are retried with backoff on calls that are safe
to repeat (reads, deletes, and submissions that carry an idempotency key). A 429
from a key's rate limit is waited out (its `Retry-After`) and sent again, on any call.

    from ains.client import AINSClient
    with AINSClient("http://127.0.0.1:8000", api_key) as ains:
        task = ains.submit_task(task_type="analysis", capability_required="data:v1", input_data={"x": 1})
        done = ains.wait_for_task(task.task_id, timeout=60)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import httpx
from pydantic import BaseModel

from ains.agents.schemas import AgentList, AgentOut, AgentRegistered, HeartbeatResponse
from ains.auth.schemas import ApiKeyCreated, ApiKeyList, RegistrationTokenCreated, RegistrationTokenList
from ains.identity import Identity
from ains.schedules.schemas import ScheduleList, ScheduleOut
from ains.tasks.schemas import (
    AttemptHistory,
    BatchResult,
    CancelResponse,
    ClaimResponse,
    QueueMetrics,
    ReportResults,
    TaskList,
    TaskOut,
)
from ains.trust.schemas import Leaderboard, TrustSummary
from ains.webhooks.schemas import DeliveryOut, DeliveryPage, RecoverOut, WebhookList, WebhookWithSecret
from ains.workflows.builder import Step, Workflow
from ains.workflows.schemas import WorkflowList, WorkflowOut

__all__ = ["AINSClient", "AINSError", "AsyncAINSClient", "FINAL_STATUSES", "Step", "Task", "Workflow"]

Task = TaskOut
FINAL_STATUSES = frozenset({"COMPLETED", "FAILED", "CANCELLED"})
RETRIES = 3
RETRY_BASE_SECONDS = 0.2


class AINSError(Exception):
    """An error answer from AINS."""

    def __init__(self, status_code: int, detail: Any) -> None:
        super().__init__(f"{status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail


@dataclass
class Call:
    """One request: what to send, what model the answer is, and whether it may be repeated."""

    method: str
    path: str
    model: type[BaseModel] | None = None
    json: Any = None
    params: dict[str, Any] = field(default_factory=dict)
    idempotent: bool = False

    def kwargs(self) -> dict[str, Any]:
        params = {k: v for k, v in self.params.items() if v is not None}
        return {"json": self.json, "params": params or None}

    def parse(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise AINSError(response.status_code, detail)
        if self.model is None or response.status_code == 204:
            return None
        return self.model.model_validate(response.json())


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _time(value: datetime | str | None) -> str | None:
    """A time for a request body: ISO 8601 as given, or a datetime (naive is taken as UTC) in UTC with `Z`."""
    if value is None or isinstance(value, str):
        return value
    moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class _Endpoints:
    """Every endpoint as a `Call`; the sync and async clients only differ in how they send it."""

    def _send(self, call: Call) -> Any:  # pragma: no cover - provided by the subclasses
        raise NotImplementedError

    # tasks
    def submit_task(self, **fields: Any) -> TaskOut:
        return self._send(Call("POST", "/ains/tasks", TaskOut, json=fields, idempotent="idempotency_key" in fields))

    def submit_batch(self, tasks: list[dict[str, Any]], atomic: bool = False) -> BatchResult:
        return self._send(Call("POST", "/ains/tasks/batch", BatchResult, json={"tasks": tasks, "atomic": atomic}))

    def get_task(self, task_id: str) -> TaskOut:
        return self._send(Call("GET", f"/ains/tasks/{task_id}", TaskOut, idempotent=True))

    def task_attempts(self, task_id: str) -> AttemptHistory:
        return self._send(Call("GET", f"/ains/tasks/{task_id}/attempts", AttemptHistory, idempotent=True))

    def list_tasks_page(self, cursor: str | None = None, limit: int = 100, **filters: Any) -> TaskList:
        params = {"cursor": cursor, "limit": limit, **filters}
        return self._send(Call("GET", "/ains/tasks", TaskList, params=params, idempotent=True))

    def cancel_task(self, task_id: str, reason: str = "Client requested cancellation") -> CancelResponse:
        return self._send(Call("POST", f"/ains/tasks/{task_id}/cancel", CancelResponse, json={"reason": reason}))

    def set_priority(self, task_id: str, priority: int) -> TaskOut:
        return self._send(
            Call("PATCH", f"/ains/tasks/{task_id}/priority", TaskOut, json={"priority": priority}, idempotent=True)
        )

    def queue_metrics(self) -> QueueMetrics:
        return self._send(Call("GET", "/ains/queue/metrics", QueueMetrics, idempotent=True))

    # agents and trust
    def list_agents(self, limit: int = 50, offset: int = 0, **filters: Any) -> AgentList:
        params = {"limit": limit, "offset": offset, **filters}
        return self._send(Call("GET", "/ains/agents", AgentList, params=params, idempotent=True))

    def get_agent(self, agent_id: str) -> AgentOut:
        return self._send(Call("GET", f"/ains/agents/{agent_id}", AgentOut, idempotent=True))

    def agent_trust(self, agent_id: str) -> TrustSummary:
        return self._send(Call("GET", f"/ains/agents/{agent_id}/trust", TrustSummary, idempotent=True))

    def leaderboard(self, limit: int = 10, min_tasks: int = 0) -> Leaderboard:
        params = {"limit": limit, "min_tasks": min_tasks}
        return self._send(Call("GET", "/ains/agents/leaderboard", Leaderboard, params=params, idempotent=True))

    # the agent's side: registration, claims and reports (`ains.agent.Agent` runs these in a loop)
    def register_agent(
        self,
        agent_id: str,
        identity: Identity,
        capabilities: list[str],
        *,
        registration_token: str | None = None,
        **profile: Any,
    ) -> AgentRegistered:
        """Register with a signed proof of `identity`; the answer carries the agent's API key.

        `registration_token` is needed when the server runs with `agent_registration=token` (SPEC 18)."""
        body = identity.registration(agent_id) | {"capabilities": capabilities, **profile}
        body |= _drop_none({"registration_token": registration_token})
        return self._send(Call("POST", "/ains/agents", AgentRegistered, json=body))

    def heartbeat(self, agent_id: str, wait_seconds: float | None = None) -> HeartbeatResponse:
        """A heartbeat; with `wait_seconds` (0–30) the server answers early when one of the agent's tasks is
        cancelled, otherwise when the wait ends (keep it below the client's `timeout`)."""
        body = _drop_none({"wait_seconds": wait_seconds})
        return self._send(Call("POST", f"/ains/agents/{agent_id}/heartbeat", HeartbeatResponse, json=body))

    def claim_tasks(
        self, agent_id: str, max_tasks: int = 1, wait_seconds: float = 0, start: bool = False
    ) -> ClaimResponse:
        body = {"max_tasks": max_tasks, "wait_seconds": wait_seconds, "start": start}
        return self._send(Call("POST", f"/ains/agents/{agent_id}/tasks/claim", ClaimResponse, json=body))

    def start_task(self, task_id: str, attempt: int | None = None) -> TaskOut:
        return self._send(Call("POST", f"/ains/tasks/{task_id}/start", TaskOut, json=_drop_none({"attempt": attempt})))

    def complete_task(
        self, task_id: str, result_data: dict[str, Any] | None = None, attempt: int | None = None
    ) -> TaskOut:
        body = _drop_none({"result_data": result_data, "attempt": attempt})
        return self._send(Call("POST", f"/ains/tasks/{task_id}/complete", TaskOut, json=body))

    def fail_task(self, task_id: str, error_message: str, attempt: int | None = None, **options: Any) -> TaskOut:
        body = _drop_none({"error_message": error_message, "attempt": attempt, **options})
        return self._send(Call("POST", f"/ains/tasks/{task_id}/fail", TaskOut, json=body))

    def complete_tasks(self, items: list[dict[str, Any]]) -> ReportResults:
        """Complete up to 100 tasks in one call; items are `{"task_id", "attempt", "result_data"}`."""
        return self._send(Call("POST", "/ains/tasks/complete-batch", ReportResults, json={"items": items}))

    def fail_tasks(self, items: list[dict[str, Any]]) -> ReportResults:
        """Fail up to 100 tasks in one call; items are `{"task_id", "attempt", "error_message", ...}`."""
        return self._send(Call("POST", "/ains/tasks/fail-batch", ReportResults, json={"items": items}))

    # keys (admin; SPEC 1 and 18)
    def create_key(
        self,
        client_id: str,
        name: str,
        scopes: list[str] | None = None,
        *,
        expires_at: datetime | str | None = None,
        rate_limit_per_second: float | None = None,
        rate_limit_burst: int | None = None,
    ) -> ApiKeyCreated:
        """A client key (its secret is only in this answer); scopes default to all, no expiry by default."""
        body = _drop_none(
            {
                "client_id": client_id,
                "name": name,
                "scopes": scopes,
                "expires_at": _time(expires_at),
                "rate_limit_per_second": rate_limit_per_second,
                "rate_limit_burst": rate_limit_burst,
            }
        )
        return self._send(Call("POST", "/ains/api-keys", ApiKeyCreated, json=body))

    def list_keys(
        self, client_id: str | None = None, include_revoked: bool = False, *, limit: int = 100, offset: int = 0
    ) -> ApiKeyList:
        params = {"client_id": client_id, "include_revoked": include_revoked, "limit": limit, "offset": offset}
        return self._send(Call("GET", "/ains/api-keys", ApiKeyList, params=params, idempotent=True))

    def rotate_key(
        self, key_id: str, grace_seconds: float = 3600, *, expires_at: datetime | str | None = None
    ) -> ApiKeyCreated:
        """Replace a key: the answer is the new key (same client, scopes and limits; its secret only here),
        with `old_key_expires_at`, when the old key stops working (after `grace_seconds`).

        Not repeated on a connection error: a second rotation would make yet another key."""
        body = _drop_none({"grace_seconds": grace_seconds, "expires_at": _time(expires_at)})
        return self._send(Call("POST", f"/ains/api-keys/{key_id}/rotate", ApiKeyCreated, json=body))

    def revoke_key(self, key_id: str) -> None:
        return self._send(Call("DELETE", f"/ains/api-keys/{key_id}", idempotent=True))

    # registration tokens (admin; SPEC 18, for agent_registration=token)
    def create_registration_token(
        self, name: str, *, max_uses: int | None = None, expires_at: datetime | str | None = None
    ) -> RegistrationTokenCreated:
        """A token agents pass to `register_agent(registration_token=...)`; the token is only in this answer.
        `max_uses` None: unlimited; `expires_at` None: never."""
        body = _drop_none({"name": name, "max_uses": max_uses, "expires_at": _time(expires_at)})
        return self._send(Call("POST", "/ains/registration-tokens", RegistrationTokenCreated, json=body))

    def list_registration_tokens(
        self, include_revoked: bool = False, *, limit: int = 100, offset: int = 0
    ) -> RegistrationTokenList:
        params = {"include_revoked": include_revoked, "limit": limit, "offset": offset}
        return self._send(
            Call("GET", "/ains/registration-tokens", RegistrationTokenList, params=params, idempotent=True)
        )

    def revoke_registration_token(self, token_id: str) -> None:
        return self._send(Call("DELETE", f"/ains/registration-tokens/{token_id}", idempotent=True))

    # webhooks
    def create_webhook(
        self, owner_id: str, url: str, events: list[str], secret: str | None = None, *, owner_kind: str = "client"
    ) -> WebhookWithSecret:
        body = _drop_none({"url": url, "events": events, "secret": secret})
        return self._send(Call("POST", f"/ains/{owner_kind}s/{owner_id}/webhooks", WebhookWithSecret, json=body))

    def list_webhooks(self, owner_id: str, *, owner_kind: str = "client") -> WebhookList:
        return self._send(Call("GET", f"/ains/{owner_kind}s/{owner_id}/webhooks", WebhookList, idempotent=True))

    def update_webhook(self, webhook_id: str, **changes: Any) -> WebhookWithSecret:
        return self._send(Call("PATCH", f"/ains/webhooks/{webhook_id}", WebhookWithSecret, json=changes))

    def delete_webhook(self, webhook_id: str) -> None:
        return self._send(Call("DELETE", f"/ains/webhooks/{webhook_id}", idempotent=True))

    def webhook_deliveries(self, webhook_id: str, cursor: str | None = None, limit: int = 50) -> DeliveryPage:
        params = {"cursor": cursor, "limit": limit}
        return self._send(
            Call("GET", f"/ains/webhooks/{webhook_id}/deliveries", DeliveryPage, params=params, idempotent=True)
        )

    def redeliver(self, webhook_id: str, delivery_id: str) -> DeliveryOut:
        """Send a finished delivery again (a new series of attempts, the same event_id and body); 409 if pending."""
        path = f"/ains/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver"
        return self._send(Call("POST", path, DeliveryOut))

    def recover_webhook(self, webhook_id: str, since: datetime | str) -> RecoverOut:
        """Re-queue every delivery of the webhook that ended failed since `since`; `redelivering` says how many."""
        body = {"since": _time(since)}
        return self._send(Call("POST", f"/ains/webhooks/{webhook_id}/recover", RecoverOut, json=body))

    # workflows (SPEC 17)
    def submit_workflow(
        self,
        workflow: Workflow | dict[str, Any] | None = None,
        *,
        name: str | None = None,
        steps: list[dict[str, Any]] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> WorkflowOut:
        """Submit a graph of steps: a `Workflow` builder, a body, or `name` and `steps`."""
        if isinstance(workflow, Workflow):
            body = workflow.body()
        elif workflow is not None:
            body = dict(workflow)
        else:
            body = _drop_none({"name": name, "steps": steps, "metadata": metadata})
        return self._send(Call("POST", "/ains/workflows", WorkflowOut, json=body))

    def get_workflow(self, workflow_id: str) -> WorkflowOut:
        return self._send(Call("GET", f"/ains/workflows/{workflow_id}", WorkflowOut, idempotent=True))

    def list_workflows_page(self, cursor: str | None = None, limit: int = 50, **filters: Any) -> WorkflowList:
        params = {"cursor": cursor, "limit": limit, **filters}
        return self._send(Call("GET", "/ains/workflows", WorkflowList, params=params, idempotent=True))

    def cancel_workflow(self, workflow_id: str, reason: str = "Client requested cancellation") -> WorkflowOut:
        return self._send(Call("POST", f"/ains/workflows/{workflow_id}/cancel", WorkflowOut, json={"reason": reason}))

    # schedules (SPEC 17)
    def create_schedule(
        self, name: str, cron: str, task: dict[str, Any], *, timezone: str = "UTC", **extra: Any
    ) -> ScheduleOut:
        body = {"name": name, "cron": cron, "timezone": timezone, "task": task, **extra}
        return self._send(Call("POST", "/ains/schedules", ScheduleOut, json=body))

    def get_schedule(self, schedule_id: str) -> ScheduleOut:
        return self._send(Call("GET", f"/ains/schedules/{schedule_id}", ScheduleOut, idempotent=True))

    def list_schedules(self, cursor: str | None = None, limit: int = 50, **filters: Any) -> ScheduleList:
        params = {"cursor": cursor, "limit": limit, **filters}
        return self._send(Call("GET", "/ains/schedules", ScheduleList, params=params, idempotent=True))

    def update_schedule(self, schedule_id: str, **changes: Any) -> ScheduleOut:
        return self._send(Call("PATCH", f"/ains/schedules/{schedule_id}", ScheduleOut, json=changes, idempotent=True))

    def pause_schedule(self, schedule_id: str) -> ScheduleOut:
        return self.update_schedule(schedule_id, active=False)

    def resume_schedule(self, schedule_id: str) -> ScheduleOut:
        return self.update_schedule(schedule_id, active=True)

    def delete_schedule(self, schedule_id: str) -> None:
        return self._send(Call("DELETE", f"/ains/schedules/{schedule_id}", idempotent=True))


MAX_RETRY_AFTER_SECONDS = 60.0


def _rate_limited_wait(response: httpx.Response) -> float | None:
    """Seconds to wait before sending again, for a 429 with `Retry-After` (a key's rate limit); else None.

    A 429 without `Retry-After` (the cap on a client's pending tasks) is not retried: waiting won't help.
    """
    if response.status_code != 429:
        return None
    try:
        seconds = float(response.headers["Retry-After"])
    except (KeyError, ValueError):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


class AINSClient(_Endpoints):
    """Synchronous client."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(base_url=base_url, headers=_headers(api_key), timeout=timeout, transport=transport)

    def _send(self, call: Call) -> Any:
        for attempt in range(RETRIES + 1):
            try:
                response = self._http.request(call.method, call.path, **call.kwargs())
            except httpx.TransportError:
                if not call.idempotent or attempt == RETRIES:
                    raise
                time.sleep(RETRY_BASE_SECONDS * 2**attempt)
                continue
            wait = _rate_limited_wait(response) if attempt < RETRIES else None
            if wait is not None:  # refused by the rate limit before anything happened: safe to send again
                time.sleep(wait)
                continue
            return call.parse(response)
        raise AssertionError("unreachable")

    def list_tasks(self, limit: int = 100, **filters: Any) -> Iterator[TaskOut]:
        """Every task matching the filters, following the cursor across pages."""
        cursor = None
        while True:
            page = self.list_tasks_page(cursor=cursor, limit=limit, **filters)
            yield from page.tasks
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def wait_for_task(self, task_id: str, timeout: float = 60.0, poll_interval: float = 0.5) -> TaskOut:
        """Poll until the task is final; TimeoutError if it isn't within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            task = self.get_task(task_id)
            if task.status in FINAL_STATUSES:
                return task
            if time.monotonic() >= deadline:
                raise TimeoutError(f"task {task_id} is still {task.status} after {timeout} s")
            time.sleep(min(poll_interval, max(0.0, deadline - time.monotonic())))

    def wait_for_workflow(self, workflow_id: str, timeout: float = 60.0, poll_interval: float = 0.5) -> WorkflowOut:
        """Poll until the workflow is final; TimeoutError if it isn't within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            workflow = self.get_workflow(workflow_id)
            if workflow.status in FINAL_STATUSES:
                return workflow
            if time.monotonic() >= deadline:
                raise TimeoutError(f"workflow {workflow_id} is still {workflow.status} after {timeout} s")
            time.sleep(min(poll_interval, max(0.0, deadline - time.monotonic())))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AINSClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncAINSClient(_Endpoints):
    """Asynchronous client: the same methods, awaited."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=_headers(api_key), timeout=timeout, transport=transport
        )

    async def _send(self, call: Call) -> Any:
        for attempt in range(RETRIES + 1):
            try:
                response = await self._http.request(call.method, call.path, **call.kwargs())
            except httpx.TransportError:
                if not call.idempotent or attempt == RETRIES:
                    raise
                await asyncio.sleep(RETRY_BASE_SECONDS * 2**attempt)
                continue
            wait = _rate_limited_wait(response) if attempt < RETRIES else None
            if wait is not None:  # refused by the rate limit before anything happened: safe to send again
                await asyncio.sleep(wait)
                continue
            return call.parse(response)
        raise AssertionError("unreachable")

    async def list_tasks(self, limit: int = 100, **filters: Any) -> AsyncIterator[TaskOut]:
        cursor = None
        while True:
            # The shared endpoint table is typed for the blocking client; here each call is awaitable.
            page: TaskList = await cast(
                Awaitable[TaskList], self.list_tasks_page(cursor=cursor, limit=limit, **filters)
            )
            for task in page.tasks:
                yield task
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def wait_for_task(self, task_id: str, timeout: float = 60.0, poll_interval: float = 0.5) -> TaskOut:
        deadline = time.monotonic() + timeout
        while True:
            task: TaskOut = await cast(Awaitable[TaskOut], self.get_task(task_id))
            if task.status in FINAL_STATUSES:
                return task
            if time.monotonic() >= deadline:
                raise TimeoutError(f"task {task_id} is still {task.status} after {timeout} s")
            await asyncio.sleep(min(poll_interval, max(0.0, deadline - time.monotonic())))

    async def wait_for_workflow(
        self, workflow_id: str, timeout: float = 60.0, poll_interval: float = 0.5
    ) -> WorkflowOut:
        deadline = time.monotonic() + timeout
        while True:
            workflow: WorkflowOut = await cast(Awaitable[WorkflowOut], self.get_workflow(workflow_id))
            if workflow.status in FINAL_STATUSES:
                return workflow
            if time.monotonic() >= deadline:
                raise TimeoutError(f"workflow {workflow_id} is still {workflow.status} after {timeout} s")
            await asyncio.sleep(min(poll_interval, max(0.0, deadline - time.monotonic())))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncAINSClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
