"""Family files: a model family declared in YAML or JSON, with the schema of cdk.json's `mlops.families` entries.

A file holds one family (a mapping with `name`, `target`, `features`...) or several under a `families:` list.
`python -m mlops_local.familyfile --schema` prints the JSON Schema published as docs/family.schema.json.
"""

from __future__ import annotations

import difflib
import json
import re
import sys
from pathlib import Path
from typing import Any

import click
import yaml
from mlops.core.schemas import CanaryPolicy, DriftPolicy, Feature, GatePolicy, ModelFamily, PerformancePolicy
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

MAX_FILE_BYTES = 5 * 1024 * 1024
MAX_ERRORS_LISTED = 10
# Fields written by dump_family even when they hold their default: what a reader of the file must see.
ALWAYS_WRITTEN = ("name", "task", "algorithm", "target", "positive_label", "favorable_label", "threshold",
                  "sensitive_attribute", "min_rows_per_class", "features")
# Fields a task does not use: left out of a dumped family of that task unless they differ from their default.
NOT_WRITTEN_FOR_TASK = {"multiclass_classification": ("positive_label", "threshold"),
                        "regression": ("positive_label", "threshold", "favorable_label", "min_rows_per_class")}
_NESTED_MODELS: dict[str, type[BaseModel]] = {"features": Feature, "gate": GatePolicy, "canary": CanaryPolicy,
                                              "drift": DriftPolicy, "performance": PerformancePolicy}


class FamilyFileError(click.ClickException):
    """A family file that cannot be read or does not validate. The message names the file, the field path
    (`features[2].missing (feature 'income')`) and the problem, one line per problem; exit code 2 (usage error)."""

    exit_code = 2

    def __init__(self, path: Path | str, problems: list[str]) -> None:
        self.path = str(path)
        self.problems = problems
        shown = problems[:MAX_ERRORS_LISTED]
        more = f"\n  ... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
        if len(shown) == 1:
            message = f"{self.path}: {shown[0]}"
        else:
            message = f"{self.path}: {len(problems)} problems\n" + "\n".join(f"  {p}" for p in shown) + more
        super().__init__(message)


class _Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false are booleans. YAML 1.1 (PyYAML's default) also reads yes/no/on/off as
    booleans, which would turn `positive_label: yes` or a category `no` into true/false."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))


def load_families_file(path: Path | str) -> list[ModelFamily]:
    """All families in a file: one family (a mapping) or `families: [...]`. Raises FamilyFileError."""
    path = Path(path)
    document = _read_document(path)
    if isinstance(document, dict) and set(document) == {"families"}:
        entries = document["families"]
        if not isinstance(entries, list) or not entries:
            raise FamilyFileError(path, ["families: must be a non-empty list of families"])
        prefixes = [f"families[{i}]" for i in range(len(entries))]
    else:
        entries, prefixes = [document], [""]
    families: list[ModelFamily] = []
    problems: list[str] = []
    for entry, prefix in zip(entries, prefixes, strict=True):
        if not isinstance(entry, dict):
            problems.append(f"{prefix or 'the file'}: must be a mapping of family fields, got "
                            f"{type(entry).__name__}")
            continue
        try:
            families.append(ModelFamily.model_validate(entry))
        except PydanticValidationError as exc:
            problems.extend(_describe(exc, entry, prefix))
    names = [f.name for f in families]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        problems.append(f"families: the name {repeated[0]!r} is declared more than once")
    if problems:
        raise FamilyFileError(path, problems)
    return families


def load_family_file(path: Path | str) -> ModelFamily:
    """The one family declared in a YAML (.yaml, .yml) or JSON (.json) file. Raises FamilyFileError when the file
    is missing, unreadable, not YAML/JSON, invalid against the schema, or holds several families."""
    families = load_families_file(path)
    if len(families) != 1:
        raise FamilyFileError(path, [f"holds {len(families)} families ({', '.join(f.name for f in families)}); "
                                     "this option takes a file with one family"])
    return families[0]


def dump_family(family: ModelFamily) -> str:
    """The family as YAML that load_family_file reads back to an equal family: the fields in ALWAYS_WRITTEN and
    every field whose value differs from its default, features last (one line per numeric feature, categories as
    one flow list)."""
    full = family.model_dump(mode="json")
    changed = family.model_dump(mode="json", exclude_defaults=True)
    skipped = NOT_WRITTEN_FOR_TASK.get(family.task, ())
    document = {key: full[key] for key in ALWAYS_WRITTEN if key != "features" and key not in skipped}
    document.update({key: value for key, value in changed.items() if key not in document and key != "features"})
    document["features"] = [_feature_document(f) for f in family.features]
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110,
                     default_flow_style=None)


def _feature_document(feature: Feature) -> dict[str, Any]:
    values = feature.model_dump(mode="json", exclude_defaults=True)
    out: dict[str, Any] = {"name": feature.name, "kind": feature.kind}
    for key, value in values.items():
        if key in ("name", "kind"):
            continue
        if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
            value = int(value)
        out[key] = _FlowList(value) if key == "categories" else value
    return out


