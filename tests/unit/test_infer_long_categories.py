"""`mlops families infer` keeps a categorical column with one value over 100 characters, and says so with the
value truncated (fresh-user pass on issue 10: the column used to be dropped as free text)."""

from __future__ import annotations

from mlops.data.datasets import parse_dataset

from mlops_local.infer import MAX_CATEGORY_CHARS, infer_family

LONG = ("a purpose described at length by the applicant " * 6).strip()  # 287 characters


def test_a_categorical_with_a_long_value_is_kept_and_the_note_names_it_truncated(tmp_path):
    lines = ["purpose,amount,default"]
    for i in range(200):
        purpose = LONG if i == 7 else ("car", "house", "study")[i % 3]
        lines.append(f"{purpose},{1000 + 37 * i},{'yes' if i % 4 == 0 else 'no'}")
    path = tmp_path / "loans.csv"
    path.write_text("\n".join(lines) + "\n")
    family, notes = infer_family(path, "default", "loans")
    purpose = family.feature("purpose")
    assert purpose.kind == "categorical" and LONG in purpose.categories and len(purpose.categories) == 4
    (note,) = [n for n in notes if n.startswith("'purpose'")]
    assert f"1 category over {MAX_CATEGORY_CHARS} characters kept (longest: {len(LONG)} characters, " in note
    assert LONG not in note and len(note) < 300
    assert parse_dataset(path.read_bytes(), family, path.name).rows == 200
