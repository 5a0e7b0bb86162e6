"""What the gate judges, computed from frames and model outputs: the candidate and production scored
on the same labelled rows (with paired-bootstrap intervals and per-slice scores), the measurements
for the optional rules, and which rows of the current batch carry usable labels. Pure but for the
latency timing; no tracking, no files."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlgate.files import content_hash
from mlgate.gating.fairness import FairnessEvidence
from mlgate.modelling import evaluation, metrics
from mlgate.modelling.data import DataSpec, target_vector
from mlgate.records import DriftSummary

LATENCY_WARMUP = 5
LATENCY_CALLS = 50
Output = tuple[np.ndarray, np.ndarray | None]  # (prediction, positive-class probability or None)


def rounded(value: float | None) -> float | None:
    """Six decimals: what the reports keep of a score."""
    return None if value is None else round(value, 6)


@dataclass(frozen=True)
class SliceScore:
    column: str
    value: str
    rows: int
    candidate: float | None
    champion: float | None = None

    def gain(self, metric: str) -> float | None:
        """The candidate's improvement over production on this slice; None if either is unscored."""
        if self.candidate is None or self.champion is None:
            return None
        return metrics.improvement(metric, self.candidate, self.champion)


@dataclass(frozen=True)
class SliceRow:
    """The gate metric on one value of a segment column, for both models, as the reports keep it."""

    column: str
    value: str
    rows: int
    candidate: float | None
    champion: float | None
    gain: float | None


@dataclass(frozen=True)
class Comparison:
    """The candidate, and production unless ``skipped`` says why not, scored on the same labelled
    rows: every metric, the gate metric's 95% bootstrap interval for each model and the paired
    interval of the gain. No candidate scores: the rows could not be scored (``skipped``)."""

    rows: int = 0
    content_hash: str | None = None
    candidate: dict[str, float] | None = None
    champion: dict[str, float] | None = None
    candidate_interval: tuple[float, float] | None = None
    champion_interval: tuple[float, float] | None = None
    gain_interval: tuple[float, float] | None = None
    slices: tuple[SliceScore, ...] = ()
    skipped: str | None = None
    # the batch's rows left out because production trained on them (a retraining's new split mixes them
    # in); None: production's training rows are not on record
    champion_trained_rows: int | None = 0

    def gain(self, metric: str) -> float | None:
        if self.candidate is None or self.champion is None:
            return None
        return metrics.improvement(metric, self.candidate[metric], self.champion[metric])


@dataclass(frozen=True)
class Measurements:
    """The evidence of the optional rules; None where it could not be measured."""

    prediction_drift: float | None = None
    target_drift: float | None = None
    calibration_error: float | None = None
    brier: float | None = None
    model_size_mb: float | None = None
    latency_ms: float | None = None
    # clustering: the smallest cluster's share of test rows, tune's stability (mean ARI of the bootstrap
    # refits), and the agreement (ARI) of the candidate's and production's clusters on test
    smallest_cluster_share: float | None = None
    stability_ari: float | None = None
    assignment_agreement: float | None = None


NOT_MEASURED = Measurements()


@dataclass(frozen=True)
class Evidence:
    """All that the policy judges. ``champion_score`` is None without a production model, and
    ``champion_error`` says why production could not be scored; ``test`` holds the paired gain
    interval and the slices on the test set, ``current`` the comparison on the current batch (None:
    not measured); ``task`` decides which rules apply."""

    metric: str
    validation_passed: bool
    drift: DriftSummary  # reports/drift.json
    candidate_score: float
    champion_score: float | None = None
    champion_error: str | None = None
    test: Comparison = field(default_factory=Comparison)
    current: Comparison | None = None
    measured: Measurements = NOT_MEASURED
    task: str = "binary"
    fairness: tuple[FairnessEvidence, ...] = ()  # per sensitive column of gate.fairness, on test


def usable_labels(current: pd.DataFrame, spec: DataSpec, min_rows: int) -> tuple[np.ndarray, str | None]:
    """Which rows of the current batch carry a usable target (present; one of the declared classes,
    or a number for regression), and why they cannot be scored, if they cannot."""
    if spec.target not in current.columns:
        return np.zeros(len(current), bool), f"it has no `{spec.target}` column"
    target, task = current[spec.target], spec.learning_task
    usable = task.labelled(target, spec.contract.columns[spec.target].categories)
    labelled = int(usable.sum())
    if labelled == 0:
        return usable, f"no row has a usable `{spec.target}` value"
    if labelled < min_rows:
        return usable, f"only {labelled:,} rows have a `{spec.target}` value (gate.current_batch.min_rows {min_rows})"
    return usable, task.unscorable(target[usable])


