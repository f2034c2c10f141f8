"""The `ains` command: the server, local database chores, agent identities, and an operator's remote commands.

Every command says what it did, prints tables and records for people (whole ids, times relative and absolute)
and JSON with --json for scripts, and on any error prints one line to stderr and exits non-zero: 1 for an error
(the server's answer, a server that cannot be reached, bad input), 2 for a usage error or a wait that ran out.
Set AINS_DEBUG=1 to see the traceback of an unexpected error instead.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from ains.core.config import Settings


def _click_classes(name: str) -> tuple[type[Any], ...]:
    """Click's exception class `name`, both as typer raises it (newer typer vendors click) and as click does."""
    import click

    ours = [cls for cls in typer.BadParameter.__mro__ if cls.__name__ == name]
    return tuple({*ours, getattr(click, name, getattr(click.exceptions, name, Exception))})


class _OneLineErrors(typer.Typer):
    """`ains` itself: a usage error (a missing argument, a bad option value) is one line too, exit code 2."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        command = typer.main.get_command(self)
        try:
            code = command.main(*args, **{**kwargs, "standalone_mode": False})
        except _click_classes("UsageError") as exc:
            if not exc.format_message():  # `ains` alone: the help was the answer
                sys.exit(2)
            ctx = getattr(exc, "ctx", None)
            where = f" (see `{ctx.command_path} --help`)" if ctx else ""
            typer.echo(f"error: {exc.format_message()}{where}", err=True)
            sys.exit(2)
        except _click_classes("ClickException") as exc:
            typer.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(getattr(exc, "exit_code", 1))
        except _click_classes("Abort"):
            typer.echo("aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


app = _OneLineErrors(
    help="AINS, the Agent Intelligence Network System.", no_args_is_help=True, pretty_exceptions_enable=False
)
db_app = typer.Typer(help="The local database: migrations.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
tasks_app = typer.Typer(help="Submit, read, list, cancel, re-prioritise and watch tasks.", no_args_is_help=True)
agents_app = typer.Typer(help="Registered agents and the leaderboard.", no_args_is_help=True)
agent_app = typer.Typer(help="Run an agent.", no_args_is_help=True)
queue_app = typer.Typer(help="The task queue.", no_args_is_help=True)
webhooks_app = typer.Typer(help="Webhooks and their deliveries.", no_args_is_help=True)
trust_app = typer.Typer(help="Agents' trust: history, chain verification, adjustment.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit log (admin).", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(tasks_app, name="tasks")
app.add_typer(agents_app, name="agents")
app.add_typer(agent_app, name="agent")
app.add_typer(queue_app, name="queue")
app.add_typer(webhooks_app, name="webhooks")
app.add_typer(trust_app, name="trust")
app.add_typer(audit_app, name="audit")

Url = Annotated[str | None, typer.Option("--url", envvar="AINS_URL", help="The AINS server [default: local]")]
ApiKey = Annotated[str | None, typer.Option("--api-key", envvar="AINS_API_KEY", help="Your API key")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts")]
Create = Annotated[bool, typer.Option("--create", help="Create the database if there is none yet")]
DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_IDENTITY = Path(".ains") / "agent.key"  # .ains/ is the data directory, which .gitignore covers


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
    seconds = ((now or datetime.now(UTC)) - moment).total_seconds()
    future, seconds = seconds < 0, abs(seconds)
    if seconds < 2:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if seconds >= size:
            amount = f"{int(seconds // size)} {unit}"
            return f"in {amount}" if future else f"{amount} ago"
    return "just now"


def _when(value: Any) -> str | None:
    """A time as `3 min ago (2026-11-27 12:10:10 UTC)`, or None when `value` is not a time."""
    moment = _parse_time(value)
    if moment is None:
        return None
    return f"{relative(moment)} ({moment.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S UTC')})"


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


# ---------------------------------------------------------------- the local database


def _database_name(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite"):
        return None
    database = url.split("///", 1)[-1].split("?", 1)[0]
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _local_database(create: bool) -> Settings:
    """The settings of the local database a command acts on, named on stderr; refused when it does not exist
    yet unless --create (a command run in the wrong directory must not quietly make a new installation)."""
    settings = Settings()
    url = settings.resolved_database_url
    path = _sqlite_path(url)
    if path is not None and not path.exists():
        if not create:
            raise CliError(
                f"no AINS database at {path.resolve()} (AINS_DATA_DIR={settings.data_dir}). Run this where the "
                "server runs, or set AINS_DATA_DIR or AINS_DATABASE_URL to its database; pass --create to make "
                "a new one here"
            )
        typer.echo(f"creating a new database: {path.resolve()}", err=True)
    typer.echo(f"database: {_database_name(url)}", err=True)
    return settings


def _prepare(settings: Settings) -> None:
    from ains.auth.admin_key import prepare_data_dir
    from ains.migrate import upgrade

    prepare_data_dir(settings)  # the data directory 0700, the SQLite files 0600
    upgrade(settings.resolved_database_url)


# ---------------------------------------------------------------- the server


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Server processes sharing the port (PostgreSQL only)")] = 1,
) -> None:
    """Run the API server and the console (migrations are applied on start)."""
    import uvicorn

    from ains.core.logging import configure_logging
    from ains.main import create_app, prepare_workers

    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    if workers == 1:
        uvicorn.run(create_app(settings), host=host, port=port, log_config=None, access_log=False)
        return
    if settings.is_sqlite:
        typer.echo(
            "error: --workers needs PostgreSQL. SQLite allows one writer at a time, so several server "
            "processes would only queue behind each other's locks; set AINS_DATABASE_URL="
            "postgresql+asyncpg://user@host/db, or run one process.",
            err=True,
        )
        raise typer.Exit(2)
    # Migrations and the admin key once, here, rather than raced by every worker.
    prepare_workers(settings)
    uvicorn.run(
        "ains.main:worker_app",
        factory=True,
        workers=workers,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
    )


@app.command()
def worker() -> None:
    """Run only the background duties (timeouts, leases, stale agents, retries), for scaling out.

    Run servers with AINS_RUN_BACKGROUND=false and any number of workers on one PostgreSQL.
    """
    import signal

    from ains.background.runner import DutyRunner
    from ains.core.logging import configure_logging
    from ains.main import background_duties, open_context

    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)

    async def run() -> None:
        ctx = await open_context(settings, with_admin_key=False)
        runner = DutyRunner(ctx, background_duties())
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, lambda: asyncio.ensure_future(runner.stop()))
        runner.start()
        try:
            await runner.wait()
        finally:
            await runner.stop()
            await ctx.close()

    asyncio.run(run())


@db_app.command("upgrade")
@_errors
def db_upgrade(revision: str = "head", create: Create = False) -> None:
    """Apply the migrations to AINS_DATABASE_URL (or the embedded SQLite file in AINS_DATA_DIR)."""
    from ains.auth.admin_key import prepare_data_dir
    from ains.migrate import upgrade

    settings = _local_database(create)
    prepare_data_dir(settings)
    upgrade(settings.resolved_database_url, revision)
    typer.echo(f"database migrated to {revision}: {_database_name(settings.resolved_database_url)}")


# ---------------------------------------------------------------- keys


@keys_app.command("create")
@_errors
def keys_create(
    client_id: Annotated[str, typer.Option("--client-id", help="The client the key acts as")],
    name: Annotated[str, typer.Option("--name", help="A label for the key")],
    url: Url = None,
    api_key: ApiKey = None,
    as_json: Json = False,
    create: Create = False,
    scope: Scopes = None,
    expires: Expires = None,
    rate_limit_per_second: RatePerSecond = None,
    rate_limit_burst: RateBurst = None,
) -> None:
    """Create a client API key and print it (shown only once).

    With --url (or AINS_URL) it asks that server, with an admin key; without, it writes directly to the local
    database (AINS_DATABASE_URL, or the SQLite file in AINS_DATA_DIR), which must exist unless --create.
    """
    from ains.core.schemas import AGENT_ID_PATTERN

    if not re.fullmatch(AGENT_ID_PATTERN, client_id):
        raise typer.BadParameter("3-64 characters of A-Z a-z 0-9 _ . : -", param_hint="--client-id")
    options = _key_options(scope, expires, rate_limit_per_second, rate_limit_burst)
    if url:
        with _client(url, api_key) as ains:
            created = ains.create_key(client_id, name, **options).model_dump(mode="json")
    else:
        from ains.auth import service
        from ains.core.clock import utcnow
        from ains.core.database import Database
        from ains.core.principal import ADMIN_ID, Principal

        settings = _local_database(create)
        _prepare(settings)

        async def make() -> dict[str, Any]:
            db = Database(settings.resolved_database_url)
            try:
                async with db.transaction() as session:
                    row, secret = await service.create_client_key(
                        session,
                        Principal("admin", ADMIN_ID),
                        client_id,
                        name,
                        options.get("scopes"),
                        utcnow(),
                        expires_at=_parse_time(options.get("expires_at")),
                        rate_per_second=options.get("rate_limit_per_second"),
                        rate_burst=options.get("rate_limit_burst"),
                    )
                return {"key_id": row.key_id, "client_id": client_id, "name": name, "api_key": secret}
            finally:
                await db.dispose()

        created = asyncio.run(make())
    if as_json:
        _print(created, True)
        return
    _say(f"created API key {created['key_id']} for client {client_id}; it is shown only now:")
    typer.echo(created["api_key"])


def _expiry_fields(expires_at: Any, now: datetime | None = None) -> dict[str, Any]:
    """A key's expiry for scripts: `expired` and `expires_in_seconds` (negative once past; None: never)."""
    moment = _parse_time(expires_at)
    if moment is None:
        return {"expired": False, "expires_in_seconds": None}
    seconds = (moment - (now or datetime.now(UTC))).total_seconds()
    return {"expired": seconds <= 0, "expires_in_seconds": round(seconds)}


