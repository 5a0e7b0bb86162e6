"""Everything mlgate asks of Evidently: a data summary and a data-drift comparison, in our own format.

The only module that imports evidently (a 3 s import, so callers import this module lazily).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset, DataSummaryPreset


@dataclass(frozen=True)
class DriftResult:
    summary: dict[str, Any]  # our JSON contract (see ``data_drift``)
    html: str


def _status(test: dict[str, Any]) -> str:
    status = test["status"]
    return str(getattr(status, "value", status)).rsplit(".", 1)[-1]


def data_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numerical: list[str],
    categorical: list[str],
    *,
    max_drift_share: float,
    column_threshold: float | None = None,
) -> DriftResult:
    """Per-column drift of ``current`` against ``reference`` and the share of drifted columns.

    ``summary``: ``{reference_rows, current_rows, columns_checked, drifted_count, drift_share,
    max_drift_share, passed, drifted_columns (most drifted first), columns: {name: {method, score,
    threshold, drifted}}, engine}``.
    """
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    preset = DataDriftPreset(drift_share=max_drift_share, threshold=column_threshold)
    with warnings.catch_warnings():
        # A category the reference lacks has an expected count of 0: scipy's chi-square warns of the
        # division and returns an infinite statistic, p-value 0, which marks the column drifted, as it is.
        warnings.filterwarnings("ignore", "divide by zero", RuntimeWarning)
        snapshot = Report([preset], include_tests=True).run(
            Dataset.from_pandas(current, data_definition=definition),
            Dataset.from_pandas(reference, data_definition=definition),
        )
    payload = snapshot.dict()
    columns: dict[str, dict[str, Any]] = {}
    for metric in payload["metrics"]:
        cfg = metric["config"]
        if cfg.get("type", "").endswith("ValueDrift"):
            columns[cfg["column"]] = {
                "method": cfg["method"],
                "score": float(metric["value"]),
                "threshold": float(cfg["threshold"]),
                "drifted": False,
            }
    for test in payload["tests"]:
        column = test.get("metric_config", {}).get("params", {}).get("column")
        if column in columns:
            columns[column]["drifted"] = _status(test) == "FAIL"
    drifted = sorted(
        (c for c, v in columns.items() if v["drifted"]),
        key=lambda c: columns[c]["score"] / max(columns[c]["threshold"], 1e-12),
        reverse=True,
    )
    share = len(drifted) / len(columns) if columns else 0.0
    summary = {
        "reference_rows": len(reference),
        "current_rows": len(current),
        "columns_checked": len(columns),
        "drifted_count": len(drifted),
        "drift_share": share,
        "max_drift_share": max_drift_share,
        "passed": share <= max_drift_share,
        "drifted_columns": drifted,
        "columns": columns,
        "engine": f"evidently {metadata.version('evidently')}",
    }
    return DriftResult(summary, snapshot.get_html_str(as_iframe=False))


def data_summary(
    frame: pd.DataFrame, *, numerical: list[str], categorical: list[str], datetime: list[str], text: list[str]
) -> str:
    """Evidently's data summary (counts, missing values, distributions per column) as one HTML page."""
    definition = DataDefinition(
        numerical_columns=numerical, categorical_columns=categorical, datetime_columns=datetime, text_columns=text
    )
    snapshot = Report([DataSummaryPreset()]).run(Dataset.from_pandas(frame, data_definition=definition), None)
    return snapshot.get_html_str(as_iframe=False)
