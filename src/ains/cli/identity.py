"""An agent's side of `ains`: a new identity (`keygen`), the signed fields of a registration (`sign`), and running
an agent defined in Python (`agent run`)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from ains.cli.common import CliError, Json, _errors, _say
from ains.core.config import Settings

agent_app = typer.Typer(help="Run an agent.", no_args_is_help=True)
DEFAULT_IDENTITY = Path(".ains") / "agent.key"  # .ains/ is the data directory, which .gitignore covers


# ---------------------------------------------------------------- identities


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
