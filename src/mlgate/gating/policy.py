"""The gate's policy (params.yaml `gate`) and `decide`: every rule against the evidence, each with its
observed value, its limit and a sentence a reviewer reads. Pure: no tracking, no files."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlgate.errors import StageError
from mlgate.gating import fairness
from mlgate.gating.evidence import LATENCY_CALLS, Comparison, Evidence, SliceRow, SliceScore, rounded
from mlgate.gating.fairness import FairnessEvidence, FairnessRule
from mlgate.gating.shadow import ShadowRule
from mlgate.modelling import metrics
from mlgate.modelling.data import DataSpec
from mlgate.modelling.task import Task, named
from mlgate.records import DriftSummary
from mlgate.registry import CHAMPION_ALIAS


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
    # Clustering tasks: the smallest cluster's share of the test rows, and the stability of the chosen
    # segmentation (the mean adjusted Rand index of its bootstrap refits, measured by tune).
    min_cluster_share: float | None = None
    min_stability: float | None = None
    # Binary tasks: disparities of the decisions between groups of sensitive columns (gating.fairness).
    fairness: FairnessRule = field(default_factory=FairnessRule)
    # Live shadow evidence `mlgate promote` asks for before `production` moves (gating.shadow); not
    # judged here: no candidate has shadow traffic at gate time.
    shadow: ShadowRule = field(default_factory=ShadowRule)


@dataclass(frozen=True)
class ScoredRows:
    """The current-batch rule's evidence: the labelled rows it scored."""

    rows: int
    content_hash: str | None


@dataclass(frozen=True)
class FeatureDrift:
    """The critical-features rule's evidence for one column: its drift score against the limit applied."""

    method: str
    score: float
    limit: float
    drifted: bool


@dataclass(frozen=True)
class JudgedSlice(SliceRow):
    """The slice rule's evidence for one value of a segment column on test, with its verdict."""

    verdict: str


# the evidence each rule that keeps some records; every other rule's is None
EVIDENCE: dict[str, Any] = {
    "current_batch": ScoredRows,
    "critical_features": dict[str, FeatureDrift],
    "slices": tuple[JudgedSlice, ...],
    "fairness": tuple[FairnessEvidence, ...],
}


@dataclass(frozen=True)
class Check:
    """One rule's outcome; ``verdict`` (pass, fail or skipped) follows from ``passed`` and ``skipped``;
    ``evidence`` is of the kind EVIDENCE names for the rule."""

    name: str
    passed: bool
    observed: Any  # what the checks table prints: a number, or a number per column
    limit: Any
    detail: str
    evidence: ScoredRows | dict[str, FeatureDrift] | tuple[JudgedSlice, ...] | tuple[FairnessEvidence, ...] | None = (
        None
    )
    skipped: bool = False  # passed because there was nothing to judge; the detail says why
    verdict: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "verdict", "fail" if not self.passed else "skipped" if self.skipped else "pass")

    @classmethod
    def json_hints(cls, data: dict[str, Any]) -> dict[str, Any]:
        """For typed_json: the evidence's type follows from the rule's name."""
        kind = EVIDENCE.get(data["name"]) if isinstance(data.get("name"), str) else None
        return {"evidence": type(None) if kind is None else kind | None}


@dataclass(frozen=True)
class Decision:
    passed: bool
    checks: tuple[Check, ...]

    @property
    def reasons(self) -> list[str]:
        return [c.detail for c in self.checks if not c.passed]


