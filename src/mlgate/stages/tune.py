"""tune: an Optuna study over model families and their hyperparameters, scored by k-fold CV on train.

Reads the train split and params `model`, `search`, `features`, `seed`; writes paths.best_params (what `train`
refits) and paths.leaderboard. MLflow: one parent run `tune`, one nested run per trial. The parent is
opened on a thread of its own while the search starts (``tracking.stage_run_behind``): the search does not
wait for MLflow's import and store, and stops at its first trials if the run cannot be opened.

The study is kept in paths.study under a name that hashes everything a trial's score depends on
(data, model spaces, search method, folds, features, seed, metric, the scoring code), so a rerun
with the same inputs resumes it: the trials it holds are not run again, they count towards
search.n_trials (the size of the whole study; raise it to extend a study) and they are in the
leaderboard. Each trial is one MLflow run, under the parent of the run that ran it: a resumed
run's parent gets only the new trials as children, plus those an earlier run ran but never
logged (it was killed first), tagged `mlgate.reused`; it records the reused count and the earlier
parents (`mlgate.resumed_from`). A parent that a killed run (`kill -9`) left RUNNING is closed KILLED,
with its nested runs, by the next run (``tracking.close_dead_runs``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import math
import os
import pickle
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from mlgate import code_deps, config, console, files, project
from mlgate.adapters import optuna_study, tracking
from mlgate.cores import usable_cores
from mlgate.errors import StageError
from mlgate.modelling import clustering, ensemble, metrics, models
from mlgate.modelling.data import DataSpec, target_vector
from mlgate.modelling.features import FeatureSettings
from mlgate.modelling.task import Task
from mlgate.records import BestTrial, Finish, Member, SegmentationRecipe, TunedRecipe
from mlgate.registry import CHAMPION_ALIAS

STAGE = "tune"


@dataclass(frozen=True)
class TrialResult:
    """What a finished configuration leaves besides its score: its validation predictions (NaN on
    rows it did not validate; binary: the positive class's probability, multiclass: the (rows,
    classes) probability matrix, regression: the prediction), for the ensemble and calibration, and
    its costs, for the leaderboard."""

    predictions: np.ndarray
    fit_s: float  # mean per fold
    predict_ms_per_1k: float  # rows predicted per fold, per thousand
    size_mb: float  # the pickled fitted pipeline of the last fold
    folds: tuple[dict[str, float], ...] = ()  # per fold: score, fit_s, start, end (and trees)
    trees: float | None = None  # mean over folds of the trees an early-stopping model kept (CatBoost)


class _ByteCounter:
    def __init__(self):
        self.size = 0

    def write(self, chunk) -> int:
        size = memoryview(chunk).nbytes  # protocol 5 hands large arrays over as PickleBuffer
        self.size += size
        return size


def pickled_size(model: Any) -> int:
    """Bytes the model pickles to, counted as they stream: a large forest is never held twice."""
    counter = _ByteCounter()
    pickle.dump(model, counter, protocol=pickle.HIGHEST_PROTOCOL)
    return counter.size


def trial_key(family: str, params: dict[str, Any], subsample: float | None = None) -> str:
    """A configuration's key; a screened one (fit on a ``subsample`` of each fold) is another result."""
    identity = [family, params] if subsample is None else [family, params, subsample]
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


class CrossValidation:
    """The objective: holds the data and folds, so nothing is reloaded or re-split per trial.

    ``holdout`` scores every trial on one split (for large data, where k fits cost too much);
    ``deadline`` (the study's, under search.budget time) stops a trial before a fold that would end after it. A
    screening call (``subsample``) fits on a seeded share of each training fold, the same rows for
    every screening trial, and scores on the whole validation fold.
    Each completed configuration's ``TrialResult`` is kept in ``results`` (and in ``store_dir``,
    so a resumed study still has them).
    """

    def __init__(
        self,
        frame: pd.DataFrame,
        spec: DataSpec,
        folds: int,
        *,
        parallel_trials: int,
        seed: int,
        cores: int = 2,
        settings: FeatureSettings | None = None,
        holdout: float | None = None,
        deadline: optuna_study.Deadline | None = None,
        store_dir: Path | None = None,
        keep_models: bool = False,
        continuation: Continuation | None = None,
    ):
        self.X = frame[spec.features]
        self.continuation = continuation
        self._continued_from: dict[tuple[int, float | None], Any] = {}  # per fold and subsample: see ``_fitted``
        self.settings = settings
        self.y = target_vector(frame, spec)
        self.spec = spec
        self.parallel_trials = parallel_trials
        self.cores = cores
        self.seed = seed
        self.deadline = deadline
        self.store_dir = store_dir
        # one model per trial (holdout) and somewhere to keep it: what finish.refit may use instead of a refit
        self.keeps_models = keep_models and bool(holdout) and store_dir is not None
        rows = np.arange(len(frame))
        classify = spec.is_classification
        if spec.learning_task.scores_per_class:  # a class missing from a fold shortens its probability matrix
            _check_class_rows(self.y, spec, 2 if holdout else folds)
        if holdout:
            fit_rows, score_rows = train_test_split(
                rows, test_size=holdout, random_state=seed, stratify=self.y if classify else None
            )
            self.folds = [(np.sort(fit_rows), np.sort(score_rows))]
        else:
            splitter = (StratifiedKFold if classify else KFold)(n_splits=folds, shuffle=True, random_state=seed)
            self.folds = list(splitter.split(self.X, self.y))
        self.fold_of_row = np.full(len(frame), -1)
        for k, (_, score_rows) in enumerate(self.folds):
            self.fold_of_row[score_rows] = k
        if holdout:  # the finishing choices are cross-fitted: five groups of the holdout rows
            groups = np.random.default_rng(seed).integers(0, 5, len(frame))
            self.fold_of_row = np.where(self.fold_of_row >= 0, groups, -1)
        self.results: dict[str, TrialResult] = {}
        self._fold_seconds: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def __call__(
        self, family: str, params: dict[str, Any], report: Callable[[int, float], None], subsample: float | None = None
    ) -> tuple[float, list[float]]:
        scores, per_fold = [], []
        predictions = np.full(
            (len(self.y), len(self.spec.classes)) if self.spec.learning_task.scores_per_class else len(self.y), np.nan
        )
        predicted_rows = 0
        share = subsample or 1.0
        for step, (fit_rows, score_rows) in enumerate(self.folds):
            self._check_time(family, step, share)
            if subsample:
                fit_rows = self._subsample(fit_rows, subsample)
            threads = models.threads_for(family, self.cores, self.parallel_trials)
            with models.exclusive(family):
                started = time.time()
                model = self._fitted(family, params, fit_rows, (step, subsample), threads)
                fitted = time.time()
                # a forest's threaded sum over its trees differs in the last bit from run to run; the
                # served model predicts on one thread too
                models.serial_predictions(model)
                prediction, probability = models.predict(model, self.X.iloc[score_rows], self.spec.task)
                ended = time.time()
            predictions[score_rows] = probability if probability is not None else prediction
            predicted_rows += len(score_rows)
            scores.append(metrics.score(self.spec.metric, self.y[score_rows], prediction, probability))
            trees = models.trees(model)
            per_fold.append(
                {
                    "score": scores[-1],
                    "fit_s": fitted - started,
                    "predict_s": ended - fitted,
                    "start": started,
                    "end": ended,
                }
                | ({"trees": trees} if trees is not None else {})
            )
            with self._lock:  # as if on every row: a screening fold's time scaled up by its share
                self._fold_seconds.setdefault(family, []).append((ended - started) / share)
            report(step, scores[-1])
        kept = [f["trees"] for f in per_fold if "trees" in f]
        result = TrialResult(
            predictions,
            float(np.mean([f["fit_s"] for f in per_fold])),
            1e6 * sum(f["predict_s"] for f in per_fold) / predicted_rows,
            pickled_size(model) / 1e6,
            tuple(per_fold),
            float(np.mean(kept)) if kept else None,
        )
        key = trial_key(family, params, subsample)
        if self.keeps_models:
            self._keep_model(key, model)
        self._keep(key, result)
        return float(np.mean(scores)), scores

    def _fitted(
        self, family: str, params: dict[str, Any], fit_rows: np.ndarray, fold: tuple[int, float | None], threads: int
    ) -> Any:
        """A configuration's model fitted on ``fit_rows``. A boosting fit keeps the trees it has at the
        deadline. A continuation (``Continuation``) goes on from production's recipe fitted on the fold's
        rows production trained on (once per fold and subsample), on the fold's other rows."""
        stop_when = self._past_deadline if self.deadline is not None else None
        if family != models.CONTINUED:
            model = models.build(family, params, self.spec, self.settings, threads=threads, seed=self.seed)
            if stop_when is not None:
                models.stop_fit_when(model, stop_when)
            return model.fit(self.X.iloc[fit_rows], self.y[fit_rows])
        if self.continuation is None:
            raise ValueError(f"{models.CONTINUED} is searched only by a retraining that continues production's model")
        trained = self.continuation.trained[fit_rows]
        old_rows, new_rows = fit_rows[trained], fit_rows[~trained]
        if not len(old_rows) or not len(new_rows):
            raise ValueError(f"fold {fold[0]} holds {'no' if not len(old_rows) else 'only'} rows production trained on")
        if fold not in self._continued_from:  # under models.exclusive: one fit of it at a time
            base = models.build(
                "catboost", self.continuation.params, self.spec, self.settings, threads=threads, seed=self.seed
            )
            self._continued_from[fold] = base.fit(self.X.iloc[old_rows], self.y[old_rows])
        return models.continued(
            self._continued_from[fold],
            self.X.iloc[new_rows],
            self.y[new_rows],
            params,
            threads=threads,
            stop_when=stop_when,
        )

    def _past_deadline(self) -> bool:
        """Whether a fit should end now: the deadline passed and the study has a model to fall back on."""
        return self.deadline is not None and self.deadline.expired() and bool(self.results)

    def _keep_model(self, key: str, model: Any) -> None:
        assert self.store_dir is not None
        self.store_dir.mkdir(parents=True, exist_ok=True)
        staged = self.store_dir / f".{key}.{threading.get_ident()}.joblib"
        joblib.dump(models.settle_bytes(model), staged)
        os.replace(staged, self.store_dir / f"{key}.joblib")

    def kept_model(self, family: str, params: dict[str, Any], subsample: float | None = None) -> Path | None:
        """The file of the model a configuration fitted on the holdout's training rows (a screened one: on
        its ``subsample`` of them), if it was kept."""
        if not self.keeps_models:
            return None
        assert self.store_dir is not None
        path = self.store_dir / f"{trial_key(family, params, subsample)}.joblib"
        return path if path.exists() else None

    def fit_share(self, subsample: float | None = None) -> float:
        """The share of the rows a trial's model is fitted on (the first fold's, times a screened trial's
        ``subsample``), to estimate its refit on all of them."""
        return len(self.folds[0][0]) / len(self.y) * (subsample or 1.0)

    def _subsample(self, fit_rows: np.ndarray, share: float) -> np.ndarray:
        """A seeded ``share`` of a fold's training rows, stratified for classification."""
        classify = self.spec.is_classification
        kept, _ = train_test_split(
            fit_rows, train_size=share, random_state=self.seed, stratify=self.y[fit_rows] if classify else None
        )
        return np.sort(kept)

    def _check_time(self, family: str, step: int, share: float = 1.0) -> None:
        """Stop before a fold that would end past the deadline, judged by this family's folds so far
        (the slowest one, a parameter may change a fit's cost a lot; kept as if fit on every row and
        scaled to the ``share`` of rows this fold fits on). A family not seen yet is expected to cost
        what the slowest family seen did: on large data an unknown family's first fold, started near the
        deadline, overran it by most of a minute. Nothing stops before one configuration has completed:
        the study needs a model (a screened one will do: ``final_candidates``)."""
        if self.deadline is None or not self.results:
            return
        left = self.deadline.left()
        with self._lock:
            seen = [max(seconds) for seconds in self._fold_seconds.values()]
            own = self._fold_seconds.get(family)
        expected = (max(own) if own else max(seen, default=0.0)) * share
        cheapest = min(seen, default=0.0) * share
        if left < expected or self.deadline.expired():
            why = (
                f"a {family} fold takes up to {expected:.0f}s"
                if own
                else f"{family} has no fold yet, the slowest family's take up to {expected:.0f}s"
            )
            raise optuna_study.OutOfTime(
                f"stopped at the time budget after {step} of {len(self.folds)} folds ({left:.0f}s left, {why})",
                final=left < cheapest or self.deadline.expired(),
            )

    def _keep(self, key: str, result: TrialResult) -> None:
        with self._lock:
            self.results[key] = result
        if self.store_dir is not None:
            self.store_dir.mkdir(parents=True, exist_ok=True)
            staged = self.store_dir / f".{key}.{threading.get_ident()}.npz"
            np.savez(
                staged,
                predictions=result.predictions,
                costs=np.array([result.fit_s, result.predict_ms_per_1k, result.size_mb]),
                trees=np.array(np.nan if result.trees is None else result.trees),
            )
            os.replace(staged, self.store_dir / f"{key}.npz")

    def costs(self, objectives: Sequence[str], family: str, params: dict[str, Any]) -> list[float]:
        """A completed configuration's further objectives (search.objectives after the score), to minimise."""
        result = self.result(family, params)
        measured = {"predict_time": result.predict_ms_per_1k, "model_size": result.size_mb}
        return [measured[objective] for objective in objectives]

    def result(self, family: str, params: dict[str, Any], subsample: float | None = None) -> TrialResult | None:
        """The stored result of a configuration (screened on a ``subsample`` or not), from this run or
        (``store_dir``) an earlier one."""
        key = trial_key(family, params, subsample)
        if key not in self.results and self.store_dir is not None and (self.store_dir / f"{key}.npz").exists():
            with np.load(self.store_dir / f"{key}.npz") as stored:
                fit_s, predict_ms, size_mb = stored["costs"].tolist()
                trees = float(stored["trees"]) if "trees" in stored.files else math.nan
                self.results[key] = TrialResult(
                    stored["predictions"], fit_s, predict_ms, size_mb, trees=None if math.isnan(trees) else trees
                )
        return self.results.get(key)


