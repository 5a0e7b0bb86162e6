"""ingest: read the declared source; write data/raw/ (Parquet snapshot + meta.json with a content hash).

Reads data.source (and data.current_path when set); writes paths.raw.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pandas as pd

from mlgate import console, files, project
from mlgate.data import SourceSpec
from mlgate.project import StageError

STAGE = "ingest"


def content_hash(frame: pd.DataFrame) -> str:
    """sha256 of the values, column names and dtypes; independent of file format and row index."""
    digest = hashlib.sha256()
    digest.update("\x1f".join(f"{c}:{t}" for c, t in frame.dtypes.astype(str).items()).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def read_source(source: SourceSpec, what: str = "data.source") -> pd.DataFrame:
    if source.kind != "file":
        raise StageError(f"{what}.kind '{source.kind}' is not supported yet; use 'file'")
    return read_file(Path(source.path), source.format, what)


def read_file(path: Path, fmt: str, what: str) -> pd.DataFrame:
    if not path.is_file():
        raise StageError(f"{path}: source file not found ({what} in params.yaml)")
    if path.stat().st_size == 0:
        raise StageError(f"{path}: the file is empty (0 bytes)")
    try:
        if fmt == "csv":
            frame = pd.read_csv(path)
        elif fmt == "parquet":
            frame = pd.read_parquet(path)
        else:
            raise StageError(f"{what}.format must be csv or parquet, got '{fmt}'")
    except pd.errors.EmptyDataError:
        raise StageError(f"{path}: the file is empty (no header row)") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as error:
        raise StageError(f"{path}: cannot be read as {fmt}: {error}") from None
    if frame.empty:
        raise StageError(f"{path}: no data rows (columns: {', '.join(map(str, frame.columns)) or 'none'})")
    return frame


def describe(frame: pd.DataFrame, source: str) -> dict[str, Any]:
    return {
        "source": source,
        "rows": len(frame),
        "columns": {str(c): str(t) for c, t in frame.dtypes.items()},
        "content_hash": content_hash(frame),
    }


def run(params: dict[str, Any]) -> dict[str, Any]:
    spec = project.data_spec(params)
    paths = project.paths(params)
    frame = read_source(spec.source)
    meta = {"dataset": spec.name, "data": describe(frame, spec.source.path)}
    current = None
    if spec.current_path:
        current_path = Path(spec.current_path)
        current = read_file(current_path, "parquet" if current_path.suffix == ".parquet" else "csv", "data.current_path")
        meta["current"] = describe(current, spec.current_path)
    with files.atomic_path(paths.raw) as staged:
        staged.mkdir()
        frame.to_parquet(staged / paths.raw_data.name, index=False)
        if current is not None:
            current.to_parquet(staged / paths.raw_current.name, index=False)
        files.write_json(staged / paths.raw_meta.name, meta)
    console.say(STAGE, f"{console.number(len(frame))} rows × {frame.shape[1]} columns from {spec.source.path} "
                       f"→ {paths.raw}/ (sha256 {meta['data']['content_hash'][:12]})")
    return meta
