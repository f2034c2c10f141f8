"""The Python SDK: `AINSClient` (sync) and `AsyncAINSClient` (async), one typed method per endpoint.

Both speak the public HTTP API through httpx and return the same Pydantic models
the server answers with. An HTTP error raises `AINSError` with `status_code`
and `detail`. Connection errors are retried with backoff on calls that are safe
to repeat (reads, deletes, reports that carry their attempt, and submissions that carry
an idempotency key). A 429 from a key's rate limit is waited out (its `Retry-After`) and
sent again, on any call. `Retries` says how; `with_options(retry=..., timeout=...)` gives
a client that retries (or waits) differently, as the agent runtime (`ains.agent`) does.

    from ains.client import AINSClient
    with AINSClient("http://127.0.0.1:8000", api_key) as ains:
        task = ains.submit_task("analysis", "data:v1", {"x": 1}, priority=7)
        done = ains.wait_for_task(task.task_id, timeout=60)
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Concatenate, Generic, Literal, ParamSpec, Self, TypeVar, cast, overload

import httpx
from pydantic import BaseModel

from ains.agents.schemas import AgentList, AgentOut, AgentRegistered, AgentToken, HeartbeatResponse
from ains.auth.schemas import ApiKeyCreated, ApiKeyList, RegistrationTokenCreated, RegistrationTokenList
from ains.core.clock import utc_text
from ains.identity import Identity
from ains.schedules.schemas import ScheduleList, ScheduleOut
from ains.tasks.schemas import (
    FINAL_STATUSES,
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

__all__ = [
    "AINSClient",
    "AINSError",
    "AsyncAINSClient",
    "Call",
    "FINAL_STATUSES",
    "Retries",
    "Step",
    "Task",
    "Try",
    "Workflow",
    "error_for",
]

Task = TaskOut
RETRIES = 3  # the default policy's retries after the first try
RETRY_BASE_SECONDS = 0.2
MAX_RETRY_AFTER_SECONDS = 60.0
# Connection errors after which the request certainly never reached the server.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

M = TypeVar("M")
P = ParamSpec("P")


class AINSError(Exception):
    """An error answer from AINS: `status_code`, the server's `detail` (a message, or FastAPI's list of field
    errors for 422) and, when there was one, the `response` itself."""

    def __init__(
        self, status_code: int, detail: Any, *, response: httpx.Response | None = None, message: str | None = None
    ) -> None:
        super().__init__(message or f"{status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail
        self.response = response

    @property
    def text(self) -> str:
        """The answer's body as text (the detail when there is no response)."""
        return self.response.text if self.response is not None else str(self.detail)


def error_for(response: httpx.Response) -> AINSError | None:
    """The `AINSError` an answer stands for (status 400 and above), else None. The one place the SDK and the
    agent runtime turn an HTTP answer into an error."""
    if response.status_code < 400:
        return None
    try:
        detail = response.json().get("detail", response.text)
    except (ValueError, AttributeError):  # not JSON, or JSON that is not an object
        detail = response.text
    return AINSError(response.status_code, detail, response=response)


@dataclass
class Call(Generic[M]):
    """One request: what to send, what model the answer is, and whether it may be repeated."""

    method: str
    path: str
    model: type[M] | None = None
    json: Any = None
    params: dict[str, Any] = field(default_factory=dict)
    idempotent: bool = False

    def kwargs(self) -> dict[str, Any]:
        params = {k: v for k, v in self.params.items() if v is not None}
        return {"json": self.json, "params": params or None}

    def parse(self, response: httpx.Response) -> M:
        error = error_for(response)
        if error is not None:
            raise error
        if self.model is None or response.status_code == 204:
            return cast(M, None)  # a Call[None]: the endpoint answers nothing
        return cast(M, cast(type[BaseModel], self.model).model_validate(response.json()))


