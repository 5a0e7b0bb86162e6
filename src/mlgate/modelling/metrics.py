"""Metric definitions: how each is computed and which direction is better."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from mlgate.modelling.task import TASKS, named


@dataclass(frozen=True)
class Metric:
    name: str
    greater_is_better: bool
    uses_probability: bool
    score: Callable[[np.ndarray, np.ndarray], float]


def _rmse(y, p):
    return float(np.sqrt(skm.mean_squared_error(y, p)))


def _log_loss(y, p):
    """Binary: ``p`` is the positive class's probability; multiclass: an (n, k) matrix, columns in
    class order (``y`` holds column numbers). sklearn's ``log_loss`` with ``labels`` (same clipping, same
    float result), without its validation and one-hot encoding, which made it 20x slower: the Caruana
    selection of a multiclass finish scores it a few thousand times (a 1-2 s finish at a 30 s budget)."""
    p = np.asarray(p, dtype=float)
    y = np.asarray(y)
    if p.ndim == 2:
        p = np.clip(p, 1e-15, 1.0)
        p = p / p.sum(axis=1, keepdims=True)
    else:
        p = np.clip(p, 1e-15, 1 - 1e-15)
        p = np.stack([1 - p, p], axis=1)
    if y.shape != p.shape[:1]:
        raise ValueError(f"log loss: {len(y)} labels for {len(p)} rows of probabilities")
    if y.size and not (y.dtype.kind in "biuf" and np.isin(y, np.arange(p.shape[1])).all()):
        raise ValueError(
            f"log loss: labels must be class numbers 0-{p.shape[1] - 1}, got {sorted(set(y.tolist()))[:5]}"
        )
    eps = np.finfo(p.dtype).eps
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y.astype(np.intp)], eps, 1 - eps))))


def _roc_auc_ovr(y, p):
    """Macro one-vs-rest ROC AUC over an (n, k) probability matrix: sklearn's
    ``roc_auc_score(multi_class="ovr", average="macro")``, from ranks. Needs every class in ``y``."""
    p = np.asarray(p, dtype=float)
    y = np.asarray(y)
    present = np.unique(y)
    if present.size < p.shape[1]:
        missing = sorted(set(range(p.shape[1])) - set(present.tolist()))
        raise ValueError(f"one-vs-rest ROC AUC needs every class in y_true; class column(s) {missing} have no rows")
    return float(np.mean([_rank_auc((y == k).astype(np.int64), p[:, k]) for k in range(p.shape[1])]))


def _clustering_score(name: str) -> Callable[[np.ndarray, np.ndarray], float]:
    """A clustering task's metric: ``y`` is the rows as the model's encoding places them, ``p`` their
    clusters (``clustering.score_of``: the silhouette on a seeded sample, noise counting 0); NaN
    with fewer than two clusters."""
    from mlgate.modelling import clustering

    def score(embedded: np.ndarray, labels: np.ndarray) -> float:
        value = clustering.score_of(name, embedded, labels, seed=0)
        return float("nan") if value is None else value

    return score


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("roc_auc", True, True, lambda y, p: float(skm.roc_auc_score(y, p))),
        Metric("log_loss", False, True, _log_loss),
        Metric("roc_auc_ovr", True, True, _roc_auc_ovr),
        Metric("f1_macro", True, False, lambda y, p: float(skm.f1_score(y, p, average="macro", zero_division=0))),
        Metric("accuracy", True, False, lambda y, p: float(skm.accuracy_score(y, p))),
        Metric("precision", True, False, lambda y, p: float(skm.precision_score(y, p, zero_division=0))),
        Metric("recall", True, False, lambda y, p: float(skm.recall_score(y, p, zero_division=0))),
        Metric("f1", True, False, lambda y, p: float(skm.f1_score(y, p, zero_division=0))),
        Metric("rmse", False, False, _rmse),
        Metric("mae", False, False, lambda y, p: float(skm.mean_absolute_error(y, p))),
        Metric("r2", True, False, lambda y, p: float(skm.r2_score(y, p))),
        Metric("silhouette", True, False, _clustering_score("silhouette")),
        Metric("davies_bouldin", False, False, _clustering_score("davies_bouldin")),
        Metric("calinski_harabasz", True, False, _clustering_score("calinski_harabasz")),
    )
}

TASK_METRICS = {name: task.metrics for name, task in TASKS.items()}


def get(name: str, task: str) -> Metric:
    """The metric, checked to apply to the task (``Task.check_metric``)."""
    named(task).check_metric(name)
    return METRICS[name]


def score(name: str, y_true: np.ndarray, prediction: np.ndarray, probability: np.ndarray | None) -> float:
    metric = METRICS[name]
    return metric.score(y_true, probability if metric.uses_probability else prediction)


def all_scores(
    task: str, y_true: np.ndarray, prediction: np.ndarray, probability: np.ndarray | None
) -> dict[str, float]:
    """Every metric that applies to the task."""
    return {name: score(name, y_true, prediction, probability) for name in named(task).metrics}


def undefined(name: str, y_true: np.ndarray, scored: np.ndarray) -> bool:
    """Whether the metric cannot be computed on these rows: a probability metric on one class only
    (as binary AUC is undefined there), or one-vs-rest AUC without every class of ``scored``'s columns."""
    if name == "roc_auc_ovr":
        return np.unique(y_true).size < np.shape(scored)[1]
    return METRICS[name].uses_probability and np.unique(y_true).size < 2