def _check_class_rows(y: np.ndarray, spec: DataSpec, folds: int) -> None:
    """Stratified folds need each class in every fold: a class with fewer train rows than folds
    would leave a fold's model without it (and its probability columns one short)."""
    labels = spec.classes
    counts = np.bincount(y, minlength=len(labels))
    rare = [(labels[k], int(n)) for k, n in enumerate(counts) if n < folds]
    if rare:
        listed = ", ".join(f"'{label}' ({n} row{'s' if n != 1 else ''})" for label, n in rare)
        raise StageError(
            f"target '{spec.target}': class(es) {listed} of the train split have fewer rows than the "
            f"{folds} stratified folds (search.cv_folds); merge or drop the class, or lower search.cv_folds"
        )


def trial_table(
    outcomes: list[optuna_study.TrialOutcome], maximize: bool, objectives: tuple[str, ...] = ("score",)
) -> pd.DataFrame:
    """Every trial: family, state, CV score and spread, time, parameters, error, the share of rows a
    screening trial fit on; best complete first. A multi-objective study adds each cost and whether
    the trial is on the Pareto front."""
    rows = [
        {
            "trial": o.number,
            "family": o.family,
            "state": o.state,
            "cv_score": o.score,
            "cv_std": float(np.std(o.fold_scores)) if o.fold_scores else None,
            "folds": len(o.fold_scores),
            "duration_s": round(o.end - o.start, 3),
            "params": json.dumps(o.params, sort_keys=True),
            "error": o.error,
            "reused": o.reused,
            "subsample": o.subsample,
        }
        for o in outcomes
    ]
    board = pd.DataFrame(
        rows,
        columns=[
            "trial",
            "family",
            "state",
            "cv_score",
            "cv_std",
            "folds",
            "duration_s",
            "params",
            "error",
            "reused",
            "subsample",
        ],
    )
    costs = objectives[1:]
    for k, cost in enumerate(costs):
        board[cost] = [o.costs[k] if len(o.costs) == len(costs) else None for o in outcomes]
    board["complete"] = board["state"] == "COMPLETE"
    if costs:
        scored = board["complete"] & board[list(costs)].notna().all(axis=1)
        board["pareto"] = False
        points = [tuple(row) for row in board.loc[scored, ["cv_score", *costs]].itertuples(index=False)]
        board.loc[scored, "pareto"] = optuna_study.pareto_front(points, maximize) if points else []
    board = board.sort_values(["complete", "cv_score"], ascending=[False, not maximize], na_position="last")
    return board.drop(columns="complete").reset_index(drop=True)


def final_candidates(outcomes: list[optuna_study.TrialOutcome]) -> list[optuna_study.TrialOutcome]:
    """The complete trials the final model may be built from: those fit on every row. A screening
    trial's score and predictions come from a model fit on a share of the rows (worse, and not what
    `train` refits), so it is one only when the budget ended before any trial ran on every row."""
    complete = [o for o in outcomes if o.state == "COMPLETE" and o.score is not None and np.isfinite(o.score)]
    return [o for o in complete if o.subsample is None] or complete


def best(outcomes: list[optuna_study.TrialOutcome], maximize: bool) -> optuna_study.TrialOutcome:
    """The best trial of ``final_candidates``."""
    complete = final_candidates(outcomes)
    if not complete:
        failed = [o for o in outcomes if o.state == "FAIL"]
        detail = f"; first failure: trial {failed[0].number} ({failed[0].family}): {failed[0].error}" if failed else ""
        raise StageError(f"no trial completed out of {len(outcomes)}{detail}")
    return (max if maximize else min)(complete, key=lambda o: o.score)


@dataclass(frozen=True)
class TuneSettings:
    """The params this stage reads, parsed once. ``identity`` holds the sections a trial's score depends
    on, as params.yaml writes them, for the study's name; the budget's size (n_trials, timeout_s) and the
    run layout (fold_runs) are left out, so a rerun with a larger budget extends the same study. Under
    search.budget trials the batch size (n_jobs) decides what each trial sees, so it is part of the study;
    under time the clock already does, and n_jobs is left out too. ``logged``: search.* and finish.* as
    written, the tune run's params."""

    search: optuna_study.SearchSettings
    finish: ensemble.FinishSettings
    features: FeatureSettings
    spaces: tuple[optuna_study.FamilySpace, ...]
    maximize: bool
    seed: int
    data_name: str
    identity: dict[str, Any]
    logged: dict[str, Any]
    warm: WarmStart | None = None  # set by ``warm_started``
    # conf/portfolio/: configurations known to do well across datasets, queued after a warm start's
    portfolio: tuple[tuple[str, dict[str, Any]], ...] = ()

    @property
    def queued(self) -> tuple[tuple[str, dict[str, Any]], ...]:
        """What the study runs before any exploration: a retraining's configurations, the first trial of
        each family they do not cover, then the portfolio's (it adds to the first trials, which cover
        every family at a known cost, rather than replacing them)."""
        warm = self.warm.queued if self.warm else ()
        covered = {family for family, _ in warm}
        firsts = tuple(
            (s.family, dict(s.first_trial))
            for s in self.spaces
            if s.family not in covered and (s.first_trial or not s.space)
        )
        return (warm + firsts + self.portfolio) if self.portfolio else warm

    @classmethod
    def parse(cls, params: dict[str, Any], spec: DataSpec) -> TuneSettings:
        try:
            search = config.load(optuna_study.SearchSettings, "search", params)
            finish_settings = config.load(ensemble.FinishSettings, "finish", params)
            spaces = optuna_study.parse_spaces(config.section(params, "model"), task=spec.task)
            maximize = metrics.get(spec.metric, spec.task).greater_is_better
            portfolio = portfolio_configurations(params.get("portfolio"))
            _check_finish(finish_settings, spec.learning_task)
            if "n_clusters" in search.objectives:
                raise ValueError("search.objectives: n_clusters applies to a clustering task")
            segmenting = [s.family for s in spaces if s.family in clustering.FAMILIES]
            if segmenting:
                raise ValueError(
                    f"model {segmenting} are clustering families; a {spec.task} task searches {sorted(models.FAMILIES)}"
                )
        except config.ConfigError:
            raise
        except ValueError as error:
            raise StageError(f"params.yaml: {error}") from error
        written = {name: config.section(params, name) for name in ("model", "search", "finish", "features")}
        # warm_start decides the queued configurations, which ``warm_started`` puts in the identity itself
        budget_keys = (
            "n_trials",
            "timeout_s",
            "fold_runs",
            "workers",
            "heartbeat_s",
            "warm_start",
            "warm_start_trials",
            "warm_start_continue",
        ) + (("n_jobs",) if search.budget == "time" or search.distributed else ())
        seed = project.seed(params)
        # the portfolio decides what runs first, so it is part of the study; none leaves the name as it was
        queued = {"portfolio": [list(entry) for entry in portfolio]} if portfolio else {}
        return cls(
            search=search,
            finish=finish_settings,
            features=config.load(FeatureSettings, "features", params),
            spaces=tuple(spaces),
            maximize=maximize,
            seed=seed,
            data_name=config.section(params, "data.name"),
            identity={
                "model": written["model"],
                "search": {k: v for k, v in written["search"].items() if k not in budget_keys},
                "features": written["features"],
                "seed": seed,
                "metric": config.section(params, "data.metric"),
            }
            | queued,
            logged={f"search.{k}": v for k, v in written["search"].items()}
            | {f"finish.{k}": v for k, v in written["finish"].items()}
            | ({"portfolio.configurations": len(portfolio)} if portfolio else {}),
            portfolio=portfolio,
        )


def portfolio_configurations(section: dict[str, Any] | None) -> tuple[tuple[str, dict[str, Any]], ...]:
    """Pure: params.yaml `portfolio:` (conf/portfolio/) as (family, params) pairs, in order; none without it."""
    entries = (section or {}).get("configurations") or []
    if not isinstance(entries, list):
        raise ValueError("portfolio.configurations must be a list of {family, params}")
    pairs = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or set(entry) != {"family", "params"} or not isinstance(entry["params"], dict):
            raise ValueError(f"portfolio.configurations[{index}] must hold exactly family and params (a mapping)")
        if entry["family"] not in models.FAMILIES:
            raise ValueError(
                f"portfolio.configurations[{index}].family: '{entry['family']}' is not one of {sorted(models.FAMILIES)}"
            )
        pairs.append((str(entry["family"]), dict(entry["params"])))
    return tuple(pairs)


@dataclass(frozen=True)
class WarmStart:
    """A retraining's head start: the `production` version whose study it starts from, the
    configurations (family, params) queued before any exploration, that study's best trial first, and
    all of that study's scored configurations (family, params, score), which the sampler learns from."""

    version: int
    tune_run: str
    configs: tuple[tuple[str, dict[str, Any]], ...]
    observations: tuple[tuple[str, dict[str, Any], float], ...] = ()
    continuation: Continuation | None = None

    @property
    def queued(self) -> tuple[tuple[str, dict[str, Any]], ...]:
        """The configurations first, then the continuation's first trial."""
        going_on = ((models.CONTINUED, dict(CONTINUATION_FIRST_TRIAL)),) if self.continuation else ()
        return self.configs + going_on


# A continuation's search space: the trees it adds to production's CatBoost model and their learning rate;
# its first trial adds a few slow trees, the cautious choice for a model that already fits the old rows.
CONTINUATION_SPACE = {
    "iterations": {"type": "int", "low": 20, "high": 1000, "log": True},
    "learning_rate": {"type": "float", "low": 0.003, "high": 0.3, "log": True},
}
CONTINUATION_FIRST_TRIAL = {"iterations": 100, "learning_rate": 0.03}


@dataclass(frozen=True)
class Continuation:
    """Production's CatBoost model, which a retraining may go on training on the rows it never saw
    (``models.CONTINUED``): its version, its place among the final model's members, the params it was
    fitted with and, per train row, whether it trained on it. A trial cannot use production's model
    itself, which saw rows of every validation fold: per fold it refits those params on the fold's rows
    production trained on, and goes on from there on the fold's other rows. `train` then goes on from
    production's model on every train row it never saw."""

    version: int
    member: int
    params: dict[str, Any]
    trained: np.ndarray  # bool per train row

    @property
    def recorded(self) -> dict[str, Any]:
        """What the recipe records of it (study.warm_start.continuation), which `train` goes by."""
        return {"version": self.version, "member": self.member, "new_rows": int((~self.trained).sum())}


def _scored(trials: pd.DataFrame, families: set[str]) -> pd.DataFrame:
    """A study's trials.csv kept to its complete full-fidelity trials of the families still searched."""
    done = trials[(trials["state"] == "COMPLETE") & trials["family"].isin(families)]
    if "subsample" in done:
        done = done[done["subsample"].isna()]  # a screened score is on another footing
    return done


