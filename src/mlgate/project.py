"""What every stage needs from params.yaml: where files live, the dataset spec, the tracking names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from mlgate import config, files
from mlgate.errors import StageError
from mlgate.modelling.source import SourceSpec

if TYPE_CHECKING:
    from mlgate.modelling.data import DataSpec


@dataclass(frozen=True)
class Paths:
    source_dir: str
    fingerprint: str
    raw: str
    validation: str
    data_summary: str
    split: str
    best_params: str
    leaderboard: str
    trials: str
    trial_predictions: str
    study: str
    kept_models: str
    model: str
    train_info: str
    train_run: str
    metrics: str
    plots: str
    drift_report: str
    drift: str
    gate: str
    registered: str
    promotion: str
    gate_plots: str
    model_card: str
    ledger: str
    monitor: str
    monitor_report: str
    monitor_metrics: str

    @property
    def raw_data(self) -> Path:
        return Path(self.raw) / "data.parquet"

    @property
    def raw_current(self) -> Path:
        return Path(self.raw) / "current.parquet"

    @property
    def raw_meta(self) -> Path:
        return Path(self.raw) / "meta.json"

    def split_file(self, name: str) -> Path:
        return Path(self.split) / f"{name}.parquet"

    @property
    def split_summary(self) -> Path:
        return Path(self.split) / "summary.json"

    @property
    def split_ids(self) -> Path:
        """The keyed-hash ids of the rows in each part (``mlgate forget``)."""
        return Path(self.split) / "ids.parquet"


@dataclass(frozen=True)
class TrackingParams:
    experiment: str
    registered_model: str
    ui_url: str
    # who writes the search's trial runs (tracking.TrialRecorder): a process of its own, a thread, or auto
    trial_writer: str = "auto"

    def __post_init__(self) -> None:
        if self.trial_writer not in TRIAL_WRITERS:
            raise ValueError(f"tracking.trial_writer must be auto, process or thread, got '{self.trial_writer}'")

    def writes_trials_from_process(self, budget: str, n_trials: int) -> bool:
        """``auto``: a process of its own, except for a search of a few trials by count. That process costs
        ~2 s of CPU and starts writing ~1.5 s in, more than the GIL time it saves a short search
        (benchmarks/tracking_overhead.py: 5 fast trials 2.25x bare wall against the thread's 1.12, 10 trials
        even, 20 trials 1.02 against 1.14)."""
        if self.trial_writer == "auto":
            return budget == "time" or n_trials > THREAD_WRITER_MAX_TRIALS
        return self.trial_writer == "process"


TRIAL_WRITERS = ("auto", "process", "thread")
THREAD_WRITER_MAX_TRIALS = 10


def paths(params: dict[str, Any]) -> Paths:
    return config.load(Paths, "paths", params)


def tracking(params: dict[str, Any]) -> TrackingParams:
    return config.load(TrackingParams, "tracking", params)


def data_spec(params: dict[str, Any]) -> DataSpec:
    from mlgate.modelling.data import DataSpec  # pandas: not for source_spec's callers

    try:
        return config.load(DataSpec, "data", params)
    except config.ConfigError as error:
        raise StageError(str(error)) from error


def source_spec(params: dict[str, Any]) -> tuple[SourceSpec, str | None]:
    """``data.source`` and ``data.current_path`` alone, without the rest of the dataset spec (nor pandas)."""
    try:
        return config.load(SourceSpec, "data.source", params), config.section(params, "data").get("current_path")
    except (config.ConfigError, ValueError) as error:
        raise StageError(str(error)) from error


def seed(params: dict[str, Any]) -> int:
    value = config.section(params, "seed")
    if not isinstance(value, int):
        raise StageError(f"params.yaml: 'seed' must be an integer, got {value!r}")
    return value


def lineage(params: dict[str, Any]) -> tuple[str, str | None]:
    """(content hash of the raw data from ingest's meta.json, DVC's md5 of paths.raw from dvc.lock)."""
    p = paths(params)
    data_hash = files.read_json(p.raw_meta)["data"]["content_hash"]
    dvc_md5 = None
    lock = Path("dvc.lock")
    if lock.is_file():
        stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
        for out in stages.get("ingest", {}).get("outs", []):
            if out.get("path") == p.raw:
                dvc_md5 = out.get("md5")
    return data_hash, dvc_md5
