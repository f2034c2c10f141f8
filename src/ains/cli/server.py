"""Running and administering an AINS installation: `serve`, `worker`, `db upgrade`, and the admin's API keys and
registration tokens (`keys create` without --url writes to the local database directly)."""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
from collections.abc import Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from ains.cli.common import (
    ApiKey,
    CliError,
    Json,
    Url,
    _client,
    _errors,
    _need_url,
    _parse_time,
    _print,
    _say,
    relative,
)
from ains.core.clock import exact_text, utc_text
from ains.core.config import Settings

db_app = typer.Typer(help="The local database: migrations.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
registration_tokens_app = typer.Typer(
    help="Registration tokens, for agent_registration=token (admin).", no_args_is_help=True
)

Create = Annotated[bool, typer.Option("--create", help="Create the database if there is none yet")]
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


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run `main` on uvloop where it is installed (it comes with uvicorn[standard], and the server runs on it):
    the worker's webhook dispatcher spent a third of its time in the standard loop's selector and sockets."""
    try:
        import uvloop
    except ImportError:  # Windows: no uvloop
        asyncio.run(main)
    else:
        uvloop.run(main)


# How long the server keeps an idle connection open: longer than clients keep theirs (httpx and the SDK: 5 s).
# With uvicorn's default, also 5 s, a client could send a request on a connection the server was closing at that
# very moment, and see it dropped with no answer.
KEEP_ALIVE_SECONDS = 75


# PROMETHEUS_MULTIPROC_DIR (prometheus_client also reads it lower-case), as the command was started with. It is taken
# out of the environment before anything imports the metrics, so that only the processes that count and serve them
# (`serve`, `worker`, and the server processes of `serve --workers N`) write files there: with the variable merely
# present, even empty, prometheus_client writes each process's files, into the working directory when it is empty.
_METRICS_VARIABLES = ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir")
_metrics_directory_given: tuple[str, str] | None = None  # (the variable's name, its value)


def set_aside_metrics_directory() -> None:
    """Take PROMETHEUS_MULTIPROC_DIR out of this process's environment (see `_metrics_directory`); the handlers an
    `ains agent run` runs do not see it either."""
    global _metrics_directory_given
    for name in _METRICS_VARIABLES:
        value = os.environ.pop(name, "")
        if value and _metrics_directory_given is None:
            _metrics_directory_given = (name, value)


def _metrics_directory() -> str | None:
    """The directory named by PROMETHEUS_MULTIPROC_DIR, checked by writing a file there; one that is not there or
    cannot be written to is one line, before anything starts (the first counter would otherwise fail with a
    traceback as the app is imported). An empty value is no directory."""
    set_aside_metrics_directory()
    if _metrics_directory_given is None:
        return None
    name, directory = _metrics_directory_given
    try:
        handle, probe = tempfile.mkstemp(dir=directory, prefix=".ains-probe-")
        os.close(handle)
        os.unlink(probe)
    except OSError:
        typer.echo(
            f"error: {name}={directory} is not a directory this process can write to; the processes that "
            "share /metrics keep their counters there. Create it, or unset it.",
            err=True,
        )
        raise typer.Exit(2) from None
    return directory


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Server processes sharing the port (PostgreSQL only)")] = 1,
) -> None:
    """Run the API server and the console (migrations are applied on start)."""
    import uvicorn

    metrics_directory = _metrics_directory()
    if metrics_directory and workers == 1:
        os.environ[_METRICS_VARIABLES[0]] = metrics_directory  # this process counts there, as it imports the app
    from ains.core.logging import configure_logging
    from ains.main import create_app, prepare_workers, shared_counters

    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    if workers == 1:
        uvicorn.run(
            create_app(settings),
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
        )
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
    with shared_counters(metrics_directory):
        uvicorn.run(
            "ains.server_process:app",
            factory=True,
            workers=workers,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
        )


def worker() -> None:
    """Run only the background duties (timeouts, leases, stale agents, retries), for scaling out.

    Run servers with AINS_RUN_BACKGROUND=false and any number of workers on one PostgreSQL.
    """
    import signal

    metrics_directory = _metrics_directory()
    if metrics_directory:
        os.environ[_METRICS_VARIABLES[0]] = metrics_directory  # this process counts there, as it imports the app
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

    run_loop(run())


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
        from ains.core.work import Work

        settings = _local_database(create)
        _prepare(settings)

        async def make() -> dict[str, Any]:
            db = Database(settings.resolved_database_url)
            try:
                async with db.transaction() as session:
                    row, secret = await service.create_client_key(
                        Work(session, utcnow(), settings),
                        Principal("admin", ADMIN_ID),
                        client_id,
                        name,
                        options.get("scopes"),
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
    absolute = exact_text(moment)
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


def _expiry(value: str | None) -> str | None:
    """`--expires`: an ISO 8601 time as it is, or a duration from now (`90s`, `15m`, `12h`, `30d`, `2w`)."""
    if value is None:
        return None
    from datetime import timedelta

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", value)
    if match:
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[match.group(2)]
        moment = datetime.now(UTC) + timedelta(seconds=float(match.group(1)) * unit)
        return utc_text(moment)
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
