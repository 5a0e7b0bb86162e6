"""Live shadow evidence (params.yaml `gate.shadow`): the `staging` version scoring production's traffic
off the request path (`mlgate serve --shadow staging`), compared with what production answered.

``compare`` pairs the served and the shadow rows of the prediction log on (request_id, row) and
measures how often the two agree and, where labels have arrived, each one's live metric with a 95%
paired-bootstrap interval of the shadow's improvement (``ShadowEvidence``; `mlgate monitor` measures
it and tags the staging version with it). ``judge`` reads that evidence under a ``ShadowRule``: the
reasons `production` must not move to the shadow version yet (`mlgate promote` refuses on them).
The gate stage itself does not judge the rule: no candidate has shadow traffic at gate time.
Pure: no tracking, no files.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlgate import typed_json
from mlgate.errors import StageError
from mlgate.modelling import metrics
from mlgate.modelling.task import TASKS, Task

EVIDENCE_TAG = "mlgate.shadow.evidence"  # on the shadow (staging) version: ShadowEvidence as compact JSON
KEYS = ["request_id", "row"]  # a served row and the shadow row that scored the same input
OUTPUT_PREFIX = "output_"  # the prediction log's outputs (services.prediction_log.OUTPUT_PREFIX)
CONFIDENCE = 0.95
# Regression: two predictions agree when they differ by at most this share of the served one.
REGRESSION_AGREEMENT_TOLERANCE = 0.05
_SHADOW = "shadow_"  # the shadow's outputs once paired: shadow_output_*


@dataclass(frozen=True)
class ShadowRule:
    """What `mlgate promote` asks of live shadow evidence before `production` moves (``required``).

    ``max_metric_drop``: the lower end of the 95% paired interval of the shadow's improvement over
    production (in the metric's direction) may not fall below its negative; 0 asks for no sign of a
    loss. ``min_labelled_rows`` 0: labels are not required (the metric is judged when it was measured).
    Evidence measured more than ``max_age_hours`` before the promotion is stale."""

    required: bool = False
    min_rows: int = 500  # paired rows: a served row and its shadow row
    min_labelled_rows: int = 200  # paired rows with a label (supervised tasks)
    min_agreement: float | None = None  # share of paired rows whose predictions agree
    max_metric_drop: float = 0.0
    max_age_hours: float = 72.0

    def __post_init__(self) -> None:
        if isinstance(self.min_rows, bool) or not isinstance(self.min_rows, int) or self.min_rows < 1:
            raise ValueError(f"gate.shadow.min_rows must be a whole number of at least 1, got {self.min_rows!r}")
        labelled = self.min_labelled_rows
        if isinstance(labelled, bool) or not isinstance(labelled, int) or labelled < 0:
            raise ValueError(f"gate.shadow.min_labelled_rows must be a whole number of at least 0, got {labelled!r}")
        if self.min_agreement is not None and not 0.0 <= self.min_agreement <= 1.0:
            raise ValueError(
                f"gate.shadow.min_agreement must be a share between 0 and 1 (or null), got {self.min_agreement!r}"
            )
        if not self.max_metric_drop >= 0.0:
            raise ValueError(f"gate.shadow.max_metric_drop must be 0 or more, got {self.max_metric_drop!r}")
        if not self.max_age_hours > 0.0:
            raise ValueError(f"gate.shadow.max_age_hours must be more than 0, got {self.max_age_hours!r}")

    def describe(self) -> str:
        """The limits in one clause, for the promotion report and shadow.md."""
        agreement = "" if self.min_agreement is None else f", agreement at least {self.min_agreement:g}"
        labels = (
            "labels not required"
            if self.min_labelled_rows == 0
            else f"at least {self.min_labelled_rows:,} of them labelled"
        )
        return (
            f"at least {self.min_rows:,} paired rows ({labels}){agreement}, the 95% paired CI of the metric "
            f"change starting at or above {-self.max_metric_drop:+g}, measured within the last "
            f"{self.max_age_hours:g} h against the version that holds `production` at promotion"
        )


@dataclass(frozen=True)
class ShadowEvidence:
    """The shadow version against the served (production) version on the window's paired rows."""

    shadow_version: int
    served_version: int  # the production version it was compared against
    paired_rows: int
    # share of paired rows whose predictions agree (classification: the same label; regression: within
    # REGRESSION_AGREEMENT_TOLERANCE of the served prediction); None for clustering, whose cluster
    # numbers are not comparable across models
    agreement: float | None
    labelled_rows: int
    metric: str
    served_metric: float | None  # None: no labelled rows, or the metric is undefined on them
    shadow_metric: float | None
    change: float | None  # metrics.improvement(shadow, served): positive, the shadow is better
    interval: tuple[float, float] | None  # 95% paired-bootstrap interval of the change
    window_from: str
    window_to: str
    generated_at: str  # when it was measured (ISO 8601, with the time zone)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> ShadowEvidence:
        return typed_json.read(cls, payload)

    def to_tag(self) -> str:
        """Compact JSON, for the version tag EVIDENCE_TAG."""
        return json.dumps(self.to_json(), separators=(",", ":"))

    @classmethod
    def from_tag(cls, text: str) -> ShadowEvidence:
        """The evidence a version tag holds; a malformed tag is a StageError naming the tag."""
        try:
            payload = json.loads(text)
            if not isinstance(payload, dict):
                raise ValueError("not a JSON object")
            return cls.from_json(payload)
        except (ValueError, StageError) as error:
            raise StageError(
                f"the tag {EVIDENCE_TAG} is not shadow evidence mlgate wrote ({error}); run `mlgate monitor` "
                f"on shadow traffic to measure it again"
            ) from None


def compare(
    served: pd.DataFrame,
    shadow: pd.DataFrame,
    labels: pd.DataFrame | None,
    task: Task,
    metric: str,
    target: str | None,
    *,
    served_version: int,
    shadow_version: int,
    now: dt.datetime,
    seed: int = 0,
    resamples: int = 1000,
    prefix: str = OUTPUT_PREFIX,
) -> ShadowEvidence | None:
    """The shadow's outputs against the served ones on the rows both scored (paired on request_id and
    row); None when no row pairs. ``labels`` (request_id, row and ``target``) give each one's live
    metric and the 95% paired-bootstrap interval of the change; resamples where the metric is
    undefined (AUC on one class) are left out for both alike, as ``metrics.bootstrap_scores`` does."""
    columns = [f"{prefix}{c}" for c in task.output_columns()]
    stamped = ["timestamp"] if "timestamp" in served.columns else []
    left = served[KEYS + stamped + columns].drop_duplicates(KEYS, keep="last")
    right = shadow[KEYS + columns].drop_duplicates(KEYS, keep="last").rename(columns=lambda c: _shadowed(c, columns))
    paired = left.merge(right, on=KEYS, how="inner")
    if paired.empty:
        return None
    agreement = _agreement(task, paired, prefix)
    labelled, served_value, shadow_value, change, interval = 0, None, None, None, None
    if labels is not None and task.supervised and target is not None:
        joined = paired.merge(labels[KEYS + [target]].drop_duplicates(KEYS, keep="last"), on=KEYS, how="inner")
        joined = joined[joined[target].notna()]
        joined = joined[task.scorable(joined[target])]  # a label the models were never taught is not scored
        labelled = len(joined)
        if labelled:
            served_value, shadow_value, interval = _scores(joined, task, metric, target, prefix, seed, resamples)
            if served_value is not None and shadow_value is not None:
                change = metrics.improvement(metric, shadow_value, served_value)
    window = pd.to_datetime(paired["timestamp"], utc=True) if stamped else None
    return ShadowEvidence(
        shadow_version=int(shadow_version),
        served_version=int(served_version),
        paired_rows=len(paired),
        agreement=_rounded(agreement),
        labelled_rows=labelled,
        metric=metric,
        served_metric=_rounded(served_value),
        shadow_metric=_rounded(shadow_value),
        change=_rounded(change),
        interval=None if interval is None else (round(interval[0], 6), round(interval[1], 6)),
        window_from="" if window is None else window.min().isoformat(),
        window_to="" if window is None else window.max().isoformat(),
        generated_at=now.isoformat(timespec="seconds"),
    )


def _shadowed(column: str, outputs: list[str]) -> str:
    return f"{_SHADOW}{column}" if column in outputs else column


def _agreement(task: Task, paired: pd.DataFrame, prefix: str) -> float | None:
    if not task.supervised:
        return None  # cluster numbers are each model's own: cluster 0 of one is not cluster 0 of the other
    served = task.read_outputs(paired, prefix=prefix)[0]
    shadow = task.read_outputs(paired, prefix=f"{_SHADOW}{prefix}")[0]
    if task.is_classification:
        return float(np.mean(served == shadow))
    served, shadow = np.asarray(served, float), np.asarray(shadow, float)
    return float(np.mean(np.abs(shadow - served) <= REGRESSION_AGREEMENT_TOLERANCE * np.abs(served)))


def _scores(
    joined: pd.DataFrame, task: Task, metric: str, target: str, prefix: str, seed: int, resamples: int
) -> tuple[float | None, float | None, tuple[float, float] | None]:
    """(served metric, shadow metric, interval of the change) on the labelled paired rows; None where
    the metric is undefined (every resample, or the rows themselves)."""
    y = task.encode(joined[target])
    uses_probability = metrics.METRICS[metric].uses_probability
    served_out = task.read_outputs(joined, prefix=prefix)
    shadow_out = task.read_outputs(joined, prefix=f"{_SHADOW}{prefix}")
    served_scored = served_out[1] if uses_probability else served_out[0]
    shadow_scored = shadow_out[1] if uses_probability else shadow_out[0]
    if metrics.undefined(metric, y, served_scored):
        return None, None, None
    served_value = metrics.score(metric, y, *served_out)
    shadow_value = metrics.score(metric, y, *shadow_out)
    draws = metrics.bootstrap_scores(metric, y, shadow_scored, served_scored, resamples=resamples, seed=seed)
    if len(draws) == 0:
        return served_value, shadow_value, None
    interval = metrics.percentile_interval(metrics.improvement(metric, draws[:, 0], draws[:, 1]), CONFIDENCE)
    return served_value, shadow_value, interval


def _rounded(value: float | None) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), 6)


