"""ingest: read the declared source; write data/raw/ (Parquet snapshot + meta.json with provenance).

Reads data.source (file, sql or http; see mlgate.adapters.sources) and data.current_path when set; writes
paths.raw. DVC reruns it when data/source/ or the source's fingerprint (paths.fingerprint) changes.
Personal data is handled here, where rows enter (data.contract.columns `pii`/`handling`): dropped
columns never reach data/raw/, hashed ones arrive hashed, so no later file holds them in the clear.
The same rows give the same bytes (no timings or timestamps in meta.json, fixed Parquet writer
settings): DVC hashes data/raw/, and a byte that differs reruns every later stage.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mlgate import console, files, project
from mlgate.adapters import sources
from mlgate.errors import StageError
from mlgate.modelling.personal import PersonalData, keyed_hash
from mlgate.modelling.source import SourceSpec

STAGE = "ingest"


def describe(data: pd.DataFrame | pa.Table, source: SourceSpec) -> dict[str, Any]:
    return {
        "kind": source.kind,
        "source": sources.location(source),
        "rows": len(data),
        "columns": files.dtypes(data),
        "content_hash": files.content_hash(data),
    }


# Spelled out rather than left to pyarrow's defaults, which have changed between releases (row
# group size, format version); the file still names the writer's version (created_by, and pandas'
# schema metadata), so a pyarrow or pandas upgrade (requirements.lock) reruns the pipeline once.
PARQUET_SETTINGS: dict[str, Any] = {
    "compression": "snappy",
    "row_group_size": 1 << 20,
    "version": "2.6",
    "data_page_version": "1.0",
    "use_dictionary": True,
    "write_statistics": True,
    "store_schema": True,
}


def write_parquet(data: pd.DataFrame | pa.Table, path: Path) -> None:
    """The rows as Parquet, byte for byte the same for the same rows and library versions."""
    table = data if isinstance(data, pa.Table) else pa.Table.from_pandas(data, preserve_index=False)
    pq.write_table(table, path, **PARQUET_SETTINGS)


def protect(data: pd.DataFrame | pa.Table, policy: PersonalData, key: bytes | None) -> pd.DataFrame | pa.Table:
    """``data`` with the contract's dropped columns gone and its hashed columns hashed."""
    if isinstance(data, pd.DataFrame):
        return policy.apply(data, key)
    table = data.drop_columns([c for c in policy.drop if c in data.column_names])
    for column in (c for c in policy.hash if c in table.column_names):
        hashed = keyed_hash(table[column].to_pandas(), key)
        table = table.set_column(table.column_names.index(column), column, pa.array(hashed, type=pa.string()))
    return table


def _key(policy: PersonalData) -> bytes | None:
    try:
        return policy.key()
    except ValueError as error:
        raise StageError(f"{STAGE}: {error}") from None


def run(params: dict[str, Any]) -> dict[str, Any]:
    spec = project.data_spec(params)
    paths = project.paths(params)
    policy = spec.contract.personal
    key = _key(policy)  # before reading: a missing key fails fast
    started = time.perf_counter()
    frame = protect(sources.read_snapshot(spec.source), policy, key)
    seconds = time.perf_counter() - started
    # the read time goes to the console only: in meta.json it would change data/raw's hash every run
    meta = {"dataset": spec.name, "data": describe(frame, spec.source)}
    current = None
    if spec.current_path:
        current = protect(sources.read(sources.current_source(spec.current_path), "data.current_path"), policy, key)
        meta["current"] = describe(current, sources.current_source(spec.current_path))
    with files.atomic_path(paths.raw) as staged:
        staged.mkdir()
        write_parquet(frame, staged / paths.raw_data.name)
        if current is not None:
            write_parquet(current, staged / paths.raw_current.name)
        files.write_json(staged / paths.raw_meta.name, meta)
    rate = len(frame) / seconds if seconds > 0 else float("inf")
    if policy.drop or policy.hash:
        console.say(
            STAGE,
            f"personal data: dropped {', '.join(policy.drop) or 'none'}; hashed {', '.join(policy.hash) or 'none'}"
            + (f" (key from ${policy.key_env})" if policy.hash else ""),
        )
    console.say(
        STAGE,
        f"{console.number(len(frame))} rows × {len(meta['data']['columns'])} columns from {meta['data']['source']} "
        f"in {seconds:.1f}s ({rate:,.0f} rows/s) → {paths.raw}/ (sha256 {meta['data']['content_hash'][:12]})",
    )
    return meta
