"""gate: register the candidate, judge it against the declared policy, and grant `staging` or not.

Reads the validation, drift, test-metric and train reports, the importance tables, the model and the
train, test and current splits; writes paths.gate (each rule: observed, limit, verdict, evidence;
production vs candidate on the test set and on the current batch's labelled rows), paths.promotion
(Markdown for a pull request), paths.model_card (attached to the registered version) and the PNG
plots both embed, in paths.gate_plots (linked relative to each report). The reports and plots are staged and
moved into place together, after everything rendered. Registry changes are ordered so a failure
leaves no half-applied state: run artifacts and version tags first, the alias last.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlgate import config, console, files, project
from mlgate.adapters import tracking
from mlgate.errors import StageError
from mlgate.modelling import evaluation, metrics
from mlgate.modelling.data import DataSpec, target_vector
from mlgate.registry import CANDIDATE_ALIAS, CHAMPION_ALIAS
from mlgate.reports import evaluation_plots, model_card
from mlgate.reports.gate_plots import Output, draw_plots

STAGE = "gate"
MODEL_CARD_TAG = "mlgate.model_card"
LATENCY_WARMUP = 5
LATENCY_CALLS = 50


@dataclass(frozen=True)
class SliceLimits:
    """Limits on the primary metric within each value of one segment column of the test set."""

    min_metric: float | None = None  # a floor on each value's metric, in the metric's direction
    max_regression: float | None = None  # the largest loss against production on the same value
    min_rows: int = 100  # values with fewer test rows are reported, not judged


@dataclass(frozen=True)
class CurrentBatchRule:
    """Production vs the candidate on the labelled rows of the current batch."""

    max_regression: float | None = None  # the largest loss of `metric` against production; None: reported only
    require: bool = False  # fail when the current batch has no usable labels to score
    min_rows: int = 100  # fewer labelled rows are not scored


@dataclass(frozen=True)
class GatePolicy:
    metric: str
    require_validation: bool = True
    require_no_drift: bool = True
    metric_floor: float | None = None
    max_regression: float | None = None
    # Require the 95% paired-bootstrap interval of the gain over production to lie above zero.
    require_significant_gain: bool = False
    bootstrap_resamples: int = 1000
    # Named columns with their own drift threshold (None: the drift stage's threshold for the column).
    critical_features: dict[str, float | None] = field(default_factory=dict)
    # Population stability index of the model's output, and of the target, current batch vs training rows.
    max_prediction_drift: float | None = None
    max_target_drift: float | None = None
    # Binary tasks, on the test set: expected calibration error (10 equal-width bins), Brier score.
    max_calibration_error: float | None = None
    max_brier: float | None = None
    slices: dict[str, SliceLimits] = field(default_factory=dict)
    max_model_size_mb: float | None = None
    # Median wall time of a one-row prediction through the pyfunc model, as it is served.
    max_latency_ms: float | None = None
    current_batch: CurrentBatchRule = field(default_factory=CurrentBatchRule)


@dataclass(frozen=True)
class SliceScore:
    column: str
    value: str
    rows: int
    candidate: float | None
    champion: float | None = None


@dataclass(frozen=True)
class Measurements:
    """What gate.run measures for the optional rules; None where it could not be measured."""

    prediction_drift: float | None = None
    target_drift: float | None = None
    calibration_error: float | None = None
    brier: float | None = None
    slices: tuple[SliceScore, ...] = ()
    model_size_mb: float | None = None
    latency_ms: float | None = None


NOT_MEASURED = Measurements()


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    observed: Any
    limit: Any
    detail: str
    evidence: Any = None
    skipped: bool = False  # passed because there was nothing to judge; the detail says why

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"verdict": "fail" if not self.passed else "skipped" if self.skipped else "pass"}


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

    def as_dict(self, metric: str) -> dict[str, Any]:
        def side(scores: dict[str, float] | None, interval: tuple[float, float] | None) -> dict[str, Any] | None:
            return (
                None
                if scores is None
                else {"metrics": {k: round(v, 6) for k, v in scores.items()}, "interval": _interval(interval)}
            )

        gain = (
            None
            if self.candidate is None or self.champion is None
            else metrics.improvement(metric, self.candidate[metric], self.champion[metric])
        )
        return {
            "metric": metric,
            "rows": self.rows,
            "content_hash": self.content_hash,
            "skipped": self.skipped,
            "candidate": side(self.candidate, self.candidate_interval),
            "champion": side(self.champion, self.champion_interval),
            "gain": _rounded(gain),
            "gain_interval": _interval(self.gain_interval),
            "slices": [_slice_row(score, metric) for score in self.slices],
        }


@dataclass(frozen=True)
class Decision:
    passed: bool
    checks: list[Check]

    @property
    def reasons(self) -> list[str]:
        return [c.detail for c in self.checks if not c.passed]


def decide(
    policy: GatePolicy,
    *,
    validation_passed: bool,
    drift: dict[str, Any],
    metric: str,
    candidate_score: float,
    champion_score: float | None,
    champion_error: str | None = None,
    gain_interval: tuple[float, float] | None = None,
    measured: Measurements = NOT_MEASURED,
    current: Comparison | None = None,
    task: str = "binary",
) -> Decision:
    """Pure: every rule of the policy against the evidence; passed only if all pass. ``current``:
    production vs the candidate on the current batch (None: not measured). A rule that judges one
    class's probability (calibration, Brier) is skipped, with the reason, for a multiclass ``task``."""
    checks = []
    if policy.require_validation:
        checks.append(
            Check(
                "validation",
                validation_passed,
                validation_passed,
                True,
                "data contract passed" if validation_passed else "data contract violated (see reports/validation.json)",
            )
        )
    if policy.require_no_drift:
        share, limit = drift["drift_share"], drift["max_drift_share"]
        top = ", ".join(drift["drifted_columns"][:5]) or "none"
        checks.append(
            Check(
                "drift",
                share <= limit,
                round(share, 4),
                limit,
                f"drift share {share:.2f} {'≤' if share <= limit else '>'} {limit:.2f} (drifted: {top})",
            )
        )
    if policy.critical_features:
        checks.append(_critical_features(policy.critical_features, drift))
    if policy.max_prediction_drift is not None:
        checks.append(
            _ceiling(
                "prediction_drift",
                measured.prediction_drift,
                policy.max_prediction_drift,
                "prediction drift (PSI, current batch vs training rows)",
            )
        )
    if policy.max_target_drift is not None:
        checks.append(
            Check(
                "target_drift",
                True,
                None,
                policy.max_target_drift,
                "not measured: the current batch has no labels",
                skipped=True,
            )
            if measured.target_drift is None
            else _ceiling(
                "target_drift",
                measured.target_drift,
                policy.max_target_drift,
                "target drift (PSI, current batch vs training rows)",
            )
        )
    if policy.metric_floor is not None:
        ok, relation = _against_floor(metric, candidate_score, policy.metric_floor)
        checks.append(
            Check(
                "metric_floor",
                ok,
                round(candidate_score, 6),
                policy.metric_floor,
                f"test {metric} {candidate_score:.4f} {relation} floor {policy.metric_floor}",
            )
        )
    if policy.max_regression is not None:
        if champion_error is not None:
            checks.append(Check("champion", False, None, policy.max_regression, champion_error))
        elif champion_score is None:
            checks.append(
                Check("champion", True, None, policy.max_regression, f"no '{CHAMPION_ALIAS}' model yet", skipped=True)
            )
        else:
            gain = metrics.improvement(metric, candidate_score, champion_score)
            checks.append(
                Check(
                    "champion",
                    _within(gain, policy.max_regression),
                    round(gain, 6),
                    -policy.max_regression,
                    _versus("test", metric, candidate_score, champion_score, gain_interval, policy.max_regression),
                )
            )
    if policy.require_significant_gain and champion_score is not None and champion_error is None:
        low = None if gain_interval is None else gain_interval[0]
        ok = low is not None and low > 0
        checks.append(
            Check(
                "significant_gain",
                ok,
                None if low is None else round(low, 6),
                0.0,
                "no interval computed"
                if low is None
                else f"95% CI of the {metric} gain over production starts at {low:+.4f} "
                f"({'above' if ok else 'not above'} 0)",
            )
        )
    if policy.current_batch.max_regression is not None or policy.current_batch.require:
        checks.append(_current_batch(policy.current_batch, metric, current))
    if policy.max_calibration_error is not None:
        checks.append(
            _binary_only("calibration", policy.max_calibration_error, task)
            or _ceiling(
                "calibration",
                measured.calibration_error,
                policy.max_calibration_error,
                "expected calibration error on test (10 equal-width bins)",
            )
        )
    if policy.max_brier is not None:
        checks.append(
            _binary_only("brier", policy.max_brier, task)
            or _ceiling("brier", measured.brier, policy.max_brier, "Brier score on test")
        )
    if policy.slices:
        checks.append(_slices(policy.slices, metric, measured.slices))
    if policy.max_model_size_mb is not None:
        checks.append(_ceiling("model_size", measured.model_size_mb, policy.max_model_size_mb, "model size", " MB", 2))
    if policy.max_latency_ms is not None:
        checks.append(
            _ceiling(
                "latency",
                measured.latency_ms,
                policy.max_latency_ms,
                f"median single-row prediction latency ({LATENCY_CALLS} calls)",
                " ms",
                1,
            )
        )
    return Decision(all(c.passed for c in checks), checks)


