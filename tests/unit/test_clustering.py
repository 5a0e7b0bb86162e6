"""mlgate.modelling.clustering and stages.tune.segment: segmentations judged without labels, on tiny frames."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from mlgate.modelling import clustering
from tests.helpers import blobs, load_benchmark

FAMILY_PARAMS = {
    "kmeans": {"n_clusters": 3, "n_init": 3},
    "gmm": {"n_components": 3, "covariance_type": "full"},
    "ward": {"n_clusters": 3},
    "hdbscan": {"min_cluster_share": 0.1, "min_samples": 3},
}


def segmenter(family: str, seed: int = 0) -> clustering.Segmenter:
    return clustering.Segmenter(family, FAMILY_PARAMS[family], ["x", "y"], ["kind"], seed)


@pytest.mark.parametrize("family", clustering.FAMILIES)
def test_each_family_finds_well_separated_groups_numbered_by_size_and_assigns_new_rows(family):
    frame, truth = blobs()
    model = segmenter(family).fit(frame)

    labels, membership = model.assign(frame)
    assert adjusted_rand_score(truth, labels) == 1.0
    assert model.n_clusters_ == 3 and list(labels[[0, 60, 100]]) == [0, 1, 2]  # largest first
    assert np.isfinite(membership).all()
    new = pd.DataFrame({"x": [10.2, 0.1], "y": [-0.1, 9.8], "kind": ["b", "never seen"]})
    assert list(model.predict(new)) == [1, 2]


def test_hdbscan_calls_a_far_row_noise_when_fitted_and_when_it_comes_again():
    frame, _ = blobs()
    outlier = pd.DataFrame({"x": [60.0], "y": [-60.0], "kind": ["a"]})
    model = segmenter("hdbscan").fit(pd.concat([frame, outlier], ignore_index=True))

    assert model.fit_labels_[-1] == clustering.NOISE
    labels, membership = model.assign(outlier)
    assert labels[0] == clustering.NOISE and membership[0] == 0.0


def test_missing_values_and_categoricals_are_encoded_not_refused():
    frame, truth = blobs()
    frame.loc[::7, "x"] = np.nan
    frame.loc[::5, "kind"] = None

    labels = segmenter("kmeans").fit(frame).predict(frame)

    assert adjusted_rand_score(truth, labels) > 0.8


def test_scores_of_a_clear_partition_beat_those_of_a_random_one():
    frame, truth = blobs()
    embedded = segmenter("kmeans").fit(frame).embed(frame)
    shuffled = np.random.default_rng(0).permutation(truth)

    clear = clustering.scores(embedded, truth, seed=0)
    random = clustering.scores(embedded, shuffled, seed=0)

    assert clear.silhouette > 0.7 > 0.1 > random.silhouette
    assert clear.davies_bouldin < random.davies_bouldin
    assert clear.calinski_harabasz > random.calinski_harabasz
    assert (clear.n_clusters, clear.noise_share, clear.smallest_share) == (3, 0.0, 20 / 120)


def test_noise_rows_count_zero_in_the_silhouette_so_calling_rows_noise_cannot_raise_it():
    frame, truth = blobs()
    embedded = segmenter("kmeans").fit(frame).embed(frame)
    clear = clustering.scores(embedded, truth, seed=0)
    noisy = truth.copy()
    noisy[:30] = clustering.NOISE  # a quarter of the rows

    judged = clustering.scores(embedded, noisy, seed=0)

    kept = clustering.scores(embedded[30:], truth[30:], seed=0)
    assert judged.silhouette == pytest.approx(kept.silhouette * 90 / 120)
    assert judged.noise_share == 0.25 and judged.n_clusters == 3
    assert judged.silhouette < clear.silhouette


def test_the_silhouette_is_sampled_with_the_seed_on_large_frames():
    rng = np.random.default_rng(1)
    embedded = rng.normal(size=(500, 2))
    labels = (embedded[:, 0] > 0).astype(int)

    first = clustering.scores(embedded, labels, seed=3, silhouette_rows=100)
    again = clustering.scores(embedded, labels, seed=3, silhouette_rows=100)
    other = clustering.scores(embedded, labels, seed=4, silhouette_rows=100)

    assert first == again and first.silhouette != other.silhouette


def test_one_cluster_leaves_the_scores_undefined_and_the_metric_names_are_checked():
    judged = clustering.scores(np.zeros((10, 2)), np.zeros(10, dtype=int), seed=0)

    assert (judged.silhouette, judged.davies_bouldin, judged.calinski_harabasz, judged.n_clusters) == (
        None,
        None,
        None,
        1,
    )
    with pytest.raises(ValueError, match="'roc_auc' is not a clustering metric"):
        judged.metric("roc_auc")


def test_consensus_takes_the_segmentation_most_scores_rank_first():
    def judged(silhouette, davies_bouldin, calinski_harabasz):
        return clustering.ClusterScores(silhouette, davies_bouldin, calinski_harabasz, 3, 0.0, 0.1)

    few = judged(0.60, 0.9, 100.0)  # the silhouette's favourite
    agreed = judged(0.55, 0.5, 300.0)  # Davies-Bouldin's and Calinski-Harabasz's
    undefined = judged(None, None, None)

    assert clustering.consensus([few, agreed, undefined]) == 1
    assert clustering.consensus([few, judged(0.60, 0.9, 100.0)]) == 0  # a tie: the first
    with pytest.raises(ValueError, match="at least one"):
        clustering.consensus([])


def test_stability_is_high_for_real_groups_and_lower_for_groups_cut_out_of_noise():
    frame, _ = blobs()
    rng = np.random.default_rng(2)
    uniform = pd.DataFrame({"x": rng.uniform(size=200), "y": rng.uniform(size=200), "kind": "a"})

    def refit(params):
        return lambda rows, seed: clustering.Segmenter("kmeans", params, ["x", "y"], ["kind"], seed).fit(rows)

    real = segmenter("kmeans").fit(frame)
    cut = clustering.Segmenter("kmeans", {"n_clusters": 7, "n_init": 1}, ["x", "y"], ["kind"], 0).fit(uniform)
    stable = clustering.stability(refit(FAMILY_PARAMS["kmeans"]), frame, real.predict(frame), resamples=4, seed=0)
    unstable = clustering.stability(
        refit({"n_clusters": 7, "n_init": 1}), uniform, cut.predict(uniform), resamples=4, seed=0
    )

    assert stable.mean == 1.0 and stable.resamples == 4 and len(stable.values) == 4
    assert unstable.mean < 0.9 and unstable.min <= unstable.mean
    with pytest.raises(ValueError, match="at least 2 resamples"):
        clustering.stability(refit({}), frame, real.predict(frame), resamples=1, seed=0)


def test_an_unknown_family_is_refused_with_the_choices():
    frame, _ = blobs()
    with pytest.raises(ValueError, match=r"unknown clustering family 'dbscan'; choose one of \('kmeans'"):
        clustering.Segmenter("dbscan", {}, ["x", "y"], [], 0).fit(frame)


def test_the_search_returns_its_best_trial_refitted_with_scores_and_stability(caplog):
    """...and a trial that finds no cluster fails with its reason, without Optuna's traceback."""
    from mlgate.stages import tune

    frame, truth = blobs()
    section = {
        "kmeans": {"fixed": {"n_init": 2}, "space": {"n_clusters": {"type": "int", "low": 2, "high": 6}}},
        "hdbscan": {"fixed": {"min_cluster_share": 0.7}},  # larger than any group: all noise
    }

    found = tune.segment(frame, section, budget_s=3.0, seed=0, select="metric")

    complete = [t for t in found.trials if t.state == "COMPLETE"]
    best = max(complete, key=lambda t: t.score)
    assert found.model.params == best.params and found.scores.silhouette == pytest.approx(best.score)
    assert len(found.labels) == len(frame) and found.stability is not None and found.stability.mean > 0.5
    failed = [t for t in found.trials if t.family == "hdbscan"]
    assert failed and all(t.state == "FAIL" and "0 cluster(s) found" in t.error for t in failed)
    assert not [r for r in caplog.records if "failed with" in r.getMessage()]
    with pytest.raises(ValueError, match=r"\['linear'\] are not clustering families"):
        tune.segment(frame, {"linear": {}}, budget_s=1.0)