def decide(policy: GatePolicy, evidence: Evidence) -> Decision:
    """Every rule of the policy against the evidence; passed only if all pass. A rule that judges one
    class's probability (calibration, Brier) is skipped, with the reason, for a task with a probability
    per class (multiclass)."""
    metric, measured, task = evidence.metric, evidence.measured, named(evidence.task)
    checks = []

    def supervised(name: str, limit: Any) -> Check | None:
        """The skipped check of a rule that needs a target, for a task without one; else None."""
        if task.supervised:
            return None
        return Check(
            name, True, None, limit, f"skipped: {name} needs a target; a {task.name} task has none", skipped=True
        )

    if policy.require_validation:
        checks.append(_validation(evidence.validation_passed))
    if policy.require_no_drift:
        checks.append(_drift(evidence.drift))
    if policy.critical_features:
        checks.append(_critical_features(policy.critical_features, evidence.drift))
    if policy.max_prediction_drift is not None:
        what = "prediction drift (PSI, current batch vs training rows)"
        checks.append(_ceiling("prediction_drift", measured.prediction_drift, policy.max_prediction_drift, what))
    if policy.max_target_drift is not None:
        checks.append(
            supervised("target_drift", policy.max_target_drift)
            or _target_drift(measured.target_drift, policy.max_target_drift)
        )
    if policy.metric_floor is not None:
        checks.append(_metric_floor(metric, evidence.candidate_score, policy.metric_floor))
    if policy.max_regression is not None:
        checks.append(_champion(evidence, policy.max_regression))
    if policy.require_significant_gain and evidence.champion_score is not None and evidence.champion_error is None:
        checks.append(_significant_gain(metric, evidence.test.gain_interval))
    if policy.current_batch.max_regression is not None or policy.current_batch.require:
        checks.append(
            supervised("current_batch", policy.current_batch.max_regression)
            or _current_batch(policy.current_batch, metric, evidence.current)
        )
    if policy.max_calibration_error is not None:
        what = "expected calibration error on test (10 equal-width bins)"
        checks.append(
            supervised("calibration", policy.max_calibration_error)
            or _one_probability_only("calibration", policy.max_calibration_error, task)
            or _ceiling("calibration", measured.calibration_error, policy.max_calibration_error, what)
        )
    if policy.max_brier is not None:
        checks.append(
            supervised("brier", policy.max_brier)
            or _one_probability_only("brier", policy.max_brier, task)
            or _ceiling("brier", measured.brier, policy.max_brier, "Brier score on test")
        )
    if policy.slices:
        checks.append(supervised("slices", 0) or _slices(policy.slices, metric, evidence.test.slices))
    if policy.fairness.columns:
        checks.append(supervised("fairness", policy.fairness.limits) or _fairness(policy.fairness, evidence.fairness))
    if policy.min_cluster_share is not None:
        what = "smallest cluster's share of the test rows"
        checks.append(_floor("cluster_share", measured.smallest_cluster_share, policy.min_cluster_share, what))
    if policy.min_stability is not None:
        what = "stability (mean adjusted Rand index of the bootstrap refits)"
        checks.append(_floor("stability", measured.stability_ari, policy.min_stability, what))
    if policy.max_model_size_mb is not None:
        checks.append(_ceiling("model_size", measured.model_size_mb, policy.max_model_size_mb, "model size", " MB", 2))
    if policy.max_latency_ms is not None:
        what = f"median single-row prediction latency ({LATENCY_CALLS} calls)"
        checks.append(_ceiling("latency", measured.latency_ms, policy.max_latency_ms, what, " ms", 1))
    return Decision(all(c.passed for c in checks), tuple(checks))


def check_fits(policy: GatePolicy, spec: DataSpec) -> None:
    """Refuse a policy this dataset cannot be judged by, before anything is registered."""
    if policy.metric != spec.metric:
        raise StageError(
            f"params.yaml: the gate policy is stated in '{policy.metric}' (gate.metric) but dataset "
            f"'{spec.name}' is scored in '{spec.metric}' (data.metric); choose a policy for "
            f"{spec.metric} (e.g. -S gate=<policy>) or set gate.metric and gate.metric_floor"
        )
    judges_probabilities = policy.max_calibration_error is not None or policy.max_brier is not None
    if judges_probabilities and spec.learning_task.supervised and not spec.learning_task.has_probabilities:
        raise StageError(
            f"params.yaml: gate.max_calibration_error and gate.max_brier judge probabilities; dataset "
            f"'{spec.name}' is a {spec.task} task, so set them to null"
        )
    clustering_rules = [key for key in ("min_cluster_share", "min_stability") if getattr(policy, key) is not None]
    if clustering_rules and spec.learning_task.supervised:
        raise StageError(
            f"params.yaml: gate.{' and gate.'.join(clustering_rules)} judge a segmentation; dataset "
            f"'{spec.name}' is a {spec.task} task, so set them to null"
        )
    _check_fairness_fits(policy.fairness, spec)
    for key, columns in (("critical_features", policy.critical_features), ("slices", policy.slices)):
        unknown = sorted(set(columns) - set(spec.features))
        if unknown:
            raise StageError(
                f"params.yaml: gate.{key} names {unknown}, which are not feature columns of "
                f"'{spec.name}' (data.contract.columns)"
            )


