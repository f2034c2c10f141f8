"""Fuzz every operation of the live OpenAPI document with schemathesis: no answer may be a 500.

The operations are fuzzed in four groups, each against a server of its own, so the
suite's processes share the work instead of one of them fuzzing for minutes.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ADMIN_KEY, ServerProcess

FUZZED = "^/ains/(agents|tasks|webhooks|clients|schedules|workflows)"
GROUPS = {
    "agents": ["--include-path-regex", "^/ains/agents"],
    "tasks": ["--include-path-regex", "^/ains/tasks"],
    "webhooks-workflows-schedules": ["--include-path-regex", "^/ains/(webhooks|clients|schedules|workflows)"],
    "the-rest": ["--exclude-path-regex", FUZZED],
}


@pytest.mark.slow
@pytest.mark.parametrize("group", list(GROUPS))
def test_no_server_errors_under_fuzzing(tmp_path, group):
    # No background duties, so no webhook a fuzzed request registers is ever delivered, and private
    # targets allowed, so registering one resolves no name: fuzzing sends nothing off this machine.
    server = ServerProcess(
        {"AINS_DATA_DIR": str(tmp_path / "data"), "AINS_RUN_BACKGROUND": "false", "AINS_WEBHOOK_ALLOW_PRIVATE": "true"}
    )
    st = shutil.which("st", path=str(Path(sys.executable).parent)) or shutil.which("st")
    assert st, "schemathesis is part of the dev dependencies"
    examples = os.environ.get("AINS_FUZZ_EXAMPLES", "30")
    try:
        result = subprocess.run(
            [
                st,
                "run",
                f"{server.url}/openapi.json",
                *GROUPS[group],
                "--checks",
                "not_a_server_error",
                "--max-examples",
                examples,
                "--header",
                f"Authorization: Bearer {ADMIN_KEY}",
                "--request-timeout",
                "40",
                "--seed",
                "1",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=900,
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    finally:
        server.stop()
