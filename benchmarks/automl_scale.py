"""How mlgate's AutoML cost grows with the data: wall time, refit and peak memory from 10,000 to 1,000,000 rows.

A real dataset (by default the bundled telco churn, 7,043 rows) is resampled with replacement to each size,
its numeric columns jittered by 2% of their standard deviation (integer columns rounded back) so that rows
are not exact copies, and run through benchmarks/automl.py's harness (the same 75/25 split, process
measurement and scoring) at one budget. The table gives, per size, the wall time against the budget, the
search's and the refit's seconds, trials, peak RSS and its ratio to the training frame's own size in memory,
and the test score; the smallest size is the baseline the growth is quoted against. The score is not
a model's quality: the test rows repeat training rows (jittered), so it only compares runs of this script.
Run: `.venv/bin/python benchmarks/automl_scale.py [--rows 10000,100000,1000000] [--budget 60]
[--systems mlgate] [--json out.json]`; a suite's dataset instead: `--suite DIR --dataset NAME`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import automl as harness  # noqa: E402

BUNDLED = harness.Dataset(
    name="telco_churn",
    path=HERE.parent / "data" / "source" / "telco_churn.csv.gz",
    target="churn",
    task="binary",
    positive_class="Yes",
)
JITTER = 0.02  # of a numeric column's standard deviation


def resampled(frame: pd.DataFrame, target: str, rows: int, seed: int) -> pd.DataFrame:
    """``rows`` rows drawn with replacement, numeric features jittered (integers stay integers)."""
    rng = np.random.default_rng(seed)
    drawn = frame.iloc[rng.integers(0, len(frame), rows)].reset_index(drop=True)
    for column in drawn.columns.drop(target):
        values = drawn[column]
        if not pd.api.types.is_numeric_dtype(values) or values.nunique() <= 2:
            continue
        noisy = values + rng.normal(0.0, JITTER * float(values.std()), rows)
        drawn[column] = noisy.round() if pd.api.types.is_integer_dtype(values) else noisy
    return drawn


def scaled_suite(base: harness.Dataset, sizes: list[int], seed: int, folder: Path) -> list[str]:
    """A suite folder holding ``base`` at each size; the datasets' names."""
    frame = harness.read_dataset(base)
    entries = []
    for rows in sizes:
        name = f"{base.name}_{rows}"
        resampled(frame, base.target, rows, seed).to_csv(folder / f"{name}.csv.gz", index=False)
        entry = {"name": name, "file": f"{name}.csv.gz", "target": base.target, "task": base.task}
        entries.append(entry | ({"positive_class": base.positive_class} if base.positive_class else {}))
    (folder / "suite.yaml").write_text(yaml.safe_dump({"datasets": entries}, sort_keys=False))
    return [e["name"] for e in entries]


def frame_mb(path: Path) -> float:
    """The training frame's size in memory (75% of the rows, as the harness splits), in MB."""
    frame = pd.read_csv(path)
    return 0.75 * frame.memory_usage(deep=True).sum() / 2**20


def growth(records: list[dict], sizes: dict[str, int], frames: dict[str, float]) -> list[dict]:
    rows = []
    for r in records:
        base = next(b for b in records if b["system"] == r["system"] and sizes[b["dataset"]] == min(sizes.values()))
        rows.append(
            {
                "system": r["system"],
                "rows": sizes[r["dataset"]],
                "status": r["status"],
                "wall_s": r["wall_s"],
                "wall_over_budget": None if r["wall_s"] is None else round(r["wall_s"] / r["budget_s"], 2),
                "wall_vs_smallest": _ratio(r["wall_s"], base["wall_s"]),
                "before_refit_s": _before_refit(r),
                "refit_s": r.get("refit_s"),
                "trials": r.get("trials"),
                "trials_complete": r.get("trials_complete"),
                "validation": r.get("validation"),
                "peak_mb": r["peak_mb"],
                "frame_mb": round(frames[r["dataset"]], 1),
                "peak_vs_smallest": _ratio(r["peak_mb"], base["peak_mb"]),
                "metric": r["metric"],
                "value": r["value"],
            }
        )
    return rows


def _ratio(value: float | None, baseline: float | None) -> float | None:
    return None if not (value and baseline) else round(value / baseline, 2)


def _before_refit(record: dict) -> float | None:
    """What automl.fit spent before the refit: the search, and the ingest and finishing around it."""
    if record.get("fit_s") is None or record.get("refit_s") is None:
        return None
    return round(record["fit_s"] - record["refit_s"], 1)


def render(rows: list[dict], budget_s: float) -> str:
    header = (
        "| system | rows | wall s | wall/budget | before refit s | refit s | trials (complete) | validation | "
        "peak MB | train frame MB | peak vs smallest | score |"
    )
    lines = [f"Budget {budget_s:g} s, 2 cores.", "", header, "|" + " --- |" * 12]
    for r in rows:
        value = "" if r["value"] is None else f"{r['metric']} {r['value']:.4f}"
        lines.append(
            f"| {r['system']} | {r['rows']:,} | {r['wall_s']} | {r['wall_over_budget']} | {r['before_refit_s']} | "
            f"{r['refit_s']} | {r['trials']} ({r['trials_complete']}) | {r['validation']} | {r['peak_mb']} | "
            f"{r['frame_mb']} | {r['peak_vs_smallest']} | {value or r['status']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="10000,100000,1000000", help="comma-separated sizes")
    parser.add_argument("--budget", type=float, default=60.0)
    parser.add_argument("--systems", default="mlgate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--suite", type=Path, help="a suite folder; with --dataset, scale that dataset instead")
    parser.add_argument("--dataset")
    parser.add_argument("--timeout", type=float, help="hard kill per run (default: the harness's)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep-scratch", action="store_true", help="keep each run's folder (its store, its reports)")
    args = parser.parse_args(argv)
    base = BUNDLED
    if args.suite:
        base = harness.select(harness.load_suite(args.suite), [args.dataset])[0]
    sizes = [int(s) for s in args.rows.split(",")]
    with tempfile.TemporaryDirectory(prefix="mlgate-scale-") as scratch:
        folder = Path(scratch)
        names = scaled_suite(base, sizes, args.seed, folder)
        frames = {name: frame_mb(folder / f"{name}.csv.gz") for name in names}
        out = folder / "records.json"
        command = ["--suite", str(folder), "--systems", args.systems, "--seeds", str(args.seed)]
        command += ["--budget", str(args.budget), "--out", str(out)]
        command += ["--timeout", str(args.timeout)] if args.timeout else []
        command += ["--keep-scratch"] if args.keep_scratch else []
        harness.main(command)
        records = json.loads(out.read_text())
    rows = growth(records, dict(zip(names, sizes, strict=True)), frames)
    print()
    print(render(rows, args.budget), end="")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
