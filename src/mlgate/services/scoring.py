"""`mlgate score`: batch predictions for a CSV or Parquet file, chunk by chunk.

Memory stays flat whatever the file size: one chunk is read, predicted and appended at a time. The
output is written under a temporary name and renamed at the end, so a failed run leaves no partial
file behind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mlgate.errors import StageError
from mlgate.files import atomic_path
from mlgate.modelling.data import LARGEST_NUMBER, non_finite
from mlgate.modelling.features import InputValidationError
from mlgate.modelling.personal import PersonalData

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def file_format(path: Path) -> str:
    suffixes = [s for s in path.suffixes if s != ".gz"]
    kind = FORMATS.get(suffixes[-1].lower() if suffixes else "")
    if kind is None:
        raise StageError(f"{path}: unknown file type; use .csv, .csv.gz or .parquet")
    return kind


def chunks(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    if file_format(path) == "parquet":
        for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows):
            yield batch.to_pandas()
    else:
        yield from pd.read_csv(path, chunksize=chunk_rows)


def total_rows(path: Path) -> int | None:
    return pq.ParquetFile(path).metadata.num_rows if file_format(path) == "parquet" else None


def score(
    predict: Callable[[pd.DataFrame], pd.DataFrame],
    input_path: Path,
    output_path: Path,
    *,
    chunk_rows: int = 100_000,
    keep_columns: tuple[str, ...] = (),
    finite_columns: tuple[str, ...] = (),
    personal: PersonalData | None = None,
    explain: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
    progress: Callable[[int], Any] = lambda rows: None,
) -> int:
    """Predict every row of ``input_path`` into ``output_path``; returns the number of rows.

    The output holds ``keep_columns`` from the input (an id, say) and the model's outputs, in input order.
    ``finite_columns`` (the model's numeric inputs) must hold finite numbers: an infinity stops the
    run naming column and rows, before the model sees it. ``personal`` (the model's personal-data
    policy) is applied to each chunk first: a dropped column is neither used nor written, a hashed
    one is used and kept hashed. ``explain`` (``explain.explainer`` at the asked k) adds each row's
    largest contributions after its outputs.
    """
    personal = personal or PersonalData()
    dropped = [c for c in keep_columns if c in personal.drop]
    if dropped:
        raise StageError(
            f"--keep-columns {dropped}: declared personal data with handling: drop, so never written; "
            f"keep an id column instead"
        )
    key = personal.key() if personal.hash else None
    if not input_path.is_file():
        raise StageError(f"{input_path}: input file not found")
    out_format = file_format(output_path)
    if output_path.is_dir():
        raise StageError(
            f"{output_path}: --output is a directory; give a file name ending in .csv, .csv.gz or .parquet"
        )
    if output_path.exists() and output_path.resolve() == input_path.resolve():
        raise StageError(f"{output_path}: --output is the input file; scoring would replace it, give another name")
    done = 0
    with atomic_path(output_path) as staged:
        writer = None
        try:
            for chunk in chunks(input_path, chunk_rows):
                chunk = personal.apply(chunk, key)
                absent = [c for c in keep_columns if c not in chunk.columns]
                if absent:
                    raise StageError(f"{input_path}: --keep-columns {absent} not in the file")
                _check_finite(chunk, finite_columns, input_path, done)
                try:
                    output = predict(chunk)
                except InputValidationError as error:
                    raise StageError(f"{input_path}: rows {done + 1:,}–{done + len(chunk):,}: {error}") from None
                parts = [chunk[list(keep_columns)], output] + ([explain(chunk)] if explain is not None else [])
                frame = pd.concat([part.reset_index(drop=True) for part in parts], axis=1)
                if out_format == "csv":
                    frame.to_csv(staged, mode="a", header=done == 0, index=False)
                else:
                    table = pa.Table.from_pandas(frame, preserve_index=False)
                    writer = writer or pq.ParquetWriter(staged, table.schema)
                    writer.write_table(table.cast(writer.schema))
                done += len(chunk)
                progress(len(chunk))
        finally:
            if writer is not None:
                writer.close()
        if done == 0:
            raise StageError(f"{input_path}: no rows to score")
    return done


def _check_finite(chunk: pd.DataFrame, columns: tuple[str, ...], input_path: Path, done: int) -> None:
    """scikit-learn raises on an infinity (or a number beyond float32's range) and some models
    predict garbage from one: name the column and rows (counted from 1 over the whole file) instead."""
    for column in (c for c in columns if c in chunk.columns):
        beyond = non_finite(chunk[column]).to_numpy()
        if beyond.any():
            rows = [done + position + 1 for position in beyond.nonzero()[0][:5]]
            raise StageError(
                f"{input_path}: column '{column}': {int(beyond.sum()):,} infinite or too large value(s) "
                f"(beyond ±{LARGEST_NUMBER:.1e}) at row(s) {', '.join(f'{r:,}' for r in rows)}"
                f"{', ...' if beyond.sum() > 5 else ''}; the model takes finite numbers only: fix them, "
                f"or leave them empty to score them as missing values"
            )