def _binary_only(name: str, limit: float, task: str) -> Check | None:
    """The skipped check of a rule on the positive class's probability, for a multiclass task; else None."""
    if task != "multiclass":
        return None
    return Check(
        name,
        True,
        None,
        limit,
        f"skipped: {name} judges one class's probability (binary tasks); a multiclass model has one per class",
        skipped=True,
    )


def _within(gain: float, max_regression: float | None) -> bool:
    """A loss of exactly the tolerance is allowed; no tolerance allows any loss."""
    return max_regression is None or gain >= -max_regression - 1e-12


def _versus(
    where: str,
    metric: str,
    candidate: float,
    champion: float,
    interval: tuple[float, float] | None,
    max_regression: float | None,
) -> str:
    gain = metrics.improvement(metric, candidate, champion)
    ci = "" if interval is None else f", 95% CI [{interval[0]:+.4f}, {interval[1]:+.4f}]"
    allowed = "loss not limited" if max_regression is None else f"allowed loss {max_regression}"
    return f"{where} {metric} {candidate:.4f} vs production {champion:.4f} (gain {gain:+.4f}{ci}, {allowed})"


def _current_batch(rule: CurrentBatchRule, metric: str, batch: Comparison | None) -> Check:
    """Production vs the candidate on the current batch's labelled rows. Skipped, with the reason,
    when there is no production model to compare or no usable labels; the latter fails instead when
    the policy requires labels."""
    limit = None if rule.max_regression is None else -rule.max_regression
    if batch is None:
        return Check("current_batch", False, None, limit, "current batch comparison: not measured")
    evidence = {"rows": batch.rows, "content_hash": batch.content_hash}
    if batch.candidate is None:
        required = " (gate.current_batch.require)" if rule.require else ""
        return Check(
            "current_batch",
            not rule.require,
            None,
            limit,
            f"current batch not scored: {batch.skipped}{required}",
            evidence,
            skipped=not rule.require,
        )
    if batch.champion is None:
        return Check(
            "current_batch", True, None, limit, f"current batch not compared: {batch.skipped}", evidence, skipped=True
        )
    candidate, champion = batch.candidate[metric], batch.champion[metric]
    gain = metrics.improvement(metric, candidate, champion)
    return Check(
        "current_batch",
        _within(gain, rule.max_regression),
        round(gain, 6),
        limit,
        _versus(
            f"current batch ({batch.rows:,} labelled rows)",
            metric,
            candidate,
            champion,
            batch.gain_interval,
            rule.max_regression,
        ),
        evidence,
    )