def test_the_benchmark_scores_each_system_against_the_labels_and_skips_unlabelled_datasets(tmp_path, capsys):
    bench = load_benchmark("clustering.py", "clustering_bench")
    frame, truth = blobs()
    frame.assign(group=np.array(["p", "q", "r"])[truth]).to_csv(tmp_path / "blobs.csv.gz", index=False)
    frame.assign(amount=frame.x * 2).to_csv(tmp_path / "amounts.csv.gz", index=False)
    (tmp_path / "suite.yaml").write_text(
        json.dumps(
            {
                "datasets": [
                    {"name": "blobs", "file": "blobs.csv.gz", "target": "group", "task": "multiclass"},
                    {"name": "amounts", "file": "amounts.csv.gz", "target": "amount", "task": "regression"},
                ]
            }
        )
    )
    out = tmp_path / "records.json"

    bench.main(["--suite", str(tmp_path), "--budget", "3", "--systems", "kmeans_silhouette,hdbscan", "--out", str(out)])

    records = json.loads(out.read_text())
    assert [(r["dataset"], r["system"]) for r in records] == [("blobs", "kmeans_silhouette"), ("blobs", "hdbscan")]
    assert all(r["status"] in ("ok", "over_budget") and r["ari"] == 1.0 and r["clusters"] == 3 for r in records)
    printed = capsys.readouterr()
    assert "| blobs | 1.000 / 1.000 (k=3) | 1.000 / 1.000 (k=3) |" in printed.out
    assert "skipped (no class labels to score a segmentation): amounts" in printed.err


def test_a_multi_objective_search_chooses_on_its_front_of_score_and_number_of_clusters():
    from mlgate.adapters import optuna_study
    from mlgate.stages import tune

    frame, _ = blobs()
    section = {"kmeans": {"fixed": {"n_init": 2}, "space": {"n_clusters": {"type": "int", "low": 2, "high": 8}}}}

    found = tune.segment(frame, section, n_trials=8, seed=0, objectives=("score", "n_clusters"))

    complete = [o for o in found.trials if o.state == "COMPLETE"]
    assert all(o.costs == (found.trial_scores[o.number].n_clusters,) for o in complete)
    front = optuna_study.pareto_front([(o.score, *o.costs) for o in complete], True)
    assert dict(zip([o.number for o in complete], front, strict=True))[found.chosen.number]
    table = tune.segmentation_trials(found, "silhouette", ("score", "n_clusters"))
    assert table["pareto"].sum() == sum(front)
    with pytest.raises(ValueError, match="a clustering search minimises n_clusters beside the score"):
        tune.segment(frame, section, n_trials=2, objectives=("score", "model_size"))
