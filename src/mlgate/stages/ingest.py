"""ingest: read the declared source; write data/raw/ (Parquet snapshot + meta.json with provenance).

Reads data.source (file, sql or http; see mlgate.sources) and data.current_path when set; writes
paths.raw. DVC reruns it when data/source/ or the source's fingerprint (paths.fingerprint) changes.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import pandas as pd

from mlgate import console, files, project, sources
from mlgate.data import SourceSpec

STAGE = "ingest"


def content_hash(frame: pd.DataFrame) -> str:
    """sha256 of the values, column names and dtypes; independent of file format and row index."""
    digest = hashlib.sha256()
    digest.update("\x1f".join(f"{c}:{t}" for c, t in frame.dtypes.astype(str).items()).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def describe(frame: pd.DataFrame, source: SourceSpec) -> dict[str, Any]:
    return {
        "kind": source.kind,
        "source": sources.location(source),
        "rows": len(frame),
        "columns": {str(c): str(t) for c, t in frame.dtypes.items()},
        "content_hash": content_hash(frame),
    }


def current_source(path: str) -> SourceSpec:
    return SourceSpec(kind="file", path=path, format="parquet" if Path(path).suffix == ".parquet" else "csv")


def run(params: dict[str, Any]) -> dict[str, Any]:
    spec = project.data_spec(params)
    paths = project.paths(params)
    started = time.perf_counter()
    frame = sources.read(spec.source)
    seconds = time.perf_counter() - started
    meta = {"dataset": spec.name, "data": describe(frame, spec.source) | {"read_seconds": round(seconds, 3)}}
    current = None
    if spec.current_path:
        current = sources.read(current_source(spec.current_path), "data.current_path")
        meta["current"] = describe(current, current_source(spec.current_path))
    with files.atomic_path(paths.raw) as staged:
        staged.mkdir()
        frame.to_parquet(staged / paths.raw_data.name, index=False)
        if current is not None:
            current.to_parquet(staged / paths.raw_current.name, index=False)
        files.write_json(staged / paths.raw_meta.name, meta)
    rate = len(frame) / seconds if seconds > 0 else float("inf")
    console.say(STAGE, f"{console.number(len(frame))} rows × {frame.shape[1]} columns from {meta['data']['source']} "
                       f"in {seconds:.1f}s ({rate:,.0f} rows/s) → {paths.raw}/ (sha256 {meta['data']['content_hash'][:12]})")
    return meta
