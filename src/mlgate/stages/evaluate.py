"""evaluate: test-set metrics and plots for the trained model, scored as it will be served (pyfunc).

Reads the test split, paths.model, paths.train_info and paths.train_run (the run it logs to); writes
paths.metrics (DVC metrics) and paths.plots (DVC plots: curves, permutation importance, and SHAP
importance where the model has an exact explanation); logs `test/<metric>`, PNG plots and the test
split (a dataset input) to the train run. A clustering model is judged without labels (silhouette, Davies-Bouldin,
Calinski-Harabasz on the encoding it clusters in) and profiled: each cluster's size, share, numeric means
and top categories, a 2-D projection and the silhouette plot's table.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlgate import console, files, project
from mlgate.adapters import tracking
from mlgate.errors import StageError
from mlgate.modelling import clustering, explain, metrics
from mlgate.modelling.data import DataSpec, target_vector
from mlgate.modelling.evaluation import SHAP_IMPORTANCE, predictions
from mlgate.records import TrainingRecord, TrainingRun
from mlgate.reports import evaluation_plots

STAGE = "evaluate"


IMPORTANCE_REPEATS = 5
IMPORTANCE_MAX_ROWS = 5_000


def _sample(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    return frame if len(frame) <= rows else frame.sample(rows, random_state=seed)


def importance(model: tracking.LoadedModel, frame: pd.DataFrame, spec: DataSpec, seed: int) -> pd.DataFrame:
    """Permutation importance on the test set, per raw input column: the drop in the metric when
    that column's values are shuffled. Model-agnostic.

    Every shuffled copy of one repeat goes through the model in one call: a pipeline's per-call
    overhead, not its per-row cost, dominates at test-set sizes (80 columns: 400 calls become 5).
    """
    rows = _sample(frame, IMPORTANCE_MAX_ROWS, seed)
    X = rows[spec.features].reset_index(drop=True)
    y = target_vector(rows, spec)
    task = spec.learning_task
    baseline = metrics.score(spec.metric, y, *task.outputs(model.pipeline, X))
    rng = np.random.default_rng(seed)
    drops = np.empty((len(X.columns), IMPORTANCE_REPEATS))
    for repeat in range(IMPORTANCE_REPEATS):
        shuffled = []
        for column in X.columns:
            copy = X.copy()
            copy[column] = X[column].to_numpy()[rng.permutation(len(X))]
            shuffled.append(copy)
        prediction, probability = task.outputs(model.pipeline, pd.concat(shuffled, ignore_index=True))
        for i in range(len(X.columns)):
            block = slice(i * len(X), (i + 1) * len(X))
            score = metrics.score(
                spec.metric, y, prediction[block], None if probability is None else probability[block]
            )
            drops[i, repeat] = metrics.improvement(spec.metric, baseline, score)
    board = pd.DataFrame({"feature": X.columns, "importance": drops.mean(axis=1), "std": drops.std(axis=1)})
    return board.sort_values("importance", ascending=False).reset_index(drop=True)


# Exact SHAP values cost, per row, about explain.steps_per_row steps: 7-12 ns a step measured on a
# busy core for forests. Rows are capped so that one table stays within SHAP_WORK steps, a few
# seconds; a model too large to explain SHAP_MIN_ROWS rows within that gets no SHAP table
# (permutation importance only).
SHAP_WORK = 6e8
SHAP_MIN_ROWS = 100


def shap_importance(model, frame: pd.DataFrame, spec: DataSpec, seed: int) -> pd.DataFrame | None:
    """Mean |SHAP value| per input column on test rows: the per-prediction contributions ``explain``
    gives (exact TreeSHAP for CatBoost and the tree families, coefficient x value for linear models,
    an ensemble's members weighted by its combiner), each summed over what its column becomes inside
    the model (one-hot columns, a missing indicator, a date's parts). Binary: on the log-odds or
    probability scale of the model's raw output; regression: on the target's.

    None, leaving permutation importance alone, for k-NN and the MLP (no exact method), for a model
    too large to explain in time (``SHAP_WORK``) and for multiclass (one SHAP value per class:
    permutation importance covers every class at once).
    """
    if spec.learning_task.scores_per_class:
        return None
    rows = min(IMPORTANCE_MAX_ROWS, int(SHAP_WORK // max(explain.steps_per_row(model), 1.0)))
    if rows < min(SHAP_MIN_ROWS, len(frame)):
        return None
    try:
        explained = explain.explain(model, _sample(frame, rows, seed)[spec.features], spec.learning_task)
    except explain.NoExplanation:
        return None
    # rounded: CatBoost's threaded SHAP sums differ in their last bits from run to run (~1e-13), and
    # plots/shap_importance.csv is a DVC output that should keep its bytes
    mean_abs = np.round(np.abs(explained.contributions).mean(axis=0), 10)
    board = pd.DataFrame({"feature": explained.columns, "importance": mean_abs})
    return board.sort_values("importance", ascending=False, kind="stable").reset_index(drop=True)


def judged_predictions(
    model: tracking.LoadedModel, test: pd.DataFrame, spec: DataSpec, seed: int
) -> tuple[dict[str, float], dict[str, pd.DataFrame]]:
    """A supervised model's test metrics and tables: curves, permutation and (where it applies) SHAP importance."""
    prediction, probability = predictions(model, test, spec)
    y = target_vector(test, spec)
    tables = spec.learning_task.curves(y, prediction, probability)
    tables["importance"] = importance(model, test, spec, seed)
    shap = shap_importance(model.pipeline, test, spec, seed)
    if shap is not None:
        tables[SHAP_IMPORTANCE] = shap
    return metrics.all_scores(spec.task, y, prediction, probability), tables


def run(params: dict[str, Any]) -> dict[str, Any]:
    """Score the model as served on the test split, write the metrics and tables, log them on the train run."""
    spec, paths, seed = project.data_spec(params), project.paths(params), project.seed(params)
    run_id = TrainingRun.of(TrainingRecord.from_json(paths.train_info), paths.train_run).run_id
    test = pd.read_parquet(paths.split_file("test"))
    model = tracking.load(str(Path(paths.model).resolve()))
    if spec.learning_task.supervised:
        test_metrics, tables = judged_predictions(model, test, spec, seed)
        clusters = ""
    else:
        scores, tables = judged_segmentation(model, test, spec, seed)
        test_metrics = {k: float(v) for k, v in scores.as_dict().items() if v is not None}
        sizes = [f"{row.cluster}: {row.share:.0%}" for row in tables["cluster_profile"].itertuples()]
        clusters = f"{scores.n_clusters} clusters ({', '.join(sizes[:-1])}); "  # the last row is all rows

    if not tracking.run_exists(run_id):
        raise StageError(
            f"{paths.train_run}: MLflow run {run_id} is not in the tracking store "
            f"{tracking.tracking_uri()}; rerun training with `dvc repro --force train`"
        )
    with files.atomic_path(paths.plots) as staged:
        staged.mkdir()
        for name, table in tables.items():
            table.to_csv(staged / f"{name}.csv", index=False)
    tracking.log(run_id, metrics={f"test/{k}": v for k, v in test_metrics.items()} | {"test/rows": len(test)})
    tracking.log_split(run_id, "test", test, paths.split_file("test"), spec.target, "testing")
    with tempfile.TemporaryDirectory() as scratch:
        for name, table in tables.items():
            tracking.log_artifact(run_id, evaluation_plots.png(name, table, spec, Path(scratch)), "evaluate")
    if "cluster_profile" in tables:  # a table to read beside its plot
        tracking.log_artifact(run_id, Path(paths.plots) / "cluster_profile.csv", "evaluate")
    files.write_json(paths.metrics, {k: round(v, 6) for k, v in test_metrics.items()} | {"rows": len(test)})
    shown = " · ".join(f"{k} {v:.4f}" for k, v in test_metrics.items() if k in spec.learning_task.metrics)
    console.say(STAGE, f"test ({console.number(len(test))} rows): {clusters}{shown} → {paths.metrics}, {paths.plots}/")
    return test_metrics


def judged_segmentation(
    model: tracking.LoadedModel, test: pd.DataFrame, spec: DataSpec, seed: int
) -> tuple[clustering.ClusterScores, dict[str, pd.DataFrame]]:
    """A clustering model's scores and tables on ``test``, as the served model assigns its rows."""
    X = test[spec.features]
    labels = spec.learning_task.read_outputs(model.predict(X))[0]
    embedded = model.pipeline.embed(X)
    scores = clustering.scores(embedded, labels, seed=seed)
    tables = {
        "cluster_profile": clustering.profile(X, labels, spec.numeric_features, spec.categorical_features),
        "projection": clustering.projection(embedded, labels, seed),
        "silhouette": clustering.silhouette_table(embedded, labels, seed),
    }
    return scores, tables
