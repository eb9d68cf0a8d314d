"""Data as it is published: labels as text/booleans/numbers, missing values, unknown categories, CSV dialects,
gzip, physical line numbers, bounded messages and the class-count rule."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest
from mlops.core.errors import DataSetError
from mlops.core.schemas import Feature, ModelFamily
from mlops.data import datasets
from mlops.data.datasets import (
    MAX_COLUMNS,
    MAX_ERRORS_REPORTED,
    is_supported_key,
    min_rows_per_class,
    parse_csv,
    parse_dataset,
    read_table,
    unsupported_key_reason,
)

PUBLIC = Path(__file__).resolve().parents[1] / "data" / "public" / "credit_data_sample.csv"
PUBLIC_SHA256 = "37758e439f540fb3d7c19a21bcf612bcc944e0f241eb9c173c3ae4176fc5e8b8"
REGIONS = ("north", "south", "east", "west", "central")
HEADER = ["age", "income", "region", "status", "sex"]


def family(**overrides: object) -> ModelFamily:
    spec: dict[str, object] = {
        "name": "loans", "algorithm": "hist_gradient_boosting", "target": "status", "positive_label": "bad",
        "favorable_label": "good", "sensitive_attribute": "sex",
        "features": [
            Feature(name="age", minimum=0, maximum=130),
            Feature(name="income", minimum=0, missing="median"),
            Feature(name="region", kind="categorical", categories=REGIONS),
        ],
    }
    spec.update(overrides)
    return ModelFamily.model_validate(spec)


def rows(n: int = 120, seed: int = 3, labels: tuple[str, str] = ("good", "bad")) -> list[list[str]]:
    """n rows: age, income, region, status, sex; about a third of the rows carry the second label."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        out.append([str(int(rng.integers(18, 90))), f"{rng.uniform(1000, 90000):.2f}", REGIONS[i % 5],
                    labels[1] if i % 3 == 0 else labels[0], "F" if i % 2 else "M"])
    return out


def csv_bytes(body: list[list[str]], header: list[str] = HEADER, delimiter: str = ",", newline: str = "\n") -> bytes:
    lines = [delimiter.join(header)] + [delimiter.join(r) for r in body]
    return (newline.join(lines) + newline).encode()


def error_of(data: bytes, fam: ModelFamily | None = None, key: str = "") -> str:
    with pytest.raises(DataSetError) as raised:
        parse_dataset(data, fam or family(), key)
    return raised.value.message


def test_text_labels_give_class_indices_and_original_labels_negative_first():
    body = rows()
    body[0][3] = "bad"  # the positive label appears first in the file: the order is still [negative, positive]
    dataset = parse_dataset(csv_bytes(body), family())
    assert dataset.classes == ("good", "bad")
    expected = np.array([1 if r[3] == "bad" else 0 for r in body])
    np.testing.assert_array_equal(dataset.y, expected)
    assert dataset.y.dtype == np.int64


@pytest.mark.parametrize(("labels", "positive", "classes"), [
    (("False", "True"), True, ("False", "True")),
    (("FALSE", "TRUE"), True, ("FALSE", "TRUE")),
    (("no", "yes"), "yes", ("no", "yes")),
    (("0", "1.0"), 1, ("0", "1.0")),
    (("1", "2"), 2.0, ("1", "2")),
    (("1", "0"), 0, ("1", "0")),
])
def test_labels_as_booleans_text_and_numbers_match_the_positive_label(labels, positive, classes):
    body = rows(labels=labels)
    dataset = parse_dataset(csv_bytes(body), family(positive_label=positive, favorable_label=labels[0]))
    assert dataset.classes == classes
    np.testing.assert_array_equal(dataset.y, [1 if r[3] == labels[1] else 0 for r in body])


def test_numeric_labels_spelled_differently_are_one_class():
    body = rows(labels=("0", "1"))
    body[2][3], body[3][3] = "0.0", " 1 "
    dataset = parse_dataset(csv_bytes(body), family(positive_label=1, favorable_label=0))
    # one class per number; its label is spelled as where it first appears
    assert dataset.classes == ("0", "1") and dataset.y[3] == 1 and dataset.y[2] == 0
    body[1][3] = "0.00"
    assert parse_dataset(csv_bytes(body), family(positive_label=1, favorable_label=0)).classes == ("0.00", "1")