def improvement(name: str, candidate: float, reference: float) -> float:
    """How much better ``candidate`` is than ``reference``: positive is better, whatever the direction."""
    delta = candidate - reference
    return delta if METRICS[name].greater_is_better else -delta


def paired_bootstrap(
    name: str,
    y_true: np.ndarray,
    candidate: np.ndarray,
    reference: np.ndarray,
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile confidence interval of ``improvement(candidate, reference)`` over resampled rows.

    Paired: each resample scores both models on the same rows, so the interval reflects the gap
    between them, not the (much larger) noise of either score alone. ``candidate`` and ``reference``
    are what the metric scores: probabilities or predictions.
    """
    scores = bootstrap_scores(name, y_true, candidate, reference, resamples=resamples, seed=seed)
    return percentile_interval(improvement(name, scores[:, 0], scores[:, 1]), confidence)


def _rank_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC from ranks (Mann-Whitney U, ties averaged): sklearn's value, without its per-call
    input checks that dominate a thousand bootstrap resamples."""
    from scipy.stats import rankdata

    positives = y_true == 1
    n_pos = int(positives.sum())
    n_neg = len(y_true) - n_pos
    ranks = rankdata(score)
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def brier(y_true: np.ndarray, probability: np.ndarray) -> float:
    """Mean squared error of the positive-class probability (0 is perfect; always saying the base
    rate p scores p(1 - p))."""
    return float(np.mean((np.asarray(probability, float) - np.asarray(y_true, float)) ** 2))


def expected_calibration_error(y_true: np.ndarray, probability: np.ndarray, bins: int = 10) -> float:
    """The gap between predicted probability and observed positive rate, averaged over ``bins``
    equal-width probability bins weighted by their rows (0 is perfectly calibrated)."""
    y_true, probability = np.asarray(y_true, float), np.asarray(probability, float)
    index = np.minimum((probability * bins).astype(int), bins - 1)  # a probability of 1 joins the top bin
    positives = np.bincount(index, weights=y_true, minlength=bins)
    predicted = np.bincount(index, weights=probability, minlength=bins)
    return float(np.abs(positives - predicted).sum() / len(y_true))


PSI_FLOOR = 1e-4


def population_stability(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """Population stability index of ``current`` against ``reference``: sum of (c - r) * ln(c / r)
    over bins, with r and c the shares of rows in each bin.

    Bins are the deciles of the reference (each holds about a tenth of it), so the index does not
    depend on the variable's scale; a variable with at most ``bins`` distinct values (a 0/1 label)
    gets one bin per value, plus one for values the reference never took. Shares are floored at
    1e-4 so an empty bin counts as a large, finite shift. Rule of thumb: below 0.1 stable, 0.1 to
    0.25 a moderate shift, above 0.25 a major one.
    """
    reference, current = np.asarray(reference, float), np.asarray(current, float)
    values = np.unique(reference)
    if len(values) <= bins:
        known = np.isin(current, values)
        ref_counts = np.append([np.sum(reference == v) for v in values], 0)
        cur_counts = np.append([np.sum(current == v) for v in values], np.sum(~known))
    else:
        edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
        ref_counts = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=len(edges) + 1)
        cur_counts = np.bincount(np.searchsorted(edges, current, side="right"), minlength=len(edges) + 1)
    ref_share = np.maximum(ref_counts / len(reference), PSI_FLOOR)
    cur_share = np.maximum(cur_counts / len(current), PSI_FLOOR)
    return float(np.sum((cur_share - ref_share) * np.log(cur_share / ref_share)))


def slice_scores(
    name: str, y_true: np.ndarray, scored: np.ndarray, groups: np.ndarray
) -> list[tuple[str, int, float | None]]:
    """(value, rows, metric) for each value of ``groups``, largest group first; the metric is None
    where it is undefined (AUC on a group with one class only). ``scored`` is what the metric
    scores: probabilities or predictions. Missing group values form their own group."""
    labels = _group_labels(groups)
    out = []
    for value in labels.value_counts(sort=True).index:
        rows = (labels == value).to_numpy()
        y = y_true[rows]
        out.append(
            (value, int(rows.sum()), None if undefined(name, y, scored[rows]) else METRICS[name].score(y, scored[rows]))
        )
    return out


def _group_labels(groups: np.ndarray) -> pd.Series:
    """Group values as text: whole floats without the '.0' (a 0/1 column reads 0 and 1)."""
    series = pd.Series(groups)
    if pd.api.types.is_float_dtype(series) and np.all(np.mod(series.dropna(), 1) == 0):
        series = series.astype("Int64")
    return series.astype("string").fillna("(missing)")


def bootstrap_scores(
    name: str, y_true: np.ndarray, *scored: np.ndarray, resamples: int = 1000, seed: int = 0
) -> np.ndarray:
    """Each model's score on the same resampled rows: one row per resample, one column per array
    of ``scored`` (what the metric scores: probabilities or predictions).

    One-class resamples of a probability metric are skipped (AUC is undefined there) for every
    column alike, so the columns stay paired.
    """
    score = _rank_auc if name == "roc_auc" else METRICS[name].score
    rng = np.random.default_rng(seed)
    kept = []
    for _ in range(resamples):
        rows = rng.integers(0, len(y_true), len(y_true))
        y = y_true[rows]
        if undefined(name, y, scored[0][rows]):
            continue
        kept.append([score(y, values[rows]) for values in scored])
    return np.array(kept, dtype=float).reshape(-1, len(scored))


def percentile_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """The central ``confidence`` share of ``values`` (a bootstrap distribution)."""
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)