@dataclass(frozen=True)
class Try:
    """One sending of a call: when it began (`time.monotonic()`) and what came of it, an answer or an error."""

    call: Call[Any]
    started: float
    response: httpx.Response | None = None
    error: httpx.TransportError | None = None

    @property
    def may_have_arrived(self) -> bool:
        """False only when the request certainly never reached the server."""
        return not isinstance(self.error, NOT_SENT)

    @property
    def server_trouble(self) -> str | None:
        """What went wrong when the server did not really answer (a connection error, a timeout, a 5xx)."""
        if self.response is None:
            return None if self.error is None else _describe(self.error)
        if self.response.status_code >= 500:
            return f"{self.response.status_code} {self.response.text[:200]}"
        return None


@dataclass(frozen=True)
class Retries:
    """The SDK's one retry policy: when a call is sent again, and how long to wait before.

    At most `tries` tries (None: no limit), and none that would begin after `until` (a `time.monotonic()`
    time; None: no deadline), waiting `first_delay` seconds doubling up to `max_delay` between them.
    Sent again: a call safe to repeat after a connection error or timeout, and with `server_errors` also
    after a 5xx answer or a 429 without `Retry-After`; any call after a 429 with `Retry-After` (a key's rate
    limit refused it before anything happened), waiting at least that long (at most 60 s). When the policy
    gives up, the last error is raised: the httpx error, or the `AINSError` of the answer.
    """

    tries: int | None = RETRIES + 1
    first_delay: float = RETRY_BASE_SECONDS
    max_delay: float = 5.0
    server_errors: bool = False
    until: float | None = None

    def pause(self, call: Call[Any], retry: int, response: httpx.Response | None) -> float | None:
        """Seconds to wait before sending `call` again after its `retry`-th failed try (0 for the first);
        None: not again."""
        if self.tries is not None and retry + 1 >= self.tries:
            return None
        delay = min(self.first_delay * 2**retry, self.max_delay)
        if response is None:
            if not call.idempotent:
                return None
        elif response.status_code == 429:
            wait = _retry_after(response)
            if wait is None and not self.server_errors:
                return None  # the cap on a client's pending tasks: waiting won't help
            delay = max(delay, wait or 0.0)
        elif not (response.status_code >= 500 and self.server_errors and call.idempotent):
            return None
        if self.until is not None and time.monotonic() + delay > self.until:
            return None
        return delay


def _retry_after(response: httpx.Response) -> float | None:
    """A 429's `Retry-After` in seconds (at most 60), or None without one."""
    try:
        seconds = float(response.headers["Retry-After"])
    except (KeyError, ValueError):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _time(value: datetime | str | None) -> str | None:
    """A time for a request body: ISO 8601 as given, or a datetime (naive is taken as UTC) in UTC with `Z`."""
    if value is None or isinstance(value, str):
        return value
    moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    return utc_text(moment)


class _Endpoint(Generic[P, M]):
    """An endpoint of the table below: on `AINSClient` a method answering `M`, on `AsyncAINSClient` a
    coroutine function answering `M`, both with the parameters `P` of the function that builds its `Call`."""

    def __init__(self, build: Callable[Concatenate[Any, P], Call[M]]) -> None:
        self._build = build
        self.__doc__ = build.__doc__
        self.__name__ = build.__name__
        parameters = list(inspect.signature(build).parameters.values())[1:]
        self._signature = inspect.Signature(parameters)

    @overload
    def __get__(self, client: None, owner: type | None = None) -> Self: ...
    @overload
    def __get__(self, client: AsyncAINSClient, owner: type | None = None) -> Callable[P, Coroutine[Any, Any, M]]: ...
    @overload
    def __get__(self, client: AINSClient, owner: type | None = None) -> Callable[P, M]: ...
    def __get__(self, client: Any, owner: type | None = None) -> Any:
        if client is None:
            return self
        build = self._build

        def send(*args: Any, **kwargs: Any) -> Any:
            return client._send(build(client, *args, **kwargs))

        send.__name__ = send.__qualname__ = self.__name__
        send.__doc__ = self.__doc__
        send.__signature__ = self._signature  # type: ignore[attr-defined]
        return send


def _update_schedule(schedule_id: str, changes: dict[str, Any]) -> Call[ScheduleOut]:
    return Call("PATCH", f"/ains/schedules/{schedule_id}", ScheduleOut, json=changes, idempotent=True)


