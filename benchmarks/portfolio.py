"""Build mlgate's zero-shot portfolio (conf/portfolio/zero_shot.yaml): configurations that do well
together across many datasets, queued as a short search's first trials (AutoGluon's zero-shot portfolios
and TabRepo's greedy selection, built from mlgate's own families and cross-validation).

Built on the development suite only (benchmarks/dev_suite): a portfolio built on a suite mlgate is
reported on would be tuned to it. For each dataset: the harness's training split (seed 0), at most
``--rows`` rows of it, the contract drafted as ``automl.fit`` drafts it, and every candidate scored by
the search's own cross-validation (``--folds`` folds, seed 0). The candidates are the same for every
dataset: each family's first trial and ``--per-family`` configurations drawn at random from its space
(a parameter a task does not search, such as class_weight for regression, is left out there).

A candidate's error on a dataset is rescaled to 0 for the best candidate there and 1 for the median
candidate, capped at ``--cap`` (a failed fit counts as the cap). A candidate whose fits took longer in all
(summed over the datasets) than ``--max-cost-ratio`` times its family's first trial is left out: the
portfolio runs first in a short search, and a slow configuration there delays everything after it (a
depth-8 CatBoost took 2.6 times its first trial's time). The portfolio is chosen greedily: each step adds
the candidate that most lowers the mean over datasets of the best rescaled error among those chosen,
until ``--size`` entries or no candidate lowers it by ``--min-gain``.

    python benchmarks/portfolio.py [--suite benchmarks/dev_suite] [--write] [--json out.json]

Prints the greedy steps; ``--write`` writes conf/portfolio/zero_shot.yaml; ``--json`` writes the
score matrix and the steps.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import automl as harness  # noqa: E402  (benchmarks/automl.py: the suite format and its split)

REPO = Path(__file__).resolve().parents[1]
FAMILIES = ("catboost", "lightgbm", "hist_gradient_boosting", "linear", "random_forest")
TARGET = REPO / "conf" / "portfolio" / "zero_shot.yaml"


def candidates(per_family: int, seed: int, families: tuple[str, ...] = FAMILIES) -> list[tuple[str, dict]]:
    """Each family's first trial, then ``per_family`` random draws from its space (the binary task's
    space: the widest; other tasks drop what they do not search)."""
    from mlgate.adapters import optuna_study

    composed = yaml.safe_load(_compose([f"model=[{','.join(families)}]"]))
    pool = []
    for space in optuna_study.parse_spaces(composed["model"], task="binary"):
        pool.append((space.family, dict(space.first_trial)))
        pool += [(space.family, drawn) for drawn in optuna_study.random_configurations(space, per_family, seed)]
    return pool


def _compose(overrides: list[str]) -> str:
    from mlgate import config

    return config.compose(REPO / "conf", overrides=overrides)


def score_dataset(dataset: harness.Dataset, pool: list[tuple[str, dict]], rows: int, folds: int) -> dict:
    """Every candidate's mean CV score on one dataset (NaN where it failed), and whether higher is better."""
    from mlgate import project
    from mlgate.services import automl
    from mlgate.stages import ingest, tune

    frame = harness.read_dataset(dataset)
    train, _ = harness.split(frame, dataset, seed=0)
    if len(train) > rows:
        train = train.sample(rows, random_state=0).reset_index(drop=True)
    binary = dataset.task == "binary"
    positive = harness.positive_class(train[dataset.target], dataset.positive_class) if binary else None
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        source = workdir / "train.parquet"
        train.to_parquet(source, index=False)
        params = automl.project_params(
            train,
            dataset.target,
            dataset.task,
            budget_s=30,
            seed=0,
            source=source,
            positive_class=positive,
            overrides=[f"search.cv_folds={folds}"],
        )
        with automl.inside(workdir):
            ingest.run(params)
            ingested = pd.read_parquet(Path(params["paths"]["raw"]) / "data.parquet")
        spec = project.data_spec(params)
        settings = tune.TuneSettings.parse(params, spec)
        spaces = {space.family: space for space in settings.spaces}
        cv = tune.CrossValidation(ingested, spec, folds, parallel_trials=1, seed=0, cores=1, settings=settings.features)
        scores, seconds = [], []
        for family, searched in pool:
            space = spaces[family]
            configuration = {**space.fixed, **{k: v for k, v in searched.items() if k in space.space}}
            started = time.time()
            try:
                score, _ = cv(family, configuration, lambda step, value: None)
            except Exception as error:  # a configuration that cannot fit this data counts as the worst
                print(f"  {dataset.name}: {family} {searched} failed: {error}", file=sys.stderr)
                score = math.nan
            scores.append(score)
            seconds.append(time.time() - started)
    print(f"{dataset.name}: {len(pool)} candidates in {sum(seconds):.0f}s", file=sys.stderr)
    return {
        "name": dataset.name,
        "task": dataset.task,
        "maximize": settings.maximize,
        "scores": scores,
        "seconds": seconds,
    }


