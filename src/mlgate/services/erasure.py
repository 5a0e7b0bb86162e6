"""`mlgate forget`: which registered versions learnt from, or were judged on, one person's rows; the
removal of those rows from a file source; the request in the promotion ledger.

A person is named by the contract's id column (``role: id``, ``handling: hash``): its values are keyed
hashes wherever mlgate keeps them, and each train run logs the hashed ids of its train and test rows
(``registry.ERASURE_DIR``). The id given on the command line is hashed with the same key and written
nowhere; the ledger keeps a digest of that hash, which only the key's holder can match to a person.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mlgate.adapters import tracking
from mlgate.errors import StageError
from mlgate.files import atomic_path
from mlgate.modelling.data import DataSpec
from mlgate.modelling.personal import keyed_hash
from mlgate.registry import ERASURE_DIR, ERASURE_FILE
from mlgate.services import monitor, promote

PARTS_SEARCHED = ("train", "test")


@dataclass(frozen=True)
class Touched:
    """A registered version whose train or test rows held the id."""

    version: int
    parts: tuple[str, ...]  # train, test
    aliases: tuple[str, ...]
    run_id: str


@dataclass(frozen=True)
class Search:
    column: str
    subject: str  # sha256 of the id's keyed hash: what the ledger keeps
    touched: tuple[Touched, ...]
    unrecorded: tuple[int, ...]  # versions whose run logged no id set (trained before it was logged)
    searched: int  # versions searched


def id_column(spec: DataSpec, column: str | None) -> str:
    """The id column to search: ``column``, or the contract's only erasable one."""
    erasable = spec.erasable_ids
    if column is not None:
        if column not in erasable:
            raise StageError(
                f"--column {column!r}: not an id column declared `role: id` with `handling: hash` in "
                f"conf/data/{spec.name}.yaml (those are: {erasable or 'none'})"
            )
        return column
    if not erasable:
        raise StageError(
            f"conf/data/{spec.name}.yaml declares no id column with `role: id, pii: direct, handling: hash`: "
            f"without one mlgate cannot tell whose rows a version saw. Declare the column that names a "
            f"person that way, then `dvc repro` so the next versions record their ids"
        )
    if len(erasable) > 1:
        raise StageError(f"the contract has several id columns ({', '.join(erasable)}): choose one with --column")
    return erasable[0]


def hashed(spec: DataSpec, value: str) -> str:
    """The id as mlgate keeps it: its keyed hash under the contract's key (which must be set)."""
    return str(keyed_hash(pd.Series([value], dtype=object), _key(spec)).iloc[0])


def _key(spec: DataSpec) -> bytes:
    try:
        return spec.contract.personal.key()
    except ValueError as error:
        raise StageError(str(error)) from None


def subject(hashed_id: str) -> str:
    return hashlib.sha256(f"mlgate-erasure:{hashed_id}".encode()).hexdigest()


def search(model: str, column: str, hashed_id: str) -> Search:
    """Every registered version of ``model`` whose logged train or test ids hold ``hashed_id``."""
    touched, unrecorded = [], []
    versions = tracking.versions(model)
    for held in versions:
        ids = _logged_ids(held.run_id) if held.run_id else None
        if ids is None:
            unrecorded.append(held.version)
            continue
        parts = ids.loc[(ids["column"] == column) & (ids["id"] == hashed_id), "part"]
        found = tuple(p for p in PARTS_SEARCHED if p in set(parts))
        if found:
            touched.append(Touched(held.version, found, held.aliases, held.run_id))
    return Search(column, subject(hashed_id), tuple(touched), tuple(unrecorded), len(versions))


def _logged_ids(run_id: str) -> pd.DataFrame | None:
    with tempfile.TemporaryDirectory(prefix="mlgate-forget-") as scratch:
        path = tracking.download_artifact_if_logged(run_id, f"{ERASURE_DIR}/{ERASURE_FILE}", scratch)
        return None if path is None else pd.read_parquet(path)


