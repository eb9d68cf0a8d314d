"""Family files (YAML/JSON, errors with file/field/problem, JSON Schema), `mlops families infer/validate`."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from mlops.core.schemas import ModelFamily
from mlops.data.datasets import parse_dataset
from mlops.data.synthetic import credit_risk_family

from mlops_local.cli import cli, main
from mlops_local.familyfile import (
    FamilyFileError,
    dump_family,
    family_json_schema,
    load_families_file,
    load_family_file,
    schema_text,
)
from mlops_local.familyfile import main as familyfile_main
from mlops_local.infer import infer_family

ROOT = Path(__file__).resolve().parents[2]
PUBLIC = ROOT / "tests" / "data" / "public" / "credit_data_sample.csv"
SCHEMA = ROOT / "docs" / "family.schema.json"

FAMILY_YAML = """\
name: loans
target: Status
positive_label: bad
favorable_label: good
algorithm: hist_gradient_boosting
features:
  - {name: Seniority, minimum: 0}
  - {name: Income, missing: median}
  - name: Home
    kind: categorical
    categories: [owner, rent, other]
    missing: most_frequent
    unknown: other
  - {name: Records, kind: categorical, categories: [no, yes]}
"""


def loans_dict() -> dict:
    """FAMILY_YAML as data (yaml.safe_load reads YAML 1.1, where unquoted no/yes are booleans)."""
    data = yaml.safe_load(FAMILY_YAML)
    data["features"][3]["categories"] = ["no", "yes"]
    return data


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def run(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, list(args))


def cdk_families() -> list[dict]:
    return json.loads((ROOT / "cdk.json").read_text())["context"]["mlops"]["families"]


def test_yaml_and_json_files_declare_the_same_family(tmp_path):
    from_yaml = load_family_file(write(tmp_path, "loans.yaml", FAMILY_YAML))
    from_json = load_family_file(write(tmp_path, "loans.json", json.dumps(loans_dict())))
    assert from_yaml == from_json
    assert from_yaml.positive_label == "bad" and from_yaml.feature("Income").missing == "median"


def test_yaml_booleans_are_only_true_and_false(tmp_path):
    text = FAMILY_YAML.replace("positive_label: bad", "positive_label: yes")
    family = load_family_file(write(tmp_path, "f.yml", text))
    assert family.positive_label == "yes" and family.feature("Records").categories == ("no", "yes")
    family = load_family_file(write(tmp_path, "g.yml", text.replace("positive_label: yes", "positive_label: true")))
    assert family.positive_label is True


def test_every_cdk_family_loads_from_a_family_file(tmp_path):
    for entry in cdk_families():
        path = write(tmp_path, f"{entry['name']}.json", json.dumps(entry))
        assert load_family_file(path) == ModelFamily.model_validate(entry)
    many = write(tmp_path, "all.yaml", yaml.safe_dump({"families": cdk_families()}))
    assert [f.name for f in load_families_file(many)] == [e["name"] for e in cdk_families()]


def test_a_file_with_several_families_is_refused_where_one_is_expected(tmp_path):
    first = loans_dict()
    second = {**first, "name": "loans-two"}
    path = write(tmp_path, "two.yaml", yaml.safe_dump({"families": [first, second]}))
    assert [f.name for f in load_families_file(path)] == ["loans", "loans-two"]
    with pytest.raises(FamilyFileError, match="holds 2 families"):
        load_family_file(path)
    same = write(tmp_path, "same.yaml", yaml.safe_dump({"families": [first, first]}))
    with pytest.raises(FamilyFileError, match="'loans' is declared more than once"):
        load_families_file(same)


def test_errors_name_the_file_the_field_path_with_the_feature_and_the_problem(tmp_path):
    text = (FAMILY_YAML.replace("missing: most_frequent", "missing: avg")
            .replace("{name: Seniority, minimum: 0}", "{name: Seniority, minimun: 0}") + "gate: {min_aucc: 0.7}\n")
    path = write(tmp_path, "bad.yaml", text)
    with pytest.raises(FamilyFileError) as raised:
        load_family_file(path)
    message = raised.value.message
    assert message.startswith(f"{path}: 3 problems")
    assert "features[2].missing: Input should be 'reject', 'median'" in message and "(got 'avg')" in message
    assert "(feature 'Home')" in message
    assert "features[0].minimun: unknown field; did you mean 'minimum'? (feature 'Seniority')" in message
    assert "gate.min_aucc: unknown field; did you mean 'min_auc'?" in message
    assert raised.value.exit_code == 2


def test_model_level_problems_and_missing_fields_are_named(tmp_path):
    text = FAMILY_YAML.replace("categories: [no, yes]", "categories: [no]").replace("target: Status\n", "")
    with pytest.raises(FamilyFileError) as raised:
        load_family_file(write(tmp_path, "f.yaml", text))
    message = raised.value.message
    assert "target: required field is missing" in message
    assert "features[3]: categorical feature 'Records' needs at least 2 categories" in message


def test_a_null_where_text_is_expected_gets_the_yaml_quoting_hint(tmp_path):
    text = FAMILY_YAML + "missing_markers: ['', NA, null]\n"
    with pytest.raises(FamilyFileError, match=r"missing_markers\[2\]: .*quote the value"):
        load_family_file(write(tmp_path, "f.yaml", text))


@pytest.mark.parametrize(("name", "text", "expected"), [
    ("f.yaml", "name: x\n  bad: [indent\n", "line 2, column"),
    ("f.json", '{"name": "x",}', "line 1, column 14: invalid JSON"),
    ("f.yaml", "", "is empty"),
    ("f.yaml", "- a\n- b\n", "the file: must be a mapping"),
    ("f.yaml", "families: []\n", "families: must be a non-empty list"),
])
def test_unreadable_files_are_named_with_the_problem(tmp_path, name, text, expected):
    path = write(tmp_path, name, text)
    with pytest.raises(FamilyFileError) as raised:
        load_families_file(path)
    assert raised.value.message.startswith(str(path)) and expected in raised.value.message


def test_a_missing_file_is_a_family_file_error(tmp_path):
    with pytest.raises(FamilyFileError, match="no such file"):
        load_family_file(tmp_path / "absent.yaml")


@pytest.mark.parametrize("family", [
    credit_risk_family(),
    credit_risk_family(positive_label="yes", favorable_label="no", threshold=0.35, delimiter=";",
                       sensitive_attribute=None, missing_markers=("", "?"), gate={"min_auc": 0.8}),
    ModelFamily.model_validate(loans_dict()),
])
def test_dump_family_reads_back_to_the_same_family(tmp_path, family):
    text = dump_family(family)
    assert load_family_file(write(tmp_path, "f.yaml", text)) == family
    assert "positive_label:" in text and "threshold:" in text


def test_dump_quotes_text_a_yaml_1_1_reader_would_turn_into_booleans():
    family = ModelFamily.model_validate(loans_dict())
    text = dump_family(family)
    assert "categories: ['no', 'yes']" in text
    assert yaml.safe_load(text)["features"][3]["categories"] == ["no", "yes"]


def test_published_json_schema_is_current():
    assert SCHEMA.read_text() == schema_text(), (
        "docs/family.schema.json is stale: regenerate it with "
        "`python -m mlops_local.familyfile --schema > docs/family.schema.json`")


def test_json_schema_accepts_cdk_families_and_rejects_what_the_model_rejects():
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(family_json_schema())
    for entry in cdk_families():
        validator.validate(entry)
    bad = {**cdk_families()[0], "threshold": 1.5}
    assert list(validator.iter_errors(bad))
    assert list(validator.iter_errors({**cdk_families()[0], "unexpected": 1}))


def test_schema_module_entry_point_prints_the_schema(capsys):
    assert familyfile_main(["--schema"]) == 0
    assert json.loads(capsys.readouterr().out) == family_json_schema()


def test_infer_on_the_public_credit_sample_writes_a_family_that_parses_it(tmp_path):
    out = tmp_path / "credit.yaml"
    result = run("families", "infer", str(PUBLIC), "--target", "Status", "--name", "credit-data", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "positive label GUESSED: 'bad'" in result.stderr
    assert "'rownames' left out: it counts rows" in result.stderr
    assert "'Income': 148 missing values (7.4%) -> missing: median" in result.stderr
    family = load_family_file(out)
    assert family.positive_label == "bad" and family.favorable_label == "good"
    assert family.algorithm == "hist_gradient_boosting" and family.sensitive_attribute is None
    assert "rownames" not in family.feature_names and "Status" not in family.feature_names
    home = family.feature("Home")
    assert home.kind == "categorical" and home.categories[0] == "owner" and home.missing == "most_frequent"
    assert home.unknown == "other"
    assert family.feature("Seniority").missing == "reject" and family.feature("Seniority").minimum == 0
    assert family.feature("Income").missing == "median"
    dataset = parse_dataset(PUBLIC.read_bytes(), family, PUBLIC.name)
    assert dataset.classes == ("good", "bad") and dataset.rows == 2000
    assert run("families", "validate", str(out), "--data", str(PUBLIC)).exit_code == 0


def test_infer_prints_to_stdout_and_states_a_given_positive_label():
    result = run("families", "infer", str(PUBLIC), "--target", "Status", "--name", "credit-data",
                 "--positive-label", "good", "--sensitive", "Marital")
    assert result.exit_code == 0, result.output
    family = ModelFamily.model_validate(yaml.safe_load(result.stdout))
    assert family.positive_label == "good" and family.favorable_label == "bad"
    assert family.sensitive_attribute == "Marital" and "Marital" not in family.feature_names
    assert "positive label 'good' (as given)" in result.stderr and "GUESSED" not in result.stderr
    assert "favorable_label is 'bad'" in result.stderr


@pytest.mark.parametrize(("args", "expected"), [
    (["--target", "status"], "did you mean 'Status'"),
    (["--target", "Status", "--positive-label", "Bad"], "--positive-label 'Bad' is not a label of 'Status'"),
    (["--target", "Home", "--task", "binary_classification"], "'Home' has 6 distinct labels"),
    (["--target", "Status", "--sensitive", "Sex"], "sensitive attribute column 'Sex' is not in the data set"),
])
def test_infer_refuses_bad_arguments_with_exit_code_2(args, expected):
    result = run("families", "infer", str(PUBLIC), "--name", "credit-data", *args)
    assert result.exit_code == 2 and expected in result.stderr
    assert "Traceback" not in result.output


def test_infer_does_not_overwrite_a_file_without_force(tmp_path):
    out = write(tmp_path, "mine.yaml", "edited by hand\n")
    args = ["families", "infer", str(PUBLIC), "--target", "Status", "--name", "credit-data", "-o", str(out)]
    result = run(*args)
    assert result.exit_code == 2 and "pass --force" in result.stderr
    assert out.read_text() == "edited by hand\n"
    assert run(*args, "--force").exit_code == 0 and load_family_file(out).name == "credit-data"


def _loans_csv(rows: int = 300, delimiter: str = ",") -> bytes:
    rng = np.random.default_rng(7)
    states = [f"S{i:02d}" for i in range(55)]
    lines = [delimiter.join(["loan_id", "state", "balance", "delta", "note", "default"])]
    for i in range(rows):
        balance = "NA" if i % 17 == 0 else f"{rng.uniform(0, 5000):.2f}"
        delta = f"{rng.normal():.3f}"
        lines.append(delimiter.join([f"L-{i:05d}-{rng.integers(1e6)}", states[i % 55], balance, delta,
                                     "same", "yes" if i % 4 == 0 else "no"]))
    return ("\n".join(lines) + "\n").encode()


def test_infer_rules_on_generated_data(tmp_path):
    path = tmp_path / "loans.csv.gz"
    path.write_bytes(gzip.compress(_loans_csv(delimiter=";")))
    family, notes = infer_family(path, "default", "loans")
    assert family.feature_names == ["state", "balance", "delta"]
    state = family.feature("state")
    assert state.kind == "categorical" and len(state.categories) == 55 and state.missing == "reject"
    assert family.feature("balance").minimum == 0 and family.feature("balance").missing == "median"
    assert family.feature("delta").minimum is None  # negative values: no minimum
    assert family.positive_label == "yes" and family.favorable_label == "no"
    text = "\n".join(notes)
    assert "'loan_id' left out: a distinct value on every row" in text
    assert "'note' left out: constant" in text
    assert "delimiter ';' detected" in text
    assert "positive label GUESSED: 'yes' (its name suggests the event to predict" in text
    assert parse_dataset(path.read_bytes(), family, path.name).rows == 300


def test_infer_guesses_the_minority_class_when_no_label_name_says_more(tmp_path):
    path = tmp_path / "loans.csv"
    path.write_bytes(_loans_csv().replace(b",yes\n", b",approved\n").replace(b",no\n", b",declined\n"))
    family, notes = infer_family(path, "default", "loans")
    assert family.positive_label == "approved"
    assert any("GUESSED: 'approved' (the minority class, 25.0%" in n for n in notes)


def test_validate_reports_each_file_and_exits_2_when_one_is_invalid(tmp_path):
    good = write(tmp_path, "good.yaml", FAMILY_YAML)
    bad = write(tmp_path, "bad.yaml", FAMILY_YAML.replace("algorithm: hist_gradient_boosting", "algorithm: svm"))
    result = run("families", "validate", str(good))
    assert result.exit_code == 0 and "ok: " in result.stdout and "family loans" in result.stdout
    result = run("families", "validate", str(good), str(bad))
    assert result.exit_code == 2
    assert f"ok: {good}" in result.stdout and f"invalid: {bad}: algorithm: Input should be" in result.stderr


def test_validate_with_data_reads_it_as_training_would(tmp_path):
    strict = write(tmp_path, "strict.yaml", FAMILY_YAML.replace("{name: Income, missing: median}",
                                                                "{name: Income}"))
    result = run("families", "validate", str(strict), "--data", str(PUBLIC))
    assert result.exit_code == 2 and "'Income': 148 rows missing a value" in result.stderr
    # Home's undeclared levels (parents, priv: 21% of the rows) would exceed max_unknown_share; 'ignore' (7) stays.
    declared = FAMILY_YAML.replace("[owner, rent, other]", "[owner, rent, other, parents, priv]")
    good = write(tmp_path, "good.yaml", declared)
    result = run("families", "validate", str(good), "--data", str(PUBLIC))
    assert result.exit_code == 0 and "2000 rows; classes 'good' 1433 (negative), 'bad' 567 (positive)" in result.stdout


def test_main_returns_exit_code_2_for_an_invalid_family_file(tmp_path, capsys):
    bad = write(tmp_path, "bad.yaml", "name: Loans\n")
    assert main(["families", "validate", str(bad)]) == 2
    assert "name: Value error" not in capsys.readouterr().err


def test_infer_with_a_declared_delimiter_writes_it_to_the_family(tmp_path):
    path = tmp_path / "loans.csv"
    path.write_bytes(_loans_csv(delimiter="|"))
    result = run("families", "infer", str(path), "--target", "default", "--name", "loans", "--delimiter", "pipe")
    assert result.exit_code == 0, result.output
    family = ModelFamily.model_validate(yaml.safe_load(result.stdout))
    assert family.delimiter == "|"


def test_infer_says_when_the_platform_would_refuse_the_data_set(tmp_path):
    path = tmp_path / "loans.csv"
    path.write_bytes(_loans_csv().replace(b",yes\n", b",\n", 3))
    family, notes = infer_family(path, "default", "loans")
    text = "\n".join(notes)
    assert "PROBLEM: 3 rows have no target value" in text
    assert "PROBLEM: with this family the data set is refused" in text and "3 rows without a label" in text
