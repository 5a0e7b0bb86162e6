"""A regression dataset with a drifted `current` file: the gate must reject, naming drift."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.helpers import copy_project, stages_run

pytestmark = pytest.mark.slow

SIZE_COLUMNS = ["carat", "x", "y", "z"]


@pytest.fixture(scope="module")
def drifted_regression(tmp_path_factory):
    root = copy_project(
        tmp_path_factory.mktemp("diamonds"),
        [
            "data=diamonds",
            "gate=diamonds",
            "gate.metric_floor=1500",
            "data.current_path=data/source/new_batch.csv",
        ],
    )
    rows = pd.read_csv(root / "data/source/diamonds.csv.gz").sample(n=3800, random_state=0)
    rows.iloc[:3000].to_csv(root / "data/source/diamonds.csv.gz", index=False)
    new_batch = rows.iloc[3000:].copy()
    new_batch[SIZE_COLUMNS] = new_batch[SIZE_COLUMNS] * 1.6  # bigger stones than training ever saw
    new_batch.to_csv(root / "data/source/new_batch.csv", index=False)
    with stages_run(root) as (params, _):
        yield root, params


def test_current_batch_comes_from_the_declared_file(drifted_regression):
    root, _ = drifted_regression
    summary = json.loads((root / "data/split/summary.json").read_text())
    assert summary["current"] == 800 and summary["current_source"] == "data/source/new_batch.csv"
    assert summary["train"] + summary["test"] <= 3000


def test_regression_metrics_and_residual_plot(drifted_regression):
    root, _ = drifted_regression
    test_metrics = json.loads((root / "metrics/test.json").read_text())
    assert {"rmse", "mae", "r2"} <= set(test_metrics) and test_metrics["r2"] > 0.8
    residuals = pd.read_csv(root / "plots/residuals.csv")
    assert np.allclose(residuals.actual - residuals.predicted, residuals.residual)
    assert not (root / "plots/roc.csv").exists()


def test_drift_names_the_shifted_columns(drifted_regression):
    root, _ = drifted_regression
    report = json.loads((root / "reports/drift.json").read_text())
    assert set(SIZE_COLUMNS) <= set(report["drifted_columns"])
    assert not report["passed"] and report["drift_share"] > report["max_drift_share"]


def test_gate_rejects_with_drift_as_the_reason(drifted_regression):
    from mlgate.adapters import tracking

    root, params = drifted_regression
    result = json.loads((root / "reports/gate.json").read_text())
    failed = [c["name"] for c in result["checks"] if not c["passed"]]
    # the policy's critical feature (carat) and the predicted prices drift with the stones
    assert result["passed"] is False and failed == ["drift", "critical_features", "prediction_drift"]
    assert tracking.version_by_alias(params["tracking"]["registered_model"], "staging") is None
    version = tracking.get_version(params["tracking"]["registered_model"], result["candidate"]["version"])
    assert version.tags["mlgate.gate.passed"] == "false"
    assert version.tags["mlgate.gate.drift"].startswith("fail: drift share")
    markdown = (root / "reports/promotion.md").read_text()
    assert "REJECTED" in markdown and "| drift | **FAIL** |" in markdown and "carat" in markdown


def test_gate_refuses_a_policy_stated_in_another_metric(drifted_regression, monkeypatch):
    from mlgate import config
    from mlgate.errors import StageError
    from mlgate.stages import gate

    root, _ = drifted_regression
    monkeypatch.chdir(root)
    params = config.read_params()
    params["gate"]["metric"] = "roc_auc"
    with pytest.raises(StageError, match="gate policy is stated in 'roc_auc'.*'rmse'"):
        gate.run(params)


def test_a_category_the_reference_never_had_is_drift_without_a_warning():
    """scipy's chi-square divides by the reference's zero count; the column is drifted, and nothing is printed."""
    import warnings

    from mlgate.adapters.evidently_drift import data_drift

    reference = pd.DataFrame({"plan": ["basic", "pro"] * 200, "spend": np.arange(400.0)})
    current = reference.assign(plan=["basic", "pro", "enterprise", "enterprise"] * 100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        summary = data_drift(reference, current, ["spend"], ["plan"], max_drift_share=0.5).summary
    assert summary["drifted_columns"] == ["plan"]
