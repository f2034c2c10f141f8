"""The `ains` command: keygen, sign, db upgrade and keys create, run as a user would."""

import json
import os
import stat
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ains.auth.signatures import registration_message


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
    ains("db", "upgrade", env=env)
    assert (tmp_path / "data" / "ains.db").exists()
    created = json.loads(ains("keys", "create", "--client-id", "client_1", "--name", "cli", env=env).stdout)
    assert created["client_id"] == "client_1" and created["api_key"].startswith("ains_client_")
    bad = ains("keys", "create", "--client-id", "x", "--name", "cli", env=env, check=False)
    assert bad.returncode != 0


@pytest.mark.slow
def test_keys_created_by_the_cli_work_against_the_server(tmp_path):
    import httpx

    from tests.helpers import ServerProcess, task_body

    env = {"AINS_DATA_DIR": str(tmp_path / "data")}
    created = json.loads(ains("keys", "create", "--client-id", "client_1", "--name", "cli", env=env).stdout)
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
