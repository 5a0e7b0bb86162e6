"""A clustering dataset (budget_uk: no target) through the whole pipeline: `dvc repro` to a gated,
registered segmentation that answers clusters; a second model judged against it as production; and
the gate refusing a segmentation that is not stable, naming the rule."""

from __future__ import annotations

import json
import subprocess

import mlflow
import numpy as np
import pandas as pd
import pytest

from mlgate.modelling import clustering
from tests.helpers import (
    CLUSTERING_BUDGET,
    copy_project,
    git_commit_all,
    labelled,
    run_cli,
    run_mlgate,
    run_stages,
    running,
    tracking_env,
)

pytestmark = pytest.mark.slow

STAGES = ("ingest", "validate", "split", "tune", "train", "evaluate", "drift", "gate")


def _checks(root) -> dict[str, dict]:
    return {check["name"]: check for check in json.loads((root / "reports/gate.json").read_text())["checks"]}


def test_dvc_repro_of_a_clustering_dataset_registers_a_gated_segmentation_that_answers_clusters(tmp_path):
    root = copy_project(tmp_path / "project", budget=CLUSTERING_BUDGET)
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=root, check=True)
    git_commit_all(root, "budget_uk")
    env = tracking_env(root)

    first = run_cli(["dvc", "repro"], root, env)

    for stage in STAGES:
        assert any(line.startswith(stage + " ") for line in first.stdout.splitlines()), f"no line for {stage}"
    assert "PASSED → alias 'staging'" in first.stdout and "Traceback" not in first.stderr
    recipe = json.loads((root / "reports/best_params.json").read_text())
    assert recipe["family"] in clustering.FAMILIES and recipe["select"] == "consensus"
    assert sum(recipe["trials"].values()) == 8 and recipe["budget"]["reproducible"]
    assert recipe["stability"]["resamples"] == 3 and 0 < recipe["stability"]["mean"] <= 1
    tested = json.loads((root / "metrics/test.json").read_text())
    assert tested["n_clusters"] >= 2 and tested["silhouette"] >= 0.12
    for table in ("cluster_profile", "projection", "silhouette"):
        assert len(pd.read_csv(root / "plots" / f"{table}.csv")) > 0
    checks = _checks(root)
    assert checks["cluster_share"]["verdict"] == checks["stability"]["verdict"] == "pass"
    assert checks["champion"]["verdict"] == "skipped"
    assert "Cluster sizes on test" in (root / "reports/promotion.md").read_text()
    assert (root / "reports/plots/cluster_sizes.png").stat().st_size > 1000

    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("mlgate-budget_uk")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    (tune_run,) = [r for r in runs if r.info.run_name == "tune"]
    nested = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == tune_run.info.run_id]
    assert len(nested) == 8 and tune_run.data.tags["mlgate.git_commit"]
    assert tune_run.data.metrics["stability_ari_mean"] == pytest.approx(recipe["stability"]["mean"])
    (train_run,) = [r for r in runs if r.info.run_name == "train"]
    logged = {a.path for a in client.list_artifacts(train_run.info.run_id, "evaluate")}
    assert {f"evaluate/{n}" for n in ("cluster_profile.csv", "cluster_profile.png", "projection.png")} <= logged
    assert train_run.data.metrics["test/silhouette"] == pytest.approx(tested["silhouette"], abs=1e-6)

    rows = pd.read_csv(root / "data/source/budget_uk.csv.gz").head(20)
    answered = mlflow.pyfunc.load_model(str(root / "models/model")).predict(rows)
    assert list(answered.columns) == ["cluster", "membership"]
    assert answered["cluster"].between(clustering.NOISE, tested["n_clusters"] - 1).all()
    assert np.isfinite(answered["membership"]).all()

    # production v1 served by a real server: clusters answered, counted per cluster in /metrics
    promoted = run_mlgate(["promote", "--alias", "production", "--version", "1"], root, env)
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    from mlgate.services.serving import ServeSettings

    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.setenv("MLFLOW_TRACKING_URI", env["MLFLOW_TRACKING_URI"])
        serving = ServeSettings(
            model="budget_uk", alias="production", poll_s=0.2, log_dir=str(root / "data/predictions")
        )
        with running(serving) as live:
            body = {"dataframe_records": json.loads(rows.to_json(orient="records"))}
            served = pd.DataFrame(live.post(body).json()["predictions"])
            counted = labelled(live.metrics(), "mlgate_assigned_cluster_total")
            traffic = pd.read_parquet(root / "data/split/current.parquet")  # 304 rows: above monitor.min_rows
            assert live.post({"dataframe_split": json.loads(traffic.to_json(orient="split", index=False))}).ok
    pd.testing.assert_frame_equal(served, answered, check_dtype=False)
    assert {dict(labels)["cluster"]: n for labels, n in counted.items()} == {
        str(c): float(n) for c, n in answered["cluster"].value_counts().items()
    }

    # the logged traffic monitored: the clusters' shares against training, and the live silhouette
    monitored = run_mlgate(["monitor", "--no-retrain"], root, env)
    assert monitored.returncode == 0, monitored.stdout + monitored.stderr
    summary = json.loads((root / "reports/monitor.json").read_text())
    assert summary["rows"] == len(rows) + len(traffic) and summary["judged"]
    assignments = summary["assignments"]
    assert 0 <= assignments["psi"] < 0.2 and sum(assignments["window_share"].values()) == pytest.approx(1)
    decay = summary["decay"]
    assert decay["metric"] == "silhouette" and decay["test"] == pytest.approx(tested["silhouette"], abs=1e-6)
    assert decay["live_interval"][0] <= decay["live"] <= decay["live_interval"][1]
    assert "mlgate_monitor_assignment_drift" in (root / "reports/monitor.prom").read_text()

    # a candidate from another seed, judged against production v1 on the same test rows
    run_cli(["mlgate", "params", *CLUSTERING_BUDGET, "seed=7"], root)
    second = run_stages(root, env, stages=("split", "tune", "train", "evaluate", "drift", "gate"))
    assert second.returncode == 0, second.stdout + second.stderr
    champion = _checks(root)["champion"]
    assert champion["verdict"] in ("pass", "fail") and "vs production" in champion["detail"]
    assert "agree on the test rows' clusters with ARI" in champion["detail"]
    report = json.loads((root / "reports/gate.json").read_text())
    assert report["comparison"]["test"]["gain_interval"] is not None
    assert report["measurements"]["assignment_agreement"] is not None


