"""CatBoost's memory and time on categorical columns: its default target statistics (CTRs over
combinations of categorical columns) against one-hot encoding of low-cardinality columns and CTRs without
combinations.

Why: on frames with many low-cardinality categorical columns, most of an `automl.fit` process's memory
growth during the search is CatBoost's working set, once per concurrent trial (issue 18's memory bound).
For each dataset of a suite folder (the `../shared/datasets` format) that has categorical columns, and each
setting, a fresh process fits CatBoost with mlgate's first-trial configuration (conf/model/catboost.yaml:
`fixed` and `first_trial`, one thread, as a trial gets) on k folds, and reports the mean validation score
(ROC AUC, log loss or RMSE), the fit time per fold and the peak RSS the fits added to the process (its
peak after the fits less its RSS before the first one). Settings: `default` (CatBoost's own), `onehot10`
(`one_hot_max_size=10`), `ctr1` (`max_ctr_complexity=1`), `deepest` (CatBoost's own, at the deepest `depth` the
search space allows).
Run: `.venv/bin/python benchmarks/catboost_categoricals.py [--suite benchmarks/dev_suite] [--datasets a,b]
[--folds 3] [--json out.json]`. Use a development suite: a suite reported against peers must not tune mlgate.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
FAMILY = yaml.safe_load((REPO / "conf" / "model" / "catboost.yaml").read_text())["catboost"]
SETTINGS = {
    "default": {},
    "onehot10": {"one_hot_max_size": 10},
    "ctr1": {"max_ctr_complexity": 1},
    "deepest": {"depth": FAMILY["space"]["depth"]["high"]},  # the deepest trees the search may try
}
METRICS = {"binary": "roc_auc ↑", "multiclass": "log_loss ↓", "regression": "rmse ↓"}


def first_trial() -> dict:
    """mlgate's CatBoost configuration before any search: the fixed arguments and the first trial's, less
    what CatBoost does not take (early stopping needs a validation set; the rest is mlgate's preprocessing)."""
    arguments = {**FAMILY["fixed"], **FAMILY["first_trial"]}
    for name in ("early_stopping_rounds", "class_weight", "selection", "keep_share"):
        arguments.pop(name, None)
    return arguments


def categorical_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]


def measure(frame: pd.DataFrame, target: str, task: str, setting: str, folds: int, seed: int = 0) -> dict:
    """One dataset, one setting, in this process: the mean validation score over ``folds`` folds."""
    from catboost import CatBoostClassifier, CatBoostRegressor
    from sklearn.metrics import log_loss, mean_squared_error, roc_auc_score
    from sklearn.model_selection import KFold, StratifiedKFold

    y = frame[target]
    X = frame.drop(columns=[target])
    categorical = categorical_columns(X)
    X[categorical] = X[categorical].astype(str)  # CatBoost takes text categories, a gap as its own value
    if task != "regression":
        y = pd.Series(pd.factorize(y.astype(str), sort=True)[0])
    splitter = (KFold if task == "regression" else StratifiedKFold)(folds, shuffle=True, random_state=seed)
    model_class = CatBoostRegressor if task == "regression" else CatBoostClassifier
    arguments = first_trial() | SETTINGS[setting] | {"thread_count": 1, "random_seed": seed, "verbose": 0}
    before_mb = psutil.Process().memory_info().rss / 2**20
    scores, fit_s = [], []
    for train, valid in splitter.split(X, y):
        started = time.perf_counter()
        model = model_class(cat_features=categorical, **arguments).fit(X.iloc[train], y.iloc[train])
        fit_s.append(time.perf_counter() - started)
        truth = y.iloc[valid]
        if task == "regression":
            scores.append(float(np.sqrt(mean_squared_error(truth, model.predict(X.iloc[valid])))))
        elif task == "binary":
            scores.append(float(roc_auc_score(truth, model.predict_proba(X.iloc[valid])[:, 1])))
        else:
            scores.append(float(log_loss(truth, model.predict_proba(X.iloc[valid]), labels=sorted(y.unique()))))
    # the kernel's high-water mark and the current RSS are counted apart and can differ by a few pages
    peak_mb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, psutil.Process().memory_info().rss / 2**20)
    return {
        "score": float(np.mean(scores)),
        "fit_s": float(np.mean(fit_s)),
        "added_mb": round(max(0.0, peak_mb - before_mb), 1),
        "categorical": len(categorical),
    }


def suite_entries(suite: Path, names: list[str] | None) -> list[dict]:
    entries = yaml.safe_load((suite / "suite.yaml").read_text())["datasets"]
    return [e for e in entries if names is None or e["name"] in names]


def run_isolated(suite: Path, entry: dict, setting: str, folds: int) -> dict:
    """measure() in a fresh interpreter, so that one setting's memory is not another's."""
    child = subprocess.run(
        [sys.executable, __file__, "--suite", str(suite), "--one", entry["name"], setting, "--folds", str(folds)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(child.stdout.strip().splitlines()[-1])


def table(results: list[dict]) -> str:
    """Markdown: one row per dataset, score / fit s per fold / MB added for each setting."""
    settings = [s for s in SETTINGS if any(r["setting"] == s for r in results)]
    lines = [
        "| dataset (rows, categorical columns) | metric | " + " | ".join(settings) + " |",
        "| --- | --- | " + " | ".join("---" for _ in settings) + " |",
    ]
    for name in dict.fromkeys(r["dataset"] for r in results):
        rows = {r["setting"]: r for r in results if r["dataset"] == name}
        first = next(iter(rows.values()))
        cells = [
            f"{rows[s]['score']:.4g} / {rows[s]['fit_s']:.2f} s / {rows[s]['added_mb']:.0f} MB" if s in rows else ""
            for s in settings
        ]
        lines.append(
            f"| {name} ({first['rows']:,}, {first['categorical']}) | {METRICS[first['task']]} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", type=Path, default=REPO / "benchmarks" / "dev_suite")
    parser.add_argument("--datasets", help="comma-separated names (default: every dataset with categoricals)")
    parser.add_argument("--settings", default=",".join(SETTINGS), help=f"of {', '.join(SETTINGS)}")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--one", nargs=2, metavar=("DATASET", "SETTING"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        (entry,) = suite_entries(args.suite, [args.one[0]])
        frame = pd.read_csv(args.suite / entry["file"])
        print(json.dumps(measure(frame, entry["target"], entry["task"], args.one[1], args.folds)))
        return
    settings = args.settings.split(",")
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        parser.error(f"--settings: unknown {', '.join(unknown)}; known: {', '.join(SETTINGS)}")
    results = []
    for entry in suite_entries(args.suite, args.datasets.split(",") if args.datasets else None):
        frame = pd.read_csv(args.suite / entry["file"])
        if not categorical_columns(frame.drop(columns=[entry["target"]])) and args.datasets is None:
            continue
        rows = len(frame)
        for setting in settings:
            measured = run_isolated(args.suite, entry, setting, args.folds)
            results.append(
                {"dataset": entry["name"], "task": entry["task"], "rows": rows, "setting": setting} | measured
            )
            print(f"{entry['name']:18} {setting:9} {measured}", file=sys.stderr, flush=True)
    print(table(results))
    if args.json:
        args.json.write_text(
            json.dumps({"folds": args.folds, "configuration": first_trial(), "results": results}, indent=1)
        )


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
