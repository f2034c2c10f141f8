"""The console's session cookie and CSRF tokens.

The cookie holds `base64url(JSON) "." base64url(HMAC-SHA256 tag)`: a random session id, the SHA-256 digest of
the API key signed in with (never the key itself; the key is looked up again on every request, so revoking it
ends the session), and an expiry. The tag's key is derived from the admin key's digest, which only the server
holds, so every process of one installation accepts the cookie and a changed admin key ends every session.

A CSRF token is an HMAC of the session id: every state-changing form carries it, and a POST whose token does not
match its cookie's session is refused with 403. A visitor who has not signed in has a session too (no key
digest), so the sign-in form is protected the same way.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

COOKIE = "ains_console"
LIFETIME_SECONDS = 12 * 3600
_TAG_BYTES = 16


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode((text + "=" * (-len(text) % 4)).encode("ascii"))


@dataclass(frozen=True)
class Session:
    sid: str
    key_digest: str | None
    expires: int

    @property
    def signed_in(self) -> bool:
        return self.key_digest is not None


class SessionSigner:
    def __init__(self, admin_key_hash: str) -> None:
        self._key = hmac.new(admin_key_hash.encode(), b"ains-console-session-v1", hashlib.sha256).digest()

    def _tag(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_TAG_BYTES]

    def new(self, key_digest: str | None = None) -> Session:
        return Session(secrets.token_urlsafe(18), key_digest, int(time.time()) + LIFETIME_SECONDS)

    def dump(self, session: Session) -> str:
        payload = json.dumps({"s": session.sid, "d": session.key_digest, "e": session.expires}).encode()
        return f"{_b64(payload)}.{_b64(self._tag(payload))}"

    def load(self, cookie: str | None) -> Session | None:
        """The session a cookie holds, or None when it is missing, forged, edited or expired."""
        if not cookie or len(cookie) > 1000:
            return None
        try:
            body, _, tag = cookie.partition(".")
            payload = _unb64(body)
            if not hmac.compare_digest(_unb64(tag), self._tag(payload)):
                return None
            data = json.loads(payload)
            session = Session(str(data["s"]), data["d"], int(data["e"]))
        except (binascii.Error, ValueError, UnicodeError, KeyError, TypeError):
            return None
        if session.key_digest is not None and not isinstance(session.key_digest, str):
            return None
        if session.expires < time.time():
            return None
        return session

    def csrf_token(self, session: Session) -> str:
        return _b64(hmac.new(self._key, b"csrf:" + session.sid.encode(), hashlib.sha256).digest())

    def csrf_ok(self, session: Session | None, token: str | None) -> bool:
        if session is None or not token:
            return False
        return hmac.compare_digest(self.csrf_token(session), token)
