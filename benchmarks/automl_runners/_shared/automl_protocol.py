"""The protocol between benchmarks/automl.py and its runners, benchmarks/automl_runners/<system>.py.

The harness starts a runner in the system's own interpreter, in a fresh process:

  python <system>.py --train TRAIN --test TEST --target COL --task binary|multiclass|regression --budget S
      --seed N --threads N --predictions OUT.csv --summary OUT.json --workdir DIR [--positive-class LABEL]

TRAIN holds the features and the target, TEST the features only (Parquet or CSV, by suffix; the columns as
pandas read them from the suite's CSV, missing values as NaN). The runner fits on TRAIN within the budget,
predicts TEST in its row order, and writes:
  OUT.csv: binary: one column `proba`, the probability of LABEL; regression: one column `prediction`;
           multiclass: one column per class label, the class probabilities.
  OUT.json: {"fit_s": seconds spent fitting, ...} plus any extras (trials, chosen model, ...).
The harness scores OUT.csv itself. Classification targets reach the system as strings, so LABEL and the
multiclass column names are those strings. Scratch files go under DIR.

Imported by each runner, in every peer's venv: standard library, numpy and pandas only. It sits in its own
folder because the runners are named after the packages they import, so theirs must stay off sys.path.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--test", type=Path, required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--task", choices=("binary", "multiclass", "regression"), required=True)
    parser.add_argument("--budget", type=float, required=True, help="wall budget in seconds")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--predictions", type=Path, required=True)
    parser.add_argument("--summary", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--positive-class", help="the binary target's positive label")
    args = parser.parse_args()
    if args.task == "binary" and args.positive_class is None:
        parser.error("--positive-class is required for a binary task")
    args.workdir.mkdir(parents=True, exist_ok=True)
    return args


def read_frame(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


def load(args: argparse.Namespace) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The training frame (a classification target as strings) and the test features."""
    train, test = read_frame(args.train), read_frame(args.test)
    if args.task != "regression":
        train[args.target] = train[args.target].astype(str)
    return train, test.drop(columns=[args.target], errors="ignore")


def positive_column(classes: Sequence, positive: str) -> int:
    """Where the positive label sits among a model's classes."""
    labels = [str(c) for c in classes]
    if positive not in labels:
        raise ValueError(f"positive class {positive!r} is not among the model's classes {labels}")
    return labels.index(positive)


def write_predictions(args: argparse.Namespace, values, classes: Sequence | None = None) -> None:
    """Writes OUT.csv: 1-D values for binary (positive-class probability) and regression, 2-D for multiclass."""
    values = np.asarray(values, dtype=float)
    if args.task == "multiclass":
        frame = pd.DataFrame(values, columns=[str(c) for c in classes])
    else:
        frame = pd.DataFrame({"proba" if args.task == "binary" else "prediction": values.reshape(-1)})
    frame.to_csv(args.predictions, index=False)


def write_estimator_predictions(args: argparse.Namespace, model, test: pd.DataFrame) -> None:
    """OUT.csv from a scikit-learn-style model: ``predict`` for regression, ``predict_proba`` over
    ``classes_`` otherwise."""
    if args.task == "regression":
        write_predictions(args, model.predict(test))
        return
    probabilities = model.predict_proba(test)
    if args.task == "binary":
        write_predictions(args, probabilities[:, positive_column(model.classes_, args.positive_class)])
    else:
        write_predictions(args, probabilities, model.classes_)


def write_summary(args: argparse.Namespace, fit_s: float, **extras) -> None:
    """Writes OUT.json: fit seconds and any extras (JSON-able, or turned into strings)."""
    args.summary.write_text(json.dumps({"fit_s": round(fit_s, 3), **extras}, default=str) + "\n")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
