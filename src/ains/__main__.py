"""`python -m ains` is the `ains` command."""

from ains.cli import app

app()
