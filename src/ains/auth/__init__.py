"""Principals, API keys, the admin bootstrap and Ed25519 signatures (SPEC 1)."""