def _expiry_cell(expires_at: Any, now: datetime | None = None) -> str:
    """A key's expiry for people: `never`, `in 29 d (2027-01-31 00:00:00 UTC)`, or `expired 2 h ago (…)`."""
    moment = _parse_time(expires_at)
    if moment is None:
        return "never"
    now = now or datetime.now(UTC)
    absolute = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if moment <= now:
        return f"expired {relative(moment, now)} ({absolute})"
    return f"{relative(moment, now)} ({absolute})"


@keys_app.command("list")
@_errors
def keys_list(
    client_id: Annotated[str | None, typer.Option("--client-id", help="Only this client's keys")] = None,
    include_revoked: Annotated[bool, typer.Option("--include-revoked", help="Revoked keys too")] = False,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 100,
    url: Url = None,
    api_key: ApiKey = None,
    as_json: Json = False,
) -> None:
    """List API keys with their scopes and expiry (admin key needed)."""
    with _client(_need_url(url), api_key) as ains:
        keys = ains.list_keys(client_id=client_id, include_revoked=include_revoked, limit=limit).api_keys
    now = datetime.now(UTC)
    rows = [k.model_dump(mode="json") | _expiry_fields(k.expires_at, now) for k in keys]
    if as_json:
        _print(rows, True)
        return
    shown = [row | {"expires": _expiry_cell(row["expires_at"], now)} for row in rows]
    columns = ["key_id", "kind", "client_id", "name", "scopes", "expires", "created_at"]
    if include_revoked:
        columns.append("revoked_at")
    _print(shown, False, columns=columns, empty="no API keys")