def test_positive_label_absent_lists_the_labels_found():
    message = error_of(csv_bytes(rows()), family(positive_label="Bad"))
    assert "positive label 'Bad'" in message and "'good' (80 rows)" in message and "'bad' (40 rows)" in message


def test_three_labels_are_refused_with_labels_and_counts():
    body = rows()
    for r in body[:7]:
        r[3] = "unknown"
    message = error_of(csv_bytes(body))
    assert "3 distinct labels" in message and "'unknown' (7 rows)" in message


def test_constant_target_is_refused():
    message = error_of(csv_bytes(rows(labels=("good", "good"))))
    assert "constant" in message and "'good' (120 rows)" in message


@pytest.mark.parametrize("marker", ["", "NA", " NA ", "null", "NaN", "None", "N/A"])
def test_missing_cells_are_nan_for_a_feature_with_a_strategy(marker):
    body = rows()
    for i in (4, 9, 50):
        body[i][1] = marker
    dataset = parse_dataset(csv_bytes(body), family())
    assert dataset.X.dtype == np.float64
    np.testing.assert_array_equal(np.flatnonzero(np.isnan(dataset.X[:, 1])), [4, 9, 50])
    assert not np.isnan(np.delete(dataset.X, [4, 9, 50], axis=0)).any()


def test_missing_values_in_a_reject_feature_are_counted_per_feature():
    body = rows()
    for i in range(10, 17):
        body[i][0] = "NA"
    body[20][2] = ""
    message = error_of(csv_bytes(body))
    assert "8 invalid rows of 120" in message
    assert "'age': 7 rows missing a value" in message and "'region': 1 row missing a value" in message
    assert "line 12: age is missing" in message


def test_missing_target_is_counted():
    body = rows()
    for i in (5, 6, 7):
        body[i][3] = ""
    message = error_of(csv_bytes(body))
    assert "target 'status': 3 rows without a label" in message and "line 7:" in message


def test_declared_missing_markers_replace_the_defaults():
    body = rows()
    body[2][1] = "?"
    body[3][1] = "NA"
    fam = family(missing_markers=("", "?"))
    message = error_of(csv_bytes(body), fam)
    assert "'income': 1 row not a number ('NA')" in message and "'?'" not in message


def test_a_numeric_marker_is_missing_but_other_spellings_are_numbers():
    body = rows()
    body[2][1] = "-999"
    body[3][0] = "-999.0"
    fam = family(missing_markers=("", "-999"))
    message = error_of(csv_bytes(body), fam)
    # -999 in income is missing (accepted); -999.0 in age is a number outside [0, 130]
    assert "'age': 1 row outside the declared domain ('-999.0')" in message and "income" not in message


def test_a_declared_category_wins_over_a_missing_marker():
    fam = family(features=[Feature(name="age"), Feature(name="region", kind="categorical",
                                                         categories=("None", "Some"))])
    body = rows()
    for i, r in enumerate(body):
        r[2] = "None" if i % 2 else "Some"
    dataset = parse_dataset(csv_bytes(body), fam)
    assert dataset.X[1, 1] == 0.0 and dataset.X[0, 1] == 1.0


def test_non_finite_and_non_numbers_are_refused():
    body = rows()
    body[0][0], body[1][0], body[2][1] = "inf", "x", "12,5"
    message = error_of(csv_bytes(body, delimiter=";"))
    assert "'age': 1 row not finite ('inf')" in message and "'age': 1 row not a number ('x')" in message
    assert "decimal commas are not read" in message


def test_unknown_category_maps_to_the_other_index():
    fam = family(features=[Feature(name="age"), Feature(name="region", kind="categorical", categories=REGIONS,
                                                         unknown="other")])
    body = rows()
    body[3][2], body[4][2] = "mars", "venus"
    dataset = parse_dataset(csv_bytes(body), fam)
    assert dataset.X[3, 1] == dataset.X[4, 1] == len(REGIONS)
    assert dataset.X[5, 1] == REGIONS.index(body[5][2])


def test_unknown_category_with_reject_gives_count_and_first_values():
    body = rows()
    for i, value in zip(range(30, 42), ["mars", "venus"] * 6, strict=True):
        body[i][2] = value
    message = error_of(csv_bytes(body))
    assert "'region': 12 rows with undeclared categories ('mars', 'venus')" in message
    assert "line 32: region='mars' is not one of" in message