def _supervised(metric: str) -> bool:
    """Whether the metric is a supervised task's (labels can arrive), not a clustering one's."""
    return any(metric in task.metrics and task.supervised for task in TASKS.values())


def judge(
    rule: ShadowRule,
    evidence: ShadowEvidence | None,
    champion_version: int | None,
    now: dt.datetime,
    *,
    candidate_version: int | None = None,
) -> list[str]:
    """The reasons `production` may not move to the shadow version yet under ``rule`` (empty: go).

    ``champion_version``: the version holding `production` now. None (nothing holds it): no shadow
    comparison can exist, so the rule does not block the first promotion. ``candidate_version``, when
    given, is the version about to be promoted, which the evidence must be about."""
    if champion_version is None:
        return []
    if evidence is None:
        return [
            f"no live shadow evidence: the candidate has not scored production's traffic beside v{champion_version} "
            f"(serve with `mlgate serve --shadow staging`, then run `mlgate monitor`)"
        ]
    reasons = []
    if candidate_version is not None and evidence.shadow_version != candidate_version:
        reasons.append(
            f"the shadow evidence is about v{evidence.shadow_version}, not v{candidate_version}, the version to promote"
        )
    if evidence.served_version != champion_version:
        reasons.append(
            f"the shadow evidence compares v{evidence.shadow_version} with v{evidence.served_version}, but "
            f"production now holds v{champion_version}: measure it again against the current production version"
        )
    if evidence.paired_rows < rule.min_rows:
        reasons.append(
            f"{evidence.paired_rows:,} paired shadow rows < {rule.min_rows:,} required (gate.shadow.min_rows)"
        )
    if rule.min_agreement is not None:
        if evidence.agreement is None:
            reasons.append(
                "agreement is not measured for a clustering model (cluster numbers are not comparable across "
                "models); set gate.shadow.min_agreement to null"
            )
        elif evidence.agreement < rule.min_agreement:
            reasons.append(
                f"the shadow agrees with production on {evidence.agreement:.1%} of paired rows < "
                f"{rule.min_agreement:.1%} required (gate.shadow.min_agreement)"
            )
    if _supervised(evidence.metric):
        reasons += _metric_reasons(rule, evidence)
    reasons += _age_reasons(rule, evidence, now)
    return reasons


