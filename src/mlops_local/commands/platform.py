"""`mlops demo` and `mlops local serve`: the platform on embedded moto."""

from __future__ import annotations

import click


def register(cli: click.Group) -> None:
    """Add `demo` and `local serve` to the CLI."""
    cli.add_command(demo)
    cli.add_command(local)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary as the last line of stdout.")
def demo(as_json: bool) -> None:
    """Run the whole loop locally on embedded moto and check every story.

    \b
    Example:
      mlops demo --json
    """
    from ..demo import main as demo_main

    raise SystemExit(demo_main(as_json=as_json))


@click.group()
def local() -> None:
    """The local runtime (moto server + the platform)."""


@local.command()
@click.option("--port", type=int, default=8080, show_default=True, help="Port of the scoring API.")
@click.option("--json", "as_json", is_flag=True, help="First stdout line: JSON with the endpoints.")
def serve(port: int, as_json: bool) -> None:
    """Moto server + the platform + the scoring API on 127.0.0.1.

    \b
    Example:
      mlops local serve --port 8080
    """
    from ..serve import main as serve_main

    raise SystemExit(serve_main(port=port, as_json=as_json))