def test_fifty_level_categorical_decodes_to_category_indices():
    states = tuple(f"S{i:02d}" for i in range(52))
    fam = family(features=[Feature(name="age"), Feature(name="region", kind="categorical", categories=states)])
    body = rows(260)
    for i, r in enumerate(body):
        r[2] = states[(i * 7) % 52]
    dataset = parse_dataset(csv_bytes(body), fam)
    np.testing.assert_array_equal(dataset.X[:, 1], [(i * 7) % 52 for i in range(260)])


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_delimiter_is_detected(delimiter):
    body = rows()
    dataset = parse_dataset(csv_bytes(body, delimiter=delimiter), family())
    assert dataset.delimiter == delimiter and dataset.rows == 120
    np.testing.assert_array_equal(dataset.X[:, 1], [float(r[1]) for r in body])


def test_semicolon_file_read_with_a_declared_comma_says_what_was_read():
    message = error_of(csv_bytes(rows(), delimiter=";"), family(delimiter=","))
    assert "the header was read as 1 column 'age;income;region;status;sex' with delimiter ','" in message
    assert "looks ';'-separated: declare delimiter: ';'" in message


def test_declared_delimiter_is_used_without_detection():
    body = rows()
    dataset = parse_dataset(csv_bytes(body, delimiter="|"), family(delimiter="|"))
    assert dataset.delimiter == "|" and dataset.rows == 120


@pytest.mark.parametrize("key", ["datasets/loans/2024.csv.gz", "datasets/loans/2024.CSV.GZ", ""])
def test_gzip_is_read_by_suffix_or_magic_bytes(key):
    plain = csv_bytes(rows())
    dataset = parse_dataset(gzip.compress(plain), family(), key)
    expected = parse_dataset(plain, family())
    np.testing.assert_array_equal(dataset.X, expected.X)
    np.testing.assert_array_equal(dataset.y, expected.y)


def test_gz_key_with_plain_bytes_and_corrupt_gzip_are_refused():
    plain = csv_bytes(rows())
    assert "is named .gz but is not gzip" in error_of(plain, key="a.csv.gz")
    truncated = gzip.compress(plain * 50)[:-200]
    assert "gzip data is corrupt or truncated" in error_of(truncated, key="a.csv.gz")


def test_decompressed_size_is_capped():
    big = csv_bytes(rows(2000))
    compressed = gzip.compress(big)
    message = error_of(compressed, family(max_dataset_bytes=len(compressed) + 1000))
    assert "decompresses to more than the limit" in message


def test_quoted_fields_with_newlines_keep_physical_line_numbers():
    header = HEADER + ["notes"]
    lines = [",".join(header)]
    body = rows()
    for i, r in enumerate(body):
        note = '"two\nlines, with ""quotes"""' if i in (0, 5) else "plain"
        lines.append(",".join(r + [note]))
    data = ("\n".join(lines) + "\n").encode()
    dataset = parse_dataset(data, family())
    # rows 0 and 5 each span two physical lines
    expected = [2 + i + (i > 0) + (i > 5) for i in range(120)]
    np.testing.assert_array_equal(dataset.line_numbers, expected)
    np.testing.assert_array_equal(dataset.row_ids, np.arange(120))
    lines[8] = lines[8].replace(lines[8].split(",")[0], "old", 1)  # row 7 (0-based) starts on physical line 11
    message = error_of(("\n".join(lines) + "\n").encode())
    assert "line 11: age='old' is not a number" in message


def test_bom_and_crlf_are_accepted():
    body = rows()
    dataset = parse_dataset(b"\xef\xbb\xbf" + csv_bytes(body, newline="\r\n"), family())
    assert dataset.rows == 120 and dataset.classes == ("good", "bad")
    np.testing.assert_array_equal(dataset.line_numbers[:3], [2, 3, 4])


def test_errors_give_the_total_count_and_the_first_five_lines():
    body = rows(400)
    bad = list(range(7, 400, 13))
    for i in bad:
        body[i][0] = "n/a?"
    message = error_of(csv_bytes(body))
    assert f"{len(bad)} invalid rows of 400" in message
    assert f"'age': {len(bad)} rows not a number" in message
    listed = [f"line {i + 2}:" for i in bad[:MAX_ERRORS_REPORTED]]
    assert all(line in message for line in listed)
    assert f"line {bad[MAX_ERRORS_REPORTED] + 2}:" not in message