def warm_configs(trials: pd.DataFrame, families: set[str], count: int, maximize: bool) -> list[tuple[str, dict]]:
    """Pure: a study's trials.csv reduced to its best complete full-fidelity configurations of the families
    still searched, best first, each once, at most ``count``."""
    done = _scored(trials, families).sort_values("cv_score", ascending=not maximize, kind="stable")
    configs: list[tuple[str, dict]] = []
    for family, text in zip(done["family"], done["params"], strict=True):
        config_ = (family, json.loads(text))
        if config_ not in configs:
            configs.append(config_)
        if len(configs) == count:
            break
    return configs


def warm_observations(trials: pd.DataFrame, families: set[str]) -> list[tuple[str, dict, float]]:
    """Pure: a study's trials.csv as the scored configurations (family, params, score) a warm search's
    sampler learns from, in trial order."""
    done = _scored(trials, families)
    return [
        (family, json.loads(text), float(score))
        for family, text, score in zip(done["family"], done["params"], done["cv_score"], strict=True)
    ]


def warm_started(
    settings: TuneSettings, model: str, trials_file: str, train: pd.DataFrame, recipe_file: str
) -> TuneSettings:
    """``settings`` with the warm start search.warm_start asks for: the configurations of the study behind
    the version holding `production` (the tune run its train run names, its trials.csv), which become
    part of the study's identity, and (search.warm_start_continue) production's CatBoost model going on
    training on the rows of ``train`` it never saw, searched as a family of its own. Without a production
    version, or one whose study mlgate cannot find, the search is cold, and says so."""
    if not settings.search.warm_start:
        return settings
    held = tracking.version_by_alias(model, CHAMPION_ALIAS)
    tune_run = tracking.run_tags(held.run_id).get(tracking.TUNE_RUN_TAG) if held is not None and held.run_id else None
    trials = None
    if tune_run is not None:
        with tempfile.TemporaryDirectory() as scratch:
            found = tracking.download_artifact_if_logged(tune_run, Path(trials_file).name, scratch)
            trials = None if found is None else pd.read_csv(found)
    if trials is None:
        why = "no version holds 'production'" if held is None else f"v{held.version}'s study is not on record"
        console.say(STAGE, f"search.warm_start: {why}; a cold search")
        return settings
    families = {space.family for space in settings.spaces}
    configs = warm_configs(trials, families, settings.search.warm_start_trials, settings.maximize)
    if not configs:
        console.say(STAGE, f"search.warm_start: v{held.version}'s study has no complete trial of {sorted(families)}")
        return settings
    # only TPE learns from a previous study's scores; the other samplers get the queue alone
    observations = tuple(warm_observations(trials, families)) if settings.search.sampler == "tpe" else ()
    continuation = _continuation(held, train, recipe_file) if settings.search.warm_start_continue else None
    warm = WarmStart(held.version, tune_run, tuple(configs), observations, continuation)
    # the sampler's prior decides what is sampled, so it is part of the study's identity like the queue
    identity = settings.identity | {"warm": [list(c) for c in configs], "prior": [list(o) for o in observations]}
    if continuation is None:
        return dataclasses.replace(settings, warm=warm, identity=identity)
    identity["continue"] = continuation.recorded | {
        "params": continuation.params,
        "trained": hashlib.sha256(np.packbits(continuation.trained).tobytes()).hexdigest(),
    }
    (space,) = optuna_study.parse_spaces({models.CONTINUED: {"space": CONTINUATION_SPACE}})
    return dataclasses.replace(settings, warm=warm, identity=identity, spaces=(*settings.spaces, space))


def _continuation(held: tracking.ModelVersion, train: pd.DataFrame, recipe_file: str) -> Continuation | None:
    """Production's CatBoost model as a continuation can use it: the heaviest CatBoost member of its final
    model, with the rows it trained on told apart in ``train``; None, saying why, when there is none."""
    why = None
    with tempfile.TemporaryDirectory() as scratch:
        found = tracking.download_artifact_if_logged(held.run_id, f"finish/{Path(recipe_file).name}", scratch)
        recipe = None if found is None else TunedRecipe.from_json(found)
    trained = tracking.trained_rows(held.run_id)
    members = [] if recipe is None else [(i, m) for i, m in enumerate(recipe.finish.members) if m.family == "catboost"]
    told = None if trained is None else trained.holds(train)
    if recipe is None or trained is None:
        why = (
            f"v{held.version}'s train run kept no {'recipe' if recipe is None else 'record of the rows it trained on'}"
        )
    elif not members:
        why = f"v{held.version} ({recipe.family}) holds no CatBoost model trained from scratch"
    elif told is None:
        why = f"the train split lacks a column v{held.version} trained on"
    elif told.all() or not told.any():
        why = f"{'every' if told.all() else 'no'} train row is one v{held.version} trained on"
    if why is not None:
        console.say(STAGE, f"search.warm_start_continue: {why}; production's model is not continued")
        return None
    index, member = max(members, key=lambda pair: pair[1].weight)
    return Continuation(held.version, index, dict(member.params), told)


@dataclass(frozen=True)
class StudyPlan:
    """Which stored study the trials belong to and how they are validated: decided by the settings and
    the size of the train split."""

    name: str
    storage: str  # paths.study: a file or a database URL
    holdout: float | None  # the validation share of one holdout split, or None: k-fold CV
    screening: float | None  # the share of each training fold the first trials fit on (``screening_share``)

    @classmethod
    def of(cls, settings: TuneSettings, train: pd.DataFrame, storage: str) -> StudyPlan:
        search = settings.search
        return cls(
            name=study_name(settings, train),
            storage=storage,
            holdout=search.holdout_share if use_holdout(search, len(train)) else None,
            screening=screening_share(search, len(train)),
        )


@dataclass(frozen=True)
class Search:
    """What the study did: every trial in it (reused ones included), the seconds it searched, and the CPU
    its trial runs' writer spent."""

    outcomes: list[optuna_study.TrialOutcome]
    seconds: float
    recorder_cpu_s: float = 0.0

    @property
    def reused(self) -> int:
        return sum(o.reused for o in self.outcomes)


@dataclass(frozen=True)
class TuneResult:
    """What a tune run hands its caller (`mlgate tune`, AutoML's fit): the recipe and the run behind it."""

    recipe: TunedRecipe
    run_id: str
    tracking_s: float  # seconds the stage waited on tracking calls
    reused_trials: int
    search_s: float = 0.0  # the search's wall seconds
    lent_s: float = 0.0  # of the refit's reserve, the seconds the search was lent (``RefitReserve``)
    tracking_behind_cpu_s: float = 0.0  # CPU seconds of the tracking done off the stage's path (opening, trial runs)
    finish_s: float = 0.0  # choosing the ensemble, its calibration and threshold, after the search


def study_name(settings: TuneSettings, train: pd.DataFrame) -> str:
    """`<data name>-<hash>` of everything a trial's score depends on: ``settings.identity``, the train
    split and the code."""
    inputs = settings.identity | {
        "data": hashlib.sha256(pd.util.hash_pandas_object(train, index=True).to_numpy().tobytes()).hexdigest(),
        # every module of ours this stage runs (the same closure dvc.yaml lists): a change to how a
        # trial is computed starts a new study instead of resuming a stored one
        "code": code_deps.closure_digest(__name__),
    }
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"{settings.data_name}-{digest}"


def _trial_record(
    o: optuna_study.TrialOutcome, metric: str, *, fold_runs: bool = False, result: TrialResult | None = None
) -> tracking.TrialRecord:
    status = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}[o.state]
    tags = {"mlgate.trial_state": o.state, "mlgate.trial": str(o.number)}
    if o.reused:
        tags["mlgate.reused"] = "true"
    if o.subsample is not None:
        tags["mlgate.subsample"] = str(o.subsample)
    if o.error:
        tags["mlgate.error"] = o.error[:4000]
    trial_metrics = {"duration_s": o.end - o.start, "cv/folds_run": len(o.fold_scores)}
    if o.score is not None:
        trial_metrics[f"cv/{metric}"] = o.score
    if result is not None:
        trial_metrics |= {
            "fit_s": result.fit_s,
            "predict_ms_per_1k": result.predict_ms_per_1k,
            "size_mb": result.size_mb,
        }
        if result.trees is not None:
            trial_metrics["trees"] = result.trees
    children = ()
    if fold_runs:  # study → trial → fold; timings where the fold finished in this run
        timed = result.folds if result is not None and len(result.folds) == len(o.fold_scores) else ()
        children = tuple(
            tracking.TrialRecord(
                name=f"fold-{k}",
                params={"fold": k},
                tags={"mlgate.fold": str(k)},
                status="FINISHED",
                fold_metrics={},
                metrics={f"cv/{metric}": score}
                | ({key: timed[k][key] for key in ("fit_s", "predict_s", "trees") if key in timed[k]} if timed else {}),
                start_ms=int((timed[k]["start"] if timed else o.start) * 1000),
                end_ms=int((timed[k]["end"] if timed else o.end) * 1000),
            )
            for k, score in enumerate(o.fold_scores)
        )
    return tracking.TrialRecord(
        name=f"trial-{o.number:03d}-{o.family}",
        params={"family": o.family, **o.params},
        metrics=trial_metrics,
        fold_metrics={f"cv/{metric}_fold": list(o.fold_scores)},
        tags=tags,
        status=status,
        start_ms=int(o.start * 1000),
        end_ms=int(o.end * 1000),
        children=children,
    )


class _LoggedTrials:
    """Which reused trials already have their MLflow run: the children of the parent that ran them."""

    def __init__(self):
        self.by_parent: dict[str, set[int]] = {}

    def contains(self, outcome: optuna_study.TrialOutcome) -> bool:
        parent = outcome.origin
        if parent is None:
            return False
        if parent not in self.by_parent:
            children = tracking.child_runs(parent) if tracking.run_exists(parent) else []
            self.by_parent[parent] = {int(c["tags"]["mlgate.trial"]) for c in children if "mlgate.trial" in c["tags"]}
        return outcome.number in self.by_parent[parent]


