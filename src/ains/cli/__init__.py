"""The `ains` command: the server, local database chores, agent identities, and an operator's remote commands.

Every command says what it did, prints tables and records for people (whole ids, times relative and absolute)
and JSON with --json for scripts, and on any error prints one line to stderr and exits non-zero: 1 for an error
(the server's answer, a server that cannot be reached, bad input), 2 for a usage error or a wait that ran out.
Set AINS_DEBUG=1 to see the traceback of an unexpected error instead.

This module builds the command tree; the commands live in `server` (serve, worker, the database, keys),
`identity` (keygen, sign, agent run) and `remote` (what asks a running server); `common` holds what they share.
"""

from __future__ import annotations

import sys
from typing import Any

import typer

from ains.cli import identity, remote, server
from ains.cli.common import _click_classes
from ains.workflows.cli import register as _register_workflows

__all__ = ["app"]


class _OneLineErrors(typer.Typer):
    """`ains` itself: a usage error (a missing argument, a bad option value) is one line too, exit code 2."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        server.set_aside_metrics_directory()  # only the commands that serve metrics count in that directory
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
# In this order: `ains --help` lists the commands, then the groups, each in the order they were added.
app.command()(server.serve)
app.command()(server.worker)
app.command()(identity.keygen)
app.command()(identity.sign)
app.add_typer(server.db_app, name="db")
app.add_typer(server.keys_app, name="keys")
app.add_typer(remote.tasks_app, name="tasks")
app.add_typer(remote.agents_app, name="agents")
app.add_typer(identity.agent_app, name="agent")
app.add_typer(remote.queue_app, name="queue")
app.add_typer(remote.webhooks_app, name="webhooks")
app.add_typer(remote.trust_app, name="trust")
app.add_typer(remote.audit_app, name="audit")
app.add_typer(server.registration_tokens_app, name="registration-tokens")
_register_workflows(app)  # `workflows` and `schedules`, whose list/cancel/show/resume `remote` adds
