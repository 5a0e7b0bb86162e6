"""Which rows a model learnt from, kept as 64-bit digests of their values.

A retraining splits the grown data anew, so its test split holds rows the production model trained on:
scored on them, production looks better than it is and a fresh candidate is judged against a memory. The
train run logs its rows' digests; the gate leaves the rows production trained on out of the comparison.
A digest is of the values alone (not the row's position, nor how a categorical column encodes its
values), over the columns the model saw, so the same row in a later split has the same digest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd


def row_digests(frame: pd.DataFrame, columns: tuple[str, ...]) -> np.ndarray:
    """One uint64 per row of ``frame``: a digest of its values in ``columns``."""
    return pd.util.hash_pandas_object(frame[list(columns)], index=False).to_numpy(dtype=np.uint64)


@dataclass(frozen=True)
class TrainedRows:
    """The rows a model trained on: the columns digested, and the sorted distinct digests."""

    columns: tuple[str, ...]
    digests: np.ndarray

    @classmethod
    def of(cls, frame: pd.DataFrame, columns: tuple[str, ...]) -> TrainedRows:
        return cls(tuple(columns), np.unique(row_digests(frame, columns)))

    def save(self, path: str | Path) -> None:
        with open(path, "wb") as out:  # a file object: np.savez would add .npz to a path
            np.savez(out, columns=np.array(self.columns, dtype=str), digests=self.digests)

    @classmethod
    def load(cls, path: str | Path) -> TrainedRows:
        with np.load(path, allow_pickle=False) as stored:
            return cls(tuple(str(c) for c in stored["columns"]), stored["digests"].astype(np.uint64))

    def holds(self, frame: pd.DataFrame) -> np.ndarray | None:
        """Per row of ``frame``: whether it is one of these rows; None when ``frame`` lacks a column they
        were digested on (then nobody can tell)."""
        if any(column not in frame.columns for column in self.columns):
            return None
        return np.isin(row_digests(frame, self.columns), self.digests, assume_unique=False)
