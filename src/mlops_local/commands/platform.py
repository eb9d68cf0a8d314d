"""`mlops demo` and `mlops local serve`: the platform on embedded moto."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click


def register(cli: click.Group) -> None:
    """Add `demo` and `local serve` to the CLI."""
    cli.add_command(demo)
    cli.add_command(local)


def load_families(paths: list[Path], one_per_file: bool = False) -> list[Any]:
    """Validated families from family files, in order (a file may hold several under `families:` unless
    `one_per_file`). Raises FamilyFileError (exit 2) naming the file, the field and the problem, or a click
    usage error for two families with one name or one taking the built-in family's name."""
    if not paths:
        return []
    from ..familyfile import load_families_file, load_family_file
    from ..serve import check_families

    families = []
    for path in paths:
        families += [load_family_file(path)] if one_per_file else load_families_file(path)
    try:
        check_families(families)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--family'") from None
    return families


def _family_with_data(value: str) -> tuple[Path, Path | None]:
    """FILE or FILE=DATA (a FILE whose own name holds '=' is taken whole when it exists)."""
    if Path(value).is_file() or "=" not in value:
        return Path(value), None
    family, _, data = value.partition("=")
    return Path(family), Path(data)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary as the last line of stdout.")
@click.option("--family", "family_specs", multiple=True, metavar="FILE[=DATA]",
              help="Also run your family declared in FILE (YAML or JSON; see `mlops families validate`). With "
                   "=DATA (a CSV or .csv.gz file), after the built-in stories its first model is trained on DATA, "
                   "gated, and goes live if it passes; the summary reports the outcome. Without data the family "
                   "is registered and its route exists, but it has no model. Repeatable.")
def demo(as_json: bool, family_specs: tuple[str, ...]) -> None:
    """Run the whole loop locally on embedded moto and check every story.

    Exits 1 when a story did not behave as described, or when a family given with data did not go live.

    \b
    Examples:
      mlops demo --json
      mlops demo --family my-family.yaml=loans.csv
    """
    from ..demo import UserFamily
    from ..demo import main as demo_main

    specs = [_family_with_data(value) for value in family_specs]
    for _, data in specs:
        if data is not None and not data.is_file():
            raise click.BadParameter(f"data file {str(data)!r} does not exist", param_hint="'--family'")
    families = load_families([path for path, _ in specs], one_per_file=True)
    users = [UserFamily(family, path, data) for family, (path, data) in zip(families, specs, strict=True)]
    raise SystemExit(demo_main(as_json=as_json, families=users))


@click.group()
def local() -> None:
    """The local runtime (moto server + the platform)."""


@local.command()
@click.option("--port", type=int, default=8080, show_default=True, help="Port of the scoring API.")
@click.option("--json", "as_json", is_flag=True, help="First stdout line: JSON with the endpoints.")
@click.option("--family", "family_files", multiple=True,
              type=click.Path(path_type=Path), metavar="FILE",
              help="Also serve the families declared in FILE (YAML or JSON: one family, or several under "
                   "`families:`), beside the built-in credit-risk one. Each has no model until data is uploaded "
                   "(mlops upload DATA.csv --family NAME). Repeatable.")
def serve(port: int, as_json: bool, family_files: tuple[Path, ...]) -> None:
    """Moto server + the platform + the scoring API on 127.0.0.1.

    The built-in credit-risk family starts with a live model. The endpoints are printed (--json: as the first
    line) and written to .mlops/local-serve.json in the current folder, where `mlops runs` and `mlops upload`
    find the server; the file is removed when the server stops (Ctrl-C, SIGTERM).

    State is in memory only: stopping the server loses the registry, models, runs, data sets and decision
    records. Keep your data and family files, and upload again after a restart.

    \b
    Examples:
      mlops local serve --port 8080
      mlops local serve --family my-family.yaml --family other.json
    """
    from ..serve import main as serve_main

    families = load_families(list(family_files))
    raise SystemExit(serve_main(port=port, as_json=as_json, families=families))
