"""API key format and hashing: `ains_<kind>_<random>`, stored only as SHA-256.

Keys carry 32 random bytes, so a fast hash is enough: there is nothing to brute-force.
"""

from __future__ import annotations

import hashlib

from ains.core.clock import random_token


def generate_key(kind: str) -> str:
    return f"ains_{kind}_{random_token(32)}"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()
