"""Warm-started retraining against a cold one: how long a retraining's search takes to reach the cold
search's best CV score, and what each final model scores on the test rows.

The scenario, per dataset and seed: the training rows arrive in two batches (the split's train rows
shuffled with the seed; the first `--first-share` of them come first). Version 1 is searched cold on
the first batch, as the pipeline would search it. The retraining then searches every training row twice
with the same budget (`--trials`, in batches of the preset's search.n_jobs, so each search is the one
the pipeline makes): cold (each family's first trial, then the sampler), and warm (search.warm_start:
version 1's study's best `--warm-trials` configurations first, its best trial as trial 0). For each,
the wall seconds until its best CV score so far reaches the cold search's best (``reach_s``; the warm
search may never reach it: then None, with its gap), its whole search, and its final model (the tune
stage's finishing on its trials, refit on every training row by the train stage's code) scored on
the split's test rows. The goal: the warm search reaches the cold one's best in at most a third of the
time the cold one took, at the same test score.

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


def search(train: pd.DataFrame, params: dict, trials: int, warm: list, store: Path) -> dict[str, Any]:
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
    )
    seconds = time.time() - started
    finished = tune.finish(outcomes, objective, spec, settings.finish)
    return {"outcomes": outcomes, "seconds": seconds, "started": started, "finish": finished, "spec": spec}


def reach(result: dict[str, Any], target: float, maximize: bool) -> float | None:
    """Seconds from the search's start until a complete trial scored at least ``target``."""
    hits = [
        o.end - result["started"]
        for o in result["outcomes"]
        if o.state == "COMPLETE" and o.score is not None and (o.score >= target if maximize else o.score <= target)
    ]
    return min(hits) if hits else None


def test_score(result: dict[str, Any], train: pd.DataFrame, test: pd.DataFrame, params: dict) -> float:
    """The search's final model (its finish refit on every training row, as the train stage does), scored
    on the test rows as the evaluate stage scores the logged model's outputs."""
    from mlgate import config
    from mlgate.modelling import metrics
    from mlgate.modelling.data import target_vector
    from mlgate.modelling.features import FeatureSettings
    from mlgate.stages import train as training

    spec = result["spec"]
    model = training.fit(train, spec, result["finish"], config.load(FeatureSettings, "features", params), 0)
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

    version1 = search(first, params, args.trials, [], root / "v1")
    table = tune.trial_table(version1["outcomes"], maximize)
    families = {s.family for s in tune.TuneSettings.parse(params, version1["spec"]).spaces}
    warm = tune.warm_configs(table, families, args.warm_trials, maximize)
    cold = search(train, params, args.trials, [], root / "cold")
    warmed = search(train, params, args.trials, warm, root / "warm")

    best = {name: tune.best(r["outcomes"], maximize).score for name, r in (("cold", cold), ("warm", warmed))}
    target = best["cold"]
    result = {"dataset": dataset, "seed": seed, "rows": len(train), "first_rows": len(first), "metric": None}
    for name, r in (("cold", cold), ("warm", warmed)):
        result[name] = {
            "search_s": r["seconds"],
            "reach_s": reach(r, target, maximize),
            "best_cv": best[name],
            "test": test_score(r, train, test, params),
            "first_trial": [r["outcomes"][0].family, r["outcomes"][0].params],
        }
    result["metric"] = cold["spec"].metric
    cold_reach, warm_reach = result["cold"]["reach_s"], result["warm"]["reach_s"]
    result["reach_ratio"] = None if warm_reach is None else warm_reach / cold_reach
    return result


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    here = Path.cwd()
    runs = []
    with tempfile.TemporaryDirectory(prefix="mlgate-warm-") as tmp:
        try:
            for dataset in args.datasets:
                for seed in args.seeds:
                    runs.append(one(dataset, seed, args, Path(tmp)))
                    print(f"  {dataset} seed {seed}: done", file=sys.stderr, flush=True)
        finally:
            os.chdir(here)
    ratios = [r["reach_ratio"] for r in runs if r["reach_ratio"] is not None]
    return {
        "runs": runs,
        "median_reach_ratio": statistics.median(ratios) if ratios else None,
        "reached": f"{len(ratios)}/{len(runs)}",
        "goal_ratio": GOAL_RATIO,
        "settings": {
            "trials": args.trials,
            "warm_trials": args.warm_trials,
            "first_share": args.first_share,
            "loadavg": os.getloadavg(),
        },
    }


def report(result: dict[str, Any]) -> None:
    s = result["settings"]
    print(
        f"warm against cold retraining: {s['trials']} trials each, warm start from the best {s['warm_trials']} "
        f"of version 1's study (searched on the first {s['first_share']:.0%} of the training rows); "
        f"load average {s['loadavg'][0]:.2f}"
    )
    print(
        f"{'dataset':<15} {'seed':>4} {'rows':>6} {'metric':<9} {'cold s':>7} {'cold reach':>10} {'warm reach':>10} "
        f"{'ratio':>6} {'cold cv':>8} {'warm cv':>8} {'cold test':>9} {'warm test':>9}"
    )
    for r in result["runs"]:
        cold, warm = r["cold"], r["warm"]
        ratio = "-" if r["reach_ratio"] is None else f"{r['reach_ratio']:.2f}"
        warm_reach = "never" if warm["reach_s"] is None else f"{warm['reach_s']:.1f}"
        print(
            f"{r['dataset']:<15} {r['seed']:>4} {r['rows']:>6} {r['metric']:<9} {cold['search_s']:>7.1f} "
            f"{cold['reach_s']:>10.1f} {warm_reach:>10} {ratio:>6} {cold['best_cv']:>8.4f} {warm['best_cv']:>8.4f} "
            f"{cold['test']:>9.4f} {warm['test']:>9.4f}"
        )
    median = result["median_reach_ratio"]
    ok = median is not None and median <= GOAL_RATIO
    print(
        f"{'PASS' if ok else 'MISS'}  warm reaches the cold best in <= 1/3 of the cold search's time "
        f"(median ratio {'-' if median is None else f'{median:.2f}'}, reached in {result['reached']} runs)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["telco_churn"], help="conf/experiment presets")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--trials", type=int, default=30, help="trials per search (the preset's n_trials: 30)")
    parser.add_argument("--warm-trials", type=int, default=5, help="search.warm_start_trials")
    parser.add_argument("--first-share", type=float, default=0.6, help="the first batch's share of the train rows")
    run_benchmark(parser, benchmark, report)
