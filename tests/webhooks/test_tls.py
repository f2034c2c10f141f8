"""Deliveries over https (pinning.PinnedPool): the TLS server name and the certificate check are the
URL's host, not the pinned address, and a certificate the dispatcher does not trust ends the attempt unsent."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ains.webhooks import pinning
from tests.webhooks.test_pool import client_sockets, read_request

HOST = "hook.example"


def _certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for HOST (and nothing else), and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


class TlsReceiver:
    """An https receiver on 127.0.0.1 answering 200; notes the server names asked for and the request heads."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)
        self.context.sni_callback = lambda _sock, name, _ctx: self.server_names.append(name)
        self.server_names: list[str | None] = []
        self.heads: list[bytes] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.context)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                self.heads.append(await read_request(reader))
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def receiver(tmp_path: Path):
    cert, key = _certificate(tmp_path)
    server = TlsReceiver(cert, key)
    port = await server.start()
    yield server, port, cert
    server.server.close()


async def _resolves_to_loopback(host: str, port: int) -> list[str]:
    assert host == HOST
    return ["127.0.0.1"]


async def _post(pool: pinning.PinnedPool, port: int) -> pinning.Answer:
    return await pinning.post(
        pool,
        f"https://{HOST}:{port}/hook",
        content=b"{}",
        headers={},
        allow_private=True,
        resolver=_resolves_to_loopback,
    )


async def test_https_goes_to_the_pinned_address_with_the_urls_host_as_server_name(receiver):
    server, port, cert = receiver
    pool = pinning.PinnedPool(timeout=5, max_connections=2)
    pool._ssl_context = ssl.create_default_context(cafile=str(cert))  # trust this receiver's certificate
    try:
        for _ in range(2):
            assert (await _post(pool, port)).status_code == 200
    finally:
        await pool.aclose()
    assert server.server_names == [HOST]  # one handshake: the second delivery reused the connection
    assert all(f"host: {HOST}:{port}".encode() in head.lower() for head in server.heads) and len(server.heads) == 2


async def test_a_certificate_not_trusted_ends_the_attempt_before_anything_is_sent(receiver):
    server, port, _cert = receiver
    pool = pinning.PinnedPool(timeout=5, max_connections=2)  # the system's trusted authorities only
    try:
        with pytest.raises(pinning.ConnectError, match="certificate"):
            await _post(pool, port)
    finally:
        await pool.aclose()
    assert server.heads == []


async def test_a_refused_connection_is_a_connect_error():
    listener = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    listener.close()
    await listener.wait_closed()
    pool = pinning.PinnedPool(timeout=5, max_connections=2)
    try:
        with pytest.raises(pinning.ConnectError):
            await pinning.post(pool, f"http://127.0.0.1:{port}/hook", content=b"{}", headers={}, allow_private=True)
    finally:
        await pool.aclose()


def _receiver_ignoring_close_notify(cert: Path, key: Path) -> tuple[socket.socket, int]:
    """An https receiver (a thread) that answers each connection's first request with `Connection: close` and then
    neither reads nor closes: the client's close_notify is never answered."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(10)
    held = []

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                connection = context.wrap_socket(listener.accept()[0], server_side=True)
                data = b""
                while b"\r\n\r\n" not in data:
                    data += connection.recv(65536)
                connection.sendall(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n")
                held.append(connection)

    threading.Thread(target=serve, daemon=True).start()
    return listener, listener.getsockname()[1]


async def test_a_tls_connection_the_receiver_ended_is_not_kept_open_waiting_for_its_close_notify(tmp_path):
    """Python's SSL transport waits 30 s for the peer's close_notify; those sockets, no longer the pool's, are
    aborted within seconds instead."""
    cert, key = _certificate(tmp_path)
    listener, port = _receiver_ignoring_close_notify(cert, key)
    pool = pinning.PinnedPool(timeout=5, max_connections=1)
    pool._ssl_context = ssl.create_default_context(cafile=str(cert))
    try:
        for _ in range(3):
            assert (await _post(pool, port)).status_code == 200
        deadline = time.monotonic() + 10
        while client_sockets(port) > 1:
            assert time.monotonic() < deadline, f"{client_sockets(port)} sockets still open"
            await asyncio.sleep(0.1)
    finally:
        await pool.aclose()
        listener.close()