def compare(
    spec: DataSpec,
    rows: pd.DataFrame,
    candidate: Output,
    champion: Output | None,
    *,
    skipped: str | None = None,
    slice_columns: Iterable[str] = (),
    resamples: int = 1000,
    seed: int = 0,
) -> Comparison:
    """The candidate, and ``champion`` unless None (``skipped`` says why), scored on the same
    labelled ``rows``: all metrics, per-model and paired-gain 95% bootstrap intervals of the gate
    metric (metrics.bootstrap_scores), and the metric per value of each slice column."""
    y = target_vector(rows, spec)
    scored = 1 if metrics.METRICS[spec.metric].uses_probability else 0
    outputs = [candidate] if champion is None else [candidate, champion]
    draws = metrics.bootstrap_scores(
        spec.metric, y, *(output[scored] for output in outputs), resamples=resamples, seed=seed
    )
    slices = []
    for column in (c for c in slice_columns if c in rows.columns):  # a current batch may lack an imputed column
        groups = rows[column].to_numpy()
        theirs = (
            {}
            if champion is None
            else {value: score for value, _, score in metrics.slice_scores(spec.metric, y, champion[scored], groups)}
        )
        slices += [
            SliceScore(column, value, count, score, theirs.get(value))
            for value, count, score in metrics.slice_scores(spec.metric, y, candidate[scored], groups)
        ]
    return Comparison(
        rows=len(rows),
        content_hash=content_hash(rows),
        candidate=metrics.all_scores(spec.task, y, *candidate),
        champion=None if champion is None else metrics.all_scores(spec.task, y, *champion),
        candidate_interval=metrics.percentile_interval(draws[:, 0]),
        champion_interval=None if champion is None else metrics.percentile_interval(draws[:, 1]),
        gain_interval=(
            None
            if champion is None
            else metrics.percentile_interval(metrics.improvement(spec.metric, draws[:, 0], draws[:, 1]))
        ),
        slices=tuple(slices),
        skipped=skipped,
    )


def single_row_latency_ms(
    predict: Callable[[pd.DataFrame], Any],
    rows: pd.DataFrame,
    *,
    calls: int = LATENCY_CALLS,
    warmup: int = LATENCY_WARMUP,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Median wall time of predicting one row at a time, after ``warmup`` calls (the first calls pay
    for lazy imports and caches, which a serving process pays once); ``clock`` reads seconds."""
    singles = [rows.iloc[[i % len(rows)]] for i in range(warmup + calls)]
    for row in singles[:warmup]:
        predict(row)
    seconds = []
    for row in singles[warmup:]:
        started = clock()
        predict(row)
        seconds.append(clock() - started)
    return float(np.median(seconds) * 1000)


def measure(
    spec: DataSpec,
    model: evaluation.Predictor,
    *,
    train: pd.DataFrame,
    test: pd.DataFrame,
    current: pd.DataFrame,
    candidate_output: Output,
    current_output: Output,
    model_size_bytes: int,
) -> Measurements:
    """The evidence for the optional rules, from the candidate as served (pyfunc).

    Drift statistics look at the model's output (binary: the probability; multiclass: the predicted
    class, one bin per class; regression: the prediction) and at the target (multiclass: the class
    distribution), on the current batch against the training rows. Calibration and Brier score are
    measured for binary tasks only.
    """
    task = spec.learning_task
    bins = task.drift_bins
    prediction_drift = metrics.population_stability(
        task.drift_output(evaluation.predictions(model, train, spec)), task.drift_output(current_output), bins
    )
    labelled = current.iloc[:0]
    if spec.target in current.columns:  # a label outside data.classes is the validation's to report
        target = current[spec.target]
        labelled = current[target.notna() & task.scorable(target)]
    target_drift = (
        None
        if labelled.empty
        else metrics.population_stability(target_vector(train, spec), target_vector(labelled, spec), bins)
    )
    y = target_vector(test, spec)
    probability = candidate_output[1] if task.calibration_applies else None
    return Measurements(
        prediction_drift=prediction_drift,
        target_drift=target_drift,
        calibration_error=None if probability is None else metrics.expected_calibration_error(y, probability),
        brier=None if probability is None else metrics.brier(y, probability),
        model_size_mb=model_size_bytes / 1e6,
        latency_ms=single_row_latency_ms(model.predict, test.drop(columns=[spec.target, *spec.sensitive])),
    )