def _against_floor(metric: str, value: float, floor: float) -> tuple[bool, str]:
    """(value is at least as good as floor, the relation to print), in the metric's direction."""
    if metrics.METRICS[metric].greater_is_better:
        return (True, "≥") if value >= floor else (False, "<")
    return (True, "≤") if value <= floor else (False, ">")


def _ceiling(name: str, observed: float | None, limit: float, what: str, unit: str = "", digits: int = 4) -> Check:
    """A measurement that may not exceed its limit; one that could not be measured fails."""
    if observed is None:
        return Check(name, False, None, limit, f"{what}: not measured")
    ok = observed <= limit
    return Check(
        name, ok, round(observed, 6), limit, f"{what} {observed:.{digits}f}{unit} {'≤' if ok else '>'} {limit}{unit}"
    )


def _critical_features(limits: dict[str, float | None], drift: dict[str, Any]) -> Check:
    """Each named column against its own threshold in the drift report. A distance (Wasserstein,
    Jensen-Shannon) drifts above its threshold; a p-value (the tests Evidently picks when the
    training rows number 1,000 or fewer) below it."""
    evidence, failures = {}, []
    for column, limit in limits.items():
        found = drift["columns"].get(column)
        if found is None:
            failures.append(f"{column}: not in the drift report")
            continue
        threshold = found["threshold"] if limit is None else limit
        p_value = metrics.is_p_value(found["method"])
        drifted = found["score"] < threshold if p_value else found["score"] > threshold
        evidence[column] = {
            "method": found["method"],
            "score": round(found["score"], 6),
            "limit": threshold,
            "drifted": drifted,
        }
        if drifted:
            failures.append(f"{column} {found['score']:.4f} {'<' if p_value else '>'} {threshold} ({found['method']})")
    observed = {column: e["score"] for column, e in evidence.items()}
    applied = {column: evidence[column]["limit"] if column in evidence else given for column, given in limits.items()}
    detail = (
        "critical feature drifted: " + "; ".join(failures)
        if failures
        else "no critical feature drifted: "
        + ", ".join(f"{c} {e['score']:.4f} (limit {e['limit']})" for c, e in evidence.items())
    )
    return Check("critical_features", not failures, observed, applied, detail, evidence)


