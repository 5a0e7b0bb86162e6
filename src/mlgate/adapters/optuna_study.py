"""Everything mlgate asks of Optuna: search spaces from conf/model/, samplers, pruners, the study loop
and its storage.

The only module that imports optuna. Callers give an ``evaluate(family, params, report)`` function
and get plain ``TrialOutcome`` records back, one per trial, including pruned and failed ones, and
those a stored study already holds.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import hashlib
import importlib.util
import json
import logging
import math
import re
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.storages._rdb import models  # the heartbeat table, for trials that never beat
from optuna.trial import TrialState

from mlgate.modelling.task import named

optuna.logging.set_verbosity(optuna.logging.WARNING)
log = logging.getLogger(__name__)


def _not_a_failed_trial(record: logging.LogRecord) -> bool:
    """Optuna's line (and traceback) for a trial that raised under search.budget time: the trial's
    outcome already carries its error, which the stages report once."""
    return re.match(r"Trial \d+ failed with", str(record.msg)) is None


logging.getLogger("optuna.study._optimize").addFilter(_not_a_failed_trial)

SAMPLERS = ("grid", "random", "tpe", "cmaes", "nsga2")
PRUNERS = ("median", "successive_halving", "none")
VALIDATIONS = ("auto", "cv", "holdout")
# trials: n_trials in batches of n_jobs, reproducible; time: whatever fits in timeout_s (not reproducible)
BUDGETS = ("trials", "time")
# What a multi-objective search may minimise beside the score (search.objectives), per trial:
# a supervised model's prediction time and size, a segmentation's number of clusters.
COSTS = ("predict_time", "model_size", "n_clusters")
# Key of the trial user attribute that holds mlgate's record of a finished trial.
_RECORD = "mlgate"
_RETRY_OF = "mlgate_retry_of"
_PROMOTED_FROM = "mlgate_promoted_from"


@dataclass(frozen=True)
class ParamSpec:
    type: str  # float | int | categorical
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()
    grid: tuple[Any, ...] = ()  # explicit grid values (float and int); else search.grid_points spaced ones
    # searched only when each named earlier parameter of the family took one of the listed values
    when: dict[str, tuple[Any, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class FamilySpace:
    family: str
    fixed: dict[str, Any]
    space: dict[str, ParamSpec]
    first_trial: dict[str, Any]


@dataclass(frozen=True)
class SearchSettings:
    sampler: str
    pruner: str
    n_trials: int
    timeout_s: float
    cv_folds: int
    n_jobs: int
    grid_points: int = 3  # grid sampler: values per float/int dimension without an explicit `grid`
    validation: str = "auto"  # cv | holdout | auto: holdout from holdout_above_rows training rows on
    holdout_above_rows: int = 20_000
    holdout_share: float = 0.2
    fold_runs: bool = False  # one MLflow run per fold under each trial's run
    # the score first; then, for a multi-objective search, costs to minimise alongside it
    objectives: tuple[str, ...] = ("score",)
    # from subsample_above_rows training rows on, the study's first subsample_trials trials (0: none)
    # fit on a subsample_share of each training fold; the best of them are then run on every row
    subsample_trials: int = 8
    subsample_above_rows: int = 20_000
    subsample_share: float = 0.25
    budget: str = "trials"
    # processes sharing the study (a PostgreSQL paths.study); 1: this process alone, in batches of n_jobs
    workers: int = 1
    heartbeat_s: float = 10.0  # a distributed trial beats this often; silent for 3 beats, it is retried
    # retraining with a `production` model: its study's best configurations (its best trial first) are
    # queued before any exploration, at most warm_start_trials of them
    warm_start: bool = False
    warm_start_trials: int = 5
    # ... and production's CatBoost model going on training on the rows it never saw, searched beside them
    warm_start_continue: bool = True

    @property
    def reproducible(self) -> bool:
        """Whether the same seed and data give the same study: only a budget no clock decides, run by
        one process (several workers' trials end in whatever order the machines run them)."""
        return self.budget == "trials" and not self.distributed

    @property
    def distributed(self) -> bool:
        return self.workers > 1

    def __post_init__(self) -> None:
        if self.budget not in BUDGETS:
            raise ValueError(
                f"search.budget must be one of {BUDGETS} (trials: n_trials, reproducible; time: "
                f"timeout_s, not reproducible), got '{self.budget}'"
            )
        if self.sampler == "gp":
            raise ValueError(
                "search.sampler 'gp' (Optuna's GPSampler) needs PyTorch, which mlgate does not install; "
                f"choose one of {SAMPLERS}"
            )
        if self.sampler not in SAMPLERS:
            raise ValueError(f"search.sampler must be one of {SAMPLERS}, got '{self.sampler}'")
        if self.sampler == "cmaes" and importlib.util.find_spec("cmaes") is None:  # Optuna fails only trials later
            raise ValueError(
                "search.sampler 'cmaes' needs the 'cmaes' package (pip install -c requirements.lock cmaes)"
            )
        if self.pruner not in PRUNERS:
            raise ValueError(f"search.pruner must be one of {PRUNERS}, got '{self.pruner}'")
        if self.n_trials < 1 or self.cv_folds < 2 or self.n_jobs < 1 or self.timeout_s <= 0:
            raise ValueError("search: n_trials >= 1, cv_folds >= 2, n_jobs >= 1 and timeout_s > 0 are required")
        if self.workers < 1 or self.heartbeat_s <= 0:
            raise ValueError(
                f"search.workers must be at least 1 and search.heartbeat_s above 0, got {self.workers} and "
                f"{self.heartbeat_s}"
            )
        if self.warm_start_trials < 1:
            raise ValueError(f"search.warm_start_trials must be at least 1, got {self.warm_start_trials}")
        if self.warm_start and self.workers > 1:
            raise ValueError(
                "search.warm_start with search.workers > 1 is not supported: run the retraining search in one "
                "process (search.workers: 1)"
            )
        if self.grid_points < 2:
            raise ValueError(f"search.grid_points must be at least 2, got {self.grid_points}")
        if self.validation not in VALIDATIONS:
            raise ValueError(f"search.validation must be one of {VALIDATIONS}, got '{self.validation}'")
        if (
            not self.objectives
            or self.objectives[0] != "score"
            or not set(self.objectives[1:]) <= set(COSTS)
            or len(set(self.objectives)) != len(self.objectives)
        ):
            raise ValueError(
                f"search.objectives must be [score] or score followed by some of {list(COSTS)}, "
                f"got {list(self.objectives)}"
            )
        if len(self.objectives) > 1 and self.pruner != "none":
            raise ValueError(
                "search.pruner must be none with several search.objectives (Optuna prunes single-objective "
                "studies only)"
            )
        if len(self.objectives) > 1 and self.sampler == "cmaes":
            raise ValueError(
                "search.sampler cmaes is single-objective; use nsga2 (or tpe, random) with several objectives"
            )
        if not 0 < self.holdout_share < 1:
            raise ValueError(f"search.holdout_share must be between 0 and 1, got {self.holdout_share}")
        if self.subsample_trials < 0:
            raise ValueError(
                f"search.subsample_trials must be 0 (no subsampled trials) or more, got {self.subsample_trials}"
            )
        if self.subsample_above_rows < 1:
            raise ValueError(f"search.subsample_above_rows must be at least 1, got {self.subsample_above_rows}")
        if not 0 < self.subsample_share < 1:
            raise ValueError(f"search.subsample_share must be between 0 and 1, got {self.subsample_share}")


@dataclass(frozen=True)
class TrialOutcome:
    number: int
    family: str
    params: dict[str, Any]  # the full constructor configuration: fixed + searched
    score: float | None  # mean over the folds that ran
    fold_scores: tuple[float, ...]
    state: str  # COMPLETE | PRUNED | FAIL
    start: float  # epoch seconds
    end: float
    error: str | None = None
    reused: bool = False  # finished by an earlier run of the same stored study
    origin: str | None = None  # the `origin` of the optimize call that ran it
    costs: tuple[float, ...] = ()  # a multi-objective trial's other objectives, in search.objectives order
    subsample: float | None = None  # the share of each training fold a screening trial fit on; None: all of it


@dataclass
class Deadline:
    """The one clock of a search.budget time study, started once: the progress display, the objective
    (which stops a fold that would end after it) and Optuna's loop all read it, so they agree on the
    time left. A search.budget trials study has none: no clock decides what it runs.

    ``reserve``: seconds after ``at`` kept for what follows the search (train's refit). The search may go
    on into the part of it ``lend`` gives back (what follows will not need it), so ``left`` counts to
    ``at`` plus what is lent, never past the reserve's end."""

    at: float  # time.time() when the search's own time ends
    reserve: float = 0.0
    lent: float = 0.0

    @classmethod
    def after(cls, seconds: float, reserve: float = 0.0) -> Deadline:
        return cls(time.time() + seconds, reserve)

    def left(self) -> float:
        return max(0.0, self.at + self.lent - time.time())

    def expired(self) -> bool:
        return self.left() <= 0.0

    def lend(self, seconds: float) -> None:
        """Let the search run ``seconds`` of the reserve (0 to all of it; a later call may take it back)."""
        self.lent = min(max(0.0, seconds), self.reserve)

    def reserve_left(self) -> float:
        """Seconds until the reserve ends: the most the search may ever run, and what follows it has."""
        return max(0.0, self.at + self.reserve - time.time())


class Pruned(Exception):
    """Raised by ``report`` when the pruner stops a trial."""


class OutOfTime(Pruned):
    """Raised by an objective that would run past the study's deadline: pruned, with why.
    ``final``: no configuration fits in the time left, so the study stops."""

    def __init__(self, message: str, final: bool = False):
        super().__init__(message)
        self.final = final


# Searched only for classification: a regression study drops them from the space and first trial.
CLASSIFICATION_ONLY = ("class_weight",)


def parse_spaces(model_section: dict[str, Any], task: str = "binary") -> list[FamilySpace]:
    """conf/model/<family>.yaml entries (composed under params.yaml `model:`) as FamilySpace objects."""
    if not model_section:
        raise ValueError("params.yaml: 'model' selects no family; choose at least one in conf/config.yaml")
    spaces = []
    for family, entry in model_section.items():
        entry = dict(entry or {})
        if not named(task).is_classification:
            for part in ("space", "first_trial"):
                entry[part] = {k: v for k, v in (entry.get(part) or {}).items() if k not in CLASSIFICATION_ONLY}
        unknown = set(entry) - {"fixed", "space", "first_trial"}
        if unknown:
            raise ValueError(f"model.{family}: unknown key(s) {sorted(unknown)}; expected fixed, space, first_trial")
        space: dict[str, ParamSpec] = {}
        for name, spec in (entry.get("space") or {}).items():
            space[name] = _param_spec(f"model.{family}.space.{name}", spec, space)
        first = dict(entry.get("first_trial") or {})
        stray = set(first) - set(space)
        if stray:
            raise ValueError(f"model.{family}.first_trial: {sorted(stray)} not in model.{family}.space")
        for name in first:
            if not _active(space[name], first):
                raise ValueError(
                    f"model.{family}.first_trial: '{name}' is searched only when {_describe(space[name].when)}"
                )
        spaces.append(FamilySpace(family, dict(entry.get("fixed") or {}), space, first))
    return spaces


def _param_spec(where: str, spec: dict[str, Any], earlier: dict[str, ParamSpec]) -> ParamSpec:
    kind = spec.get("type") if isinstance(spec, dict) else None
    if kind not in ("float", "int", "categorical"):
        raise ValueError(f"{where}: 'type' must be float, int or categorical, got {spec!r}")
    unknown = set(spec) - {"type", "low", "high", "log", "choices", "grid", "when"}
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}")
    when = _conditions(where, spec.get("when") or {}, earlier)
    if kind == "categorical":
        choices = tuple(spec.get("choices") or ())
        if not choices:
            raise ValueError(f"{where}: a categorical parameter needs a non-empty 'choices' list")
        if "grid" in spec:
            raise ValueError(f"{where}: 'grid' is for float and int parameters; a categorical one uses all its choices")
        return ParamSpec(kind, choices=choices, when=when)
    if "low" not in spec or "high" not in spec or spec["low"] > spec["high"]:
        raise ValueError(f"{where}: a {kind} parameter needs low <= high")
    if spec.get("log") and spec["low"] <= 0:
        raise ValueError(f"{where}: a log-scale parameter needs low > 0, got {spec['low']}")
    grid = tuple(spec.get("grid") or ())
    outside = [v for v in grid if not spec["low"] <= v <= spec["high"] or (kind == "int" and v != int(v))]
    if outside:
        raise ValueError(f"{where}: grid value(s) {outside} are not {kind}s within [{spec['low']}, {spec['high']}]")
    return ParamSpec(kind, spec["low"], spec["high"], bool(spec.get("log", False)), grid=grid, when=when)


