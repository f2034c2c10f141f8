"""`ains webhooks redeliver` against a real server and a real receiver: a delivery that ended failed while the
receiver was down is queued again by the command and then reaches the receiver, with the same event_id and the
same body; errors are one line."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from tests.helpers import ADMIN_KEY, ServerProcess, bearer
from tests.test_cli import one_line_error, run
from tests.webhooks.receiver import Answer, Receiver

SETTINGS = {
    "AINS_WEBHOOK_ALLOW_PRIVATE": "true",
    "AINS_WEBHOOK_MAX_ATTEMPTS": "1",  # the first failure is final
    "AINS_WEBHOOK_DISPATCH_INTERVAL_SECONDS": "0.2",
}


def _deliveries(server: ServerProcess, webhook_id: str, key: str) -> list[dict]:
    response = httpx.get(f"{server.url}/ains/webhooks/{webhook_id}/deliveries", headers=bearer(key))
    assert response.status_code == 200, response.text
    return response.json()["deliveries"]


def _wait_for_status(server: ServerProcess, webhook_id: str, key: str, status: str) -> dict:
    deadline = time.monotonic() + 20
    while True:
        rows = _deliveries(server, webhook_id, key)
        if len(rows) == 1 and rows[0]["status"] == status:
            return rows[0]
        assert time.monotonic() < deadline, f"the delivery never became {status}: {rows}"
        time.sleep(0.1)


@pytest.mark.slow
def test_webhooks_redeliver_requeues_a_failed_delivery(tmp_path):
    up = threading.Event()
    receiver = Receiver(by_payload=lambda _payload: Answer(200) if up.is_set() else Answer(503))
    server = ServerProcess(SETTINGS | {"AINS_DATA_DIR": str(tmp_path / "data")})
    admin = {"AINS_URL": server.url, "AINS_API_KEY": ADMIN_KEY}
    try:
        key = json.loads(run("keys", "create", "--client-id", "ops", "--name", "cli", "--json", env=admin).stdout)
        owner = {"AINS_URL": server.url, "AINS_API_KEY": key["api_key"]}
        hook = httpx.post(
            f"{server.url}/ains/clients/ops/webhooks",
            json={"url": receiver.url, "events": ["task.created"]},
            headers=bearer(key["api_key"]),
        ).json()
        task = json.loads(run("tasks", "submit", "--capability", "ops:v1", "--json", env=owner).stdout)

        # The receiver is down: the only attempt fails, and the delivery is final.
        failed = _wait_for_status(server, hook["webhook_id"], key["api_key"], "failed")
        assert failed["attempts"] == 1 and failed["response_code"] == 503 and failed["task_id"] == task["task_id"]
        assert len(receiver.requests) == 1 and receiver.answered == []
        first = receiver.requests[0]

        up.set()
        said = run("webhooks", "redeliver", hook["webhook_id"], failed["delivery_id"], env=owner).stdout
        assert said.strip() == (
            f"delivery {failed['delivery_id']} queued to be sent again (task.created of task {task['task_id']})"
        )
        # Re-queued: a new series of attempts, then delivered (the same event, the same bytes).
        done = _wait_for_status(server, hook["webhook_id"], key["api_key"], "succeeded")
        assert done["delivery_id"] == failed["delivery_id"] and done["response_code"] == 200
        assert len(receiver.answered) == 1
        again = receiver.answered[0]
        assert again.payload["event_id"] == first.payload["event_id"] and again.body == first.body
        assert again.headers["webhook-id"] == first.headers["webhook-id"]

        # --json: the delivery as the server answered, re-queued (pending, attempts from zero).
        queued = json.loads(
            run("webhooks", "redeliver", hook["webhook_id"], failed["delivery_id"], "--json", env=admin).stdout
        )
        assert queued["delivery_id"] == failed["delivery_id"] and queued["status"] == "pending"
        assert queued["attempts"] == 0 and queued["event_id"] == first.payload["event_id"]
        _wait_for_status(server, hook["webhook_id"], key["api_key"], "succeeded")
        assert len(receiver.answered) == 2
        audit = json.loads(run("audit", "list", "--action", "webhook.redeliver", "--json", env=admin).stdout)
        assert [entry["target_id"] for entry in audit] == [hook["webhook_id"]] * 2

        # Errors: one line, naming what is wrong; another client's webhook is not found.
        line = one_line_error(run("webhooks", "redeliver", hook["webhook_id"], "dlv_nope", env=owner, check=False))
        assert line == "error 404: Delivery dlv_nope not found"
        other = json.loads(run("keys", "create", "--client-id", "other", "--name", "cli", "--json", env=admin).stdout)
        stranger = {"AINS_URL": server.url, "AINS_API_KEY": other["api_key"]}
        line = one_line_error(
            run("webhooks", "redeliver", hook["webhook_id"], failed["delivery_id"], env=stranger, check=False)
        )
        assert line.startswith("error 404")
    finally:
        server.stop()
        receiver.close()