class Progress:
    """A progress bar on the terminal: trials done, best so far, time left of the budget."""

    def __init__(self, trials: int, metric: str, maximize: bool, deadline: optuna_study.Deadline | None):
        self.bar = tqdm(
            total=trials,
            desc=f"{STAGE:<{console.STAGE_WIDTH}} ",
            unit="trial",
            leave=False,
            disable=None,
            bar_format="{desc}{bar:24} {n_fmt}/{total_fmt} trials{postfix}",
        )
        self.metric, self.maximize, self.deadline = metric, maximize, deadline
        self.best: float | None = None
        self.counts = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0}
        self.lock = threading.Lock()

    def update(self, outcome: optuna_study.TrialOutcome) -> None:
        with self.lock:
            self.counts[outcome.state] += 1
            if outcome.state == "COMPLETE" and (self.best is None or (outcome.score > self.best) == self.maximize):
                self.best = outcome.score
            best = "-" if self.best is None else f"{self.best:.4f}"
            left = "" if self.deadline is None else f" · {self.deadline.left():.0f}s left"
            self.bar.set_postfix_str(f"best {self.metric} {best}{left}", refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def budget_record(settings: optuna_study.SearchSettings, finish_settings: ensemble.FinishSettings) -> dict[str, Any]:
    """What bounded the search, for best_params.json, and whether the same seed and data give the same
    file again: not when a clock decided (search.budget time, or finish.refit_budget_s, which keeps
    ensemble members by their measured fit times)."""
    if settings.budget == "trials":
        record: dict[str, Any] = {"kind": "trials", "n_trials": settings.n_trials}
        record |= {"workers": settings.workers} if settings.distributed else {"batch": settings.n_jobs}
    else:
        record = {"kind": "time", "timeout_s": settings.timeout_s} | (
            {"workers": settings.workers} if settings.distributed else {}
        )
    clocks = (
        (["search.budget is time: what finished first decided what ran next"] if settings.budget == "time" else [])
        + (
            [f"search.workers {settings.workers}: the processes' trials end in whatever order they run"]
            if settings.distributed
            else []
        )
        + (
            []
            if finish_settings.refit_budget_s is None
            else ["finish.refit_budget_s keeps ensemble members by their measured fit times"]
        )
    )
    return record | {"reproducible": not clocks} | ({"why": "; ".join(clocks)} if clocks else {})


def _deadline(settings: TuneSettings) -> optuna_study.Deadline | None:
    """search.budget time: the search's clock, started now (search.timeout_s is the search's own time, so it
    starts once the tracking is set up). With finish.refit_budget_s, that many seconds follow it for train's
    refit, and a single-process search may go on into what the refit will not need (``RefitReserve``)."""
    if settings.search.budget != "time":
        return None
    refit_s = settings.finish.refit_budget_s
    lendable = refit_s is not None and not settings.search.distributed  # a worker's clock is fixed when it starts
    return optuna_study.Deadline.after(settings.search.timeout_s, reserve=refit_s if lendable else 0.0)


class RefitReserve:
    """The refit's reserve (finish.refit_budget_s after search.timeout_s), lent to the search as trials end.

    A fixed reserve went mostly unused: at a 120 s budget `automl.fit` refitted in 0.1-2.2 s of the 14.4 s
    kept for it and ended at 83-86% of the budget. After each trial the search is lent the reserve less an
    upper bound on train's refit of any ensemble the finish could choose from the trials so far: it chooses
    at most finish.max_members of each family's best and the best finish.ensemble_candidates, so the bound
    is the max_members slowest of those, each trial's mean fold fit scaled to every row. The finish itself
    is unchanged (its pool is still capped by finish.refit_budget_s), and whatever it chooses refits within
    what is left of the reserve."""

    def __init__(
        self,
        deadline: optuna_study.Deadline,
        objective: CrossValidation,
        settings: ensemble.FinishSettings,
        maximize: bool,
    ):
        self.deadline, self.objective, self.settings, self.maximize = deadline, objective, settings, maximize
        self._scored: list[tuple[float, str, float]] = []  # (score, family, refit estimate in seconds)
        self._seen: set[tuple[str, str, float | None]] = set()
        self._lock = threading.Lock()

    def update(self, outcome: optuna_study.TrialOutcome) -> None:
        if not self.deadline.reserve or outcome.state != "COMPLETE" or outcome.score is None:
            return
        configuration = (outcome.family, json.dumps(outcome.params, sort_keys=True, default=str), outcome.subsample)
        result = self.objective.result(outcome.family, outcome.params, outcome.subsample)
        estimate = result.fit_s / self.objective.fit_share(outcome.subsample)
        with self._lock:
            if configuration in self._seen:  # a re-run of a configuration: the finish drops it too
                return
            self._seen.add(configuration)
            self._scored.append((outcome.score, outcome.family, estimate))
            needed = self.refit_bound()
        self.deadline.lend(self.deadline.reserve - needed)

    def refit_bound(self) -> float:
        """Seconds: no ensemble the finish can choose from the trials so far refits for longer."""
        ranked = sorted(self._scored, key=lambda scored: scored[0], reverse=self.maximize)
        candidates = ranked[: self.settings.ensemble_candidates]
        seen = {family for _, family, _ in candidates}
        for scored in ranked[self.settings.ensemble_candidates :]:
            if scored[1] not in seen:
                candidates.append(scored)
                seen.add(scored[1])
        return sum(sorted((estimate for *_, estimate in candidates), reverse=True)[: self.settings.max_members])


def _refit_left(settings: ensemble.FinishSettings, deadline: optuna_study.Deadline | None) -> ensemble.FinishSettings:
    """The finish's refit budget: what is left of the refit's reserve when the search ends. A last fold
    that ran past the deadline, or a loaded machine, leaves the refit less than finish.refit_budget_s,
    and the refit was the whole run's overrun (a 30 s budget's run ended at 33 s)."""
    if deadline is None or not deadline.reserve or settings.refit_budget_s is None:
        return settings
    return dataclasses.replace(settings, refit_budget_s=min(settings.refit_budget_s, deadline.reserve_left()))


def use_holdout(settings: optuna_study.SearchSettings, rows: int) -> bool:
    return settings.validation == "holdout" or (settings.validation == "auto" and rows >= settings.holdout_above_rows)


def screening_share(settings: optuna_study.SearchSettings, rows: int) -> float | None:
    """The share of each training fold the study's first trials fit on, or None: only on large data,
    and only in a single-objective study (a screened model's costs are not a full one's)."""
    wanted = settings.subsample_trials > 0 and rows >= settings.subsample_above_rows and len(settings.objectives) == 1
    return settings.subsample_share if wanted else None


def finish(
    outcomes: list[optuna_study.TrialOutcome],
    objective: CrossValidation,
    spec: DataSpec,
    settings: ensemble.FinishSettings,
) -> Finish:
    """The ensemble (or the best trial), its calibration and decision threshold, chosen on the
    validation predictions of ``final_candidates``; `train` builds the model from it: each member's
    params are what it refits (``models.refit_params``)."""
    # small linear algebra, where more BLAS threads only wait on each other: beside two busy processes a
    # multiclass finish took 12.9 s
    with threadpool_limits(limits=1):
        return _finish(outcomes, objective, spec, settings)


def _finish(
    outcomes: list[optuna_study.TrialOutcome],
    objective: CrossValidation,
    spec: DataSpec,
    settings: ensemble.FinishSettings,
) -> Finish:
    greater = metrics.METRICS[spec.metric].greater_is_better
    candidates = [
        ensemble.Candidate(
            o.number,
            o.family,
            models.refit_params(o.family, o.params, r.trees),
            o.score,
            r.predictions,
            r.fit_s / objective.fit_share(o.subsample),
        )
        for o in final_candidates(outcomes)
        if (r := objective.result(o.family, o.params, o.subsample)) is not None
    ]
    unchosen = {"calibration": None, "calibration_log_loss": {}, "threshold": {"objective": "none", "threshold": 0.5}}
    if not candidates:  # trials of a study stored before their predictions were kept: the best one alone
        winner = best(outcomes, greater)
        return Finish(
            method="single",
            combiner=None,
            cv_score=winner.score,
            scores={"single": winner.score},
            members=(Member(winner.number, winner.family, winner.params, 1.0),),
            skipped=_skipped(spec),
            **unchosen,
        )
    validated = objective.fold_of_row >= 0
    y, folds = objective.y[validated], objective.fold_of_row[validated]
    choice = ensemble.choose_ensemble(
        candidates,
        objective.y,
        objective.fold_of_row,
        task=spec.task,
        metric=spec.metric,
        settings=settings,
        models_kept=objective.keeps_models,
    )
    weights = ensemble.member_weights(choice.combiner)
    trials = {o.number: o for o in outcomes}
    estimates = [_refit_estimate(objective, m, trials[m.trial]) for m in choice.members]
    refit = ensemble.refits(estimates, weights, settings)
    members = tuple(
        Member(m.trial, m.family, m.params, w, r) for m, w, r in zip(choice.members, weights, refit, strict=True)
    )
    if spec.learning_task.calibrates:
        calibration = ensemble.choose_calibration(
            choice.predictions, y, folds, metric=spec.metric, setting=settings.calibration
        )
        unchosen = {
            "calibration": calibration.calibrator,
            "calibration_log_loss": calibration.log_loss,
            "threshold": ensemble.choose_threshold(calibration.probabilities, y, settings)
            if spec.learning_task.decides_by_threshold
            else unchosen["threshold"],
        }
    return Finish(
        method=choice.method,
        combiner=choice.combiner,
        cv_score=choice.score,
        scores=choice.scores,
        members=members,
        skipped=_skipped(spec),
        **unchosen,
    )


def _refit_estimate(
    objective: CrossValidation, member: ensemble.Candidate, trial: optuna_study.TrialOutcome
) -> float | None:
    """A kept model's refit on every row: its trial's fit time scaled by the rows; None: none was kept."""
    if objective.kept_model(member.family, trial.params, trial.subsample) is None:
        return None
    return member.refit_s


def kept_models(
    finished: Finish, objective: CrossValidation, outcomes: list[optuna_study.TrialOutcome]
) -> dict[int, Any]:
    """{trial number: fitted model} of the members train keeps instead of refitting (none under
    finish.refit always)."""
    trials = {o.number: o for o in outcomes}
    kept = {}
    for member in finished.members:
        if not member.refit:
            trial = trials[member.trial]
            stored = objective.kept_model(member.family, trial.params, trial.subsample)
            assert stored is not None, f"trial {member.trial}: finish keeps a model the search did not keep"
            kept[member.trial] = joblib.load(stored)
    return kept


def write_kept_models(path: str, kept: dict[int, Any]) -> None:
    """paths.kept_models, a DVC output of tune that train depends on: empty when train refits all."""
    with files.atomic_path(path) as staged:
        joblib.dump(kept, staged)


def _check_finish(settings: ensemble.FinishSettings, task: Task) -> None:
    """Refuse, before the search, a finishing step asked for by name that the task does not do."""
    skipped = task.finish_skipped or {}
    if settings.ensemble == "stacking" and "stacking" in skipped:
        raise ValueError(
            f"finish.ensemble: stacking is not done for {task.name} ({skipped['stacking']}); "
            f"choose auto, caruana or none"
        )
    if settings.calibration not in ("auto", "none"):
        allowed = ensemble.CALIBRATIONS_FOR[task.scores_per_class] if task.calibrates else ()
        if settings.calibration not in allowed:
            held = "a probability matrix" if task.scores_per_class else "one probability"
            raise ValueError(
                f"finish.calibration: {settings.calibration} does not apply to {task.name} "
                + (f"({held}: {', '.join(allowed)}); " if allowed else "(no probabilities); ")
                + "choose auto or none"
            )


def _skipped(spec: DataSpec) -> dict[str, str] | None:
    """The finishing steps the task leaves out, each with why."""
    skipped = spec.learning_task.finish_skipped
    return dict(skipped) if skipped else None


def model_leaderboard(
    outcomes: list[optuna_study.TrialOutcome], objective: CrossValidation, finished: Finish, maximize: bool
) -> pd.DataFrame:
    """Every family's best trial and the finished model: CV score, fit and predict time, size."""
    rows = []
    complete = final_candidates(outcomes)
    for family in sorted({o.family for o in complete}):
        top = (max if maximize else min)((o for o in complete if o.family == family), key=lambda o: o.score)
        cost = objective.result(top.family, top.params, top.subsample)
        rows.append(
            {
                "model": family,
                "kind": "trial",
                "trial": top.number,
                "cv_score": top.score,
                "fit_s": cost and cost.fit_s,
                "predict_ms_per_1k": cost and cost.predict_ms_per_1k,
                "size_mb": cost and cost.size_mb,
                "chosen": False,
            }
        )
    by_trial = {o.number: o for o in outcomes}
    costs = [
        objective.result(m.family, by_trial[m.trial].params, by_trial[m.trial].subsample) for m in finished.members
    ]
    known = all(c is not None for c in costs)
    rows.append(
        {
            "model": finished.describe(),
            "kind": finished.method,
            "trial": finished.members[0].trial if finished.method == "single" else None,
            "cv_score": finished.cv_score,
            "fit_s": sum(c.fit_s for c in costs) if known else None,
            "predict_ms_per_1k": sum(c.predict_ms_per_1k for c in costs) if known else None,
            "size_mb": sum(c.size_mb for c in costs) if known else None,
            "chosen": True,
        }
    )
    board = pd.DataFrame(rows).drop_duplicates(subset=["model", "trial"], keep="last")
    return board.sort_values("cv_score", ascending=not maximize).reset_index(drop=True)


def tuned_recipe(
    outcomes: list[optuna_study.TrialOutcome], finished: Finish, settings: TuneSettings, plan: StudyPlan, metric: str
) -> TunedRecipe:
    """best_params.json: the finished model, the best single trial, the trial counts, and what validated
    and bounded the search (only what the seed and data decide, so the same search writes the same bytes)."""
    winner = best(outcomes, settings.maximize)
    search = settings.search
    return TunedRecipe(
        family=finished.describe(),
        params=finished.members[0].params if finished.method == "single" else {},
        metric=metric,
        cv_score=finished.cv_score,
        cv_std=float(np.std(winner.fold_scores)),
        trial=winner.number,
        best_trial=BestTrial(winner.number, winner.family, winner.params, winner.score),
        finish=finished,
        trials={k: sum(o.state == state for o in outcomes) for k, state in _STATES.items()},
        seed=settings.seed,
        cv_folds=search.cv_folds,
        validation={"method": "holdout", "share": plan.holdout}
        if plan.holdout
        else {"method": "cv", "folds": search.cv_folds},
        study={"name": plan.name, "screened_trials": sum(o.subsample is not None for o in outcomes)}
        | (
            {
                "warm_start": {
                    "version": settings.warm.version,
                    "configurations": len(settings.warm.configs),
                    "observations": len(settings.warm.observations),
                }
                | (
                    {"continuation": settings.warm.continuation.recorded}
                    if settings.warm.continuation is not None
                    else {}
                )
            }
            if settings.warm
            else {}
        )
        | ({"portfolio": len(settings.portfolio)} if settings.portfolio else {}),
        budget=budget_record(search, settings.finish),
    )


_STATES = {"complete": "COMPLETE", "pruned": "PRUNED", "failed": "FAIL"}


class _Stopwatch:
    """Seconds spent inside ``with stopwatch:`` blocks (and ``timed`` calls) on the stage's path, from any
    of its threads: the tracking calls and the waits for tracking, reported as overhead."""

    def __init__(self):
        self.seconds = 0.0
        self._lock = threading.Lock()
        self._starts = threading.local()

    def __enter__(self):
        self._starts.at = time.perf_counter()

    def __exit__(self, *exc):
        with self._lock:
            self.seconds += time.perf_counter() - self._starts.at

    def timed(self, call: Callable[[], Any]) -> Any:
        with self:
            return call()


def run(params: dict[str, Any]) -> TuneResult | SegmentationRecipe:
    """Search model families by CV on the train split and finish the best trials into the recipe `train`
    refits. The study is stored and resumed (module docstring); the parent MLflow run, opened behind the
    search, stays open through it so each trial is tracked as it ends; the recipe names no run (its bytes
    stay stable), so the run is tagged with the recipe's digest, which is how `train` finds it. A task
    without a target (clustering) searches segmentations instead (``_run_clustering``)."""
    spec, paths, names = project.data_spec(params), project.paths(params), project.tracking(params)
    if not spec.learning_task.supervised:
        return _run_clustering(params)
    train = pd.read_parquet(paths.split_file("train"))
    settings = warm_started(
        TuneSettings.parse(params, spec), names.registered_model, paths.trials, train, paths.best_params
    )
    plan = StudyPlan.of(settings, train, paths.study)
    _check_storage(settings, plan)

    started, tracking_time = time.time(), _Stopwatch()
    tags = tracking.lineage_tags(STAGE, *project.lineage(params))

    def describe(run_id: str) -> None:
        tracking.log(run_id, params=_run_params(settings, plan, spec.metric, len(train)))
        tracking.log_artifact(run_id, "params.yaml", "config")
        tracking.log_split(run_id, "train", train, paths.split_file("train"), spec.target, "training")

    # the run is opened behind the search, which starts at once; it ends KILLED on Ctrl-C, FAILED on an error
    with tracking.stage_run_behind(
        names.experiment, STAGE, tags, before=lambda: _close_dead_runs(names.experiment), then=describe
    ) as opening:
        deadline = _deadline(settings)  # search.timeout_s is the search's own time
        objective = _objective(train, spec, settings, plan, deadline, paths.trial_predictions)
        job = Job(opening, names.experiment, tags, params, deadline.at if deadline else None)
        reserve = RefitReserve(deadline, objective, settings.finish, settings.maximize) if deadline else None
        search = _search(objective, settings, plan, spec.metric, deadline, job, tracking_time, reserve)
        with tracking_time:
            parent = opening.opened()
        finishing = time.time()
        finished = finish(search.outcomes, objective, spec, _refit_left(settings.finish, deadline))
        recipe = tuned_recipe(search.outcomes, finished, settings, plan, spec.metric)
        finish_s = time.time() - finishing
        trials = trial_table(search.outcomes, settings.maximize, settings.search.objectives)
        board = model_leaderboard(search.outcomes, objective, recipe.finish, settings.maximize)

        files.write_text(paths.trials, trials.to_csv(index=False))
        files.write_text(paths.leaderboard, board.to_csv(index=False))
        write_kept_models(paths.kept_models, kept_models(recipe.finish, objective, search.outcomes))
        files.write_text(paths.best_params, recipe.to_json())
        _record(parent, recipe, search, finish_s, paths, tracking_time)
        lent = {"refit_reserve_lent_s": round(deadline.lent, 2)} if deadline and deadline.reserve else {}  # automl.fit
        behind_s = opening.cpu_s + search.recorder_cpu_s
        metrics = {"tracking_s": tracking_time.seconds, "tracking_behind_cpu_s": behind_s}
        tracking.log(parent, metrics=metrics | {"duration_s": time.time() - started} | lent)
    _say(recipe, search, board, plan, spec.learning_task, paths.best_params)
    lent_s = round(deadline.lent, 2) if deadline else 0.0
    return TuneResult(
        recipe,
        parent,
        round(tracking_time.seconds, 3),
        search.reused,
        round(search.seconds, 2),
        lent_s,
        round(behind_s, 3),
        round(finish_s, 3),
    )


def _objective(
    train: pd.DataFrame,
    spec: DataSpec,
    settings: TuneSettings,
    plan: StudyPlan,
    deadline: optuna_study.Deadline | None,
    trial_predictions: str,
) -> CrossValidation:
    """The study's objective over the train split, keeping each configuration's validation predictions
    under the study's name (a resumed study still has them)."""
    return CrossValidation(
        train,
        spec,
        settings.search.cv_folds,
        parallel_trials=settings.search.n_jobs,
        seed=settings.seed,
        cores=usable_cores(),
        settings=settings.features,
        holdout=plan.holdout,
        deadline=deadline,
        store_dir=Path(trial_predictions) / plan.name,
        # a distributed trial's model stays with its worker
        keep_models=settings.finish.refit != "always" and not settings.search.distributed,
        continuation=settings.warm.continuation if settings.warm else None,
    )


def _close_dead_runs(experiment: str) -> None:
    """Close, KILLED, the runs a killed process left RUNNING (``tracking.close_dead_runs``), and say so."""
    closed = tracking.close_dead_runs(experiment)
    if closed:
        console.say(STAGE, tracking.closed_summary(closed))


def _run_params(settings: TuneSettings, plan: StudyPlan, metric: str, rows: int) -> dict[str, Any]:
    """The tune run's params: search.* and finish.* as written, and what they and the data decided."""
    storage = plan.storage.split("://")[0] + "://…" if "://" in plan.storage else plan.storage
    return settings.logged | {
        "families": ",".join(s.family for s in settings.spaces),
        "metric": metric,
        "seed": settings.seed,
        "train_rows": rows,
        "study": plan.name,
        "validation": "holdout" if plan.holdout else "cv",
        "screening_share": plan.screening or "none",
        "study_storage": storage,  # a database URL may hold a password
    }


def _search(
    objective: CrossValidation,
    settings: TuneSettings,
    plan: StudyPlan,
    metric: str,
    deadline: optuna_study.Deadline | None,
    job: Job,
    tracking_time: _Stopwatch,
    reserve: RefitReserve | None = None,
) -> Search:
    """Run the study: each trial becomes a child run of the job's parent as it ends (a killed search still
    shows what it tried; reused trials only if no earlier run logged them; a distributed trial's own
    worker logs it) and moves the progress bar."""
    progress = Progress(settings.search.n_trials, metric, settings.maximize, deadline)
    started = time.time()
    distributed = settings.search.distributed
    try:
        writer = project.tracking(job.params)
        separate = writer.writes_trials_from_process(settings.search.budget, settings.search.n_trials)
        with tracking.trial_recorder(job.experiment, job.run_id, job.tags, separate) as recorder:
            logged = _LoggedTrials()

            def on_trial(outcome: optuna_study.TrialOutcome) -> None:
                job.check()  # the run could not be opened: stop the search rather than run it untracked
                if not ((outcome.reused and logged.contains(outcome)) or (distributed and not outcome.reused)):
                    complete = outcome.state == "COMPLETE"
                    result = objective.result(outcome.family, outcome.params, outcome.subsample) if complete else None
                    recorder.record(_trial_record(outcome, metric, fold_runs=settings.search.fold_runs, result=result))
                if reserve is not None:
                    reserve.update(outcome)
                progress.update(outcome)

            if distributed:
                outcomes = _coordinate(objective, settings, plan, deadline, job, on_trial, recorder, metric)
            else:
                outcomes = optuna_study.optimize(
                    **_study_arguments(objective, settings, plan, optuna_study.storage_url(plan.storage), deadline),
                    on_trial=on_trial,
                    origin=functools.partial(tracking_time.timed, job.run_id),
                    queued=settings.queued,
                    prior=settings.warm.observations if settings.warm else (),
                )
            searched = time.time()
            closing = time.perf_counter()
        tracking_time.seconds += time.perf_counter() - closing  # the wait for the recorder to drain
    finally:
        progress.close()
    if recorder.errors:
        console.say(STAGE, f"warning: {len(recorder.errors)} trial run(s) not tracked: {recorder.errors[0]}")
    return Search(outcomes, searched - started, recorder.cpu_s)


def _study_arguments(
    objective: CrossValidation,
    settings: TuneSettings,
    plan: StudyPlan,
    storage: str,
    deadline: optuna_study.Deadline | None,
) -> dict[str, Any]:
    """What the tune stage and a worker tell the study alike: the spaces, the objective and its costs,
    the search settings, the storage and name, the screening share and the deadline."""
    return {
        "spaces": list(settings.spaces),
        "evaluate": objective,
        "settings": settings.search,
        "maximize": settings.maximize,
        "seed": settings.seed,
        "storage": storage,
        "study_name": plan.name,
        "costs": functools.partial(objective.costs, settings.search.objectives[1:]),
        "subsample": plan.screening,
        "deadline": deadline,
    }


@dataclass(frozen=True)
class Job:
    """What a worker needs to join the study, left in it by the coordinator: the parent run its trial
    runs go under, their tags, the coordinator's params (the worker's own must give the same study) and
    the search's deadline (search.budget time)."""

    parent_run: str | tracking.RunBehind  # the coordinator's run may still be being opened
    experiment: str
    tags: dict[str, str]
    params: dict[str, Any]
    deadline: float | None

    def run_id(self) -> str:
        """The parent run's id: this waits for a run still being opened."""
        return self.parent_run if isinstance(self.parent_run, str) else self.parent_run.id

    def check(self) -> None:
        """Raise what stopped the parent run from being opened, if anything has."""
        if not isinstance(self.parent_run, str) and self.parent_run.failure is not None:
            raise self.parent_run.error() from self.parent_run.failure

    def to_dict(self) -> dict[str, Any]:
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)} | {
            "parent_run": self.run_id()
        }