def rescaled_errors(scored: list[dict], cap: float) -> np.ndarray:
    """(datasets, candidates): 0 for a dataset's best candidate, 1 for its median, at most ``cap``."""
    rows = []
    for entry in scored:
        values = np.asarray(entry["scores"], dtype=float)
        errors = -values if entry["maximize"] else values
        best, median = np.nanmin(errors), np.nanmedian(errors)
        spread = max(median - best, 1e-12)
        rows.append(np.where(np.isnan(errors), cap, np.minimum((errors - best) / spread, cap)))
    return np.vstack(rows)


def affordable(pool: list[tuple[str, dict]], seconds: np.ndarray, max_ratio: float) -> np.ndarray:
    """Which candidates took at most ``max_ratio`` times their family's first trial's time (``seconds``: each
    candidate's total over the datasets; each family's first trial comes first in the pool)."""
    first: dict[str, int] = {}
    for index, (family, _) in enumerate(pool):
        first.setdefault(family, index)
    return np.array([seconds[i] <= max_ratio * seconds[first[family]] for i, (family, _) in enumerate(pool)])


def greedy(errors: np.ndarray, size: int, min_gain: float, start: np.ndarray | None = None) -> list[tuple[int, float]]:
    """Candidate indices in the order chosen, each with the mean best rescaled error once it is added;
    ``start``: each dataset's best error before any is chosen (what the first trials already reach)."""
    chosen: list[tuple[int, float]] = []
    best_so_far = np.full(errors.shape[0], np.inf) if start is None else start.astype(float)
    current = float(best_so_far.mean())
    while len(chosen) < size:
        means = np.minimum(errors, best_so_far[:, None]).mean(axis=0)
        pick = int(np.argmin(means))
        if current - means[pick] < min_gain:
            break
        chosen.append((pick, float(means[pick])))
        best_so_far = np.minimum(best_so_far, errors[:, pick])
        current = means[pick]
    return chosen


def portfolio_yaml(
    pool: list[tuple[str, dict]], steps: list[tuple[int, float]], args: argparse.Namespace, names: list[str]
) -> str:
    header = (
        f"# Built by benchmarks/portfolio.py on {date.today().isoformat()} from {_shown(args.suite)}\n"
        f"# ({len(names)} datasets: {', '.join(names)}),\n"
        "# never from a suite mlgate is reported on. Each dataset's training split\n"
        f"# (seed 0, at most {args.rows} rows) scored {len(pool)} candidates ({args.per_family} random draws per\n"
        f"# family and each first trial) by {args.folds}-fold CV; leaving out those slower than {args.max_cost_ratio}\n"
        "# times their family's first trial, the entries below were chosen greedily to lower, after the\n"
        "# first trials, the mean over datasets of the best rescaled error (0: the best candidate there,\n"
        "# 1: the median). Queued in this order after each family's first trial (automl.fit selects it;\n"
        "# `portfolio=zero_shot` for a pipeline).\n"
    )
    lines = ["configurations:"]
    for index, mean_error in steps:
        family, searched = pool[index]
        rounded = {k: (float(f"{v:.4g}") if isinstance(v, float) else v) for k, v in searched.items()}
        lines += [
            f"  # mean best rescaled error once added: {mean_error:.3f}",
            f"  - family: {family}",
            f"    params: {json.dumps(rounded)}",
        ]
    return header + "\n".join(lines) + "\n"


