"""mlgate.stages.tune.segment tracked in a real MLflow store: one parent run, every trial a nested run."""

from __future__ import annotations

import pandas as pd

from tests.helpers import blobs, point_mlflow_at


def test_the_search_is_one_parent_run_with_a_nested_run_per_trial_and_the_choice_on_the_parent(tmp_path, monkeypatch):
    from mlgate.adapters import tracking
    from mlgate.stages import tune

    point_mlflow_at(monkeypatch, f"sqlite:///{tmp_path / 'mlflow.db'}")
    frame, _ = blobs()
    section = {
        "kmeans": {"fixed": {"n_init": 2}, "space": {"n_clusters": {"type": "int", "low": 2, "high": 6}}},
        "hdbscan": {"fixed": {"min_cluster_share": 0.7}},  # larger than any group: all noise, a failed trial
    }

    found = tune.segment(frame, section, budget_s=4.0, seed=0, experiment="segments")

    client = tracking.client()
    experiment = client.get_experiment_by_name("segments")
    runs = client.search_runs([experiment.experiment_id], max_results=10_000)
    (parent,) = [r for r in runs if r.info.run_name == "segment"]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["mlgate.data_hash"] and parent.data.tags["mlgate.git_commit"]
    assert parent.data.params["chosen.family"] == found.model.family == "kmeans"
    assert parent.data.metrics["silhouette"] == found.scores.silhouette
    assert parent.data.metrics["stability_ari_mean"] == found.stability.mean
    trials = tracking.child_runs(parent.info.run_id)
    assert sorted(int(t["tags"]["mlgate.trial"]) for t in trials) == sorted(o.number for o in found.trials)
    failed = [t for t in trials if t["tags"]["mlgate.trial_state"] == "FAIL"]
    assert failed and all("0 cluster(s) found" in t["tags"]["mlgate.error"] for t in failed)
    complete = pd.DataFrame([t["metrics"] for t in trials if t["tags"]["mlgate.trial_state"] == "COMPLETE"])
    assert {"silhouette", "davies_bouldin", "calinski_harabasz", "n_clusters", "noise_share"} <= set(complete)