@keys_app.command("revoke")
@_errors
def keys_revoke(key_id: str, url: Url = None, api_key: ApiKey = None, as_json: Json = False) -> None:
    """Revoke an API key (admin key needed)."""
    with _client(_need_url(url), api_key) as ains:
        ains.revoke_key(key_id)
    if as_json:
        _print({"key_id": key_id, "revoked": True}, True)
    else:
        _say(f"revoked API key {key_id}")


# ---------------------------------------------------------------- key scopes, expiry, rotation (SPEC 18)

Scopes = Annotated[
    list[str] | None,
    typer.Option("--scope", help="Limit the key to a scope (repeat for several; default: all), e.g. tasks:read"),
]
Expires = Annotated[
    str | None, typer.Option("--expires", help="When the key stops working: a time (ISO 8601) or a duration (30d, 12h)")
]
RatePerSecond = Annotated[
    float | None, typer.Option("--rate-limit-per-second", help="The key's token bucket refill rate [server default]")
]
RateBurst = Annotated[
    int | None, typer.Option("--rate-limit-burst", help="The key's token bucket size [server default]")
]
registration_tokens_app = typer.Typer(
    help="Registration tokens, for agent_registration=token (admin).", no_args_is_help=True
)
app.add_typer(registration_tokens_app, name="registration-tokens")


def _expiry(value: str | None) -> str | None:
    """`--expires`: an ISO 8601 time as it is, or a duration from now (`90s`, `15m`, `12h`, `30d`, `2w`)."""
    if value is None:
        return None
    from datetime import timedelta

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", value)
    if match:
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[match.group(2)]
        moment = datetime.now(UTC) + timedelta(seconds=float(match.group(1)) * unit)
        return moment.isoformat().replace("+00:00", "Z")
    if _parse_time(value) is None:
        raise typer.BadParameter("a time (2027-01-31T00:00:00Z) or a duration (30d, 12h, 15m)", param_hint="--expires")
    return value


def _key_options(
    scopes: list[str] | None, expires: str | None, per_second: float | None, burst: int | None
) -> dict[str, Any]:
    from ains.core.principal import CLIENT_SCOPES

    for scope in scopes or ():
        if scope not in CLIENT_SCOPES:
            raise typer.BadParameter(f"{scope!r}: one of {', '.join(CLIENT_SCOPES)}", param_hint="--scope")
    options = {
        "scopes": list(scopes) if scopes else None,
        "expires_at": _expiry(expires),
        "rate_limit_per_second": per_second,
        "rate_limit_burst": burst,
    }
    return {key: value for key, value in options.items() if value is not None}


@keys_app.command("rotate")
@_errors
def keys_rotate(
    key_id: str,
    grace_seconds: Annotated[
        float, typer.Option("--grace-seconds", help="How long the old key keeps working", min=0)
    ] = 3600,
    expires: Expires = None,
    url: Url = None,
    api_key: ApiKey = None,
    as_json: Json = False,
) -> None:
    """Replace a key: a new one with the same client, scopes and limits (shown only once); the old one keeps
    working for --grace-seconds (admin key needed)."""
    with _client(_need_url(url), api_key) as ains:
        rotated = ains.rotate_key(key_id, grace_seconds, expires_at=_expiry(expires)).model_dump(mode="json")
    if as_json:
        _print(rotated, True)
        return
    _say(
        f"rotated API key {key_id} into {rotated['key_id']}; the old key works until "
        f"{rotated['old_key_expires_at']}. The new key is shown only now:"
    )
    typer.echo(rotated["api_key"])