def _metric_reasons(rule: ShadowRule, evidence: ShadowEvidence) -> list[str]:
    reasons = []
    if evidence.labelled_rows < rule.min_labelled_rows:
        reasons.append(
            f"{evidence.labelled_rows:,} labelled paired rows < {rule.min_labelled_rows:,} required "
            f"(gate.shadow.min_labelled_rows)"
        )
    if evidence.interval is None:
        if rule.min_labelled_rows > 0 and evidence.labelled_rows >= rule.min_labelled_rows:
            reasons.append(
                f"the live {evidence.metric} change could not be measured on the {evidence.labelled_rows:,} "
                f"labelled rows (undefined on them, as AUC on one class)"
            )
        return reasons
    low, high = evidence.interval
    if low < -rule.max_metric_drop - 1e-12:
        served = "n/a" if evidence.served_metric is None else f"{evidence.served_metric:.4f}"
        shadow = "n/a" if evidence.shadow_metric is None else f"{evidence.shadow_metric:.4f}"
        change = "n/a" if evidence.change is None else f"{evidence.change:+.4f}"
        reasons.append(
            f"live {evidence.metric}: shadow {shadow} vs production {served} (change {change}, 95% CI "
            f"[{low:+.4f}, {high:+.4f}]); the CI starts below {-rule.max_metric_drop:+g} "
            f"(gate.shadow.max_metric_drop {rule.max_metric_drop:g})"
        )
    return reasons


def _age_reasons(rule: ShadowRule, evidence: ShadowEvidence, now: dt.datetime) -> list[str]:
    try:
        measured = dt.datetime.fromisoformat(evidence.generated_at)
    except ValueError:
        return [f"the shadow evidence's time '{evidence.generated_at}' is unreadable; measure it again"]
    if measured.tzinfo is None:
        measured = measured.replace(tzinfo=dt.UTC)
    age = (now - measured).total_seconds() / 3600
    if age > rule.max_age_hours:
        return [
            f"the shadow evidence is {age:.1f} h old (measured {evidence.generated_at}) > {rule.max_age_hours:g} h "
            f"allowed (gate.shadow.max_age_hours): run `mlgate monitor` again"
        ]
    return []


def verdict_lines(reasons: list[str]) -> list[str]:
    """The verdict as Markdown lines: go, or each reason to wait."""
    if not reasons:
        return ["**Verdict: ready.** The live evidence meets `gate.shadow`; `production` may move."]
    return ["**Verdict: wait.** `production` may not move yet:", "", *(f"- {reason}" for reason in reasons)]
