"""evaluate: test-set metrics and plots for the trained model, scored as it will be served (pyfunc).

Reads the test split, paths.model and paths.train_info; writes paths.metrics (DVC metrics) and
paths.plots (DVC plots: curves, permutation importance, and SHAP importance for CatBoost); logs
`test/<metric>` and PNG plots to the train run.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from mlgate import console, files, metrics, models, project, tracking
from mlgate.data import DataSpec, target_vector
from mlgate.project import StageError

STAGE = "evaluate"


def predictions(model: tracking.LoadedModel, frame: pd.DataFrame, spec: DataSpec) -> tuple[np.ndarray, np.ndarray | None]:
    """(prediction as model targets, positive-class probability or None) from the pyfunc output.
    ``frame`` may lack the target (an unlabelled batch)."""
    output = model.predict(frame.drop(columns=[spec.target], errors="ignore"))
    if spec.task == "binary":
        return (output["prediction"].astype(str) == str(spec.positive_class)).to_numpy(np.int64), output["probability"].to_numpy()
    return output["prediction"].to_numpy(np.float64), None


def curves(y: np.ndarray, prediction: np.ndarray, probability: np.ndarray | None, task: str) -> dict[str, pd.DataFrame]:
    if task == "binary":
        fpr, tpr, _ = skm.roc_curve(y, probability)
        precision, recall, _ = skm.precision_recall_curve(y, probability)
        return {"roc": pd.DataFrame({"fpr": fpr, "tpr": tpr}),
                "precision_recall": pd.DataFrame({"recall": recall, "precision": precision}),
                "confusion": pd.DataFrame({"actual": y, "predicted": prediction})}
    return {"residuals": pd.DataFrame({"actual": y, "predicted": prediction, "residual": y - prediction})}


IMPORTANCE_REPEATS = 5
IMPORTANCE_MAX_ROWS = 5_000


def importance(model: tracking.LoadedModel, frame: pd.DataFrame, spec: DataSpec, seed: int) -> pd.DataFrame:
    """Permutation importance on the test set, per raw input column: the drop in the metric when
    that column's values are shuffled. Model-agnostic.

    Every shuffled copy of one repeat goes through the model in one call: a pipeline's per-call
    overhead, not its per-row cost, dominates at test-set sizes (80 columns: 400 calls become 5).
    """
    rows = frame if len(frame) <= IMPORTANCE_MAX_ROWS else frame.sample(IMPORTANCE_MAX_ROWS, random_state=seed)
    X = rows[spec.features].reset_index(drop=True)
    y = target_vector(rows, spec)
    baseline = metrics.score(spec.metric, y, *models.predict(model.pipeline, X, spec.task))
    rng = np.random.default_rng(seed)
    drops = np.empty((len(X.columns), IMPORTANCE_REPEATS))
    for repeat in range(IMPORTANCE_REPEATS):
        shuffled = []
        for column in X.columns:
            copy = X.copy()
            copy[column] = X[column].to_numpy()[rng.permutation(len(X))]
            shuffled.append(copy)
        prediction, probability = models.predict(model.pipeline, pd.concat(shuffled, ignore_index=True), spec.task)
        for i in range(len(X.columns)):
            block = slice(i * len(X), (i + 1) * len(X))
            score = metrics.score(spec.metric, y, prediction[block], None if probability is None else probability[block])
            drops[i, repeat] = metrics.improvement(spec.metric, baseline, score)
    board = pd.DataFrame({"feature": X.columns, "importance": drops.mean(axis=1), "std": drops.std(axis=1)})
    return board.sort_values("importance", ascending=False).reset_index(drop=True)


SHAP_IMPORTANCE = "shap_importance"


def shap_importance(pipeline, frame: pd.DataFrame, spec: DataSpec, seed: int) -> pd.DataFrame | None:
    """Mean |SHAP value| per column the CatBoost estimator sees (after the shared preprocessing),
    from CatBoost's own TreeSHAP on test rows; None for the other families."""
    estimator = pipeline[-1]
    if not isinstance(estimator, (models.CatBoostClassifierModel, models.CatBoostRegressorModel)):
        return None
    import catboost

    rows = frame if len(frame) <= IMPORTANCE_MAX_ROWS else frame.sample(IMPORTANCE_MAX_ROWS, random_state=seed)
    seen = pipeline[:-1].transform(rows[spec.features])
    # the estimator's own preparation (missing categories as a category), so SHAP sees what predict sees
    pool = catboost.Pool(estimator._prepare(seen), cat_features=estimator.categorical_)
    values = estimator.model_.get_feature_importance(pool, type="ShapValues")[:, :-1]  # last column: the expected value
    board = pd.DataFrame({"feature": seen.columns, "importance": np.abs(values).mean(axis=0)})
    return board.sort_values("importance", ascending=False).reset_index(drop=True)


