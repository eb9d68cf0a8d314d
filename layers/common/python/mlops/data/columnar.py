"""Parquet data sets, on the engine that has room for a reader: the SageMaker training job (AWS's scikit-learn image
ships pyarrow 25). The Lambda engine has none: pyarrow (about 120 MiB unzipped) does not fit beside scikit-learn
in Lambda's 250 MiB package limit, and its plan refuses Parquet before training (mlops.training.engines).

Record batches of CHUNK_ROWS rows, only the family's columns, go through the CSV path's decoding and validation
(`datasets._decode`): every check, message and result is the CSV one. Cells are the columns cast to text by Arrow
(floats as their shortest round-trip text, so float(text) gives the stored double back); a null is an empty cell
(missing when "" is one of the family's missing_markers, the default). Messages name rows and columns, not lines
and delimiters: "row 7" is the file's seventh row (1-based, across its row groups), and the DataSet's
`line_numbers` hold these row numbers.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any, BinaryIO

from mlops.core.errors import DataSetError
from mlops.core.schemas import ModelFamily
from mlops.data.datasets import CHUNK_ROWS, DataSet, _decode, _Problems, _required_positions

PARQUET_MAGIC = b"PAR1"


class _ParquetTable:
    """The `_Table` interface `_decode` reads (header, rows, warnings) over a Parquet file's record batches."""

    delimiter = ","
    detected = False
    location = "row"  # how messages (datasets._Problems) name a position in the file

    def __init__(self, file: Any, family: ModelFamily) -> None:
        self.file = file
        self.header = list(file.schema_arrow.names)
        self.warnings: list[str] = []
        self.family = family
        # Columns stored as integers: a categorical feature there holds codes, not its declared text categories.
        import pyarrow as pa

        self.integer_columns = frozenset(field.name for field in file.schema_arrow
                                         if pa.types.is_integer(field.type))

    def rows(self, problems: _Problems) -> Iterator[tuple[int, dict[int, str]]]:
        """(row number from 1, {column position: cell text}) per row, the family's columns only."""
        import pyarrow as pa
        import pyarrow.compute as pc

        wanted = [*self.family.feature_names, self.family.target]
        if self.family.sensitive_attribute is not None:
            wanted.append(self.family.sensitive_attribute)
        positions = [self.header.index(name) for name in wanted]
        line = 0
        try:
            for batch in self.file.iter_batches(batch_size=CHUNK_ROWS, columns=wanted):
                cells = [pc.cast(column, pa.string()).to_pylist() for column in batch.columns]
                for values in zip(*cells, strict=True):
                    line += 1
                    yield line, {p: ("" if v is None else v) for p, v in zip(positions, values, strict=True)}
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
            problems.stop(line + 1, f"Parquet: {str(exc)[:200]}")

    def warnings_after_rows(self) -> list[str]:
        return []

    def expected_rows(self, rows_read: int) -> int:
        """The row count the file's footer records."""
        return int(self.file.metadata.num_rows)


def parse_parquet(data: bytes | BinaryIO, family: ModelFamily, key: str = "") -> DataSet:
    """A Parquet data set decoded and validated as `datasets.parse_dataset` decodes CSV (same DataSet, same errors).

    Raises DataSetError: pyarrow is not installed (the Lambda engine), the file is not Parquet or is corrupt,
    required columns are absent, or any of parse_dataset's row and class checks fails."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataSetError("Parquet data sets train on the sagemaker engine only (this engine has no Parquet "
                           "reader): declare training.engine: sagemaker or auto in the family") from None
    source = io.BytesIO(data) if isinstance(data, bytes | bytearray) else data
    source.seek(0)
    if source.read(4) != PARQUET_MAGIC:
        raise DataSetError(f"file {key.rsplit('/', 1)[-1]!r} is named .parquet but is not Parquet data")
    source.seek(0)
    try:
        file = pq.ParquetFile(source)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError... for a damaged footer
        raise DataSetError(f"Parquet file could not be read: {str(exc)[:200]}") from None
    table = _ParquetTable(file, family)
    positions = _required_positions(table.header, family, table)  # type: ignore[arg-type]
    return _decode(table, family, positions)  # type: ignore[arg-type]
