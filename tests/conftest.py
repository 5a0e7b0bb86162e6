"""Shared fixtures: a copy of the project with a tiny search budget and its own MLflow store."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path


# Before anything imports mlflow: no telemetry, no chatter, one thread per library.
os.environ.update({
    "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "MLFLOW_LOGGING_LEVEL": "WARNING",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", "DVC_NO_ANALYTICS": "1", "GIT_PYTHON_REFRESH": "quiet",
    "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
})

REPO = Path(__file__).resolve().parents[1]
POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"  # the machine's server, trust auth
BIN = Path(sys.executable).parent

# Small enough for a pipeline run in well under a minute on 2 cores, large enough to be real.
TINY_BUDGET = [
    "search.n_trials=5", "search.cv_folds=2", "search.n_jobs=1", "search.timeout_s=120",
    "model.catboost.fixed.iterations=40", "model.random_forest.fixed.n_estimators=25",
    "gate.metric_floor=0.7",
    # an ensemble's single-row latency, timed while the other test worker loads the 2 cores
    "gate.max_latency_ms=1000",
]

# Each model family with parameters small enough to fit a 40-row frame in well under a second.
SMALL_PARAMS = {
    "catboost": {"iterations": 20, "depth": 3, "learning_rate": 0.3},
    "linear": {"alpha": 1.0},
    "random_forest": {"n_estimators": 10, "max_depth": 4},
    "extra_trees": {"n_estimators": 10, "max_depth": 6},
    "hist_gradient_boosting": {"max_iter": 30, "min_samples_leaf": 3, "early_stopping": False},
    "knn": {"n_neighbors": 5},
    # a 10% validation share of 40 rows stops an MLP before it learns; conf/model/mlp.yaml keeps it on
    "mlp": {"hidden_units": 16, "learning_rate_init": 0.03, "max_iter": 500, "early_stopping": False},
}


def project_files() -> list[str]:
    """Files of the project as git sees them (tracked plus untracked-not-ignored)."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout.split()
    return [f for f in listed if (REPO / f).is_file() and not f.startswith(("tests/", "benchmarks/"))]


def copy_project(dest: Path, overrides: list[str] | None = None) -> Path:
    """A copy of the project at ``dest`` with params.yaml composed from conf/ with ``overrides``."""
    for name in project_files():
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)
    run_cli(["mlgate", "params", *with_overrides(TINY_BUDGET, overrides)], dest)
    return dest


def with_overrides(base: list[str], overrides: list[str] | None) -> list[str]:
    """Hydra overrides ``base`` with those in ``overrides`` replacing the same keys."""
    merged = {item.split("=", 1)[0]: item for item in base}
    merged.update({item.split("=", 1)[0]: item for item in overrides or []})
    return list(merged.values())


def run_cli(args: list[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    # mlflow.set_registry_uri() in this process exports MLFLOW_REGISTRY_URI; a subprocess must not
    # inherit the registry of whichever store an earlier in-process test used.
    inherited = {k: v for k, v in os.environ.items() if k != "MLFLOW_REGISTRY_URI"}
    full_env = {**inherited, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **(env or {})}
    result = subprocess.run(args, cwd=cwd, env=full_env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def git_commit_all(cwd: Path, message: str) -> None:
    for args in (["git", "add", "-A"], ["git", "-c", "user.name=mlgate-test", "-c", "user.email=t@example.invalid",
                                        "commit", "-qm", message]):
        subprocess.run(args, cwd=cwd, check=True, capture_output=True)


@contextlib.contextmanager
def scratch_table(url: str, prefix: str) -> Iterator[tuple[object, str]]:
    """(engine, a fresh table name) in the database at ``url``; the table is dropped afterwards."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    table = f"{prefix}_{uuid.uuid4().hex[:8]}"
    try:
        yield engine, table
    finally:
        with engine.begin() as connection:
            connection.execute(sa.text(f'drop table if exists "{table}"'))
        engine.dispose()


def spec_over(columns: dict, *, task: str = "binary", **contract):
    """A DataSpec whose contract is ``columns`` plus the target (churn: binary, spend: regression)."""
    from mlgate import config
    from mlgate.data import DataSpec

    columns = dict(columns)
    if task == "binary":
        columns["churn"] = {"type": "string"}
        head = {"task": "binary", "target": "churn", "positive_class": "Yes", "metric": "roc_auc"}
    else:
        columns["spend"] = {"type": "float"}
        head = {"task": "regression", "target": "spend", "metric": "rmse"}
    section = {"name": "tiny", **head, "source": {"kind": "file", "path": "data/source/tiny.csv", "format": "csv"},
               "contract": {**contract, "columns": columns}}
    return config.build(DataSpec, section, "data")