def test_counts_and_first_lines_hold_across_reading_blocks(monkeypatch):
    monkeypatch.setattr(datasets, "CHUNK_ROWS", 16)
    body = rows(200)
    late = [150, 170]
    early = [3, 40, 41, 90]
    for i in late + early:
        body[i][2] = "mars"
    body[60] = body[60][:2]
    message = error_of(csv_bytes(body))
    assert "7 invalid rows of 200" in message
    assert "'region': 6 rows with undeclared categories" in message
    assert "1 row with a different number of fields" in message
    for line in (5, 42, 43, 62, 92):
        assert f"line {line}:" in message
    assert "line 152:" not in message


def test_values_quoted_in_messages_are_truncated():
    body = rows()
    body[2][0] = "x" * 100_000
    body[3][2] = "y" * 100_000
    message = error_of(csv_bytes(body))
    assert len(message) < 2_000
    assert "'" + "x" * 40 + "'..." in message and "y" * 41 not in message


def test_header_wider_than_the_cap_is_refused():
    header = [f"c{i}" for i in range(100_000)]
    data = (",".join(header) + "\n" + ",".join("1" for _ in header) + "\n").encode()
    assert f"100000 columns, over the limit of {MAX_COLUMNS}" in error_of(data)


def test_repeated_required_column_is_refused_and_repeated_unused_column_is_a_warning():
    body = rows()
    message = error_of(csv_bytes([r + [r[0]] for r in body], header=HEADER + ["age"]))
    assert "header repeats columns ['age']" in message
    dataset = parse_dataset(csv_bytes([r + ["a", "b"] for r in body], header=HEADER + ["x", "x"]), family())
    assert any("repeats unused columns 'x'" in w for w in dataset.warnings)


def test_one_minority_row_is_a_data_set_error_stating_the_rule():
    body = rows(labels=("good", "good"))
    body[17][3] = "bad"
    message = error_of(csv_bytes(body))
    assert "every class needs at least 10 rows" in message and "'bad' has 1" in message


def test_class_count_rule_keeps_a_holdout_row_of_each_class():
    fam = family(min_rows_per_class=2, holdout_fraction=0.08)
    assert min_rows_per_class(fam) == 13
    assert min_rows_per_class(family()) == 10
    body = rows(labels=("good", "good"))
    for i in range(12):
        body[i][3] = "bad"
    assert "at least 13 rows" in error_of(csv_bytes(body), fam)
    body[12][3] = "bad"
    assert parse_dataset(csv_bytes(body), fam).y.sum() == 13


def test_too_few_rows_in_all_is_refused():
    assert "at least 50" in error_of(csv_bytes(rows(30)))


@pytest.mark.parametrize("key", ["datasets/loans/a.parquet", "datasets/loans/a.xlsx", "datasets/loans/a.json",
                                 "datasets/loans/noext"])
def test_unsupported_file_types_are_refused_by_key(key):
    assert not is_supported_key(key)
    message = error_of(csv_bytes(rows()), key=key)
    assert message.startswith("unsupported file type") and message == unsupported_key_reason(key)


def test_parquet_names_the_sagemaker_engine():
    assert ".parquet on the sagemaker training engine" in unsupported_key_reason("datasets/x/part-0.parquet")
    assert "Parquet file" in error_of(b"PAR1\x15\x04\x15\x10" + b"\x00" * 64)
    assert "ZIP archive" in error_of(b"PK\x03\x04" + b"\x00" * 64)


@pytest.mark.parametrize("key", ["a.csv", "A.CSV", "datasets/f/x.csv.gz", "x.Csv.Gz"])
def test_supported_keys(key):
    assert is_supported_key(key) and unsupported_key_reason(key) == ""


def test_sensitive_attribute_is_optional_and_missing_cells_form_their_own_group():
    body = rows()
    body[0][4] = ""
    body[1][4] = "NA"
    dataset = parse_dataset(csv_bytes(body), family())
    assert list(dataset.sensitive[:3]) == ["(missing)", "(missing)", "M"]
    without = parse_dataset(csv_bytes([r[:4] for r in body], header=HEADER[:4]), family(sensitive_attribute=None))
    assert without.sensitive is None and without.rows == 120


