"""SPEC 1: the admin key is generated once into a 0600 file whose path, never the key, is logged."""

import logging
import stat

from ains.auth.admin_key import resolve_admin_key
from ains.core.config import Settings


def test_generated_admin_key_file_is_private_and_reused(tmp_path, caplog):
    settings = Settings(data_dir=tmp_path / "data", admin_key=None)
    with caplog.at_level(logging.INFO, logger="ains.auth"):
        key = resolve_admin_key(settings)
    path = tmp_path / "data" / "admin.key"
    assert path.read_text().strip() == key and key.startswith("ains_admin_")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    logged = " ".join(f"{r.getMessage()} {vars(r)}" for r in caplog.records)
    assert str(path.resolve()) in logged
    assert key not in logged
    assert resolve_admin_key(settings) == key


def test_configured_admin_key_wins_and_writes_nothing(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", admin_key="ains_admin_configured-0123456789abcdef")
    assert resolve_admin_key(settings) == "ains_admin_configured-0123456789abcdef"
    assert not (tmp_path / "data" / "admin.key").exists()
