"""What every `ains` command shares: the --url, --api-key and --json options, output for people (tables, records,
times relative and absolute) and for scripts (JSON), one-line errors with their exit codes, and plain API requests."""

from __future__ import annotations

import functools
import json
import os
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from ains.core.clock import exact_text, relative_text


def _click_classes(name: str) -> tuple[type[Any], ...]:
    """Click's exception class `name`, both as typer raises it (newer typer vendors click) and as click does."""
    import click

    ours = [cls for cls in typer.BadParameter.__mro__ if cls.__name__ == name]
    return tuple({*ours, getattr(click, name, getattr(click.exceptions, name, Exception))})


Url = Annotated[str | None, typer.Option("--url", envvar="AINS_URL", help="The AINS server [default: local]")]
ApiKey = Annotated[str | None, typer.Option("--api-key", envvar="AINS_API_KEY", help="Your API key")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts")]
DEFAULT_URL = "http://127.0.0.1:8000"


class CliError(Exception):
    """An error the user can act on: printed as one line, exit code `code`."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _need_url(url: str | None) -> str:
    return (url or DEFAULT_URL).rstrip("/")


def _client(url: str, api_key: str | None):
    from ains.client import AINSClient

    return AINSClient(url, api_key, timeout=30)


# ---------------------------------------------------------------- output


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d", value):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def relative(moment: datetime, now: datetime | None = None) -> str:
    return relative_text(moment, now or datetime.now(UTC))


def _when(value: Any) -> str | None:
    """A time as `3 min ago (2026-11-27 12:10:10 UTC)`, or None when `value` is not a time."""
    moment = _parse_time(value)
    if moment is None:
        return None
    return f"{relative(moment)} ({exact_text(moment)})"


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    shown = _when(value)
    if shown is not None:
        return shown
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(_cell(item) for item in value) if value else "—"
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False) if value else "{}"
    return str(value)


def _console(stderr: bool = False):
    from rich.console import Console

    # Piped output is not cut to 80 columns: a table row stays whole, ids stay copyable.
    wide = None if (sys.stderr if stderr else sys.stdout).isatty() else 100_000
    return Console(stderr=stderr, width=wide, highlight=False, soft_wrap=not sys.stdout.isatty())


def _print(
    data: Any,
    as_json: bool,
    columns: list[str] | None = None,
    title: str | None = None,
    empty: str = "nothing to show",
) -> None:
    """JSON for scripts; for people a table (a list) or key: value lines (one record)."""
    if as_json:
        typer.echo(json.dumps(data, default=str, ensure_ascii=False))
        return
    from rich.markup import escape
    from rich.table import Table

    console = _console()
    if isinstance(data, list):
        if not data:
            console.print(escape(empty))
            return
        headers = columns or list(data[0])
        table = Table(title=title, title_justify="left")
        for header in headers:
            is_id = header.endswith("_id") or header == "id"
            # Ids are never cut or folded: they are for copying.
            table.add_column(header, no_wrap=is_id, overflow="fold", min_width=None)
        for row in data:
            table.add_row(*(escape(_cell(row.get(header))) for header in headers))
        console.print(table)
        return
    if title:
        console.print(f"[bold]{escape(title)}[/bold]")
    for key, value in data.items():
        if isinstance(value, dict) and value and key not in ("input_data", "result_data", "metadata", "details"):
            console.print(f"[bold]{escape(key)}[/bold]:")
            for inner_key, inner in value.items():
                console.print(f"  {escape(str(inner_key))}: {escape(_cell(inner))}")
            continue
        console.print(f"[bold]{escape(key)}[/bold]: {escape(_cell(value))}")


def _say(message: str, as_json: bool = False) -> None:
    """What a command did, for people (on stderr with --json, so stdout stays one JSON document)."""
    typer.echo(message, err=as_json)


# ---------------------------------------------------------------- errors


def _detail_text(detail: Any) -> str:
    """The server's `detail` as one readable line: 422 lists become `field: message; field: message`."""
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                location = [str(part) for part in item.get("loc", ()) if part not in ("body", "query", "path")]
                message = str(item.get("msg", item))
                parts.append(f"{'.'.join(location)}: {message}" if location else message)
            else:
                parts.append(str(item))
        return "; ".join(parts)
    if isinstance(detail, dict):
        return json.dumps(detail, ensure_ascii=False)
    return " ".join(str(detail).split())


def _fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}" if not message.startswith("error") else message, err=True)
    raise typer.Exit(code)


def _errors(function: Callable) -> Callable:
    """Every command's errors as one line on stderr and a non-zero exit, never a traceback."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import httpx

        from ains.client import AINSError

        url = _need_url(kwargs.get("url") or os.environ.get("AINS_URL"))
        try:
            return function(*args, **kwargs)
        except _click_classes("ClickException") + _click_classes("Exit") + (typer.Exit, typer.Abort):
            raise
        except CliError as exc:
            _fail(str(exc), exc.code)
        except AINSError as exc:
            hint = ""
            if exc.status_code == 401:
                hint = " (pass --api-key or set AINS_API_KEY)"
            _fail(f"error {exc.status_code}: {_detail_text(exc.detail)}{hint}")
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            reason = str(exc).split("]")[-1].strip() or type(exc).__name__
            _fail(f"cannot reach AINS at {url} ({reason}); is `ains serve` running there? (--url or AINS_URL)")
        except httpx.TimeoutException:
            _fail(f"AINS at {url} did not answer in time")
        except httpx.HTTPError as exc:
            _fail(f"talking to AINS at {url}: {type(exc).__name__}: {exc}")
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None
        except Exception as exc:
            if os.environ.get("AINS_DEBUG"):
                raise
            first_line = (str(exc).strip().splitlines() or [""])[0]
            _fail(f"{type(exc).__name__}: {first_line} (AINS_DEBUG=1 shows the traceback)")

    return wrapper


class Remote:
    """Plain requests to the AINS API, answered as JSON or raised as AINSError (for commands the SDK lacks)."""

    def __init__(self, url: str | None, api_key: str | None) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=_need_url(url), headers=headers, timeout=30)

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def call(self, method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        from ains.client import AINSError

        query = {k: v for k, v in (params or {}).items() if v is not None}
        response = self.http.request(method, path, json=body, params=query or None)
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise AINSError(response.status_code, detail)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()
