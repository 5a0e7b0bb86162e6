"""Clustering benchmark: mlgate's searched segmentation against the three a user would try first.

On every labelled dataset of a suite folder (binary and multiclass targets; regression ones are skipped),
used without its labels, each system gets the same feature columns and the same wall budget, and the
labels then score what it found: adjusted Rand index (ARI) and normalized mutual information (NMI), with
noise (cluster -1) counted as a cluster of its own. Systems:

- ``mlgate``: ``mlgate.stages.tune.segment`` over conf/model's clustering families, ranked by
  silhouette, its stability refits included in the budget;
- ``kmeans_silhouette``: k-means (n_init 10) with k from 2 to 15 chosen by silhouette;
- ``gmm_bic``: a Gaussian mixture (full covariances) with k from 2 to 15 chosen by BIC;
- ``hdbscan``: scikit-learn's HDBSCAN with its defaults.

The baselines see mlgate's encoding (standardised numerics, one-hot categoricals), so only the choice of
segmentation differs; k-means and the mixture stop trying larger k once the budget is spent. Each
(system, dataset, seed) runs in a forked process, killed at ``--timeout`` (default budget * 3 + 60 s).

Run from the project root:
  .venv/bin/python benchmarks/clustering.py [--suite benchmarks/clustering_suite] [--datasets penguins,olive]
      [--systems mlgate,kmeans_silhouette,gmm_bic,hdbscan] [--seeds 0,1,2] [--budget 30] [--timeout S]
      [--out results.json]
The Markdown table goes to stdout, progress to stderr; ``--out`` (or ``--json``) writes one record per
system, dataset and seed: system, dataset, seed, ari, nmi, clusters, wall_s, status.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SUITE = REPO / "benchmarks" / "clustering_suite"
SYSTEMS = ("mlgate", "kmeans_silhouette", "gmm_bic", "hdbscan")
K_RANGE = range(2, 16)
LABELLED = ("binary", "multiclass")


def load_suite(suite: Path, names: list[str] | None = None) -> list[dict[str, Any]]:
    """The suite's labelled datasets (``names``: a subset, in the suite's order)."""
    entries = yaml.safe_load((suite / "suite.yaml").read_text())["datasets"]
    known = [e["name"] for e in entries]
    unknown = sorted(set(names or ()) - set(known))
    if unknown:
        raise SystemExit(f"{suite / 'suite.yaml'}: no dataset(s) {unknown}; it has {known}")
    chosen = [e for e in entries if names is None or e["name"] in names]
    skipped = [e["name"] for e in chosen if e["task"] not in LABELLED]
    if skipped:
        print(f"skipped (no class labels to score a segmentation): {', '.join(skipped)}", file=sys.stderr)
    return [e for e in chosen if e["task"] in LABELLED]


def read_dataset(suite: Path, entry: dict[str, Any]) -> tuple[pd.DataFrame, np.ndarray]:
    """(features, labels) of a suite entry; rows without a label are dropped."""
    frame = pd.read_csv(suite / entry["file"])
    frame = frame[frame[entry["target"]].notna()].reset_index(drop=True)
    labels = frame.pop(entry["target"]).astype(str).to_numpy()
    return frame, labels


def _silhouette(embedded: np.ndarray, labels: np.ndarray, seed: int) -> float:
    from mlgate.modelling import clustering

    judged = clustering.scores(embedded, labels, seed=seed)
    return -np.inf if judged.silhouette is None else judged.silhouette


def _kmeans_silhouette(embedded: np.ndarray, seed: int, deadline: float) -> np.ndarray:
    from sklearn.cluster import KMeans

    best, best_labels = -np.inf, None
    for k in K_RANGE:
        if best_labels is not None and time.monotonic() > deadline:
            break
        labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(embedded)
        score = _silhouette(embedded, labels, seed)
        if score > best:
            best, best_labels = score, labels
    return best_labels


def _gmm_bic(embedded: np.ndarray, seed: int, deadline: float) -> np.ndarray:
    from sklearn.mixture import GaussianMixture

    best, best_labels = np.inf, None
    for k in K_RANGE:
        if best_labels is not None and time.monotonic() > deadline:
            break
        model = GaussianMixture(n_components=k, covariance_type="full", reg_covar=1e-4, random_state=seed)
        model.fit(embedded)
        bic = model.bic(embedded)
        if bic < best:
            best, best_labels = bic, model.predict(embedded)
    return best_labels


def _hdbscan(embedded: np.ndarray, seed: int, deadline: float) -> np.ndarray:
    from sklearn.cluster import HDBSCAN

    return HDBSCAN(copy=True).fit_predict(embedded)


BASELINES = {"kmeans_silhouette": _kmeans_silhouette, "gmm_bic": _gmm_bic, "hdbscan": _hdbscan}


def cluster(system: str, frame: pd.DataFrame, seed: int, budget_s: float) -> np.ndarray:
    """The clusters ``system`` finds in ``frame`` within ``budget_s``."""
    from mlgate import config
    from mlgate.stages import tune

    if system == "mlgate":
        families = ",".join(_clustering_families())
        params = yaml.safe_load(config.compose(REPO / "conf", [f"model=[{families}]"]))
        return tune.segment(frame, params["model"], budget_s=budget_s, seed=seed).labels
    from mlgate.modelling import clustering

    deadline = time.monotonic() + budget_s
    numeric, categorical = tune.column_kinds(frame)
    encoding = clustering.encoder(numeric, categorical)
    embedded = np.asarray(encoding.fit_transform(clustering.as_text(frame, categorical)), dtype=np.float64)
    return BASELINES[system](embedded, seed, deadline)


def _clustering_families() -> list[str]:
    from mlgate.modelling import clustering

    return [family for family in clustering.FAMILIES if (REPO / "conf" / "model" / f"{family}.yaml").exists()]


def _child(system: str, frame: pd.DataFrame, seed: int, budget_s: float, queue: multiprocessing.Queue) -> None:
    try:
        queue.put(("ok", cluster(system, frame, seed, budget_s)))
    except Exception as error:  # noqa: BLE001 - reported as the run's status
        queue.put(("error", f"{type(error).__name__}: {error}"))


def run_one(system: str, frame: pd.DataFrame, labels: np.ndarray, seed: int, budget_s: float, timeout_s: float) -> dict:
    """One system on one dataset in a forked process: its scores against ``labels``, wall time and status."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    queue: multiprocessing.Queue = multiprocessing.get_context("fork").Queue()
    process = multiprocessing.get_context("fork").Process(target=_child, args=(system, frame, seed, budget_s, queue))
    started = time.monotonic()
    process.start()
    try:
        status, found = queue.get(timeout=timeout_s)
    except Exception:  # noqa: BLE001 - queue.Empty: the run outlived its timeout
        status, found = "timeout", None
    wall = time.monotonic() - started
    if status == "timeout":
        process.kill()
    process.join()
    record = {"system": system, "seed": seed, "wall_s": round(wall, 2), "ari": None, "nmi": None, "clusters": None}
    if status != "ok":
        return {**record, "status": status if status == "timeout" else f"error: {found}"}
    found = np.asarray(found)
    return {
        **record,
        "ari": float(adjusted_rand_score(labels, found)),
        "nmi": float(normalized_mutual_info_score(labels, found)),
        "clusters": int(len(set(found.tolist()) - {-1})),
        "status": "ok" if wall <= budget_s * 1.1 else "over_budget",
    }


