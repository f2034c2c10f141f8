"""The operator CLI through typer's CliRunner against a real server process."""

import json

from typer.testing import CliRunner

from ains.cli import app
from ains.client import AINSClient
from tests.helpers import ADMIN_KEY

runner = CliRunner()


def ains(*args, url, key):
    result = runner.invoke(app, [*args, "--url", url, *(["--api-key", key] if key else [])])
    return result


def test_keys_through_the_api(server, unique):
    client_id = unique("client")
    created = ains("keys", "create", "--client-id", client_id, "--name", "cli", "--json", url=server.url, key=ADMIN_KEY)
    assert created.exit_code == 0, created.output
    key = json.loads(created.output)
    listed = ains("keys", "list", "--json", url=server.url, key=ADMIN_KEY)
    assert key["key_id"] in {k["key_id"] for k in json.loads(listed.output)}
    assert ains("keys", "list", url=server.url, key=ADMIN_KEY).exit_code == 0  # the table
    revoked = ains("keys", "revoke", key["key_id"], "--json", url=server.url, key=ADMIN_KEY)
    assert json.loads(revoked.output) == {"key_id": key["key_id"], "revoked": True}
    denied = ains("keys", "list", url=server.url, key=key["api_key"])
    assert denied.exit_code == 1 and "401" in denied.output


def test_tasks_submit_get_list_cancel(server, client_key, unique):
    _, key = client_key
    capability = f"{unique('cli')}:v1"
    submitted = ains(
        "tasks",
        "submit",
        "--capability",
        capability,
        "--input",
        '{"x": 1}',
        "--priority",
        "8",
        "--json",
        url=server.url,
        key=key,
    )
    assert submitted.exit_code == 0, submitted.output
    task = json.loads(submitted.output)
    assert task["priority"] == 8 and task["input_data"] == {"x": 1}
    got = json.loads(ains("tasks", "get", task["task_id"], "--json", url=server.url, key=key).output)
    assert got["task_id"] == task["task_id"]
    many = json.loads(
        ains("tasks", "submit", "--capability", capability, "--count", "150", "--json", url=server.url, key=key).output
    )
    assert many["submitted"] == 150 and len(set(many["task_ids"])) == 150
    listed = json.loads(ains("tasks", "list", "--limit", "200", "--json", url=server.url, key=key).output)
    assert len(listed) == 151
    assert ains("tasks", "list", "--limit", "3", url=server.url, key=key).exit_code == 0
    cancelled = json.loads(ains("tasks", "cancel", task["task_id"], "--json", url=server.url, key=key).output)
    assert cancelled["status"] == "CANCELLED"
    again = ains("tasks", "cancel", task["task_id"], url=server.url, key=key)
    assert again.exit_code == 1 and "409" in again.output
    bad = ains("tasks", "submit", "--capability", capability, "--input", "not json", url=server.url, key=key)
    assert bad.exit_code != 0


def test_tasks_watch_until_final(server, client_key, unique):
    _, key = client_key
    with AINSClient(server.url, key) as client:
        ids = [client.submit_task(task_type="w", capability_required=f"{unique('w')}:v1").task_id for _ in range(3)]
        for task_id in ids:
            client.cancel_task(task_id)
    watched = ains("tasks", "watch", *ids, "--interval", "0.1", "--json", url=server.url, key=key)
    assert watched.exit_code == 0, watched.output
    assert json.loads(watched.output)["summary"] == {"CANCELLED": 3}
    pending = ains("tasks", "submit", "--capability", f"{unique('w')}:v1", "--json", url=server.url, key=key)
    open_id = json.loads(pending.output)["task_id"]
    timed_out = ains("tasks", "watch", open_id, "--timeout", "0.3", "--interval", "0.1", url=server.url, key=key)
    assert timed_out.exit_code == 2


def test_agents_list_and_leaderboard(server):
    listed = ains("agents", "list", "--json", url=server.url, key=None)
    assert listed.exit_code == 0 and isinstance(json.loads(listed.output), list)
    board = ains("agents", "leaderboard", "--json", url=server.url, key=None)
    assert board.exit_code == 0 and isinstance(json.loads(board.output), list)
    assert ains("agents", "leaderboard", url=server.url, key=None).exit_code == 0