def test_the_gate_refuses_an_unstable_segmentation_and_names_the_rule(tmp_path):
    """Households drawn uniformly at random: no segments to find, so k-means' clusters move with every
    resample of the rows, and the stability rule (gate.min_stability 0.6) fails."""
    overrides = [
        "model=[kmeans]",
        "model.kmeans.space.n_clusters.low=8",
        "model.kmeans.first_trial.n_clusters=8",
        "search.n_trials=2",
    ]
    root = copy_project(tmp_path / "project", overrides, budget=CLUSTERING_BUDGET)
    rng = np.random.default_rng(0)
    rows = 1_200
    shares = rng.dirichlet(np.ones(6), rows)
    pd.DataFrame(
        {
            **{name: shares[:, k] for k, name in enumerate(["wfood", "wfuel", "wcloth", "walc", "wtrans", "wother"])},
            "totexp": rng.integers(30, 400, rows),
            "income": rng.integers(20, 1000, rows),
            "age": rng.integers(19, 60, rows),
            "children": rng.integers(1, 3, rows),
        }
    ).to_csv(root / "data/source/budget_uk.csv.gz", index=False)

    result = run_stages(root)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "REJECTED, no alias" in result.stdout
    stability = _checks(root)["stability"]
    assert stability["verdict"] == "fail" and stability["limit"] == 0.6
    assert "stability (mean adjusted Rand index of the bootstrap refits)" in stability["detail"]
    assert "FAIL  stability" in result.stdout

    # a recipe the gate cannot read is refused before anything is registered: no version without a verdict
    env = tracking_env(root)
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    versions = len(mlflow.MlflowClient().search_model_versions("name='budget_uk'"))
    retrained = run_stages(root, env, stages=("train", "evaluate"))  # a new run: a new version to register
    assert retrained.returncode == 0, retrained.stdout + retrained.stderr
    (root / "reports/best_params.json").write_text('{"family": "kmeans"}')
    refused = run_mlgate(["gate"], root, env)
    assert refused.returncode == 1 and "reports/best_params.json" in refused.stdout + refused.stderr
    assert len(mlflow.MlflowClient().search_model_versions("name='budget_uk'")) == versions
