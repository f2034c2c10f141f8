"""The admin key: from AINS_ADMIN_KEY, or generated once into a 0600 file in the data directory."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ains.auth.keys import generate_key
from ains.core.config import Settings

log = logging.getLogger("ains.auth")

ADMIN_KEY_FILE = "admin.key"


def resolve_admin_key(settings: Settings) -> str:
    if settings.admin_key:
        return settings.admin_key
    path = Path(settings.data_dir) / ADMIN_KEY_FILE
    if path.exists():
        key = path.read_text().strip()
        if key:
            log.info("admin key loaded", extra={"path": str(path.resolve())})
            return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = generate_key("admin")
    # O_EXCL: two servers starting at once must not each write a different key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    os.chmod(path, 0o600)
    log.warning("generated a new admin key; read it from the file", extra={"path": str(path.resolve())})
    return key
