"""AINS_LOG_FORMAT: text on a terminal, JSON otherwise; no colour codes inside JSON."""

from __future__ import annotations

import io
import json
import logging

import pytest

from ains.core.logging import JsonFormatter, TextFormatter, resolve_format


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def _record(message: str, **extra) -> logging.LogRecord:
    record = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, message, None, None)
    record.__dict__.update(extra)
    return record


def test_auto_is_text_on_a_terminal_and_json_otherwise():
    assert resolve_format("auto", _Stream(tty=True)) == "text"
    assert resolve_format("auto", _Stream(tty=False)) == "json"
    assert resolve_format("json", _Stream(tty=True)) == "json"
    assert resolve_format("TEXT", _Stream(tty=False)) == "text"
    with pytest.raises(ValueError):
        resolve_format("xml")


def test_json_lines_carry_no_colour_codes():
    record = _record(
        "Uvicorn running on \x1b[1mhttp://127.0.0.1:8000\x1b[0m",
        color_message="Uvicorn running on \x1b[1m%s\x1b[0m",
        detail={"note": "\x1b[31mred\x1b[0m"},
    )
    line = JsonFormatter().format(record)
    assert "\x1b" not in line and "\\u001b" not in line
    entry = json.loads(line)
    assert entry["message"] == "Uvicorn running on http://127.0.0.1:8000"
    assert "color_message" not in entry
    assert entry["detail"] == {"note": "red"}


def test_text_lines_are_for_people():
    line = TextFormatter().format(_record("AINS started", database="sqlite", path="/a b", duties=["a", "b"]))
    assert "INFO" in line and "AINS started" in line and "duties=a,b" in line
    assert "database=sqlite" in line and 'path="/a b"' in line
    assert not line.startswith("{")


@pytest.fixture
def restored_logging():
    """configure_logging changes the process's root logger; put pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    quiet = {name: logging.getLogger(name).level for name in ("httpx", "httpcore", "alembic")}
    # Also the record's lookups it turns off, so later tests' captured logs keep their file and line.
    switches = ("logThreads", "logProcesses", "logMultiprocessing", "_srcfile")
    saved = {name: getattr(logging, name) for name in switches}
    yield
    for name, value in saved.items():
        setattr(logging, name, value)
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, old in quiet.items():
        logging.getLogger(name).setLevel(old)


def test_http_client_requests_are_not_logged_at_info(monkeypatch, restored_logging):
    import httpx

    from ains.core.logging import configure_logging
    from tests.webhooks.receiver import Receiver

    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    configure_logging("INFO", "json")
    receiver = Receiver()
    try:
        assert httpx.post(receiver.url, json={"task_id": "t"}).status_code == 200
    finally:
        receiver.close()
    logging.getLogger("ains.test").info("an agent line that matters")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["message"] for line in lines] == ["an agent line that matters"]