@registration_tokens_app.command("create")
@_errors
def registration_tokens_create(
    name: Annotated[str, typer.Option("--name", help="A label for the token")],
    max_uses: Annotated[
        int | None, typer.Option("--max-uses", help="Registrations it allows [unlimited]", min=1)
    ] = None,
    expires: Expires = None,
    url: Url = None,
    api_key: ApiKey = None,
    as_json: Json = False,
) -> None:
    """Create a registration token and print it (shown only once)."""
    with _client(_need_url(url), api_key) as ains:
        token = ains.create_registration_token(name, max_uses=max_uses, expires_at=_expiry(expires))
    made = token.model_dump(mode="json")
    if as_json:
        _print(made, True)
        return
    _say(f"created registration token {made['token_id']}; it is shown only now:")
    typer.echo(made["token"])


@registration_tokens_app.command("list")
@_errors
def registration_tokens_list(
    include_revoked: Annotated[bool, typer.Option("--include-revoked")] = False,
    url: Url = None,
    api_key: ApiKey = None,
    as_json: Json = False,
) -> None:
    """List registration tokens (never the tokens themselves)."""
    with _client(_need_url(url), api_key) as ains:
        tokens = ains.list_registration_tokens(include_revoked=include_revoked).registration_tokens
    rows = [token.model_dump(mode="json") for token in tokens]
    columns = ["token_id", "name", "uses", "max_uses", "expires_at", "revoked_at"]
    _print(rows, as_json, columns=columns, empty="no registration tokens")


@registration_tokens_app.command("revoke")
@_errors
def registration_tokens_revoke(token_id: str, url: Url = None, api_key: ApiKey = None, as_json: Json = False) -> None:
    """Revoke a registration token: agents can no longer register with it."""
    with _client(_need_url(url), api_key) as ains:
        ains.revoke_registration_token(token_id)
    if as_json:
        _print({"token_id": token_id, "revoked": True}, True)
    else:
        _say(f"revoked registration token {token_id}")


# ---------------------------------------------------------------- identities


@app.command()
@_errors
def keygen(
    path: Annotated[
        Path, typer.Argument(help="Where to write the new Ed25519 key file (under .ains/, which git ignores)")
    ] = DEFAULT_IDENTITY,
    as_json: Json = False,
) -> None:
    """Write a new agent identity (Ed25519 key pair) readable only by its owner."""
    from ains.identity import Identity

    if path.exists():
        raise CliError(f"{path} exists; refusing to overwrite an identity (give another PATH)")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    identity = Identity.generate()
    identity.save(path)
    result = {"path": str(path), "public_key": identity.public_key}
    if as_json or not sys.stdout.isatty():
        typer.echo(json.dumps(result))  # scripts read this line
        return
    _say(f"wrote a new identity to {path} (mode 0600); public key {identity.public_key}")


@app.command()
@_errors
def sign(
    key_file: Annotated[Path, typer.Option("--key-file", help="An identity written by `ains keygen`")],
    agent_id: Annotated[str, typer.Option("--agent-id")],
    token: Annotated[bool, typer.Option("--token", help="Sign a key re-issue instead of a registration")] = False,
) -> None:
    """Print the signed JSON fields for a registration (or, with --token, a key re-issue)."""
    from ains.identity import Identity

    if not key_file.exists():
        raise CliError(f"no identity at {key_file}; make one with `ains keygen {key_file}`")
    identity = Identity.load(key_file)
    fields = identity.token_request(agent_id) if token else identity.registration(agent_id)
    typer.echo(json.dumps(fields))


# ---------------------------------------------------------------- tasks

TASK_COLUMNS = ["task_id", "status", "priority", "capability_required", "client_id", "assigned_agent_id", "created_at"]


def _task_record(task: dict[str, Any]) -> dict[str, Any]:
    keys = [
        "task_id", "status", "task_type", "capability_required", "client_id", "priority", "effective_priority",
        "assigned_agent_id", "attempt", "retry_count", "max_retries", "timeout_seconds", "created_at",
        "updated_at", "next_retry_at", "completed_at", "cancelled_at", "cancellation_reason", "error_message",
        "input_data", "result_data",
    ]  # fmt: skip
    return {key: task.get(key) for key in keys if key in task and (task.get(key) is not None or key == "status")}