@dataclass(frozen=True)
class SourceRows:
    """The id's rows in the data source: counted in a local file, which mlgate can rewrite; for any
    other source, what its owner should run."""

    where: str
    rows: int | None  # None: not counted (not a local file)
    advice: str


def source_rows(spec: DataSpec, column: str, hashed_id: str) -> SourceRows:
    source = spec.source
    if source.kind == "file" and "://" not in (source.path or ""):
        rows = int(_holding(_read(Path(source.path), source.format, source.options), spec, column, hashed_id).sum())
        return SourceRows(source.path, rows, "--remove-from-source removes them")
    if source.kind == "sql" and source.table:
        advice = f"remove them there: DELETE FROM {source.table} WHERE {column} = :id (the id bound as a parameter)"
    else:
        advice = "remove them at their origin"
    return SourceRows(f"the {source.kind} source", None, f"mlgate does not edit it; {advice}, then `dvc repro`")


def remove_from_source(spec: DataSpec, column: str, hashed_id: str, root: Path = Path()) -> int:
    """Rewrite the local file source under ``root`` (``source_rows`` counted its rows) without the rows
    holding the id, atomically: the old file stays whole until the new one is complete; the rows removed."""
    source = spec.source
    path = root / source.path
    frame = _read(path, source.format, source.options)
    holding = _holding(frame, spec, column, hashed_id)
    if holding.any():
        with atomic_path(path) as staged:
            kept = frame[~holding]
            if source.format == "parquet":
                kept.to_parquet(staged, index=False)
            else:
                compression = "gzip" if path.suffix == ".gz" else None
                kept.to_csv(staged, index=False, sep=source.options.get("sep", ","), compression=compression)
    return int(holding.sum())


def _read(path: Path, format_: str, options: dict[str, Any]) -> pd.DataFrame:
    if not path.is_file():
        raise StageError(f"{path}: the data source file is not there")
    if format_ == "parquet":
        return pd.read_parquet(path)
    # every cell as the text it is, so the rows kept are written back as they were read
    return pd.read_csv(path, dtype=object, keep_default_na=False, sep=options.get("sep", ","))


def _holding(frame: pd.DataFrame, spec: DataSpec, column: str, hashed_id: str) -> pd.Series:
    if column not in frame.columns:
        raise StageError(f"{spec.source.path}: no column {column!r} (the contract's id column)")
    values = frame[column].where(frame[column].astype(str) != "", None)
    return (keyed_hash(values, _key(spec)) == hashed_id).fillna(False)


def open_retraining(params: dict[str, Any], spec: DataSpec, found: Search, hashed_id: str) -> dict[str, Any]:
    """A branch `erasure/<time>` whose file source lacks the id's rows, with `dvc repro` run there and
    the gate's verdict committed, for review like `mlgate monitor`'s retraining; the working tree and
    its source stay as they are until the branch is merged."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")

    def prepare(worktree: Path) -> str:
        removed = remove_from_source(spec, found.column, hashed_id, worktree)
        return (
            f"Erasure {stamp}: {removed} row(s) of {found.column} {found.subject[:12]} removed from {spec.source.path}"
        )

    title = f"Retrain {spec.name} without the rows of an erasure request ({stamp})"
    return monitor.retraining_branch(params, f"erasure/{stamp}", title, stamp, prepare)


def record(
    model: str,
    ledger: str | Path,
    found: Search,
    removed: int | None,
    purged: int | None,
    reason: str,
    branch: str | None = None,
) -> dict[str, Any]:
    """The request in the ledger: the id's digest, the versions it touched, the source rows removed
    (here or on the retraining ``branch``) and the prediction-log rows purged (None: not asked)."""
    return promote.record_erasure(
        model,
        ledger,
        {
            "column": found.column,
            "subject": found.subject,
            "versions": [{"version": t.version, "parts": list(t.parts)} for t in found.touched],
            "unrecorded_versions": list(found.unrecorded),
            "source_rows_removed": removed,
            "prediction_log_rows_purged": purged,
            "retraining_branch": branch,
            "reason": reason,
        },
    )
