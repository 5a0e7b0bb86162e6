"""A multiclass dataset through every stage, from a contract drafted by `mlgate infer-schema` to the
gate: the telco customers' contract type (month-to-month, one year, two year) from the other columns;
and `mlgate.services.automl.fit` on a multiclass frame, scored by the benchmark harness's own log loss."""

from __future__ import annotations

import json
import sys

import joblib
import numpy as np
import pandas as pd
import pytest

from tests.helpers import REPO, TINY_BUDGET, copy_project, run_cli, stages_run, with_overrides

pytestmark = pytest.mark.slow

CLASSES = ["Month-to-month", "One year", "Two year"]
ROWS = 1500
# telco_contract's policy on a contract drafted from a sample; a p-value limit on tenure (Evidently's
# tests below 1,000 training rows) would fail one run in ten without drift, so no critical feature here
MULTICLASS = [
    "data=contract_sample",
    "gate=telco_contract",
    "gate.metric_floor=0.9",
    "gate.max_calibration_error=0.1",
    "~gate.critical_features.tenure",
    "gate.slices.internet_service.min_rows=50",
]


@pytest.fixture(scope="module")
def contract_project(tmp_path_factory):
    root = copy_project(tmp_path_factory.mktemp("contract_sample"))
    rows = pd.read_csv(root / "data/source/telco_churn.csv.gz").sample(ROWS, random_state=0)
    rows.to_csv(root / "data/source/telco_contract.csv", index=False)
    run_cli(
        [
            "mlgate",
            "infer-schema",
            "contract_sample",
            "--source",
            "data/source/telco_contract.csv",
            "--target",
            "contract",
        ],
        root,
    )
    run_cli(["mlgate", "params", *with_overrides(TINY_BUDGET, MULTICLASS)], root)
    with stages_run(root) as (params, _):
        yield root, params


def _json(root, path):
    return json.loads((root / path).read_text())


def test_the_drafted_contract_declares_the_task_classes_and_metric(contract_project):
    root, params = contract_project
    data = params["data"]
    assert (data["task"], data["target"], data["metric"], data["classes"]) == (
        "multiclass",
        "contract",
        "log_loss",
        CLASSES,
    )
    summary = _json(root, "data/split/summary.json")
    assert set(summary["class_share"]["train"]) == set(CLASSES)
    # stratified: each class holds the same share of train and test, to a row or two
    for label in CLASSES:
        assert summary["class_share"]["train"][label] == pytest.approx(summary["class_share"]["test"][label], abs=0.01)


def test_tune_scores_log_loss_tries_caruana_and_stacking_and_records_the_skipped_threshold(contract_project):
    root, _ = contract_project
    best = _json(root, "reports/best_params.json")
    assert best["metric"] == "log_loss" and best["cv_score"] < 0.9
    assert set(best["finish"]["skipped"]) == {"threshold"}
    assert set(best["finish"]["calibration_log_loss"]) == {"none", "temperature"}
    assert {"single", "caruana", "stacking"} >= set(best["finish"]["scores"]) >= {"single"}
    assert best["finish"]["cv_score"] <= best["finish"]["scores"]["single"]
    trials = pd.read_csv(root / "reports/trials.csv")
    assert (trials.state == "COMPLETE").sum() >= 3 and set(trials.family) >= {"catboost", "linear"}


def test_evaluate_writes_multiclass_metrics_a_confusion_matrix_and_permutation_importance(contract_project):
    root, _ = contract_project
    test_metrics = _json(root, "metrics/test.json")
    assert set(test_metrics) == {"accuracy", "f1_macro", "log_loss", "roc_auc_ovr", "rows"}
    assert test_metrics["log_loss"] < 0.9 and test_metrics["roc_auc_ovr"] > 0.75 and test_metrics["accuracy"] > 0.6
    confusion = pd.read_csv(root / "plots/confusion.csv")
    assert set(confusion.actual) == {0, 1, 2} and len(confusion) == test_metrics["rows"]
    assert np.mean(confusion.actual == confusion.predicted) == pytest.approx(test_metrics["accuracy"])
    assert not (root / "plots/roc.csv").exists() and not (root / "plots/shap_importance.csv").exists()
    assert len(pd.read_csv(root / "plots/importance.csv")) > 5