def _shown(suite: Path | str) -> str:
    path = Path(suite).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", type=Path, default=REPO / "benchmarks" / "dev_suite")
    parser.add_argument("--datasets", type=lambda s: s.split(","), default=None)
    parser.add_argument("--families", type=lambda s: tuple(s.split(",")), default=FAMILIES)
    parser.add_argument("--per-family", type=int, default=8)
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--size", type=int, default=8)
    parser.add_argument("--cap", type=float, default=3.0)
    parser.add_argument("--min-gain", type=float, default=0.01)
    parser.add_argument("--max-cost-ratio", type=float, default=1.25)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write", action="store_true", help=f"write {TARGET.relative_to(REPO)}")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--scores", type=Path, help="choose from an earlier run's --json instead of scoring again")
    args = parser.parse_args(argv)

    if args.scores:
        earlier = json.loads(args.scores.read_text())
        pool, scored = [tuple(entry) for entry in earlier["pool"]], earlier["scored"]
        vars(args).update(earlier["built"])  # what the scores were measured with, for the file's header
    else:
        datasets = harness.select(harness.load_suite(args.suite), args.datasets)
        pool = candidates(args.per_family, args.seed, args.families)
        score = functools.partial(score_dataset, pool=pool, rows=args.rows, folds=args.folds)
        with ProcessPoolExecutor(args.processes) as workers:
            scored = list(workers.map(score, datasets))
    errors = rescaled_errors(scored, args.cap)
    seconds = np.array([entry["seconds"] for entry in scored]).sum(axis=0)
    first_of: dict[str, int] = {}
    for index, (family, _) in enumerate(pool):
        first_of.setdefault(family, index)  # each family's first trial comes first in the pool
    firsts = list(first_of.values())
    kept = affordable(pool, seconds, args.max_cost_ratio)
    kept[firsts] = False  # they run anyway, before the portfolio
    steps = greedy(np.where(kept, errors, np.inf), args.size, args.min_gain, start=errors[:, firsts].min(axis=1))

    print("| step | family | configuration | seconds (÷ its first trial's) | mean best rescaled error |")
    print("| --- | --- | --- | --- | --- |")
    for step, (index, mean_error) in enumerate(steps, 1):
        family, searched = pool[index]
        ratio = seconds[index] / seconds[first_of[family]]
        shown = json.dumps(searched, default=str)
        print(f"| {step} | {family} | {shown} | {seconds[index]:.0f} ({ratio:.2f}) | {mean_error:.3f} |")
    chosen = [index for index, _ in steps]
    print(
        f"\nmean best rescaled error: the first trials {np.min(errors[:, firsts], axis=1).mean():.3f}, "
        f"then the portfolio {steps[-1][1] if steps else float('nan'):.3f}, every candidate "
        f"{errors.min(axis=1).mean():.3f}; fitting seconds over the datasets: the first trials "
        f"{seconds[firsts].sum():.0f}, the portfolio {seconds[chosen].sum():.0f}"
    )
    names = [entry["name"] for entry in scored]
    if args.write:
        TARGET.parent.mkdir(parents=True, exist_ok=True)
        TARGET.write_text(portfolio_yaml(pool, steps, args, names))
        print(f"wrote {TARGET.relative_to(REPO)}")
    if args.json:
        built = {"suite": _shown(args.suite), "rows": args.rows, "folds": args.folds, "per_family": args.per_family}
        record = {"built": built, "pool": pool, "scored": scored, "steps": steps}
        args.json.write_text(json.dumps(record, default=str, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