def _slices(limits: dict[str, SliceLimits], metric: str, scores: tuple[SliceScore, ...]) -> Check:
    """Each value of each segment column judged on its own, when it has enough test rows: against
    the floor, and against production on the same rows when there is a production model."""
    table, failures = [], [f"{column}: not measured" for column in limits if column not in {s.column for s in scores}]
    for score in scores:
        rule = limits[score.column]
        gain = _slice_gain(score, metric)
        problems = []
        if score.rows < rule.min_rows:
            verdict = f"not judged (< {rule.min_rows} rows)"
        elif score.candidate is None:
            verdict = "not judged (one class only)"
        else:
            if rule.min_metric is not None:
                ok, relation = _against_floor(metric, score.candidate, rule.min_metric)
                if not ok:
                    problems.append(f"{metric} {score.candidate:.4f} {relation} floor {rule.min_metric}")
            if rule.max_regression is not None and gain is not None and gain < -rule.max_regression - 1e-12:
                problems.append(f"gain {gain:+.4f} over production (allowed loss {rule.max_regression})")
            verdict = "fail" if problems else "pass"
        if problems:
            failures.append(f"{score.column}={score.value}: {', '.join(problems)}")
        table.append(_slice_row(score, metric) | {"verdict": verdict})
    judged = sum(row["verdict"] in ("pass", "fail") for row in table)
    detail = (
        "slice(s) out of limits: " + "; ".join(failures)
        if failures
        else f"{judged} of {len(table)} slices judged, all within limits"
    )
    return Check("slices", not failures, len(failures), 0, detail, table)


def _slice_gain(score: SliceScore, metric: str) -> float | None:
    return (
        None
        if score.candidate is None or score.champion is None
        else metrics.improvement(metric, score.candidate, score.champion)
    )


def _slice_row(score: SliceScore, metric: str) -> dict[str, Any]:
    return {
        "column": score.column,
        "value": score.value,
        "rows": score.rows,
        "candidate": _rounded(score.candidate),
        "champion": _rounded(score.champion),
        "gain": _rounded(_slice_gain(score, metric)),
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _interval(pair: tuple[float, float] | None) -> dict[str, float] | None:
    return None if pair is None else {"confidence": 0.95, "low": round(pair[0], 6), "high": round(pair[1], 6)}


def single_row_latency_ms(
    predict: Callable[[pd.DataFrame], Any],
    rows: pd.DataFrame,
    *,
    calls: int = LATENCY_CALLS,
    warmup: int = LATENCY_WARMUP,
) -> float:
    """Median wall time of predicting one row at a time, after ``warmup`` calls (the first calls pay
    for lazy imports and caches, which a serving process pays once)."""
    singles = [rows.iloc[[i % len(rows)]] for i in range(warmup + calls)]
    for row in singles[:warmup]:
        predict(row)
    seconds = []
    for row in singles[warmup:]:
        started = time.perf_counter()
        predict(row)
        seconds.append(time.perf_counter() - started)
    return float(np.median(seconds) * 1000)


def _cell(value: Any) -> str:
    """A checks-table cell: a per-column mapping reads `column value, ...`."""
    if isinstance(value, dict):
        return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in value.items())
    return str(value)


