"""`ains serve` keeps an idle connection open longer than clients keep theirs (httpx: 5 s), so a request sent on a
kept connection is never dropped by the server closing it at that moment."""

from __future__ import annotations

import socket
import time

from tests.helpers import ServerProcess

REQUEST = b"GET /health HTTP/1.1\r\nHost: ains.test\r\n\r\n"


def _answer(sock: socket.socket) -> bytes:
    """One whole answer (its head, then as many bytes as its content-length says); b"" if the server closed."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(4096)
        if not chunk:
            return received
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.lower().split(b"\r\n")
    length = next(int(line.split(b":")[1]) for line in lines if line.startswith(b"content-length"))
    while len(body) < length:
        body += sock.recv(4096)
    return head


def test_an_idle_connection_outlives_a_clients_keep_alive(tmp_path):
    server = ServerProcess(
        {"AINS_DATA_DIR": str(tmp_path), "AINS_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/a.db"}
    )
    try:
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(REQUEST)
            assert _answer(sock).startswith(b"HTTP/1.1 200")
            time.sleep(6.5)  # past httpx's 5 s (and uvicorn's default keep-alive, which closed it here)
            sock.sendall(REQUEST)
            assert _answer(sock).startswith(b"HTTP/1.1 200")
    finally:
        server.stop()
