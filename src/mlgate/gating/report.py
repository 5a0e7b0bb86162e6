"""The gate's result as typed, frozen records: what reports/gate.json holds, and what the promotion
report, the model card and the plots render. Each field is named and ordered as its JSON key, so
`to_json` is the records as dicts and `from_json` reads them back; the values are as written
(scores rounded to six decimals where the JSON rounds them)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from mlgate import typed_json
from mlgate.gating.evidence import Comparison, Measurements, SliceRow, rounded
from mlgate.gating.fairness import FairnessEvidence
from mlgate.gating.policy import Check, GatePolicy, JudgedSlice
from mlgate.gating.shadow import ShadowRule
from mlgate.modelling.task import Task, for_spec
from mlgate.records import DriftSummary

CONFIDENCE = 0.95  # of every bootstrap interval


@dataclass(frozen=True)
class Interval:
    confidence: float
    low: float
    high: float

    @classmethod
    def of(cls, pair: tuple[float, float] | None) -> Interval | None:
        return None if pair is None else cls(CONFIDENCE, round(pair[0], 6), round(pair[1], 6))


@dataclass(frozen=True)
class GainInterval:
    """The paired 95% interval of the gate metric's gain over production on test (unrounded)."""

    metric: str
    confidence: float
    low: float
    high: float

    @classmethod
    def of(cls, metric: str, pair: tuple[float, float] | None) -> GainInterval | None:
        return None if pair is None else cls(metric, CONFIDENCE, pair[0], pair[1])


@dataclass(frozen=True)
class Scores:
    """One model's metrics on a batch, and the gate metric's 95% bootstrap interval."""

    metrics: dict[str, float]
    interval: Interval | None


@dataclass(frozen=True)
class BatchComparison:
    """Production vs the candidate on one labelled batch (`skipped`: why a side is missing)."""

    metric: str
    rows: int
    content_hash: str | None
    skipped: str | None
    candidate: Scores | None
    champion: Scores | None
    gain: float | None
    gain_interval: Interval | None
    slices: tuple[SliceRow, ...]
    source: str  # where the batch came from: the test split, a file, or held-out rows
    batch_rows: int  # all the batch's rows, labelled or not
    champion_trained_rows: int | None = 0  # left out: production trained on them (None: not on record)

    @classmethod
    def of(cls, comparison: Comparison, metric: str, source: str, batch_rows: int) -> BatchComparison:
        def side(scores: dict[str, float] | None, interval: tuple[float, float] | None) -> Scores | None:
            return (
                None if scores is None else Scores({k: round(v, 6) for k, v in scores.items()}, Interval.of(interval))
            )

        return cls(
            metric=metric,
            rows=comparison.rows,
            content_hash=comparison.content_hash,
            skipped=comparison.skipped,
            candidate=side(comparison.candidate, comparison.candidate_interval),
            champion=side(comparison.champion, comparison.champion_interval),
            gain=rounded(comparison.gain(metric)),
            gain_interval=Interval.of(comparison.gain_interval),
            slices=tuple(
                SliceRow(s.column, s.value, s.rows, rounded(s.candidate), rounded(s.champion), rounded(s.gain(metric)))
                for s in comparison.slices
            ),
            source=source,
            batch_rows=batch_rows,
            champion_trained_rows=comparison.champion_trained_rows,
        )


@dataclass(frozen=True)
class Comparisons:
    test: BatchComparison
    current: BatchComparison


@dataclass(frozen=True)
class ReportPaths:
    drift_report: str
    gate: str
    promotion: str


@dataclass(frozen=True)
class ModelCardLink:
    path: str
    uri: str  # the card as an artifact of the train run
    link: str  # relative to the promotion report


@dataclass(frozen=True)
class PersonalColumn:
    """A column the contract declares personal (data.contract.columns `pii`) and what is done with it."""

    column: str
    kind: str  # direct | quasi
    handling: str  # drop | hash | keep
    reason: str | None = None  # handling: keep