@tasks_app.command("submit")
@_errors
def tasks_submit(
    capability: Annotated[str, typer.Option("--capability", help="name:version the task needs")],
    task_type: Annotated[str, typer.Option("--type", help="The task's type")] = "task",
    input_json: Annotated[str, typer.Option("--input", help="input_data as JSON")] = "{}",
    priority: Annotated[int, typer.Option(min=1, max=10)] = 5,
    max_retries: Annotated[int, typer.Option(min=0, max=10)] = 3,
    timeout: Annotated[int, typer.Option("--timeout", min=1, max=3600, help="timeout_seconds")] = 300,
    idempotency_key: Annotated[str | None, typer.Option("--idempotency-key")] = None,
    count: Annotated[int, typer.Option("--count", min=1, help="Submit this many (in batches of 100)")] = 1,
    client_id: Annotated[
        str | None, typer.Option("--client-id", help="With the admin key: the client the task is for")
    ] = None,
    url: Url = None,
    api_key: ApiKey = None,
    as_json: Json = False,
) -> None:
    """Submit a task (or --count of them)."""
    try:
        input_data = json.loads(input_json)
    except ValueError as exc:
        raise typer.BadParameter(f"not JSON: {exc}", param_hint="--input") from exc
    fields = {
        "task_type": task_type,
        "capability_required": capability,
        "input_data": input_data,
        "priority": priority,
        "max_retries": max_retries,
        "timeout_seconds": timeout,
    }
    if client_id:
        fields["client_id"] = client_id
    with _client(_need_url(url), api_key) as ains:
        if count == 1:
            task = ains.submit_task(**fields, **({"idempotency_key": idempotency_key} if idempotency_key else {}))
            data = task.model_dump(mode="json")
            if as_json:
                _print(data, True)
                return
            _say(f"submitted task {data['task_id']} ({data['status']}, priority {priority}, needs {capability})")
            return
        ids: list[str] = []
        for start in range(0, count, 100):
            result = ains.submit_batch([fields] * min(100, count - start))
            ids += [item.task_id for item in result.submitted]
    if as_json:
        _print({"submitted": len(ids), "task_ids": ids}, True)
        return
    _say(f"submitted {len(ids)} tasks needing {capability}; the first {ids[0]}, the last {ids[-1]}")


@tasks_app.command("get")
@_errors
def tasks_get(task_id: str, url: Url = None, api_key: ApiKey = None, as_json: Json = False) -> None:
    """Show one task."""
    with _client(_need_url(url), api_key) as ains:
        data = ains.get_task(task_id).model_dump(mode="json")
    _print(data if as_json else _task_record(data), as_json)


@tasks_app.command("attempts")
@_errors
def tasks_attempts(task_id: str, url: Url = None, api_key: ApiKey = None, as_json: Json = False) -> None:
    """A task's attempts: which agent, when, and how each ended."""
    with Remote(url, api_key) as remote:
        attempts = remote.call("GET", f"/ains/tasks/{task_id}/attempts")["attempts"]
    _print(
        attempts,
        as_json,
        columns=["attempt", "agent_id", "assigned_at", "started_at", "finished_at", "outcome", "error"],
        title=None if as_json else f"attempts of {task_id}",
        empty=f"task {task_id} has no attempts yet: no agent has claimed it",
    )


@tasks_app.command("list")
@_errors
def tasks_list(
    status: Annotated[
        str | None, typer.Option(help="PENDING, ASSIGNED, ACTIVE, COMPLETED, FAILED or CANCELLED")
    ] = None,
    capability: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many")] = 50,
    url: Url = None,
    api_key: ApiKey = None,
    as_json: Json = False,
) -> None:
    """List your tasks (all of them with the admin key), newest first."""
    with _client(_need_url(url), api_key) as ains:
        tasks = []
        for task in ains.list_tasks(limit=min(limit, 500), status=status, capability=capability):
            tasks.append(task.model_dump(mode="json"))
            if len(tasks) >= limit:
                break
    _print(tasks, as_json, columns=TASK_COLUMNS, empty="no tasks")


@tasks_app.command("cancel")
@_errors
def tasks_cancel(
    task_id: str,
    reason: Annotated[str, typer.Option()] = "Client requested cancellation",
    url: Url = None,
    api_key: ApiKey = None,
    as_json: Json = False,
) -> None:
    """Cancel a task."""
    with _client(_need_url(url), api_key) as ains:
        data = ains.cancel_task(task_id, reason).model_dump(mode="json")
    if as_json:
        _print(data, True)
        return
    _say(f"cancelled task {task_id} (was held by {data.get('assigned_agent_id') or 'no agent'})")


@tasks_app.command("priority")
@_errors
def tasks_priority(
    task_id: str,
    priority: Annotated[int, typer.Argument(min=1, max=10, help="The new base priority, 1-10")],
    url: Url = None,
    api_key: ApiKey = None,
    as_json: Json = False,
) -> None:
    """Change the priority of a task that is not final."""
    with Remote(url, api_key) as remote:
        data = remote.call("PATCH", f"/ains/tasks/{task_id}/priority", body={"priority": priority})
    if as_json:
        _print(data, True)
        return
    _say(f"task {task_id} now has priority {data['priority']} (effective {data.get('effective_priority')})")


