"""Each stage's outputs, files and MLflow records, after the session's `dvc repro` of the default project
(``built_project``: the stages run as DVC runs them; tests/integration/test_multiclass.py and
test_regression_drift.py call the stages' run() in-process on other datasets)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture
def tracked(built_project, monkeypatch):
    """(root, params, each stage's JSON record by stage) of the built project, its store the tracking one."""
    from mlgate import config, project

    root = built_project.root
    monkeypatch.chdir(root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", built_project.env["MLFLOW_TRACKING_URI"])
    params = config.read_params()
    paths = project.paths(params)
    written = {
        "ingest": paths.raw_meta,
        "split": paths.split_summary,
        "train": Path(paths.train_run),
        "evaluate": Path(paths.metrics),
    }
    return root, params, {stage: json.loads((root / path).read_text()) for stage, path in written.items()}


def test_ingest_snapshot_has_rows_columns_and_hash(tracked):
    root, _, results = tracked
    meta = json.loads((root / "data/raw/meta.json").read_text())
    assert meta["data"]["rows"] == 7043 == len(pd.read_parquet(root / "data/raw/data.parquet"))
    assert len(meta["data"]["columns"]) == 20
    assert len(meta["data"]["content_hash"]) == 64


def test_split_drops_duplicates_and_partitions_rows(tracked):
    root, _, results = tracked
    summary = results["split"]
    parts = {name: pd.read_parquet(root / f"data/split/{name}.parquet") for name in ("train", "test", "current")}
    assert summary["duplicates_dropped"] > 0
    assert sum(len(p) for p in parts.values()) == summary["rows_in"] - summary["duplicates_dropped"]
    joined = pd.concat(parts.values())
    assert not joined.duplicated().any()
    assert abs(summary["positive_share"]["train"] - summary["positive_share"]["test"]) < 0.01


def test_tune_logs_parent_with_one_child_per_trial(tracked):
    from mlgate.adapters import tracking

    root, params, results = tracked
    best = json.loads((root / "reports/best_params.json").read_text())
    children = tracking.child_runs(json.loads((root / params["paths"]["train_run"]).read_text())["tune_run_id"])
    assert len(children) == params["search"]["n_trials"]
    assert {c["params"]["family"] for c in children} <= set(params["model"])
    complete = [c for c in children if c["tags"]["mlgate.trial_state"] == "COMPLETE"]
    assert complete and all(f"cv/{params['data']['metric']}" in c["metrics"] for c in complete)
    trials = pd.read_csv(root / "reports/trials.csv")
    assert len(trials) == params["search"]["n_trials"]
    assert trials.iloc[0]["cv_score"] == pytest.approx(best["best_trial"]["cv_score"])
    board = pd.read_csv(root / "reports/leaderboard.csv")
    assert board["chosen"].sum() == 1
    assert board.loc[board["chosen"], "cv_score"].item() == pytest.approx(best["cv_score"])
    assert set(board.loc[~board["chosen"], "model"]) == set(trials.loc[trials.state == "COMPLETE", "family"])
    assert (board[["fit_s", "predict_ms_per_1k", "size_mb"]] > 0).all().all()


def test_trained_model_predicts_raw_rows_through_pyfunc(tracked):
    from mlgate.adapters import tracking

    root, _, results = tracked
    info = results["train"]
    raw = pd.read_csv(root / "data/source/telco_churn.csv.gz").drop(columns=["churn"]).head(20)
    output = tracking.load(info["model_uri"]).predict(raw)
    assert list(output.columns) == ["prediction", "probability"]
    assert output["probability"].between(0, 1).all()
    assert set(output["prediction"]) <= {"Yes", "No"}
    local = tracking.load(str(root / "models/model")).predict(raw)
    pd.testing.assert_frame_equal(output, local)


def test_runs_carry_lineage_tags(tracked):
    from mlgate.adapters import tracking

    root, _, results = tracked
    meta = json.loads((root / "data/raw/meta.json").read_text())
    run = tracking.client().get_run(results["train"]["run_id"])
    assert run.data.tags["mlgate.data_hash"] == meta["data"]["content_hash"]
    assert run.data.tags["mlgate.stage"] == "train"
    assert "mlgate.git_commit" in run.data.tags
    assert run.data.metrics["test/roc_auc"] == pytest.approx(results["evaluate"]["roc_auc"])


def test_tune_train_and_evaluate_runs_list_the_split_they_read_by_its_dvc_md5(tracked):
    import yaml

    from mlgate import files, project
    from mlgate.adapters import tracking

    root, params, results = tracked
    split_file = project.paths(params).split_file
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    locked = {stage: {d["path"]: d["md5"] for d in lock[stage]["deps"]} for stage in ("tune", "train", "evaluate")}
    md5 = {name: files.md5(split_file(name)) for name in ("train", "test")}
    assert md5["train"] == locked["tune"][str(split_file("train"))] == locked["train"][str(split_file("train"))]
    assert md5["test"] == locked["evaluate"][str(split_file("test"))]

    def seen(run_id):
        inputs = tracking.client().get_run(run_id).inputs.dataset_inputs
        return {
            i.dataset.name: (i.dataset.digest, {t.key: t.value for t in i.tags}, json.loads(i.dataset.source))
            for i in inputs
        }

    train = (md5["train"], {"mlflow.data.context": "training"}, {"uri": str(split_file("train"))})
    test = (md5["test"], {"mlflow.data.context": "testing"}, {"uri": str(split_file("test"))})
    assert seen(results["train"]["tune_run_id"]) == {"train": train}
    assert seen(results["train"]["run_id"]) == {"train": train, "test": test}  # evaluate logs to the train run


def test_evaluate_writes_metrics_and_plot_tables(tracked):
    root, _, _ = tracked
    test_metrics = json.loads((root / "metrics/test.json").read_text())
    assert {"accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"} <= set(test_metrics)
    assert 0.7 < test_metrics["roc_auc"] < 1
    for name in ("roc", "precision_recall", "confusion", "importance"):
        assert len(pd.read_csv(root / f"plots/{name}.csv")) > 0


def test_drift_on_held_out_rows_passes(tracked):
    root, _, results = tracked
    report = json.loads((root / "reports/drift.json").read_text())
    assert report["passed"] and report["columns_checked"] == 19
    assert (root / "reports/drift.html").stat().st_size > 10_000


def test_gate_registers_and_grants_staging(tracked):
    from mlgate.adapters import tracking

    root, params, results = tracked
    gate = json.loads((root / "reports/gate.json").read_text())
    assert gate["passed"] is True
    name = params["tracking"]["registered_model"]
    staged = tracking.version_by_alias(name, "staging")
    assert staged is not None and staged.version == gate["candidate"]["version"]
    assert staged.tags["mlgate.gate.passed"] == "true"
    markdown = (root / "reports/promotion.md").read_text()
    assert "PASSED" in markdown and "| metric_floor | pass |" in markdown


def test_gate_reports_every_rule_and_attaches_the_model_card(tracked):
    from mlgate.adapters import tracking

    root, params, _ = tracked
    gate = json.loads((root / "reports/gate.json").read_text())
    assert [c["name"] for c in gate["checks"]] == [
        "validation",
        "drift",
        "critical_features",
        "prediction_drift",
        "target_drift",
        "metric_floor",
        "champion",
        "calibration",
        "slices",
        "model_size",
        "latency",
    ]
    assert all({"observed", "limit", "verdict", "detail", "evidence"} <= set(c) for c in gate["checks"])
    slices = next(c for c in gate["checks"] if c["name"] == "slices")
    assert {row["value"] for row in slices["evidence"]} == {"Month-to-month", "One year", "Two year"}
    card = (root / "reports/model_card.md").read_text()
    version = gate["candidate"]["version"]
    assert f"# Model card: `telco_churn` version {version}" in card and "## Limitations" in card
    assert "[`reports/model_card.md`](model_card.md)" in (root / "reports/promotion.md").read_text()
    tags = tracking.get_version(params["tracking"]["registered_model"], version).tags
    assert tags["mlgate.model_card"] == f"runs:/{gate['candidate']['run_id']}/model_card/model_card.md"
    logged = tracking.client().list_artifacts(gate["candidate"]["run_id"], "model_card")
    assert [a.path for a in logged] == ["model_card/model_card.md"]