def _check_fairness_fits(rule: FairnessRule, spec: DataSpec) -> None:
    if not rule.columns:
        return
    if spec.task != "binary":
        raise StageError(
            f"params.yaml: gate.fairness compares a binary classifier's decisions between groups; dataset "
            f"'{spec.name}' is a {spec.task} task, so leave gate.fairness.sensitive and reported empty"
        )
    columns = spec.contract.columns
    unknown = sorted(c for c in rule.columns if c not in columns or columns[c].dropped or c == spec.target)
    if unknown:
        raise StageError(
            f"params.yaml: gate.fairness names {unknown}, which are not columns the test rows keep "
            f"in '{spec.name}' (data.contract.columns; a column dropped as personal data is gone: declare it "
            f"role: sensitive, which keeps it out of the features and in the data)"
        )
    binned = sorted(
        c for c, edges in rule.columns.items() if edges is not None and columns[c].type not in ("integer", "float")
    )
    if binned:
        raise StageError(f"params.yaml: gate.fairness.sensitive gives bin edges for {binned}, which are not numeric")


def _fairness(rule: FairnessRule, found: tuple[FairnessEvidence, ...]) -> Check:
    """Each sensitive column's disparities against the limits; the evidence is the group tables."""
    marked, failures = fairness.judged(rule, found)
    if not rule.limits or not rule.sensitive:
        return Check(
            "fairness", True, None, None, "reported, not judged: no limit or no judged column", marked, skipped=True
        )
    judged_on = "the whole 95% interval" if rule.judge_on == "interval" else "the estimate"
    summary = "; ".join(
        f"{column.column}: "
        + ", ".join(
            f"{d.name.replace('_', ' ')} {d.candidate:.4f}"
            for d in column.disparities
            if d.limit is not None and d.candidate is not None
        )
        for column in marked
        if column.judged
    )
    detail = (
        "out of limits on " + judged_on + ": " + "; ".join(failures)
        if failures
        else f"within limits on {judged_on}: {summary}"
    )
    return Check("fairness", not failures, len(failures), rule.limits, detail, marked)


def _validation(passed: bool) -> Check:
    detail = "data contract passed" if passed else "data contract violated (see reports/validation.json)"
    return Check("validation", passed, passed, True, detail)


def _drift(drift: DriftSummary) -> Check:
    share, limit = drift.drift_share, drift.max_drift_share
    top = ", ".join(drift.drifted_columns[:5]) or "none"
    detail = f"drift share {share:.2f} {'≤' if share <= limit else '>'} {limit:.2f} (drifted: {top})"
    return Check("drift", share <= limit, round(share, 4), limit, detail)


def _target_drift(observed: float | None, limit: float) -> Check:
    if observed is None:
        return Check("target_drift", True, None, limit, "not measured: the current batch has no labels", skipped=True)
    return _ceiling("target_drift", observed, limit, "target drift (PSI, current batch vs training rows)")


def _metric_floor(metric: str, score: float, floor: float) -> Check:
    ok, relation = _against_floor(metric, score, floor)
    return Check("metric_floor", ok, round(score, 6), floor, f"test {metric} {score:.4f} {relation} floor {floor}")


def _champion(evidence: Evidence, max_regression: float) -> Check:
    """The candidate against production on test: fails when production could not be scored,
    skipped when there is none."""
    if evidence.champion_error is not None:
        return Check("champion", False, None, max_regression, evidence.champion_error)
    if evidence.champion_score is None:
        return Check("champion", True, None, max_regression, f"no '{CHAMPION_ALIAS}' model yet", skipped=True)
    metric, champion = evidence.metric, evidence.champion_score
    # the candidate on the rows production was scored on (it trained on none of them)
    candidate = (evidence.test.candidate or {}).get(metric, evidence.candidate_score)
    gain = metrics.improvement(metric, candidate, champion)
    agreement = evidence.measured.assignment_agreement
    return Check(
        "champion",
        _within(gain, max_regression),
        round(gain, 6),
        -max_regression,
        _versus("test", metric, candidate, champion, evidence.test.gain_interval, max_regression)
        + ("" if agreement is None else f"; the two agree on the test rows' clusters with ARI {agreement:.3f}"),
    )