@tasks_app.command("watch")
@_errors
def tasks_watch(
    task_ids: Annotated[list[str], typer.Argument(help="One or more task ids")],
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds (exit code 2)")] = 600,
    interval: Annotated[float, typer.Option(help="Seconds between looks")] = 1.0,
    url: Url = None,
    api_key: ApiKey = None,
    as_json: Json = False,
) -> None:
    """Follow tasks until they are all final, with a progress bar."""
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from ains.client import FINAL_STATUSES

    deadline = time.monotonic() + timeout
    statuses: dict[str, str] = {}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with (
        _client(_need_url(url), api_key) as ains,
        Progress(*columns, disable=as_json or not sys.stderr.isatty(), console=_console(stderr=True)) as bar,
    ):
        progress = bar.add_task("tasks", total=len(task_ids))
        while True:
            for task_id in task_ids:
                if statuses.get(task_id) not in FINAL_STATUSES:
                    statuses[task_id] = ains.get_task(task_id).status
            done = sum(1 for s in statuses.values() if s in FINAL_STATUSES)
            counts = {s: list(statuses.values()).count(s) for s in sorted(set(statuses.values()))}
            bar.update(progress, completed=done, description=" ".join(f"{k}:{v}" for k, v in counts.items()))
            if done == len(task_ids) or time.monotonic() > deadline:
                break
            time.sleep(interval)
    summary = {s: list(statuses.values()).count(s) for s in sorted(set(statuses.values()))}
    open_ids = [task_id for task_id, s in statuses.items() if s not in FINAL_STATUSES]
    if as_json:
        _print({"statuses": statuses, "summary": summary, "timed_out": bool(open_ids)}, True)
    else:
        _say(", ".join(f"{count} {status}" for status, count in summary.items()))
    if open_ids:
        typer.echo(
            f"error: timed out after {timeout:g} s with {len(open_ids)} task(s) not final: {', '.join(open_ids)}",
            err=True,
        )
        raise typer.Exit(2)


# ---------------------------------------------------------------- the queue


@queue_app.command("stats")
@_errors
def queue_stats(url: Url = None, api_key: ApiKey = None, as_json: Json = False) -> None:
    """Queue depth and waits by priority, retries waiting, and the oldest pending task's age."""
    with Remote(url, api_key) as remote:
        data = remote.call("GET", "/ains/queue/metrics")
    if as_json:
        _print(data, True)
        return
    rows = []
    for priority, count in data.get("tasks_by_priority", {}).items():
        rows.append(
            {
                "priority": priority,
                "open": count,
                "claimable": data.get("queue_depth_by_priority", {}).get(priority, 0),
                "avg_wait_s": data.get("avg_wait_time_by_priority", {}).get(priority, "—"),
            }
        )
    _print(rows, False, title="open tasks by priority", empty="the queue is empty: no open tasks")
    _say(
        f"waiting for a retry: {data.get('scheduled_retries', 0)}; "
        f"oldest pending: {data.get('oldest_pending_age_seconds', 0):g} s"
    )


# ---------------------------------------------------------------- agents and trust

AGENT_COLUMNS = ["agent_id", "status", "trust_score", "trust_level", "last_heartbeat_at", "capabilities"]


@agents_app.command("list")
@_errors
def agents_list(
    capability: Annotated[str | None, typer.Option()] = None,
    status: Annotated[str | None, typer.Option()] = None,
    url: Url = None,
    as_json: Json = False,
) -> None:
    """List registered agents."""
    with _client(_need_url(url), None) as ains:
        agents = ains.list_agents(limit=500, capability=capability, status=status).agents
    _print(
        [a.model_dump(mode="json") for a in agents],
        as_json,
        columns=AGENT_COLUMNS + ["max_concurrency"],
        empty="no agents yet: start one with `ains agent run module:agent`",
    )


@agents_app.command("show")
@_errors
def agents_show(agent_id: str, url: Url = None, api_key: ApiKey = None, as_json: Json = False) -> None:
    """One agent: its record, trust metrics and whether its trust chain verifies."""
    with Remote(url, api_key) as remote:
        record = remote.call("GET", f"/ains/agents/{agent_id}")
        trust = remote.call("GET", f"/ains/agents/{agent_id}/trust")
        chain = remote.call("GET", f"/ains/agents/{agent_id}/trust/verify") if api_key else None
    data = record | {"metrics": trust.get("metrics", {}), "trust_chain": chain}
    if as_json:
        _print(data, True)
        return
    data.pop("public_key", None)
    if chain is None:
        data["trust_chain"] = "not checked (needs an API key)"
    elif chain.get("valid"):
        data["trust_chain"] = f"verified, {chain['records_checked']} records"
    else:
        data["trust_chain"] = f"BROKEN at record {chain.get('first_bad_record_id')}"
    _print(data, False)