def promotion_markdown(result: dict[str, Any]) -> str:
    """The pull-request summary: verdict, test metrics, current batch, checks, slices, drift, plots,
    model card, links."""
    cand, champ = result["candidate"], result.get("champion")
    verdict = "✅ **PASSED**: granted `staging`" if result["passed"] else "❌ **REJECTED**: not granted `staging`"
    lines = [
        f"# Model promotion: `{cand['name']}` version {cand['version']}",
        "",
        f"{verdict}. Generated {result['generated_at']} at commit `{result['git_commit'][:12]}`.",
        "",
    ]
    if not result["passed"]:
        lines += ["Reasons:", *[f"- {r}" for r in result["reasons"]], ""]
    lines += [
        "## Test metrics",
        "",
        f"Same test set for both ({result['test_rows']:,} rows, sha256 `{result['test_hash'][:12]}`).",
        "",
        *model_card.metrics_table(result),
    ]
    if current := model_card.current_batch_table(result):
        lines += ["", "## Current batch", "", *current]
    lines += ["", "## Checks", "", "| check | verdict | observed | limit | detail |", "| --- | --- | --- | --- | --- |"]
    for check in result["checks"]:
        lines.append(
            f"| {check['name']} | {model_card.verdict_mark(check)} | {_cell(check['observed'])} | "
            f"{_cell(check['limit'])} | {check['detail']} |"
        )
    if slices := model_card.slices_table(result):
        lines += ["", "## Slices", "", *slices]
    drift = result["drift"]
    lines += [
        "",
        "## Drift (current batch vs training data)",
        "",
        f"{drift['drifted_count']} of {drift['columns_checked']} columns drifted (share {drift['drift_share']:.2f}, "
        f"limit {drift['max_drift_share']:.2f}); {drift['current_rows']:,} current vs "
        f"{drift['reference_rows']:,} reference rows. "
        f"Full report: `{result['paths']['drift_report']}`.",
        "",
    ]
    top = sorted(drift["columns"].items(), key=lambda kv: metrics.drift_severity(kv[1]), reverse=True)[:5]
    lines += ["| column | method | score | threshold | drifted |", "| --- | --- | ---: | ---: | --- |"]
    lines += [
        f"| {c} | {v['method']} | {v['score']:.4f} | {v['threshold']} | {'yes' if v['drifted'] else 'no'} |"
        for c, v in top
    ]
    if plots := result.get("plots"):
        images = [model_card.image(plot["path"], plot["title"], result["paths"]["promotion"]) for plot in plots]
        lines += ["", "## Plots", "", "\n\n".join(images)]
    card = result["model_card"]
    lines += [
        "",
        "## Model card",
        "",
        f"[`{card['path']}`]({card['link']}): intended use, data lineage, training configuration, test and slice "
        f"metrics, feature importance, drift, limitations. Attached to version {cand['version']} as `{card['uri']}` "
        f"(tag `{MODEL_CARD_TAG}`).",
    ]
    lines += [
        "",
        "## Links",
        "",
        f"- Candidate run: {cand['run_link']}",
        f"- Candidate version: {cand['version_link']}",
    ]
    if champ:
        lines.append(f"- Production version: {champ['version_link']}")
    lines += [
        f"- Model family: `{cand['family']}`; tuning run: {cand['tune_run_link']}",
        "",
        f"Promote after review: `mlgate promote --alias production --version {cand['version']}`",
        "",
    ]
    return "\n".join(lines)


def _check_policy(policy: GatePolicy, spec: DataSpec) -> None:
    """Refuse a policy this dataset cannot be judged by, before anything is registered."""
    if policy.metric != spec.metric:
        raise StageError(
            f"params.yaml: the gate policy is stated in '{policy.metric}' (gate.metric) but dataset "
            f"'{spec.name}' is scored in '{spec.metric}' (data.metric); choose a policy for "
            f"{spec.metric} (e.g. -S gate=<policy>) or set gate.metric and gate.metric_floor"
        )
    if spec.task == "regression" and (policy.max_calibration_error is not None or policy.max_brier is not None):
        raise StageError(
            f"params.yaml: gate.max_calibration_error and gate.max_brier judge probabilities; dataset "
            f"'{spec.name}' is a {spec.task} task, so set them to null"
        )
    for key, columns in (("critical_features", policy.critical_features), ("slices", policy.slices)):
        unknown = sorted(set(columns) - set(spec.features))
        if unknown:
            raise StageError(
                f"params.yaml: gate.{key} names {unknown}, which are not feature columns of "
                f"'{spec.name}' (data.contract.columns)"
            )