def _conditions(where: str, when: Any, earlier: dict[str, ParamSpec]) -> dict[str, tuple[Any, ...]]:
    if not isinstance(when, dict):
        raise ValueError(f"{where}.when: expected a mapping such as {{selection: [mutual_info, model]}}, got {when!r}")
    conditions = {}
    for name, allowed in when.items():
        allowed = tuple(allowed) if isinstance(allowed, (list, tuple)) else (allowed,)
        other = earlier.get(name)
        if other is None or other.type != "categorical":
            raise ValueError(f"{where}.when: '{name}' must be a categorical parameter listed before it in the space")
        if not set(allowed) <= set(other.choices):
            raise ValueError(
                f"{where}.when: {sorted(set(allowed) - set(other.choices), key=str)} not among the choices of '{name}'"
            )
        conditions[name] = allowed
    return conditions


def _active(spec: ParamSpec, chosen: dict[str, Any]) -> bool:
    return all(chosen.get(name) in allowed for name, allowed in spec.when.items())


def random_configurations(space: FamilySpace, count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` searched configurations of one family drawn at random from its space as the search
    draws them (conditional parameters only when active), seeded: the candidates benchmarks/portfolio.py
    scores across datasets."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    drawn = []
    for _ in range(count):
        trial, searched = study.ask(), {}
        for name, spec in space.space.items():
            if _active(spec, searched):
                searched[name] = _suggest(trial, f"{space.family}.{name}", spec, None)
        study.tell(trial, 0.0)
        drawn.append(searched)
    return drawn


def _describe(when: dict[str, tuple[Any, ...]]) -> str:
    return " and ".join(f"{name} is one of {list(allowed)}" for name, allowed in when.items())


def grid_values(spec: ParamSpec, points: int, first: Any = None) -> list[Any]:
    """The values the grid sampler tries for one parameter.

    Categorical: every choice. Float and int: the explicit ``grid`` if given (plus ``first``), else
    ``points`` values from low to high, evenly spaced (geometrically when ``log``), ints rounded and
    deduplicated, floats rounded to 4 significant digits, with the one nearest ``first`` (the
    family's first-trial value) moved onto it, so that the known-good point is a grid point.
    """
    if spec.type == "categorical":
        return list(spec.choices)
    cast = int if spec.type == "int" else float
    if spec.grid:
        return sorted({cast(v) for v in (*spec.grid, *(() if first is None else (first,)))})
    scale = np.log if spec.log else (lambda v: v)
    spaced = (np.geomspace if spec.log else np.linspace)(spec.low, spec.high, points)
    if first is not None:
        spaced[np.argmin(np.abs(scale(spaced) - scale(first)))] = first
    return sorted({int(round(v)) if spec.type == "int" else float(f"{v:.4g}") for v in spaced})


def _suggest(trial: optuna.Trial, name: str, spec: ParamSpec, grid: list[Any] | None) -> Any:
    if grid is not None:
        return trial.suggest_categorical(name, grid)
    if spec.type == "float":
        return trial.suggest_float(name, spec.low, spec.high, log=spec.log)
    if spec.type == "int":
        return trial.suggest_int(name, int(spec.low), int(spec.high), log=spec.log)
    return trial.suggest_categorical(name, list(spec.choices))


def _sampler(
    settings: SearchSettings, seed: int, prior: Sequence[optuna.trial.FrozenTrial] = ()
) -> optuna.samplers.BaseSampler:
    """The sampler ``search.sampler`` names; TPE also learns from ``prior`` (``prior_trials``)."""
    name = settings.sampler
    if name == "grid" and settings.budget == "trials":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return _Grid(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        # exhaustive over the tree of suggested values: the family first, then that family's own grid
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.BruteForceSampler(seed=seed)
    if name == "cmaes":
        # the family choice, and any parameter outside the space every trial shares, is sampled at random
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if name == "nsga2":
        # generations of n_trials / 5 (4 to 50) so that a short budget still sees several of them
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, settings.n_trials // 5)))
    if prior:
        return _InformedTPE(prior, seed=seed, n_startup_trials=8)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=8)


def prior_trials(
    spaces: list[FamilySpace], observations: Sequence[tuple[str, dict[str, Any], float]]
) -> list[optuna.trial.FrozenTrial]:
    """A previous study's scored configurations (family, params, score) as trials the sampler may learn
    from, each kept to its family's current space: one whose family is no longer searched, or with a value
    the space no longer holds, says nothing about this search and is left out."""
    by_name = {space.family: space for space in spaces}
    family = optuna.distributions.CategoricalDistribution(list(by_name))
    trials = []
    for name, params, score in observations:
        space = by_name.get(name)
        if space is None or not math.isfinite(score):
            continue
        chosen = {k: v for k, v in params.items() if k in space.space}
        distributions = {f"{name}.{k}": _distribution(space.space[k]) for k in chosen}
        try:
            trials.append(
                optuna.trial.create_trial(
                    params={"family": name, **{f"{name}.{k}": v for k, v in chosen.items()}},
                    distributions={"family": family, **distributions},
                    value=score,
                )
            )
        except ValueError:  # a value outside the current space
            continue
    return trials


def _distribution(spec: ParamSpec) -> optuna.distributions.BaseDistribution:
    """The distribution ``_suggest`` samples ``spec`` from (without a grid)."""
    if spec.type == "float":
        return optuna.distributions.FloatDistribution(spec.low, spec.high, log=spec.log)
    if spec.type == "int":
        return optuna.distributions.IntDistribution(int(spec.low), int(spec.high), log=spec.log)
    return optuna.distributions.CategoricalDistribution(list(spec.choices))


class _InformedTPE(optuna.samplers.TPESampler):
    """TPE that also sees a previous study's trials (a retraining's warm start): its density estimates
    start from where good and bad configurations lay, so the search explores around the known good ones
    from its first sampled trial. The prior trials are never stored in this study: its trials, numbers
    and resumption stay its own. They count as the oldest trials, which TPE weighs least once it holds
    more than 25 trials."""

    def __init__(self, prior: Sequence[optuna.trial.FrozenTrial], **kwargs: Any):
        super().__init__(**kwargs)
        self._prior = list(prior)

    def sample_independent(self, study, trial, param_name, param_distribution) -> Any:
        return super().sample_independent(_WithPrior(study, self._prior), trial, param_name, param_distribution)

    def sample_relative(self, study, trial, search_space) -> dict[str, Any]:
        return super().sample_relative(_WithPrior(study, self._prior), trial, search_space)


class _WithPrior:
    """The study as ``_InformedTPE`` sees it: the prior trials first, then the study's own."""

    def __init__(self, study: optuna.Study, prior: list[optuna.trial.FrozenTrial]):
        self._study, self._prior = study, prior

    def _get_trials(self, deepcopy: bool = True, states=None, use_cache: bool = False) -> list:
        prior = [t for t in self._prior if states is None or t.state in states]
        return prior + self._study._get_trials(deepcopy=deepcopy, states=states, use_cache=use_cache)

    def get_trials(self, deepcopy: bool = True, states=None) -> list:
        return self._get_trials(deepcopy=deepcopy, states=states)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)


class _Grid(optuna.samplers.BruteForceSampler):
    """The grid sampler of the batched schedule: a covered grid sets ``covered`` where the sampler
    would call study.stop(), which Optuna refuses outside its own optimize loop."""

    covered = False

    def after_trial(self, study, trial, state, values) -> None:
        super().after_trial(_Stoppable(study, self), trial, state, values)


class _Stoppable:
    def __init__(self, study: optuna.Study, sampler: _Grid):
        self._study, self._sampler = study, sampler

    def stop(self) -> None:
        self._sampler.covered = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)


def _pruner(name: str) -> optuna.pruners.BasePruner:
    """Judged on the running mean of fold scores (a trial's step is a fold)."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    if name == "successive_halving":
        # rungs after folds 1, 3, 9...: a trial goes on only if it is in the top third of those that reached the rung
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    return optuna.pruners.NopPruner()


def _sampler_seed(seed: int, trials: int) -> int:
    """The sampler's seed for the trial asked when the study holds ``trials``: a function of the study's
    history, not of how many trials this process asked, so a resumed study samples as an uninterrupted one."""
    return int(np.random.SeedSequence([seed, trials]).generate_state(1)[0])


class _TrialsBefore:
    """The study as the pruner sees it while a batch runs: without the batch's own trials, whose
    intermediate values (and successive halving's rung values) arrive in whatever order the threads run."""

    def __init__(self, study: optuna.Study, batch: set[int]):
        self._study, self._batch = study, batch

    def get_trials(self, deepcopy: bool = True, states=None) -> list:
        return [t for t in self._study.get_trials(deepcopy=deepcopy, states=states) if t.number not in self._batch]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)


def _should_prune(trial: optuna.Trial, step: int, judged_by: Any) -> bool:
    if judged_by is None:
        return trial.should_prune()
    # what Trial.should_prune does, against the given view of the study and as of this step: a trial
    # run again after a kill already holds the later steps it reported then
    latest = copy.copy(trial._get_latest_trial())
    latest.intermediate_values = {k: v for k, v in latest.intermediate_values.items() if k <= step}
    return trial.study.pruner.prune(judged_by, latest)


_TOLD = {"COMPLETE": TrialState.COMPLETE, "PRUNED": TrialState.PRUNED, "FAIL": TrialState.FAIL}


class _Storage(optuna.storages.RDBStorage):
    """Optuna's RDB storage with queued trials claimed one thread at a time.

    A trial thread claims a queued trial (a first trial, a retry) by moving it from WAITING to
    RUNNING, guarded by SELECT ... FOR UPDATE, which SQLite ignores: two threads could claim and
    run the same trial, and the second then fails with "Cannot tell a COMPLETE trial" (seen with
    n_jobs=2; optuna#4002, #4621). A lock serialises the state changes within this process,
    which is all that runs the study (see ``optimize``).
    """

    _state_lock = threading.Lock()

    def set_trial_state_values(self, trial_id, state, values=None) -> bool:
        with self._state_lock:
            return super().set_trial_state_values(trial_id, state, values)


def _open_storage(url: str | None) -> optuna.storages.BaseStorage:
    if url is None:
        return optuna.storages.InMemoryStorage()
    engine = (
        {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
    )  # wait out the other thread's write
    return optuna.storages.get_storage(_Storage(url, engine_kwargs=engine))


def storage_url(location: str) -> str:
    """An Optuna storage URL: ``location`` itself if it is one (``postgresql+psycopg://…``), else a SQLite file."""
    if "://" in location:
        return location
    path = Path(location).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


# (family, params, report) -> (score, fold scores); a screening trial's call adds ``subsample=<share>``
Evaluate = Callable[..., tuple[float, list[float]]]
# (family, params) -> the search.objectives costs of a configuration evaluate just scored
Costs = Callable[[str, dict[str, Any]], list[float]]


class _Trials:
    """What running one trial takes, whichever loop asks for it (the batched schedule, Optuna's own
    loop under search.budget time, a distributed worker): sampling its family and configuration, and
    evaluating it into a ``TrialOutcome``."""

    def __init__(
        self,
        spaces: list[FamilySpace],
        evaluate: Evaluate,
        settings: SearchSettings,
        *,
        costs: Costs | None,
        subsample: float | None,
        origin: str | Callable[[], str] | None,
    ):
        self.by_name = {s.family: s for s in spaces}
        self.grids = None
        if settings.sampler == "grid":
            self.grids = {
                s.family: {
                    k: grid_values(spec, settings.grid_points, s.first_trial.get(k)) for k, spec in s.space.items()
                }
                for s in spaces
            }
        self.evaluate, self.costs, self.subsample, self.origin = evaluate, costs, subsample, origin
        self.extra = len(settings.objectives) - 1
        self.screening = settings.subsample_trials if subsample is not None and not self.extra else 0
        self.reported_before: dict[int, set[int]] = {}  # steps a killed run's trials reported already

    def sample(self, trial: optuna.Trial) -> tuple[str, dict[str, Any], Exception | None]:
        """The trial's family and configuration, and the error that stopped sampling it, if one did."""
        family = trial.suggest_categorical("family", list(self.by_name))
        space = self.by_name[family]
        searched: dict[str, Any] = {}
        try:
            for name, spec in space.space.items():
                if _active(spec, searched):
                    grid = self.grids[family][name] if self.grids else None
                    searched[name] = _suggest(trial, f"{family}.{name}", spec, grid)
        except Exception as exc:
            return family, dict(space.fixed), exc
        return family, {**space.fixed, **searched}, None

    def attempt(
        self,
        trial: optuna.Trial,
        family: str,
        params: dict[str, Any],
        sampling_error: Exception | None,
        judged_by: Any = None,
    ) -> tuple[TrialOutcome, float | list[float] | None, Exception | None]:
        """Evaluate a sampled trial: its outcome, the value(s) to tell Optuna, and the Pruned or error
        that ended it. ``judged_by``: the study as the pruner sees it (default: the live study)."""
        start = time.time()
        trial_costs: list[float] = []
        share = self.subsample if trial.number < self.screening else None
        folds: list[float] = []

        def report(step: int, value: float) -> None:
            folds.append(value)
            if self.extra or share:
                return
            if step not in self.reported_before.get(trial.number, ()):
                trial.report(sum(folds) / len(folds), step)
            if _should_prune(trial, step, judged_by):
                raise Pruned

        value, ended, error, score = None, None, None, None
        try:
            if sampling_error is not None:
                raise sampling_error
            score, fold_scores = self.evaluate(family, params, report, **({"subsample": share} if share else {}))
            folds[:] = fold_scores
            if not math.isfinite(score):
                raise ValueError(f"the cross-validated score is {score}")
            trial_costs = list(self.costs(family, params)) if self.extra else []
            state, value = "COMPLETE", ([score, *trial_costs] if self.extra else score)
        except Pruned as stop:
            state, error, ended = "PRUNED", str(stop) or None, stop
        except Exception as exc:
            state, error, score, ended = "FAIL", f"{type(exc).__name__}: {exc}", None, exc
        finite = [f for f in folds if math.isfinite(f)]
        mean = score if score is not None else (sum(finite) / len(finite) if finite else None)
        outcome = TrialOutcome(
            trial.number,
            family,
            params,
            mean,
            tuple(folds),
            state,
            start,
            time.time(),
            error,
            origin=self.origin() if callable(self.origin) else self.origin,
            costs=tuple(trial_costs),
            subsample=share,
        )
        return outcome, value, ended


def _create_study(
    store: optuna.storages.BaseStorage,
    study_name: str,
    settings: SearchSettings,
    seed: int,
    maximize: bool,
    pruner: optuna.pruners.BasePruner | None = None,
    prior: Sequence[optuna.trial.FrozenTrial] = (),
) -> optuna.Study:
    """The study, new or stored: the score maximised or minimised, any further objective minimised."""
    directions = ["maximize" if maximize else "minimize"] + ["minimize"] * (len(settings.objectives) - 1)
    study = optuna.create_study(
        storage=store,
        study_name=study_name,
        load_if_exists=True,
        directions=directions,
        sampler=_sampler(settings, seed, prior),
        pruner=pruner,
    )
    _check_directions(study, directions)
    return study


def _check_directions(study: optuna.Study, directions: list[str]) -> None:
    stored = [d.name.lower() for d in study.directions]
    if stored != directions:  # Optuna would silently keep the stored directions
        raise ValueError(f"the stored study '{study.study_name}' runs in other directions ({', '.join(stored)})")


def _enqueue_first_trials(
    study: optuna.Study, spaces: list[FamilySpace], queued: Sequence[tuple[str, dict[str, Any]]] = ()
) -> None:
    """Known-good points before any exploration: ``queued`` first, in order (a retraining's configurations
    known to do well, best first, then a portfolio's), each kept to its family's current space (a family
    not searched is skipped; a value the space no longer holds still runs, with Optuna's warning), then
    the first trial of each family ``queued`` has no configuration of."""
    searched = {space.family: space for space in spaces}
    covered: set[str] = set()
    seen: set[str] = set()
    for family, params in queued:
        space = searched.get(family)
        if space is None:
            continue
        point = {f"{family}.{k}": v for k, v in params.items() if k in space.space}
        key = json.dumps([family, point], sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            covered.add(family)
            study.enqueue_trial({"family": family, **point})
    for space in spaces:
        if space.family not in covered and (space.first_trial or not space.space):
            study.enqueue_trial(
                {"family": space.family, **{f"{space.family}.{k}": v for k, v in space.first_trial.items()}}
            )


def _enqueue_promotions(
    study: optuna.Study,
    outcomes: list[TrialOutcome],
    searched_params: dict[int, dict[str, Any]],
    maximize: bool,
    screening: int,
) -> None:
    for outcome in promotions(outcomes, maximize, limit=math.ceil(screening / 3)):
        study.enqueue_trial(searched_params[outcome.number], user_attrs={_PROMOTED_FROM: outcome.number})


def optimize(
    spaces: list[FamilySpace],
    evaluate: Evaluate,
    settings: SearchSettings,
    *,
    maximize: bool,
    seed: int,
    on_trial: Callable[[TrialOutcome], None],
    storage: str | None = None,
    study_name: str | None = None,
    origin: str | Callable[[], str] | None = None,
    costs: Costs | None = None,
    subsample: float | None = None,
    deadline: Deadline | None = None,
    queued: Sequence[tuple[str, dict[str, Any]]] = (),
    prior: Sequence[tuple[str, dict[str, Any], float]] = (),
) -> list[TrialOutcome]:
    """Run the study and return every trial in it, sorted by number.

    A new study runs the ``queued`` configurations (family, params) first, then each other family's first
    trial (``_enqueue_first_trials``); the sampler explores from what they score and, under TPE, from
    ``prior``: a previous study's scored configurations (family, params, score), never stored in this one.

    ``settings.budget`` trials (the default) runs ``n_trials`` in batches of ``n_jobs`` (``run_batches``):
    the same seed and data give the same study on any machine under any load, and a study killed
    mid-batch resumes to the one an uninterrupted run makes. ``time`` lets Optuna's own threads run
    until the study's ``deadline``: what finishes first decides what is sampled next, so it is not
    reproducible.

    With ``storage`` (a URL, see ``storage_url``) the study is kept under ``study_name`` and resumed
    when it exists: its finished trials are returned as ``reused`` outcomes and count towards
    ``settings.n_trials``, which is the size of the whole study; only the missing trials run. A trial
    that an interruption stopped (or left running) is retried first. One process per study at a time.

    ``on_trial`` sees the reused trials first (from this thread), then each new one as it ends (from
    the thread that ran it). ``origin`` (or what it returns, asked as each trial ends: the run may still be
    being opened) is stored with each new trial and returned with it later.

    With several ``settings.objectives`` the study is multi-objective: ``costs`` gives each scored
    configuration's other objectives (minimised), the outcome carries them, and nothing is pruned.

    With ``subsample`` (a share, single-objective only), the study's first ``settings.subsample_trials``
    trials screen: ``evaluate`` fits them on that share of each training fold, they report nothing to
    the pruner (their fold scores are on another footing than a full trial's) and their outcomes carry
    the share. Once every screening trial has ended, the best screened configuration of each family
    (``promotions``) is queued to run again on all rows, so the search's cheap first look leads to
    full-fidelity trials of what looked best, whatever the sampler makes of the screened scores.
    """
    if settings.budget == "time" and deadline is None:
        raise ValueError("search.budget time needs the study's deadline")
    store = _open_storage(storage)
    extra = len(settings.objectives) - 1
    if extra and costs is None:
        raise ValueError(f"search.objectives {list(settings.objectives)} needs the trials' costs")
    informed_by = prior_trials(spaces, prior) if not extra else []  # a prior holds the score alone
    study = _create_study(store, study_name, settings, seed, maximize, _pruner(settings.pruner), informed_by)
    stored = study.get_trials(deepcopy=False)
    unfinished: list[optuna.Trial] = []  # a killed batch's trials, run again as themselves (search.budget trials)
    if stored:
        reused, unfinished = _resume(study, store, stored, rerun_running=settings.budget == "trials")
    else:
        reused = []
    trials = _Trials(spaces, evaluate, settings, costs=costs, subsample=subsample, origin=origin)
    # the steps those reported before the kill: Optuna keeps a step's first report (the same value)
    trials.reported_before = {t.number: set(t.intermediate_values) for t in stored if t.state == TrialState.RUNNING}
    screening = trials.screening
    searched_params = {t.number: dict(t.params) for t in stored}
    # trials a killed run left without a record: they ended, and a retry runs them on all rows
    abandoned = {
        t.number
        for t in stored
        if t.state in (TrialState.RUNNING, TrialState.FAIL)
        and _RECORD not in t.user_attrs
        and t.number not in {trial.number for trial in unfinished}
    }
    promoted = any(_PROMOTED_FROM in t.user_attrs for t in stored)
    promotion_lock = threading.Lock()
    if not stored:
        _enqueue_first_trials(study, spaces, queued)
    outcomes: list[TrialOutcome] = list(reused)
    for outcome in reused:
        on_trial(outcome)

    def promote_when_screened() -> None:
        nonlocal promoted
        with promotion_lock:
            ended = {o.number for o in outcomes} | abandoned
            if not promoted and screening and set(range(screening)) <= ended:
                promoted = True
                _enqueue_promotions(study, outcomes, searched_params, maximize, screening)

    promote_when_screened()  # a run killed between the last screening trial and its promotions
    sample, attempt = trials.sample, trials.attempt

    def record(trial: optuna.Trial, outcome: TrialOutcome) -> None:
        trial.set_user_attr(_RECORD, _record(outcome))
        searched_params[trial.number] = dict(trial.params)
        outcomes.append(outcome)
        on_trial(outcome)
        promote_when_screened()

    def objective(trial: optuna.Trial) -> float | list[float]:
        """search.budget time: Optuna's own loop runs this in its trial threads until the clock stops it."""
        outcome, value, ended = attempt(trial, *sample(trial))
        record(trial, outcome)
        if isinstance(ended, Pruned):
            if isinstance(ended, OutOfTime) and ended.final:
                trial.study.stop()
            raise optuna.TrialPruned()
        if ended is not None:
            raise ended
        return value

    def run_batches(count: int) -> None:
        """search.budget trials: ``count`` trials in batches of n_jobs. A batch is asked and sampled in
        trial order on this thread (the sampler reseeded from the trial count), evaluated in parallel
        with the pruner seeing only the trials before the batch, and told in trial order: what any trial
        sees depends on the seed and the data, never on which thread finished first."""
        with ThreadPoolExecutor(settings.n_jobs, thread_name_prefix="mlgate-trial") as pool:
            while count > 0 and not getattr(study.sampler, "covered", False):
                batch = []
                for _ in range(min(settings.n_jobs, count)):
                    if unfinished:
                        trial = unfinished.pop(0)
                    else:
                        trials_so_far = len(study.get_trials(deepcopy=False))
                        study.sampler = _sampler(settings, _sampler_seed(seed, trials_so_far), informed_by)
                        trial = study.ask()
                    batch.append((trial, *sample(trial)))
                count -= len(batch)
                before = _TrialsBefore(study, {trial.number for trial, *_ in batch})
                results = list(pool.map(lambda item, judged_by=before: attempt(*item, judged_by=judged_by), batch))
                for (trial, *_), (outcome, value, _ended) in zip(batch, results, strict=True):
                    record(trial, outcome)
                    study.tell(trial, value if outcome.state == "COMPLETE" else None, state=_TOLD[outcome.state])

    remaining = settings.n_trials - len(reused)
    if remaining > 0 and settings.budget == "time":
        study.optimize(
            # Optuna's own timeout is fixed when it starts: it may run to the reserve's end, and the objective
            # stops the study at the deadline as lent then (OutOfTime, final)
            objective,
            n_trials=remaining,
            timeout=deadline.reserve_left(),
            n_jobs=settings.n_jobs,
            catch=(Exception,),
        )
    elif remaining > 0:
        run_batches(remaining)
    return sorted(outcomes, key=lambda o: o.number)


# --- one study, several processes (search.workers, `mlgate worker`) -------------------------------

_JOB = "mlgate_job"  # the study's user attribute a worker reads: the coordinator's job description
_RUN = "mlgate_run"  # a distributed trial's MLflow run, so the run of a trial that died can be closed
_WORKER = "mlgate_worker"  # host:pid of the process that runs (or ran) a distributed trial
_MAX_RETRIES = 3  # a trial whose workers keep dying is retried this often, then left failed
POLL_S = 1.0  # how often the coordinator looks at the study
PATIENCE_BEATS = 30  # the study database may be unreachable for this many heartbeats (5 min by default)


def is_shared_storage(url: str) -> bool:
    """Whether processes on several machines can share a study stored at ``url``: PostgreSQL only
    (SQLite serialises writers and its file locks stop at the machine; trial claims need advisory locks)."""
    return url.split(":", 1)[0].split("+", 1)[0] in ("postgresql", "postgres")


@functools.cache
def _shared_storage(url: str, heartbeat_s: float) -> optuna.storages.RDBStorage:
    """The study's storage with heartbeats: a trial whose process stops beating for three intervals is
    failed by the next process that claims a trial, and a copy of it queued (optuna_hb_01). One per
    process and URL: each holds a pool of database connections."""
    if not is_shared_storage(url):
        raise ValueError(
            f"a study shared by several processes needs PostgreSQL, not {url.split(':', 1)[0]}: set paths.study to "
            "postgresql+psycopg://user@host:5432/db (SQLite allows one writer, on one machine)"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _SharedStorage(
            url,
            # a database restart drops the pooled connections; a cut network is noticed within 3 beats
            engine_kwargs={"pool_pre_ping": True, "connect_args": _tcp_timeouts(heartbeat_s)},
            heartbeat_interval=max(1, round(heartbeat_s)),
            grace_period=max(3, round(3 * heartbeat_s)),
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=_MAX_RETRIES),
        )


def _tcp_timeouts(heartbeat_s: float) -> dict[str, int | str]:
    """libpq's TCP settings for the study's connections: a peer silent for three heartbeats is gone (a cut
    network would otherwise hold a call for TCP's own timeout, about 15 minutes). A query that waits on a
    lock is not cut: the server's kernel still answers the keepalives. The server gets the same settings for
    the session (``options``): a worker cut off inside a transaction holds its row locks until the server
    ends its session, which by the server's own keepalives takes two hours, and every other process that
    touches that trial waits as long."""
    beat = max(1, round(heartbeat_s))
    interval, user_timeout_ms = max(1, beat // 2), max(10, 3 * beat) * 1000  # ms sent data may stay unacknowledged
    server_side = {
        "tcp_keepalives_idle": beat,
        "tcp_keepalives_interval": interval,
        "tcp_keepalives_count": 3,
        "tcp_user_timeout": user_timeout_ms,
    }
    return {
        "connect_timeout": max(2, 3 * beat),  # seconds
        "keepalives": 1,
        "keepalives_idle": beat,
        "keepalives_interval": interval,
        "keepalives_count": 3,
        "tcp_user_timeout": user_timeout_ms,
        "options": " ".join(f"-c {name}={value}" for name, value in server_side.items()),
    }


class _SharedStorage(optuna.storages.RDBStorage):
    """A missed heartbeat (the database restarting) is not fatal: Optuna's heartbeat thread ends at its
    first error, which would leave a live trial to be declared dead; the grace period decides instead."""

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            super().record_heartbeat(trial_id)
        except optuna.exceptions.StorageInternalError as error:
            log.warning("study database: a heartbeat of trial id %d was not recorded: %s", trial_id, _first_line(error))

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        """Optuna's (trials whose last heartbeat is older than the grace period), and a trial that never
        beat for a grace period of this process's watching: its claimer died, or lost the database,
        between claiming it and its first beat (claims beat at once, so only that instant leaves one).
        Timed by this process's own clock, from when it first saw the trial unbeaten: the claimer's clock,
        which stamped the trial's start, may be another machine's."""
        stale = super()._get_stale_trial_ids(study_id)
        with self.scoped_session() as session:
            unbeaten = {
                trial_id
                for (trial_id,) in session.query(models.TrialModel.trial_id)
                .outerjoin(models.TrialHeartbeatModel)
                .filter(models.TrialModel.study_id == study_id)
                .filter(models.TrialModel.state == TrialState.RUNNING)
                .filter(models.TrialHeartbeatModel.trial_id.is_(None))
            }
        now = time.monotonic()
        seen = self.__dict__.setdefault("_unbeaten_since", {})
        for trial_id in set(seen) - unbeaten:
            del seen[trial_id]
        for trial_id in unbeaten:
            seen.setdefault(trial_id, now)
        return stale + sorted(t for t in unbeaten if now - seen[t] >= (self.grace_period or 0))


def _first_line(error: BaseException) -> str:
    return str(error).split("\n")[0][:300]


def _patiently(action: Callable[[], Any], patience_s: float, what: str) -> Any:
    """``action()``, retried while the study database does not answer (a restart or a failover takes
    seconds), for ``patience_s`` at most; then StudyUnreachable says so instead of hanging."""
    import sqlalchemy as sa

    first = None
    while True:
        try:
            result = action()
        except (optuna.exceptions.StorageInternalError, sa.exc.OperationalError) as error:
            now = time.monotonic()
            if first is None:
                first = now
                log.warning(
                    "study database unreachable while %s, retrying for %.0fs: %s", what, patience_s, _first_line(error)
                )
            if now - first >= patience_s:
                raise StudyUnreachable(
                    f"the study database has not answered for {now - first:.0f}s (while {what}): {_first_line(error)}"
                ) from None
            time.sleep(min(2.0, patience_s / 10))
            continue
        if first is not None:
            log.warning("study database back after %.0fs", time.monotonic() - first)
        return result


class StudyUnreachable(ValueError):
    """The study's database did not answer for longer than the study's patience."""


@contextlib.contextmanager
def _claim_lock(store: optuna.storages.RDBStorage, study_name: str) -> Iterator[None]:
    """PostgreSQL's advisory lock on the study, held while a worker counts the claimed trials and asks
    for one, so that all workers together start exactly n_trials (Optuna's ask alone cannot say no)."""
    import sqlalchemy as sa

    key = int.from_bytes(hashlib.sha256(study_name.encode()).digest()[:8], "big", signed=True)
    with store.engine.connect() as connection:
        connection.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": key})
        connection.commit()
        try:
            yield
        finally:
            connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
            connection.commit()


def _claimed(trials: list) -> int:
    """Trials that count toward n_trials: running or finished with a record (one that died without
    one does not count: its retry, queued, does)."""
    return sum(
        t.state in (TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED)
        or (t.state == TrialState.FAIL and _RECORD in t.user_attrs)
        for t in trials
    )


def _fail_stale_trials(study: optuna.Study) -> None:
    """Fail the trials whose process stopped beating, and queue their retries (the storage's callback)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


@dataclass(frozen=True)
class SharedStudy:
    """What the workers of a shared study did: every recorded trial, sorted; each trial's MLflow run
    (by trial number); and the trials that died with their processes."""

    outcomes: list[TrialOutcome]
    runs: dict[int, str]
    dead: list[DeadTrial]


@dataclass(frozen=True)
class DeadTrial:
    """A distributed trial whose process stopped beating: failed by Optuna and queued again."""

    number: int
    run_id: str | None  # its MLflow run, left RUNNING by the dead process
    worker: str | None  # host:pid
    retried_as: int | None


def coordinate(
    spaces: list[FamilySpace],
    settings: SearchSettings,
    *,
    maximize: bool,
    seed: int,
    storage: str,
    study_name: str,
    job: dict[str, Any],
    on_trial: Callable[[TrialOutcome], None],
    workers_running: Callable[[], bool],
    subsample: float | None = None,
    deadline: Deadline | None = None,
    queued: Sequence[tuple[str, dict[str, Any]]] = (),
) -> SharedStudy:
    """Open the shared study, leave ``job`` (what a worker needs to join) in it, queue the first trials
    (``queued``, then each other family's first trial),
    then watch: each trial a worker records reaches ``on_trial``, the screening promotions are queued
    once the screening trials ended, and the wait ends when n_trials have a record, or after the
    ``deadline`` once nothing runs. ``workers_running`` tells whether the workers this process started
    still run: if they all stopped short of the budget, the study cannot end and ValueError says so.
    """
    store = _shared_storage(storage, settings.heartbeat_s)
    extra = len(settings.objectives) - 1
    patience = PATIENCE_BEATS * settings.heartbeat_s

    def open_study() -> tuple[optuna.Study, list]:
        study = _create_study(store, study_name, settings, seed, maximize)
        study.set_user_attr(_JOB, job)
        stored = study.get_trials(deepcopy=False)
        if not stored:
            _enqueue_first_trials(study, spaces, queued)
        return study, stored

    study, stored = _patiently(open_study, patience, "opening the study")
    earlier = {t.number for t in stored if _RECORD in t.user_attrs}
    screening = settings.subsample_trials if subsample is not None and not extra else 0
    promoted = any(_PROMOTED_FROM in t.user_attrs for t in stored)
    seen: dict[int, TrialOutcome] = {}

    def look() -> list:
        _fail_stale_trials(study)  # a worker that died mid-trial, when none is left to notice
        return study.get_trials(deepcopy=False)

    while True:
        trials = _patiently(look, patience, "watching the trials")
        for t in trials:
            if t.number not in seen and t.state.is_finished() and _RECORD in t.user_attrs:
                outcome = _from_record(t.number, t.user_attrs[_RECORD])
                seen[t.number] = outcome if t.number in earlier else dataclasses.replace(outcome, reused=False)
                on_trial(seen[t.number])
        ended = set(seen) | {t.number for t in trials if t.state == TrialState.FAIL}
        if not promoted and screening and set(range(screening)) <= ended:
            promoted = True
            searched = {t.number: dict(t.params) for t in trials}
            _enqueue_promotions(study, list(seen.values()), searched, maximize, screening)
        running = any(t.state == TrialState.RUNNING for t in trials)
        if len(seen) >= settings.n_trials and not running:
            break
        if deadline is not None and deadline.expired() and not running:
            break
        if not workers_running() and not running:
            raise ValueError(
                f"the study's workers stopped with {len(seen)} of {settings.n_trials} trials recorded "
                "(their output is above)"
            )
        time.sleep(POLL_S)
    runs = {t.number: t.user_attrs[_RUN] for t in trials if _RUN in t.user_attrs and t.number in seen}
    return SharedStudy(sorted(seen.values(), key=lambda o: o.number), runs, _dead_trials(trials))


def _tell(study: optuna.Study, trial: optuna.Trial, outcome: TrialOutcome, value: Any) -> None:
    trial.set_user_attr(_RECORD, _record(outcome))
    study.tell(trial, value if outcome.state == "COMPLETE" else None, state=_TOLD[outcome.state])


def _dead_trials(trials: list) -> list[DeadTrial]:
    retries = {
        t.system_attrs.get("failed_trial"): t.number for t in trials if t.system_attrs.get("failed_trial") is not None
    }
    return [
        DeadTrial(t.number, t.user_attrs.get(_RUN), t.user_attrs.get(_WORKER), retries.get(t.number))
        for t in trials
        if t.state == TrialState.FAIL and _RECORD not in t.user_attrs
    ]


def job_of(storage: str, study_name: str, heartbeat_s: float = 10.0) -> dict[str, Any] | None:
    """The job a coordinator left in the shared study, or None while there is no such study."""
    store = _shared_storage(storage, heartbeat_s)
    try:
        study = optuna.load_study(study_name=study_name, storage=store)
    except KeyError:
        return None
    return study.user_attrs.get(_JOB)


def studies(storage: str) -> list[str]:
    """The names of the studies stored at ``storage``, newest last."""
    return [
        s.study_name for s in optuna.get_all_study_summaries(_shared_storage(storage, 10.0), include_best_trial=False)
    ]


def work(
    spaces: list[FamilySpace],
    evaluate: Evaluate,
    settings: SearchSettings,
    *,
    maximize: bool,
    seed: int,
    storage: str,
    study_name: str,
    worker: str,
    on_start: Callable[[int], str | None],
    on_trial: Callable[[TrialOutcome], None],
    on_dropped: Callable[[int, str], None],
    costs: Costs | None = None,
    subsample: float | None = None,
    deadline: Deadline | None = None,
    max_trials: int | None = None,
) -> list[TrialOutcome]:
    """Join the shared study as one worker: claim a trial (``_claim_lock``), run it with a heartbeat,
    record and tell it, until the study holds n_trials claimed trials, the ``deadline`` passes or this
    worker ran ``max_trials``. ``on_start(number)`` is called as a trial starts and may return the id
    of the MLflow run made for it; ``worker`` (host:pid) is stored with the trial. A trial declared dead
    before this worker could name its run on it (the database away past the heartbeats' grace as it
    started) is left to its retry: ``on_dropped(number, why)`` closes that run. Returns this worker's
    trials."""
    from optuna.storages._heartbeat import get_heartbeat_thread  # what study.optimize wraps a trial in

    store = _shared_storage(storage, settings.heartbeat_s)
    patience = PATIENCE_BEATS * settings.heartbeat_s
    study = _patiently(
        functools.partial(optuna.load_study, study_name=study_name, storage=store, pruner=_pruner(settings.pruner)),
        patience,
        "joining the study",
    )
    job = _patiently(lambda: study.user_attrs[_JOB], patience, "joining the study")
    trials = _Trials(spaces, evaluate, settings, costs=costs, subsample=subsample, origin=job["parent_run"])
    done: list[TrialOutcome] = []

    def claim() -> optuna.Trial | None:
        _fail_stale_trials(study)
        with _claim_lock(store, study_name):
            stored = study.get_trials(deepcopy=False)
            if _claimed(stored) >= settings.n_trials or getattr(study.sampler, "covered", False):
                return None
            # reseeded from the study's size: workers asking one after another sample different points
            study.sampler = _sampler(settings, _sampler_seed(seed, len(stored)))
            with warnings.catch_warnings(), stop_deferred():  # a claimed trial beats (its death is seen)
                warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
                claimed = study.ask()  # the heartbeat is ours to run (below), as optimize would
                store.record_heartbeat(claimed._trial_id)
            return claimed

    while max_trials is None or len(done) < max_trials:
        if deadline is not None and deadline.expired():
            break
        trial = _patiently(claim, patience, "claiming a trial")
        if trial is None:
            break
        with get_heartbeat_thread(trial._trial_id, store):
            with stop_deferred():  # a trial with a run knows the run's id, so whoever retries it closes it
                try:
                    _patiently(functools.partial(trial.set_user_attr, _WORKER, worker), patience, "starting a trial")
                    run_id = on_start(trial.number)
                    if run_id:
                        _patiently(functools.partial(trial.set_user_attr, _RUN, run_id), patience, "starting a trial")
                except optuna.exceptions.UpdateFinishedTrialError:
                    on_dropped(trial.number, f"trial {trial.number} was declared dead as {worker} started it; retried")
                    continue
            outcome, value, ended = trials.attempt(trial, *trials.sample(trial))  # where a stop lands
        with stop_deferred():  # a trial told to the study is recorded too
            try:
                _patiently(functools.partial(_tell, study, trial, outcome, value), patience, "recording a trial")
            except optuna.exceptions.UpdateFinishedTrialError:
                # declared dead (a long pause without heartbeats) and queued again: the retry's result counts
                outcome = dataclasses.replace(outcome, state="FAIL", error="declared dead while it ran; retried")
            done.append(outcome)
            on_trial(outcome)
        if isinstance(ended, OutOfTime) and ended.final:
            break
    return done


@contextlib.contextmanager
def stop_deferred() -> Iterator[None]:
    """SIGTERM and Ctrl-C wait for the block to end, then act as they would have: a worker stops
    between a trial's bookkeeping steps, never inside them (a trial told COMPLETE whose run was never
    written, a run no trial names). A second signal stops at once. Outside the main thread: nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def defer(signum: int, frame: Any) -> None:
        if pending:  # asked twice: the user means it
            raise KeyboardInterrupt
        pending.append(signum)

    stops = (signal.SIGINT, signal.SIGTERM)
    previous = {stop: signal.signal(stop, defer) for stop in stops}
    try:
        yield
    finally:
        for stop, handler in previous.items():
            signal.signal(stop, signal.SIG_DFL if handler is None else handler)
    if pending:
        signal.raise_signal(pending[0])


def promotions(outcomes: list[TrialOutcome], maximize: bool, limit: int) -> list[TrialOutcome]:
    """The screened configurations to run again on all rows: the best complete screening trial of each
    family, best first, at most ``limit`` (a third of the screening trials, rounded up: the
    reduction factor of successive halving)."""
    screened = sorted(
        (
            o
            for o in outcomes
            if o.subsample is not None and o.state == "COMPLETE" and o.score is not None and math.isfinite(o.score)
        ),
        key=lambda o: o.score,
        reverse=maximize,
    )
    families: set[str] = set()
    return [o for o in screened if not (o.family in families or families.add(o.family))][:limit]


def _resume(
    study: optuna.Study, store: optuna.storages.BaseStorage, trials: list, rerun_running: bool
) -> tuple[list[TrialOutcome], list[optuna.Trial]]:
    """The finished trials of a stored study as outcomes, and the trials a killed process left running.

    ``rerun_running`` (the batched schedule): those are returned to be run again as themselves, same
    number and parameters, so that the resumed study is the one an uninterrupted run makes. Otherwise
    they fail and, like any trial an interruption stopped, are queued to run again as new trials.
    """
    retried = {t.user_attrs.get(_RETRY_OF) for t in trials}
    study_id = store.get_study_id_from_name(study.study_name)
    unfinished = []
    for trial in trials:
        trial_id = store.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        left_running = trial.state == TrialState.RUNNING  # by a killed process (one process per study)
        if left_running and rerun_running and _RECORD not in trial.user_attrs:
            unfinished.append(optuna.Trial(study, trial_id))
            continue
        if left_running:
            store.set_trial_state_values(trial_id, TrialState.FAIL)
        interrupted = trial.state in (TrialState.RUNNING, TrialState.FAIL) and _RECORD not in trial.user_attrs
        if interrupted and trial.number not in retried:
            study.enqueue_trial(dict(trial.params), user_attrs={_RETRY_OF: trial.number})
    return [
        _from_record(t.number, t.user_attrs[_RECORD])
        for t in trials
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL) and _RECORD in t.user_attrs
    ], unfinished


def _record(outcome: TrialOutcome) -> dict[str, Any]:
    return {
        "family": outcome.family,
        "params": outcome.params,
        "score": outcome.score,
        "folds": list(outcome.fold_scores),
        "state": outcome.state,
        "start": outcome.start,
        "end": outcome.end,
        "error": outcome.error,
        "origin": outcome.origin,
        "costs": list(outcome.costs),
        "subsample": outcome.subsample,
    }


def _from_record(number: int, record: dict[str, Any]) -> TrialOutcome:
    return TrialOutcome(
        number,
        record["family"],
        record["params"],
        record["score"],
        tuple(record["folds"]),
        record["state"],
        record["start"],
        record["end"],
        record["error"],
        reused=True,
        origin=record["origin"],
        costs=tuple(record.get("costs", ())),
        subsample=record.get("subsample"),
    )


def pareto_front(points: list[tuple[float, ...]], maximize_first: bool) -> list[bool]:
    """Which points no other point dominates: the score (first) maximised when ``maximize_first``,
    every other coordinate minimised."""
    signed = np.array([(-p[0] if maximize_first else p[0], *p[1:]) for p in points], dtype=float).reshape(
        len(points), -1
    )
    front = []
    for point in signed:
        dominated = np.any(np.all(signed <= point, axis=1) & np.any(signed < point, axis=1))
        front.append(not dominated)
    return front