@agents_app.command("leaderboard")
@_errors
def agents_leaderboard(
    limit: Annotated[int, typer.Option(min=1, max=100)] = 10,
    min_tasks: Annotated[int, typer.Option(min=0)] = 0,
    url: Url = None,
    as_json: Json = False,
) -> None:
    """The most trusted agents."""
    with _client(_need_url(url), None) as ains:
        board = ains.leaderboard(limit=limit, min_tasks=min_tasks).leaderboard
    _print(
        [e.model_dump(mode="json") for e in board],
        as_json,
        title="Leaderboard",
        columns=["agent_id", "display_name", "trust_score", "trust_level", "total_tasks_completed", "success_rate"],
        empty="no agents on the leaderboard yet",
    )


@trust_app.command("history")
@_errors
def trust_history(
    agent_id: str,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    url: Url = None,
    as_json: Json = False,
) -> None:
    """An agent's trust records, newest first."""
    with Remote(url, None) as remote:
        records = remote.call("GET", f"/ains/agents/{agent_id}/trust/history", params={"limit": limit})["records"]
    _print(
        records,
        as_json,
        columns=["seq", "event_type", "trust_delta", "trust_score_after", "task_id", "reason", "created_at"],
        empty=f"agent {agent_id} has no trust records yet",
    )


@trust_app.command("verify")
@_errors
def trust_verify(agent_id: str, url: Url = None, api_key: ApiKey = None, as_json: Json = False) -> None:
    """Recompute an agent's trust hash chain; exit 1 when it is broken."""
    with Remote(url, api_key) as remote:
        check = remote.call("GET", f"/ains/agents/{agent_id}/trust/verify")
    if as_json:
        _print(check, True)
    elif check["valid"]:
        _say(f"trust chain of {agent_id} verified: {check['records_checked']} records intact")
    if not check["valid"]:
        if not as_json:
            typer.echo(
                f"error: trust chain of {agent_id} is broken at record {check['first_bad_record_id']} "
                f"({check['records_checked']} checked)",
                err=True,
            )
        raise typer.Exit(1)


@trust_app.command("adjust")
@_errors
def trust_adjust(
    agent_id: str,
    delta: Annotated[float, typer.Argument(min=-1.0, max=1.0, help="How much to move the score (-1 to 1)")],
    reason: Annotated[str, typer.Option("--reason", help="Why; recorded in the trust chain and the audit log")],
    url: Url = None,
    api_key: ApiKey = None,
    as_json: Json = False,
) -> None:
    """Move an agent's trust score (admin key needed)."""
    with Remote(url, api_key) as remote:
        data = remote.call("POST", f"/ains/agents/{agent_id}/trust/adjust", body={"delta": delta, "reason": reason})
    if as_json:
        _print(data, True)
        return
    record = data["record"]
    _say(
        f"trust of {agent_id} moved {record['trust_score_before']} → {data['trust_score']} "
        f"({data['trust_level']}); record {record['record_id']}"
    )


# ---------------------------------------------------------------- webhooks

WEBHOOK_COLUMNS = [
    "webhook_id", "url", "events", "active", "consecutive_failures", "last_success_at", "last_failure_at"
]  # fmt: skip


@webhooks_app.command("list")
@_errors
def webhooks_list(
    client_id: Annotated[str | None, typer.Option("--client-id", help="A client's webhooks")] = None,
    agent_id: Annotated[str | None, typer.Option("--agent-id", help="An agent's webhooks")] = None,
    url: Url = None,
    api_key: ApiKey = None,
    as_json: Json = False,
) -> None:
    """A client's (or an agent's) webhooks and their health."""
    if bool(client_id) == bool(agent_id):
        raise typer.BadParameter("give one of --client-id or --agent-id", param_hint="--client-id")
    path = f"/ains/clients/{client_id}/webhooks" if client_id else f"/ains/agents/{agent_id}/webhooks"
    with Remote(url, api_key) as remote:
        hooks = remote.call("GET", path)["webhooks"]
    _print(hooks, as_json, columns=WEBHOOK_COLUMNS, empty="no webhooks")


@webhooks_app.command("deliveries")
@_errors
def webhooks_deliveries(
    webhook_id: str,
    limit: Annotated[int, typer.Option(min=1, max=200)] = 50,
    url: Url = None,
    api_key: ApiKey = None,
    as_json: Json = False,
) -> None:
    """A webhook's deliveries, newest first."""
    with Remote(url, api_key) as remote:
        deliveries = remote.call("GET", f"/ains/webhooks/{webhook_id}/deliveries", params={"limit": limit})
    _print(
        deliveries["deliveries"],
        as_json,
        columns=["delivery_id", "event", "task_id", "status", "attempts", "response_code", "last_error", "updated_at"],
        empty=f"webhook {webhook_id} has no deliveries yet",
    )


@webhooks_app.command("redeliver")
@_errors
def webhooks_redeliver(
    webhook_id: str, delivery_id: str, url: Url = None, api_key: ApiKey = None, as_json: Json = False
) -> None:
    """Send a finished delivery again."""
    with Remote(url, api_key) as remote:
        data = remote.call("POST", f"/ains/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver")
    if as_json:
        _print(data, True)
        return
    _say(f"delivery {delivery_id} queued to be sent again ({data['event']} of task {data['task_id']})")


