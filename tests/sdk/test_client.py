"""The SDK against a real server process: every method, pagination, errors, retries."""

import httpx
import pytest

from ains.client import AINSClient, AINSError, AsyncAINSClient
from ains.identity import Identity
from tests.webhooks.receiver import Receiver


def body(capability="sdk:v1", **extra):
    return {"task_type": "sdk", "capability_required": capability, "input_data": {"n": 1}, **extra}


def test_tasks_round_trip(server, client_key):
    client_id, key = client_key
    with AINSClient(server.url, key) as ains:
        task = ains.submit_task(**body(priority=7))
        assert task.client_id == client_id and task.status == "PENDING" and task.priority == 7
        assert ains.get_task(task.task_id).task_id == task.task_id
        assert ains.set_priority(task.task_id, 9).priority == 9
        assert ains.task_attempts(task.task_id).attempts == []
        metrics = ains.queue_metrics()
        assert metrics.tasks_by_priority == {"9": 1}
        cancelled = ains.cancel_task(task.task_id, "no longer needed")
        assert cancelled.status == "CANCELLED" and cancelled.cancelled_by == client_id
        assert ains.wait_for_task(task.task_id, timeout=5).status == "CANCELLED"
        again = ains.submit_task(**body(idempotency_key="k1"))
        assert ains.submit_task(**body(idempotency_key="k1")).task_id == again.task_id


def test_batch_and_pagination(server, client_key):
    _, key = client_key
    with AINSClient(server.url, key) as ains:
        result = ains.submit_batch([body(), body(priority=0), body(), body(), body(), body()])
        assert len(result.submitted) == 5 and [f.index for f in result.failed] == [1]
        atomic = ains.submit_batch([body(), body(priority=0)], atomic=True)
        assert atomic.submitted == []
        listed = list(ains.list_tasks(limit=2))
        assert len(listed) == 5 and len({t.task_id for t in listed}) == 5
        assert [t.task_id for t in ains.list_tasks(limit=2, status="CANCELLED")] == []


def test_wait_for_task_times_out(server, client_key):
    _, key = client_key
    with AINSClient(server.url, key) as ains:
        task = ains.submit_task(**body(capability="nobody:v1"))
        with pytest.raises(TimeoutError):
            ains.wait_for_task(task.task_id, timeout=0.5, poll_interval=0.1)


def test_errors_carry_status_and_detail(server, client_key):
    _, key = client_key
    with AINSClient(server.url, key) as ains:
        with pytest.raises(AINSError) as missing:
            ains.get_task("task_nope")
        assert missing.value.status_code == 404 and "not found" in missing.value.detail
        with pytest.raises(AINSError) as invalid:
            ains.submit_task(**body(priority=11))
        assert invalid.value.status_code == 422 and invalid.value.detail[0]["loc"][-1] == "priority"
        with pytest.raises(AINSError) as forbidden:
            ains.list_keys()
        assert forbidden.value.status_code == 403
    with AINSClient(server.url, "ains_client_wrong") as stranger, pytest.raises(AINSError) as unauthorized:
        stranger.queue_metrics()
    assert unauthorized.value.status_code == 401


def test_agents_leaderboard_and_keys(server, admin, unique):
    client_id = unique("client")
    created = admin.create_key(client_id, "temporary")
    assert any(k.key_id == created.key_id for k in admin.list_keys(client_id=client_id).api_keys)
    admin.revoke_key(created.key_id)
    assert admin.list_keys(client_id=client_id).api_keys == []
    with AINSClient(server.url, created.api_key) as revoked, pytest.raises(AINSError) as error:
        revoked.queue_metrics()
    assert error.value.status_code == 401
    assert isinstance(admin.leaderboard(limit=5).leaderboard, list)
    assert admin.list_agents(limit=5).limit == 5
    with pytest.raises(AINSError):
        admin.get_agent("agent_nobody")


