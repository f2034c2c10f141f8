"""Ed25519 signatures over AINS messages, with a time window and a one-use rule.

Registration signs `ains-register\\n{agent_id}\\n{public_key}\\n{timestamp}` and the
key re-issue signs `ains-token\\n{agent_id}\\n{timestamp}` (SPEC 2).
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import delete, select

from ains.auth.models import UsedSignature
from ains.core.errors import Unauthorized
from ains.core.work import Work


def registration_message(agent_id: str, public_key: str, timestamp: str) -> bytes:
    return f"ains-register\n{agent_id}\n{public_key}\n{timestamp}".encode()


def token_message(agent_id: str, timestamp: str) -> bytes:
    return f"ains-token\n{agent_id}\n{timestamp}".encode()


def sign(private_key_hex: str, message: bytes) -> str:
    """Sign `message` with a raw 32-byte Ed25519 private key given as hex (for tools and tests)."""
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(private_key_hex)).sign(message).hex()


def parse_timestamp(timestamp: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(timestamp)
    except ValueError as exc:
        raise Unauthorized("timestamp is not an ISO 8601 time") from exc
    if parsed.tzinfo is None:
        raise Unauthorized("timestamp must carry a time zone (use Z for UTC)")
    return parsed


async def verify_signed(work: Work, *, public_key_hex: str, message: bytes, signature_hex: str, timestamp: str) -> None:
    """Raise 401 unless the signature is valid, fresh (within `signature_window_seconds`), and not used before."""
    session, now, window_seconds = work.session, work.now, work.settings.signature_window_seconds
    signed_at = parse_timestamp(timestamp)
    if abs((now - signed_at).total_seconds()) > window_seconds:
        raise Unauthorized("signature timestamp is outside the allowed window")
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key_hex)).verify(bytes.fromhex(signature_hex), message)
    except (InvalidSignature, ValueError) as exc:
        raise Unauthorized("invalid signature") from exc

    signature_hash = hashlib.sha256(signature_hex.lower().encode()).hexdigest()
    # Anything older than the window can no longer pass the time check, so it need not be kept.
    await session.execute(
        delete(UsedSignature).where(UsedSignature.used_at < now - timedelta(seconds=2 * window_seconds))
    )
    seen = await session.scalar(select(UsedSignature).where(UsedSignature.signature_hash == signature_hash))
    if seen is not None:
        raise Unauthorized("signature already used")
    session.add(UsedSignature(signature_hash=signature_hash, used_at=now))
