"""Signature headers against an independent computation, and the SSRF guard's address classes."""

import base64
import hashlib
import hmac

import pytest

from ains.webhooks.signing import generate_secret, signature_headers, signing_key, verify
from ains.webhooks.url_guard import ForbiddenTarget, check_target


def test_both_signatures_match_an_independent_hmac():
    secret = "a-plain-secret-of-enough-length"
    body = b'{"event":"task.completed"}'
    headers = signature_headers(secret, "evt_1", 1700000000, body)
    assert headers["X-Webhook-Signature"] == "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    expected = hmac.new(secret.encode(), b"evt_1.1700000000." + body, hashlib.sha256).digest()
    assert headers["webhook-signature"] == "v1," + base64.b64encode(expected).decode()
    assert headers["webhook-id"] == "evt_1" and headers["webhook-timestamp"] == "1700000000"
    assert verify(secret, headers, body, now=1700000010)
    assert not verify(secret, headers, body + b" ", now=1700000010)
    assert not verify("another-secret-of-enough-length", headers, body, now=1700000010)
    assert not verify(secret, headers, body, now=1700000000 + 3600)  # a replay long after


def test_generated_secrets_use_the_standard_webhooks_form():
    secret = generate_secret()
    assert secret.startswith("whsec_") and len(signing_key(secret)) == 32


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x",
        "http://localhost:8080/x",
        "http://10.1.2.3/x",
        "http://192.168.1.1/x",
        "http://172.16.0.5/x",
        "http://169.254.169.254/latest",
        "http://[::1]/x",
        "http://0.0.0.0/x",
        "http://[::ffff:127.0.0.1]/x",
    ],
)
async def test_private_targets_are_refused(url):
    with pytest.raises(ForbiddenTarget):
        await check_target(url, allow_private=False)
    await check_target(url, allow_private=True)


@pytest.mark.parametrize("url", ["ftp://example.com/x", "file:///etc/passwd", "http:///nohost", "example.com"])
async def test_non_http_urls_are_refused_even_when_private_is_allowed(url):
    with pytest.raises(ForbiddenTarget):
        await check_target(url, allow_private=True)


NOT_CONNECTABLE = [
    *("127.1", "2130706433", "1.2.3", "8.8.8.8.", "0x8.8.8.8", "1.2.3.4.5"),
    *("hook.example..", ".hook.example", "hook..example"),
]


@pytest.mark.parametrize("host", NOT_CONNECTABLE)
async def test_a_host_the_http_client_could_not_connect_to_is_refused(host):
    """Numbers that are not an address literal (the resolver would make `1.2.3` 1.2.0.3), and an empty label."""
    with pytest.raises(ForbiddenTarget, match="neither a name nor an address"):
        await check_target(f"http://{host}:8080/hook", allow_private=True)


@pytest.mark.parametrize("host", ["hook.example.", "123.example", "0x10.example", "[::1]", "xn--r8jz45g.jp"])
async def test_names_and_literals_the_http_client_connects_to_are_accepted(host):
    await check_target(f"http://{host}:8080/hook", allow_private=True)


async def test_a_public_address_is_accepted():
    await check_target("https://93.184.216.34/hook", allow_private=False)