def _significant_gain(metric: str, interval: tuple[float, float] | None) -> Check:
    low = None if interval is None else interval[0]
    ok = low is not None and low > 0
    detail = (
        "no interval computed"
        if low is None
        else f"95% CI of the {metric} gain over production starts at {low:+.4f} ({'above' if ok else 'not above'} 0)"
    )
    return Check("significant_gain", ok, None if low is None else round(low, 6), 0.0, detail)


def _one_probability_only(name: str, limit: float, task: Task) -> Check | None:
    """The skipped check of a rule on the positive class's probability, for a task with a probability
    per class; else None."""
    if not task.scores_per_class:
        return None
    return Check(
        name,
        True,
        None,
        limit,
        f"skipped: {name} judges one class's probability (binary tasks); a {task.name} model has one per class",
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
    evidence = ScoredRows(batch.rows, batch.content_hash)
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


def _floor(name: str, observed: float | None, limit: float, what: str) -> Check:
    """A measurement that may not fall below its limit; one that could not be measured fails."""
    if observed is None:
        return Check(name, False, None, limit, f"{what}: not measured")
    ok = observed >= limit
    return Check(name, ok, round(observed, 6), limit, f"{what} {observed:.4f} {'≥' if ok else '<'} {limit}")


def _ceiling(name: str, observed: float | None, limit: float, what: str, unit: str = "", digits: int = 4) -> Check:
    """A measurement that may not exceed its limit; one that could not be measured fails."""
    if observed is None:
        return Check(name, False, None, limit, f"{what}: not measured")
    ok = observed <= limit
    return Check(
        name, ok, round(observed, 6), limit, f"{what} {observed:.{digits}f}{unit} {'≤' if ok else '>'} {limit}{unit}"
    )


def _critical_features(limits: dict[str, float | None], drift: DriftSummary) -> Check:
    """Each named column against its own threshold in the drift report. A distance (Wasserstein,
    Jensen-Shannon) drifts above its threshold; a p-value (the tests Evidently picks when the
    training rows number 1,000 or fewer) below it."""
    evidence, failures = {}, []
    for column, limit in limits.items():
        found = drift.columns.get(column)
        if found is None:
            failures.append(f"{column}: not in the drift report")
            continue
        threshold = found.threshold if limit is None else limit
        drifted = found.score < threshold if found.is_p_value else found.score > threshold
        evidence[column] = FeatureDrift(found.method, round(found.score, 6), threshold, drifted)
        if drifted:
            relation = "<" if found.is_p_value else ">"
            failures.append(f"{column} {found.score:.4f} {relation} {threshold} ({found.method})")
    observed = {column: e.score for column, e in evidence.items()}
    applied = {column: evidence[column].limit if column in evidence else given for column, given in limits.items()}
    detail = (
        "critical feature drifted: " + "; ".join(failures)
        if failures
        else "no critical feature drifted: "
        + ", ".join(f"{c} {e.score:.4f} (limit {e.limit})" for c, e in evidence.items())
    )
    return Check("critical_features", not failures, observed, applied, detail, evidence)


def _slices(limits: dict[str, SliceLimits], metric: str, scores: tuple[SliceScore, ...]) -> Check:
    """Each value of each segment column judged on its own, when it has enough test rows: against
    the floor, and against production on the same rows when there is a production model. The
    evidence is a row per value (the report's slice rows, with a verdict)."""
    table, failures = [], [f"{column}: not measured" for column in limits if column not in {s.column for s in scores}]
    for score in scores:
        rule = limits[score.column]
        gain = score.gain(metric)
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
        table.append(
            JudgedSlice(
                score.column,
                score.value,
                score.rows,
                rounded(score.candidate),
                rounded(score.champion),
                rounded(gain),
                verdict,
            )
        )
    judged = sum(row.verdict in ("pass", "fail") for row in table)
    detail = (
        "slice(s) out of limits: " + "; ".join(failures)
        if failures
        else f"{judged} of {len(table)} slices judged, all within limits"
    )
    return Check("slices", not failures, len(failures), 0, detail, tuple(table))