def test_webhook_management(server, client_key):
    client_id, key = client_key
    receiver = Receiver()
    try:
        with AINSClient(server.url, key) as ains:
            hook = ains.create_webhook(client_id, receiver.url, ["task.created"])
            assert hook.secret and hook.active
            assert [h.webhook_id for h in ains.list_webhooks(client_id).webhooks] == [hook.webhook_id]
            ains.submit_task(**body())
            deliveries = []
            for _ in range(50):
                deliveries = ains.webhook_deliveries(hook.webhook_id).deliveries
                if deliveries and deliveries[0].status == "succeeded":
                    break
                import time

                time.sleep(0.1)
            assert deliveries[0].status == "succeeded" and deliveries[0].event == "task.created"
            assert ains.update_webhook(hook.webhook_id, active=False).active is False
            ains.delete_webhook(hook.webhook_id)
            assert ains.list_webhooks(client_id).webhooks == []
    finally:
        receiver.close()


class FlakyTransport(httpx.HTTPTransport):
    """Refuses the first `failures` connections, then talks to the real server."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.calls = 0

    def handle_request(self, request):
        self.calls += 1
        if self.calls <= self.failures:
            raise httpx.ConnectError("connection refused", request=request)
        return super().handle_request(request)


def test_connection_errors_are_retried_only_when_safe(server, client_key):
    _, key = client_key
    flaky = FlakyTransport(failures=2)
    with AINSClient(server.url, key, transport=flaky) as ains:
        assert ains.queue_metrics() is not None  # a read: retried until it went through
        assert flaky.calls == 3
    once = FlakyTransport(failures=1)
    with AINSClient(server.url, key, transport=once) as ains, pytest.raises(httpx.ConnectError):
        ains.submit_task(**body())  # no idempotency key: not repeated, the error is the caller's
    assert once.calls == 1


async def test_async_client(server, client_key):
    client_id, key = client_key
    async with AsyncAINSClient(server.url, key) as ains:
        task = await ains.submit_task(**body())
        assert (await ains.get_task(task.task_id)).client_id == client_id
        await ains.submit_batch([body(), body()])
        assert len([t async for t in ains.list_tasks(limit=1)]) == 3
        with pytest.raises(AINSError) as missing:
            await ains.get_task("task_nope")
        assert missing.value.status_code == 404
        assert (await ains.cancel_task(task.task_id)).status == "CANCELLED"
        assert (await ains.wait_for_task(task.task_id, timeout=5)).status == "CANCELLED"


def test_agent_side_calls(server, client_key, unique):
    _, key = client_key
    capability = unique("cap") + ":v1"
    with AINSClient(server.url) as anonymous:
        registered = anonymous.register_agent(unique("agent"), Identity.generate(), [capability], max_concurrency=10)
    agent_id = registered.agent_id
    with AINSClient(server.url, key) as ains, AINSClient(server.url, registered.api_key) as agent:
        first, second, third, fourth = (ains.submit_task(**body(capability)) for _ in range(4))
        assert agent.heartbeat(agent_id).cancelled_task_ids == []
        (claimed,) = agent.claim_tasks(agent_id).tasks
        assert claimed.task_id == first.task_id and claimed.status == "ASSIGNED"
        assert agent.start_task(first.task_id, attempt=claimed.attempt).status == "ACTIVE"
        assert agent.complete_task(first.task_id, {"ok": 1}, attempt=claimed.attempt).result_data == {"ok": 1}
        started = agent.claim_tasks(agent_id, max_tasks=3, start=True).tasks
        assert [t.task_id for t in started] == [second.task_id, third.task_id, fourth.task_id]
        assert {t.status for t in started} == {"ACTIVE"}
        failed = agent.fail_task(second.task_id, "no", attempt=started[0].attempt, retryable=False)
        assert failed.status == "FAILED" and failed.error_message == "no"
        done = agent.complete_tasks([{"task_id": third.task_id, "attempt": started[1].attempt}, {"task_id": "task_x"}])
        assert [(r.status, r.status_code) for r in done.results] == [("COMPLETED", None), (None, 404)]
        gone = agent.fail_tasks([{"task_id": fourth.task_id, "error_message": "e", "retryable": False}])
        assert gone.results[0].status == "FAILED"
        # The same report again is answered with the task (its first answer may have been lost) …
        assert agent.complete_task(first.task_id, {"ok": 1}, attempt=claimed.attempt).status == "COMPLETED"
        # … a different one for the finished attempt is refused.
        with pytest.raises(AINSError) as stale:
            agent.fail_task(first.task_id, "late", attempt=claimed.attempt)
        assert stale.value.status_code == 409
