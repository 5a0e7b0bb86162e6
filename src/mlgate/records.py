"""What one stage hands the next, as typed records: tune's recipe, train's record, drift's summary.

Each record is written by ``to_json`` and read back by ``from_json``, and nothing else builds the files:
the bytes stay exactly what the stages wrote before (key order, two-space indent, Python float
repr, a final newline), so best_params.json and drift.json, which later stages depend on, are
byte-stable for the same inputs. ``from_json`` takes a path or an already parsed mapping, and a
missing or mistyped field is an error naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, TypeVar

from mlgate.errors import StageError

R = TypeVar("R")


class RecordError(StageError):
    """A record file lacks a field or holds the wrong kind of value; the message names both."""


def _dumps(payload: dict[str, Any]) -> str:
    return json.dumps(payload, indent=2, sort_keys=False, default=_plain) + "\n"


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class _Reader:
    """Typed reads from one JSON object, each failure naming ``source`` and the dotted field."""

    def __init__(self, data: Any, source: str, where: str = ""):
        if not isinstance(data, dict):
            raise RecordError(f"{source}: {where or 'the file'} must be a JSON object, got {type(data).__name__}")
        self.data, self.source, self.where = data, source, where

    def _name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def get(self, key: str, kind: type | tuple[type, ...], *, optional: bool = False) -> Any:
        if key not in self.data:
            if optional:
                return None
            raise RecordError(f"{self.source}: missing field '{self._name(key)}'")
        value = self.data[key]
        if value is None and optional:
            return None
        kinds = kind if isinstance(kind, tuple) else (kind,)
        # JSON has one number type: an int is a valid float; a bool is no number
        accepted = kinds + ((int,) if float in kinds else ())
        if not isinstance(value, accepted) or (isinstance(value, bool) and bool not in kinds):
            names = " or ".join(k.__name__ for k in kinds)
            raise RecordError(f"{self.source}: field '{self._name(key)}' must be {names}, got {value!r}")
        return value

    def number(self, key: str) -> float:
        return self.get(key, float)

    def child(self, key: str) -> _Reader:
        return _Reader(self.get(key, dict), self.source, self._name(key))

    def children(self, key: str) -> list[_Reader]:
        return [_Reader(item, self.source, f"{self._name(key)}[{k}]") for k, item in enumerate(self.get(key, list))]


def _open(cls: type[R], source: str | Path | dict[str, Any]) -> _Reader:
    if isinstance(source, dict):
        return _Reader(source, cls.__name__)
    path = Path(source)
    try:  # a missing file stays FileNotFoundError: the CLI names the stage to run for it
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise RecordError(f"{path}: not valid JSON ({error})") from error
    return _Reader(data, str(path))


@dataclasses.dataclass(frozen=True)
class BestTrial:
    """The single best trial of the search (what the finished model may have outgrown)."""

    number: int
    family: str
    params: dict[str, Any]
    cv_score: float


@dataclasses.dataclass(frozen=True)
class Member:
    """One model of the final recipe: the trial it came from, and the params `train` refits it with."""

    trial: int
    family: str
    params: dict[str, Any]
    weight: float


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
    threshold: dict[str, Any]  # objective and threshold; with a chosen one, its value there and at 0.5
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

    @classmethod
    def _read(cls, r: _Reader) -> Finish:
        return cls(
            method=r.get("method", str),
            combiner=r.get("combiner", dict, optional=True),
            cv_score=r.number("cv_score"),
            scores=r.get("scores", dict),
            members=tuple(
                Member(m.get("trial", int), m.get("family", str), m.get("params", dict), m.number("weight"))
                for m in r.children("members")
            ),
            calibration=r.get("calibration", dict, optional=True),
            calibration_log_loss=r.get("calibration_log_loss", dict),
            threshold=_threshold(r.child("threshold")),
            skipped=r.get("skipped", dict, optional=True),
        )


def _threshold(r: _Reader) -> dict[str, Any]:
    r.get("objective", str)
    r.number("threshold")
    return r.data


@dataclasses.dataclass(frozen=True)
class TunedRecipe:
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
    study: dict[str, Any]  # name, screened_trials
    budget: dict[str, Any]  # kind and size, reproducible, and why not

    def to_json(self) -> str:
        return _dumps(
            {
                "family": self.family,
                "params": self.params,
                "metric": self.metric,
                "cv_score": self.cv_score,
                "cv_std": self.cv_std,
                "trial": self.trial,
                "best_trial": dataclasses.asdict(self.best_trial),
                "finish": self.finish.as_dict(),
                "trials": self.trials,
                "seed": self.seed,
                "cv_folds": self.cv_folds,
                "validation": self.validation,
                "study": self.study,
                "budget": self.budget,
            }
        )

    @classmethod
    def from_json(cls, source: str | Path | dict[str, Any]) -> TunedRecipe:
        r = _open(cls, source)
        best = r.child("best_trial")
        budget = r.child("budget")
        budget.get("reproducible", bool)
        return cls(
            family=r.get("family", str),
            params=r.get("params", dict),
            metric=r.get("metric", str),
            cv_score=r.number("cv_score"),
            cv_std=r.number("cv_std"),
            trial=r.get("trial", int),
            best_trial=BestTrial(
                best.get("number", int), best.get("family", str), best.get("params", dict), best.number("cv_score")
            ),
            finish=Finish._read(r.child("finish")),
            trials=r.get("trials", dict),
            seed=r.get("seed", int),
            cv_folds=r.get("cv_folds", int),
            validation=r.get("validation", dict),
            study=r.get("study", dict),
            budget=budget.data,
        )

    @property
    def reproducible(self) -> bool:
        return self.budget["reproducible"]


@dataclasses.dataclass(frozen=True)
class TrainingRecord:
    """paths.train_info: the train run and the model it logged, what that model is and what it cost.
    Not byte-stable (run ids, fit time): it changes exactly when `train` runs."""

    run_id: str
    tune_run_id: str | None  # the tune run that wrote the recipe, when the tracking store still has it
    experiment: str
    model_uri: str
    model_id: str
    family: str
    params: dict[str, Any]
    method: str
    members: tuple[dict[str, Any], ...]  # family, weight, trial of each member
    calibration: str
    threshold: dict[str, Any]
    train_rows: int
    fit_seconds: float
    model_size_bytes: int
    data_hash: str

    def to_json(self) -> str:
        return _dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, source: str | Path | dict[str, Any]) -> TrainingRecord:
        r = _open(cls, source)
        return cls(
            run_id=r.get("run_id", str),
            tune_run_id=r.get("tune_run_id", str, optional=True),
            experiment=r.get("experiment", str),
            model_uri=r.get("model_uri", str),
            model_id=r.get("model_id", str),
            family=r.get("family", str),
            params=r.get("params", dict),
            method=r.get("method", str),
            members=tuple(m.data for m in r.children("members")),
            calibration=r.get("calibration", str),
            threshold=_threshold(r.child("threshold")),
            train_rows=r.get("train_rows", int),
            fit_seconds=r.number("fit_seconds"),
            model_size_bytes=r.get("model_size_bytes", int),
            data_hash=r.get("data_hash", str),
        )


@dataclasses.dataclass(frozen=True)
class ColumnDrift:
    method: str
    score: float
    threshold: float
    drifted: bool


@dataclasses.dataclass(frozen=True)
class DriftSummary:
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

    def rounded(self, digits: int) -> DriftSummary:
        """Each column's score to ``digits`` significant digits."""
        columns = {
            name: dataclasses.replace(column, score=float(f"{column.score:.{digits}g}"))
            for name, column in self.columns.items()
        }
        return dataclasses.replace(self, columns=columns)

    def to_json(self) -> str:
        return _dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, source: str | Path | dict[str, Any]) -> DriftSummary:
        r = _open(cls, source)
        columns = r.child("columns")
        return cls(
            reference_rows=r.get("reference_rows", int),
            current_rows=r.get("current_rows", int),
            columns_checked=r.get("columns_checked", int),
            drifted_count=r.get("drifted_count", int),
            drift_share=r.number("drift_share"),
            max_drift_share=r.number("max_drift_share"),
            passed=r.get("passed", bool),
            drifted_columns=tuple(r.get("drifted_columns", list)),
            columns={
                name: ColumnDrift(
                    c.get("method", str), c.number("score"), c.number("threshold"), c.get("drifted", bool)
                )
                for name in columns.data
                for c in [columns.child(name)]
            },
            engine=r.get("engine", str),
        )
