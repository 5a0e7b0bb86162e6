"""Warm-started retraining against a cold one: how long a retraining's search takes to reach the cold
search's best CV score, and what each final model scores on the test rows.

The scenario, per dataset and seed: the training rows arrive in two batches (the split's train rows
shuffled with the seed; the first `--first-share` of them come first). Version 1 is searched cold on
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
by then, finished and refit the same way), tested against the whole cold search (``1/3 t``). All three
searches of a run share the machine's load.

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

import pandas as pd
from tiny_model import BIN, copy_project, environment, run_benchmark

GOAL_RATIO = 1 / 3  # warm reach_s / cold reach_s
WARM_VARIANTS = ("queue", "warm")  # the queued configurations alone; with the prior trials too


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


def search(train: pd.DataFrame, params: dict, trials: int, warm: list, prior: list, store: Path) -> dict[str, Any]:
    """One study as the tune stage runs it, in memory; its trials with their end times, and its finish."""
    from mlgate import config, project
    from mlgate.adapters import optuna_study
    from mlgate.stages import tune

    spec = project.data_spec(params)
    settings = tune.TuneSettings.parse(params, spec)
    search_settings = dataclasses.replace(config.load(optuna_study.SearchSettings, "search", params), n_trials=trials)
    objective = tune.CrossValidation(
        train,
        spec,
        search_settings.cv_folds,
        parallel_trials=search_settings.n_jobs,
        seed=settings.seed,
        cores=tune.usable_cores(),
        settings=settings.features,
        holdout=search_settings.holdout_share if tune.use_holdout(search_settings, len(train)) else None,
        store_dir=store,
    )
    started = time.time()
    outcomes = optuna_study.optimize(
        list(settings.spaces),
        objective,
        search_settings,
        maximize=settings.maximize,
        seed=settings.seed,
        on_trial=lambda outcome: None,
        warm=warm,
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


def reach(result: dict[str, Any], target: float, maximize: bool) -> float | None:
    """Seconds from the search's start until a complete trial scored at least ``target``."""
    hits = [
        o.end - result["started"]
        for o in result["outcomes"]
        if o.state == "COMPLETE" and o.score is not None and (o.score >= target if maximize else o.score <= target)
    ]
    return min(hits) if hits else None


def test_score(
    result: dict[str, Any], train: pd.DataFrame, test: pd.DataFrame, params: dict, finish: Any = None
) -> float:
    """The search's final model (its finish, or ``finish``, refit on every training row, as the train stage
    does), scored on the test rows as the evaluate stage scores the logged model's outputs."""
    from mlgate import config
    from mlgate.modelling import metrics
    from mlgate.modelling.data import target_vector
    from mlgate.modelling.features import FeatureSettings
    from mlgate.stages import train as training

    spec = result["spec"]
    chosen = result["finish"] if finish is None else finish
    model = training.fit(train, spec, chosen, config.load(FeatureSettings, "features", params), 0)
    task = spec.learning_task
    prediction, probability = task.read_outputs(task.output_frame(*task.outputs(model, test[spec.features])))
    return metrics.score(spec.metric, target_vector(test, spec), prediction, probability)


