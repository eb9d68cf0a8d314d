"""A favorable_label that is not among the data's labels is refused when the data set is read (`mlops families
validate --data`, and the Train step), naming the label and the labels found, instead of failing at Evaluate."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from mlops.core.errors import DataSetError
from mlops.core.schemas import ModelFamily
from mlops.data.datasets import parse_dataset

from mlops_local.cli import cli

PUBLIC = Path(__file__).resolve().parents[2] / "tests" / "data" / "public" / "credit_data_sample.csv"

FAMILY_YAML = """\
name: loans
target: Status
positive_label: bad
favorable_label: {favorable}
sensitive_attribute: Marital
features:
  - {{name: Seniority, minimum: 0}}
  - {{name: Income, missing: median}}
"""


def family(favorable: str) -> ModelFamily:
    import yaml

    return ModelFamily.model_validate(yaml.safe_load(FAMILY_YAML.format(favorable=favorable)))


def test_favorable_label_outside_the_target_labels_is_a_data_set_error_naming_both():
    with pytest.raises(DataSetError) as raised:
        parse_dataset(PUBLIC.read_bytes(), family("approved"), "credit.csv")
    message = raised.value.message
    assert "favorable_label 'approved'" in message and "sensitive_attribute 'Marital'" in message
    assert "'good' (1433 rows)" in message and "'bad' (567 rows)" in message


def test_favorable_label_among_the_labels_reads_the_data_set():
    assert parse_dataset(PUBLIC.read_bytes(), family("good"), "credit.csv").classes == ("good", "bad")


def test_favorable_label_is_not_checked_without_a_sensitive_attribute():
    loose = family("approved").model_copy(update={"sensitive_attribute": None})
    assert parse_dataset(PUBLIC.read_bytes(), loose, "credit.csv").rows == 2000


def test_validate_with_data_refuses_a_favorable_label_the_data_does_not_have(tmp_path):
    path = tmp_path / "loans.yaml"
    path.write_text(FAMILY_YAML.format(favorable="approved"), encoding="utf-8")
    result = CliRunner().invoke(cli, ["families", "validate", str(path), "--data", str(PUBLIC)])
    assert result.exit_code == 2, result.output
    assert f"invalid: {PUBLIC} with family loans: the favorable_label 'approved'" in result.stderr
    assert "Traceback" not in result.output
