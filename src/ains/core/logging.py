"""Logs: human-readable lines on a terminal, JSON lines otherwise (`AINS_LOG_FORMAT=auto|text|json`).

Keys and Authorization headers are never logged. JSON fields never carry terminal colour codes: uvicorn's
`color_message` is dropped and escape sequences are stripped from every text value.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from ains.core.clock import utc_text

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
_DROPPED = {"color_message"}  # uvicorn's copy of the message with colour codes in it
_NOT_EXTRA = frozenset(_STANDARD | _DROPPED)
# One encoder for every line: `json.dumps` with an option builds a new one per call (the access log writes a
# line per request, and its formatting was a tenth of a cached read's CPU).
_ENCODER = json.JSONEncoder(default=str)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
FORMATS = ("auto", "text", "json")


def _plain(value: Any) -> Any:
    if isinstance(value, str):
        return _ANSI.sub("", value) if "\x1b" in value else value  # every sequence starts with ESC
    if isinstance(value, dict):
        return {key: _plain(inner) for key, inner in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(inner) for inner in value]
    return value


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _NOT_EXTRA}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": utc_text(datetime.fromtimestamp(record.created, UTC)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": _plain(record.getMessage()),
        }
        entry.update({k: _plain(v) for k, v in _extras(record).items()})
        if record.exc_info:
            entry["exception"] = _plain(self.formatException(record.exc_info))
        return _ENCODER.encode(entry)


class TextFormatter(logging.Formatter):
    """One line for people: `12:10:10 INFO  ains  AINS started  database=sqlite version=0.1.0`."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        fields = " ".join(f"{key}={_text_value(value)}" for key, value in _extras(record).items())
        line = f"{moment} {record.levelname:<7} {record.name}  {_plain(record.getMessage())}"
        if fields:
            line += f"  {fields}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _text_value(value: Any) -> str:
    if isinstance(value, list | tuple):
        text = ",".join(str(item) for item in value)
    else:
        text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = _plain(text)
    return json.dumps(text) if (" " in text or not text) else text


def resolve_format(fmt: str = "auto", stream: Any = None) -> str:
    """`text` or `json`: `auto` is text when the stream is a terminal, JSON otherwise (files, pipes, services)."""
    fmt = (fmt or "auto").lower()
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if fmt != "auto":
        return fmt
    stream = stream or sys.stderr
    try:
        return "text" if stream.isatty() else "json"
    except (AttributeError, ValueError):
        return "json"


def configure_logging(level: str = "INFO", fmt: str = "auto") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TextFormatter() if resolve_format(fmt, sys.stderr) == "text" else JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Neither format shows the thread, the process or the source line a record came from; not looking them up
    # makes every record (one per request, for the access log) cheaper. `_srcfile = None` is the logging
    # HOWTO's own advice for skipping the caller lookup.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging._srcfile = None
    # uvicorn's own access log would duplicate ours, without the route or duration.
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # The HTTP client logs every request at INFO: an agent's polls and heartbeats would drown what matters.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
