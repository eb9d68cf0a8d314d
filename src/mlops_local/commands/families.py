"""`mlops families` commands."""

from __future__ import annotations

import click


def register(cli: click.Group) -> None:
    """Add the families commands to the CLI."""