class _FlowList(list):
    pass


class _Dumper(yaml.SafeDumper):
    pass


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    # Quote what a YAML 1.1 reader would turn into a boolean or null (yes, no, on, off, ~), not only true/false.
    style = "'" if value.lower() in ("yes", "no", "on", "off", "y", "n", "~") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def _represent_flow_list(dumper: yaml.SafeDumper, value: _FlowList) -> yaml.Node:
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=True)


_Dumper.add_representer(str, _represent_str)
_Dumper.add_representer(_FlowList, _represent_flow_list)


def family_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a family file holding one family, generated from ModelFamily."""
    schema = ModelFamily.model_json_schema(mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def schema_text() -> str:
    """docs/family.schema.json's exact content."""
    return json.dumps(family_json_schema(), indent=2, sort_keys=True) + "\n"


def _read_document(path: Path) -> Any:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise FamilyFileError(path, [f"is {size} bytes; a family file holds at most {MAX_FILE_BYTES}"])
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise FamilyFileError(path, ["no such file"]) from None
    except IsADirectoryError:
        raise FamilyFileError(path, ["is a directory, not a family file"]) from None
    except UnicodeDecodeError as exc:
        raise FamilyFileError(path, [f"is not UTF-8 text (byte offset {exc.start})"]) from None
    except OSError as exc:
        raise FamilyFileError(path, [f"cannot be read: {exc.strerror}"]) from None
    if not text.strip():
        raise FamilyFileError(path, ["is empty"])
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise FamilyFileError(path, [f"line {exc.lineno}, column {exc.colno}: invalid JSON: {exc.msg}"]) \
                from None
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise FamilyFileError(path, [f"{where}invalid YAML: {problem}"]) from None


def _describe(exc: PydanticValidationError, entry: dict[str, Any], prefix: str) -> list[str]:
    problems = []
    for error in exc.errors(include_url=False):
        location = tuple(error["loc"])
        path = _field_path(location, prefix)
        message = _error_text(error, location, entry)
        problems.append(f"{path}: {message}" if path else message)
    return list(dict.fromkeys(problems))


def _field_path(location: tuple[Any, ...], prefix: str) -> str:
    parts: list[str] = [prefix] if prefix else []
    for part in location:
        if isinstance(part, int):
            if parts:
                parts[-1] += f"[{part}]"
            else:
                parts.append(f"[{part}]")
        else:
            parts.append(str(part))
    return ".".join(parts)


def _error_text(error: dict[str, Any], location: tuple[Any, ...], entry: dict[str, Any]) -> str:
    kind = error["type"]
    value = error.get("input")
    if kind == "missing":
        text = "required field is missing"
    elif kind == "extra_forbidden":
        text = "unknown field" + _did_you_mean(location, entry)
    elif kind == "value_error":
        text = str(error["msg"]).removeprefix("Value error, ")
    else:
        text = f"{error['msg']} (got {_shown(value)})"
        if kind in ("string_type", "literal_error") and (isinstance(value, bool) or value is None):
            text += "; YAML reads unquoted true/false and null/~ as booleans and nothing: quote the value"
    feature = _feature_name(location, entry)
    if feature:
        text += f" (feature {feature!r})"
    return text


def _shown(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:60] + "..."


def _feature_name(location: tuple[Any, ...], entry: dict[str, Any]) -> str | None:
    if len(location) >= 2 and location[0] == "features" and isinstance(location[1], int):
        features = entry.get("features")
        if isinstance(features, list) and location[1] < len(features) and isinstance(features[location[1]], dict):
            name = features[location[1]].get("name")
            return name if isinstance(name, str) else None
    return None


def _did_you_mean(location: tuple[Any, ...], entry: dict[str, Any]) -> str:
    model: type[BaseModel] = ModelFamily
    for part in location[:-1]:
        if isinstance(part, str) and part in _NESTED_MODELS:
            model = _NESTED_MODELS[part]
    name = str(location[-1]) if location else ""
    close = difflib.get_close_matches(name, list(model.model_fields), n=1)
    return f"; did you mean {close[0]!r}?" if close else f"; known fields: {', '.join(model.model_fields)}"


def main(argv: list[str] | None = None) -> int:
    """`python -m mlops_local.familyfile --schema` prints the JSON Schema; with FILE... it validates files."""
    args = sys.argv[1:] if argv is None else argv
    if args == ["--schema"]:
        sys.stdout.write(schema_text())
        return 0
    if not args or args[0].startswith("-"):
        sys.stderr.write("usage: python -m mlops_local.familyfile --schema | FILE...\n")
        return 2
    status = 0
    for name in args:
        try:
            for family in load_families_file(name):
                sys.stdout.write(f"{name}: family {family.name} is valid\n")
        except FamilyFileError as exc:
            sys.stderr.write(exc.message + "\n")
            status = 2
    return status


if __name__ == "__main__":
    sys.exit(main())