def _check_storage(settings: TuneSettings, plan: StudyPlan) -> None:
    if settings.search.distributed and not optuna_study.is_shared_storage(optuna_study.storage_url(plan.storage)):
        raise StageError(
            f"params.yaml: search.workers {settings.search.workers} needs a study database that several "
            f"processes share, and paths.study is {plan.storage}: set paths.study to a PostgreSQL URL "
            "(postgresql+psycopg://user@host:5432/db; README, 'Working as a team') or search.workers to 1"
        )


class LocalWorkers:
    """The ``mlgate worker`` processes the tune stage starts on this machine, each with its share of the
    cores (CatBoost's and the BLAS threads); their output goes to a file each, shown when they end."""

    def __init__(self, count: int, study: str, storage: str):
        self.threads = max(1, usable_cores() // count)
        threads = str(self.threads)
        env = os.environ | {"MLGATE_STUDY": storage} | dict.fromkeys(THREAD_VARIABLES, threads)
        self.folder = tempfile.TemporaryDirectory(prefix="mlgate-workers-")
        self.command = [sys.executable, "-m", "mlgate.cli", "worker", "--study", study, "--threads", threads]
        self.env, self.count = env, count
        self.processes: list[subprocess.Popen] = []
        self.logs: list[Path] = []

    def _start(self) -> None:
        log = Path(self.folder.name) / f"worker-{len(self.logs)}.log"
        with log.open("wb") as out:
            self.processes.append(subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT, env=self.env))
        self.logs.append(log)

    def running(self) -> bool:
        """Whether a worker still runs. The first call starts them: the study asks only while it needs
        trials, so a rerun on a study that holds them all starts none (each would import MLflow and
        scikit-learn to find nothing to do). If none runs while the study still needs one (a trial whose
        worker died was queued again after the others had stopped), one more is started, up to ``count`` more."""
        if not self.processes:
            for _ in range(self.count):
                self._start()
            return True
        if any(p.poll() is None for p in self.processes):
            return True
        if len(self.processes) < 2 * self.count:
            self._start()
            return True
        return False

    def stop(self, grace_s: float = 120.0) -> list[str]:
        """Wait for the workers to end (they stop once the study holds n_trials and their trials' runs are
        written), stop any still running ``grace_s`` later; their warnings and last lines, and the whole
        output of one that failed."""
        give_up = time.monotonic() + grace_s
        stopped = set()
        for process in self.processes:
            try:
                process.wait(max(0.0, give_up - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.terminate()  # the worker writes its finished trials' runs, then exits
                stopped.add(process.pid)
                process.wait()
        said = []
        for process, log in zip(self.processes, self.logs, strict=True):
            lines = log.read_text(errors="replace").splitlines()
            if process.pid in stopped:
                said.append(f"worker pid {process.pid} was still running {grace_s:.0f}s after the study ended: stopped")
            elif process.returncode < 0:  # killed: what it printed last is not why
                said.append(f"worker pid {process.pid} was ended by signal {-process.returncode}")
            else:
                said += lines[-40:] if process.returncode else _warnings_and_last(lines)
        self.folder.cleanup()
        return said


def _warnings_and_last(lines: list[str]) -> list[str]:
    return [line for k, line in enumerate(lines) if "warning:" in line or k == len(lines) - 1]


THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _coordinate(
    objective: CrossValidation,
    settings: TuneSettings,
    plan: StudyPlan,
    deadline: optuna_study.Deadline | None,
    job: Job,
    on_trial: Callable[[optuna_study.TrialOutcome], None],
    recorder: tracking.TrialRecorder,
    metric: str,
) -> list[optuna_study.TrialOutcome]:
    """search.workers > 1: the study in the shared database, run by that many local `mlgate worker`
    processes and any a user started elsewhere on the same study; this process watches, queues the
    screening promotions, closes the runs of trials whose worker died and writes those a worker finished
    but did not write."""
    storage = optuna_study.storage_url(plan.storage)
    workers = LocalWorkers(settings.search.workers, plan.name, storage)
    console.say(
        STAGE,
        f"study {plan.name}: {settings.search.workers} worker processes, {workers.threads} thread(s) each; more "
        f"can join from any machine: `mlgate worker --study {plan.name}` with MLGATE_STUDY and MLFLOW_TRACKING_URI set",
    )
    try:
        shared = optuna_study.coordinate(
            list(settings.spaces),
            settings.search,
            maximize=settings.maximize,
            seed=settings.seed,
            storage=storage,
            study_name=plan.name,
            job=job.to_dict(),
            on_trial=on_trial,
            workers_running=workers.running,
            subsample=plan.screening,
            deadline=deadline,
            queued=settings.portfolio,  # a warm start is refused with workers
        )
    except ValueError as error:
        raise StageError(f"{error}\n" + "\n".join(workers.stop(grace_s=5.0))) from None
    for line in workers.stop():
        print(line, flush=True)
    for trial in shared.dead:
        retried = f"; retried as trial {trial.retried_as}" if trial.retried_as is not None else ""
        reason = f"its worker {trial.worker or '?'} stopped sending heartbeats mid-trial{retried}"
        if trial.run_id and tracking.close_run(trial.run_id, reason):
            console.say(STAGE, f"trial {trial.number}: {reason}; its run {trial.run_id[:8]} closed KILLED")
    if written := _write_unrecorded(shared, job.run_id(), metric, settings.search.fold_runs, recorder):
        console.say(
            STAGE,
            f"trials {written}: their worker ended before writing their runs; written from the study "
            "(without the fits' timings)",
        )
    _fetch_predictions(shared, objective.store_dir)
    return shared.outcomes


RECORD_GRACE_S = 30.0  # how long after a trial ends a worker (on another machine) may still be writing its run


def _write_unrecorded(
    shared: optuna_study.SharedStudy, parent_run: str, metric: str, fold_runs: bool, recorder: tracking.TrialRecorder
) -> list[int]:
    """Write the runs of finished trials that are still RUNNING: their worker told the study the result and
    died (kill -9, a lost machine) before its recorder thread wrote the run. The study holds the scores, the
    params and the times; the fits' timings died with the worker. A trial that ended less than
    RECORD_GRACE_S ago gets that long first: its worker may still be writing it. The numbers written."""
    finished = {o.number: o for o in shared.outcomes if not o.reused}
    dead = {trial.number for trial in shared.dead}

    def unrecorded() -> list[optuna_study.TrialOutcome]:
        running = {run["run_id"] for run in tracking.child_runs(parent_run) if run["status"] == "RUNNING"}
        return [finished[n] for n, run in shared.runs.items() if run in running and n in finished and n not in dead]

    if waiting := unrecorded():
        time.sleep(max(0.0, max(o.end for o in waiting) + RECORD_GRACE_S - time.time()))
        waiting = unrecorded()
    for outcome in waiting:
        record = _trial_record(outcome, metric, fold_runs=fold_runs)
        tags = record.tags | {"mlgate.recorded_by": "the coordinator: its worker ended before writing the run"}
        recorder.record(dataclasses.replace(record, run_id=shared.runs[outcome.number], tags=tags))
    return [o.number for o in waiting]


def _fetch_predictions(shared: optuna_study.SharedStudy, store_dir: Path) -> None:
    """The validation predictions of trials that workers on other machines ran (or that an earlier run
    kept on another disk): the artifact each worker logged with its trial's run, into ``store_dir``. One
    not there (a worker whose upload failed) is left out of the finish, with a warning."""
    missing = []
    for outcome in shared.outcomes:
        key = trial_key(outcome.family, outcome.params, outcome.subsample)
        run = shared.runs.get(outcome.number)
        if outcome.state != "COMPLETE" or not run or (store_dir / f"{key}.npz").exists():
            continue
        store_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=store_dir) as folder:
            try:
                fetched = tracking.download_artifact(run, f"{PREDICTIONS_ARTIFACTS}/{key}.npz", folder)
            except Exception:  # noqa: BLE001 - tracking.download_artifact raises MLflow's own errors
                missing.append(outcome.number)
                continue
            os.replace(fetched, store_dir / f"{key}.npz")
    if missing:
        console.say(STAGE, f"warning: trials {missing} have no predictions on their runs; the finish leaves them out")


PREDICTIONS_ARTIFACTS = "predictions"  # a distributed trial's run: its validation predictions, for the finish


@dataclass(frozen=True)
class WorkerSummary:
    study: str
    worker: str
    outcomes: list[optuna_study.TrialOutcome]
    seconds: float


def work(
    params: dict[str, Any], *, study: str | None, storage: str | None, threads: int | None, wait_s: float
) -> WorkerSummary:
    """`mlgate worker`: join a study that a tune stage coordinates, on this or any machine, and run its
    trials until it holds n_trials (or its deadline passes). ``study`` named: the coordinator's params
    are used, and this checkout's train split and code must give that same study; else the study these
    params give. Each trial is a child run of the study's parent run, tagged with this worker."""
    url = optuna_study.storage_url(storage or project.paths(params).study)
    if study is not None:
        params = _wait_for_job(url, study, wait_s).params
    spec, paths = project.data_spec(params), project.paths(params)
    settings = TuneSettings.parse(params, spec)
    train = pd.read_parquet(paths.split_file("train"))
    plan = StudyPlan.of(settings, train, url)
    if study is not None and plan.name != study:
        raise StageError(
            f"this checkout would run study {plan.name}, not {study}: its {paths.split_file('train')} or mlgate's "
            "code differs from the coordinator's (check out the same commit and `dvc pull`)"
        )
    job = _wait_for_job(url, plan.name, wait_s)
    deadline = optuna_study.Deadline(job.deadline) if job.deadline is not None else None
    cores = threads or usable_cores()
    objective = CrossValidation(
        train,
        spec,
        settings.search.cv_folds,
        parallel_trials=1,
        seed=settings.seed,
        cores=cores,
        settings=settings.features,
        holdout=plan.holdout,
        deadline=deadline,
        store_dir=Path(paths.trial_predictions) / plan.name,
    )
    worker = f"{socket.gethostname()}:{os.getpid()}"
    tags = job.tags | {"mlgate.worker": worker}
    runs: dict[int, str] = {}
    started = time.time()
    console.say("worker", f"{worker} joined study {plan.name} ({cores} thread(s))")
    with tracking.trial_recorder(job.experiment, job.run_id(), tags, separate_process=False) as recorder:

        def on_start(number: int) -> str:
            runs[number] = tracking.create_run(job.experiment, f"trial-{number:03d}", tags, job.run_id())
            return runs[number]

        def on_dropped(number: int, why: str) -> None:
            """The trial was declared dead before its run was named on it: no retry could close that run."""
            if number in runs:
                tracking.close_run(runs.pop(number), why)
            console.say("worker", why)

        def on_trial(outcome: optuna_study.TrialOutcome) -> None:
            result = objective.result(outcome.family, outcome.params, outcome.subsample)
            record = _trial_record(
                outcome,
                spec.metric,
                fold_runs=settings.search.fold_runs,
                result=result if outcome.state == "COMPLETE" else None,
            )
            kept = objective.store_dir / f"{trial_key(outcome.family, outcome.params, outcome.subsample)}.npz"
            artifacts = ((str(kept), PREDICTIONS_ARTIFACTS),) if outcome.state == "COMPLETE" and kept.exists() else ()
            recorder.record(dataclasses.replace(record, run_id=runs.pop(outcome.number), artifacts=artifacts))
            score = "-" if outcome.score is None else f"{outcome.score:.4f}"
            console.say(
                "worker", f"trial {outcome.number} {outcome.family}: {outcome.state.lower()} cv {spec.metric} {score}"
            )

        try:
            outcomes = optuna_study.work(
                **_study_arguments(objective, settings, plan, url, deadline),
                worker=worker,
                on_start=on_start,
                on_trial=on_trial,
                on_dropped=on_dropped,
            )
        except KeyboardInterrupt:  # stopped mid-trial: the trial is retried once it misses its heartbeats
            _close_interrupted(runs, worker)
            raise
    if recorder.errors:
        console.say("worker", f"warning: {len(recorder.errors)} trial run(s) not tracked: {recorder.errors[0]}")
    summary = WorkerSummary(plan.name, worker, outcomes, time.time() - started)
    counts = {state: sum(o.state == state for o in outcomes) for state in ("COMPLETE", "PRUNED", "FAIL")}
    console.say(
        "worker",
        f"{worker} ran {len(outcomes)} trials of study {plan.name} in {summary.seconds:.0f}s "
        f"({counts['COMPLETE']} complete, {counts['PRUNED']} pruned, {counts['FAIL']} failed)",
    )
    return summary


def _close_interrupted(runs: dict[int, str], worker: str) -> None:
    """Close KILLED the runs of the trials a stopped worker was running, saying why; one the tracking
    server does not take now is closed by the coordinator once the trial misses its heartbeats."""
    for number, run_id in runs.items():
        try:
            tracking.close_run(run_id, f"its worker {worker} was stopped mid-trial; trial {number} is retried")
        except Exception:  # noqa: BLE001 - stopping: MLflow's own errors must not hide why the worker exits
            continue


def _wait_for_job(url: str, study: str, wait_s: float) -> Job:
    """The job the coordinator left in ``study``, waiting up to ``wait_s`` for the study to appear."""
    give_up = time.time() + wait_s
    while (job := optuna_study.job_of(url, study)) is None:
        if time.time() >= give_up:
            known = ", ".join(optuna_study.studies(url)[-5:]) or "none"
            raise StageError(
                f"no study {study} at {url.split('://')[0]}://… after {wait_s:.0f}s: start the tune stage first "
                f"(`dvc repro` with search.workers and the same paths.study); the newest studies there: {known}"
            )
        time.sleep(1.0)
    return Job(**job)


def _record(
    parent: str, recipe: TunedRecipe, search: Search, finish_s: float, paths: project.Paths, tracking_time: _Stopwatch
) -> None:
    """The tune run's results: best and final scores, trial counts, times, what the final model is, the
    boards, the runs whose trials it reused, and the digest of the recipe's bytes."""
    finished, metric, counts = recipe.finish, recipe.metric, recipe.trials
    earlier = sorted({o.origin for o in search.outcomes if o.reused and o.origin and o.origin != parent})
    with tracking_time:
        tracking.log(
            parent,
            metrics={
                f"best/cv_{metric}": recipe.best_trial.cv_score,
                f"final/cv_{metric}": finished.cv_score,
                "trials_complete": counts["complete"],
                "trials_pruned": counts["pruned"],
                "trials_failed": counts["failed"],
                "trials_reused": search.reused,
                "trials_screened": recipe.study["screened_trials"],
                "search_s": search.seconds,
                "finish_s": finish_s,
                "final/threshold": finished.threshold["threshold"],
            }
            | {f"final/cv_{metric}_{k}": v for k, v in finished.scores.items()}
            | {f"final/log_loss_{k}": v for k, v in finished.calibration_log_loss.items()},
            params={
                "best.family": recipe.best_trial.family,
                "best.trial": recipe.best_trial.number,
                "final.model": recipe.family[:500],
                "final.method": finished.method,
                "final.calibration": finished.calibration_method,
                "final.threshold_objective": finished.threshold["objective"],
            },
            tags={
                "mlgate.best_params": json.dumps(recipe.best_trial.params, sort_keys=True)[:4000],
                "mlgate.reproducible": str(recipe.reproducible).lower(),
                tracking.BEST_PARAMS_TAG: tracking.file_digest(paths.best_params),
            }
            | ({"mlgate.resumed_from": ",".join(earlier)[:4000]} if earlier else {}),
        )
        tracking.log_artifact(parent, paths.leaderboard)
        tracking.log_artifact(parent, paths.trials)


def _say(
    recipe: TunedRecipe, search: Search, board: pd.DataFrame, plan: StudyPlan, task: Task, best_params: str
) -> None:
    """The study in a line, the leaderboard, and the final model's calibration and threshold."""
    counts, winner, threshold = recipe.trials, recipe.best_trial, recipe.finish.threshold
    screened = recipe.study["screened_trials"]
    resumed = f", {search.reused} of them reused from study {plan.name}" if search.reused else ""
    screened_note = f", {screened} screened on {plan.screening:.0%} of the rows" if screened and plan.screening else ""
    validation = f"holdout {plan.holdout:.0%}" if plan.holdout else f"{recipe.cv_folds}-fold cv"
    warm = recipe.study.get("warm_start")
    if warm:
        console.say(
            STAGE,
            f"warm start from production v{warm['version']}: its study's best {warm['configurations']} "
            f"configuration(s) ran first; the sampler learned from its {warm.get('observations', 0)} scored trials",
        )
        if "continuation" in warm:
            going_on = warm["continuation"]
            console.say(
                STAGE,
                f"  and {models.CONTINUED} searched: its CatBoost model (member {going_on['member']}) going on "
                f"training on the {console.number(going_on['new_rows'])} train rows it never saw",
            )
    if recipe.study.get("portfolio"):
        console.say(STAGE, f"the portfolio's {recipe.study['portfolio']} configurations were queued first")
    console.say(
        STAGE,
        f"{len(search.outcomes)} trials in {search.seconds:.0f}s on {validation} ({counts['complete']} complete, "
        f"{counts['pruned']} pruned, {counts['failed']} failed{resumed}{screened_note}); best trial {winner.family} "
        f"cv {recipe.metric} {winner.cv_score:.4f} ± {recipe.cv_std:.4f} (trial {winner.number})",
    )
    if any(o.number == winner.number and o.subsample is not None for o in search.outcomes):
        console.say(
            STAGE,
            "warning: no trial ran on every row within the budget; the final model is built from "
            "screened trials (raise search.timeout_s or lower search.subsample_trials)",
        )
    for row in board.itertuples():
        mark = "→" if row.chosen else " "
        cost = (
            ""
            if pd.isna(row.fit_s)
            else f"  fit {row.fit_s:.1f}s  predict {row.predict_ms_per_1k:.1f} ms/1k  {row.size_mb:.1f} MB"
        )
        console.say("", f"  {mark} {row.model:<28} cv {recipe.metric} {row.cv_score:.4f}{cost}")
    if task.finish_skipped:
        *first, last = task.finish_skipped
        left_out = f"{', '.join(first)} or {last}" if first else last
        console.say("", f"  {task.name}: no {left_out} (see `skipped` in {best_params})")
    if task.calibrates:
        decided = (
            f"; threshold {threshold['threshold']:.3f} ({threshold['objective']})" if task.decides_by_threshold else ""
        )
        console.say("", f"  calibration {recipe.finish.calibration_method}{decided} → {best_params}")
    if not recipe.reproducible:
        console.say("", f"  not reproducible: {recipe.budget['why']}")


# --- clustering: a task without a target ------------------------------------------------------------
# The study searches segmentations (modelling.clustering's families), each trial judged without labels on
# the train split; the choice among the completed trials is params `clustering.select` (the three scores'
# vote, or data.metric alone), and its stability is the adjusted Rand index of bootstrap refits. Writes
# paths.best_params (a ``SegmentationRecipe``), paths.leaderboard (each family's best trial per number of
# clusters) and paths.trials; MLflow as for the supervised study: a parent run, a nested run per trial.
# ``segment`` is also the library call (benchmarks/clustering.py): a frame in, a segmentation out.

SELECTIONS = ("consensus", "metric")
SEARCH_SHARE = 0.75  # of the budget; the rest refits the chosen segmentation for its stability


@dataclass(frozen=True)
class Segmentation:
    model: clustering.Segmenter
    labels: np.ndarray  # the frame's clusters (clustering.NOISE: in none)
    scores: clustering.ClusterScores
    stability: clustering.Stability | None  # None: the budget left no time for two refits
    trials: list[optuna_study.TrialOutcome]
    chosen: optuna_study.TrialOutcome
    trial_scores: dict[int, clustering.ClusterScores]  # each scored trial's, by trial number


def column_kinds(frame: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(numeric, categorical) columns by dtype; booleans are categorical."""
    numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c]) and frame[c].dtype != bool]
    return numeric, [c for c in frame.columns if c not in numeric]


def segment(
    frame: pd.DataFrame,
    model_section: dict[str, Any],
    *,
    metric: str = "silhouette",
    budget_s: float = 30.0,
    n_trials: int | None = None,
    seed: int = 0,
    sampler: str = "tpe",
    select: str = "consensus",
    stability_resamples: int = 5,
    columns: tuple[list[str], list[str]] | None = None,
    objectives: tuple[str, ...] = ("score",),
    experiment: str | None = None,
    parent_run: tuple[str, str] | None = None,
) -> Segmentation:
    """Clustering (a task without a target): search ``model_section``'s families (conf/model/<family>.yaml
    entries) on ``frame``, guided by ``metric``: ``n_trials`` trials (the same seed and data give the same
    segmentation on any machine), or else for ``SEARCH_SHARE`` of ``budget_s``. Choose among the
    completed trials by ``select`` (``consensus``: the three scores' vote, ``clustering.consensus``;
    ``metric``: the best by ``metric``); then refit the choice on ``stability_resamples`` bootstrap
    resamples (under a time budget, as many as the rest of it allows). ``columns``: (numeric,
    categorical), by default by dtype. ``objectives`` ("score", "n_clusters"): a multi-objective study
    that also minimises the number of clusters, the choice made among its Pareto front. Tracked in
    ``experiment`` under a new parent run, or under
    ``parent_run`` (experiment, run id), when given (the tracking URI is MLflow's, from
    MLFLOW_TRACKING_URI)."""
    started = time.monotonic()
    if metric not in clustering.METRICS:
        raise ValueError(f"metric '{metric}' is not a clustering metric; choose one of {tuple(clustering.METRICS)}")
    maximize = clustering.METRICS[metric]
    if select not in SELECTIONS:
        raise ValueError(f"select must be one of {SELECTIONS}, got '{select}'")
    numeric, categorical = columns or column_kinds(frame)
    spaces = optuna_study.parse_spaces(model_section)
    unknown = [s.family for s in spaces if s.family not in clustering.FAMILIES]
    if unknown:
        raise ValueError(f"{unknown} are not clustering families; choose from {clustering.FAMILIES}")
    timed = n_trials is None
    settings = optuna_study.SearchSettings(
        sampler=sampler,
        pruner="none",
        n_trials=10_000 if timed else n_trials,
        timeout_s=budget_s * SEARCH_SHARE,
        cv_folds=2,
        n_jobs=1,
        budget="time" if timed else "trials",
        objectives=objectives,
    )
    deadline = optuna_study.Deadline.after(budget_s * SEARCH_SHARE) if timed else None
    if not set(objectives[1:]) <= {"n_clusters"}:
        raise ValueError(f"objectives {list(objectives)}: a clustering search minimises n_clusters beside the score")

    def build(family: str, params: dict[str, Any], fit_seed: int = seed) -> clustering.Segmenter:
        return clustering.Segmenter(family, params, numeric, categorical, fit_seed)

    judged_by_trial: dict[str, clustering.ClusterScores] = {}

    def evaluate(family: str, params: dict[str, Any], report: Any, **_: Any) -> tuple[float, list[float]]:
        model = build(family, params).fit(frame)
        judged = clustering.scores(model.embed(frame), model.predict(frame), seed=seed)
        judged_by_trial[_segment_key(family, params)] = judged
        value = judged.metric(metric)
        if value is None:
            raise ValueError(f"{judged.n_clusters} cluster(s) found: {metric} needs two or more")
        return value, [value]

    with _tracked_search(experiment, parent_run, frame, metric, seed, budget_s) as record:
        outcomes = optuna_study.optimize(
            spaces,
            evaluate,
            settings,
            maximize=maximize,
            seed=seed,
            on_trial=lambda outcome: record.trial(
                outcome, judged_by_trial.get(_segment_key(outcome.family, outcome.params))
            ),
            deadline=deadline,
            costs=(lambda family, params: [judged_by_trial[_segment_key(family, params)].n_clusters])
            if len(objectives) > 1
            else None,
        )
        complete = [o for o in outcomes if o.state == "COMPLETE"]
        if not complete:
            errors = sorted({o.error for o in outcomes if o.error})[:3]
            raise ValueError(f"no clustering trial completed in {budget_s:.0f}s: {errors}")
        if len(objectives) > 1:  # the choice among the segmentations no other beats on both counts
            front = optuna_study.pareto_front([(o.score, *o.costs) for o in complete], maximize)
            complete = [o for o, kept in zip(complete, front, strict=True) if kept]
        chosen = _choose_segmentation(complete, judged_by_trial, maximize, select)
        fit_started = time.monotonic()
        model = build(chosen.family, chosen.params).fit(frame)
        labels = model.predict(frame)
        judged = clustering.scores(model.embed(frame), labels, seed=seed)
        fit_s = time.monotonic() - fit_started
        resamples = stability_resamples
        if timed:
            resamples = min(resamples, int((budget_s - (time.monotonic() - started)) // max(fit_s, 1e-3)))
        stable = None
        if resamples >= 2:
            stable = clustering.stability(
                lambda rows, fit_seed: build(chosen.family, chosen.params, fit_seed).fit(rows),
                frame,
                labels,
                resamples=resamples,
                seed=seed,
            )
        record.choice(chosen, judged, stable, select)
    trial_scores = {
        o.number: judged_by_trial[_segment_key(o.family, o.params)]
        for o in outcomes
        if _segment_key(o.family, o.params) in judged_by_trial
    }
    return Segmentation(model, labels, judged, stable, outcomes, chosen, trial_scores)


def _choose_segmentation(
    complete: list[optuna_study.TrialOutcome],
    judged_by_trial: dict[str, clustering.ClusterScores],
    maximize: bool,
    select: str,
) -> optuna_study.TrialOutcome:
    """The best trial by its score, or (``consensus``) the three scores' vote among one candidate per
    family and number of clusters (its best trial), so that many near-copies of one segmentation do
    not crowd the ranks."""
    best_first = sorted(complete, key=lambda o: -o.score if maximize else o.score)
    if select == "metric":
        return best_first[0]
    candidates: dict[tuple[str, int], optuna_study.TrialOutcome] = {}
    for outcome in best_first:
        candidates.setdefault(
            (outcome.family, judged_by_trial[_segment_key(outcome.family, outcome.params)].n_clusters), outcome
        )
    chosen = list(candidates.values())
    return chosen[clustering.consensus([judged_by_trial[_segment_key(o.family, o.params)] for o in chosen])]


def _segment_key(family: str, params: dict[str, Any]) -> str:
    return json.dumps([family, params], sort_keys=True, default=str)


class _UntrackedSearch:
    def trial(self, outcome: optuna_study.TrialOutcome, judged: clustering.ClusterScores | None) -> None:
        pass

    def choice(self, chosen: Any, judged: Any, stable: Any, select: str) -> None:
        pass


class _RecordedSearch:
    """The search's parent run and its trial runs (written off the search's path by the trial recorder)."""

    def __init__(self, parent_run_id: str, recorder: Any):
        self.parent_run_id = parent_run_id
        self.recorder = recorder

    def trial(self, outcome: optuna_study.TrialOutcome, judged: clustering.ClusterScores | None) -> None:
        tags = {"mlgate.trial": str(outcome.number), "mlgate.trial_state": outcome.state}
        if outcome.error:
            tags["mlgate.error"] = outcome.error[:4000]
        self.recorder.record(
            tracking.TrialRecord(
                name=f"trial-{outcome.number:03d}-{outcome.family}",
                params={"family": outcome.family, **outcome.params},
                metrics={"duration_s": outcome.end - outcome.start} | _segment_metrics(judged),
                fold_metrics={},
                tags=tags,
                status={"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}[outcome.state],
                start_ms=int(outcome.start * 1000),
                end_ms=int(outcome.end * 1000),
            )
        )

    def choice(
        self,
        chosen: optuna_study.TrialOutcome,
        judged: clustering.ClusterScores,
        stable: clustering.Stability | None,
        select: str,
    ) -> None:
        stability = (
            {}
            if stable is None
            else {
                "stability_ari_mean": stable.mean,
                "stability_ari_std": stable.std,
                "stability_ari_min": stable.min,
                "stability_resamples": stable.resamples,
            }
        )
        tracking.log(
            self.parent_run_id,
            params={"chosen.family": chosen.family, "chosen.trial": chosen.number, "select": select}
            | {f"chosen.{k}": v for k, v in chosen.params.items()},
            metrics=_segment_metrics(judged) | stability,
        )


def _segment_metrics(judged: clustering.ClusterScores | None) -> dict[str, float]:
    if judged is None:
        return {}
    values = {
        "silhouette": judged.silhouette,
        "davies_bouldin": judged.davies_bouldin,
        "calinski_harabasz": judged.calinski_harabasz,
        "n_clusters": judged.n_clusters,
        "noise_share": judged.noise_share,
        "smallest_share": judged.smallest_share,
    }
    return {k: float(v) for k, v in values.items() if v is not None}


@contextlib.contextmanager
def _tracked_search(
    experiment: str | None,
    parent_run: tuple[str, str] | None,
    frame: pd.DataFrame,
    metric: str,
    seed: int,
    budget_s: float,
) -> Iterator[_UntrackedSearch | _RecordedSearch]:
    """The trial recorder under ``parent_run``, closed (every trial written) at the end of the block;
    or under a new parent run in ``experiment`` (lineage: git commit, data hash); or nothing."""
    if parent_run is None and experiment is None:
        yield _UntrackedSearch()
        return
    if parent_run is not None:
        with tracking.trial_recorder(parent_run[0], parent_run[1], {"mlgate.task": "clustering"}) as recorder:
            yield _RecordedSearch(parent_run[1], recorder)
        return
    data_hash = hashlib.sha256(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes()).hexdigest()
    tags = tracking.lineage_tags("segment", data_hash) | {"mlgate.task": "clustering"}
    with tracking.stage_run(experiment, "segment", tags) as parent:
        tracking.log(parent, params={"metric": metric, "seed": seed, "budget_s": budget_s, "rows": len(frame)})
        with tracking.trial_recorder(experiment, parent, {"mlgate.task": "clustering"}) as recorder:
            yield _RecordedSearch(parent, recorder)


@dataclass(frozen=True)
class ClusteringParams:
    """params.yaml `clustering`: how the choice is made among the searched segmentations."""

    select: str = "consensus"  # consensus | metric
    stability_resamples: int = 10

    def __post_init__(self) -> None:
        if self.select not in SELECTIONS:
            raise ValueError(f"clustering.select must be one of {SELECTIONS}, got '{self.select}'")
        if self.stability_resamples < 2:
            raise ValueError(f"clustering.stability_resamples must be at least 2, got {self.stability_resamples}")


@dataclass(frozen=True)
class SegmentSettings:
    """The params this stage reads, parsed and checked once."""

    search: optuna_study.SearchSettings
    choice: ClusteringParams
    model_section: dict[str, Any]
    seed: int

    @classmethod
    def parse(cls, params: dict[str, Any]) -> SegmentSettings:
        try:
            search = config.load(optuna_study.SearchSettings, "search", params)
            choice = config.load(ClusteringParams, "clustering", params)
            section = config.section(params, "model")
            spaces = optuna_study.parse_spaces(section, task="clustering")
        except config.ConfigError:
            raise
        except ValueError as error:
            raise StageError(f"params.yaml: {error}") from error
        supervised = [s.family for s in spaces if s.family not in clustering.FAMILIES]
        if supervised:
            raise StageError(
                f"params.yaml: model {supervised} are not clustering families; a clustering task searches "
                f"{list(clustering.FAMILIES)} (e.g. `model: [kmeans, gmm, ward, hdbscan]` in its conf/experiment)"
            )
        if search.distributed:
            raise StageError("params.yaml: search.workers: a clustering study runs in one process; set it to 1")
        if search.objectives not in (("score",), ("score", "n_clusters")):
            raise StageError(
                f"params.yaml: search.objectives {list(search.objectives)}: a clustering study takes [score] or "
                f"[score, n_clusters] (the number of clusters minimised beside the score)"
            )
        return cls(search, choice, section, project.seed(params))

    @property
    def budget(self) -> dict[str, Any]:
        """What bounded the search, for best_params.json, and whether the same seed and data give it again."""
        if self.search.budget == "trials":
            return {"kind": "trials", "n_trials": self.search.n_trials, "reproducible": True}
        return {
            "kind": "time",
            "timeout_s": self.search.timeout_s,
            "reproducible": False,
            "why": "search.budget is time: what finished first decided what ran next",
        }


def _search_segmentations(
    train: pd.DataFrame, spec: DataSpec, settings: SegmentSettings, parent_run: tuple[str, str] | None
):
    """The segmentation search on the train split's feature columns (``segment``)."""
    budget_trials = settings.search.budget == "trials"
    return segment(
        train[spec.features],
        settings.model_section,
        metric=spec.metric,
        budget_s=settings.search.timeout_s / SEARCH_SHARE,
        n_trials=settings.search.n_trials if budget_trials else None,
        seed=settings.seed,
        sampler=settings.search.sampler,
        select=settings.choice.select,
        stability_resamples=settings.choice.stability_resamples,
        columns=(spec.numeric_features, spec.categorical_features),
        objectives=settings.search.objectives,
        parent_run=parent_run,
    )


