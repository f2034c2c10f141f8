"""A real `ains serve`: the body limit counts the bytes of a chunked upload and stops reading at the limit
(memory stays flat), an admin key under 32 characters stops the server at start, and a fresh data directory
is private to the server's user (SPEC 13, 18)."""

import os
import stat
import subprocess
import sys
import time

import httpx
import pytest

from tests.helpers import ADMIN, ServerProcess, bearer, free_port


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture
def small_body_server(tmp_path):
    server = ServerProcess({"AINS_DATA_DIR": str(tmp_path / "data"), "AINS_MAX_BODY_BYTES": str(1024 * 1024)})
    yield server
    server.stop()


def test_a_chunked_body_over_the_limit_is_413_and_not_read(small_body_server):
    server = small_body_server
    key = httpx.post(f"{server.url}/ains/api-keys", json={"client_id": "client_1", "name": "t"}, headers=ADMIN).json()
    headers = bearer(key["api_key"]) | {"content-type": "application/json"}
    httpx.get(f"{server.url}/ains/tasks", headers=headers)  # warm up before measuring
    before = rss_kib(server.process.pid)
    total = 100 * 1024 * 1024
    sent = 0

    def body():
        nonlocal sent
        yield b'{"task_type":"a","capability_required":"data:v1","input_data":{"x":"'
        chunk = b"y" * 65536
        while sent < total:
            sent += len(chunk)
            yield chunk
        yield b'"}}'

    status = None
    try:
        response = httpx.post(f"{server.url}/ains/tasks", content=body(), headers=headers, timeout=30)
        status = response.status_code
        assert "larger than" in response.json()["detail"]
    except (httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadError):
        pass  # the server answered 413 and closed the connection while we were still sending
    assert status in (413, None)
    grown_mib = (rss_kib(server.process.pid) - before) / 1024
    assert grown_mib < 20, f"server RSS grew by {grown_mib:.0f} MiB"
    # The server answered and closed at the limit: the client could not push the rest (only socket buffers).
    assert sent < total // 4, f"the server read {sent} bytes"
    # With Content-Length, refused before reading, and nothing was stored either way.
    response = httpx.post(f"{server.url}/ains/tasks", content=b"x" * (1024 * 1024 + 1), headers=headers)
    assert response.status_code == 413
    assert httpx.get(f"{server.url}/ains/tasks", headers=ADMIN).json()["tasks"] == []
    # A body under the limit still works.
    ok = httpx.post(
        f"{server.url}/ains/tasks", json={"task_type": "a", "capability_required": "data:v1"}, headers=headers
    )
    assert ok.status_code == 201, ok.text


def test_an_admin_key_under_32_characters_stops_the_server(tmp_path):
    env = os.environ | {"AINS_DATA_DIR": str(tmp_path / "data"), "AINS_ADMIN_KEY": "a" * 31}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "ains", "serve", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and time.monotonic() - started < 60
    output = result.stdout + result.stderr
    assert "admin_key" in output and "at least 32" in output, output[-2000:]


def test_a_fresh_data_dir_is_private(tmp_path):
    data = tmp_path / "data"
    server = ServerProcess({"AINS_DATA_DIR": str(data), "AINS_ADMIN_KEY": "", "AINS_DATABASE_URL": ""})
    try:
        admin_key = (data / "admin.key").read_text().strip()
        created = httpx.post(
            f"{server.url}/ains/api-keys", json={"client_id": "client_1", "name": "t"}, headers=bearer(admin_key)
        )
        assert created.status_code == 201
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        names = sorted(p.name for p in data.iterdir())
        assert {"admin.key", "ains.db", "ains.db-wal", "ains.db-shm"} <= set(names), names
        for name in names:
            mode = stat.S_IMODE((data / name).stat().st_mode)
            assert mode == 0o600, f"{name} is {oct(mode)}"
    finally:
        server.stop()
