"""`ains workflows submit|show` and `ains schedules list|create|pause|delete` against a real server."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from ains.client import AINSClient
from ains.workflows.cli import register
from tests.helpers import ADMIN_KEY, ServerProcess

WORKFLOW_YAML = """
name: tide report
steps:
  - {key: plan, task_type: plan, capability_required: "llm:v1"}
  - {key: research-1, task_type: research, capability_required: "web:v1", depends_on: [plan]}
  - {key: research-2, task_type: research, capability_required: "web:v1", depends_on: [plan]}
  - key: write
    task_type: write
    capability_required: "llm:v1"
    depends_on: [research-1, research-2]
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    process = ServerProcess({"AINS_DATA_DIR": str(tmp_path_factory.mktemp("wf-cli"))})
    yield process
    process.stop()


@pytest.fixture
def ains(server):
    with AINSClient(server.url, ADMIN_KEY) as admin:
        key = admin.create_key("client_cli", "workflow cli").api_key
    app = typer.Typer()
    register(app)
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(app, list(args), env={"AINS_URL": server.url, "AINS_API_KEY": key, "COLUMNS": "200"})

    return run


def test_submit_a_yaml_workflow_and_show_its_tree(ains, tmp_path):
    path = tmp_path / "flow.yaml"
    path.write_text(WORKFLOW_YAML)
    submitted = ains("workflows", "submit", str(path), "--json")
    assert submitted.exit_code == 0, submitted.output
    workflow_id = json.loads(submitted.output)["workflow_id"]
    shown = ains("workflows", "show", workflow_id)
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert "tide report" in lines[0] and "RUNNING" in lines[0]
    assert any("plan PENDING" in line for line in lines)
    assert sum("write WAITING" in line for line in lines) == 2  # under both research steps
    assert sum("(above)" in line for line in lines) == 1


def test_a_bad_workflow_file_is_one_line(ains, tmp_path):
    path = tmp_path / "cycle.json"
    path.write_text(json.dumps({"name": "c", "steps": [{"key": "a", "depends_on": ["a"], "task_type": "t",
                                                        "capability_required": "x:v1"}]}))  # fmt: skip
    result = ains("workflows", "submit", str(path))
    assert result.exit_code == 1 and "cycle" in result.output


def test_schedules_create_list_pause_delete(ains):
    created = ains(
        "schedules", "create", "--name", "nightly", "--cron", "0 3 * * *", "--timezone", "Europe/Berlin",
        "--task", json.dumps({"task_type": "digest", "capability_required": "llm:v1"}), "--json",
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    schedule_id = json.loads(created.output)["schedule_id"]
    listed = ains("schedules", "list")
    assert schedule_id in listed.output and "nightly" in listed.output
    assert ains("schedules", "pause", schedule_id).exit_code == 0
    assert "paused" in ains("schedules", "list").output
    assert ains("schedules", "delete", schedule_id).exit_code == 0
    assert schedule_id not in ains("schedules", "list").output
    bad = ains("schedules", "create", "--name", "x", "--cron", "nope", "--task", "{}")
    assert bad.exit_code == 1 and "422" in bad.output