# ---------------------------------------------------------------- the audit log


@audit_app.command("list")
@_errors
def audit_list(
    action: Annotated[str | None, typer.Option(help="Only this action, e.g. task.cancel")] = None,
    actor: Annotated[str | None, typer.Option(help="Only this actor's")] = None,
    target_id: Annotated[str | None, typer.Option("--target", help="Only about this id")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    url: Url = None,
    api_key: ApiKey = None,
    as_json: Json = False,
) -> None:
    """Audited actions, newest first (admin key needed)."""
    with Remote(url, api_key) as remote:
        page = remote.call(
            "GET",
            "/ains/audit-logs",
            params={"action": action, "actor": actor, "target_id": target_id, "limit": limit},
        )
    _print(
        page["entries"],
        as_json,
        columns=["id", "created_at", "actor", "action", "target_type", "target_id", "details"],
        empty="nothing audited yet" if not (action or actor or target_id) else "no entry matches",
    )


# ---------------------------------------------------------------- running an agent


@agent_app.command("run")
@_errors
def agent_run(target: Annotated[str, typer.Argument(help="module:attribute of an ains.agent.Agent")]) -> None:
    """Run an agent defined in Python until SIGTERM or SIGINT."""
    import importlib

    from ains.agent import Agent
    from ains.core.logging import configure_logging

    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise CliError(f"expected module:attribute (like my_agent:agent), got {target!r}", code=2)
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise CliError(f"no module named {module_name!r} here ({os.getcwd()}) or on the Python path") from exc
        raise CliError(f"importing {module_name}: {exc}") from exc
    agent = getattr(module, attribute, None)
    if agent is None:
        raise CliError(f"module {module_name} has no {attribute!r}")
    if not isinstance(agent, Agent):
        raise CliError(f"{target} is a {type(agent).__name__}, not an ains.agent.Agent")
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    agent.run()


# ---------------------------------------------------------------- workflows and schedules (SPEC 17)

# `workflows submit|show` and `schedules list|create|pause|delete` live with the workflows domain
# (ains.workflows.cli); the operator's other commands join those same groups here.
from ains.workflows.cli import register as _register_workflows  # noqa: E402
from ains.workflows.cli import schedules_app, workflows_app  # noqa: E402

_register_workflows(app)


def _step_counts(workflow: dict[str, Any]) -> str:
    counts = workflow.get("step_counts") or {}
    return (
        f"{counts.get('completed', 0)} completed, {counts.get('failed', 0)} failed, "
        f"{counts.get('cancelled', 0)} cancelled, of {counts.get('total', 0)}"
    )


@workflows_app.command("list")
@_errors
def workflows_list(
    status: Annotated[str | None, typer.Option(help="RUNNING, COMPLETED, FAILED or CANCELLED")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    url: Url = None,
    api_key: ApiKey = None,
    as_json: Json = False,
) -> None:
    """Your workflows (all of them with the admin key), newest first."""
    with Remote(url, api_key) as remote:
        rows = remote.call("GET", "/ains/workflows", params={"status": status, "limit": limit})["workflows"]
    if not as_json:
        rows = [row | {"steps": _step_counts(row)} for row in rows]
    _print(
        rows,
        as_json,
        columns=["workflow_id", "name", "status", "steps", "client_id", "created_at"],
        empty="no workflows yet: submit one with `ains workflows submit FILE`",
    )


@workflows_app.command("cancel")
@_errors
def workflows_cancel(
    workflow_id: str,
    reason: Annotated[str, typer.Option()] = "Client requested cancellation",
    url: Url = None,
    api_key: ApiKey = None,
    as_json: Json = False,
) -> None:
    """Cancel a workflow's steps that are not final."""
    with Remote(url, api_key) as remote:
        workflow = remote.call("POST", f"/ains/workflows/{workflow_id}/cancel", body={"reason": reason})
    if as_json:
        _print(workflow, True)
        return
    _say(f"workflow {workflow_id} is {workflow['status']}: {_step_counts(workflow)}")


@schedules_app.command("show")
@_errors
def schedules_show(schedule_id: str, url: Url = None, api_key: ApiKey = None, as_json: Json = False) -> None:
    """One schedule: its expression, zone, the task it submits, and its next and last run."""
    with Remote(url, api_key) as remote:
        _print(remote.call("GET", f"/ains/schedules/{schedule_id}"), as_json)


@schedules_app.command("resume")
@_errors
def schedules_resume(schedule_id: str, url: Url = None, api_key: ApiKey = None, as_json: Json = False) -> None:
    """Start a paused schedule again from its next tick."""
    with Remote(url, api_key) as remote:
        schedule = remote.call("PATCH", f"/ains/schedules/{schedule_id}", body={"active": True})
    if as_json:
        _print(schedule, True)
        return
    _say(f"schedule {schedule_id} resumed; next run {_when(schedule.get('next_run_at')) or 'not set'}")
