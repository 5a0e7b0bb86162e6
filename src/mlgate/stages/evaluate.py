"""evaluate: test-set metrics and plots for the trained model, scored as it will be served (pyfunc).

Reads the test split, paths.model, paths.train_info and paths.train_run (the run it logs to); writes
paths.metrics (DVC metrics) and paths.plots (DVC plots: curves, permutation importance, and SHAP
importance for CatBoost and the tree families); logs `test/<metric>`, PNG plots and the test split (a
dataset input) to the train run. A clustering model is judged without labels (silhouette, Davies-Bouldin,
Calinski-Harabasz on the encoding it clusters in) and profiled: each cluster's size, share, numeric means
and top categories, a 2-D projection and the silhouette plot's table.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import ExtraTreesClassifier, ExtraTreesRegressor, RandomForestClassifier, RandomForestRegressor

from mlgate import console, files, project
from mlgate.adapters import tracking
from mlgate.errors import StageError
from mlgate.modelling import clustering, metrics, models
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


_FORESTS = (RandomForestClassifier, RandomForestRegressor, ExtraTreesClassifier, ExtraTreesRegressor)
# shap's TreeSHAP takes at most (nodes x depth x outputs) steps per tree and row: 7-12 ns a step
# measured on a busy core for forests (less for HistGradientBoosting's lopsided trees). Rows are capped
# so that one explanation stays within SHAP_WORK steps, a few seconds; a model too large to explain
# SHAP_MIN_ROWS rows within that gets no SHAP table (permutation importance only).
SHAP_WORK = 6e8
SHAP_MIN_ROWS = 100


def shap_importance(pipeline, frame: pd.DataFrame, spec: DataSpec, seed: int) -> pd.DataFrame | None:
    """Mean |SHAP value| on test rows per column the estimator sees (after the shared preprocessing
    and the family's encoding): CatBoost's own TreeSHAP, or shap's TreeExplainer for the random
    forest, the extra trees and HistGradientBoosting. Binary: SHAP of the positive class (log-odds;
    the forests: probability).

    None, leaving permutation importance alone, for the other families, for ensembles, for a forest
    too large to explain in time (``SHAP_WORK``), for HistGradientBoosting on categorical columns and
    for multiclass (one SHAP value per class: permutation importance covers every class at once).
    """
    pipeline = getattr(pipeline, "sole_pipeline", pipeline)
    if pipeline is None or spec.learning_task.scores_per_class:
        return None
    estimator = pipeline[-1]
    X = frame[spec.features]
    if isinstance(estimator, (models.CatBoostClassifierModel, models.CatBoostRegressorModel)):
        explained = _catboost_shap(estimator, pipeline[:-1].transform(_sample(X, IMPORTANCE_MAX_ROWS, seed)))
    elif isinstance(estimator, _FORESTS):
        explained = _tree_shap(pipeline, estimator, X, seed)
    # With native categorical columns, none: shap 0.51 reads every HistGradientBoosting split as a
    # numeric threshold and ignores category sets, so its values come out wrong without an error (its
    # additivity check compares with its own reading of the trees), and the trees index the columns in
    # the model's internal order (categoricals first), not the frame's.
    elif (
        isinstance(estimator, (models.HistGradientBoostingClassifierModel, models.HistGradientBoostingRegressorModel))
        and not estimator.categories_
    ):
        explained = _tree_shap(pipeline, estimator.model_, X, seed)
    else:
        return None
    if explained is None:
        return None
    names, values = explained
    board = pd.DataFrame({"feature": names, "importance": np.abs(values).mean(axis=0)})
    return board.sort_values("importance", ascending=False).reset_index(drop=True)


def _catboost_shap(estimator, seen: pd.DataFrame) -> tuple[list[str], np.ndarray]:
    import catboost

    # the estimator's own preparation (missing categories as a category), so SHAP sees what predict sees
    pool = catboost.Pool(estimator._prepare(seen), cat_features=estimator.categorical_)
    values = estimator.model_.get_feature_importance(pool, type="ShapValues")[:, :-1]  # last column: the expected value
    return list(seen.columns), values


def _encoded_names(encoder) -> list[str] | None:
    """The ordinal ColumnTransformer's output columns by input name: "numeric__charges" -> "charges";
    a missing indicator keeps scikit-learn's name, "missingindicator_charges". None when a step
    cannot name its output: a table of column numbers would mislead."""
    try:
        names = encoder.get_feature_names_out()
    except AttributeError:
        return None
    return [str(name).split("__", 1)[1] for name in names]


def _tree_shap(pipeline, model, X: pd.DataFrame, seed: int) -> tuple[list[str], np.ndarray] | None:
    """Path-dependent TreeSHAP (no background data) of ``model``, the last step of ``pipeline`` or
    the scikit-learn model inside it, on rows of ``X`` as the pipeline hands them to it."""
    import shap

    explainer = shap.TreeExplainer(model)
    steps = sum(len(tree.children_left) * max(tree.max_depth, 1) for tree in explainer.model.trees)
    rows = min(IMPORTANCE_MAX_ROWS, int(SHAP_WORK // (steps * explainer.model.num_outputs)))
    if rows < min(SHAP_MIN_ROWS, len(X)):
        return None
    seen = pipeline[:-1].transform(_sample(X, rows, seed))
    if isinstance(model, _FORESTS):
        names = _encoded_names(pipeline.named_steps["encode"])
        if names is None:
            return None
    else:  # HistGradientBoosting sees the shared front's (all-numeric) frame as it is
        names = list(seen.columns)
    # shap checks additivity against its own reading of the trees, not the model: a second pass that proves little
    values = explainer.shap_values(np.asarray(seen, dtype=np.float64), check_additivity=False)
    # per class, a list (older shap) or a trailing axis (forests); HistGradientBoosting: the log-odds alone
    if isinstance(values, list):
        values = values[1]
    values = np.asarray(values)
    return names, values[..., 1] if values.ndim == 3 else values


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
