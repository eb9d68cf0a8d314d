"""`mlops`: the developer and operator CLI. Each concern's commands live in mlops_local/commands/<concern>.py."""

from __future__ import annotations

import sys

import click

from .commands import audit, drift, families, labels, performance, platform, reports, rollouts, runs, versions

EXIT_CODES = """\b
Exit codes:
  0  success (for upload --follow: the model went live; for reproduce: the same artifact)
  1  the operation ran but its outcome is negative (model rejected, rolled back, run failed, not reproduced)
  2  usage error (bad option, unknown family, version or run, invalid file)
  3  the platform could not be reached (no local server found, stack outputs unreadable)
  4  refused: a rollout is running (the family's rollout lock), or the registry does not allow that change
"""


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
             epilog=EXIT_CODES)
@click.version_option(package_name="mlops-platform", prog_name="mlops")
def cli() -> None:
    """Serverless MLOps platform: run it locally, declare families, upload data, follow runs, and operate models
    (versions, compare, history, promote, rollback, drift, labels and performance, reproduce, report; a console at
    `local serve`/console)."""


platform.register(cli)
families.register(cli)
runs.register(cli)
audit.register(cli)
versions.register(cli)
rollouts.register(cli)
drift.register(cli)
labels.register(cli)
performance.register(cli)
reports.register(cli)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `mlops` script; returns the process exit code."""
    try:
        # Without standalone mode click returns the code of a raised click.exceptions.Exit instead of raising it.
        code = cli.main(args=argv, prog_name="mlops", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 1
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