@dataclass(frozen=True)
class DataSummary:
    name: str
    task: str
    target: str | None  # None: a task without one (clustering)
    positive_class: str | None
    classes: list[str] | None
    metric: str
    features: int
    threshold: float  # binary: the probability from which the label is the positive class
    personal: tuple[PersonalColumn, ...] = ()
    pii_key_env: str | None = None  # the variable holding the key of hashed columns, when any is hashed

    @property
    def learning_task(self) -> Task:
        """What differs by task type, with the dataset's class labels."""
        return for_spec(self)


@dataclass(frozen=True)
class Lineage:
    source: str
    kind: str
    rows: int
    columns: int
    content_hash: str
    dvc_md5: str | None
    train_rows: int
    current_rows: int
    current_source: str
    trained_at: str


@dataclass(frozen=True)
class Training:
    family: str
    params: dict[str, Any]
    seed: int
    fit_seconds: float
    model_size_bytes: int


@dataclass(frozen=True)
class FeatureImportance:
    feature: str
    importance: float


@dataclass(frozen=True)
class Importance:
    """Evaluate's importance table (None fields: it wrote none) and where its plot is."""

    name: str | None
    method: str | None
    table: str
    plot: str | None  # on the train run
    image: str | None  # beside the reports, once published
    top: tuple[FeatureImportance, ...]


@dataclass(frozen=True)
class CandidateVersion:
    name: str
    version: int
    run_id: str
    model_uri: str
    model_sha256: str
    family: str
    metrics: dict[str, float]  # metrics/test.json
    run_link: str
    version_link: str
    tune_run_link: str | None


@dataclass(frozen=True)
class ChampionVersion:
    """The version under the production alias; ``metrics`` None and ``error`` set when it could not
    be scored on test."""

    version: int
    run_id: str | None
    metrics: dict[str, float] | None
    error: str | None
    version_link: str


@dataclass(frozen=True)
class Plot:
    name: str
    title: str
    path: str


@dataclass(frozen=True)
class ClusterProfile:
    """A clustering model's clusters on test, as evaluate profiled them (plots/cluster_profile.csv: rows,
    share, numeric means, top categories per cluster), its stability as tune measured it, and the
    projection and silhouette plots beside the reports once published."""

    table: str
    rows: tuple[dict[str, Any], ...]
    stability: dict[str, Any] | None  # mean, std, min ARI and resamples; None: not measured
    images: tuple[Plot, ...] = ()


@dataclass(frozen=True)
class GateReport:
    passed: bool
    reasons: tuple[str, ...]
    metric: str
    generated_at: str
    git_commit: str
    policy: GatePolicy
    checks: tuple[Check, ...]
    test_rows: int
    test_hash: str
    drift: DriftSummary  # reports/drift.json as the drift stage wrote it
    measurements: Measurements  # rounded to six decimals
    gain_interval: GainInterval | None
    comparison: Comparisons
    paths: ReportPaths
    model_card: ModelCardLink
    data: DataSummary
    lineage: Lineage
    training: Training
    importance: Importance
    candidate: CandidateVersion
    champion: ChampionVersion | None
    plots: tuple[Plot, ...] = ()
    clusters: ClusterProfile | None = None  # a clustering task's

    def check(self, name: str) -> Check | None:
        return next((c for c in self.checks if c.name == name), None)

    def judged_slices(self) -> tuple[JudgedSlice, ...] | None:
        """The slice rule's rows on test, with their verdicts; None without a slice rule."""
        check = self.check("slices")
        return None if check is None else check.evidence

    def judged_fairness(self) -> tuple[FairnessEvidence, ...] | None:
        """The fairness rule's group tables and disparities on test; None without the rule."""
        check = self.check("fairness")
        return None if check is None else check.evidence

    def to_json(self) -> dict[str, Any]:
        payload = dataclasses.asdict(self)
        if self.policy.shadow == ShadowRule():
            # promote's rule, not the gate's: written only when set, so a gate.json without it reads back as written
            del payload["policy"]["shadow"]
        return payload

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> GateReport:
        return typed_json.read(cls, payload)