def test_the_logged_model_returns_the_label_and_class_probabilities_as_the_pipeline_does(contract_project):
    import mlflow

    from mlgate.adapters import tracking

    root, params = contract_project
    info = _json(root, "models/train_run.json")
    test = pd.read_parquet(root / "data/split/test.parquet")
    X = test.drop(columns="contract")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        tracking.client()
        logged = mlflow.pyfunc.load_model(info["model_uri"])
    output = logged.predict(X)
    columns = ["prediction", *(f"probability_{c}" for c in CLASSES)]
    assert list(output.columns) == columns
    assert [c["name"] for c in logged.metadata.get_output_schema().to_dict()] == columns
    pipeline = joblib.load(root / "models/model/artifacts/pipeline.joblib")
    probability = pipeline.predict_proba(X)
    np.testing.assert_allclose(output[columns[1:]].to_numpy(), probability, rtol=1e-9, atol=1e-12)
    assert (output.prediction == np.asarray(CLASSES, dtype=object)[probability.argmax(axis=1)]).all()
    evaluated = pd.read_csv(root / "plots/confusion.csv").predicted.to_numpy()
    np.testing.assert_array_equal(evaluated, probability.argmax(axis=1))
    features = json.loads((root / "models/model/artifacts/features.json").read_text())
    assert features["classes"] == CLASSES and "threshold" not in features


def test_the_gate_passes_and_skips_the_binary_only_rule_with_its_reason(contract_project):
    root, params = contract_project
    result = _json(root, "reports/gate.json")
    verdicts = {c["name"]: c["verdict"] for c in result["checks"]}
    assert result["passed"] is True, result["reasons"]
    assert verdicts["calibration"] == "skipped" and verdicts["metric_floor"] == "pass"
    assert verdicts["slices"] == "pass" and verdicts["target_drift"] in ("pass", "skipped")
    assert verdicts["prediction_drift"] == "pass"
    calibration = next(c for c in result["checks"] if c["name"] == "calibration")
    assert "one class's probability" in calibration["detail"]
    assert result["comparison"]["test"]["candidate"]["metrics"]["log_loss"] == pytest.approx(
        _json(root, "metrics/test.json")["log_loss"], abs=1e-6
    )
    assert [p["name"] for p in result["plots"]][:2] == ["metric", "class_recall"]
    card = (root / "reports/model_card.md").read_text()
    assert "the class of `contract` (one of `Month-to-month`, `One year`, `Two year`" in card
    assert "permutation importance over all classes" in card
    assert "REJECTED" not in (root / "reports/promotion.md").read_text()


def test_the_gate_compares_with_production_by_a_paired_bootstrap_on_log_loss(contract_project, monkeypatch):
    from mlgate.adapters import tracking
    from mlgate.stages import evaluate, gate, train

    root, params = contract_project
    first = _json(root, "reports/gate.json")["candidate"]["version"]
    monkeypatch.chdir(root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    tracking.set_alias(params["tracking"]["registered_model"], "production", first)
    for stage in (train, evaluate):  # a second version of the same choice: the same predictions
        stage.run(params)
    result = gate.run(params).to_json()
    assert (result["candidate"]["version"], result["champion"]["version"]) == (first + 1, first)
    champion = next(c for c in result["checks"] if c["name"] == "champion")
    assert champion["verdict"] == "pass" and champion["observed"] == pytest.approx(0.0, abs=1e-9)
    compared = result["comparison"]["test"]
    assert compared["champion"]["metrics"]["log_loss"] == pytest.approx(compared["candidate"]["metrics"]["log_loss"])
    assert compared["gain_interval"]["low"] <= 0 <= compared["gain_interval"]["high"]
    assert all(row["champion"] is not None for row in compared["slices"])
    assert result["passed"] is True


def test_automl_fit_gives_class_probabilities_in_the_order_the_benchmark_harness_reads(tmp_path):
    from mlgate.services import automl

    frame = pd.read_csv(REPO / "data/source/telco_churn.csv.gz").sample(900, random_state=1).reset_index(drop=True)
    train, test = frame.iloc[:700], frame.iloc[700:]
    model = automl.fit(
        train,
        "contract",
        "multiclass",
        budget_s=40,
        seed=0,
        workdir=tmp_path / "work",
        overrides=[
            "model.catboost.fixed.iterations=40",
            "model.random_forest.fixed.n_estimators=25",
            "search.n_jobs=1",
            "search.n_trials=5",
        ],
    )
    assert model.classes_ == CLASSES
    assert model.summary["trials_complete"] == model.summary["trials"] == 5  # every family's first trial
    probability = model.predict_proba(test.drop(columns="contract"))
    assert probability.shape == (len(test), 3)
    assert set(model.predict(test.drop(columns="contract"))) <= set(CLASSES)

    # the harness scores a runner's file by class name, as benchmarks/automl.py does
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import automl as harness
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    predictions = pd.DataFrame(probability, columns=model.classes_)
    from sklearn.metrics import log_loss

    expected = log_loss(test.contract, probability, labels=CLASSES)
    instance = type(
        "Instance",
        (),
        {"dataset": type("D", (), {"task": "multiclass"})(), "y_test": test.contract, "classes": tuple(CLASSES)},
    )()
    assert harness.score_predictions(instance, predictions) == pytest.approx(expected, rel=1e-6)
    assert expected < harness.baseline_score("multiclass", train.contract, test.contract)
