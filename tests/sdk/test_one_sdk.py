"""One SDK (issue 12, point 5): the agent runtime sends through `AsyncAINSClient`, with the client's retry
policy and its `AINSError`; `submit_task`'s keyword parameters; the endpoint table's types.

These run on httpx mock transports (no server): what is sent, what is retried, what is raised.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import subprocess
import sys
import time
from datetime import UTC, datetime

import httpx
import pytest

import ains.agent
from ains.agent import Agent, RegistrationError, TaskContext
from ains.client import AINSClient, AINSError, AsyncAINSClient, Call, Retries, Try, error_for
from ains.identity import Identity

AGENT_ID = "agent_one"
NOW = "2026-01-01T00:00:00Z"


def task_json(task_id: str = "task_1", **extra) -> dict:
    return {
        "task_id": task_id,
        "client_id": "client_1",
        "task_type": "t",
        "capability_required": "one:v1",
        "input_data": {},
        "priority": 5,
        "max_retries": 3,
        "retry_policy": "exponential",
        "retry_jitter": False,
        "timeout_seconds": 300,
        "idempotency_key": None,
        "metadata": {},
        "min_trust_score": None,
        "status": "ACTIVE",
        "assigned_agent_id": AGENT_ID,
        "attempt": 1,
        "effective_priority": 5.0,
        "created_at": NOW,
        "updated_at": NOW,
        "available_at": NOW,
        "assigned_at": NOW,
        "started_at": NOW,
        "completed_at": None,
        "result_data": None,
        "error_message": None,
        "retry_count": 0,
        "next_retry_at": None,
        "last_error": None,
        "cancelled_at": None,
        "cancelled_by": None,
        "cancellation_reason": None,
    } | extra


class Server:
    """A scripted server: `answers[path]` is a list of answers given in turn (the last one repeats); an answer
    is a status, `(status, json)`, `(status, json, headers)`, or an exception to raise."""

    def __init__(self, answers: dict[str, list]) -> None:
        self.answers = answers
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        script = self.answers[f"{request.method} {request.url.path}"]
        answer = script.pop(0) if len(script) > 1 else script[0]
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, int):
            answer = (answer, {"detail": f"status {answer}"})
        status, body, *headers = answer
        return httpx.Response(status, json=body, headers=headers[0] if headers else None)

    def bodies(self, method_path: str) -> list:
        method, path = method_path.split(" ", 1)
        return [json.loads(r.content or b"null") for r in self.requests if (r.method, r.url.path) == (method, path)]

    def sync(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


@pytest.fixture
def no_sleep(monkeypatch):
    """Retries without waiting: the pauses the policy asked for are recorded instead."""
    pauses: list[float] = []
    really = asyncio.sleep

    async def asleep(seconds: float) -> None:
        pauses.append(seconds)
        await really(0)

    monkeypatch.setattr(ains.client.asyncio, "sleep", asleep)
    monkeypatch.setattr(ains.client.time, "sleep", pauses.append)
    return pauses


# -- submit_task -------------------------------------------------------------------------------------------------


def test_submit_task_sends_its_parameters_with_the_servers_defaults():
    server = Server({"POST /ains/tasks": [(201, task_json())]})
    with AINSClient("http://ains.test", "k", transport=server.sync()) as ains:
        assert ains.submit_task("report", "llm:v1").task_id == "task_1"
        ains.submit_task(
            task_type="report",
            capability_required="llm:v1",
            input_data={"topic": "tides"},
            priority=9,
            max_retries=0,
            retry_policy="fixed",
            retry_jitter=True,
            timeout_seconds=30,
            idempotency_key="k1",
            metadata={"team": "blue"},
            min_trust_score=0.5,
            depends_on=["task_0"],
            run_at=datetime(2027, 1, 2, 3, 4, 5),  # naive: taken as UTC
            client_id="client_2",
            future_field=True,  # anything else is sent as it is, as before
        )
        ains.submit_task(**{"task_type": "t", "capability_required": "c:v1", "delay_seconds": 60, "priority": None})
    plain, full, dict_style = server.bodies("POST /ains/tasks")
    assert plain == {
        "task_type": "report",
        "capability_required": "llm:v1",
        "priority": 5,
        "max_retries": 3,
        "retry_policy": "exponential",
        "retry_jitter": False,
        "timeout_seconds": 300,
    }
    assert full == {
        "task_type": "report",
        "capability_required": "llm:v1",
        "input_data": {"topic": "tides"},
        "priority": 9,
        "max_retries": 0,
        "retry_policy": "fixed",
        "retry_jitter": True,
        "timeout_seconds": 30,
        "idempotency_key": "k1",
        "metadata": {"team": "blue"},
        "min_trust_score": 0.5,
        "depends_on": ["task_0"],
        "run_at": "2027-01-02T03:04:05Z",
        "client_id": "client_2",
        "future_field": True,
    }
    assert dict_style["delay_seconds"] == 60 and "priority" not in dict_style  # None: the server's default


def test_submit_task_defaults_are_the_servers():
    from ains.tasks.schemas import TaskSubmit

    defaults = TaskSubmit(task_type="t", capability_required="c:v1").model_dump()
    server = Server({"POST /ains/tasks": [(201, task_json())]})
    with AINSClient("http://ains.test", transport=server.sync()) as ains:
        ains.submit_task("t", "c:v1")
    (sent,) = server.bodies("POST /ains/tasks")
    assert {key: defaults[key] for key in sent} == sent


def test_a_submission_is_repeated_after_a_connection_error_only_with_an_idempotency_key(no_sleep):
    refused = httpx.ConnectError("refused")
    server = Server({"POST /ains/tasks": [refused, (201, task_json())]})
    with AINSClient("http://ains.test", transport=server.sync()) as ains:
        with pytest.raises(httpx.ConnectError):
            ains.submit_task("t", "c:v1")
        server.answers["POST /ains/tasks"] = [refused, (201, task_json())]
        assert ains.submit_task("t", "c:v1", idempotency_key="once").task_id == "task_1"
    assert len(server.requests) == 3 and no_sleep == [0.2]


# -- one error, one retry policy ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "detail"),
    [
        (httpx.Response(404, json={"detail": "Task not found"}), "Task not found"),
        (httpx.Response(422, json={"detail": [{"loc": ["body", "priority"]}]}), [{"loc": ["body", "priority"]}]),
        (httpx.Response(502, text="Bad Gateway"), "Bad Gateway"),
        (httpx.Response(500, json=["not", "an", "object"]), '["not","an","object"]'),
    ],
)
def test_error_for_is_the_one_place_an_answer_becomes_an_error(response, detail):
    error = error_for(response)
    assert isinstance(error, AINSError) and error.status_code == response.status_code and error.detail == detail
    assert error.response is response and str(error) == f"{response.status_code}: {detail}"
    assert error_for(httpx.Response(200, json={})) is None


def test_the_default_policy():
    call, unsafe = Call("GET", "/x", idempotent=True), Call("POST", "/x")
    policy = Retries()
    assert [policy.pause(call, n, None) for n in range(4)] == [0.2, 0.4, 0.8, None]  # 3 retries, doubling
    assert policy.pause(unsafe, 0, None) is None  # not safe to repeat after a connection error
    limited = httpx.Response(429, headers={"Retry-After": "2"})
    assert policy.pause(unsafe, 0, limited) == 2.0  # refused before anything happened: any call
    assert policy.pause(call, 0, httpx.Response(429, headers={"Retry-After": "600"})) == 60.0
    assert policy.pause(call, 0, httpx.Response(429)) is None  # the cap on pending tasks: waiting won't help
    assert policy.pause(call, 0, httpx.Response(503)) is None  # 5xx: only with server_errors
    for answer in (200, 404, 409):
        assert policy.pause(call, 0, httpx.Response(answer)) is None


def test_the_runtimes_policy_is_the_clients_with_other_settings():
    call = Call("POST", "/ains/tasks/t/complete", idempotent=True)
    policy = ains.agent.THROUGH_OUTAGES
    assert isinstance(policy, Retries)
    assert [policy.pause(call, n, None) for n in range(8)] == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0]
    assert policy.pause(call, 50, httpx.Response(503)) == 5.0  # no limit on tries
    assert policy.pause(call, 0, httpx.Response(429)) == 0.2  # any 429 waited out
    assert policy.pause(call, 0, httpx.Response(429, headers={"Retry-After": "3"})) == 3.0
    assert policy.pause(Call("POST", "/ains/agents/a/tasks/claim"), 0, httpx.Response(503)) is None  # unsafe
    soon = dataclasses.replace(policy, until=time.monotonic() + 1)
    assert soon.pause(call, 0, None) == 0.2 and soon.pause(call, 5, None) is None  # no try after `until`
    assert ains.agent.ONCE.pause(call, 0, None) is None


async def test_with_options_shares_the_connection_and_tells_of_every_try(no_sleep):
    server = Server({"GET /ains/queue/metrics": [httpx.ReadTimeout("slow"), 503, (200, {})]})
    tries: list[Try] = []
    async with AsyncAINSClient("http://ains.test", transport=httpx.MockTransport(server)) as ains:
        patient = ains.with_options(retry=Retries(server_errors=True), on_try=tries.append, timeout=3.0)
        assert patient._http is ains._http and ains._on_try is None
        with pytest.raises(ValueError):  # {} is no QueueMetrics: the third try got an answer
            await patient.queue_metrics()
        ains.use_api_key("ains_agent_new")
    assert [t.server_trouble for t in tries] == ["ReadTimeout: slow", '503 {"detail":"status 503"}', None]
    assert [t.may_have_arrived for t in tries] == [True, True, True] and no_sleep == [0.2, 0.4]
    assert server.requests[0].extensions["timeout"]["read"] == 3.0
    assert ains._http.headers["Authorization"] == "Bearer ains_agent_new"


# -- the runtime on the client -----------------------------------------------------------------------------------


@pytest.fixture
def runtime(monkeypatch, tmp_path, no_sleep):
    """An agent whose client talks to a scripted server."""

    def make(answers: dict[str, list]) -> tuple[Agent, Server]:
        server = Server(answers)
        real = AsyncAINSClient

        def client(*args, **kwargs):
            return real(*args, transport=httpx.MockTransport(server), **kwargs)

        monkeypatch.setattr(ains.agent, "AsyncAINSClient", client)
        return Agent("http://ains.test", AGENT_ID, tmp_path / "agent.key", ["one:v1"], poll_wait_seconds=1), server

    return make


AGENT_JSON = {
    "agent_id": AGENT_ID,
    "display_name": None,
    "public_key": "00",
    "endpoint": None,
    "capabilities": ["one:v1"],
    "tags": [],
    "max_concurrency": 5,
    "status": "AVAILABLE",
    "trust_score": 0.5,
    "trust_level": "medium",
    "last_heartbeat_at": NOW,
    "created_at": NOW,
    "updated_at": NOW,
}


def registration() -> dict[str, list]:
    return {
        "GET /ains/agents/agent_one": [404],
        "POST /ains/agents": [(201, AGENT_JSON | {"api_key": "ains_agent_secret"})],
    }


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        (registration() | {"POST /ains/agents": [(403, {"detail": "bad signature"})]}, "could not register"),
        ({"GET /ains/agents/agent_one": [401]}, "could not look up"),
    ],
)
async def test_a_refusal_at_start_raises_an_ains_error(runtime, answers, message):
    agent, server = runtime(answers)
    with pytest.raises(RegistrationError) as refused:
        await agent.run_async(install_signal_handlers=False)
    error = refused.value
    assert isinstance(error, AINSError) and isinstance(error, RuntimeError)  # `except RuntimeError` still works
    assert str(error).startswith(f"{message} agent {AGENT_ID}: {error.status_code} {{")
    assert error.response is not None and error.detail == error.response.json()["detail"]


async def test_registration_goes_through_the_clients_endpoints(runtime, tmp_path):
    agent, server = runtime(
        registration()
        | {
            "POST /ains/agents/agent_one/heartbeat": [
                (200, {"acknowledged": True, "cancelled_task_ids": [], "next_heartbeat_in": 7.5})
            ]
        }
    )
    agent._prepare()
    assert await agent._connect() == 7.5
    await agent._client.aclose()
    identity = Identity.load(tmp_path / "agent.key")
    (registered,) = server.bodies("POST /ains/agents")
    assert registered == identity.registration(AGENT_ID, registered["timestamp"]) | {
        "capabilities": ["one:v1"],
        "max_concurrency": 5,
    }
    assert server.bodies("POST /ains/agents/agent_one/heartbeat") == [{}]
    assert server.requests[-1].headers["Authorization"] == "Bearer ains_agent_secret"


def context(**task) -> TaskContext:
    return TaskContext("task_1", 3, "one:v1", {}, task=task_json(attempt=3, **task))


async def test_a_report_is_sent_through_an_outage_by_the_clients_policy(runtime, no_sleep, caplog):
    caplog.set_level(logging.INFO, logger="ains.agent")
    agent, server = runtime(
        {"POST /ains/tasks/task_1/complete": [httpx.ConnectError("refused"), 503, 503, (200, task_json())]}
    )
    agent._prepare()
    sent: list[float] = []
    answer = await agent._report(context(), "complete", {"result_data": {"n": 1}}, until=None, sent=sent)
    await agent._client.aclose()
    assert answer == "ok"
    assert server.bodies("POST /ains/tasks/task_1/complete") == [{"result_data": {"n": 1}, "attempt": 3}] * 4
    assert no_sleep == [0.2, 0.4, 0.8] and len(sent) == 3  # the refused connection never reached the server
    lines = [r.getMessage() for r in caplog.records if r.name == "ains.agent"]
    assert lines == ["server unreachable; retrying until it is back", "server reachable again"]


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        ([409], "refused"),
        ([404], "refused"),
        ([(413, {"detail": "result_data too large"})], AINSError),
        ([503], "gave up"),
        ([httpx.ConnectError("refused")], "gave up"),
        ([(429, {"detail": "slow down"}, {"Retry-After": "30"})], "gave up"),
    ],
)
async def test_what_a_report_answers(runtime, answers, expected):
    agent, _ = runtime({"POST /ains/tasks/task_1/fail": answers})
    agent._prepare()
    until = time.monotonic() + 1  # passes before the second try
    answer = await agent._report(context(), "fail", {"error_message": "e", "retryable": False}, until=until)
    await agent._client.aclose()
    if expected is AINSError:
        assert isinstance(answer, AINSError) and answer.status_code == 413
        assert answer.detail == "result_data too large"
    else:
        assert answer == expected


async def test_a_refused_result_fails_the_attempt_with_the_servers_reason(runtime):
    agent, server = runtime(
        {
            "POST /ains/tasks/task_1/complete": [(413, {"detail": "result_data too large"})],
            "POST /ains/tasks/task_1/fail": [(200, task_json(status="FAILED"))],
        }
    )
    agent._prepare()

    @agent.handler("one:v1")
    async def big(input_data):
        return {"big": True}

    await agent._execute(context(), ains.agent._Running(context()), big)
    await agent._client.aclose()
    assert server.bodies("POST /ains/tasks/task_1/fail") == [
        {
            "error_message": "the server refused the result (413): result_data too large",
            "attempt": 3,
            "retryable": False,
        }
    ]


async def test_heartbeats_and_claims_go_through_the_client(runtime):
    agent, server = runtime(
        {
            "POST /ains/agents/agent_one/heartbeat": [
                503,
                (200, {"acknowledged": True, "cancelled_task_ids": ["task_9"], "next_heartbeat_in": 30}),
            ],
            "POST /ains/agents/agent_one/tasks/claim": [(200, {"tasks": [task_json(status="ASSIGNED")]})],
        }
    )
    agent._prepare()
    assert await agent._beat(2.5) == ["task_9"]
    claim = agent._client.with_options(retry=ains.agent.ONCE).claim_tasks(AGENT_ID, max_tasks=2, wait_seconds=1)
    assert [t.task_id for t in (await claim).tasks] == ["task_1"]
    await agent._client.aclose()
    assert server.bodies("POST /ains/agents/agent_one/heartbeat") == [{"wait_seconds": 2.5}] * 2
    assert server.bodies("POST /ains/agents/agent_one/tasks/claim") == [{"max_tasks": 2, "wait_seconds": 1}]


async def test_the_claim_loop_sends_what_it_sent_before(runtime):
    agent, server = runtime({"POST /ains/agents/agent_one/tasks/claim": [(200, {"tasks": []})]})
    agent._prepare()
    agent.max_concurrency = 3
    loop = asyncio.create_task(agent._claim_loop())
    while not server.requests:
        await asyncio.sleep(0.01)
    agent._stopping.set()
    await asyncio.wait_for(loop, 5)
    await agent._client.aclose()
    assert server.bodies("POST /ains/agents/agent_one/tasks/claim")[0] == {"max_tasks": 3, "wait_seconds": 1}


# -- types ---------------------------------------------------------------------------------------------------------


def test_awaited_calls_type_check(tmp_path):
    """mypy sees the async client's endpoints as coroutines answering the server's models."""
    source = tmp_path / "use_sdk.py"
    source.write_text(
        "from ains.client import AINSClient, AsyncAINSClient\n"
        "async def use(a: AsyncAINSClient, s: AINSClient) -> None:\n"
        "    task = await a.submit_task('t', 'c:v1', priority=3)\n"
        "    reveal_type(task)\n"
        "    reveal_type(s.get_task('x'))\n"
        "    reveal_type(a.heartbeat)\n"
        "    await a.get_task(1)\n"
    )
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--follow-imports=silent", str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = run.stdout
    assert 'Revealed type is "ains.tasks.schemas.TaskOut"' in out.splitlines()[0]
    assert 'Revealed type is "ains.tasks.schemas.TaskOut"' in out.splitlines()[1]
    assert "Coroutine[Any, Any, ains.agents.schemas.HeartbeatResponse]" in out
    assert 'Argument 1 has incompatible type "int"; expected "str"' in out
    assert "Found 1 error" in out, out


def test_call_signatures_are_the_endpoints():
    import inspect

    with AINSClient("http://ains.test") as ains:
        parameters = inspect.signature(ains.submit_task).parameters
        assert list(parameters)[:3] == ["task_type", "capability_required", "input_data"]
        assert parameters["priority"].default == 5 and parameters["timeout_seconds"].default == 300
        assert ains.submit_task.__name__ == "submit_task" and "server's" in (ains.submit_task.__doc__ or "")
    assert UTC  # times in bodies are UTC (see the run_at case above)
