"""drift: compare the `current` batch with the training data (the reference) using Evidently.

Reads the train and current splits; writes paths.drift_report (Evidently HTML) and paths.drift
(our own small JSON, the only thing the gate reads). The JSON is byte-stable for the same splits
(``stable_scores``); the HTML is not (Evidently writes random element ids), and no stage depends on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from mlgate import config, console, files, project

STAGE = "drift"
# Evidently sums a categorical column's per-category shares in the order of a set of strings, which
# Python's per-process string hashing changes: the Jensen-Shannon distances differ from run to run in
# the last 2-3 of 17 digits. Ten significant digits are far below any threshold and above that noise.
SCORE_DIGITS = 10


def stable_scores(summary: dict[str, Any]) -> dict[str, Any]:
    """``summary`` with each column's score to ``SCORE_DIGITS`` significant digits, so that drift.json,
    which the gate depends on, has the same bytes for the same splits."""
    columns = {
        name: column | {"score": float(f"{column['score']:.{SCORE_DIGITS}g}")}
        for name, column in summary["columns"].items()
    }
    return summary | {"columns": columns}


@dataclass(frozen=True)
class DriftParams:
    max_drift_share: float
    column_threshold: float | None = None


def run(params: dict[str, Any]) -> dict[str, Any]:
    from mlgate.adapters import evidently_drift  # Evidently takes ~3 s to import; only this stage needs it

    spec = project.data_spec(params)
    paths = project.paths(params)
    settings = config.load(DriftParams, "drift", params)
    reference = pd.read_parquet(paths.split_file("train"))
    current = pd.read_parquet(paths.split_file("current"))
    result = evidently_drift.data_drift(
        reference,
        current,
        spec.numeric_features,
        spec.categorical_features,
        max_drift_share=settings.max_drift_share,
        column_threshold=settings.column_threshold,
    )
    files.write_text(paths.drift_report, result.html)
    s = stable_scores(result.summary)
    files.write_json(paths.drift, s)
    top = ", ".join(s["drifted_columns"][:5]) or "none"
    verdict = "passed" if s["passed"] else "FAILED"
    console.say(
        STAGE,
        f"{verdict}: {s['drifted_count']}/{s['columns_checked']} columns drifted "
        f"(share {s['drift_share']:.2f}, limit {s['max_drift_share']:.2f}; top: {top}) "
        f"→ {paths.drift_report}",
    )
    return s
