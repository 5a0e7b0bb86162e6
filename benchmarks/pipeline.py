"""The default `dvc repro` from scratch and with nothing changed, against DVC's own start-up.

Clones the committed project (HEAD) into a temporary folder with its own MLflow store, then times:
  - `dvc repro` from scratch (wall time, and peak RSS of the largest process it ran),
  - `dvc repro` again with nothing changed (median of --repeats),
  - `dvc version` (DVC's own start-up, the baseline for the no-op figure; same repeats).
Run: `.venv/bin/python benchmarks/pipeline.py [--set search.n_trials=10 ...] [--json out.json]`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def timed(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB of the largest descendant) of one command, run via a fresh helper
    process so that ru_maxrss covers this command alone."""
    probe = (
        "import resource, subprocess, sys, time; t = time.perf_counter(); "
        "r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL); w = time.perf_counter() - t; "
        "print(w, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.returncode)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    wall, rss_kb, code = out.stdout.split()
    if code != "0":
        raise SystemExit(f"{' '.join(args)} exited {code}:\n{out.stderr[-3000:]}")
    return float(wall), int(rss_kb) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="Hydra override for params.yaml")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mlgate-bench-") as scratch:
        root = Path(scratch) / "project"
        subprocess.run(["git", "clone", "-q", str(REPO), str(root)], check=True)
        env = {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "DVC_NO_ANALYTICS": "1",
            "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }
        if args.overrides:
            subprocess.run(
                [str(BIN / "mlgate"), "params", *args.overrides],
                cwd=root,
                env=env,
                check=True,
                stdout=subprocess.DEVNULL,
            )
        scratch_s, peak_mb = timed(["dvc", "repro"], root, env)
        noop = [timed(["dvc", "repro"], root, env)[0] for _ in range(args.repeats)]
        startup = [timed(["dvc", "version"], root, env)[0] for _ in range(args.repeats)]
    result = {
        "overrides": args.overrides,
        "scratch_s": round(scratch_s, 2),
        "peak_rss_mb": round(peak_mb, 1),
        "noop_s": round(statistics.median(noop), 3),
        "dvc_startup_s": round(statistics.median(startup), 3),
    }
    result["noop_above_startup_s"] = round(result["noop_s"] - result["dvc_startup_s"], 3)
    rows = [
        ("dvc repro from scratch", f"{result['scratch_s']:.1f} s", "goal <= 300 s"),
        ("peak RSS (largest process)", f"{result['peak_rss_mb']:.0f} MB", ""),
        (f"dvc repro, nothing changed (median of {args.repeats})", f"{result['noop_s']:.2f} s", ""),
        (f"dvc version (median of {args.repeats})", f"{result['dvc_startup_s']:.2f} s", "baseline"),
        ("no-op repro above DVC start-up", f"{result['noop_above_startup_s']:.2f} s", "goal <= 1 s"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'value':>10}  note")
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>10}  {note}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
