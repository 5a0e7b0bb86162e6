"""Warm-started retraining against a cold one: how long a retraining's search takes to reach the cold
search's best CV score, and what each final model scores on the test rows.

The scenario, per dataset and seed: the training rows arrive in two batches (the split's train rows
shuffled with the seed, or in the order of `--order-by` columns such as a sale's year; the first
`--first-share` of them come first). Version 1 is searched cold on
the first batch, as the pipeline would search it. The retraining then searches every training row twice
with the same budget (`--trials`, in batches of the preset's search.n_jobs, so each search is the one
the pipeline makes): cold (each family's first trial, then the sampler); queue (version 1's study's best
`--warm-trials` configurations first, its best trial as trial 0); and warm (search.warm_start: the queue,
and TPE also learns from every scored trial of version 1's study). For each,
the wall seconds until its best CV score so far reaches the cold search's best (``reach_s``; the warm
search may never reach it: then None, with its gap), its whole search, and its final model (the tune
stage's finishing on its trials, refit on every training row by the train stage's code) scored on
the split's test rows. The goal: the warm search reaches the cold one's best in at most a third of the
time the cold one took, at the same test score. The budget a retraining could save is also measured
directly: each warm variant stopped after a third of the cold search's wall time (its trials that ended
by then, finished and refit the same way), tested against the whole cold search (``1/3 t``). The cold
search stopped at a third is the control: where it tests as well as its whole search, any search gets there
by then, and each warm third is also compared with it. All the searches of a run share the machine's load.

A search's best CV score is the best of many noisy draws on its own folds, so reaching the cold one's
best exactly is partly a race to the luckiest draw. Two readings remove that: each search's successive
best configurations are scored again on `--fresh-folds` other fold splits (and model seeds), and its
reach time is when the configuration it held first scores at least the cold best's fresh score, against
the time the cold search took to hold such a configuration (``fresh_reach``); and each warm model's test
score is compared with the whole cold search's by a paired bootstrap over the test rows (``test_ci``,
the 95% interval of its improvement: an upper end at least 0 means the test rows do not show it worse).

`--exclude` drops the rows a condition holds for from train and test, for data whose documentation names
rows the model is not for: on ames, `area > 4000` (De Cock's partial sales of very large houses, which
decide an RMSE on a few hundred test rows by themselves).

Datasets are conf/experiment presets (the bundled telco_churn; ames, credit_data, recid, budget_uk,
telco_contract, diamonds with their files under data/source). Run:
`.venv/bin/python benchmarks/warm_start.py [--datasets telco_churn ames] [--seeds 0 1] [--json out.json]`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tiny_model import BIN, copy_project, environment, run_benchmark

GOAL_RATIO = 1 / 3  # warm reach_s / cold reach_s
WARM_VARIANTS = ("queue", "warm", "continue")  # the queue alone; with the prior; and with the continuation too


def prepare(root: Path, dataset: str) -> None:
    """The preset's params and its split, in a copy of the project (ingest, validate, split: no MLflow)."""
    env = environment(f"sqlite:///{root / 'mlflow.db'}")
    copy_project(root, env)
    for command in (["params", f"experiment={dataset}"], ["ingest"], ["validate"], ["split"]):
        out = subprocess.run([str(BIN / "mlgate"), *command], cwd=root, env=env, capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(
                f"{dataset}: mlgate {' '.join(command)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
            )


def search(
    train: pd.DataFrame, params: dict, trials: int, warm: list, prior: list, store: Path, continuation: Any = None
) -> dict[str, Any]:
    """One study as the tune stage runs it, in memory, its queue in the stage's order
    (``tune.TuneSettings.queued``); its trials with their end times, and its finish. With a ``continuation``
    (``tune.Continuation``) the study also searches production's CatBoost model going on training, as
    ``tune.warm_started`` sets it up."""
    from mlgate import config, project
    from mlgate.adapters import optuna_study
    from mlgate.modelling import models
    from mlgate.stages import tune

    spec = project.data_spec(params)
    settings = tune.TuneSettings.parse(params, spec)
    if warm:
        settings = dataclasses.replace(settings, warm=tune.WarmStart(1, "", tuple(warm), tuple(prior), continuation))
    if continuation is not None:
        (space,) = optuna_study.parse_spaces({models.CONTINUED: {"space": tune.CONTINUATION_SPACE}})
        settings = dataclasses.replace(settings, spaces=(*settings.spaces, space))
    search_settings = dataclasses.replace(config.load(optuna_study.SearchSettings, "search", params), n_trials=trials)
    objective = cross_validation(train, params, settings.seed, store, continuation)
    started = time.time()
    outcomes = optuna_study.optimize(
        list(settings.spaces),
        objective,
        search_settings,
        maximize=settings.maximize,
        seed=settings.seed,
        on_trial=lambda outcome: None,
        queued=settings.queued,  # as the tune stage queues them
        prior=prior,
    )
    seconds = time.time() - started
    return {
        "outcomes": outcomes,
        "seconds": seconds,
        "started": started,
        "finish": tune.finish(outcomes, objective, spec, settings.finish),
        "spec": spec,
        # the finish the search would have made had it been stopped after ``s`` seconds
        "finish_by": lambda s: tune.finish(
            [o for o in outcomes if o.end - started <= s], objective, spec, settings.finish
        ),
    }


def cross_validation(train: pd.DataFrame, params: dict, seed: int, store: Path | None, continuation: Any = None) -> Any:
    """The tune stage's objective on ``train``: its folds and models seeded with ``seed``."""
    from mlgate import config, project
    from mlgate.adapters import optuna_study
    from mlgate.modelling.features import FeatureSettings
    from mlgate.stages import tune

    search_settings = config.load(optuna_study.SearchSettings, "search", params)
    return tune.CrossValidation(
        train,
        project.data_spec(params),
        search_settings.cv_folds,
        parallel_trials=search_settings.n_jobs,
        seed=seed,
        cores=tune.usable_cores(),
        settings=config.load(FeatureSettings, "features", params),
        holdout=search_settings.holdout_share if tune.use_holdout(search_settings, len(train)) else None,
        store_dir=store,
        continuation=continuation,
    )


class FreshFolds:
    """A configuration's CV score on folds no search chose it on: the mean over ``seeds`` (each another
    fold split and model seed than the searches'), each configuration scored once. A search's best CV
    score is the best of many noisy draws on its own folds, so it flatters its configuration (on ames,
    seed 1, the top configurations trade places from one fold split to the next); scored again on fresh
    folds, the configurations a search held compare without that bias."""

    def __init__(self, train: pd.DataFrame, params: dict, seeds: list[int], continuation: Any = None):
        self.objectives = [cross_validation(train, params, seed, None, continuation) for seed in seeds]
        self.scores: dict[str, float] = {}

    def __call__(self, family: str, params: dict[str, Any]) -> float:
        from mlgate.stages import tune

        key = tune.trial_key(family, params)
        if key not in self.scores:
            self.scores[key] = float(
                np.mean([cv(family, params, lambda step, score: None)[0] for cv in self.objectives])
            )
        return self.scores[key]


def incumbents(result: dict[str, Any], maximize: bool) -> list[Any]:
    """The trials that held the search's best CV score, in the order they ended."""
    from mlgate.stages import tune

    held, best = [], None
    for outcome in sorted(tune.final_candidates(result["outcomes"]), key=lambda o: o.end):
        if best is None or (outcome.score > best if maximize else outcome.score < best):
            held.append(outcome)
            best = outcome.score
    return held


def fresh_reach(
    result: dict[str, Any], target: float, maximize: bool, fresh: FreshFolds, scored: list | None = None
) -> dict[str, Any] | None:
    """Seconds from the search's start until the configuration it held scored at least ``target`` on fresh
    folds (``FreshFolds``), and that score; None when none of them did. Its incumbents are scored in the
    order they ended until one does; each one scored is added to ``scored``."""
    for outcome in incumbents(result, maximize):
        held = {
            "seconds": outcome.end - result["started"],
            "trial": outcome.number,
            "score": fresh(outcome.family, outcome.params),
        }
        if scored is not None:
            scored.append(held)
        if held["score"] >= target if maximize else held["score"] <= target:
            return held
    return None


def reach(result: dict[str, Any], target: float, maximize: bool) -> float | None:
    """Seconds from the search's start until a complete trial scored at least ``target``."""
    hits = [
        o.end - result["started"]
        for o in result["outcomes"]
        if o.state == "COMPLETE" and o.score is not None and (o.score >= target if maximize else o.score <= target)
    ]
    return min(hits) if hits else None


def best_trial(result: dict[str, Any], maximize: bool) -> dict[str, Any]:
    """Which trial gave the search's best CV score, and when it ended."""
    from mlgate.stages import tune

    found = tune.best(result["outcomes"], maximize)
    return {
        "number": found.number,
        "family": found.family,
        "params": found.params,
        "end_s": found.end - result["started"],
    }


def test_score(
    result: dict[str, Any],
    train: pd.DataFrame,
    test: pd.DataFrame,
    params: dict,
    finish: Any = None,
    going_on: Any = None,
) -> tuple[float, np.ndarray]:
    """The search's final model (its finish, or ``finish``, refit on every training row, as the train stage
    does; a continuation member goes on from ``going_on``'s model), scored on the test rows as the evaluate
    stage scores the logged model's outputs; and what the metric scored (probabilities or predictions),
    for a paired comparison."""
    from mlgate import config
    from mlgate.modelling import metrics
    from mlgate.modelling.data import target_vector
    from mlgate.modelling.features import FeatureSettings
    from mlgate.stages import train as training

    spec = result["spec"]
    chosen = result["finish"] if finish is None else finish
    model = training.fit(train, spec, chosen, config.load(FeatureSettings, "features", params), 0, going_on=going_on)
    task = spec.learning_task
    prediction, probability = task.read_outputs(task.output_frame(*task.outputs(model, test[spec.features])))
    scored = probability if metrics.METRICS[spec.metric].uses_probability else prediction
    return metrics.score(spec.metric, target_vector(test, spec), prediction, probability), scored


def one(dataset: str, seed: int, args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    from mlgate import config, project
    from mlgate.modelling import metrics
    from mlgate.modelling.data import target_vector
    from mlgate.stages import tune

    root = scratch / f"{dataset}-{seed}"
    prepare(root, dataset)
    os.chdir(root)
    params = config.read_params()
    params["seed"] = seed
    train, train_excluded = excluding(pd.read_parquet(root / "data/split/train.parquet"), args.exclude, "train")
    test, test_excluded = excluding(pd.read_parquet(root / "data/split/test.parquet"), args.exclude, "test")
    train = arrival_order(train, seed, args.order_by)
    first = train.iloc[: int(len(train) * args.first_share)]
    maximize = tune.TuneSettings.parse(params, project.data_spec(params)).maximize

    version1 = search(first, params, args.trials, [], [], root / "v1")
    table = tune.trial_table(version1["outcomes"], maximize)
    families = {s.family for s in tune.TuneSettings.parse(params, version1["spec"]).spaces}
    warm = tune.warm_configs(table, families, args.warm_trials, maximize)
    prior = tune.warm_observations(table, families)
    continuation, going_on = production_catboost(version1, first, train, params)
    searches = {
        "cold": search(train, params, args.trials, [], [], root / "cold"),
        "queue": search(train, params, args.trials, warm, [], root / "queue"),
        "warm": search(train, params, args.trials, warm, prior, root / "warm"),
    }
    if continuation is not None:
        searches["continue"] = search(train, params, args.trials, warm, prior, root / "continue", continuation)
    target = tune.best(searches["cold"]["outcomes"], maximize).score
    spec = searches["cold"]["spec"]
    y_test = target_vector(test, spec)
    fresh_seeds = [1000 * (k + 1) + seed for k in range(args.fresh_folds)]  # none of them a search's seed
    fresh = FreshFolds(train, params, fresh_seeds, continuation)
    cold_best = tune.best(searches["cold"]["outcomes"], maximize)
    fresh_target = fresh(cold_best.family, cold_best.params)
    result = {"dataset": dataset, "seed": seed, "rows": len(train), "first_rows": len(first), "continue": None}
    if args.exclude:
        result["excluded"] = {"query": args.exclude, "train": train_excluded, "test": test_excluded}
    scored = {}
    for name, r in searches.items():
        test_metric, scored[name] = test_score(r, train, test, params, going_on=going_on)
        fresh_incumbents: list[dict[str, Any]] = []
        fresh_reached = fresh_reach(r, fresh_target, maximize, fresh, fresh_incumbents)
        result[name] = {
            "search_s": r["seconds"],
            "reach_s": reach(r, target, maximize),
            "fresh_reach": fresh_reached,
            "fresh_incumbents": fresh_incumbents,
            "best_cv": tune.best(r["outcomes"], maximize).score,
            "test": test_metric,
            "first_trial": [r["outcomes"][0].family, r["outcomes"][0].params],
            "best_trial": best_trial(r, maximize),
            "chosen": r["finish"].describe(),
        }
    result["metric"] = spec.metric
    result["fresh_folds"] = {"seeds": fresh_seeds, "cold_best": fresh_target}
    third = searches["cold"]["seconds"] * GOAL_RATIO
    # every search stopped after a third of the cold search's time: its finish, refit and tested against the
    # whole cold search; the cold search's own third is the control (a search that needs no warm start to
    # get there by then), and each warm third is also compared with it
    thirds = {}
    for name in ("cold", *(n for n in WARM_VARIANTS if n in searches)):
        stopped = [o for o in searches[name]["outcomes"] if o.end - searches[name]["started"] <= third]
        result[name]["third"] = {"seconds": third, "trials": len(stopped), "best_cv": None, "test": None}
        if stopped:
            finish = searches[name]["finish_by"](third)
            third_metric, thirds[name] = test_score(searches[name], train, test, params, finish, going_on)
            result[name]["third"] |= {
                "best_cv": tune.best(stopped, maximize).score,
                "test": third_metric,
                "test_ci": metrics.paired_bootstrap(spec.metric, y_test, thirds[name], scored["cold"], seed=seed),
                "chosen": finish.describe(),
            }
            if name != "cold" and "cold" in thirds:
                result[name]["third"]["test_ci_against_cold_third"] = metrics.paired_bootstrap(
                    spec.metric, y_test, thirds[name], thirds["cold"], seed=seed
                )
    for name in (n for n in WARM_VARIANTS if n in searches):
        reached = result[name]["reach_s"]
        result[f"{name}_reach_ratio"] = None if reached is None else reached / result["cold"]["reach_s"]
        fresh_reached = result[name]["fresh_reach"]
        result[f"{name}_fresh_reach_ratio"] = (
            None if fresh_reached is None else fresh_reached["seconds"] / result["cold"]["fresh_reach"]["seconds"]
        )
        result[name]["test_ci"] = metrics.paired_bootstrap(spec.metric, y_test, scored[name], scored["cold"], seed=seed)
    return result


def excluding(frame: pd.DataFrame, query: str | None, split: str) -> tuple[pd.DataFrame, int]:
    """``frame`` without the rows ``query`` (a pandas expression over its columns) holds true for, and how
    many that dropped: rows the data's own documentation says are not what the model is for (ames: De
    Cock's partial sales of houses over 4,000 square feet, `area > 4000`), on both sides of the split."""
    if not query:
        return frame, 0
    try:
        matched = frame.eval(query)
    except Exception as error:  # pandas raises many types for a bad expression
        raise SystemExit(f"--exclude '{query}' cannot be read on the {split} rows: {error}") from error
    if not isinstance(matched, pd.Series) or matched.dtype != bool:
        raise SystemExit(f"--exclude '{query}' must be a true/false condition on each row, as `area > 4000` is")
    return frame[~matched], int(matched.sum())


def arrival_order(train: pd.DataFrame, seed: int, order_by: list[str] | None) -> pd.DataFrame:
    """The train rows in the order they arrive: shuffled with the seed, then (``order_by``: columns such as
    a sale's year and month) sorted by those columns, ties kept in the shuffled order, so the first batch
    is the earliest rows and the retraining's new rows come later, as data ordered in time does."""
    shuffled = train.sample(frac=1.0, random_state=seed)
    if not order_by:
        return shuffled
    missing = [c for c in order_by if c not in shuffled.columns]
    if missing:
        raise SystemExit(f"--order-by: {missing} not among the train split's columns")
    return shuffled.sort_values(order_by, kind="stable")


def production_catboost(version1: dict[str, Any], first: pd.DataFrame, train: pd.DataFrame, params: dict) -> tuple:
    """Version 1's model as a retraining finds it: the heaviest CatBoost member of its finish fitted on the
    first batch as `train` fits it, and the continuation that goes on from it (every train row of the
    first batch is one it trained on); (None, None) when its finish holds no CatBoost model, as the
    pipeline then searches no continuation."""
    from mlgate import config, project
    from mlgate.modelling import models
    from mlgate.modelling.data import target_vector
    from mlgate.modelling.features import FeatureSettings
    from mlgate.stages import train as training
    from mlgate.stages import tune

    members = [(i, m) for i, m in enumerate(version1["finish"].members) if m.family == "catboost"]
    if not members:
        return None, None
    index, member = max(members, key=lambda pair: pair[1].weight)
    spec = project.data_spec(params)
    settings = config.load(FeatureSettings, "features", params)
    production = models.build("catboost", member.params, spec, settings, threads=2, seed=project.seed(params))
    models.serial_predictions(production.fit(first[spec.features], target_vector(first, spec)))
    trained = np.arange(len(train)) < len(first)  # ``first`` is the head of ``train``
    return tune.Continuation(1, index, dict(member.params), trained), training.GoingOn(production, trained)


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    here = Path.cwd()
    runs = []
    with tempfile.TemporaryDirectory(prefix="mlgate-warm-") as tmp:
        try:
            for dataset in args.datasets:
                for seed in args.seeds:
                    runs.append(one(dataset, seed, args, Path(tmp)))
                    print(f"  done: {row(runs[-1])}", file=sys.stderr, flush=True)  # a long run's results so far
        finally:
            os.chdir(here)
    return {
        "runs": runs,
        "summary": summarize(runs),
        "goal_ratio": GOAL_RATIO,
        "settings": {
            "trials": args.trials,
            "warm_trials": args.warm_trials,
            "first_share": args.first_share,
            "order_by": args.order_by,
            "fresh_folds": args.fresh_folds,
            "exclude": args.exclude,
            "loadavg": os.getloadavg(),
        },
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per warm variant: the median of its reach ratios (runs where it never reached the cold best are
    left out and counted in ``reached``), and in how many runs its best CV score was at least the cold one's."""
    summary = {}
    for name in WARM_VARIANTS:
        ran = [r for r in runs if r.get(name) is not None]  # no continuation without a CatBoost model
        ratios = [r[f"{name}_reach_ratio"] for r in ran if r[f"{name}_reach_ratio"] is not None]
        summary[name] = {
            "runs": len(ran),
            "median_reach_ratio": statistics.median(ratios) if ratios else None,
            "reached": f"{len(ratios)}/{len(ran)}",
            "better_or_equal_cv": sum(_at_least_cold(r, name) for r in ran),
            "third_test_at_least_cold": sum(_third_at_least_cold(r, name) for r in ran),
            "test_at_least_cold": sum(_tests_at_least_cold(r, name) for r in ran),
        }
        fresh = [r for r in ran if f"{name}_fresh_reach_ratio" in r]  # runs measured before fresh folds lack it
        if fresh:
            fresh_ratios = [r[f"{name}_fresh_reach_ratio"] for r in fresh if r[f"{name}_fresh_reach_ratio"] is not None]
            summary[name] |= {
                "median_fresh_reach_ratio": statistics.median(fresh_ratios) if fresh_ratios else None,
                "fresh_reached": f"{len(fresh_ratios)}/{len(fresh)}",
                "third_test_not_worse": sum(_not_worse(r[name]["third"].get("test_ci")) for r in fresh),
                "test_not_worse": sum(_not_worse(r[name].get("test_ci")) for r in fresh),
            }
        controlled = [r for r in ran if "test_ci_against_cold_third" in r[name]["third"]]
        if controlled:  # runs recorded before the control lack it
            summary[name] |= {
                "controlled_runs": len(controlled),
                "cold_third_not_worse": sum(_not_worse(r["cold"]["third"]["test_ci"]) for r in controlled),
                "third_better_than_cold_third": sum(
                    _better(r[name]["third"]["test_ci_against_cold_third"]) for r in controlled
                ),
            }
    return summary


def _better(interval: list[float] | tuple[float, float] | None) -> bool:
    """Whether a paired bootstrap interval of an improvement lies above 0: the test rows show it better."""
    return interval is not None and interval[0] > 0


def _not_worse(interval: list[float] | tuple[float, float] | None) -> bool:
    """Whether a paired bootstrap interval of the variant's improvement over the cold model leaves room for
    no loss: its upper end at least 0 (the test rows do not show the cold model better)."""
    return interval is not None and interval[1] >= 0


def _tests_at_least_cold(run: dict[str, Any], name: str) -> bool:
    """Whether the variant's final model tests at least as well as the cold search's."""
    from mlgate.modelling import metrics

    return metrics.improvement(run["metric"], run[name]["test"], run["cold"]["test"]) >= 0


def _third_at_least_cold(run: dict[str, Any], name: str) -> bool:
    """Whether the variant, stopped after a third of the cold search's time, tests at least as well as the
    whole cold search's model."""
    from mlgate.modelling import metrics

    third = run[name]["third"]["test"]
    return third is not None and metrics.improvement(run["metric"], third, run["cold"]["test"]) >= 0


def _at_least_cold(run: dict[str, Any], name: str) -> bool:
    """Whether the variant's best CV score is at least the cold search's."""
    from mlgate.modelling import metrics

    return metrics.improvement(run["metric"], run[name]["best_cv"], run["cold"]["best_cv"]) >= 0


def row(r: dict[str, Any]) -> str:
    """One run's line of the table ("-" for a variant that did not run)."""

    def of(name: str, key: str, form: str) -> str:
        value = (r.get(name) or {}).get(key)
        return "-" if value is None else format(value, form)

    reached = {
        n: "never" if r.get(n) and r[n].get("reach_s") is None else of(n, "reach_s", ".1f") for n in WARM_VARIANTS
    }
    thirds = {n: _tested((r.get(n) or {}).get("third", {}).get("test")) for n in WARM_VARIANTS}
    return (
        f"{r['dataset']:<13} {r['seed']:>4} {r['rows']:>6} {r['metric']:<8} {r['cold']['search_s']:>6.0f} "
        f"{r['cold']['reach_s']:>13.1f} {reached['queue']:>7} {reached['warm']:>7} {reached['continue']:>8} "
        f"{r['cold']['best_cv']:>9.4f} {of('queue', 'best_cv', '.4f'):>9} {of('warm', 'best_cv', '.4f'):>9} "
        f"{of('continue', 'best_cv', '.4f'):>9} {r['cold']['test']:>10.4f} {of('queue', 'test', '.4f'):>9} "
        f"{of('warm', 'test', '.4f'):>9} {of('continue', 'test', '.4f'):>9} "
        f"{thirds['queue']:>12} {thirds['warm']:>9} {thirds['continue']:>9}"
    )


def fresh_row(r: dict[str, Any]) -> str:
    """One run's line of the fresh-fold and paired test table."""

    def reached(name: str) -> str:
        found = (r.get(name) or {}).get("fresh_reach", False)
        if found is False:
            return "-"
        return "never" if found is None else f"{found['seconds']:.1f}"

    def interval(name: str, third: bool) -> str:
        held = r.get(name) or {}
        return _interval((held.get("third") or {}).get("test_ci") if third else held.get("test_ci"))

    return (
        f"{r['dataset']:<13} {r['seed']:>4} {r['fresh_folds']['cold_best']:>12.4f} "
        + " ".join(f"{reached(n):>8}" for n in ("cold", *WARM_VARIANTS))
        + " "
        + " ".join(f"{interval(n, False):>22}" for n in WARM_VARIANTS)
        + " "
        + " ".join(f"{interval(n, True):>22}" for n in WARM_VARIANTS)
    )


def control_row(r: dict[str, Any]) -> str:
    """One run's line of the control: the cold search stopped at a third against its whole search, and each
    warm variant stopped at a third against it."""
    cold = r["cold"].get("third") or {}

    def against(name: str) -> str:
        return _interval(((r.get(name) or {}).get("third") or {}).get("test_ci_against_cold_third"))

    return (
        f"{r['dataset']:<13} {r['seed']:>4} {_tested(cold.get('test')):>14} {_interval(cold.get('test_ci')):>22} "
        + " ".join(f"{against(n):>22}" for n in WARM_VARIANTS)
    )


def _interval(found: list[float] | None) -> str:
    return "-" if found is None else f"[{found[0]:+.4g}, {found[1]:+.4g}]"


def _tested(score: float | None) -> str:
    return "-" if score is None else f"{score:.4f}"


def report(result: dict[str, Any]) -> None:
    s = result["settings"]
    print(
        f"warm against cold retraining: {s['trials']} trials each; 'queue' runs the best {s['warm_trials']} of "
        f"version 1's study first (searched on the first {s['first_share']:.0%} of the training rows), 'warm' "
        f"also gives TPE all of that study's scored trials (search.warm_start); load average {s['loadavg'][0]:.2f}"
    )
    print(
        f"{'dataset':<13} {'seed':>4} {'rows':>6} {'metric':<8} {'cold s':>6} {'reach s: cold':>13} {'queue':>7} "
        f"{'warm':>7} {'continue':>8} {'cv: cold':>9} {'queue':>9} {'warm':>9} {'continue':>9} {'test: cold':>10} "
        f"{'queue':>9} {'warm':>9} {'continue':>9} {'1/3 t: queue':>12} {'warm':>9} {'continue':>9}"
    )
    for r in result["runs"]:
        print(row(r))
    print(
        f"fresh folds: each search's best configuration so far scored again on {s['fresh_folds']} other fold "
        "splits, reach s: until it scores at least the cold best's fresh score; test: paired bootstrap 95% interval "
        "of the improvement over the whole cold search's model"
    )
    print(
        f"{'dataset':<13} {'seed':>4} {'fresh: cold':>12} {'reach s':>8} {'queue':>8} {'warm':>8} {'continue':>8} "
        f"{'test: queue':>22} {'warm':>22} {'continue':>22} {'1/3 t: queue':>22} {'warm':>22} {'continue':>22}"
    )
    for r in result["runs"]:
        print(fresh_row(r))
    controlled = [r for r in result["runs"] if "test_ci" in (r["cold"].get("third") or {})]
    if controlled:
        print(
            "control: the cold search stopped at 1/3 of its time, tested against its whole search; each warm variant "
            "stopped at 1/3 against it (paired bootstrap 95% intervals of the improvement)"
        )
        print(
            f"{'dataset':<13} {'seed':>4} {'1/3 t: cold':>14} {'against whole':>22} {'queue against it':>22} "
            f"{'warm':>22} {'continue':>22}"
        )
        for r in controlled:
            print(control_row(r))
    for name in WARM_VARIANTS:
        summary = result["summary"][name]
        median, fresh = summary["median_reach_ratio"], summary["median_fresh_reach_ratio"]
        print(
            f"{_verdict(median)}  {name}: reaches the cold best in <= 1/3 of the cold search's time (median ratio "
            f"{_ratio(median)}, reached in {summary['reached']} runs; best cv at least the cold one's in "
            f"{summary['better_or_equal_cv']}/{summary['runs']})"
        )
        print(
            f"      {name} stopped after 1/3 of the cold search's time tests at least as well as the whole cold "
            f"search in {summary['third_test_at_least_cold']}/{summary['runs']} runs; its whole search in "
            f"{summary['test_at_least_cold']}/{summary['runs']}"
        )
        print(
            f"{_verdict(fresh)}  {name}, on fresh folds: reaches the cold best's quality in <= 1/3 of the time the "
            f"cold search took to (median ratio {_ratio(fresh)}, reached in {summary['fresh_reached']} runs); "
            f"stopped at 1/3, not worse on the test rows (paired 95% interval) in "
            f"{summary['third_test_not_worse']}/{summary['runs']}; its whole search in "
            f"{summary['test_not_worse']}/{summary['runs']}"
        )
        if "controlled_runs" in summary:
            print(
                f"      control: the cold search stopped at 1/3 is not worse than its whole search in "
                f"{summary['cold_third_not_worse']}/{summary['controlled_runs']} runs; {name} stopped at 1/3 tests "
                f"better than it in {summary['third_better_than_cold_third']}/{summary['controlled_runs']}"
            )


def _verdict(median_ratio: float | None) -> str:
    return "PASS" if median_ratio is not None and median_ratio <= GOAL_RATIO else "MISS"


def _ratio(median_ratio: float | None) -> str:
    return "-" if median_ratio is None else f"{median_ratio:.2f}"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["telco_churn"], help="conf/experiment presets")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--trials", type=int, default=30, help="trials per search (the preset's n_trials: 30)")
    parser.add_argument("--warm-trials", type=int, default=5, help="search.warm_start_trials")
    parser.add_argument("--first-share", type=float, default=0.6, help="the first batch's share of the train rows")
    parser.add_argument(
        "--fresh-folds", type=int, default=3, help="other fold splits each search's best configurations are scored on"
    )
    parser.add_argument(
        "--order-by",
        type=lambda text: [c.strip() for c in text.split(",") if c.strip()],
        help="columns the rows arrive in order of (e.g. Yr.Sold,Mo.Sold on ames); default: a seeded shuffle",
    )
    parser.add_argument(
        "--exclude",
        help="a pandas condition on the columns: rows it holds for leave train and test (ames: 'area > 4000', "
        "the partial sales De Cock's documentation recommends removing)",
    )
    run_benchmark(parser, benchmark, report)
