"""The admin key: from AINS_ADMIN_KEY, or generated once into a 0600 file in the data directory; and the data
directory itself, private to the server's user (0700, its SQLite files and the key file 0600)."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from ains.auth.keys import generate_key
from ains.core.config import Settings
from ains.core.pagination import set_cursor_key

log = logging.getLogger("ains.auth")

ADMIN_KEY_FILE = "admin.key"
MIN_ADMIN_KEY_LENGTH = 32
SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")


class AdminKeyTooShort(ValueError):
    pass


def prepare_data_dir(settings: Settings) -> None:
    """Create the data directory 0700, and make the SQLite database's files 0600 (SQLite gives its -wal, -shm
    and -journal files the database file's own mode, so creating that one 0600 first covers them all)."""
    data_dir = Path(settings.data_dir)
    if not data_dir.exists():
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(data_dir, 0o700)  # mkdir's mode is filtered by the umask
    if not settings.is_sqlite:
        return
    database = settings.resolved_database_url.split("///", 1)[-1].split("?", 1)[0]
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))  # an empty file is a new database
    for suffix in SQLITE_SUFFIXES:
        with contextlib.suppress(FileNotFoundError):
            os.chmod(f"{path}{suffix}", 0o600)


def _checked(key: str, source: str) -> str:
    if len(key) < MIN_ADMIN_KEY_LENGTH:
        raise AdminKeyTooShort(
            f"{source} is {len(key)} characters; the admin key must be at least {MIN_ADMIN_KEY_LENGTH} "
            "(unset it and AINS generates a strong one into the data directory)"
        )
    set_cursor_key(key)
    return key


def resolve_admin_key(settings: Settings) -> str:
    if settings.admin_key:
        return _checked(settings.admin_key, "admin_key (AINS_ADMIN_KEY)")
    path = Path(settings.data_dir) / ADMIN_KEY_FILE
    if path.exists():
        key = path.read_text().strip()
        if key:
            log.info("admin key loaded", extra={"path": str(path.resolve())})
            return _checked(key, f"admin_key in {path.resolve()}")
    if not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(path.parent, 0o700)
    key = generate_key("admin")
    # O_EXCL: two servers starting at once must not each write a different key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _checked(path.read_text().strip(), f"admin_key in {path.resolve()}")
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    os.chmod(path, 0o600)
    log.warning("generated a new admin key; read it from the file", extra={"path": str(path.resolve())})
    return _checked(key, "the generated admin key")
