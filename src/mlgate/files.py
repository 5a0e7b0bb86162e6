"""File I/O shared by the stages: atomic writes, so a failed stage leaves no half-written file."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where frames are hashed: `mlgate fingerprint`, run by every `dvc repro`, needs neither
    import pandas as pd
    import pyarrow as pa


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds.

    Works for files and directories alike: the caller writes whatever it likes at the yielded path.
    A directory replaces a directory (a stage's output folder); a file never replaces a directory,
    which is someone's data, not an earlier output of the same kind.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    staged = scratch / target.name
    try:
        yield staged
        if target.is_dir() and not target.is_symlink():
            if not staged.is_dir():
                raise IsADirectoryError(f"{target} is a directory; not replacing it with a file")
            shutil.rmtree(target)
        os.replace(staged, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def dumps(payload: Any) -> str:
    """The stages' JSON: key order kept, two-space indent, a final newline (numpy scalars as numbers)."""
    return json.dumps(payload, indent=2, sort_keys=False, default=_jsonable) + "\n"


def write_json(path: str | Path, payload: Any) -> None:
    with atomic_path(path) as staged:
        staged.write_text(dumps(payload))


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as staged:
        staged.write_text(text)


def write_parquet(path: str | Path, frame: pd.DataFrame) -> None:
    with atomic_path(path) as staged:
        frame.to_parquet(staged, index=False)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def md5(path: str | Path) -> str:
    """The file's md5, as DVC records a file (in dvc.lock, or in a directory's manifest)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "md5").hexdigest()


_HASH_BATCH_ROWS = 100_000


def _frames(data: pd.DataFrame | pa.Table) -> Iterator[pd.DataFrame]:
    """The rows as DataFrames of bounded size: an Arrow table is converted batch by batch."""
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        yield data
        return
    for batch in data.to_batches(max_chunksize=_HASH_BATCH_ROWS):
        yield batch.to_pandas()


def content_hash(data: pd.DataFrame | pa.Table) -> str:
    """sha256 of the values, column names and dtypes; independent of file format, row index and
    batching (pandas hashes each row on its own)."""
    import pandas as pd

    digest = hashlib.sha256()
    digest.update("\x1f".join(f"{c}:{t}" for c, t in dtypes(data).items()).encode())
    for frame in _frames(data):
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def dtypes(data: pd.DataFrame | pa.Table) -> dict[str, str]:
    import pandas as pd

    frame = data if isinstance(data, pd.DataFrame) else data.schema.empty_table().to_pandas()
    return {str(c): str(t) for c, t in frame.dtypes.items()}