def segmentation_recipe(
    found: Segmentation, spec: DataSpec, settings: SegmentSettings, rows: int
) -> SegmentationRecipe:
    """best_params.json: the chosen trial's configuration, its scores on train and its stability."""
    chosen, judged = found.chosen, found.scores
    states = [o.state for o in found.trials]
    stable = found.stability
    return SegmentationRecipe(
        family=chosen.family,
        params=chosen.params,
        metric=spec.metric,
        score=judged.metric(spec.metric),
        trial=chosen.number,
        select=settings.choice.select,
        scores=score_fields(judged),
        stability=None
        if stable is None
        else {"mean": stable.mean, "std": stable.std, "min": stable.min, "resamples": stable.resamples},
        trials={"complete": states.count("COMPLETE"), "pruned": states.count("PRUNED"), "failed": states.count("FAIL")},
        seed=settings.seed,
        rows=rows,
        budget=settings.budget,
    )


SCORE_FIELDS = tuple(f.name for f in dataclasses.fields(clustering.ClusterScores))


def score_fields(judged: clustering.ClusterScores | None) -> dict[str, float | None]:
    """A segmentation's scores by name (all None for a trial never scored)."""
    return dict.fromkeys(SCORE_FIELDS) if judged is None else judged.as_dict()


def segmentation_trials(found: Segmentation, metric: str, objectives: tuple[str, ...] = ("score",)) -> pd.DataFrame:
    """Every trial: family, state, every score, time, parameters, error; best complete first. A
    multi-objective study (score and number of clusters) marks the trials on its Pareto front."""
    rows = []
    for outcome in found.trials:
        judged = found.trial_scores.get(outcome.number)
        rows.append(
            {
                "trial": outcome.number,
                "family": outcome.family,
                "state": outcome.state,
                "score": outcome.score,
                **score_fields(judged),
                "duration_s": round(outcome.end - outcome.start, 3),
                "params": json.dumps(outcome.params, sort_keys=True),
                "error": outcome.error,
            }
        )
    board = pd.DataFrame(rows)
    board["complete"] = board["state"] == "COMPLETE"
    maximize = clustering.METRICS[metric]
    if len(objectives) > 1:
        points = [tuple(p) for p in board.loc[board["complete"], ["score", "n_clusters"]].itertuples(index=False)]
        board["pareto"] = False
        board.loc[board["complete"], "pareto"] = optuna_study.pareto_front(points, maximize) if points else []
    board = board.sort_values(["complete", "score"], ascending=[False, not maximize], na_position="last")
    return board.drop(columns="complete").reset_index(drop=True)


