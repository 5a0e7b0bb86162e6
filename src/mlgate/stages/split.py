"""split: drop exact duplicate rows, then a seeded stratified train / test / current split.

Reads paths.raw and the validation report; writes paths.split (train, test and current Parquet
files, summary.json, and ids.parquet: which part each row's hashed id went to). `current` is the
batch `drift` compares with training data: held-out rows by default, or the file at data.current_path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
from sklearn.model_selection import train_test_split

from mlgate import config, console, files, project
from mlgate.errors import StageError
from mlgate.modelling.data import DataSpec, conform

STAGE = "split"


@dataclass(frozen=True)
class SplitParams:
    test_size: float
    current_size: float

    def __post_init__(self) -> None:
        if not (0 < self.test_size < 1 and 0 <= self.current_size < 1 and self.test_size + self.current_size < 0.9):
            raise ValueError("split: need 0 < test_size < 1, 0 <= current_size < 1 and test_size + current_size < 0.9")


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame
    test: pd.DataFrame
    current: pd.DataFrame
    duplicates: int
    ids: pd.DataFrame  # column, id, part: every row's hashed id (spec.erasable_ids) and the part it went to

    PARTS = ("train", "test", "current")


def id_parts(raw: pd.DataFrame, rows: pd.DataFrame, parts: dict[str, pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    """Which part each raw row's ids went to: ``rows`` is ``raw`` conformed (row for row) and ``parts``
    its deduplicated rows split. A duplicate dropped before the split went where the row it repeats
    went: a person whose row another person's row repeats was still learnt from."""
    key = pd.util.hash_pandas_object(rows, index=False).to_numpy()
    part_of = {h: name for name, part in parts.items() for h in pd.util.hash_pandas_object(part, index=False)}
    where = pd.Series(key).map(part_of).to_numpy()
    frames = [pd.DataFrame({"column": column, "id": raw[column].to_numpy(), "part": where}) for column in columns]
    ids = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({"column": [], "id": [], "part": []})
    ids = ids[ids["id"].notna() & ids["part"].notna()].astype(str)
    return ids.drop_duplicates().sort_values(["column", "id", "part"], ignore_index=True)


def split(
    frame: pd.DataFrame, spec: DataSpec, params: SplitParams, seed: int, current: pd.DataFrame | None = None
) -> Split:
    """Pure: the frame conformed to the contract, deduplicated and split (stratified by the task's
    strata of the target; a task without a target, at random); no file I/O."""
    task = spec.learning_task

    def strata(part: pd.DataFrame) -> pd.Series | None:
        return task.strata(part[spec.target]) if task.supervised else None

    raw, frame = frame, conform(frame, spec)
    deduplicated = frame.drop_duplicates(ignore_index=True)
    duplicates = len(frame) - len(deduplicated)
    held_out = params.test_size + (params.current_size if current is None else 0.0)
    rest, holdout = train_test_split(deduplicated, test_size=held_out, random_state=seed, stratify=strata(deduplicated))
    if current is None:
        test_share = params.test_size / held_out
        test, current_rows = train_test_split(
            holdout, train_size=test_share, random_state=seed, stratify=strata(holdout)
        )
    else:
        test, current_rows = holdout, conform(current, spec)
    parts = {"train": rest, "test": test} | ({"current": current_rows} if current is None else {})
    ids = id_parts(raw, frame, parts, spec.erasable_ids)
    return Split(
        rest.reset_index(drop=True),
        test.reset_index(drop=True),
        current_rows.reset_index(drop=True),
        duplicates,
        ids,
    )


def run(params: dict[str, Any]) -> dict[str, Any]:
    spec = project.data_spec(params)
    paths = project.paths(params)
    split_params = config.load(SplitParams, "split", params)
    if not files.read_json(paths.validation)["passed"]:
        raise StageError(f"{paths.validation}: validation did not pass; fix the data before splitting")
    frame = pd.read_parquet(paths.raw_data)
    current = pd.read_parquet(paths.raw_current) if paths.raw_current.exists() else None
    result = split(frame, spec, split_params, project.seed(params), current)
    summary = {
        "rows_in": len(frame),
        "duplicates_dropped": result.duplicates,
        "train": len(result.train),
        "test": len(result.test),
        "current": len(result.current),
        "current_source": spec.current_path or "held-out rows",
        "seed": project.seed(params),
    }
    if spec.target is not None:
        summary |= spec.learning_task.split_shares(
            {"train": result.train[spec.target], "test": result.test[spec.target]}
        )
    with files.atomic_path(paths.split) as staged:
        staged.mkdir()
        for name in Split.PARTS:
            getattr(result, name).to_parquet(staged / paths.split_file(name).name, index=False)
        result.ids.to_parquet(staged / paths.split_ids.name, index=False)
        files.write_json(staged / paths.split_summary.name, summary)
    console.say(
        STAGE,
        f"{console.number(len(frame))} rows in, {console.number(result.duplicates)} duplicate(s) dropped; "
        f"train {console.number(len(result.train))} · test {console.number(len(result.test))} · "
        f"current {console.number(len(result.current))} ({summary['current_source']}, seed {summary['seed']})",
    )
    return summary
