"""drift: compare the `current` batch with the training data (the reference) using Evidently.

Reads the train and current splits; writes paths.drift_report (Evidently HTML) and paths.drift
(our own small JSON, the only thing the gate reads). The JSON is byte-stable for the same splits
(``SCORE_DIGITS``); the HTML is not (Evidently writes random element ids), and no stage depends on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from mlgate import config, console, files, project
from mlgate.records import DriftSummary

STAGE = "drift"
# Evidently sums a categorical column's per-category shares in the order of a set of strings, which
# Python's per-process string hashing changes: the Jensen-Shannon distances differ from run to run in
# the last 2-3 of 17 digits. Ten significant digits are far below any threshold and above that noise:
# drift.json, which the gate depends on, has the same bytes for the same splits.
SCORE_DIGITS = 10


@dataclass(frozen=True)
class DriftParams:
    max_drift_share: float
    column_threshold: float | None = None


def run(params: dict[str, Any]) -> DriftSummary:
    """Measure how far the current batch moved from the training data: the gate refuses a model whose
    world changed under it. The summary is rounded to ``SCORE_DIGITS`` so the gate reruns only when the
    splits change, not when Python's string hashing does."""
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
    summary = DriftSummary.from_json(result.summary).rounded(SCORE_DIGITS)

    files.write_text(paths.drift_report, result.html)
    files.write_text(paths.drift, summary.to_json())
    top = ", ".join(summary.drifted_columns[:5]) or "none"
    console.say(
        STAGE,
        f"{'passed' if summary.passed else 'FAILED'}: {summary.drifted_count}/{summary.columns_checked} columns "
        f"drifted (share {summary.drift_share:.2f}, limit {summary.max_drift_share:.2f}; top: {top}) "
        f"→ {paths.drift_report}",
    )
    return summary
