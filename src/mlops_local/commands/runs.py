"""`mlops runs` commands."""

from __future__ import annotations

import click


def register(cli: click.Group) -> None:
    """Add the runs commands to the CLI."""
