"""tune: an Optuna study over model families and their hyperparameters, scored by k-fold CV on train.

Reads the train split and params `model`, `search`, `features`, `seed`; writes paths.best_params (what `train`
refits) and paths.leaderboard. MLflow: one parent run `tune`, one nested run per trial.

The study is kept in paths.study under a name that hashes everything a trial's score depends on
(data, model spaces, search method, folds, features, seed, metric, the scoring code), so a rerun
with the same inputs resumes it: the trials it holds are not run again, they count towards
search.n_trials (the size of the whole study; raise it to extend a study) and they are in the
leaderboard. Each trial is one MLflow run, under the parent of the run that ran it: a resumed
run's parent gets only the new trials as children, plus those an earlier run ran but never
logged (it was killed first), tagged `mlgate.reused`; it records the reused count and the earlier
parents (`mlgate.resumed_from`).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold, StratifiedKFold
from tqdm import tqdm

from mlgate import config, console, files, metrics, models, project, tracking, tuning
from mlgate.data import DataSpec, target_vector
from mlgate.features import FeatureSettings
from mlgate.project import StageError

STAGE = "tune"


class CrossValidation:
    """The objective: holds the data and folds, so nothing is reloaded or re-split per trial."""

    def __init__(self, frame: pd.DataFrame, spec: DataSpec, folds: int, *, parallel_trials: int, seed: int,
                 cores: int = 2, settings: FeatureSettings | None = None):
        self.X = frame[spec.features]
        self.settings = settings
        self.y = target_vector(frame, spec)
        self.spec = spec
        self.parallel_trials = parallel_trials
        self.cores = cores
        self.seed = seed
        splitter = (StratifiedKFold if spec.task == "binary" else KFold)(n_splits=folds, shuffle=True, random_state=seed)
        self.folds = list(splitter.split(self.X, self.y))

    def __call__(self, family: str, params: dict[str, Any], report: Callable[[int, float], None]) -> tuple[float, list[float]]:
        scores = []
        for step, (fit_rows, score_rows) in enumerate(self.folds):
            threads = models.threads_for(family, self.cores, self.parallel_trials)
            model = models.build(family, params, self.spec, self.settings, threads=threads, seed=self.seed)
            with models.exclusive(family):
                model.fit(self.X.iloc[fit_rows], self.y[fit_rows])
                prediction, probability = models.predict(model, self.X.iloc[score_rows], self.spec.task)
            scores.append(metrics.score(self.spec.metric, self.y[score_rows], prediction, probability))
            report(step, scores[-1])
        return float(np.mean(scores)), scores


def leaderboard(outcomes: list[tuning.TrialOutcome], maximize: bool) -> pd.DataFrame:
    rows = [{"trial": o.number, "family": o.family, "state": o.state, "cv_score": o.score,
             "cv_std": float(np.std(o.fold_scores)) if o.fold_scores else None, "folds": len(o.fold_scores),
             "duration_s": round(o.end - o.start, 3), "params": json.dumps(o.params, sort_keys=True),
             "error": o.error, "reused": o.reused} for o in outcomes]
    board = pd.DataFrame(rows, columns=["trial", "family", "state", "cv_score", "cv_std", "folds", "duration_s", "params",
                                        "error", "reused"])
    board["complete"] = board["state"] == "COMPLETE"
    board = board.sort_values(["complete", "cv_score"], ascending=[False, not maximize], na_position="last")
    return board.drop(columns="complete").reset_index(drop=True)


def best(outcomes: list[tuning.TrialOutcome], maximize: bool) -> tuning.TrialOutcome:
    complete = [o for o in outcomes if o.state == "COMPLETE" and o.score is not None and np.isfinite(o.score)]
    if not complete:
        failed = [o for o in outcomes if o.state == "FAIL"]
        detail = f"; first failure: trial {failed[0].number} ({failed[0].family}): {failed[0].error}" if failed else ""
        raise StageError(f"no trial completed out of {len(outcomes)}{detail}")
    return (max if maximize else min)(complete, key=lambda o: o.score)


# What a trial computes: a change here starts a new study instead of resuming a stored one.
_SCORING_CODE = ("tuning.py", "models.py", "features.py", "metrics.py", "data.py", "stages/tune.py")


def study_name(params: dict[str, Any], train: pd.DataFrame) -> str:
    """`<data name>-<hash>` of everything a trial's score depends on; the budget (n_trials, timeout_s,
    n_jobs) is left out, so a rerun with a larger budget extends the same study."""
    search = {k: v for k, v in config.section(params, "search").items() if k not in ("n_trials", "timeout_s", "n_jobs")}
    package = Path(models.__file__).parent
    inputs = {
        "model": config.section(params, "model"), "search": search, "features": config.section(params, "features"),
        "seed": config.section(params, "seed"), "metric": config.section(params, "data.metric"),
        "data": hashlib.sha256(pd.util.hash_pandas_object(train, index=True).to_numpy().tobytes()).hexdigest(),
        "code": {name: hashlib.sha256((package / name).read_bytes()).hexdigest() for name in _SCORING_CODE},
    }
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"{config.section(params, 'data.name')}-{digest}"


def _trial_record(o: tuning.TrialOutcome, metric: str) -> tracking.TrialRecord:
    status = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}[o.state]
    tags = {"mlgate.trial_state": o.state, "mlgate.trial": str(o.number)}
    if o.reused:
        tags["mlgate.reused"] = "true"
    if o.error:
        tags["mlgate.error"] = o.error[:4000]
    trial_metrics = {"duration_s": o.end - o.start, "cv/folds_run": len(o.fold_scores)}
    if o.score is not None:
        trial_metrics[f"cv/{metric}"] = o.score
    return tracking.TrialRecord(
        name=f"trial-{o.number:03d}-{o.family}", params={"family": o.family, **o.params}, metrics=trial_metrics,
        fold_metrics={f"cv/{metric}_fold": list(o.fold_scores)}, tags=tags, status=status,
        start_ms=int(o.start * 1000), end_ms=int(o.end * 1000),
    )


class _LoggedTrials:
    """Which reused trials already have their MLflow run: the children of the parent that ran them."""

    def __init__(self):
        self.by_parent: dict[str, set[int]] = {}

    def contains(self, outcome: tuning.TrialOutcome) -> bool:
        parent = outcome.origin
        if parent is None:
            return False
        if parent not in self.by_parent:
            children = tracking.child_runs(parent) if tracking.run_exists(parent) else []
            self.by_parent[parent] = {int(c["tags"]["mlgate.trial"]) for c in children if "mlgate.trial" in c["tags"]}
        return outcome.number in self.by_parent[parent]


class Progress:
    """A progress bar on the terminal: trials done, best so far, time left of the budget."""

    def __init__(self, settings: tuning.SearchSettings, metric: str, maximize: bool):
        self.bar = tqdm(total=settings.n_trials, desc=f"{STAGE:<{console.STAGE_WIDTH}} ", unit="trial", leave=False, disable=None,
                        bar_format="{desc}{bar:24} {n_fmt}/{total_fmt} trials{postfix}")
        self.metric, self.maximize, self.deadline = metric, maximize, time.time() + settings.timeout_s
        self.best: float | None = None
        self.counts = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0}
        self.lock = threading.Lock()

    def update(self, outcome: tuning.TrialOutcome) -> None:
        with self.lock:
            self.counts[outcome.state] += 1
            if outcome.state == "COMPLETE" and (self.best is None or (outcome.score > self.best) == self.maximize):
                self.best = outcome.score
            best = "-" if self.best is None else f"{self.best:.4f}"
            left = max(0.0, self.deadline - time.time())
            self.bar.set_postfix_str(f"best {self.metric} {best} · {left:.0f}s left", refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def run(params: dict[str, Any]) -> dict[str, Any]:
    spec = project.data_spec(params)
    paths = project.paths(params)
    names = project.tracking(params)
    seed = project.seed(params)
    try:
        settings = config.load(tuning.SearchSettings, "search", params)
        spaces = tuning.parse_spaces(config.section(params, "model"))
        metric = metrics.get(spec.metric, spec.task)
    except config.ConfigError:
        raise
    except ValueError as error:
        raise StageError(f"params.yaml: {error}") from error
    train = pd.read_parquet(paths.split_file("train"))
    objective = CrossValidation(train, spec, settings.cv_folds, parallel_trials=settings.n_jobs, seed=seed,
                                cores=os.cpu_count() or 1, settings=config.load(FeatureSettings, "features", params))

    data_hash, dvc_md5 = project.lineage(params)
    tags = tracking.lineage_tags(STAGE, data_hash, dvc_md5)
    study = study_name(params, train)
    parent = tracking.create_run(names.experiment, STAGE, tags)
    tracking.log(parent, params={"search." + k: v for k, v in config.section(params, "search").items()}
                 | {"families": ",".join(s.family for s in spaces), "metric": spec.metric, "seed": seed,
                    "train_rows": len(train), "study": study,
                    "study_storage": paths.study.split("://")[0] + "://…" if "://" in paths.study else paths.study})
    tracking.log_artifact(parent, "params.yaml", "config")
    progress = Progress(settings, spec.metric, metric.greater_is_better)
    started = time.time()
    status = "FAILED"
    try:
        with tracking.trial_recorder(names.experiment, parent, tags) as recorder:
            logged = _LoggedTrials()

            def on_trial(outcome: tuning.TrialOutcome) -> None:
                if not (outcome.reused and logged.contains(outcome)):
                    recorder.record(_trial_record(outcome, spec.metric))
                progress.update(outcome)
            try:
                outcomes = tuning.optimize(spaces, objective, settings, maximize=metric.greater_is_better, seed=seed,
                                           on_trial=on_trial, storage=tuning.storage_url(paths.study),
                                           study_name=study, origin=parent)
            except KeyboardInterrupt:
                status = "KILLED"
                raise
        if recorder.errors:
            console.say(STAGE, f"warning: {len(recorder.errors)} trial run(s) not tracked: {recorder.errors[0]}")
        winner = best(outcomes, metric.greater_is_better)
        board = leaderboard(outcomes, metric.greater_is_better)
        files.write_text(paths.leaderboard, board.to_csv(index=False))
        counts = {state: sum(o.state == state for o in outcomes) for state in ("COMPLETE", "PRUNED", "FAIL")}
        reused = sum(o.reused for o in outcomes)
        result = {
            "family": winner.family, "params": winner.params, "metric": spec.metric,
            "cv_score": winner.score, "cv_std": float(np.std(winner.fold_scores)), "trial": winner.number,
            "trials": {"complete": counts["COMPLETE"], "pruned": counts["PRUNED"], "failed": counts["FAIL"]},
            "tune_run_id": parent, "seed": seed, "cv_folds": settings.cv_folds,
            "study": {"name": study, "reused_trials": reused},
        }
        earlier = sorted({o.origin for o in outcomes if o.reused and o.origin and o.origin != parent})
        tracking.log(parent, metrics={f"best/cv_{spec.metric}": winner.score, "trials_complete": counts["COMPLETE"],
                                      "trials_pruned": counts["PRUNED"], "trials_failed": counts["FAIL"],
                                      "trials_reused": reused, "duration_s": time.time() - started},
                     params={"best.family": winner.family, "best.trial": winner.number},
                     tags={"mlgate.best_params": json.dumps(winner.params, sort_keys=True)[:4000]}
                     | ({"mlgate.resumed_from": ",".join(earlier)[:4000]} if earlier else {}))
        tracking.log_artifact(parent, paths.leaderboard)
        files.write_json(paths.best_params, result)
        status = "FINISHED"
    finally:
        progress.close()
        tracking.finish_run(parent, status)
    resumed = f", {reused} of them reused from study {study}" if reused else ""
    console.say(STAGE, f"{len(outcomes)} trials in {time.time() - started:.0f}s ({counts['COMPLETE']} complete, "
                       f"{counts['PRUNED']} pruned, {counts['FAIL']} failed{resumed}); best {winner.family} "
                       f"cv {spec.metric} {winner.score:.4f} ± {result['cv_std']:.4f} (trial {winner.number}) → {paths.best_params}")
    width = max(14, *(len(o.family) for o in outcomes))
    for family in sorted({o.family for o in outcomes}):
        family_best = board[(board.family == family) & (board.state == "COMPLETE")].head(1)
        if len(family_best):
            console.say("", f"  {family:<{width}} best cv {spec.metric} {family_best.cv_score.iloc[0]:.4f}")
    return result
