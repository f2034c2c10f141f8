"""Webhook signatures: `X-Webhook-Signature: sha256=<hex>` over the body, and the Standard Webhooks
trio `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>` over `{id}.{timestamp}.{body}`.

The HMAC key is the secret's UTF-8 bytes, except for a secret in the Standard
Webhooks form `whsec_<base64>` (what AINS generates), whose key is the decoded
base64, so Standard Webhooks libraries verify AINS deliveries as they are.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"


def generate_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def signing_key(secret: str) -> bytes:
    if secret.startswith(SECRET_PREFIX):
        try:
            return base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
        except ValueError:
            pass
    return secret.encode()


def signature_headers(secret: str, event_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    key = signing_key(secret)
    plain = hmac.new(key, body, hashlib.sha256).hexdigest()
    signed = f"{event_id}.{timestamp}.".encode() + body
    standard = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return {
        "Content-Type": "application/json",
        "X-Webhook-Signature": f"sha256={plain}",
        "webhook-id": event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": f"v1,{standard}",
    }


def verify(secret: str, headers: dict[str, str], body: bytes, *, tolerance_seconds: int = 300, now: int) -> bool:
    """What a receiver does (see docs/webhooks.md): both signatures match and the timestamp is fresh."""
    lowered = {k.lower(): v for k, v in headers.items()}
    key = signing_key(secret)
    plain = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(plain, lowered.get("x-webhook-signature", "")):
        return False
    timestamp = int(lowered["webhook-timestamp"])
    if abs(now - timestamp) > tolerance_seconds:
        return False
    signed = f"{lowered['webhook-id']}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    offered = [part.split(",", 1)[1] for part in lowered.get("webhook-signature", "").split() if "," in part]
    return any(hmac.compare_digest(expected, candidate) for candidate in offered)