def table(records: list[dict], systems: list[str]) -> str:
    """Mean ARI (and NMI) per dataset and system over the seeds, then each system's mean and mean wall."""
    frame = pd.DataFrame(records)
    lines = ["| dataset | " + " | ".join(systems) + " |", "|---" * (len(systems) + 1) + "|"]
    for dataset, rows in frame.groupby("dataset", sort=False):
        cells = []
        for system in systems:
            mine = rows[rows.system == system]
            ok = mine[mine.ari.notna()]
            cells.append(
                f"{ok.ari.mean():.3f} / {ok.nmi.mean():.3f} (k={ok.clusters.median():.0f})" if len(ok) else "failed"
            )
        lines.append(f"| {dataset} | " + " | ".join(cells) + " |")
    means = [frame[frame.system == s].ari.mean() for s in systems]
    walls = [frame[frame.system == s].wall_s.mean() for s in systems]
    lines.append("| **mean ARI** | " + " | ".join(f"**{m:.3f}**" for m in means) + " |")
    lines.append("| mean wall s | " + " | ".join(f"{w:.1f}" for w in walls) + " |")
    return "\n".join(lines) + "\n\ncells: ARI / NMI against the labels (k: median clusters found, noise aside)"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--suite", type=Path, default=DEFAULT_SUITE, help="suite folder (default: %(default)s)")
    parser.add_argument("--datasets", type=lambda s: s.split(","), help="comma-separated subset of the suite")
    parser.add_argument("--systems", type=lambda s: s.split(","), default=list(SYSTEMS))
    parser.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0])
    parser.add_argument("--budget", type=float, default=30.0, help="wall budget per run in seconds (default: 30)")
    parser.add_argument("--timeout", type=float, help="kill a run after this many seconds (default: budget * 3 + 60)")
    parser.add_argument("--out", "--json", dest="out", type=Path, help="write the records here as JSON")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.systems) - set(SYSTEMS))
    if unknown:
        parser.error(f"unknown system(s) {unknown}; choose from {SYSTEMS}")
    timeout = args.timeout or args.budget * 3 + 60
    records = []
    for entry in load_suite(args.suite, args.datasets):
        frame, labels = read_dataset(args.suite, entry)
        for seed in args.seeds:
            for system in args.systems:
                record = {"dataset": entry["name"], **run_one(system, frame, labels, seed, args.budget, timeout)}
                records.append(record)
                print(json.dumps(record), file=sys.stderr)
    print(table(records, args.systems))
    if args.out:
        args.out.write_text(json.dumps(records, indent=1))
    return records


if __name__ == "__main__":
    main()
