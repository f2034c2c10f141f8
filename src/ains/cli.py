"""The `ains` command: serve, worker-less operations on the database, and identity helpers."""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path
from typing import Annotated

import typer

from ains.core.config import Settings

app = typer.Typer(help="AINS, the Agent Intelligence Network System.", no_args_is_help=True)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
keys_app = typer.Typer(help="Client API keys (directly on the database).", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
) -> None:
    """Run the API server (migrations are applied on start)."""
    import uvicorn

    from ains.core.logging import configure_logging
    from ains.main import create_app

    settings = Settings()
    configure_logging(settings.log_level)
    uvicorn.run(create_app(settings), host=host, port=port, log_config=None, access_log=False)


@app.command()
def worker() -> None:
    """Run only the background duties (timeouts, leases, stale agents, retries), for scaling out.

    Run servers with AINS_RUN_BACKGROUND=false and any number of workers on one PostgreSQL.
    """
    import signal

    from ains.background.runner import DutyRunner
    from ains.core.logging import configure_logging
    from ains.main import open_context

    settings = Settings()
    configure_logging(settings.log_level)

    async def run() -> None:
        ctx = await open_context(settings, with_admin_key=False)
        runner = DutyRunner(ctx)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, lambda: asyncio.ensure_future(runner.stop()))
        runner.start()
        try:
            await runner.wait()
        finally:
            await runner.stop()
            await ctx.db.dispose()

    asyncio.run(run())


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply the migrations to AINS_DATABASE_URL (or the embedded SQLite file)."""
    from ains.migrate import upgrade

    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url, revision)
    typer.echo(f"database at {revision}")


@keys_app.command("create")
def keys_create(
    client_id: Annotated[str, typer.Option("--client-id", help="The client the key acts as")],
    name: Annotated[str, typer.Option("--name", help="A label for the key")],
) -> None:
    """Create a client API key and print it (shown only once)."""
    from ains.auth import service
    from ains.auth.principal import ADMIN_ID, Principal
    from ains.core.clock import utcnow
    from ains.core.database import Database
    from ains.core.schemas import AGENT_ID_PATTERN
    from ains.migrate import upgrade

    if not re.fullmatch(AGENT_ID_PATTERN, client_id):
        raise typer.BadParameter("3-64 characters of A-Z a-z 0-9 _ . : -", param_hint="--client-id")
    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)

    async def create() -> tuple[str, str]:
        db = Database(settings.resolved_database_url)
        try:
            async with db.transaction() as session:
                row, secret = await service.create_client_key(
                    session, Principal("admin", ADMIN_ID), client_id, name, None, utcnow()
                )
            return row.key_id, secret
        finally:
            await db.dispose()

    key_id, secret = asyncio.run(create())
    typer.echo(json.dumps({"key_id": key_id, "client_id": client_id, "api_key": secret}))


@app.command()
def keygen(path: Annotated[Path, typer.Argument(help="Where to write the new Ed25519 key file")]) -> None:
    """Write a new agent identity (Ed25519 key pair) readable only by its owner."""
    from ains.identity import Identity

    if path.exists():
        raise typer.BadParameter(f"{path} exists; refusing to overwrite an identity", param_hint="PATH")
    identity = Identity.generate()
    identity.save(path)
    typer.echo(json.dumps({"path": str(path), "public_key": identity.public_key}))


@app.command()
def sign(
    key_file: Annotated[Path, typer.Option("--key-file", help="An identity written by `ains keygen`")],
    agent_id: Annotated[str, typer.Option("--agent-id")],
    token: Annotated[bool, typer.Option("--token", help="Sign a key re-issue instead of a registration")] = False,
) -> None:
    """Print the signed JSON fields for a registration (or, with --token, a key re-issue)."""
    from ains.identity import Identity

    identity = Identity.load(key_file)
    fields = identity.token_request(agent_id) if token else identity.registration(agent_id)
    typer.echo(json.dumps(fields))


def main() -> None:  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()
