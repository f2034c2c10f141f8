"""The `ains` command: keygen, sign, db upgrade and keys create, run as a user would."""

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

import ains
from ains.auth.signatures import registration_message

# The `ains` package under test, for a subprocess started outside the project's directory.
SOURCE_TREE = Path(ains.__file__).resolve().parents[1]


def ains(*args, env=None, check=True):
    result = subprocess.run(
        [sys.executable, "-m", "ains", *args], capture_output=True, text=True, env=os.environ | (env or {}), timeout=60
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_keygen_writes_a_private_identity_and_sign_uses_it(tmp_path):
    path = tmp_path / "agent.json"
    out = json.loads(ains("keygen", str(path)).stdout)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ains("keygen", str(path), check=False).returncode != 0
    fields = json.loads(ains("sign", "--key-file", str(path), "--agent-id", "agent_1").stdout)
    assert fields["public_key"] == out["public_key"]
    message = registration_message("agent_1", fields["public_key"], fields["timestamp"])
    Ed25519PublicKey.from_public_bytes(bytes.fromhex(fields["public_key"])).verify(
        bytes.fromhex(fields["signature"]), message
    )


def test_db_upgrade_and_keys_create_on_a_fresh_data_dir(tmp_path):
    env = {"AINS_DATA_DIR": str(tmp_path / "data")}
    # No database here yet: the commands name the one they would use and refuse to make it unasked.
    for command in (("db", "upgrade"), ("keys", "create", "--client-id", "client_1", "--name", "cli")):
        refused = ains(*command, env=env, check=False)
        assert refused.returncode == 1 and refused.stdout == ""
        assert refused.stderr.count("\n") == 1 and "--create" in refused.stderr
        assert str(tmp_path / "data" / "ains.db") in refused.stderr
        assert not (tmp_path / "data" / "ains.db").exists()
    upgraded = ains("db", "upgrade", "--create", env=env)
    assert (tmp_path / "data" / "ains.db").exists()
    assert str(tmp_path / "data" / "ains.db") in upgraded.stdout
    created = json.loads(ains("keys", "create", "--client-id", "client_1", "--name", "cli", "--json", env=env).stdout)
    assert created["client_id"] == "client_1" and created["api_key"].startswith("ains_client_")
    assert (
        f"database: sqlite+aiosqlite:///{tmp_path / 'data' / 'ains.db'}"
        in ains("keys", "create", "--client-id", "client_2", "--name", "cli", env=env).stderr
    )
    bad = ains("keys", "create", "--client-id", "x", "--name", "cli", env=env, check=False)
    assert bad.returncode != 0


@pytest.mark.slow
def test_keys_created_by_the_cli_work_against_the_server(tmp_path):
    import httpx

    from tests.helpers import ServerProcess, task_body

    env = {"AINS_DATA_DIR": str(tmp_path / "data")}
    args = ("keys", "create", "--client-id", "client_1", "--name", "cli", "--create", "--json")
    created = json.loads(ains(*args, env=env).stdout)
    server = ServerProcess(env)
    try:
        response = httpx.post(
            f"{server.url}/ains/tasks", json=task_body(), headers={"Authorization": f"Bearer {created['api_key']}"}
        )
        assert response.status_code == 201 and response.json()["client_id"] == "client_1"
    finally:
        server.stop()


def test_a_first_start_on_a_new_data_dir_logs_no_errors(tmp_path):
    """The duties open their connections at once on a brand-new SQLite file; none may fail to set it up."""
    import time

    from tests.helpers import ServerProcess

    server = ServerProcess({"AINS_DATA_DIR": str(tmp_path / "data"), "AINS_LOG_LEVEL": "INFO"})
    try:
        time.sleep(1.5)  # every duty has made its first pass
        output = server.output()
    finally:
        server.stop()
    assert "background duties started" in output
    assert '"level": "error"' not in output, output[-3000:]


class Ran:
    def __init__(self, result) -> None:
        self.returncode = result.exit_code
        self.stdout = result.stdout
        self.stderr = result.stderr


def run(*args, env=None, check=True) -> Ran:
    """`ains` in this process (typer's runner): as a user would run it, without a new interpreter per command."""
    from typer.testing import CliRunner

    from ains.cli import app

    ran = Ran(CliRunner().invoke(app, list(args), env=env))
    if check:
        assert ran.returncode == 0, ran.stderr
    return ran


def one_line_error(result) -> str:
    """A failed command: non-zero, nothing on stdout, exactly one line on stderr and no traceback."""
    assert result.returncode != 0
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_server_that_is_down_is_one_line(tmp_path):
    from tests.helpers import free_port

    url = f"http://127.0.0.1:{free_port()}"
    for command in (("tasks", "list"), ("queue", "stats", "--json"), ("agents", "show", "agent_1")):
        line = one_line_error(run(*command, "--url", url, env={"AINS_API_KEY": "k"}, check=False))
        assert line.startswith("error: cannot reach AINS at " + url)


def test_agent_run_of_a_module_that_is_not_there_is_one_line(tmp_path):
    line = one_line_error(ains("agent", "run", "nosuchmod:agent", check=False))
    assert "nosuchmod" in line
    # A usage error too: one line, exit code 2.
    usage = ains("tasks", "submit", "--capability", "a:v1", "--priority", "11", check=False)
    assert usage.returncode == 2
    assert one_line_error(usage).startswith("error: Invalid value for '--priority'")
    line = one_line_error(run("agent", "run", "json:dumps", check=False))
    assert "not an ains.agent.Agent" in line


def test_keygen_defaults_to_the_ignored_data_directory(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "ains", "keygen"], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["path"] == os.path.join(".ains", "agent.key")
    assert stat.S_IMODE((tmp_path / ".ains" / "agent.key").stat().st_mode) == 0o600


@pytest.mark.slow
def test_operator_commands_against_a_server(tmp_path):
    import httpx

    from ains.identity import Identity
    from tests.helpers import ADMIN_KEY, ServerProcess

    server = ServerProcess({"AINS_DATA_DIR": str(tmp_path / "data"), "AINS_WEBHOOK_ALLOW_PRIVATE": "true"})
    admin = {"AINS_URL": server.url, "AINS_API_KEY": ADMIN_KEY}
    try:
        key = json.loads(run("keys", "create", "--client-id", "ops", "--name", "cli", "--json", env=admin).stdout)
        client = {"AINS_URL": server.url, "AINS_API_KEY": key["api_key"]}
        submitted = run("tasks", "submit", "--capability", "ops:v1", "--input", '{"text": "hi"}', env=client)
        assert submitted.stdout.startswith("submitted task task_") and "None" not in submitted.stdout
        task_id = submitted.stdout.split()[2]

        # --json is one JSON document on stdout, whatever the command.
        stats = json.loads(run("queue", "stats", "--json", env=client).stdout)
        assert stats["queue_depth_by_priority"] == {"5": 1}
        assert "open tasks by priority" in run("queue", "stats", env=client).stdout
        moved = json.loads(run("tasks", "priority", task_id, "9", "--json", env=client).stdout)
        assert moved["priority"] == 9
        assert f"task {task_id} now has priority 9" in run("tasks", "priority", task_id, "9", env=client).stdout
        listed = run("tasks", "list", env=client | {"COLUMNS": "60"}).stdout
        assert task_id in listed  # whole, even in a narrow terminal
        assert re.search(r"(just now|ago) \(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\)", listed)  # relative, absolute

        # An agent does the task; its attempts, trust and chain are visible.
        identity = Identity.generate()
        body = identity.registration("ops_agent") | {"capabilities": ["ops:v1"]}
        agent_key = httpx.post(f"{server.url}/ains/agents", json=body).json()["api_key"]
        headers = {"Authorization": f"Bearer {agent_key}"}
        claimed = httpx.post(
            f"{server.url}/ains/agents/ops_agent/tasks/claim", json={"start": True}, headers=headers
        ).json()["tasks"]
        assert [task["task_id"] for task in claimed] == [task_id]
        httpx.post(f"{server.url}/ains/tasks/{task_id}/complete", json={"attempt": 1}, headers=headers)
        attempts = json.loads(run("tasks", "attempts", task_id, "--json", env=client).stdout)
        assert [(a["agent_id"], a["outcome"]) for a in attempts] == [("ops_agent", "completed")]
        shown = json.loads(run("agents", "show", "ops_agent", "--json", env=client).stdout)
        assert shown["trust_chain"]["valid"] and shown["metrics"]["total_tasks_completed"] == 1
        assert "verified" in run("agents", "show", "ops_agent", env=client).stdout
        adjusted = run("trust", "adjust", "ops_agent", "0.1", "--reason", "reviewed", env=admin).stdout
        assert adjusted.startswith("trust of ops_agent moved")
        history = json.loads(run("trust", "history", "ops_agent", "--json", env=client).stdout)
        assert [r["event_type"] for r in history] == ["manual_adjustment", "task_completed"]
        assert "verified" in run("trust", "verify", "ops_agent", env=client).stdout
        audit = json.loads(run("audit", "list", "--action", "trust.adjust", "--json", env=admin).stdout)
        assert [entry["target_id"] for entry in audit] == ["ops_agent"]

        # Webhooks: a receiver that is down, so the delivery fails; then it is sent again.
        hook = httpx.post(
            f"{server.url}/ains/clients/ops/webhooks",
            json={"url": "http://127.0.0.1:9/down", "events": ["task.cancelled"]},
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        ).json()
        hooks = json.loads(run("webhooks", "list", "--client-id", "ops", "--json", env=admin).stdout)
        assert [h["webhook_id"] for h in hooks] == [hook["webhook_id"]]
        other = json.loads(run("tasks", "submit", "--capability", "ops:v1", "--json", env=client).stdout)
        assert run("tasks", "cancel", other["task_id"], env=client).stdout.startswith("cancelled task")
        deliveries = json.loads(run("webhooks", "deliveries", hook["webhook_id"], "--json", env=admin).stdout)
        assert [d["event"] for d in deliveries] == ["task.cancelled"]

        # Errors are one line naming what is wrong.
        line = one_line_error(run("tasks", "submit", "--capability", "no version", env=client, check=False))
        assert line.startswith("error 422: capability_required:")
        line = one_line_error(run("audit", "list", env=client, check=False))
        assert line.startswith("error 403")
        line = one_line_error(run("tasks", "get", "task_nope", env=client, check=False))
        assert line == "error 404: Task task_nope not found"
        timed_out = run("tasks", "watch", other["task_id"], task_id, "--timeout", "0", env=client, check=False)
        assert timed_out.returncode == 0  # both final already
        open_task = json.loads(run("tasks", "submit", "--capability", "ops:v1", "--json", env=client).stdout)
        waited = run("tasks", "watch", open_task["task_id"], "--timeout", "0.2", "--interval", "0.1", env=client,
                      check=False)  # fmt: skip
        assert waited.returncode == 2 and "timed out after 0.2 s" in waited.stderr
    finally:
        server.stop()


@pytest.mark.slow
def test_workflows_and_schedules_commands(tmp_path):
    import httpx

    from tests.helpers import ADMIN_KEY, ServerProcess

    server = ServerProcess({"AINS_DATA_DIR": str(tmp_path / "data")})
    env = {"AINS_URL": server.url, "AINS_API_KEY": ADMIN_KEY}
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    try:
        assert "no workflows yet" in run("workflows", "list", env=env).stdout
        step = {"task_type": "t", "capability_required": "wf:v1"}
        steps = [step | {"key": "a"}, step | {"key": "b", "depends_on": ["a"]}]
        body = {"client_id": "ops", "name": "pair", "steps": steps}
        workflow = httpx.post(f"{server.url}/ains/workflows", json=body, headers=headers).json()
        listed = json.loads(run("workflows", "list", "--json", env=env).stdout)
        assert [w["workflow_id"] for w in listed] == [workflow["workflow_id"]]
        assert "0 completed, 0 failed, 0 cancelled, of 2" in run("workflows", "list", env=env).stdout
        shown = run("workflows", "show", workflow["workflow_id"], "--json", env=env).stdout
        assert workflow["steps"][1]["task_id"] in shown
        cancelled = run("workflows", "cancel", workflow["workflow_id"], env=env).stdout
        assert cancelled.startswith(f"workflow {workflow['workflow_id']} is ") and "cancelled" in cancelled

        schedule = httpx.post(
            f"{server.url}/ains/schedules",
            json={"client_id": "ops", "name": "hourly", "cron": "0 * * * *", "task": step},
            headers=headers,
        ).json()
        assert "hourly" in run("schedules", "list", env=env).stdout
        run("schedules", "pause", schedule["schedule_id"], env=env)
        paused = json.loads(run("schedules", "show", schedule["schedule_id"], "--json", env=env).stdout)
        assert paused["active"] is False
        assert "resumed" in run("schedules", "resume", schedule["schedule_id"], env=env).stdout
        line = one_line_error(run("workflows", "cancel", "wf_nope", env=env, check=False))
        assert line.startswith("error 404")
        assert "404" in one_line_error(run("workflows", "show", "wf_nope", env=env, check=False))
    finally:
        server.stop()


@pytest.mark.parametrize("command", ["serve", "worker"])
@pytest.mark.parametrize("what", ["missing", "a file", "a directory writes to fail in"])
def test_a_metrics_directory_that_cannot_be_written_to_is_one_line(tmp_path, command, what):
    named = tmp_path / "metrics"
    if what == "a file":
        named.write_text("")
    elif what == "a directory writes to fail in":
        # Its permission bits allow writing, to root at least (os.access says yes), but the file system does not.
        named = Path("/sys")
        if not os.access(named, os.W_OK):
            pytest.skip("only root sees /sys as writable by its permissions")
    result = ains(command, env={"PROMETHEUS_MULTIPROC_DIR": str(named), "AINS_DATA_DIR": str(tmp_path)}, check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: PROMETHEUS_MULTIPROC_DIR={named} is not a directory this process can write to; the processes "
        "that share /metrics keep their counters there. Create it, or unset it."
    )


def test_only_the_commands_that_serve_metrics_write_to_the_metrics_directory(tmp_path):
    """prometheus_client writes a process's files wherever the variable points, even empty (the working
    directory); a command that serves no metrics writes none."""
    shared = tmp_path / "metrics"
    shared.mkdir()
    data = {"AINS_DATA_DIR": str(tmp_path / "data")}
    for value in (str(shared), ""):
        result = subprocess.run(
            [sys.executable, "-m", "ains", "db", "upgrade", "--create"],
            capture_output=True,
            text=True,
            # cwd is elsewhere, so the source tree under test is named: a relative PYTHONPATH would miss it.
            env=os.environ | data | {"PROMETHEUS_MULTIPROC_DIR": value, "PYTHONPATH": str(SOURCE_TREE)},
            cwd=tmp_path,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
    assert list(shared.iterdir()) == []
    assert list(tmp_path.glob("*.db")) == []
