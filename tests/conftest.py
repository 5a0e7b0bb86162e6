"""Shared fixtures: one `dvc repro` of the default project per session that tests read or clone, and tiny
DataSpecs and frames (the helpers that copy, clone and run the project are in tests/helpers.py). A new
project's MLflow store needs nothing here: mlgate starts it as a copy of an empty, migrated one."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import (
    BINARY_DATA_SECTION,
    REPO,
    Built,
    copy_project,
    git_commit_all,
    run_cli,
    tiny_frame,
    tracking_env,
)

# Before anything imports mlflow: no telemetry, no chatter, one thread per library.
os.environ.update(
    {
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        "MLFLOW_LOGGING_LEVEL": "WARNING",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "DVC_NO_ANALYTICS": "1",
        "GIT_PYTHON_REFRESH": "quiet",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
)


@pytest.fixture(autouse=True)
def _no_leaked_dbutils_mock() -> None:
    """MLflow puts a MockDbutils object in sys.modules["dbutils"] while it loads a models-from-code
    model, and two loads in two threads (a server reloading while a test loads) can leave it there.
    Hypothesis reads every module's ``__file__`` and fails on that object, so a leaked one is
    removed before each test."""
    if type(sys.modules.get("dbutils")).__name__ == "MockDbutils":
        del sys.modules["dbutils"]


def _session_folder(tmp_path_factory) -> Path:
    """The session's temporary folder that every pytest-xdist worker sees (each worker's basetemp is a
    folder of it): what the workers build once and share goes there, under a file lock."""
    shared = tmp_path_factory.getbasetemp()
    return shared.parent if os.environ.get("PYTEST_XDIST_WORKER") else shared


@pytest.fixture(scope="session")
def built_project(tmp_path_factory) -> Built:
    """The default project on TINY_BUDGET in a git repo (branch main, one commit) after one `dvc repro`:
    version 1 of the model holds `staging`, dvc.lock is written and not committed.

    Built once per test session: under pytest-xdist the workers share it through a file lock in the
    session's common temporary folder (the pattern pytest-xdist documents). A failed build is
    reported to every test that asks for it, not retried.
    """
    from filelock import FileLock

    shared = _session_folder(tmp_path_factory)
    home = shared / "built_project"
    root, record, failure = home / "project", home / "first_repro.json", home / "failed.txt"
    with FileLock(str(shared / "built_project.lock")):
        if failure.exists():
            pytest.fail(f"building the shared project failed (in another worker):\n{failure.read_text()}")
        if not record.exists():
            shutil.rmtree(root, ignore_errors=True)  # what a worker that died while building left
            home.mkdir(parents=True, exist_ok=True)
            try:
                copy_project(root)
                subprocess.run(["git", "init", "-q", "-b", "main"], cwd=root, check=True)
                git_commit_all(root, "project")
                first = run_cli(["dvc", "repro"], root, tracking_env(root))
            except BaseException as error:
                failure.write_text(str(error))
                raise
            record.write_text(json.dumps({"args": first.args, "stdout": first.stdout, "stderr": first.stderr}))
    first = json.loads(record.read_text())
    return Built(
        root, tracking_env(root), subprocess.CompletedProcess(first["args"], 0, first["stdout"], first["stderr"])
    )


# --- tiny DataSpecs and frames (no files, no tracking store, no network) ------------------------------


@pytest.fixture(scope="session")
def project_root() -> Path:
    return REPO


@pytest.fixture
def data_section() -> dict:
    """A fresh copy of a binary `data:` section, shaped like conf/data/telco_churn.yaml."""
    return copy.deepcopy(BINARY_DATA_SECTION)


@pytest.fixture
def binary_spec(data_section):
    from mlgate import config
    from mlgate.modelling.data import DataSpec

    return config.build(DataSpec, data_section, "data")


@pytest.fixture
def regression_spec(data_section):
    from mlgate import config
    from mlgate.modelling.data import DataSpec

    columns = data_section["contract"]["columns"]
    del columns["churn"]
    columns["spend"] = {"type": "float"}
    data_section.update(task="regression", target="spend", positive_class=None, metric="rmse")
    return config.build(DataSpec, data_section, "data")


@pytest.fixture
def clean_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "tenure": [1, 5, 12, 24, 36, 60],
            "charges": [20.5, 35.0, 50.25, 70.0, 89.9, 110.0],
            "plan": ["basic", "plus", "pro", "basic", "plus", "pro"],
            "churn": ["Yes", "No", "No", "Yes", "No", "No"],
        }
    )


@pytest.fixture
def mixed_frame() -> Callable[..., pd.DataFrame]:
    """``mixed_frame(rows, task, seed=, with_missing=)``: a frame matching binary_spec or regression_spec."""
    return tiny_frame


@pytest.fixture
def early_stopping_from_1000_rows(monkeypatch):
    """CatBoost stops early from 1,000 rows on, so its tests fit in well under a second."""
    from mlgate.modelling import models

    monkeypatch.setattr(models, "EARLY_STOPPING_MIN_ROWS", 1_000)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules in the order the two workers should take them (pyproject keeps it: a module runs on one
    worker, modules go out in this order): one module that needs the shared `dvc repro` first, so it
    is built at once; then the other slow modules, which need nothing shared and keep the second worker
    busy meanwhile; then the rest that read the shared build; the many small modules last, to even out
    the end."""

    def uses_build(module: list[pytest.Item]) -> bool:
        return any("built_project" in item.fixturenames for item in module)

    def is_slow(module: list[pytest.Item]) -> bool:
        return any(item.get_closest_marker("slow") for item in module)

    modules: dict[Path, list[pytest.Item]] = {}
    for item in items:
        modules.setdefault(item.path, []).append(item)
    builders = [path for path, module in modules.items() if uses_build(module)]

    def rank(path: Path) -> int:
        module = modules[path]
        if builders and path == builders[0]:
            return 0
        if is_slow(module):
            return 2 if uses_build(module) else 1
        return 2 if uses_build(module) else 3

    items[:] = [item for path in sorted(modules, key=rank) for item in modules[path]]
