"""`mlops families infer`: a numeric column with a stray value ("12a") stays numeric and the value is named with
its line as a data problem (it used to turn the column into categories silently); a rare positive class gets a
threshold hint, in the output and in the written file (fresh-user pass on issues 10 and 11, MED 5)."""

from __future__ import annotations

from click.testing import CliRunner
from mlops.data.datasets import parse_dataset

from mlops_local.cli import cli
from mlops_local.infer import infer_family


def _write(tmp_path, rows: int = 300, stray: dict[int, str] | None = None, positive_every: int = 4):
    lines = ["amount,purpose,default"]
    for i in range(rows):
        amount = (stray or {}).get(i, f"{1000 + 37 * (i % 50)}")
        lines.append(f"{amount},{('car', 'house', 'study')[i % 3]},{'yes' if i % positive_every == 0 else 'no'}")
    path = tmp_path / "loans.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_numeric_column_with_one_bad_value_stays_numeric_and_the_value_is_named_with_its_line(tmp_path):
    path = _write(tmp_path, stray={36: "12a"})
    family, notes = infer_family(path, "default", "loans")
    assert family.feature("amount").kind == "numeric" and family.feature("amount").minimum == 0
    (problem,) = [n for n in notes if n.startswith("PROBLEM: 'amount'")]
    assert "'12a' (line 38)" in problem and "kept numeric" in problem
    # The platform refuses the row, and the check of the data set says so too: never read as a category.
    assert any(n.startswith("PROBLEM: with this family the data set is refused") and "12a" in n for n in notes)


def test_a_column_of_mostly_text_is_still_categorical(tmp_path):
    path = _write(tmp_path, stray={i: f"code{i % 5}" for i in range(0, 300, 2)})
    family, notes = infer_family(path, "default", "loans")
    assert family.feature("amount").kind == "categorical"
    assert not any(n.startswith("PROBLEM: 'amount'") for n in notes)


def test_a_rare_positive_class_gets_a_threshold_hint_in_the_output_and_the_file(tmp_path):
    path = _write(tmp_path, rows=400, positive_every=20)  # 5% positive
    family, notes = infer_family(path, "default", "loans")
    (hint,) = [n for n in notes if n.startswith("HINT:")]
    assert "'yes' is 5.0% of the labelled rows" in hint and "`threshold: 0.05`" in hint and "class_weight" in hint
    assert parse_dataset(path.read_bytes(), family, path.name).rows == 400
    out = tmp_path / "loans.yaml"
    result = CliRunner().invoke(cli, ["families", "infer", str(path), "--target", "default", "--name", "loans",
                                      "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "# HINT: the positive class 'yes' is 5.0%" in out.read_text()
    balanced, _ = infer_family(_write(tmp_path, positive_every=4), "default", "loans")
    assert not [n for n in infer_family(_write(tmp_path, positive_every=4), "default", "loans")[1]
                if n.startswith("HINT:")] and balanced.threshold == 0.5
