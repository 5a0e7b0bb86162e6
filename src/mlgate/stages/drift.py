"""drift: compare the `current` batch with the training data (the reference) using Evidently.

Reads the train and current splits; writes paths.drift_report (Evidently HTML) and paths.drift
(our own small JSON, the only thing the gate reads).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from mlgate import config, console, files, project

STAGE = "drift"


@dataclass(frozen=True)
class DriftParams:
    max_drift_share: float
    column_threshold: float | None = None


def run(params: dict[str, Any]) -> dict[str, Any]:
    from mlgate import monitoring  # Evidently takes ~3 s to import; only this stage needs it

    spec = project.data_spec(params)
    paths = project.paths(params)
    settings = config.load(DriftParams, "drift", params)
    reference = pd.read_parquet(paths.split_file("train"))
    current = pd.read_parquet(paths.split_file("current"))
    result = monitoring.data_drift(reference, current, spec.numeric_features, spec.categorical_features,
                                   max_drift_share=settings.max_drift_share, column_threshold=settings.column_threshold)
    files.write_text(paths.drift_report, result.html)
    files.write_json(paths.drift, result.summary)
    s = result.summary
    top = ", ".join(s["drifted_columns"][:5]) or "none"
    verdict = "passed" if s["passed"] else "FAILED"
    console.say(STAGE, f"{verdict}: {s['drifted_count']}/{s['columns_checked']} columns drifted "
                       f"(share {s['drift_share']:.2f}, limit {s['max_drift_share']:.2f}; top: {top}) "
                       f"→ {paths.drift_report}")
    return s
