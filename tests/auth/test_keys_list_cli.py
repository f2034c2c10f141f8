"""`ains keys list` shows each key's scopes and expiry, relative and absolute, and "expired" once it is past,
in the table and in --json; against a real server."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest

from ains.cli.server import _expiry_cell, _expiry_fields
from tests.helpers import ADMIN_KEY, ServerProcess
from tests.test_cli import one_line_error, run

ABSOLUTE = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"


def test_expiry_is_shown_relative_and_absolute():
    now = datetime(2027, 1, 1, 12, 0, tzinfo=UTC)
    assert _expiry_cell(None, now) == "never"
    assert _expiry_cell("2027-01-31T12:00:00Z", now) == "in 30 d (2027-01-31 12:00:00 UTC)"
    assert _expiry_cell("2027-01-01T10:00:00Z", now) == "expired 2 h ago (2027-01-01 10:00:00 UTC)"
    assert _expiry_cell("2027-01-01T12:00:00Z", now).startswith("expired just now")  # at its end: expired
    assert _expiry_fields(None, now) == {"expired": False, "expires_in_seconds": None}
    assert _expiry_fields("2027-01-01T13:00:00Z", now) == {"expired": False, "expires_in_seconds": 3600}
    assert _expiry_fields("2027-01-01T11:00:00Z", now) == {"expired": True, "expires_in_seconds": -3600}


@pytest.mark.slow
def test_keys_list_shows_scopes_and_expiry(tmp_path):
    server = ServerProcess({"AINS_DATA_DIR": str(tmp_path / "data")})
    admin = {"AINS_URL": server.url, "AINS_API_KEY": ADMIN_KEY}
    try:
        forever = json.loads(
            run("keys", "create", "--client-id", "c_forever", "--name", "all", "--json", env=admin).stdout
        )
        month = json.loads(
            run(
                "keys", "create", "--client-id", "c_month", "--name", "read", "--scope", "tasks:read",
                "--scope", "webhooks:read", "--expires", "30d", "--json", env=admin,
            ).stdout
        )  # fmt: skip
        old = json.loads(run("keys", "create", "--client-id", "c_rotated", "--name", "old", "--json", env=admin).stdout)
        # Rotated with no grace: the old key's expiry is now, so it is listed as expired.
        rotated = json.loads(run("keys", "rotate", old["key_id"], "--grace-seconds", "0", "--json", env=admin).stdout)

        listed = json.loads(run("keys", "list", "--json", env=admin).stdout)
        rows = {row["key_id"]: row for row in listed}
        assert rows[forever["key_id"]]["scopes"] == forever["scopes"] and len(forever["scopes"]) == 8
        assert rows[forever["key_id"]]["expires_at"] is None
        assert rows[forever["key_id"]]["expired"] is False and rows[forever["key_id"]]["expires_in_seconds"] is None
        assert rows[month["key_id"]]["scopes"] == ["tasks:read", "webhooks:read"]
        assert rows[month["key_id"]]["expires_at"] == month["expires_at"]
        assert rows[month["key_id"]]["expired"] is False
        assert 30 * 86400 - 120 < rows[month["key_id"]]["expires_in_seconds"] <= 30 * 86400
        assert rows[old["key_id"]]["expired"] is True and rows[old["key_id"]]["expires_in_seconds"] <= 0
        assert rows[old["key_id"]]["expires_at"] == rotated["old_key_expires_at"]
        assert rows[rotated["key_id"]]["expired"] is False and rows[rotated["key_id"]]["rotated_from"] == old["key_id"]

        table = run("keys", "list", env=admin).stdout
        assert "scopes" in table.splitlines()[1] and "expires" in table.splitlines()[1]
        lines = {key_id: next(line for line in table.splitlines() if key_id in line) for key_id in rows}
        assert "never" in lines[forever["key_id"]] and "tasks:write" in lines[forever["key_id"]]
        assert "tasks:read, webhooks:read" in lines[month["key_id"]]
        assert re.search(rf"in 29 d \({ABSOLUTE}\)", lines[month["key_id"]]), lines[month["key_id"]]
        assert re.search(rf"expired (just now|\d+ s ago) \({ABSOLUTE}\)", lines[old["key_id"]]), lines[old["key_id"]]
        assert "expired" not in lines[rotated["key_id"]]

        # Filters: one client's keys; the revoked ones on request.
        only = json.loads(run("keys", "list", "--client-id", "c_month", "--json", env=admin).stdout)
        assert [row["key_id"] for row in only] == [month["key_id"]]
        run("keys", "revoke", month["key_id"], env=admin)
        assert json.loads(run("keys", "list", "--client-id", "c_month", "--json", env=admin).stdout) == []
        revoked = json.loads(
            run("keys", "list", "--client-id", "c_month", "--include-revoked", "--json", env=admin).stdout
        )
        assert [row["key_id"] for row in revoked] == [month["key_id"]] and revoked[0]["revoked_at"] is not None
        assert "revoked_at" in run("keys", "list", "--include-revoked", env=admin).stdout

        line = one_line_error(
            run("keys", "list", env={"AINS_URL": server.url, "AINS_API_KEY": forever["api_key"]}, check=False)
        )
        assert line.startswith("error 403")
    finally:
        server.stop()