def segmentation_leaderboard(trials: pd.DataFrame, chosen_trial: int) -> pd.DataFrame:
    """Each family's best complete trial per number of clusters (the candidates the choice weighed),
    best first, the chosen one marked; `model` names it and `cv_score` is data.metric on train, the
    columns `dvc plots` draws for every task."""
    complete = trials[trials["state"] == "COMPLETE"]
    board = complete.drop_duplicates(["family", "n_clusters"], keep="first").copy()
    board.insert(0, "model", board["family"] + " k=" + board["n_clusters"].astype(int).astype(str))
    board["chosen"] = board["trial"] == chosen_trial
    return board.rename(columns={"score": "cv_score"}).drop(columns=["state", "error"]).reset_index(drop=True)


def _run_clustering(params: dict[str, Any]) -> SegmentationRecipe:
    """Search, choose and measure the segmentation `train` refits; track it as a parent run with a nested
    run per trial, tagged with the recipe's digest (how `train` finds it)."""
    spec, paths, names = project.data_spec(params), project.paths(params), project.tracking(params)
    settings = SegmentSettings.parse(params)
    train = pd.read_parquet(paths.split_file("train"))
    started = time.time()
    tags = tracking.lineage_tags(STAGE, *project.lineage(params)) | {"mlgate.task": spec.task}
    closed = tracking.close_dead_runs(names.experiment)
    if closed:
        console.say(STAGE, tracking.closed_summary(closed))
    with tracking.stage_run(names.experiment, STAGE, tags) as parent:
        tracking.log(
            parent,
            params={f"search.{k}": v for k, v in config.section(params, "search").items()}
            | {f"clustering.{k}": v for k, v in config.section(params, "clustering").items()}
            | {"metric": spec.metric, "seed": settings.seed, "train_rows": len(train)},
        )
        tracking.log_artifact(parent, "params.yaml", "config")
        tracking.log_split(parent, "train", train, paths.split_file("train"), None, "training")
        try:
            found = _search_segmentations(train, spec, settings, (names.experiment, parent))
        except ValueError as error:
            raise StageError(str(error)) from error
        chosen = segmentation_recipe(found, spec, settings, len(train))
        trials = segmentation_trials(found, spec.metric, settings.search.objectives)
        board = segmentation_leaderboard(trials, chosen.trial)
        files.write_text(paths.trials, trials.to_csv(index=False))
        files.write_text(paths.leaderboard, board.to_csv(index=False))
        write_kept_models(paths.kept_models, {})  # a segmentation is always refit
        files.write_text(paths.best_params, chosen.to_json())
        tracking.log(
            parent,
            metrics={"duration_s": time.time() - started} | {f"trials_{k}": v for k, v in chosen.trials.items()},
            tags={tracking.BEST_PARAMS_TAG: tracking.file_digest(paths.best_params)},
        )
        tracking.log_artifact(parent, paths.leaderboard)
        tracking.log_artifact(parent, paths.trials)
    _say_segmentation(chosen, board, paths.best_params)
    return chosen


def _say_segmentation(chosen: SegmentationRecipe, board: pd.DataFrame, best_params: str) -> None:
    scores, stable = chosen.scores, chosen.stability
    counts = chosen.trials
    stability = (
        "stability not measured"
        if stable is None
        else f"stability ARI {stable['mean']:.3f} ± {stable['std']:.3f} over {stable['resamples']} resamples"
    )
    console.say(
        STAGE,
        f"{sum(counts.values())} trials ({counts['complete']} complete, {counts['failed']} failed); chosen by "
        f"{chosen.select}: {chosen.family} trial {chosen.trial}, {int(scores['n_clusters'])} clusters, "
        f"{chosen.metric} {chosen.score:.4f}; {stability} → {best_params}",
    )
    for row in board.head(10).itertuples():
        mark = "→" if row.chosen else " "
        console.say(
            "",
            f"  {mark} {row.model:<16} silhouette {row.silhouette:.3f}  davies-bouldin {row.davies_bouldin:.3f}  "
            f"calinski-harabasz {row.calinski_harabasz:.1f}  noise {row.noise_share:.1%}",
        )