class _Endpoints:
    """Every endpoint as a `Call`; the sync and async clients only differ in how they send it (`_send`)."""

    # tasks
    @_Endpoint
    def submit_task(
        self,
        task_type: str,
        capability_required: str,
        input_data: dict[str, Any] | None = None,
        *,
        priority: int = 5,
        max_retries: int = 3,
        retry_policy: Literal["exponential", "linear", "fixed"] = "exponential",
        retry_jitter: bool = False,
        timeout_seconds: int = 300,
        idempotency_key: str | None = None,
        metadata: dict[str, Any] | None = None,
        min_trust_score: float | None = None,
        depends_on: list[str] | None = None,
        run_at: datetime | str | None = None,
        delay_seconds: int | None = None,
        client_id: str | None = None,
        **extra: Any,
    ) -> Call[TaskOut]:
        """Submit a task (`POST /ains/tasks`); the defaults are the server's.

        `priority` 1–10; `max_retries` 0–10; `timeout_seconds` 1–3600, from the attempt's start;
        `idempotency_key`: a repeated key answers the first task (and makes the call safe to repeat after a
        connection error); `min_trust_score` 0–1; `depends_on`: ids of this client's tasks to wait for;
        `run_at` (a time) or `delay_seconds`: not claimable before then; `client_id`: with the admin key, the
        client the task is for. Other keywords are sent as they are."""
        body = _drop_none(
            {
                "task_type": task_type,
                "capability_required": capability_required,
                "input_data": input_data,
                "priority": priority,
                "max_retries": max_retries,
                "retry_policy": retry_policy,
                "retry_jitter": retry_jitter,
                "timeout_seconds": timeout_seconds,
                "idempotency_key": idempotency_key,
                "metadata": metadata,
                "min_trust_score": min_trust_score,
                "depends_on": depends_on,
                "run_at": _time(run_at),
                "delay_seconds": delay_seconds,
                "client_id": client_id,
            }
        )
        body |= extra
        return Call("POST", "/ains/tasks", TaskOut, json=body, idempotent=idempotency_key is not None)

    @_Endpoint
    def submit_batch(self, tasks: list[dict[str, Any]], atomic: bool = False) -> Call[BatchResult]:
        return Call("POST", "/ains/tasks/batch", BatchResult, json={"tasks": tasks, "atomic": atomic})

    @_Endpoint
    def get_task(self, task_id: str) -> Call[TaskOut]:
        return Call("GET", f"/ains/tasks/{task_id}", TaskOut, idempotent=True)

    @_Endpoint
    def task_attempts(self, task_id: str) -> Call[AttemptHistory]:
        return Call("GET", f"/ains/tasks/{task_id}/attempts", AttemptHistory, idempotent=True)

    @_Endpoint
    def list_tasks_page(self, cursor: str | None = None, limit: int = 100, **filters: Any) -> Call[TaskList]:
        params = {"cursor": cursor, "limit": limit, **filters}
        return Call("GET", "/ains/tasks", TaskList, params=params, idempotent=True)

    @_Endpoint
    def cancel_task(self, task_id: str, reason: str = "Client requested cancellation") -> Call[CancelResponse]:
        return Call("POST", f"/ains/tasks/{task_id}/cancel", CancelResponse, json={"reason": reason})

    @_Endpoint
    def set_priority(self, task_id: str, priority: int) -> Call[TaskOut]:
        return Call("PATCH", f"/ains/tasks/{task_id}/priority", TaskOut, json={"priority": priority}, idempotent=True)

    @_Endpoint
    def queue_metrics(self) -> Call[QueueMetrics]:
        return Call("GET", "/ains/queue/metrics", QueueMetrics, idempotent=True)

    # agents and trust
    @_Endpoint
    def list_agents(self, limit: int = 50, offset: int = 0, **filters: Any) -> Call[AgentList]:
        params = {"limit": limit, "offset": offset, **filters}
        return Call("GET", "/ains/agents", AgentList, params=params, idempotent=True)

    @_Endpoint
    def get_agent(self, agent_id: str) -> Call[AgentOut]:
        return Call("GET", f"/ains/agents/{agent_id}", AgentOut, idempotent=True)

    @_Endpoint
    def agent_trust(self, agent_id: str) -> Call[TrustSummary]:
        return Call("GET", f"/ains/agents/{agent_id}/trust", TrustSummary, idempotent=True)

    @_Endpoint
    def leaderboard(self, limit: int = 10, min_tasks: int = 0) -> Call[Leaderboard]:
        params = {"limit": limit, "min_tasks": min_tasks}
        return Call("GET", "/ains/agents/leaderboard", Leaderboard, params=params, idempotent=True)

    # the agent's side: registration, claims and reports (`ains.agent.Agent` runs these in a loop)
    @_Endpoint
    def register_agent(
        self,
        agent_id: str,
        identity: Identity,
        capabilities: list[str],
        *,
        registration_token: str | None = None,
        **profile: Any,
    ) -> Call[AgentRegistered]:
        """Register with a signed proof of `identity`; the answer carries the agent's API key.

        `registration_token` is needed when the server runs with `agent_registration=token` (SPEC 18)."""
        body = identity.registration(agent_id) | {"capabilities": capabilities, **profile}
        body |= _drop_none({"registration_token": registration_token})
        return Call("POST", "/ains/agents", AgentRegistered, json=body)

    @_Endpoint
    def reissue_agent_key(self, agent_id: str, identity: Identity) -> Call[AgentToken]:
        """A new API key for an agent already registered, for a fresh signature; its earlier keys stop working.

        Not repeated on a connection error: a signature is accepted once."""
        return Call("POST", f"/ains/agents/{agent_id}/token", AgentToken, json=identity.token_request(agent_id))

    @_Endpoint
    def update_agent(self, agent_id: str, **changes: Any) -> Call[AgentOut]:
        """Change the agent's profile (capabilities, max_concurrency, display_name, …), with its own key."""
        return Call("PATCH", f"/ains/agents/{agent_id}", AgentOut, json=changes, idempotent=True)

    @_Endpoint
    def heartbeat(self, agent_id: str, wait_seconds: float | None = None) -> Call[HeartbeatResponse]:
        """A heartbeat; with `wait_seconds` (0–30) the server answers early when one of the agent's tasks is
        cancelled, otherwise when the wait ends (keep it below the client's `timeout`)."""
        body = _drop_none({"wait_seconds": wait_seconds})
        return Call("POST", f"/ains/agents/{agent_id}/heartbeat", HeartbeatResponse, json=body, idempotent=True)

    @_Endpoint
    def claim_tasks(
        self, agent_id: str, max_tasks: int = 1, wait_seconds: float = 0, start: bool = False
    ) -> Call[ClaimResponse]:
        body: dict[str, Any] = {"max_tasks": max_tasks, "wait_seconds": wait_seconds}
        if start:  # false is the server's default
            body["start"] = True
        return Call("POST", f"/ains/agents/{agent_id}/tasks/claim", ClaimResponse, json=body)

    # A report that carries its attempt is safe to send again: the server answers a repeated one as the first.
    @_Endpoint
    def start_task(self, task_id: str, attempt: int | None = None) -> Call[TaskOut]:
        body = _drop_none({"attempt": attempt})
        return Call("POST", f"/ains/tasks/{task_id}/start", TaskOut, json=body, idempotent=attempt is not None)

    @_Endpoint
    def complete_task(
        self, task_id: str, result_data: dict[str, Any] | None = None, attempt: int | None = None
    ) -> Call[TaskOut]:
        body = _drop_none({"result_data": result_data, "attempt": attempt})
        return Call("POST", f"/ains/tasks/{task_id}/complete", TaskOut, json=body, idempotent=attempt is not None)

    @_Endpoint
    def fail_task(self, task_id: str, error_message: str, attempt: int | None = None, **options: Any) -> Call[TaskOut]:
        body = _drop_none({"error_message": error_message, "attempt": attempt, **options})
        return Call("POST", f"/ains/tasks/{task_id}/fail", TaskOut, json=body, idempotent=attempt is not None)

    @_Endpoint
    def complete_tasks(self, items: list[dict[str, Any]]) -> Call[ReportResults]:
        """Complete up to 100 tasks in one call; items are `{"task_id", "attempt", "result_data"}`."""
        return Call("POST", "/ains/tasks/complete-batch", ReportResults, json={"items": items})

    @_Endpoint
    def fail_tasks(self, items: list[dict[str, Any]]) -> Call[ReportResults]:
        """Fail up to 100 tasks in one call; items are `{"task_id", "attempt", "error_message", ...}`."""
        return Call("POST", "/ains/tasks/fail-batch", ReportResults, json={"items": items})

    # keys (admin; SPEC 1 and 18)
    @_Endpoint
    def create_key(
        self,
        client_id: str,
        name: str,
        scopes: list[str] | None = None,
        *,
        expires_at: datetime | str | None = None,
        rate_limit_per_second: float | None = None,
        rate_limit_burst: int | None = None,
    ) -> Call[ApiKeyCreated]:
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
        return Call("POST", "/ains/api-keys", ApiKeyCreated, json=body)

    @_Endpoint
    def list_keys(
        self, client_id: str | None = None, include_revoked: bool = False, *, limit: int = 100, offset: int = 0
    ) -> Call[ApiKeyList]:
        params = {"client_id": client_id, "include_revoked": include_revoked, "limit": limit, "offset": offset}
        return Call("GET", "/ains/api-keys", ApiKeyList, params=params, idempotent=True)

    @_Endpoint
    def rotate_key(
        self, key_id: str, grace_seconds: float = 3600, *, expires_at: datetime | str | None = None
    ) -> Call[ApiKeyCreated]:
        """Replace a key: the answer is the new key (same client, scopes and limits; its secret only here),
        with `old_key_expires_at`, when the old key stops working (after `grace_seconds`).

        Not repeated on a connection error: a second rotation would make yet another key."""
        body = _drop_none({"grace_seconds": grace_seconds, "expires_at": _time(expires_at)})
        return Call("POST", f"/ains/api-keys/{key_id}/rotate", ApiKeyCreated, json=body)

    @_Endpoint
    def revoke_key(self, key_id: str) -> Call[None]:
        return Call("DELETE", f"/ains/api-keys/{key_id}", idempotent=True)

    # registration tokens (admin; SPEC 18, for agent_registration=token)
    @_Endpoint
    def create_registration_token(
        self, name: str, *, max_uses: int | None = None, expires_at: datetime | str | None = None
    ) -> Call[RegistrationTokenCreated]:
        """A token agents pass to `register_agent(registration_token=...)`; the token is only in this answer.
        `max_uses` None: unlimited; `expires_at` None: never."""
        body = _drop_none({"name": name, "max_uses": max_uses, "expires_at": _time(expires_at)})
        return Call("POST", "/ains/registration-tokens", RegistrationTokenCreated, json=body)

    @_Endpoint
    def list_registration_tokens(
        self, include_revoked: bool = False, *, limit: int = 100, offset: int = 0
    ) -> Call[RegistrationTokenList]:
        params = {"include_revoked": include_revoked, "limit": limit, "offset": offset}
        return Call("GET", "/ains/registration-tokens", RegistrationTokenList, params=params, idempotent=True)

    @_Endpoint
    def revoke_registration_token(self, token_id: str) -> Call[None]:
        return Call("DELETE", f"/ains/registration-tokens/{token_id}", idempotent=True)

    # webhooks
    @_Endpoint
    def create_webhook(
        self, owner_id: str, url: str, events: list[str], secret: str | None = None, *, owner_kind: str = "client"
    ) -> Call[WebhookWithSecret]:
        body = _drop_none({"url": url, "events": events, "secret": secret})
        return Call("POST", f"/ains/{owner_kind}s/{owner_id}/webhooks", WebhookWithSecret, json=body)

    @_Endpoint
    def list_webhooks(self, owner_id: str, *, owner_kind: str = "client") -> Call[WebhookList]:
        return Call("GET", f"/ains/{owner_kind}s/{owner_id}/webhooks", WebhookList, idempotent=True)

    @_Endpoint
    def update_webhook(self, webhook_id: str, **changes: Any) -> Call[WebhookWithSecret]:
        return Call("PATCH", f"/ains/webhooks/{webhook_id}", WebhookWithSecret, json=changes)

    @_Endpoint
    def delete_webhook(self, webhook_id: str) -> Call[None]:
        return Call("DELETE", f"/ains/webhooks/{webhook_id}", idempotent=True)

    @_Endpoint
    def webhook_deliveries(self, webhook_id: str, cursor: str | None = None, limit: int = 50) -> Call[DeliveryPage]:
        params = {"cursor": cursor, "limit": limit}
        return Call("GET", f"/ains/webhooks/{webhook_id}/deliveries", DeliveryPage, params=params, idempotent=True)

    @_Endpoint
    def redeliver(self, webhook_id: str, delivery_id: str) -> Call[DeliveryOut]:
        """Send a finished delivery again (a new series of attempts, the same event_id and body); 409 if pending."""
        return Call("POST", f"/ains/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver", DeliveryOut)

    @_Endpoint
    def recover_webhook(self, webhook_id: str, since: datetime | str) -> Call[RecoverOut]:
        """Re-queue every delivery of the webhook that ended failed since `since`; `redelivering` says how many."""
        return Call("POST", f"/ains/webhooks/{webhook_id}/recover", RecoverOut, json={"since": _time(since)})

    # workflows (SPEC 17)
    @_Endpoint
    def submit_workflow(
        self,
        workflow: Workflow | dict[str, Any] | None = None,
        *,
        name: str | None = None,
        steps: list[dict[str, Any]] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Call[WorkflowOut]:
        """Submit a graph of steps: a `Workflow` builder, a body, or `name` and `steps`."""
        if isinstance(workflow, Workflow):
            body = workflow.body()
        elif workflow is not None:
            body = dict(workflow)
        else:
            body = _drop_none({"name": name, "steps": steps, "metadata": metadata})
        return Call("POST", "/ains/workflows", WorkflowOut, json=body)

    @_Endpoint
    def get_workflow(self, workflow_id: str) -> Call[WorkflowOut]:
        return Call("GET", f"/ains/workflows/{workflow_id}", WorkflowOut, idempotent=True)

    @_Endpoint
    def list_workflows_page(self, cursor: str | None = None, limit: int = 50, **filters: Any) -> Call[WorkflowList]:
        params = {"cursor": cursor, "limit": limit, **filters}
        return Call("GET", "/ains/workflows", WorkflowList, params=params, idempotent=True)

    @_Endpoint
    def cancel_workflow(self, workflow_id: str, reason: str = "Client requested cancellation") -> Call[WorkflowOut]:
        return Call("POST", f"/ains/workflows/{workflow_id}/cancel", WorkflowOut, json={"reason": reason})

    # schedules (SPEC 17)
    @_Endpoint
    def create_schedule(
        self, name: str, cron: str, task: dict[str, Any], *, timezone: str = "UTC", **extra: Any
    ) -> Call[ScheduleOut]:
        body = {"name": name, "cron": cron, "timezone": timezone, "task": task, **extra}
        return Call("POST", "/ains/schedules", ScheduleOut, json=body)

    @_Endpoint
    def get_schedule(self, schedule_id: str) -> Call[ScheduleOut]:
        return Call("GET", f"/ains/schedules/{schedule_id}", ScheduleOut, idempotent=True)

    @_Endpoint
    def list_schedules(self, cursor: str | None = None, limit: int = 50, **filters: Any) -> Call[ScheduleList]:
        params = {"cursor": cursor, "limit": limit, **filters}
        return Call("GET", "/ains/schedules", ScheduleList, params=params, idempotent=True)

    @_Endpoint
    def update_schedule(self, schedule_id: str, **changes: Any) -> Call[ScheduleOut]:
        return _update_schedule(schedule_id, changes)

    @_Endpoint
    def pause_schedule(self, schedule_id: str) -> Call[ScheduleOut]:
        return _update_schedule(schedule_id, {"active": False})

    @_Endpoint
    def resume_schedule(self, schedule_id: str) -> Call[ScheduleOut]:
        return _update_schedule(schedule_id, {"active": True})

    @_Endpoint
    def delete_schedule(self, schedule_id: str) -> Call[None]:
        return Call("DELETE", f"/ains/schedules/{schedule_id}", idempotent=True)

    # how calls are sent (shared by both clients)
    _retry: Retries
    _timeout: float | httpx.Timeout | None
    _on_try: Callable[[Try], None] | None

    def _setup(self, retry: Retries | None) -> None:
        self._retry = retry or Retries()
        self._timeout = None
        self._on_try = None

    def with_options(
        self,
        *,
        retry: Retries | None = None,
        timeout: float | httpx.Timeout | None = None,
        on_try: Callable[[Try], None] | None = None,
    ) -> Self:
        """This client (the same connections and key) with another retry policy, another timeout for each
        request, or a function told of every try (an answer or a connection error) as it happens."""
        view = copy.copy(self)
        if retry is not None:
            view._retry = retry
        if timeout is not None:
            view._timeout = timeout
        if on_try is not None:
            view._on_try = on_try
        return view

    def _request_options(self, call: Call[Any]) -> dict[str, Any]:
        options = call.kwargs()
        if self._timeout is not None:
            options["timeout"] = self._timeout
        return options

    def _tried(self, attempt: Try) -> None:
        if self._on_try is not None:
            self._on_try(attempt)


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
        retry: Retries | None = None,
    ) -> None:
        self._http = httpx.Client(base_url=base_url, headers=_headers(api_key), timeout=timeout, transport=transport)
        self._setup(retry)

    def use_api_key(self, api_key: str | None) -> None:
        """Send this key from now on (with every view `with_options` made of this client)."""
        self._http.headers.pop("Authorization", None)
        self._http.headers.update(_headers(api_key))

    def _send(self, call: Call[M]) -> M:
        retry = 0
        while True:
            started = time.monotonic()
            try:
                response = self._http.request(call.method, call.path, **self._request_options(call))
            except httpx.TransportError as exc:
                self._tried(Try(call, started, error=exc))
                pause = self._retry.pause(call, retry, None)
                if pause is None:
                    raise
            else:
                self._tried(Try(call, started, response=response))
                pause = self._retry.pause(call, retry, response)
                if pause is None:
                    return call.parse(response)
            time.sleep(pause)
            retry += 1

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
        retry: Retries | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=_headers(api_key), timeout=timeout, transport=transport
        )
        self._setup(retry)

    def use_api_key(self, api_key: str | None) -> None:
        """Send this key from now on (with every view `with_options` made of this client)."""
        self._http.headers.pop("Authorization", None)
        self._http.headers.update(_headers(api_key))

    async def _send(self, call: Call[M]) -> M:
        retry = 0
        while True:
            started = time.monotonic()
            try:
                response = await self._http.request(call.method, call.path, **self._request_options(call))
            except httpx.TransportError as exc:
                self._tried(Try(call, started, error=exc))
                pause = self._retry.pause(call, retry, None)
                if pause is None:
                    raise
            else:
                self._tried(Try(call, started, response=response))
                pause = self._retry.pause(call, retry, response)
                if pause is None:
                    return call.parse(response)
            await asyncio.sleep(pause)
            retry += 1

    async def list_tasks(self, limit: int = 100, **filters: Any) -> AsyncIterator[TaskOut]:
        cursor = None
        while True:
            page = await self.list_tasks_page(cursor=cursor, limit=limit, **filters)
            for task in page.tasks:
                yield task
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def wait_for_task(self, task_id: str, timeout: float = 60.0, poll_interval: float = 0.5) -> TaskOut:
        deadline = time.monotonic() + timeout
        while True:
            task = await self.get_task(task_id)
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
            workflow = await self.get_workflow(workflow_id)
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
