"""What one stage hands the next, as typed records: tune's recipe, train's record, drift's summary.

Each record is written by ``to_json`` and read back by ``from_json``, and nothing else builds the files:
the bytes stay exactly what the stages wrote before (key order, two-space indent, Python float
repr, a final newline), so best_params.json and drift.json, which later stages depend on, are
byte-stable for the same inputs. ``from_json`` takes a path or an already parsed mapping, and a
missing or mistyped field is an error naming the file and the field.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, TypeVar

from mlgate.files import dumps
from mlgate.typed_json import RecordError, holding, read

R = TypeVar("R", bound="JsonRecord")


class JsonRecord:
    """A frozen dataclass written as its fields in declaration order and read back by type hint."""

    def to_json(self) -> str:
        return dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls: type[R], source: str | Path | dict[str, Any]) -> R:
        return read(cls, source)


@dataclasses.dataclass(frozen=True)
class BestTrial:
    """The single best trial of the search (what the finished model may have outgrown)."""

    number: int
    family: str
    params: dict[str, Any]
    cv_score: float


@dataclasses.dataclass(frozen=True)
class Member:
    """One model of the final recipe: the trial it came from, and the params `train` refits it with; or,
    ``refit`` false, the model that trial fitted on the holdout's training rows (a screened trial: on its
    share of them), which tune keeps at paths.kept_models and train uses as it is (``finish.refit``)."""

    trial: int
    family: str
    params: dict[str, Any]
    weight: float
    refit: bool = True


@dataclasses.dataclass(frozen=True)
class Finish:
    """How the trials become one model: the ensemble method and its combiner, the calibration map and
    the decision threshold, all chosen on validation predictions. ``combiner`` and ``calibration`` are
    fitted parameters that ``ensemble.FinalModel`` reads as they are."""

    method: str
    combiner: dict[str, Any] | None
    cv_score: float
    scores: dict[str, float]
    members: tuple[Member, ...]
    calibration: dict[str, Any] | None
    calibration_log_loss: dict[str, float]
    threshold: dict[str, Any] = holding(objective=str, threshold=float)  # with a chosen one, its value there and at 0.5
    skipped: dict[str, str] | None = None  # multiclass: the binary-only steps left out, each with why

    @property
    def calibration_method(self) -> str:
        return (self.calibration or {}).get("method", "none")

    def describe(self) -> str:
        """`catboost`, or `caruana(catboost×2, linear)`: what the final model is, in a line."""
        if self.method == "single":
            return self.members[0].family
        counts: dict[str, int] = {}
        for member in self.members:
            counts[member.family] = counts.get(member.family, 0) + 1
        return f"{self.method}(" + ", ".join(f + (f"×{n}" if n > 1 else "") for f, n in counts.items()) + ")"

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "combiner": self.combiner,
            "cv_score": self.cv_score,
            "scores": self.scores,
            "members": [dataclasses.asdict(m) for m in self.members],
            "calibration": self.calibration,
            "calibration_log_loss": self.calibration_log_loss,
            "threshold": self.threshold,
        } | ({"skipped": self.skipped} if self.skipped is not None else {})


@dataclasses.dataclass(frozen=True)
class TunedRecipe(JsonRecord):
    """reports/best_params.json: what `tune` chose and `train` refits. It holds only what the seed and the
    data decide (no run id, no clock reading under search.budget trials), so the same search writes
    the same bytes and `train` reruns only when the recipe changed."""

    family: str  # Finish.describe(): the final model in a line
    params: dict[str, Any]  # a single model's params; {} for an ensemble
    metric: str
    cv_score: float
    cv_std: float
    trial: int
    best_trial: BestTrial
    finish: Finish
    trials: dict[str, int]  # complete, pruned, failed
    seed: int
    cv_folds: int
    validation: dict[str, Any]  # method cv with folds, or holdout with share
    study: dict[str, Any]  # name, screened_trials, and warm_start (the production version, configurations queued)
    budget: dict[str, Any] = holding(reproducible=bool)  # kind and size, reproducible, and why not

    def to_json(self) -> str:
        return dumps(dataclasses.asdict(self) | {"finish": self.finish.as_dict()})

    @property
    def reproducible(self) -> bool:
        return self.budget["reproducible"]


@dataclasses.dataclass(frozen=True)
class SegmentationRecipe(JsonRecord):
    """reports/best_params.json of a clustering task: the segmentation `tune` chose and `train` refits,
    its label-free scores on train and its stability. Like ``TunedRecipe``, only what the seed and the
    data decide (under search.budget trials), so the same search writes the same bytes."""

    family: str
    params: dict[str, Any]
    metric: str
    score: float  # ``metric`` of the chosen segmentation on train
    trial: int
    select: str  # consensus (the three scores' vote) or metric
    scores: dict[
        str, float | None
    ]  # silhouette, davies_bouldin, calinski_harabasz, n_clusters, noise_share, smallest_share
    stability: dict[str, Any] | None  # mean, std, min ARI over `resamples` bootstrap refits; None: not measured
    trials: dict[str, int]  # complete, pruned, failed
    seed: int
    rows: int
    budget: dict[str, Any] = holding(reproducible=bool)  # kind and size, reproducible, and why not

    @property
    def reproducible(self) -> bool:
        return self.budget["reproducible"]


@dataclasses.dataclass(frozen=True)
class TrainingRecord(JsonRecord):
    """paths.train_info: what the model at paths.model is and what it was refit on. Byte-stable for
    the same recipe and data (no run id, no clock reading), like the model itself, so evaluate, drift
    and gate, which depend on both, rerun only when the model changed. Where `train` tracked it is
    its ``TrainingRun``."""

    family: str
    params: dict[str, Any]
    method: str
    members: tuple[dict[str, Any], ...]  # family, weight, trial and refit of each member
    calibration: str
    threshold: dict[str, Any] = holding(objective=str, threshold=float)
    train_rows: int
    model_size_bytes: int
    model_sha256: str  # tracking.artifact_digest of paths.model: what a TrainingRun must name
    data_hash: str


@dataclasses.dataclass(frozen=True)
class TrainingRun(JsonRecord):
    """paths.train_run: the MLflow run that logged the model at paths.model, and what fitting it took.
    New with every `train` run, so no stage declares it a DVC dependency: a stage reads it for the
    run to record on, after checking it names the model it judges (``model_sha256``)."""

    run_id: str
    tune_run_id: str | None  # the tune run that wrote the recipe, when the tracking store still has it
    experiment: str
    model_uri: str
    model_id: str
    model_sha256: str
    fit_seconds: float
    tracking_s: float = 0.0  # what the stage waited on MLflow after the refit: its run, logging the model
    save_s: float = 0.0  # writing the model's files and checking that they load and predict as fitted

    @classmethod
    def of(cls, training: TrainingRecord, source: str | Path) -> TrainingRun:
        """The run ``source`` records, refused unless it logged the model ``training`` describes."""
        run = cls.from_json(source)
        if run.model_sha256 != training.model_sha256:
            raise RecordError(
                f"{source}: names MLflow run {run.run_id}, which logged another model "
                f"(sha256 {run.model_sha256[:12]}) than the one train.json describes "
                f"(sha256 {training.model_sha256[:12]}); rerun training with `dvc repro --force train`"
            )
        return run


@dataclasses.dataclass(frozen=True)
class ColumnDrift:
    """One column's drift test: the method (Evidently's name), its score and threshold, the verdict."""

    method: str
    score: float
    threshold: float
    drifted: bool

    @property
    def is_p_value(self) -> bool:
        """Whether the method reports a p-value (drifted below its threshold) rather than a distance."""
        return "p_value" in self.method

    @property
    def severity(self) -> float:
        """The score against the threshold: 1 at the threshold, above 1 drifted (a distance grows with
        drift, a p-value shrinks)."""
        if self.is_p_value:
            return self.threshold / max(self.score, 1e-300)
        return self.score / max(self.threshold, 1e-12)


@dataclasses.dataclass(frozen=True)
class DriftSummary(JsonRecord):
    """paths.drift: how far the current batch moved from the training data, per column and in all; the
    only drift output the gate reads. Byte-stable for the same splits once ``rounded``."""

    reference_rows: int
    current_rows: int
    columns_checked: int
    drifted_count: int
    drift_share: float
    max_drift_share: float
    passed: bool
    drifted_columns: tuple[str, ...]  # most drifted first
    columns: dict[str, ColumnDrift]
    engine: str

    def most_drifted(self, top: int) -> list[tuple[str, ColumnDrift]]:
        """The ``top`` columns by severity, most drifted first: what the reports show."""
        return sorted(self.columns.items(), key=lambda kv: kv[1].severity, reverse=True)[:top]

    def rounded(self, digits: int) -> DriftSummary:
        """Each column's score to ``digits`` significant digits."""
        columns = {
            name: dataclasses.replace(column, score=float(f"{column.score:.{digits}g}"))
            for name, column in self.columns.items()
        }
        return dataclasses.replace(self, columns=columns)
