"""A training data set whose categorical column was recoded ("SS" for "senior_secured", or Parquet integer codes)
is refused, naming the column, the share of undeclared values and the values, instead of training a model that
sees "other" on every row (fresh-user pass on issue 17)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from mlops.core.errors import DataSetError
from mlops.core.schemas import ModelFamily
from mlops.data.datasets import parse_dataset
from pydantic import ValidationError

from mlops_local.cli import cli

SENIORITY = ["senior_secured", "senior_unsecured", "subordinated"]


def _family(**overrides) -> ModelFamily:
    seniority = {"name": "seniority", "kind": "categorical", "categories": SENIORITY, "unknown": "other",
                 **overrides.pop("seniority", {})}
    return ModelFamily.model_validate({
        "name": "lgd", "task": "regression", "target": "lgd",
        "features": [{"name": "exposure", "minimum": 0}, seniority], **overrides})


def _columns(rows: int = 400, unknown_share: float = 0.0, recode: dict | None = None) -> dict[str, list]:
    rng = np.random.default_rng(1)
    seniority = rng.choice(SENIORITY, rows).astype(object)
    seniority[: int(round(rows * unknown_share))] = "mezzanine"
    if recode:
        seniority = np.asarray([recode[s] for s in seniority], dtype=object)
    return {"exposure": rng.uniform(0, 1e5, rows).round(2).tolist(), "seniority": seniority.tolist(),
            "lgd": rng.uniform(0, 1, rows).round(4).tolist()}


def _csv(columns: dict[str, list]) -> bytes:
    lines = [",".join(columns)] + [",".join(str(v) for v in row) for row in zip(*columns.values(), strict=True)]
    return ("\n".join(lines) + "\n").encode()


def test_a_recoded_column_is_refused_naming_it_with_the_share_and_the_values():
    recoded = _csv(_columns(recode={"senior_secured": "SS", "senior_unsecured": "SU", "subordinated": "SUB"}))
    with pytest.raises(DataSetError) as caught:
        parse_dataset(recoded, _family(), "lgd.csv")
    message = caught.value.message
    assert "'seniority': 400 of 400 values (100.0%) are not among its 3 declared categories" in message
    assert "over max_unknown_share 0.05" in message and "'SS' (" in message and "'SUB' (" in message
    assert "integer codes" not in message


def test_a_few_new_categories_stay_within_the_bound_and_map_to_other():
    data = parse_dataset(_csv(_columns(unknown_share=0.03)), _family(), "lgd.csv")
    assert np.sum(data.X[:, 1] == len(SENIORITY)) == 12


@pytest.mark.parametrize(("overrides", "accepted"), [
    ({}, False),
    ({"max_unknown_share": 0.2}, True),  # the family's bound
    ({"seniority": {"max_unknown_share": 0.2}}, True),  # the feature's own
    ({"max_unknown_share": 0.2, "seniority": {"max_unknown_share": 0.05}}, False),  # the feature's wins
])
def test_the_bound_is_the_features_else_the_familys(overrides, accepted):
    data = _csv(_columns(unknown_share=0.1))
    if accepted:
        assert parse_dataset(data, _family(**overrides), "lgd.csv").rows == 400
    else:
        with pytest.raises(DataSetError, match=r"40 of 400 values \(10.0%\)"):
            parse_dataset(data, _family(**overrides), "lgd.csv")


def test_max_unknown_share_on_a_feature_without_unknown_other_is_refused():
    with pytest.raises(ValidationError, match="max_unknown_share applies to categorical features with unknown: other"):
        _family(seniority={"unknown": "reject", "max_unknown_share": 0.1})


def test_parquet_integer_codes_are_refused_with_a_hint():
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    from mlops.data.columnar import parse_parquet

    columns = _columns(recode={"senior_secured": 1, "senior_unsecured": 2, "subordinated": 3})
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    with pytest.raises(DataSetError) as caught:
        parse_parquet(buffer.getvalue(), _family(), "lgd.parquet")
    message = caught.value.message
    assert "'seniority': 400 of 400 values (100.0%)" in message
    assert "the column holds integer codes where the family declares text categories" in message


def test_validate_with_data_reports_the_recoded_column(tmp_path):
    family = tmp_path / "lgd.yaml"
    family.write_text(yaml.safe_dump(_family().model_dump(mode="json")))
    data = tmp_path / "lgd.csv"
    data.write_bytes(_csv(_columns(recode={"senior_secured": "SS", "senior_unsecured": "SU",
                                           "subordinated": "SUB"})))
    result = CliRunner().invoke(cli, ["families", "validate", str(family), "--data", str(data)])
    assert result.exit_code == 2
    assert "'seniority': 400 of 400 values (100.0%)" in result.output