def usable_labels(current: pd.DataFrame, spec: DataSpec, min_rows: int) -> tuple[np.ndarray, str | None]:
    """Which rows of the current batch carry a usable target (present; one of the declared classes,
    or a number for regression), and why they cannot be scored, if they cannot."""
    if spec.target not in current.columns:
        return np.zeros(len(current), bool), f"it has no `{spec.target}` column"
    target = current[spec.target]
    if spec.task == "regression":
        usable = pd.to_numeric(target, errors="coerce").notna().to_numpy()
    else:
        declared = spec.classes if spec.task == "multiclass" else spec.contract.columns[spec.target].categories
        usable = target.notna().to_numpy()
        if declared:
            usable &= target.astype(str).isin([str(c) for c in declared]).to_numpy()
    labelled = int(usable.sum())
    if labelled == 0:
        return usable, f"no row has a usable `{spec.target}` value"
    if labelled < min_rows:
        return usable, f"only {labelled:,} rows have a `{spec.target}` value (gate.current_batch.min_rows {min_rows})"
    if spec.task == "binary" and np.unique(target_vector(current[usable], spec)).size < 2:
        return usable, f"its labelled rows hold one class of `{spec.target}` only"
    if spec.task == "multiclass":  # one-vs-rest AUC, among the metrics scored, needs every class
        found = np.unique(target_vector(current[usable], spec)).size
        if found < len(spec.classes):
            return usable, f"its labelled rows hold {found} of the {len(spec.classes)} classes of `{spec.target}`"
    return usable, None


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
    """Pure: the candidate, and ``champion`` unless None (``skipped`` says why), scored on the same
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
        content_hash=files.content_hash(rows),
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


def measure(
    spec: DataSpec,
    model: tracking.LoadedModel,
    *,
    train: pd.DataFrame,
    test: pd.DataFrame,
    current: pd.DataFrame,
    candidate_output: Output,
    current_output: Output,
    slices: tuple[SliceScore, ...],
    model_size_bytes: int,
) -> Measurements:
    """The evidence for the optional rules, from the candidate as served (pyfunc).

    Drift statistics look at the model's output (binary: the probability; multiclass: the predicted
    class, one bin per class; regression: the prediction) and at the target (multiclass: the class
    distribution), on the current batch against the training rows. Calibration and Brier score are
    measured for binary tasks only.
    """
    output = 1 if spec.task == "binary" else 0
    bins = max(10, len(spec.classes)) if spec.task == "multiclass" else 10  # a bin per class
    prediction_drift = metrics.population_stability(
        evaluation.predictions(model, train, spec)[output], current_output[output], bins
    )
    labelled = current[current[spec.target].notna()] if spec.target in current.columns else current.iloc[:0]
    if spec.task == "multiclass":  # a class outside data.classes is the validation's to report
        labelled = labelled[labelled[spec.target].astype(str).isin(spec.classes)]
    target_drift = (
        None
        if labelled.empty
        else metrics.population_stability(target_vector(train, spec), target_vector(labelled, spec), bins)
    )
    y = target_vector(test, spec)
    probability = candidate_output[1] if spec.task == "binary" else None
    return Measurements(
        prediction_drift=prediction_drift,
        target_drift=target_drift,
        calibration_error=None if probability is None else metrics.expected_calibration_error(y, probability),
        brier=None if probability is None else metrics.brier(y, probability),
        slices=slices,
        model_size_mb=model_size_bytes / 1e6,
        latency_ms=single_row_latency_ms(model.predict, test.drop(columns=[spec.target])),
    )


def _champion_outputs(
    champion: tracking.ModelVersion | None,
    candidate_version: int,
    frames: dict[str, pd.DataFrame | None],
    spec: DataSpec,
) -> tuple[dict[str, Output | None], dict[str, str | None], str | None]:
    """Production's output on the test set and on the current batch's labelled rows (None: not
    scored), why not for each, and the error that fails the champion rule (it could not score test)."""
    outputs: dict[str, Output | None] = dict.fromkeys(frames)
    if champion is None or champion.version == candidate_version:
        why = (
            f"no '{CHAMPION_ALIAS}' model yet"
            if champion is None
            else f"the candidate is the '{CHAMPION_ALIAS}' version"
        )
        return outputs, dict.fromkeys(frames, why), None
    reasons: dict[str, str | None] = dict.fromkeys(frames)
    model = None
    for name, frame in frames.items():
        if frame is None:
            continue
        try:
            model = tracking.load(champion.uri) if model is None else model
            outputs[name] = evaluation.predictions(model, frame, spec)
        except Exception as error:  # noqa: BLE001 - reported by the checks, not a crash
            where = "this test set" if name == "test" else "the current batch"
            reasons[name] = f"could not score production v{champion.version} on {where}: {error}"
    return outputs, reasons, reasons["test"]


def _importance(plots: str, metric: str, run_id: str) -> dict[str, Any]:
    """What the model card shows: TreeSHAP importance when evaluate computed it (CatBoost, random forest,
    extra trees, HistGradientBoosting on numeric columns; single models only), else permutation; nothing
    when evaluate wrote neither table."""
    shap_table = Path(plots) / f"{evaluation.SHAP_IMPORTANCE}.csv"
    if shap_table.is_file():
        name, method = (
            evaluation.SHAP_IMPORTANCE,
            (
                "mean |SHAP value| (TreeSHAP: CatBoost's own, or the shap package's for the "
                "tree families) per column the estimator sees, on test rows"
            ),
        )
    else:
        name, method = (
            "importance",
            (
                f"permutation, the drop in test {metric} when one input column is shuffled "
                "(ensembles, families without TreeSHAP and multiclass models)"
            ),
        )
    table = Path(plots) / f"{name}.csv"
    if not table.is_file():
        return {"name": None, "method": None, "table": table.as_posix(), "plot": None, "image": None, "top": []}
    top = pd.read_csv(table).head(10)
    return {
        "name": name,
        "method": method,
        "table": table.as_posix(),
        "plot": tracking.run_artifact_uri(run_id, f"evaluate/{name}.png"),
        "image": None,
        "top": [
            {"feature": str(row.feature), "importance": round(float(row.importance), 6)} for row in top.itertuples()
        ],
    }


def run(params: dict[str, Any]) -> dict[str, Any]:
    spec = project.data_spec(params)
    paths = project.paths(params)
    names = project.tracking(params)
    policy = config.load(GatePolicy, "gate", params)
    _check_policy(policy, spec)
    info = files.read_json(paths.train_info)
    validation = files.read_json(paths.validation)
    drift = files.read_json(paths.drift)
    snapshot = files.read_json(paths.raw_meta)["data"]
    candidate_metrics = {k: v for k, v in files.read_json(paths.metrics).items() if k != "rows"}
    train, test, current = (pd.read_parquet(paths.split_file(name)) for name in ("train", "test", "current"))

    candidate = tracking.register(names.registered_model, info["model_uri"], info["run_id"])
    digest = tracking.record_digest(candidate)  # what serve, score and the next gate check before unpickling
    champion = tracking.version_by_alias(names.registered_model, CHAMPION_ALIAS)
    model = tracking.load(paths.model)
    candidate_output = evaluation.predictions(model, test, spec)
    current_output = evaluation.predictions(model, current, spec)
    labelled, unlabelled = usable_labels(current, spec, policy.current_batch.min_rows)
    frames = {"test": test, "current": None if unlabelled else current[labelled]}
    champion_outputs, not_compared, champion_error = _champion_outputs(champion, candidate.version, frames, spec)
    bootstrap = {"slice_columns": policy.slices, "resamples": policy.bootstrap_resamples, "seed": project.seed(params)}
    on_test = compare(spec, test, candidate_output, champion_outputs["test"], skipped=not_compared["test"], **bootstrap)
    on_current = (
        Comparison(rows=int(labelled.sum()), skipped=unlabelled)
        if unlabelled
        else compare(
            spec,
            frames["current"],
            tuple(None if a is None else a[labelled] for a in current_output),
            champion_outputs["current"],
            skipped=not_compared["current"],
            **bootstrap,
        )
    )
    # the production version is the candidate itself: its test metrics are the candidate's
    champion_metrics = on_test.champion or (
        candidate_metrics if champion is not None and champion_error is None else None
    )
    measured = measure(
        spec,
        model,
        train=train,
        test=test,
        current=current,
        candidate_output=candidate_output,
        current_output=current_output,
        slices=on_test.slices,
        model_size_bytes=info["model_size_bytes"],
    )

    decision = decide(
        policy,
        validation_passed=validation["passed"],
        drift=drift,
        metric=spec.metric,
        candidate_score=candidate_metrics[spec.metric],
        champion_score=None if champion_metrics is None else champion_metrics[spec.metric],
        champion_error=champion_error,
        gain_interval=on_test.gain_interval,
        measured=measured,
        current=on_current,
        task=spec.task,
    )
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    commit = tracking.git_commit()
    card_uri = tracking.run_artifact_uri(info["run_id"], f"model_card/{Path(paths.model_card).name}")
    _, dvc_md5 = project.lineage(params)
    current_source = spec.current_path or "held-out rows"
    result = {
        "passed": decision.passed,
        "reasons": decision.reasons,
        "metric": spec.metric,
        "generated_at": now,
        "git_commit": commit,
        "policy": asdict(policy),
        "checks": [c.as_dict() for c in decision.checks],
        "test_rows": len(test),
        "test_hash": files.content_hash(test),
        "drift": drift,
        "measurements": {k: _rounded(v) for k, v in asdict(measured).items() if k != "slices"},
        "gain_interval": None
        if on_test.gain_interval is None
        else {
            "metric": spec.metric,
            "confidence": 0.95,
            "low": on_test.gain_interval[0],
            "high": on_test.gain_interval[1],
        },
        "comparison": {
            "test": on_test.as_dict(spec.metric) | {"source": "test split", "batch_rows": len(test)},
            "current": on_current.as_dict(spec.metric) | {"source": current_source, "batch_rows": len(current)},
        },
        "paths": {"drift_report": paths.drift_report, "gate": paths.gate, "promotion": paths.promotion},
        "model_card": {
            "path": paths.model_card,
            "uri": card_uri,
            "link": os.path.relpath(paths.model_card, Path(paths.promotion).parent),
        },
        "data": {
            "name": spec.name,
            "task": spec.task,
            "target": spec.target,
            "positive_class": spec.positive_class,
            "classes": spec.classes,
            "metric": spec.metric,
            "features": len(spec.features),
            "threshold": info.get("threshold", {}).get("threshold", 0.5),
        },
        "lineage": {
            "source": snapshot["source"],
            "kind": snapshot["kind"],
            "rows": snapshot["rows"],
            "columns": len(snapshot["columns"]),
            "content_hash": snapshot["content_hash"],
            "dvc_md5": dvc_md5,
            "train_rows": len(train),
            "current_rows": len(current),
            "current_source": current_source,
            "trained_at": tracking.run_started_at(info["run_id"]),
        },
        "training": {
            "family": info["family"],
            "params": info["params"],
            "seed": project.seed(params),
            "fit_seconds": info["fit_seconds"],
            "model_size_bytes": info["model_size_bytes"],
        },
        "importance": _importance(paths.plots, spec.metric, info["run_id"]),
        "candidate": {
            "name": candidate.name,
            "version": candidate.version,
            "run_id": info["run_id"],
            "model_uri": info["model_uri"],
            "model_sha256": digest,
            "family": info["family"],
            "metrics": candidate_metrics,
            "run_link": tracking.run_link(names.ui_url, info["run_id"]),
            "version_link": tracking.version_link(names.ui_url, candidate.name, candidate.version),
            "tune_run_link": info.get("tune_run_id") and tracking.run_link(names.ui_url, info["tune_run_id"]),
        },
        "champion": None
        if champion is None
        else {
            "version": champion.version,
            "run_id": champion.run_id,
            "metrics": champion_metrics,
            "error": champion_error,
            "version_link": tracking.version_link(names.ui_url, champion.name, champion.version),
        },
    }
    test_outputs = {f"candidate v{candidate.version}": candidate_output}
    if champion_outputs["test"] is not None:
        test_outputs[f"production v{champion.version}"] = champion_outputs["test"]
    plots_dir = Path(paths.gate_plots)
    _publish(result, plots_dir, spec, paths.plots, target_vector(test, spec), test_outputs)

    for path in (paths.gate, paths.promotion, paths.drift, paths.drift_report, paths.validation):
        tracking.log_artifact(info["run_id"], path, "gate")
    for png in sorted(plots_dir.glob("*.png")):
        tracking.log_artifact(info["run_id"], png, "gate/plots")
    tracking.log_artifact(info["run_id"], paths.model_card, "model_card")
    tags = {
        "mlgate.gate.passed": str(decision.passed).lower(),
        "mlgate.gate.at": now,
        "mlgate.gate.commit": commit,
        "mlgate.gate.metric": spec.metric,
        "mlgate.data_hash": info["data_hash"],
        MODEL_CARD_TAG: card_uri,
        tracking.DIGEST_TAG: digest,
    }
    for check in decision.checks:
        tags[f"mlgate.gate.{check.name}"] = f"{check.as_dict()['verdict']}: {check.detail}"
    tracking.set_version_tags(candidate.name, candidate.version, tags)
    measured_metrics = {f"gate/{k}": v for k, v in result["measurements"].items() if v is not None}
    current_metrics = {f"current/{k}": v for k, v in (on_current.candidate or {}).items()}
    tracking.log(
        info["run_id"],
        metrics={"gate/passed": float(decision.passed), **measured_metrics, **current_metrics},
        tags={"mlgate.registered_version": str(candidate.version)},
    )
    if decision.passed:
        tracking.set_alias(candidate.name, CANDIDATE_ALIAS, candidate.version)
    elif CANDIDATE_ALIAS in candidate.aliases:
        tracking.delete_alias(candidate.name, CANDIDATE_ALIAS)

    console.say(
        STAGE,
        f"{candidate.name} v{candidate.version} ({info['family']}): "
        + ("PASSED → alias 'staging'" if decision.passed else "REJECTED, no alias"),
    )
    for check in decision.checks:
        mark = {"pass": "pass", "fail": "FAIL", "skipped": "skip"}[check.as_dict()["verdict"]]
        console.say("", f"  {mark}  {check.name:<17} {check.detail}")
    console.say(
        "", f"  reports: {paths.promotion} · {paths.gate} · {paths.model_card} · {paths.drift_report} · {plots_dir}/"
    )
    return result


def _publish(
    result: dict[str, Any],
    plots_dir: Path,
    spec: DataSpec,
    evaluate_plots: str,
    y_test: np.ndarray,
    test_outputs: dict[str, Output],
) -> None:
    """Draw the plots, then write them with gate.json, the promotion report and the model card, all
    staged first: a failure while drawing or writing leaves the previous outputs as they were."""
    paths = result["paths"]
    with contextlib.ExitStack() as stack:
        staged = stack.enter_context(files.atomic_path(plots_dir))
        staged.mkdir()
        drawn = draw_plots(staged, result, y_test, test_outputs)
        result["plots"] = [
            {"name": name, "title": title, "path": (plots_dir / f"{name}.png").as_posix()}
            for name, title in drawn.items()
        ]
        importance = result["importance"]
        if importance["name"] is not None:
            table = pd.read_csv(Path(evaluate_plots) / f"{importance['name']}.csv")
            evaluation_plots.png(importance["name"], table, spec, staged)
            importance["image"] = (plots_dir / f"{importance['name']}.png").as_posix()
        for path, text in (
            (paths["promotion"], promotion_markdown(result)),
            (result["model_card"]["path"], model_card.render(result)),
        ):
            stack.enter_context(files.atomic_path(path)).write_text(text)
        files.write_json(paths["gate"], result)  # the last write inside: if it fails, nothing above is moved into place
