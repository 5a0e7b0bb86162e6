"""The model card, rendered from a gate result alone."""

import pytest

from mlgate.reports import model_card

SLICES = {
    "name": "slices",
    "passed": True,
    "observed": 0,
    "limit": 0,
    "detail": "2 of 3 slices judged, all within limits",
    "verdict": "pass",
    "evidence": [
        {
            "column": "contract",
            "value": "Month-to-month",
            "rows": 700,
            "candidate": 0.78,
            "champion": None,
            "gain": None,
            "verdict": "pass",
        },
        {
            "column": "contract",
            "value": "One year",
            "rows": 300,
            "candidate": 0.7,
            "champion": None,
            "gain": None,
            "verdict": "pass",
        },
        {
            "column": "contract",
            "value": "Two year",
            "rows": 50,
            "candidate": 0.6,
            "champion": None,
            "gain": None,
            "verdict": "not judged (< 100 rows)",
        },
    ],
}


def _result(**changes) -> dict:
    result = {
        "passed": True,
        "reasons": [],
        "metric": "roc_auc",
        "generated_at": "2026-01-02T03:04:05+00:00",
        "git_commit": "0123456789abcdef0123",
        "test_rows": 1404,
        "test_hash": "feedfacecafebeef" * 4,
        "checks": [
            {
                "name": "metric_floor",
                "passed": True,
                "observed": 0.85,
                "limit": 0.8,
                "verdict": "pass",
                "detail": "test roc_auc 0.8500 ≥ floor 0.8",
                "evidence": None,
            },
            SLICES,
        ],
        "drift": {
            "drifted_count": 1,
            "columns_checked": 19,
            "drift_share": 0.05,
            "max_drift_share": 0.3,
            "current_rows": 1405,
            "reference_rows": 4212,
            "drifted_columns": ["tenure"],
            "columns": {},
        },
        "measurements": {
            "prediction_drift": 0.012,
            "target_drift": 0.0004,
            "calibration_error": 0.031,
            "brier": 0.132,
            "model_size_mb": 0.02,
            "latency_ms": 8.7,
        },
        "data": {
            "name": "telco_churn",
            "task": "binary",
            "target": "churn",
            "positive_class": "Yes",
            "metric": "roc_auc",
            "features": 19,
        },
        "lineage": {
            "source": "data/source/telco_churn.csv.gz",
            "kind": "file",
            "rows": 7043,
            "columns": 20,
            "content_hash": "71a8f46c" * 8,
            "dvc_md5": "0a1b2c.dir",
            "train_rows": 4212,
            "current_rows": 1405,
            "current_source": "held-out rows",
            "trained_at": "2026-01-02T03:00:00+00:00",
        },
        "training": {
            "family": "catboost",
            "params": {"depth": 6, "learning_rate": 0.1},
            "seed": 42,
            "fit_seconds": 1.234,
            "model_size_bytes": 20_000,
        },
        "importance": {
            "method": "mean |SHAP value| (CatBoost's TreeSHAP)",
            "plot": "runs:/abc/evaluate/shap_importance.png",
            "top": [{"feature": "tenure", "importance": 0.61}, {"feature": "contract", "importance": 0.42}],
        },
        "gain_interval": None,
        "candidate": {
            "name": "telco_churn",
            "version": 4,
            "family": "catboost",
            "metrics": {"roc_auc": 0.85, "f1": 0.6},
            "run_link": "http://ui/runs/abc",
            "version_link": "http://ui/models/telco_churn/4",
            "tune_run_link": "http://ui/runs/tune",
        },
        "champion": None,
    }
    return result | changes


def test_card_states_use_lineage_training_and_verdict():
    card = model_card.render(_result())

    assert card.startswith("# Model card: `telco_churn` version 4")
    assert "Gate verdict: **PASSED: granted `staging`**" in card
    assert "probability that `churn` is `Yes`" in card and "(19 feature columns)" in card
    assert "| source | `data/source/telco_churn.csv.gz` (file) |" in card
    assert f"7,043 rows × 20 columns, sha256 `{'71a8f46c' * 8}`" in card
    assert "| trained | 2026-01-02T03:00:00+00:00" in card
    assert "Family `catboost`, seed 42" in card and "| depth | 6 |" in card


def test_card_shows_metrics_slices_importance_and_drift():
    card = model_card.render(_result())

    assert "| roc_auc | 0.8500 |" in card and "No production model to compare with." in card
    assert "expected calibration error 0.0310; Brier score 0.1320; median single-row latency 8.7 ms" in card
    assert "| contract | Two year | 50 | 0.6000 |  |  | not judged (< 100 rows) |" in card
    assert "mean |SHAP value|" in card and "| tenure | 0.6100 |" in card
    assert "`runs:/abc/evaluate/shap_importance.png`" in card
    assert (
        "1 of 19 columns drifted (share 0.05, limit 0.30; drifted: tenure); predictions PSI 0.0120, target PSI 0.0004."
        in card
    )


