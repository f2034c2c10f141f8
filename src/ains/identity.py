"""Agent identity files: an Ed25519 key pair kept as JSON, readable only by its owner.

Used by the CLI (`ains keygen`, `ains sign`) and any Python agent that needs to
sign its registration or a key re-issue.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from ains.auth.signatures import registration_message, sign, token_message
from ains.core.clock import utc_text


@dataclass(frozen=True)
class Identity:
    private_key: str  # 32-byte seed, hex
    public_key: str  # 32 bytes, hex

    @classmethod
    def generate(cls) -> Identity:
        key = Ed25519PrivateKey.generate()
        private = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()).hex()
        public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
        return cls(private, public)

    @classmethod
    def load(cls, path: str | Path) -> Identity:
        data = json.loads(Path(path).read_text())
        return cls(data["private_key"], data["public_key"])

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"private_key": self.private_key, "public_key": self.public_key}, handle)
        os.chmod(path, 0o600)

    def registration(self, agent_id: str, timestamp: str | None = None) -> dict[str, str]:
        """The signed fields of `POST /ains/agents`."""
        timestamp = timestamp or now_timestamp()
        signature = sign(self.private_key, registration_message(agent_id, self.public_key, timestamp))
        return {"agent_id": agent_id, "public_key": self.public_key, "timestamp": timestamp, "signature": signature}

    def token_request(self, agent_id: str, timestamp: str | None = None) -> dict[str, str]:
        """The body of `POST /ains/agents/{agent_id}/token`."""
        timestamp = timestamp or now_timestamp()
        return {"timestamp": timestamp, "signature": sign(self.private_key, token_message(agent_id, timestamp))}


def now_timestamp() -> str:
    return utc_text(datetime.now(UTC).replace(microsecond=0))
