"""`mlops families`: declare model families in files (infer a starting file from data, validate files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..client import TargetOptions, connect, echo_json, platform_options, reaching

DELIMITER_CHOICES = {"comma": ",", "semicolon": ";", "tab": "\t", "pipe": "|"}


class FamiliesUsageError(click.ClickException):
    """Bad input to a families command (unreadable data, unknown column...): exit code 2."""

    exit_code = 2


def register(cli: click.Group) -> None:
    """Add the `families` group to the CLI."""
    cli.add_command(families)


def capture_warning(family: Any) -> str | None:
    """The warning line for a declaration that captures nothing (capture_sample_rate 0, allowed: some families
    must not capture), or None: drift monitoring and canary checks then get no captured traffic."""
    if float(family.capture_sample_rate) != 0.0:
        return None
    return (f"warning: family {family.name}: capture_sample_rate 0 captures no scored request, so drift monitoring "
            "and canary checks get no captured traffic for it: drift checks have nothing to judge, and a later "
            "model's canary cannot compare its predictions with the live model's: it is judged on errors and p99 "
            "latency only")


@click.group()
def families() -> None:
    """Model families declared in files (YAML or JSON; schema: docs/family.schema.json, guide: docs/families.md),
    registered, updated and retired at run time; every change is a new configuration version with who, when, why.

    \b
    Start from your data, review the file, check it, register it:
      mlops families infer loans.csv --target Status --name loans -o loans.yaml
      mlops families validate loans.yaml --data loans.csv
      mlops families apply loans.yaml --reason "first declaration"
    \b
    See and change what a platform serves:
      mlops families list
      mlops families show credit-risk --stack MlopsPlatform --region eu-west-1
      mlops families retire old-model --reason "replaced by loans"
    """


@families.command()
@click.argument("data", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--target", required=True,
              help="The column to predict: two labels, three or more (multiclass), or numbers (regression).")
@click.option("--task", type=click.Choice(["binary_classification", "multiclass_classification", "regression"]),
              default=None, help="What the family predicts. Guessed when absent (two labels: binary; a numeric "
                                 "target with many distinct values: regression; three or more labels: "
                                 "multiclass), and the guess is said.")
@click.option("--name", required=True, help="The family's name: lowercase letters, digits and '-'.")
@click.option("--positive-label", default=None,
              help="The target value of the positive class (its probability is the score). Guessed when absent "
                   "(a name like bad/yes/1/true/default, else the minority class), and the guess is said.")
@click.option("--sensitive", default=None,
              help="A column to check fairness on (not used as a feature). No fairness gate without it.")
@click.option("--delimiter", type=click.Choice(list(DELIMITER_CHOICES)), default=None,
              help="The CSV delimiter; detected among , ; tab | when absent (and then not written to the file).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the family file here (YAML) instead of standard output.")
@click.option("--force", is_flag=True, help="Overwrite the output file when it exists.")
def infer(data: Path, target: str, task: str | None, name: str, positive_label: str | None, sensitive: str | None,
          delimiter: str | None, output: Path | None, force: bool) -> None:
    """Write a starting family file for DATA (CSV or .csv.gz) to edit: feature kinds, categories, domains,
    missing-value handling and the positive label. Notes (guesses, columns left out, problems) go to stderr.

    \b
    Examples:
      mlops families infer credit.csv --target Status --name credit -o credit.yaml
      mlops families infer loans.csv.gz --target default --positive-label 1 --sensitive sex --name loans
    """
    from mlops.core.errors import DataSetError

    from ..familyfile import dump_family
    from ..infer import InferenceError, infer_family

    if output is not None and output.exists() and not force:
        raise FamiliesUsageError(f"{output} exists; pass --force to overwrite it")
    try:
        family, notes = infer_family(data, target, name, positive_label=positive_label, sensitive=sensitive,
                                     delimiter=None if delimiter is None else DELIMITER_CHOICES[delimiter], task=task)
    except (InferenceError, DataSetError) as exc:
        raise FamiliesUsageError(f"{data}: {exc}") from None
    for note in notes:
        click.echo(f"note: {note}", err=True)
    # Problems and hints stay with the file, not only in this terminal's output.
    flagged = "".join(f"# {note}\n" for note in notes if note.startswith(("PROBLEM", "HINT")))
    text = (f"# Family inferred by `mlops families infer` from {data.name}: review the guesses (positive_label, "
            "kinds,\n# categories, domains, missing) before uploading. Fields: docs/families.md\n"
            + flagged + dump_family(family))
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise FamiliesUsageError(f"cannot write {output}: {exc.strerror}") from None
    click.echo(f"wrote {output} (family {family.name}, {len(family.features)} features)", err=True)


@families.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--data", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Also read this data set (CSV, .csv.gz, or .parquet with pyarrow) with each family, as "
                   "training would.")
def validate(files: tuple[Path, ...], data: Path | None) -> None:
    """Check family files (YAML or JSON; one family, or several under `families:`). Problems name the file, the
    field path and the problem. Exits 2 when any file (or the data set) is invalid.

    \b
    Examples:
      mlops families validate credit.yaml
      mlops families validate credit.yaml --data credit.csv
    """
    from mlops.core.errors import DataSetError
    from mlops.data.columnar import parse_parquet
    from mlops.data.datasets import distinct_figures, parse_dataset

    from ..familyfile import FamilyFileError, load_families_file

    failed = False
    payload = data.read_bytes() if data is not None else b""
    for path in files:
        try:
            declared = load_families_file(path)
        except FamilyFileError as exc:
            click.echo(f"invalid: {exc.message}", err=True)
            failed = True
            continue
        for family in declared:
            sensitive = family.sensitive_attribute or "none (no fairness gate)"
            decision = (f"positive label {family.positive_label!r}, threshold {family.threshold}"
                        if family.task == "binary_classification" else family.task)
            click.echo(f"ok: {path}: family {family.name}: {len(family.features)} features, target "
                       f"{family.target!r}, {decision}, sensitive attribute {sensitive}")
            warning = capture_warning(family)
            if warning:
                click.echo(warning, err=True)
            if data is None:
                continue
            try:
                # Parquet trains on the sagemaker engine; here it is read as that engine reads it (pyarrow).
                parse = parse_parquet if data.name.lower().endswith(".parquet") else parse_dataset
                dataset = parse(payload, family, data.name)
            except DataSetError as exc:
                click.echo(f"invalid: {data} with family {family.name}: {exc.message}", err=True)
                failed = True
                continue
            if family.task == "binary_classification":
                counts = [int((dataset.y == i).sum()) for i in (0, 1)]
                click.echo(f"ok: {data}: {dataset.rows} rows; classes {dataset.classes[0]!r} {counts[0]} "
                           f"(negative), {dataset.classes[1]!r} {counts[1]} (positive)")
            elif family.task == "regression":
                low, high = distinct_figures([dataset.y.min(), dataset.y.max()])
                click.echo(f"ok: {data}: {dataset.rows} rows; target from {low} to {high}")
            else:
                counts = [int((dataset.y == i).sum()) for i in range(len(dataset.classes))]
                click.echo(f"ok: {data}: {dataset.rows} rows; classes " + ", ".join(
                    f"{c!r} {n}" for c, n in zip(dataset.classes, counts, strict=True)))
            for warning in dataset.warnings:
                click.echo(f"note: {warning}", err=True)
    if failed:
        raise click.exceptions.Exit(2)


@families.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--reason", default=None, metavar="TEXT",
              help="Why the change is made, recorded with it (default, also for an empty or blank TEXT: "
                   "`mlops families apply <file name>`).")
@platform_options
def apply(file: Path, reason: str | None, target: TargetOptions) -> None:
    """Register the families declared in FILE, or update them: each change becomes the family's next
    configuration version, recorded with your principal, the time and the reason; a declaration equal to the
    current one changes nothing. A retired family becomes active again. The file is checked first exactly as
    `mlops families validate` does (exit 2 when invalid). Goes through the platform's IAM-authorized management
    route (PUT /families/NAME): `mlops local serve`, or a deployed stack with your credentials (SigV4). A
    `serving: dedicated` family is refused (exit 2): its own scoring function comes from a deployment (cdk.json's
    mlops.families); at run time register families with `serving: shared`. A declaration with
    capture_sample_rate 0 is applied with a warning: drift and canary checks get no captured traffic for it.

    \b
    Examples:
      mlops families apply loans.yaml --reason "first declaration"
      mlops families apply families.yaml --stack MlopsPlatform --profile ops --json
    """
    from ..familyfile import load_families_file

    declared = load_families_file(file)  # FamilyFileError: exit 2 naming the file, field and problem
    platform = connect(target)
    api = platform.management()
    applied: list[dict] = []
    for family in declared:
        try:
            answer = api.request("PUT", f"/families/{family.name}", {
                "family": family.model_dump(mode="json"),
                "reason": reason if reason and reason.strip() else f"mlops families apply {file.name}"})
        except click.ClickException as exc:
            done = ", ".join(f"{a['name']} ({a['change']})" for a in applied)
            exc.message = f"{family.name}: {exc.message}" + (f" (applied before it: {done})" if done else "")
            raise
        summary = answer["family"]
        applied.append({"name": summary["name"], "change": answer["change"],
                        "config_version": summary["config_version"], "status": summary["status"]})
    for family in declared:  # on stderr: --json output stays one object
        warning = capture_warning(family)
        if warning:
            click.echo(warning, err=True)
    if target.as_json:
        echo_json({"applied": applied})
        return
    for item in applied:
        what = {"created": "registered as config version {v}", "updated": "updated to config version {v}",
                "reactivated": "active again as config version {v}",
                "unchanged": "unchanged (config version {v} is this declaration)"}[item["change"]]
        click.echo(f"{item['name']}: {what.format(v=item['config_version'])} on {platform.description}")


@families.command()
@click.argument("name")
@click.option("--reason", required=True, metavar="TEXT", help="Why the family is retired, recorded with it.")
@platform_options
def retire(name: str, reason: str, target: TargetOptions) -> None:
    """Retire a family: no new run starts for it (uploads are rejected with a run record saying so), drift checks
    skip it, and scoring answers 404 naming the retirement. Its versions, history and artifacts stay. Refused
    while a rollout holds the family. `mlops families apply` makes it active again.

    \b
    Example:
      mlops families retire old-model --reason "replaced by loans-v2"
    """
    platform = connect(target)
    answer = platform.management().request("DELETE", f"/families/{name}", {"reason": reason})
    summary = answer["family"]
    if target.as_json:
        echo_json({"name": summary["name"], "change": answer["change"], "config_version": summary["config_version"],
                   "status": summary["status"]})
        return
    if answer["change"] == "unchanged":
        click.echo(f"{name}: already retired (config version {summary['config_version']})")
    else:
        click.echo(f"{name}: retired as config version {summary['config_version']} on {platform.description}")


@families.command("list")
@click.option("--status", type=click.Choice(["active", "retired", "all"]), default="all", show_default=True,
              help="Only active or only retired families.")
@platform_options
def list_(status: str, target: TargetOptions) -> None:
    """List the families a platform serves: status and configuration version, live version, canary and its
    weight, latest version, rollout lock.

    \b
    Examples:
      mlops families list
      mlops families list --status active --json --stack MlopsPlatform
    """
    from .. import views
    from . import tables

    platform = connect(target)
    with reaching(platform):
        listed = [views.family_summary(r) for r in views.families(platform, None if status == "all" else status)]
    if target.as_json:
        echo_json({"families": listed})
        return
    out = tables.console()
    if not listed:
        out.print(f"No families on {platform.description}.")
        return
    table = tables.table(f"Families on {platform.description}", [
        "Family", "Status", "Config", "Algorithm", "Target", "Live", "Canary", "Latest",
        ("Rollout lock", {"max_width": 48})])
    for f in listed:
        canary = f"v{f['canary_version']} at {f['canary_weight']}%" if f["canary_version"] else "-"
        table.add_row(f["name"], f["status"] if f["status"] == "active" else f"[yellow]{f['status']}[/]",
                      f"v{f['config_version']}" if f["config_version"] else "-", f["algorithm"],
                      f"{f['target']} ({f['decision']})",
                      f"v{f['live_version']}" if f["live_version"] else "[yellow]none[/]", canary,
                      f"v{f['latest_version']}" if f["latest_version"] else "-",
                      tables.escape(f["rollout_holder"] or "-"))
    out.print(table)


@families.command("show")
@click.argument("name")
@click.option("--config-version", "config_version", type=click.IntRange(min=1), default=None, metavar="N",
              help="Show configuration version N instead: who made it, when, why, and the declaration as it was.")
@click.option("--history", type=click.IntRange(0, 100), default=20, show_default=True,
              help="Configuration changes listed, newest first.")
@platform_options
def show(name: str, config_version: int | None, history: int, target: TargetOptions) -> None:
    """Show one family: status and configuration version, its registry pointers, its whole declaration (features,
    gate, canary and drift policies) and its configuration history (who changed what, when and why). Exits 2 for
    an unknown family or configuration version.

    \b
    Examples:
      mlops families show credit-risk
      mlops families show credit-risk --config-version 1 --json | jq .declaration.gate
    """
    from .. import views
    from . import tables

    platform = connect(target)
    if config_version is not None:
        with reaching(platform):
            change = views.family_config(platform, name, config_version)
        if target.as_json:
            echo_json(change)
            return
        out = tables.console()
        out.print(f"[bold]{name}[/] config version {change['config_version']}: {change['change']} "
                  f"({change['status']}) at {tables.when(change['at'])} by {tables.escape(change['actor'])}: "
                  f"{tables.escape(change['reason'])}")
        _print_declaration(out, change["declaration"])
        return
    with reaching(platform):
        detail = views.family_detail(platform, name, history=history)
    if target.as_json:
        echo_json(detail)
        return
    out = tables.console()
    declaration = detail["declaration"]
    canary = f", canary v{detail['canary_version']} at {detail['canary_weight']}%" if detail["canary_version"] else ""
    live = f"v{detail['live_version']}" if detail["live_version"] else "none"
    out.print(f"[bold]{name}[/]: {declaration['task']} with {declaration['algorithm']}, target "
              f"{declaration['target']!r} ({tables.escape(detail['decision'])}); live {live}{canary}; "
              f"{detail['latest_version']} version(s); scoring function {detail['scoring_function'] or '-'}")
    sensitive = declaration.get("sensitive_attribute")
    fairness = f"sensitive attribute {sensitive!r}" if sensitive else "no sensitive attribute (no fairness gate)"
    out.print(f"Fairness: {fairness}; rollout lock: {tables.escape(detail['rollout_holder'] or 'free')}")
    rate = declaration.get("capture_sample_rate")
    if rate is not None and float(rate) == 0.0:
        out.print("Capture: [yellow]captures off (capture_sample_rate 0)[/]: drift monitoring and canary checks get "
                  "no captured traffic for this family")
    elif rate is not None:
        out.print(f"Capture: sample rate {tables.figure(float(rate))} (the share of scored records captured for "
                  "drift and canary checks)")
    status = detail["status"] if detail["status"] == "active" else f"[yellow]{detail['status']}[/]"
    out.print(f"Status: {status}, config version {detail['config_version'] or '- (unversioned)'}, serving "
              f"{detail['serving']}; last change {tables.when(detail['changed_at'])} by "
              f"{tables.escape(detail['changed_by'] or '-')}: {tables.escape(detail['change_reason'] or '-')}")
    _print_declaration(out, declaration)
    if detail["history"]:
        changes = tables.table("Configuration history", ["Config", "Change", "Status", "At (UTC)",
                                                         ("By", {"max_width": 60}), ("Reason", {"max_width": 60})])
        for change in detail["history"]:
            changes.add_row(f"v{change['config_version']}", change["change"], change["status"],
                            tables.when(change["at"]), tables.escape(change["actor"]), tables.escape(change["reason"]))
        out.print(changes)


def _print_declaration(out: Any, declaration: dict[str, Any]) -> None:
    from . import tables

    features = tables.table("Features", ["Feature", "Kind", "Missing", "Unknown", "Domain / categories",
                                         ("Description", {"max_width": 50})])
    for feature in declaration["features"]:
        domain = ", ".join(feature["categories"]) if feature["kind"] == "categorical" else \
            f"{tables.figure(feature.get('minimum'))} .. {tables.figure(feature.get('maximum'))}"
        features.add_row(feature["name"], feature["kind"], feature.get("missing", "reject"),
                         feature.get("unknown", "-") if feature["kind"] == "categorical" else "-",
                         tables.escape(domain), tables.escape(feature.get("description") or ""))
    out.print(features)
    policies = tables.table("Policies", ["Policy", ("Settings", {"max_width": 140})])
    for key in ("gate", "canary", "drift", "performance"):
        if key not in declaration:  # a declaration stored before the policy existed
            continue
        policies.add_row(key, ", ".join(f"{k}={v}" for k, v in declaration[key].items()))
    out.print(policies)
