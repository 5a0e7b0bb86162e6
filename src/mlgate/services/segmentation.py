"""Clustering as a library call: a frame in, the segmentation a wall-clock budget finds, with its
scores and its stability. The benchmark (benchmarks/clustering.py) calls it; the pipeline's clustering
stages will search the same way."""

from __future__ import annotations

import json
import time
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
) -> Segmentation:
    """Search ``model_section``'s families (conf/model/<family>.yaml entries) on ``frame`` for
    ``SEARCH_SHARE`` of ``budget_s``, guided by ``metric``; choose among the completed trials by
    ``select`` (``consensus``: the three scores' vote, ``clustering.consensus``; ``metric``: the best by
    ``metric``); then refit the choice on up to ``stability_resamples`` bootstrap resamples, as many as the
    rest of the budget allows."""
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

    outcomes = optuna_study.optimize(
        spaces,
        evaluate,
        settings,
        maximize=maximize,
        seed=seed,
        on_trial=lambda outcome: None,
        deadline=deadline,
    )
    complete = [o for o in outcomes if o.state == "COMPLETE"]
    if not complete:
        errors = sorted({o.error for o in outcomes if o.error})[:3]
        raise ValueError(f"no clustering trial completed in {budget_s:.0f}s: {errors}")
    best_first = sorted(complete, key=lambda o: -o.score if maximize else o.score)
    if select == "consensus":
        # one candidate per family and number of clusters (its best trial by metric), so that many
        # near-copies of one segmentation do not crowd the ranks
        candidates = list(
            {(o.family, judged_by_trial[_key(o.family, o.params)].n_clusters): o for o in reversed(best_first)}.values()
        )
        chosen = candidates[clustering.consensus([judged_by_trial[_key(o.family, o.params)] for o in candidates])]
    else:
        chosen = best_first[0]
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
    return Segmentation(model, labels, judged, stable, outcomes)


def _key(family: str, params: dict[str, Any]) -> str:
    return json.dumps([family, params], sort_keys=True, default=str)