def test_card_limitations_name_small_slices_drifted_columns_and_the_missing_champion():
    limitations = model_card.render(_result()).split("## Limitations")[1].split("##")[0]

    assert "contract=Two year (50 rows)" in limitations
    assert "already differs from training data in: tenure" in limitations
    assert "Not compared with a production model" in limitations


def test_card_of_a_rejected_regression_model_with_a_champion():
    result = _result(
        passed=False,
        reasons=["drift share 0.42 > 0.30"],
        data={
            "name": "diamonds",
            "task": "regression",
            "target": "price",
            "positive_class": None,
            "metric": "rmse",
            "features": 9,
        },
        measurements={
            "prediction_drift": 0.9,
            "target_drift": None,
            "calibration_error": None,
            "brier": None,
            "model_size_mb": 1.0,
            "latency_ms": 3.0,
        },
        champion={
            "version": 3,
            "metrics": {"roc_auc": 0.84, "f1": 0.65},
            "error": None,
            "version_link": "http://ui/models/x/3",
        },
        gain_interval={"metric": "roc_auc", "confidence": 0.95, "low": -0.002, "high": 0.021},
    )

    card = model_card.render(result)

    assert "**REJECTED: not granted `staging`**" in card and "- drift share 0.42 > 0.30" in card
    assert "Predicts `price` (a number)" in card
    assert "| roc_auc | 0.8500 | 0.8400 | +0.0100 | [-0.0020, +0.0210] |" in card
    assert "calibration" not in card.split("## Test metrics")[1].split("##")[0]
    assert "Not compared with a production model" not in card


@pytest.mark.parametrize("value, signed, text", [(None, False, ""), (0.5, False, "0.5000"), (-0.02, True, "-0.0200")])
def test_number_formats_missing_values_as_blank(value, signed, text):
    assert model_card.number(value, signed) == text


def test_card_links_evaluates_importance_table_and_embeds_its_plot():
    importance = {
        "name": "shap_importance",
        "method": "mean |SHAP value|",
        "plot": "runs:/abc/evaluate/shap_importance.png",
        "table": "plots/shap_importance.csv",
        "image": "reports/plots/shap_importance.png",
        "top": [{"feature": "tenure", "importance": 0.61}],
    }
    card = model_card.render(_result(importance=importance, model_card={"path": "reports/model_card.md"}))

    section = card.split("## Feature importance")[1].split("\n## ")[0]
    assert (
        "Global importance: mean |SHAP value|; plot on the train run: `runs:/abc/evaluate/shap_importance.png`; "
        "table: [`plots/shap_importance.csv`](../plots/shap_importance.csv)."
    ) in section
    assert "![Feature importance](plots/shap_importance.png)" in section and "| tenure | 0.6100 |" in section


def test_card_says_when_evaluate_wrote_no_importance():
    importance = {"name": None, "method": None, "plot": None, "table": "plots/importance.csv", "image": None, "top": []}

    card = model_card.render(_result(importance=importance))

    assert "Not available: evaluate wrote no importance table (`plots/importance.csv`)." in card
    assert "| feature | importance |" not in card


CURRENT = {
    "metric": "roc_auc",
    "rows": 1300,
    "content_hash": "c0ffee" * 10 + "abcd",
    "skipped": "no 'production' model yet",
    "candidate": {"metrics": {"roc_auc": 0.83, "f1": 0.61}, "interval": {"confidence": 0.95, "low": 0.8, "high": 0.86}},
    "champion": None,
    "gain": None,
    "gain_interval": None,
    "slices": [],
    "source": "held-out rows",
    "batch_rows": 1405,
}


def test_card_shows_the_current_batch_scores_and_narrows_the_limitation():
    card = model_card.render(_result(comparison={"current": CURRENT}))

    section = card.split("## Current batch")[1].split("\n## ")[0]
    assert "Current batch (held-out rows, 1,405 rows): 1,300 labelled rows, sha256 `c0ffeec0ffee`." in section
    assert "| roc_auc | 0.8300 |" in section and "Production not compared: no 'production' model yet." in section
    limitations = card.split("## Limitations")[1].split("##")[0]
    assert (
        "training rows and on the 1,300 labelled rows of the current batch (held-out rows); beyond those, how"
        in limitations
    )


def test_card_of_an_unlabelled_current_batch_says_so():
    unscored = CURRENT | {"candidate": None, "rows": 0, "skipped": "it has no `churn` column"}

    card = model_card.render(_result(comparison={"current": unscored}))

    assert "Current batch (held-out rows, 1,405 rows): not scored, it has no `churn` column." in card
    assert "training rows; how it does on later data is estimated only by the drift checks." in card


def test_card_marks_skipped_checks():
    skipped = {
        "name": "champion",
        "passed": True,
        "skipped": True,
        "observed": None,
        "limit": 0.005,
        "verdict": "skipped",
        "detail": "no 'production' model yet",
        "evidence": None,
    }

    card = model_card.render(_result(checks=[skipped]))

    assert "| champion | skipped | no 'production' model yet |" in card
