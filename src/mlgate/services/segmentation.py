"""Clustering as a library call: a frame in, the segmentation a wall-clock budget finds, with its
scores and its stability. The benchmark (benchmarks/clustering.py) calls it; the pipeline's clustering
stages will search the same way. Given an MLflow experiment, the search is tracked as the tune stage's
is: one parent run, every trial a nested run with its scores, the choice and its stability on the parent."""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlgate.adapters import optuna_study
from mlgate.modelling import clustering

SELECTIONS = ("consensus", "metric")
SEARCH_SHARE = 0.75  # of the budget; the rest refits the chosen segmentation for its stability


@dataclass(frozen=True)
class Segmentation:
    model: clustering.Segmenter
    labels: np.ndarray  # the frame's clusters (clustering.NOISE: in none)
    scores: clustering.ClusterScores
    stability: clustering.Stability | None  # None: the budget left no time for two refits
    trials: list[optuna_study.TrialOutcome]


def column_kinds(frame: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(numeric, categorical) columns by dtype; booleans are categorical."""
    numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c]) and frame[c].dtype != bool]
    return numeric, [c for c in frame.columns if c not in numeric]


def fit(
    frame: pd.DataFrame,
    model_section: dict[str, Any],
    *,
    metric: str = "silhouette",
    budget_s: float = 30.0,
    seed: int = 0,
    sampler: str = "tpe",
    select: str = "consensus",
    stability_resamples: int = 5,
    experiment: str | None = None,
) -> Segmentation:
    """Search ``model_section``'s families (conf/model/<family>.yaml entries) on ``frame`` for
    ``SEARCH_SHARE`` of ``budget_s``, guided by ``metric``; choose among the completed trials by
    ``select`` (``consensus``: the three scores' vote, ``clustering.consensus``; ``metric``: the best by
    ``metric``); then refit the choice on up to ``stability_resamples`` bootstrap resamples, as many as the
    rest of the budget allows. With ``experiment``, tracked there (the tracking URI is MLflow's, from
    MLFLOW_TRACKING_URI)."""
    started = time.monotonic()
    if metric not in clustering.METRICS:
        raise ValueError(f"metric '{metric}' is not a clustering metric; choose one of {tuple(clustering.METRICS)}")
    maximize = clustering.METRICS[metric]
    if select not in SELECTIONS:
        raise ValueError(f"select must be one of {SELECTIONS}, got '{select}'")
    numeric, categorical = column_kinds(frame)
    spaces = optuna_study.parse_spaces(model_section)
    unknown = [s.family for s in spaces if s.family not in clustering.FAMILIES]
    if unknown:
        raise ValueError(f"{unknown} are not clustering families; choose from {clustering.FAMILIES}")
    settings = optuna_study.SearchSettings(
        sampler=sampler,
        pruner="none",
        n_trials=10_000,
        timeout_s=budget_s * SEARCH_SHARE,
        cv_folds=2,
        n_jobs=1,
        budget="time",
    )
    deadline = optuna_study.Deadline.after(budget_s * SEARCH_SHARE)

    def build(family: str, params: dict[str, Any], fit_seed: int = seed) -> clustering.Segmenter:
        return clustering.Segmenter(family, params, numeric, categorical, fit_seed)

    judged_by_trial: dict[str, clustering.ClusterScores] = {}

    def evaluate(family: str, params: dict[str, Any], report: Any, **_: Any) -> tuple[float, list[float]]:
        model = build(family, params).fit(frame)
        judged = clustering.scores(model.embed(frame), model.predict(frame), seed=seed)
        judged_by_trial[_key(family, params)] = judged
        value = judged.metric(metric)
        if value is None:
            raise ValueError(f"{judged.n_clusters} cluster(s) found: {metric} needs two or more")
        return value, [value]

    with _tracked(experiment, frame, metric, seed, budget_s) as record:
        outcomes = optuna_study.optimize(
            spaces,
            evaluate,
            settings,
            maximize=maximize,
            seed=seed,
            on_trial=lambda outcome: record.trial(outcome, judged_by_trial.get(_key(outcome.family, outcome.params))),
            deadline=deadline,
        )
        complete = [o for o in outcomes if o.state == "COMPLETE"]
        if not complete:
            errors = sorted({o.error for o in outcomes if o.error})[:3]
            raise ValueError(f"no clustering trial completed in {budget_s:.0f}s: {errors}")
        chosen = _choose(complete, judged_by_trial, maximize, select)
        fit_started = time.monotonic()
        model = build(chosen.family, chosen.params).fit(frame)
        labels = model.predict(frame)
        judged = clustering.scores(model.embed(frame), labels, seed=seed)
        fit_s = time.monotonic() - fit_started
        left = budget_s - (time.monotonic() - started)
        resamples = min(stability_resamples, int(left // max(fit_s, 1e-3)))
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
    return Segmentation(model, labels, judged, stable, outcomes)


def _choose(
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
            (outcome.family, judged_by_trial[_key(outcome.family, outcome.params)].n_clusters), outcome
        )
    chosen = list(candidates.values())
    return chosen[clustering.consensus([judged_by_trial[_key(o.family, o.params)] for o in chosen])]


def _key(family: str, params: dict[str, Any]) -> str:
    return json.dumps([family, params], sort_keys=True, default=str)


class _Untracked:
    def trial(self, outcome: optuna_study.TrialOutcome, judged: clustering.ClusterScores | None) -> None:
        pass

    def choice(self, chosen: Any, judged: Any, stable: Any, select: str) -> None:
        pass


class _Recorded:
    """The search's parent run and its trial runs (written off the search's path by the trial recorder)."""

    def __init__(self, parent_run_id: str, recorder: Any):
        self.parent_run_id = parent_run_id
        self.recorder = recorder

    def trial(self, outcome: optuna_study.TrialOutcome, judged: clustering.ClusterScores | None) -> None:
        from mlgate.adapters import tracking

        tags = {"mlgate.trial": str(outcome.number), "mlgate.trial_state": outcome.state}
        if outcome.error:
            tags["mlgate.error"] = outcome.error[:4000]
        self.recorder.record(
            tracking.TrialRecord(
                name=f"trial-{outcome.number:03d}-{outcome.family}",
                params={"family": outcome.family, **outcome.params},
                metrics={"duration_s": outcome.end - outcome.start} | _score_metrics(judged),
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
        from mlgate.adapters import tracking

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
            metrics=_score_metrics(judged) | stability,
        )


def _score_metrics(judged: clustering.ClusterScores | None) -> dict[str, float]:
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
def _tracked(
    experiment: str | None, frame: pd.DataFrame, metric: str, seed: int, budget_s: float
) -> Iterator[_Untracked | _Recorded]:
    """Nothing without an experiment; else the parent run (lineage: git commit, data hash) for the block,
    and its trial recorder, closed (every trial written) before the parent ends."""
    if experiment is None:
        yield _Untracked()
        return
    from mlgate.adapters import tracking

    data_hash = hashlib.sha256(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes()).hexdigest()
    tags = tracking.lineage_tags("segment", data_hash) | {"mlgate.task": "clustering"}
    with tracking.stage_run(experiment, "segment", tags) as parent:
        tracking.log(parent, params={"metric": metric, "seed": seed, "budget_s": budget_s, "rows": len(frame)})
        with tracking.trial_recorder(experiment, parent, {"mlgate.task": "clustering"}) as recorder:
            yield _Recorded(parent, recorder)
