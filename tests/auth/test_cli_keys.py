"""The CLI's side of SPEC 18: `ains keys create --scope … --expires …` (and the rate limit options),
`ains keys rotate`, `ains registration-tokens create|list|revoke`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from ains.identity import Identity
from tests.helpers import ADMIN_KEY, ServerProcess, bearer, task_body


def ains(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "ains", *args], capture_output=True, text=True, env=os.environ | env, timeout=60
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_keys_create_takes_scopes_expiry_and_limits_on_the_local_database(tmp_path):
    env = {"AINS_DATA_DIR": str(tmp_path / "data")}
    args = ("keys", "create", "--client-id", "client_1", "--name", "ci", "--create", "--json")
    created = json.loads(
        ains(
            *args,
            "--scope",
            "tasks:read",
            "--scope",
            "webhooks:read",
            "--expires",
            "30d",
            "--rate-limit-per-second",
            "5",
            "--rate-limit-burst",
            "9",
            env=env,
        ).stdout
    )
    assert created["client_id"] == "client_1" and created["api_key"].startswith("ains_client_")
    bad = ains(*args, "--scope", "tasks:everything", env=env, check=False)
    assert bad.returncode != 0 and "tasks:everything" in bad.stderr
    bad = ains(*args, "--expires", "someday", env=env, check=False)
    assert bad.returncode != 0 and "a duration (30d, 12h, 15m)" in bad.stderr


@pytest.mark.slow
def test_scoped_keys_rotation_and_registration_tokens_through_a_server(tmp_path):
    env = {"AINS_DATA_DIR": str(tmp_path / "data"), "AINS_AGENT_REGISTRATION": "token"}
    server = ServerProcess(env)
    cli = {"AINS_URL": server.url, "AINS_API_KEY": ADMIN_KEY, "AINS_DATA_DIR": str(tmp_path / "cli")}
    try:
        expires = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        created = json.loads(
            ains(
                "keys",
                "create",
                "--client-id",
                "client_1",
                "--name",
                "ci",
                "--scope",
                "tasks:read",
                "--expires",
                expires,
                "--rate-limit-burst",
                "50",
                "--json",
                env=cli,
            ).stdout
        )
        assert created["scopes"] == ["tasks:read"] and created["rate_limit_burst"] == 50
        assert created["expires_at"] is not None
        refused = httpx.post(f"{server.url}/ains/tasks", json=task_body(), headers=bearer(created["api_key"]))
        assert refused.status_code == 403 and "tasks:write" in refused.json()["detail"]

        rotated = json.loads(
            ains("keys", "rotate", created["key_id"], "--grace-seconds", "0", "--json", env=cli).stdout
        )
        assert rotated["scopes"] == ["tasks:read"] and rotated["rotated_from"] == created["key_id"]
        assert httpx.get(f"{server.url}/ains/tasks", headers=bearer(rotated["api_key"])).status_code == 200
        assert httpx.get(f"{server.url}/ains/tasks", headers=bearer(created["api_key"])).status_code == 401

        token = json.loads(
            ains("registration-tokens", "create", "--name", "fleet", "--max-uses", "1", "--json", env=cli).stdout
        )
        body = Identity.generate().registration("agent_1") | {"registration_token": token["token"]}
        assert httpx.post(f"{server.url}/ains/agents", json=body).status_code == 201
        listed = json.loads(ains("registration-tokens", "list", "--json", env=cli).stdout)
        assert [(t["token_id"], t["uses"]) for t in listed] == [(token["token_id"], 1)]
        ains("registration-tokens", "revoke", token["token_id"], env=cli)
        assert json.loads(ains("registration-tokens", "list", "--json", env=cli).stdout) == []
    finally:
        server.stop()