def one(dataset: str, seed: int, args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    from mlgate import config, project
    from mlgate.stages import tune

    root = scratch / f"{dataset}-{seed}"
    prepare(root, dataset)
    os.chdir(root)
    params = config.read_params()
    params["seed"] = seed
    train = pd.read_parquet(root / "data/split/train.parquet").sample(frac=1.0, random_state=seed)
    test = pd.read_parquet(root / "data/split/test.parquet")
    first = train.iloc[: int(len(train) * args.first_share)]
    maximize = tune.TuneSettings.parse(params, project.data_spec(params)).maximize

    version1 = search(first, params, args.trials, [], [], root / "v1")
    table = tune.trial_table(version1["outcomes"], maximize)
    families = {s.family for s in tune.TuneSettings.parse(params, version1["spec"]).spaces}
    warm = tune.warm_configs(table, families, args.warm_trials, maximize)
    prior = tune.warm_observations(table, families)
    searches = {
        "cold": search(train, params, args.trials, [], [], root / "cold"),
        "queue": search(train, params, args.trials, warm, [], root / "queue"),
        "warm": search(train, params, args.trials, warm, prior, root / "warm"),
    }
    target = tune.best(searches["cold"]["outcomes"], maximize).score
    result = {"dataset": dataset, "seed": seed, "rows": len(train), "first_rows": len(first)}
    for name, r in searches.items():
        result[name] = {
            "search_s": r["seconds"],
            "reach_s": reach(r, target, maximize),
            "best_cv": tune.best(r["outcomes"], maximize).score,
            "test": test_score(r, train, test, params),
            "first_trial": [r["outcomes"][0].family, r["outcomes"][0].params],
        }
    result["metric"] = searches["cold"]["spec"].metric
    third = searches["cold"]["seconds"] * GOAL_RATIO
    for name in WARM_VARIANTS:
        reached = result[name]["reach_s"]
        result[f"{name}_reach_ratio"] = None if reached is None else reached / result["cold"]["reach_s"]
        # the same search stopped after a third of the cold search's time: its finish, refit and tested
        stopped = [o for o in searches[name]["outcomes"] if o.end - searches[name]["started"] <= third]
        result[name]["third"] = {
            "seconds": third,
            "trials": len(stopped),
            "best_cv": tune.best(stopped, maximize).score if stopped else None,
            "test": test_score(searches[name], train, test, params, searches[name]["finish_by"](third))
            if stopped
            else None,
        }
    return result


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
            "loadavg": os.getloadavg(),
        },
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per warm variant: the median of its reach ratios (runs where it never reached the cold best are
    left out and counted in ``reached``), and in how many runs its best CV score was at least the cold one's."""
    summary = {}
    for name in WARM_VARIANTS:
        ratios = [r[f"{name}_reach_ratio"] for r in runs if r[f"{name}_reach_ratio"] is not None]
        summary[name] = {
            "median_reach_ratio": statistics.median(ratios) if ratios else None,
            "reached": f"{len(ratios)}/{len(runs)}",
            "better_or_equal_cv": sum(_at_least_cold(r, name) for r in runs),
            "third_test_at_least_cold": sum(_third_at_least_cold(r, name) for r in runs),
        }
    return summary


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
    """One run's line of the table."""
    reached = {n: "never" if r[n]["reach_s"] is None else f"{r[n]['reach_s']:.1f}" for n in WARM_VARIANTS}
    return (
        f"{r['dataset']:<13} {r['seed']:>4} {r['rows']:>6} {r['metric']:<8} {r['cold']['search_s']:>6.0f} "
        f"{r['cold']['reach_s']:>13.1f} {reached['queue']:>7} {reached['warm']:>7} "
        f"{r['cold']['best_cv']:>9.4f} {r['queue']['best_cv']:>9.4f} {r['warm']['best_cv']:>9.4f} "
        f"{r['cold']['test']:>10.4f} {r['queue']['test']:>9.4f} {r['warm']['test']:>9.4f} "
        f"{_tested(r['queue']['third']['test']):>12} {_tested(r['warm']['third']['test']):>9}"
    )


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
        f"{'warm':>7} {'cv: cold':>9} {'queue':>9} {'warm':>9} {'test: cold':>10} {'queue':>9} {'warm':>9} "
        f"{'1/3 t: queue':>12} {'warm':>9}"
    )
    for r in result["runs"]:
        print(row(r))
    for name in WARM_VARIANTS:
        summary = result["summary"][name]
        median = summary["median_reach_ratio"]
        ok = median is not None and median <= GOAL_RATIO
        print(
            f"{'PASS' if ok else 'MISS'}  {name}: reaches the cold best in <= 1/3 of the cold search's time "
            f"(median ratio {'-' if median is None else f'{median:.2f}'}, reached in {summary['reached']} runs; "
            f"best cv at least the cold one's in {summary['better_or_equal_cv']}/{len(result['runs'])})"
        )
        print(
            f"      {name} stopped after 1/3 of the cold search's time tests at least as well as the whole cold "
            f"search in {summary['third_test_at_least_cold']}/{len(result['runs'])} runs"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["telco_churn"], help="conf/experiment presets")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--trials", type=int, default=30, help="trials per search (the preset's n_trials: 30)")
    parser.add_argument("--warm-trials", type=int, default=5, help="search.warm_start_trials")
    parser.add_argument("--first-share", type=float, default=0.6, help="the first batch's share of the train rows")
    run_benchmark(parser, benchmark, report)
