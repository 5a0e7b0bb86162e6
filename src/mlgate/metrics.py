"""Metric definitions: how each is computed and which direction is better."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn import metrics as skm


@dataclass(frozen=True)
class Metric:
    name: str
    greater_is_better: bool
    uses_probability: bool
    score: Callable[[np.ndarray, np.ndarray], float]


def _rmse(y, p):
    return float(np.sqrt(skm.mean_squared_error(y, p)))


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("roc_auc", True, True, lambda y, p: float(skm.roc_auc_score(y, p))),
    Metric("log_loss", False, True, lambda y, p: float(skm.log_loss(y, np.clip(p, 1e-15, 1 - 1e-15), labels=[0, 1]))),
    Metric("accuracy", True, False, lambda y, p: float(skm.accuracy_score(y, p))),
    Metric("precision", True, False, lambda y, p: float(skm.precision_score(y, p, zero_division=0))),
    Metric("recall", True, False, lambda y, p: float(skm.recall_score(y, p, zero_division=0))),
    Metric("f1", True, False, lambda y, p: float(skm.f1_score(y, p, zero_division=0))),
    Metric("rmse", False, False, _rmse),
    Metric("mae", False, False, lambda y, p: float(skm.mean_absolute_error(y, p))),
    Metric("r2", True, False, lambda y, p: float(skm.r2_score(y, p))),
)}

TASK_METRICS = {
    "binary": ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"),
    "regression": ("rmse", "mae", "r2"),
}


def get(name: str, task: str) -> Metric:
    if name not in METRICS or name not in TASK_METRICS[task]:
        raise ValueError(f"data.metric '{name}' is not a {task} metric; choose one of {TASK_METRICS[task]}")
    return METRICS[name]


def score(name: str, y_true: np.ndarray, prediction: np.ndarray, probability: np.ndarray | None) -> float:
    metric = METRICS[name]
    return metric.score(y_true, probability if metric.uses_probability else prediction)


def all_scores(task: str, y_true: np.ndarray, prediction: np.ndarray, probability: np.ndarray | None) -> dict[str, float]:
    return {name: score(name, y_true, prediction, probability) for name in TASK_METRICS[task]}


def improvement(name: str, candidate: float, reference: float) -> float:
    """How much better ``candidate`` is than ``reference``: positive is better, whatever the direction."""
    delta = candidate - reference
    return delta if METRICS[name].greater_is_better else -delta


def paired_bootstrap(name: str, y_true: np.ndarray, candidate: np.ndarray, reference: np.ndarray, *,
                     resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile confidence interval of ``improvement(candidate, reference)`` over resampled rows.

    Paired: each resample scores both models on the same rows, so the interval reflects the gap
    between them, not the (much larger) noise of either score alone. ``candidate`` and ``reference``
    are what the metric scores: probabilities or predictions.
    """
    score = _rank_auc if name == "roc_auc" else METRICS[name].score
    rng = np.random.default_rng(seed)
    gains = []
    for _ in range(resamples):
        rows = rng.integers(0, len(y_true), len(y_true))
        y = y_true[rows]
        if METRICS[name].uses_probability and np.unique(y).size < 2:
            continue   # AUC is undefined on a one-class resample
        gains.append(improvement(name, score(y, candidate[rows]), score(y, reference[rows])))
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(gains, [tail, 100 - tail])
    return float(low), float(high)


def _rank_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC from ranks (Mann-Whitney U, ties averaged): sklearn's value, without its per-call
    input checks that dominate a thousand bootstrap resamples."""
    from scipy.stats import rankdata

    positives = y_true == 1
    n_pos = int(positives.sum())
    n_neg = len(y_true) - n_pos
    ranks = rankdata(score)
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
