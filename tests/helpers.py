"""Helpers the tests share (plain functions and classes; the fixtures are in the conftest files): copies
of the project on a tiny search budget, the CLI in a subprocess, and the project's own MLflow store."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests

REPO = Path(__file__).resolve().parents[1]
POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"  # the machine's server, trust auth
BIN = Path(sys.executable).parent
PG_SERVER = POSTGRES.rsplit("/", 1)[0]  # the same server, without a database
# The tests' `mlflow server`s run as deploy/mlflow-server.sh runs one: no job runner (eight processes for
# GenAI jobs), and a database pool of 5 + 36, one more than a server worker's 40 request threads (MLflow's
# log_batch takes a second connection while it holds one: a smaller pool deadlocks under concurrent writers).
# Connections beyond 5 open only under that many concurrent requests; PostgreSQL's max_connections is 100.
SERVER_ENV = {
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE": "5",
    "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW": "36",
}


@functools.cache
def study_storage(url: str):
    """The Optuna storage of a study database, one per URL for the test process, closing its connections
    after each use: optuna's storage for a URL string is a new pool of connections per call, which stays
    open until it is collected (a test polling a study held dozens, and CI's PostgreSQL allows 100)."""
    import optuna
    from sqlalchemy.pool import NullPool

    return optuna.storages.RDBStorage(url, engine_kwargs={"poolclass": NullPool})


def pg_admin(statement: str) -> None:
    """One statement on the server's maintenance database, outside a transaction (CREATE DATABASE...)."""
    import psycopg

    with psycopg.connect(PG_SERVER.replace("postgresql+psycopg", "postgresql") + "/postgres", autocommit=True) as c:
        c.execute(statement)


def load_benchmark(script: str, name: str) -> ModuleType:
    """benchmarks/``script`` imported as module ``name``, with benchmarks/ on sys.path while it loads, as when
    it runs as a script (its helpers, e.g. tiny_model, sit beside it)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return module


# Small enough for a pipeline run in well under a minute on 2 cores, large enough to be real; the same as the
# serving benchmarks' (benchmarks/tiny_model.py).
TINY_BUDGET: list[str] = load_benchmark("tiny_model.py", "tiny_model").TINY_BUDGET

# A clustering dataset's small budget (its preset selects the clustering families).
CLUSTERING_BUDGET = [
    "experiment=budget_uk",
    "search.n_trials=8",
    "clustering.stability_resamples=3",
    "gate.max_latency_ms=1000",
]

# Each model family with parameters small enough to fit a 40-row frame in well under a second.
SMALL_PARAMS = {
    "catboost": {"iterations": 20, "depth": 3, "learning_rate": 0.3},
    "linear": {"alpha": 1.0},
    "random_forest": {"n_estimators": 10, "max_depth": 4},
    "extra_trees": {"n_estimators": 10, "max_depth": 6},
    "hist_gradient_boosting": {"max_iter": 30, "min_samples_leaf": 3, "early_stopping": False},
    "lightgbm": {"n_estimators": 30, "num_leaves": 8, "min_child_samples": 3},
    "knn": {"n_neighbors": 5},
    # a 10% validation share of 40 rows stops an MLP before it learns; conf/model/mlp.yaml keeps it on
    "mlp": {"hidden_units": 16, "learning_rate_init": 0.03, "max_iter": 500, "early_stopping": False},
}


def project_files() -> list[str]:
    """Files of the project as git sees them (tracked plus untracked-not-ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout.split()
    return [f for f in listed if (REPO / f).is_file() and not f.startswith(("tests/", "benchmarks/"))]


# params.yaml as `mlgate params` composed it, by overrides: the same overrides compose the same file,
# and composing starts Hydra in a process of its own (seconds), so each is composed once per process.
_COMPOSED: dict[tuple[str, ...], bytes] = {}


def copy_project(dest: Path, overrides: list[str] | None = None, budget: list[str] = TINY_BUDGET) -> Path:
    """A copy of the project at ``dest`` with params.yaml composed from conf/ with ``overrides`` over
    ``budget`` (the supervised families' small one by default; CLUSTERING_BUDGET for a clustering dataset)."""
    for name in project_files():
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)
    merged = tuple(with_overrides(budget, overrides))
    if merged in _COMPOSED:
        (dest / "params.yaml").write_bytes(_COMPOSED[merged])
    else:
        run_cli(["mlgate", "params", *merged], dest)
        _COMPOSED[merged] = (dest / "params.yaml").read_bytes()
    return dest


def with_overrides(base: list[str], overrides: list[str] | None) -> list[str]:
    """Hydra overrides ``base`` with those in ``overrides`` replacing the same keys."""
    merged = {item.split("=", 1)[0]: item for item in base}
    merged.update({item.split("=", 1)[0]: item for item in overrides or []})
    return list(merged.values())


def run_cli(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    # mlflow.set_registry_uri() in this process exports MLFLOW_REGISTRY_URI; a subprocess must not
    # inherit the registry of whichever store an earlier in-process test used.
    inherited = {k: v for k, v in os.environ.items() if k != "MLFLOW_REGISTRY_URI"}
    full_env = {**inherited, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **(env or {})}
    result = subprocess.run(args, cwd=cwd, env=full_env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def git_commit_all(cwd: Path, message: str) -> None:
    for args in (
        ["git", "add", "-A"],
        ["git", "-c", "user.name=mlgate-test", "-c", "user.email=t@example.invalid", "commit", "-qm", message],
    ):
        subprocess.run(args, cwd=cwd, check=True, capture_output=True)


def tracking_env(root: Path) -> dict[str, str]:
    """The environment that points `mlgate` and the stages at the project's own SQLite store."""
    return {"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}


@contextlib.contextmanager
def stages_run(root: Path) -> Iterator[tuple[dict, dict]]:
    """Every stage's run() in order, in ``root`` with its own store; yields (params, result by stage)
    and stays in the project (cwd, tracking URI) until the with-block ends."""
    from mlgate import config
    from mlgate.stages import drift, evaluate, gate, ingest, split, train, tune, validate

    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        for name, value in tracking_env(root).items():
            patch.setenv(name, value)
        params = config.read_params()
        results = {
            stage.STAGE: stage.run(params) for stage in (ingest, validate, split, tune, train, evaluate, drift, gate)
        }
        yield params, results


# What `dvc repro` runs, in order (fingerprint is data/dvc.yaml's stage before ingest).
PIPELINE = ("fingerprint", "ingest", "validate", "split", "tune", "train", "evaluate", "drift", "gate")


def run_mlgate(args: list[str], root: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``mlgate <args>`` run in this process in ``root``: its exit code and what it printed, as run_cli gives
    them (never raising). For tests of what a command does rather than of its process: a new process
    imports MLflow, scikit-learn or Evidently again, 3-5 s of CPU each, where the test's process has them."""
    import click

    from mlgate.cli import main

    out, err, code = io.StringIO(), io.StringIO(), 0
    settings = env or tracking_env(root)
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        patch.chdir(root)
        # as in a new process: the registry is the tracking store, whatever an earlier test here used
        point_mlflow_at(patch, settings["MLFLOW_TRACKING_URI"])
        patch.setenv("MLFLOW_REGISTRY_URI", settings["MLFLOW_TRACKING_URI"])  # so that MLflow's own export is undone
        patch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ['PATH']}")  # as run_cli: for what it starts
        for name, value in settings.items():
            patch.setenv(name, value)
        try:
            code = main(args, standalone_mode=False) or 0  # an int when the command ends with ctx.exit(n)
        except SystemExit as stopped:
            code = stopped.code or 0
        except click.ClickException as refused:  # a usage error: what click prints, and its exit code
            refused.show()
            code = refused.exit_code
    return subprocess.CompletedProcess(["mlgate", *args], code, out.getvalue(), err.getvalue())


def run_stages(
    root: Path, env: dict[str, str] | None = None, stages: tuple[str, ...] = PIPELINE
) -> subprocess.CompletedProcess:
    """The stages' commands run in this process (run_mlgate), in order as `dvc repro` runs them, until one
    exits non-zero. For tests of what the stages do rather than of DVC's wiring (test_dvc_pipeline.py)."""
    outs, errs, code = [], [], 0
    for stage in stages:
        ran = run_mlgate([stage], root, env)
        outs.append(ran.stdout)
        errs.append(ran.stderr)
        code = ran.returncode
        if code:
            break
    return subprocess.CompletedProcess(["mlgate", *stages], code, "".join(outs), "".join(errs))


def clone_project(source: Path, dest: Path) -> Path:
    """A copy at ``dest`` of a project that has run: its git repo, DVC cache, MLflow store and artifacts.

    Copying is far cheaper than running the pipeline again. The store holds absolute artifact
    locations (the experiment's ``<project>/mlruns``, each run's and model version's location); they
    are moved to ``dest``, so the copy reads and writes its own artifacts and never those of ``source``.
    """
    shutil.copytree(source, dest, symlinks=True)
    if (dest / "mlflow.db").exists():
        relocate_store(dest / "mlflow.db", source, dest)
    for logged in dest.glob("mlruns/**/MLmodel"):  # its `artifact_path:` records where it was logged
        logged.write_text(logged.read_text().replace(f"{source}/", f"{dest}/"))
    if (dest / "mlflow.db").exists():
        reseal_versions(dest)
    return dest


def reseal_versions(root: Path) -> None:
    """Relocating changed the bytes of each model's MLmodel, so the artifact digests the gate recorded
    no longer match and every verified load would (rightly) refuse the copy: record the relocated
    files' digests in their place, in the store and in the project's reports."""
    from mlgate.adapters import tracking

    with contextlib.closing(sqlite3.connect(root / "mlflow.db")) as db:
        sealed = db.execute(
            "select name, version, value from model_version_tags where key = ?", (tracking.DIGEST_TAG,)
        ).fetchall()
    if not sealed:
        return
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", tracking_env(root)["MLFLOW_TRACKING_URI"])
        tracking.client()  # the process's MLflow globals (download_artifacts reads them) name this store
        relocated = {recorded: tracking.model_digest(name, int(version)) for name, version, recorded in sealed}
    lock = root / "dvc.lock"
    for recorded, digest in relocated.items():
        if digest == recorded:
            continue
        replace_in_store(root / "mlflow.db", recorded, digest)
        for report in (root / "reports").glob("*.json"):
            before = report.read_bytes()
            after = before.replace(recorded.encode(), digest.encode())
            if after != before:  # the gate's outputs stay up to date for DVC: their md5 in dvc.lock follows
                report.write_bytes(after)
                if lock.exists():
                    lock.write_text(
                        lock.read_text().replace(hashlib.md5(before).hexdigest(), hashlib.md5(after).hexdigest())
                    )


def relocate_store(store: Path, old: Path, new: Path) -> None:
    """Every text value in the SQLite ``store`` that names a path under ``old`` (as a path or inside a
    file URI) now names the same path under ``new``."""
    replace_in_store(store, f"{old}/", f"{new}/")


def replace_in_store(store: Path, before: str, after: str) -> None:
    """``before`` replaced by ``after`` in every text value of the SQLite ``store``."""
    with contextlib.closing(sqlite3.connect(store)) as db, db:
        tables = [name for (name,) in db.execute("select name from sqlite_master where type = 'table'")]
        for table in tables:
            for column in [info[1] for info in db.execute(f'pragma table_info("{table}")')]:
                db.execute(
                    f'update "{table}" set "{column}" = replace("{column}", ?, ?) '
                    f'where typeof("{column}") = \'text\' and instr("{column}", ?) > 0',
                    (before, after, before),
                )


@dataclass(frozen=True)
class Built:
    """The default project after `dvc repro`: read it, clone_project() it to change anything."""

    root: Path
    env: dict[str, str]
    first: subprocess.CompletedProcess  # the `dvc repro` that built it


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
    from mlgate.modelling.data import DataSpec

    columns = dict(columns)
    if task == "binary":
        columns["churn"] = {"type": "string"}
        head = {"task": "binary", "target": "churn", "positive_class": "Yes", "metric": "roc_auc"}
    else:
        columns["spend"] = {"type": "float"}
        head = {"task": "regression", "target": "spend", "metric": "rmse"}
    section = {
        "name": "tiny",
        **head,
        "source": {"kind": "file", "path": "data/source/tiny.csv", "format": "csv"},
        "contract": {**contract, "columns": columns},
    }
    return config.build(DataSpec, section, "data")


# A binary `data:` section shaped like conf/data/telco_churn.yaml, over the columns of tiny_frame().
BINARY_DATA_SECTION = {
    "name": "tiny",
    "task": "binary",
    "target": "churn",
    "positive_class": "Yes",
    "metric": "roc_auc",
    "source": {"kind": "file", "path": "data/source/tiny.csv", "format": "csv"},
    "current_path": None,
    "contract": {
        "min_rows": 3,
        "min_class_count": 1,
        "max_missing_share": 0.0,
        "columns": {
            "tenure": {"type": "integer"},
            "charges": {"type": "float", "max_missing_share": 0.5},
            "plan": {"type": "string", "max_missing_share": 0.5},
            "churn": {"type": "string"},
        },
    },
}


def tiny_frame(rows: int = 40, task: str = "binary", *, seed: int = 0, with_missing: bool = False) -> pd.DataFrame:
    """Unique rows; a third of them churn (the most expensive), or `spend` grows with charges."""
    rng = np.random.default_rng(seed)
    charges = rng.uniform(20, 120, rows).round(2)
    frame = pd.DataFrame(
        {
            "tenure": rng.integers(0, 72, rows),
            "charges": charges,
            "plan": rng.choice(["basic", "plus", "pro"], rows).astype(object),
        }
    )
    if task == "binary":
        frame["churn"] = np.where(charges > np.quantile(charges, 2 / 3), "Yes", "No")
    else:
        frame["spend"] = 3.0 * charges + rng.normal(0, 5, rows)
    if with_missing:
        frame.loc[[1, 7], "charges"] = np.nan
        frame.loc[[2, 9], "plan"] = np.nan
    return frame


def point_mlflow_at(monkeypatch, uri: str) -> None:
    """This test process's MLflow (tracking and registry) and mlgate's adapter on ``uri`` until the test
    ends. MLflow resolves an mlflow-artifacts:/ or models:/ URI through its process-global URIs, which an
    earlier test in the same process may have set (and which win over the environment), and mlgate's
    adapter reads MLFLOW_REGISTRY_URI once: all are patched, so monkeypatch restores them."""
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    from mlgate.adapters import tracking

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.setattr(tracking_utils, "_tracking_uri", uri)
    monkeypatch.setattr(registry_utils, "_registry_uri", uri)
    monkeypatch.setattr(tracking, "_REGISTRY_URI", None)


def loaded_by_importing(modules: list[str], candidates: tuple[str, ...]) -> list[str]:
    """Which of ``candidates`` (heavy packages) a fresh interpreter has loaded once it imported ``modules``."""
    code = f"import sys, {', '.join(modules)}; print(*sorted(m for m in {candidates!r} if m in sys.modules))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()


BLOB_CENTRES = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
BLOB_SIZES = (60, 40, 20)  # unequal, so numbering clusters by size is visible


def blobs(seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Three tight, far-apart groups of 60, 40 and 20 rows, with a categorical column that follows them."""
    rng = np.random.default_rng(seed)
    points = np.vstack([rng.normal(c, 0.5, (n, 2)) for c, n in zip(BLOB_CENTRES, BLOB_SIZES, strict=True)])
    truth = np.repeat([0, 1, 2], BLOB_SIZES)
    frame = pd.DataFrame({"x": points[:, 0], "y": points[:, 1], "kind": np.array(["a", "b", "c"])[truth]})
    return frame, truth


# --- a real server for the serving tests ----------------------------------------------------------


@dataclass
class Live:
    url: str
    app: Any
    server: Any

    def post(self, payload: Any = None, *, session: requests.Session | None = None, **kwargs) -> requests.Response:
        sender = session or requests
        if payload is not None:
            kwargs["json"] = payload
        return sender.post(f"{self.url}/invocations", timeout=30, **kwargs)

    def get(self, path: str) -> requests.Response:
        return requests.get(f"{self.url}{path}", timeout=30)

    def metrics(self) -> dict[tuple[str, frozenset], float]:
        return parse_metrics(self.get("/metrics").text)


@contextlib.contextmanager
def running(settings, **app_options) -> Iterator[Live]:
    """A real uvicorn server for ``create_app(settings, **app_options)`` on a free port, stopped
    (lifespan shutdown included) on exit."""
    import uvicorn

    from mlgate.services.serving import create_app, uvicorn_config

    app = create_app(settings, **app_options)
    server = uvicorn.Server(uvicorn_config(app, settings, "127.0.0.1", 0))
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:  # set after the lifespan startup (the first model load) and bind
        assert thread.is_alive(), "the server stopped during startup"
        assert time.monotonic() < deadline, "the server did not start within 60 s"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Live(f"http://127.0.0.1:{port}", app, server)
    finally:
        server.should_exit = True
        thread.join(30)
        assert not thread.is_alive(), "the server did not stop within 30 s"


def parse_metrics(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of a Prometheus text exposition as {(sample name, labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def metric(samples: dict[tuple[str, frozenset], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def labelled(samples: dict[tuple[str, frozenset], float], name: str) -> dict[frozenset, float]:
    return {labels: value for (sample, labels), value in samples.items() if sample == name}


# --- the AutoML benchmark harness's small suites (unit/test_automl_bench.py, integration/test_automl_harness.py)


def bench_suite(folder: Path, entries: list[dict] | str) -> Path:
    """A suite folder whose suite.yaml lists ``entries`` (or holds that text)."""
    folder.mkdir(parents=True, exist_ok=True)
    text = entries if isinstance(entries, str) else json.dumps({"datasets": entries})  # JSON is YAML
    (folder / "suite.yaml").write_text(text)
    return folder


def bench_binary_frame(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=rows)
    plan = rng.choice(["basic", "plus", None], size=rows)
    label = np.where(x + rng.normal(scale=0.8, size=rows) > 0.6, "yes", "no")
    return pd.DataFrame({"x": x, "plan": plan, "churn": label})


def bench_regression_frame(rows: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    size = rng.uniform(50, 200, size=rows)
    size[rng.random(rows) < 0.05] = np.nan
    kind = rng.choice(["flat", "house"], size=rows)
    price = 1000 * np.nan_to_num(size, nan=120) + np.where(kind == "house", 30_000, 0) + rng.normal(0, 5000, rows)
    return pd.DataFrame({"size": size, "kind": kind, "price": price})


def bench_binary_entry(**changes) -> dict:
    return {"name": "tiny", "file": "tiny.csv.gz", "target": "churn", "task": "binary", **changes}


def logged_columns(features: list[str]) -> list[str]:
    """The prediction log's columns, in order, for a model with these input columns."""
    return [
        "request_id",
        "client_request_id",
        "timestamp",
        "model_version",
        "row",
        "role",
        *features,
        "output_prediction",
        "output_probability",
        "extra_inputs",
    ]