def test_blank_rows_are_skipped_with_a_warning_and_unused_columns_are_named():
    body = rows()
    lines = csv_bytes([r + ["id"] for r in body], header=HEADER + ["loan_id"]).split(b"\n")
    lines.insert(10, b"")
    lines.insert(20, b",,,,,")
    dataset = parse_dataset(b"\n".join(lines), family())
    assert dataset.rows == 120
    assert "2 blank rows skipped (first at lines 11, 21)" in dataset.warnings
    assert "1 column not in the family ignored: 'loan_id'" in dataset.warnings
    assert dataset.line_numbers[9] == 12


def test_a_quote_left_open_is_reported_where_its_row_starts():
    body = rows()
    body[30][2] = '"north'
    message = error_of(csv_bytes(body))
    assert "line 32: 3 fields, the header has 5 (a quoted field runs over 90 lines: a quote left open?)" in message


def test_rows_with_a_different_field_count_are_counted():
    body = rows()
    body[4] = body[4][:3]
    body[8] = body[8] + ["extra"]
    message = error_of(csv_bytes(body))
    assert "2 invalid rows of 120: 2 rows with a different number of fields" in message
    assert "line 6: 3 fields, the header has 5" in message


def test_non_utf8_text_names_the_line():
    data = csv_bytes(rows()).replace(b"north", b"n\xf6rth", 1)
    assert "not UTF-8 text (invalid byte 0xf6 at line 2" in error_of(data)
    assert "UTF-16" in error_of("age,income\n1,2\n".encode("utf-16"))


def test_values_are_float64_as_published():
    body = rows()
    body[0][1] = "1000000000.5"
    body[1][1] = "0.1"
    dataset = parse_dataset(csv_bytes(body), family())
    assert dataset.X.dtype == np.float64
    assert dataset.X[0, 1] == 1000000000.5 and dataset.X[1, 1] == 0.1


def test_parse_csv_is_parse_dataset():
    assert parse_csv is parse_dataset


def test_read_table_reads_columns_with_the_training_reader():
    table = read_table(gzip.compress(csv_bytes(rows(), delimiter=";")), key="a.csv.gz")
    assert table.delimiter == ";" and table.delimiter_detected and table.header == tuple(HEADER)
    assert table.columns["status"][:4] == ["bad", "good", "good", "bad"] and table.line_numbers[0] == 2


def test_public_credit_sample_is_the_documented_file_and_parses_as_published():
    data = PUBLIC.read_bytes()
    assert hashlib.sha256(data).hexdigest() == PUBLIC_SHA256
    fam = ModelFamily.model_validate({
        "name": "credit-data", "target": "Status", "positive_label": "bad", "favorable_label": "good",
        "algorithm": "hist_gradient_boosting",
        "features": [
            {"name": "Seniority", "minimum": 0},
            {"name": "Income", "minimum": 0, "missing": "median"},
            {"name": "Home", "kind": "categorical", "categories": ["owner", "rent", "parents", "other", "priv"],
             "missing": "most_frequent", "unknown": "other"},
            {"name": "Records", "kind": "categorical", "categories": ["no", "yes"]},
        ],
    })
    dataset = parse_dataset(data, fam, "datasets/credit-data/credit_data_sample.csv")
    assert dataset.rows == 2000 and dataset.classes == ("good", "bad")
    assert int(dataset.y.sum()) == 567
    assert int(np.isnan(dataset.X[:, 1]).sum()) == 148 and int(np.isnan(dataset.X[:, 2]).sum()) == 4
    assert int((dataset.X[:, 2] == 5).sum()) == data.count(b'"ignore"')  # undeclared 'ignore' -> other
    strict = fam.model_copy(update={"features": (Feature(name="Income", minimum=0),)})
    assert "'Income': 148 rows missing a value" in error_of(data, strict)


def test_blank_lines_before_the_header_are_skipped():
    dataset = parse_dataset(b"\n\n" + csv_bytes(rows()), family())
    assert dataset.line_numbers[0] == 4 and "2 blank rows skipped (first at lines 1, 2)" in dataset.warnings
    assert "data set is empty" in error_of(b"  \n\r\n")
