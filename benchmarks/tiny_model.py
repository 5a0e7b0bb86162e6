"""A registered model promoted to 'production', for the benchmarks that serve one: the project's stages
on the tests' tiny budget in a temporary copy of the project, with its own SQLite MLflow store.

Runs in the venv `make run` installs: nothing here imports pytest or the tests (tests/helpers.py needs
the test extras). The tests take their tiny budget from here (``tests.helpers.TINY_BUDGET``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
QUIET = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "MLFLOW_LOGGING_LEVEL": "WARNING",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "DVC_NO_ANALYTICS": "1",
    "GIT_PYTHON_REFRESH": "quiet",
}
THREADS = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
TINY_BUDGET = [
    "search.n_trials=5",
    "search.cv_folds=2",
    "search.n_jobs=1",
    "search.timeout_s=120",
    "model.catboost.fixed.iterations=40",
    "model.random_forest.fixed.n_estimators=25",
    "gate.metric_floor=0.7",
    # an ensemble's single-row latency, timed while another test worker or benchmark loads the 2 cores
    "gate.max_latency_ms=1000",
]

# Runs in the project copy: the pipeline's stages on the tiny budget, then the candidate to 'production'.
BUILD = """
import json, sys
from mlgate import config
from mlgate.services import promote
from mlgate.stages import drift, evaluate, gate, ingest, split, train, tune, validate
params = config.read_params()
for stage in (ingest, validate, split, tune, train, evaluate, drift, gate):
    result = stage.run(params)
if not result.passed:
    raise SystemExit("the gate rejected the benchmark model: " + "; ".join(result.reasons))
name, version = result.candidate.name, int(result.candidate.version)
promote.promote(name, version, "production", sys.argv[1])
print(json.dumps({"model": name, "family": result.candidate.family}))
"""


def environment(tracking_uri: str | None = None) -> dict[str, str]:
    """This process's environment for a benchmark's subprocesses: quiet, one thread per library, the
    venv's commands first, and ``tracking_uri`` as the store (the registry follows it)."""
    env = {**THREADS, **os.environ, **QUIET, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_REGISTRY_URI", None)
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    return env


def copy_project(dest: Path, env: dict[str, str]) -> Path:
    """The project's files as git sees them (tracked plus untracked-not-ignored, so uncommitted changes
    too), without tests/ and benchmarks/, at ``dest``, with params.yaml composed on TINY_BUDGET."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout.split()
    for name in listed:
        if (REPO / name).is_file() and not name.startswith(("tests/", "benchmarks/")):
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    subprocess.run(
        [str(BIN / "mlgate"), "params", *TINY_BUDGET], cwd=dest, env=env, check=True, stdout=subprocess.DEVNULL
    )
    return dest


def build_model(scratch: Path, reason: str) -> tuple[str, dict[str, str], str]:
    """(registered model name, env with its MLFLOW_TRACKING_URI, family) of a fresh tiny-budget model in
    ``scratch``/project, promoted to 'production' with ``reason``."""
    root = scratch / "project"
    env = environment(f"sqlite:///{root / 'mlflow.db'}")
    copy_project(root, env)
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", BUILD, reason], cwd=root, env=env, capture_output=True, text=True, timeout=1800
    )
    if out.returncode != 0:
        raise SystemExit(f"building the benchmark model failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
    built = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"built and promoted {built['model']} ({built['family']}) in {time.monotonic() - started:.0f} s")
    return built["model"], env, built["family"]


def run_benchmark(
    parser: argparse.ArgumentParser, benchmark: Callable[[argparse.Namespace], dict], report: Callable[[dict], None]
) -> None:
    """A benchmark's main: its arguments and ``--json``, then measure, print the table, write the JSON."""
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args()
    result = benchmark(args)
    report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