def _png(name: str, table: pd.DataFrame, spec: DataSpec, folder: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    if name == "roc":
        ax.plot(table.fpr, table.tpr); ax.plot([0, 1], [0, 1], "--", color="grey")
        ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC curve (test)")
    elif name == "precision_recall":
        ax.plot(table.recall, table.precision); ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (test)")
    elif name == "confusion":
        matrix = skm.confusion_matrix(table.actual, table.predicted, labels=[0, 1])
        ax.imshow(matrix, cmap="Blues")
        for (i, j), v in np.ndenumerate(matrix):
            ax.text(j, i, f"{v:,}", ha="center", va="center")
        ax.set(xticks=[0, 1], yticks=[0, 1], xlabel="predicted", ylabel="actual", title=f"Confusion (1 = {spec.positive_class})")
    elif name == "residuals":
        ax.scatter(table.predicted, table.residual, s=4, alpha=0.5); ax.axhline(0, color="grey")
        ax.set(xlabel="predicted", ylabel="residual", title="Residuals (test)")
    elif name == "importance":
        top = table.head(15).iloc[::-1]
        ax.barh(top.feature, top.importance, xerr=top["std"]); ax.set(xlabel=f"drop in {spec.metric}", title="Permutation importance")
    elif name == SHAP_IMPORTANCE:
        top = table.head(15).iloc[::-1]
        ax.barh(top.feature, top.importance); ax.set(xlabel="mean |SHAP value|", title="SHAP importance (CatBoost)")
    fig.tight_layout()
    path = folder / f"{name}.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def run(params: dict[str, Any]) -> dict[str, Any]:
    spec = project.data_spec(params)
    paths = project.paths(params)
    info = files.read_json(paths.train_info)
    test = pd.read_parquet(paths.split_file("test"))
    model = tracking.load(str(Path(paths.model).resolve()))
    prediction, probability = predictions(model, test, spec)
    y = target_vector(test, spec)
    test_metrics = metrics.all_scores(spec.task, y, prediction, probability)
    tables = curves(y, prediction, probability, spec.task)
    tables["importance"] = importance(model, test, spec, project.seed(params))
    shap = shap_importance(model.pipeline, test, spec, project.seed(params))
    if shap is not None:
        tables[SHAP_IMPORTANCE] = shap

    if not tracking.run_exists(info["run_id"]):
        raise StageError(f"{paths.train_info}: MLflow run {info['run_id']} is not in the tracking store "
                         f"{tracking.tracking_uri()}; rerun training with `dvc repro --force train`")
    with files.atomic_path(paths.plots) as staged:
        staged.mkdir()
        for name, table in tables.items():
            table.to_csv(staged / f"{name}.csv", index=False)
    tracking.log(info["run_id"], metrics={f"test/{k}": v for k, v in test_metrics.items()} | {"test/rows": len(test)})
    with tempfile.TemporaryDirectory() as scratch:
        for name, table in tables.items():
            tracking.log_artifact(info["run_id"], _png(name, table, spec, Path(scratch)), "evaluate")
    files.write_json(paths.metrics, {k: round(v, 6) for k, v in test_metrics.items()} | {"rows": len(test)})
    shown = " · ".join(f"{k} {v:.4f}" for k, v in test_metrics.items())
    console.say(STAGE, f"test ({console.number(len(test))} rows): {shown} → {paths.metrics}, {paths.plots}/")
    return test_metrics
