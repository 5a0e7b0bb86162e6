"""AutoML benchmark: mlgate against FLAML, H2O AutoML, AutoGluon and plain CatBoost on a suite of datasets.

Each dataset of the suite folder gets the same seeded 75/25 split per seed (stratified on the target for
classification); each (system, dataset, seed) then runs alone, in a fresh subprocess pinned to the same
cores, with the same wall budget. The harness measures the whole process (wall time, and peak RSS of the
process and its descendants, such as H2O's JVM) and scores the predictions it gets back itself, so that
every system is scored the same way: ROC AUC for binary, log loss for multiclass, RMSE for regression. A
run that fails, times out (default budget * 3 + 120 s) or whose system did not install is recorded as such.

Peers run in their own virtual environments, created on first use in .bench/venvs/<system> from the pinned
benchmarks/peers/<system>.txt (recreated when that file changes); mlgate and catboost run in .venv. The
neural baselines realmlp and tabm (pytabkit's defaults on CPU) run only when named, from one venv
(benchmarks/peers/pytabkit.txt). Each
run's HOME, XDG_CACHE_HOME, MPLCONFIGDIR and TMPDIR point into its scratch folder.

Runners: benchmarks/automl_runners/<system>.py, one small script per system; the protocol they follow is
described in benchmarks/automl_runners/_shared/automl_protocol.py. A suite entry may name its binary target's
`positive_class`; by default it is the minority class.

Run from the project root:
  .venv/bin/python benchmarks/automl.py [--suite ../shared/datasets] [--datasets adult,ames]
      [--systems mlgate,flaml,h2o,autogluon,catboost] [--seeds 0,1,2] [--budget 60] [--cores 2]
      [--timeout S] [--busy N] [--out/--json results.json] [--keep-scratch] [--install] [--compare earlier.json]
`--install` only creates the peer venvs. `--busy N` keeps N CPU-bound processes spinning on the same cores
throughout, as on a shared, loaded machine: each run gets about cores / (cores + N) of them, and the wall
table shows whether a system still honours its budget. `--compare` joins an earlier --out file's runs of the systems not
run now (same datasets, seeds and budget) to the table. The Markdown table goes to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import yaml
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.model_selection import train_test_split

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SUITE = REPO.parent / "shared" / "datasets"
RUNNERS = REPO / "benchmarks" / "automl_runners"
PEERS = REPO / "benchmarks" / "peers"
BENCH = REPO / ".bench"
PROJECT_PYTHON = REPO / ".venv" / "bin" / "python"

SYSTEMS = ("mlgate", "flaml", "h2o", "autogluon", "catboost")
# Neural families measured as systems of their own, run only when named: whether they would earn a place
# among mlgate's families (issue: their install size and time at these budgets). One venv holds both.
OPTIONAL_SYSTEMS = ("realmlp", "tabm")
KNOWN_SYSTEMS = SYSTEMS + OPTIONAL_SYSTEMS
IN_PROJECT_VENV = frozenset({"mlgate", "catboost"})
SHARED_VENV = {"realmlp": "pytabkit", "tabm": "pytabkit"}
TASKS = ("binary", "multiclass", "regression")
METRICS = {"binary": "roc_auc", "multiclass": "log_loss", "regression": "rmse"}
HIGHER_IS_BETTER = {"roc_auc": True, "log_loss": False, "rmse": False}
SUITE_FIELDS = ("name", "file", "target", "task")
RECORD_FIELDS = {"system", "dataset", "task", "metric", "value", "status", "seed", "budget_s", "baseline"}
PIP = "pip==25.3"
POLL_S = 0.2

# Runs the command after the report path and writes its exit code, wall time, CPU time and ru_maxrss (its own, or
# that of a descendant it waited for, if larger; the CPU time counts those descendants too). A tiny separate
# process: a child's ru_maxrss starts from its parent's memory at fork and exec, so the harness's own would
# otherwise count.
WRAPPER = """
import json, os, subprocess, sys, time
start = time.perf_counter()
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
report = {"returncode": os.waitstatus_to_exitcode(status), "wall_s": time.perf_counter() - start,
          "maxrss_kb": usage.ru_maxrss, "cpu_s": usage.ru_utime + usage.ru_stime}
with open(sys.argv[1], "w") as out:
    json.dump(report, out)
"""


class SuiteError(ValueError):
    """A suite folder that does not follow the format; the message names the entry and the field."""


class InstallError(RuntimeError):
    """A peer's virtual environment could not be created."""


@dataclass(frozen=True)
class Dataset:
    name: str
    path: Path
    target: str
    task: str
    positive_class: str | None = None


@dataclass(frozen=True)
class Instance:
    """One dataset split with one seed: the files every system gets and what the harness scores against."""

    dataset: Dataset
    seed: int
    train_path: Path
    test_path: Path
    y_test: pd.Series
    baseline: float
    positive_class: str | None
    classes: tuple[str, ...]


@dataclass(frozen=True)
class Outcome:
    returncode: int | None  # None: killed at the timeout
    wall_s: float
    peak_mb: float
    cpu_s: float | None = None  # the process's and the descendants' it waited for


# ---------------------------------------------------------------- suite and split


def load_suite(folder: Path) -> list[Dataset]:
    """The datasets listed in `folder/suite.yaml` (`datasets: [{name, file, target, task}]`)."""
    manifest = Path(folder) / "suite.yaml"
    if not manifest.is_file():
        raise SuiteError(f"{manifest}: no such file")
    try:
        content = yaml.safe_load(manifest.read_text())
    except yaml.YAMLError as error:
        raise SuiteError(f"{manifest}: not valid YAML: {error}") from error
    entries = content.get("datasets") if isinstance(content, dict) else None
    if not isinstance(entries, list) or not entries:
        raise SuiteError(f"{manifest}: field `datasets` must be a non-empty list")
    datasets = [_dataset(manifest, index, entry) for index, entry in enumerate(entries)]
    names = [d.name for d in datasets]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SuiteError(f"{manifest}: field `name` repeats {', '.join(duplicates)}")
    return datasets


def _dataset(manifest: Path, index: int, entry: object) -> Dataset:
    where = f"{manifest}: datasets[{index}]"
    if not isinstance(entry, dict):
        raise SuiteError(f"{where} must be a mapping with fields {', '.join(SUITE_FIELDS)}")
    for field in SUITE_FIELDS:
        if entry.get(field) in (None, ""):
            raise SuiteError(f"{where}: missing field `{field}`")
    where = f"{manifest}: dataset {entry['name']!r}"
    if entry["task"] not in TASKS:
        raise SuiteError(f"{where}: field `task` must be one of {', '.join(TASKS)}, not {entry['task']!r}")
    path = manifest.parent / str(entry["file"])
    if not path.is_file():
        raise SuiteError(f"{where}: field `file` names {path}, which does not exist")
    positive = entry.get("positive_class")
    return Dataset(
        name=str(entry["name"]),
        path=path,
        target=str(entry["target"]),
        task=entry["task"],
        positive_class=None if positive is None else str(positive),
    )


def select(datasets: list[Dataset], names: list[str] | None) -> list[Dataset]:
    """The datasets named (in suite order), or all of them."""
    if not names:
        return datasets
    unknown = sorted(set(names) - {d.name for d in datasets})
    if unknown:
        raise SuiteError(
            f"unknown dataset(s) {', '.join(unknown)}; the suite has {', '.join(d.name for d in datasets)}"
        )
    return [d for d in datasets if d.name in names]


def check_target(dataset: Dataset, columns: pd.Index) -> None:
    if dataset.target not in columns:
        raise SuiteError(
            f"dataset {dataset.name!r}: field `target` names {dataset.target!r}, "
            f"which is not a column of {dataset.path.name}"
        )


def read_dataset(dataset: Dataset) -> pd.DataFrame:
    """The CSV as pandas reads it (missing values as NaN), without the rows whose target is missing."""
    frame = pd.read_csv(dataset.path)
    check_target(dataset, frame.columns)
    return frame.dropna(subset=[dataset.target]).reset_index(drop=True)


def split(frame: pd.DataFrame, dataset: Dataset, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The seeded 75/25 split every system gets; stratified on the target for classification."""
    target = frame[dataset.target]
    stratify = None
    if dataset.task != "regression" and target.value_counts().min() >= 2:
        stratify = target
    train, test = train_test_split(frame, test_size=0.25, random_state=seed, stratify=stratify)
    return train.reset_index(drop=True), test.reset_index(drop=True)


def positive_class(target: pd.Series, given: str | None = None) -> str:
    """The binary target's positive label (as a string): `given`, or the minority class (ties: first by name)."""
    counts = target.astype(str).value_counts()
    if len(counts) != 2:
        raise SuiteError(f"a binary target needs 2 classes, found {len(counts)}")
    if given is not None:
        if given not in counts.index:
            raise SuiteError(f"positive_class {given!r} is not a label of the target ({', '.join(counts.index)})")
        return given
    return min(counts.index, key=lambda label: (counts[label], label))


# ---------------------------------------------------------------- scoring


def baseline_score(task: str, y_train: pd.Series, y_test: pd.Series) -> float:
    """The metric of a constant predictor: AUC 0.5; RMSE of the train mean; log loss of the train priors."""
    if task == "binary":
        return 0.5
    if task == "regression":
        return float(np.sqrt(np.mean((y_test.to_numpy(float) - y_train.mean()) ** 2)))
    classes = class_labels(y_train, y_test)
    priors = y_train.astype(str).value_counts(normalize=True).reindex(list(classes), fill_value=0.0).to_numpy()
    return float(log_loss(y_test.astype(str), np.tile(priors, (len(y_test), 1)), labels=list(classes)))


def class_labels(*targets: pd.Series) -> tuple[str, ...]:
    return tuple(sorted(set().union(*(set(t.astype(str)) for t in targets))))


def score_predictions(instance: Instance, predictions: pd.DataFrame) -> float:
    """The test metric of a runner's predictions file, checked for shape and values."""
    task, y_test = instance.dataset.task, instance.y_test
    if len(predictions) != len(y_test):
        raise ValueError(f"predictions have {len(predictions)} rows, the test split {len(y_test)}")
    if task == "multiclass":
        unknown = sorted(set(predictions.columns) - set(instance.classes))
        if unknown:
            raise ValueError(f"predictions name unknown classes {unknown}")
        probabilities = predictions.reindex(columns=list(instance.classes), fill_value=0.0).to_numpy(float)
        _check_finite(probabilities)
        probabilities = np.clip(probabilities, 1e-15, 1.0)
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        return float(log_loss(y_test.astype(str), probabilities, labels=list(instance.classes)))
    column = "proba" if task == "binary" else "prediction"
    if column not in predictions.columns:
        raise ValueError(f"predictions have no `{column}` column (found {list(predictions.columns)})")
    values = predictions[column].to_numpy(float)
    _check_finite(values)
    if task == "binary":
        return float(roc_auc_score(y_test.astype(str) == instance.positive_class, values))
    return float(np.sqrt(np.mean((y_test.to_numpy(float) - values) ** 2)))


def _check_finite(values: np.ndarray) -> None:
    if not np.isfinite(values).all():
        raise ValueError("predictions contain missing or infinite values")


def normalized(value: float, baseline: float, best: float, higher_is_better: bool) -> float:
    """0 for the constant predictor, 1 for the best system (negative if worse than constant)."""
    sign = 1.0 if higher_is_better else -1.0
    span = sign * (best - baseline)
    return sign * (value - baseline) / span if span > 0 else 0.0


def compare(records: list[dict]) -> pd.DataFrame:
    """Per (dataset, seed, system): rank (1 = best, ties averaged) and normalized score.

    A run that is not ok takes the worst rank (the number of systems) and a normalized score of 0.
    """
    rows = []
    frame = pd.DataFrame(records)
    for (dataset, seed), group in frame.groupby(["dataset", "seed"], sort=False):
        ok = group[group["status"] == "ok"]
        higher = HIGHER_IS_BETTER[group["metric"].iloc[0]]
        ranks = ok.set_index("system")["value"].rank(ascending=not higher, method="average")
        best = ok["value"].max() if higher else ok["value"].min()
        for record in group.itertuples():
            if record.status == "ok":
                rank, score = float(ranks[record.system]), normalized(record.value, record.baseline, best, higher)
            else:
                rank, score = float(len(group)), 0.0
            rows.append({"dataset": dataset, "seed": seed, "system": record.system, "rank": rank, "normalized": score})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- venvs and subprocesses


def python_for(system: str) -> Path:
    """The interpreter a system runs in, creating its venv on first use."""
    if system in IN_PROJECT_VENV:
        if not PROJECT_PYTHON.exists():
            raise InstallError(f"{PROJECT_PYTHON} is missing: run `make test` first")
        return PROJECT_PYTHON
    venv = SHARED_VENV.get(system, system)
    return ensure_venv(venv, PEERS / f"{venv}.txt", BENCH / "venvs" / venv)


def ensure_venv(system: str, requirements: Path, venv: Path) -> Path:
    """The venv's python, (re)created from `requirements` when missing or when that file changed."""
    python, stamp = venv / "bin" / "python", venv / ".installed"
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text().split()[:1] == [digest]:
        return python
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    log = venv.parent / f"{system}.install.log"
    print(f"installing {system} into {venv} (log: {log})", file=sys.stderr, flush=True)
    start = time.perf_counter()
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(python), "-m", "pip", "install", PIP],
        [str(python), "-m", "pip", "install", "-r", str(requirements)],
    ]
    with log.open("w") as sink:
        for step in steps:
            sink.write(f"$ {' '.join(step)}\n")
            sink.flush()
            if subprocess.run(step, stdout=sink, stderr=subprocess.STDOUT).returncode:
                raise InstallError(f"`{' '.join(step[1:])}` failed: {error_line(log.read_text())}")
    freeze = subprocess.run([str(python), "-m", "pip", "freeze"], capture_output=True, text=True, check=True)
    (venv / "freeze.txt").write_text(freeze.stdout)
    seconds = time.perf_counter() - start
    stamp.write_text(f"{digest} installed in {seconds:.0f} s\n")
    print(f"installed {system} in {seconds:.0f} s", file=sys.stderr, flush=True)
    return python


def error_line(text: str) -> str:
    """The line of a log that best says what went wrong: the last exception or ERROR line, else the last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    pattern = re.compile(r"^(ERROR\b|[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b)")
    found = [line for line in lines if pattern.match(line)]
    return (found or lines or ["no output"])[-1][:300]


def run_env(workdir: Path, threads: int) -> dict[str, str]:
    """The harness's environment with home, caches and temporary files inside the run's scratch folder."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    for variable, name in (
        ("HOME", "home"),
        ("XDG_CACHE_HOME", "cache"),
        ("MPLCONFIGDIR", "matplotlib"),
        ("TMPDIR", "tmp"),
    ):
        (workdir / name).mkdir(parents=True, exist_ok=True)
        env[variable] = str(workdir / name)
    env.update(
        {
            "OMP_NUM_THREADS": str(threads),
            "PYTHONHASHSEED": "0",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def execute(command: list[str], env: dict[str, str], cwd: Path, log: Path, timeout_s: float) -> Outcome:
    """Runs `command` in its own session, through WRAPPER, and measures its wall time and peak memory.

    Peak memory is the larger of the summed RSS of the command's process tree (polled) and the process's own
    ru_maxrss (reported by the wrapper). At the timeout the whole session is killed; descendants left behind
    after the process exits (an H2O JVM, say) are killed too.
    """
    report = log.with_name(log.name + ".rusage.json")
    start = time.perf_counter()
    with log.open("wb") as sink:
        wrapper = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", WRAPPER, str(report), *command],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    root, seen, peak, timed_out = psutil.Process(wrapper.pid), {}, 0, False
    try:
        while True:
            try:
                wrapper.wait(timeout=POLL_S)
                break
            except subprocess.TimeoutExpired:
                peak = max(peak, descendants_rss(root, seen))
            if time.perf_counter() - start > timeout_s:
                timed_out = True
                break
    finally:
        if wrapper.poll() is None:  # not reaped yet, so its process group is still ours
            os.killpg(wrapper.pid, signal.SIGKILL)
            wrapper.wait()
        for member in seen.values():
            _kill(member)
    wall = time.perf_counter() - start
    measured = json.loads(report.read_text()) if report.exists() else {}
    peak_mb = max(peak, measured.get("maxrss_kb", 0) * 1024) / 2**20
    if timed_out:
        return Outcome(None, wall, peak_mb)
    return Outcome(
        measured.get("returncode", wrapper.returncode), measured.get("wall_s", wall), peak_mb, measured.get("cpu_s")
    )


def _cpu_share(part: float | None, whole: float | None) -> str:
    """``part`` as a percentage of ``whole``; – where either is unknown (a record from before it was measured)."""
    if part is None or whole is None or not (math.isfinite(part) and math.isfinite(whole)) or whole <= 0:
        return "–"
    return f"{100 * part / whole:.1f}%"


def descendants_rss(root: psutil.Process, seen: dict[int, psutil.Process]) -> int:
    """Summed RSS (bytes) of the descendants of `root`, each memory counted once; records each one in `seen`."""
    try:
        members = root.children(recursive=True)
    except psutil.Error:
        return 0
    usage: dict[int, tuple[int, tuple[int, int]]] = {}  # pid: (parent pid, (rss, vms))
    for member in members:
        seen.setdefault(member.pid, member)
        with contextlib.suppress(psutil.Error):  # it ended between listing and reading
            memory = member.memory_info()
            usage[member.pid] = (member.ppid(), (memory.rss, memory.vms))
    return sum(rss for _, (rss, _) in own_memories(usage).values())


def own_memories(usage: dict[int, tuple[int, tuple[int, int]]]) -> dict[int, tuple[int, tuple[int, int]]]:
    """The processes of ``usage`` (pid: (parent pid, (rss, vms))) less those whose address space is their
    parent's to the byte (same vms): a child between (v)fork and exec, which shares its parent's pages or
    holds copy-on-write copies of them. Counted twice, it doubled a run's peak when a poll caught a `git`
    call being spawned (947 MB in one run of 36; 513-530 MB in the same run repeated)."""
    return {pid: used for pid, used in usage.items() if used[0] not in usage or usage[used[0]][1][1] != used[1][1]}


def _kill(member: psutil.Process) -> None:
    try:
        if member.is_running():  # also checks the start time, so a reused pid is left alone
            member.kill()
    except psutil.Error:
        pass


# ---------------------------------------------------------------- one run


def prepare(frame: pd.DataFrame, dataset: Dataset, seed: int, folder: Path) -> Instance:
    """Splits the dataset for `seed` and writes the files every system gets (the test file without the target)."""
    train, test = split(frame, dataset, seed)
    folder.mkdir(parents=True, exist_ok=True)
    train_path, test_path = folder / "train.parquet", folder / "test.parquet"
    train.to_parquet(train_path, index=False)
    test.drop(columns=[dataset.target]).to_parquet(test_path, index=False)
    y_train, y_test = train[dataset.target], test[dataset.target]
    positive = positive_class(frame[dataset.target], dataset.positive_class) if dataset.task == "binary" else None
    classes = class_labels(y_train, y_test) if dataset.task != "regression" else ()
    return Instance(
        dataset, seed, train_path, test_path, y_test, baseline_score(dataset.task, y_train, y_test), positive, classes
    )


def record(system: str, instance: Instance, budget_s: float, status: str, fields: dict | None = None) -> dict:
    """One result: the keys every record has, then the run's figures and extras (which cannot rename the run)."""
    task = instance.dataset.task
    base = {
        "system": system,
        "dataset": instance.dataset.name,
        "task": task,
        "metric": METRICS[task],
        "value": None,
        "wall_s": None,
        "peak_mb": None,
        "status": status,
        "seed": instance.seed,
        "budget_s": budget_s,
        "fit_s": None,
        "baseline": instance.baseline,
    }
    for key, value in (fields or {}).items():
        if key not in ("system", "dataset", "task", "metric", "status", "seed", "budget_s", "baseline"):
            base[key] = value
    return base


def run_one(system: str, python: Path, instance: Instance, args: argparse.Namespace, scratch: Path) -> dict:
    """Runs one system on one split in a fresh process and scores what it wrote."""
    workdir = scratch / "runs" / f"{instance.dataset.name}-seed{instance.seed}-{system}"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    predictions, summary, log = workdir / "predictions.csv", workdir / "summary.json", workdir / "run.log"
    command = [
        str(python),
        str(RUNNERS / f"{system}.py"),
        "--train",
        str(instance.train_path),
        "--test",
        str(instance.test_path),
        "--target",
        instance.dataset.target,
        "--task",
        instance.dataset.task,
        "--budget",
        f"{args.budget:g}",
        "--seed",
        str(instance.seed),
        "--threads",
        str(args.cores),
        "--predictions",
        str(predictions),
        "--summary",
        str(summary),
        "--workdir",
        str(workdir / "work"),
    ]
    if instance.positive_class is not None:
        command += ["--positive-class", instance.positive_class]
    timeout = args.timeout if args.timeout is not None else args.budget * 3 + 120
    outcome = execute(command, run_env(workdir, args.cores), workdir, log, timeout)
    measured = {"wall_s": round(outcome.wall_s, 2), "peak_mb": round(outcome.peak_mb, 1)}
    if args.busy:
        measured["busy"] = args.busy
    if outcome.cpu_s is not None:
        measured["cpu_s"] = round(outcome.cpu_s, 2)
    if outcome.returncode is None:
        result = record(system, instance, args.budget, "timeout", {**measured, "error": f"killed after {timeout:g} s"})
    elif outcome.returncode != 0:
        message = error_line(log.read_text(errors="replace"))
        result = record(
            system,
            instance,
            args.budget,
            f"failed: {message}",
            {**measured, "error": _tail(log), "workdir": str(workdir)},
        )
    else:
        try:
            extras = json.loads(summary.read_text())
            if not isinstance(extras, dict):
                raise ValueError(f"{summary.name} holds {type(extras).__name__}, not an object")
            value = score_predictions(instance, pd.read_csv(predictions))
            result = record(system, instance, args.budget, "ok", {**extras, "value": value, **measured})
        except (OSError, ValueError) as error:
            result = record(system, instance, args.budget, f"failed: {error}", {**measured, "workdir": str(workdir)})
    if result["status"] == "ok" and not args.keep_scratch:
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def _load(frame: pd.DataFrame) -> str:
    """How loaded the cores were (``--busy``), as the wall table's heading says it."""
    busy = sorted(frame["busy"].fillna(0).astype(int).unique()) if "busy" in frame else [0]
    if busy == [0]:
        return ""
    return f"; {'/'.join(map(str, busy))} busy process{'es' if busy != [1] else ''} on the same cores"


def _tail(log: Path, lines: int = 25) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


# ---------------------------------------------------------------- report


def render(records: list[dict], systems: list[str], budget_s: float) -> str:
    """The Markdown report: metric and rank per dataset and system, summary rows, then wall time vs budget."""
    if not records:
        return "no runs\n"
    scores = compare(records)
    frame = pd.DataFrame(records)
    seeds = sorted(frame["seed"].unique())
    lines = [
        f"AutoML benchmark: budget {budget_s:g} s, seeds {', '.join(map(str, seeds))}; "
        "each cell is the test metric (mean over seeds) and its rank",
        "",
        "| dataset | task | metric | " + " | ".join(systems) + " |",
        "| --- | --- | --- |" + " --- |" * len(systems),
    ]
    for dataset, group in frame.groupby("dataset", sort=False):
        metric = group["metric"].iloc[0]
        arrow = "↑" if HIGHER_IS_BETTER[metric] else "↓"
        cells = [
            _cell(group[group["system"] == s], scores[(scores["dataset"] == dataset) & (scores["system"] == s)])
            for s in systems
        ]
        lines.append(f"| {dataset} | {group['task'].iloc[0]} | {metric} {arrow} | " + " | ".join(cells) + " |")
    by_system = scores.groupby("system")
    lines.append(
        "| **mean rank** | | | " + " | ".join(_number(by_system["rank"].mean().get(s), 2) for s in systems) + " |"
    )
    lines.append(
        "| **mean normalized score** | | | "
        + " | ".join(_number(by_system["normalized"].mean().get(s), 3) for s in systems)
        + " |"
    )
    lines += [
        "",
        "Normalized score: 0 = a constant predictor (AUC 0.5, the train mean, the train class priors), "
        "1 = the best system on that dataset and seed; a run that is not ok scores 0 and takes the worst rank.",
        "",
        f"Wall time vs budget ({budget_s:g} s{_load(frame)}):",
        "",
        "| system | runs | ok | mean wall s | max wall s | mean fit s | max fit over budget s | max peak MB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for system in systems:
        runs = frame[frame["system"] == system]
        wall, fit = runs["wall_s"].dropna(), runs["fit_s"].dropna()
        lines.append(
            f"| {system} | {len(runs)} | {int((runs['status'] == 'ok').sum())} | {_number(wall.mean(), 1)} | "
            f"{_number(wall.max(), 1)} | {_number(fit.mean(), 1)} | {_number(fit.max() - budget_s, 1)} | "
            f"{_number(runs['peak_mb'].dropna().max(), 0)} |"
        )
    if "tracking_s" in frame and frame["tracking_s"].notna().any():
        tracked = frame[frame["tracking_s"].notna()]
        lines += [
            "",
            "Tracking overhead, every trial a nested run: the seconds the run waited on MLflow calls (tune's",
            "and train's), the CPU seconds of the tracking done off its path (the run opened behind the search,",
            "the trial runs' writer) against the run's CPU, and apart from tracking, the seconds spent writing",
            "the model's files and checking that they load and predict as fitted:",
            "",
            "| system | dataset | seed | tracking s | share of wall | behind CPU s | share of CPU | model save s "
            "| trials |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| {r.system} | {r.dataset} | {r.seed} | {_number(r.tracking_s, 1)} | "
            f"{_number(100 * r.tracking_s / r.wall_s, 1)}% | {_number(getattr(r, 'tracking_behind_cpu_s', None), 1)} | "
            f"{_cpu_share(getattr(r, 'tracking_behind_cpu_s', None), getattr(r, 'cpu_s', None))} | "
            f"{_number(getattr(r, 'save_s', None), 2)} | "
            f"{_number(getattr(r, 'trials', None), 0)} |"
            for r in tracked.itertuples()
        ]
    if "train_s" in frame:
        lines += _wall_phases(frame[frame["train_s"].notna()])
    failures = frame[frame["status"] != "ok"]
    if len(failures):
        lines += ["", "Runs that are not ok:", ""]
        lines += [f"- {r.system} on {r.dataset} (seed {r.seed}): {r.status}" for r in failures.itertuples()]
    return "\n".join(lines) + "\n"


def _wall_phases(runs: pd.DataFrame) -> list[str]:
    """Where a run's wall went, for a system that reports its phases (mlgate's summary): what the budget
    bound depends on."""
    lines = [
        "",
        "Where the wall went (s): before the search (start-up, contract, ingest), the search, choosing the",
        "ensemble, the refit, writing and checking the model, the rest of tune and train (their runs, reports),",
        "and the process outside the fit (interpreter, imports, reading the data, predicting):",
        "",
        "| system | dataset | seed | before | search | finish | refit | save | rest | outside fit | wall |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in runs.itertuples():
        rest = r.tune_s - r.search_s - r.finish_s + r.train_s - r.refit_s - r.save_s
        lines.append(
            f"| {r.system} | {r.dataset} | {r.seed} | {_number(r.pre_search_s, 1)} | {_number(r.search_s, 1)} | "
            f"{_number(r.finish_s, 2)} | {_number(r.refit_s, 1)} | {_number(r.save_s, 2)} | {_number(rest, 1)} | "
            f"{_number(r.wall_s - r.fit_s, 1)} | {_number(r.wall_s, 1)} |"
        )
    return lines


def _cell(runs: pd.DataFrame, scores: pd.DataFrame) -> str:
    if runs.empty:
        return ""
    ok = runs[runs["status"] == "ok"]
    if ok.empty:
        return _escape(runs["status"].iloc[0].split(":")[0])
    mean = ok["value"].mean()
    text = _metric(mean)
    if len(ok) > 1:  # the spread in the mean's own format: 543 ±4, 0.8460 ±0.0032
        text += f" ±{_metric(ok['value'].std(), like=mean)}"
    text += f" ({scores['rank'].mean():g})"
    if len(ok) < len(runs):
        text += f", {len(runs) - len(ok)}/{len(runs)} not ok"
    return text


def _metric(value: float, like: float | None = None) -> str:
    return f"{value:,.0f}" if abs(value if like is None else like) >= 100 else f"{value:.4f}"


def _number(value: float | None, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:,.{digits}f}"


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def write_json(records: list[dict], path: Path) -> None:
    """The raw records as a JSON list (NaN as null)."""

    def clean(value):
        return None if isinstance(value, float) and not math.isfinite(value) else value

    rows = [{key: clean(value) for key, value in r.items()} for r in records]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=2, default=str) + "\n")


# ---------------------------------------------------------------- entry point


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument(
        "--suite", type=Path, default=DEFAULT_SUITE, help="folder with suite.yaml (default: %(default)s)"
    )
    parser.add_argument("--datasets", type=_names, help="comma-separated subset of the suite's datasets")
    parser.add_argument(
        "--systems",
        type=_names,
        default=list(SYSTEMS),
        help=f"comma-separated (default: all five; also {', '.join(OPTIONAL_SYSTEMS)})",
    )
    parser.add_argument(
        "--seeds", type=lambda s: [int(x) for x in _names(s)], default=[0], help="comma-separated (default: 0)"
    )
    parser.add_argument("--budget", type=float, default=60.0, help="wall budget per run in seconds (default: 60)")
    parser.add_argument("--cores", type=int, default=2, help="cores every run is pinned to (default: 2)")
    parser.add_argument("--timeout", type=float, help="hard kill per run in seconds (default: budget * 3 + 120)")
    parser.add_argument(
        "--busy", type=int, default=0, help="CPU-bound processes kept spinning on the same cores (default: 0)"
    )
    parser.add_argument("--out", "--json", dest="out", type=Path, help="write the raw records here as JSON")
    parser.add_argument("--scratch", type=Path, default=BENCH / "scratch", help="scratch folder (default: %(default)s)")
    parser.add_argument(
        "--keep-scratch", action="store_true", help="keep every run's folder (failed runs' are always kept)"
    )
    parser.add_argument("--install", action="store_true", help="only create the peers' venvs")
    parser.add_argument(
        "--compare",
        type=Path,
        help="an earlier --out file: its runs of the systems not run now, on these datasets and seeds at this "
        "budget, join the table (to rerun mlgate alone against peers already measured)",
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.systems) - set(KNOWN_SYSTEMS))
    if unknown:
        parser.error(f"unknown system(s) {', '.join(unknown)}; choose from {', '.join(KNOWN_SYSTEMS)}")
    return args


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def pin_cores(count: int) -> None:
    """Pins the harness, and so every run it starts, to the first `count` cores it may use."""
    if hasattr(os, "sched_setaffinity"):
        allowed = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, allowed[:count])


def install(systems: list[str]) -> dict[str, Path | InstallError]:
    """Each system's interpreter, or the error that kept it from installing."""
    pythons: dict[str, Path | InstallError] = {}
    for system in systems:
        try:
            pythons[system] = python_for(system)
        except (InstallError, OSError) as error:
            print(f"{system}: install failed: {error}", file=sys.stderr)
            pythons[system] = error if isinstance(error, InstallError) else InstallError(str(error))
    return pythons


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        datasets = select(load_suite(args.suite), args.datasets)
        for dataset in datasets:  # the headers only, so that a bad target fails before any run
            check_target(dataset, pd.read_csv(dataset.path, nrows=0).columns)
    except SuiteError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    earlier: list[dict] = []
    if args.compare:
        try:
            instances = {(d.name, seed) for d in datasets for seed in args.seeds}
            earlier = earlier_records(args.compare, args.budget, instances, args.systems, args.busy)
        except SuiteError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    pin_cores(args.cores)
    pythons = install(args.systems)
    if args.install:
        return 0 if all(isinstance(p, Path) for p in pythons.values()) else 1
    with load_on_cores(args.busy):
        records = run_all(datasets, args, pythons)
    joined = [s for s in KNOWN_SYSTEMS if s not in args.systems and any(r["system"] == s for r in earlier)]
    print(render(records + earlier, args.systems + joined, args.budget), end="")
    if joined:
        print(f"\n{', '.join(joined)}: earlier runs from {args.compare}, not re-run.")
    return 0


@contextlib.contextmanager
def load_on_cores(count: int) -> Iterator[None]:
    """``count`` busy-looping interpreters on the harness's cores (they inherit its pinning) while the runs go."""
    spinners = [subprocess.Popen([sys.executable, "-I", "-S", "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def run_all(datasets: list[Dataset], args: argparse.Namespace, pythons: dict[str, Path | InstallError]) -> list[dict]:
    """Every (dataset, seed, system) run, one at a time; the records so far go to --out after each."""
    scratch = args.scratch / time.strftime("%Y%m%d-%H%M%S")
    records: list[dict] = []
    total = len(datasets) * len(args.seeds) * len(args.systems)
    for dataset in datasets:
        frame = read_dataset(dataset)
        for seed in args.seeds:
            instance = prepare(frame, dataset, seed, scratch / "data" / f"{dataset.name}-seed{seed}")
            for system in args.systems:
                python = pythons[system]
                if isinstance(python, InstallError):
                    result = record(system, instance, args.budget, f"install failed: {python}")
                else:
                    result = run_one(system, python, instance, args, scratch)
                records.append(result)
                _progress(len(records), total, result)
                if args.out:
                    write_json(records, args.out)
    if not args.keep_scratch:
        tidy(scratch)
    return records


def earlier_records(
    path: Path, budget_s: float, instances: set[tuple[str, int]], running: list[str], busy: int = 0
) -> list[dict]:
    """The runs of an earlier ``--out`` file to compare this run with: of the systems it does not run, on its
    (dataset, seed) pairs, at its budget and load (``--busy``). A peer's result does not depend on mlgate's code,
    so a change to mlgate can be measured by rerunning mlgate alone (a fifth of the time) against peers already
    measured."""
    try:
        loaded = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise SuiteError(f"--compare {path}: {error}") from error
    if not isinstance(loaded, list) or not all(isinstance(r, dict) and r.keys() >= RECORD_FIELDS for r in loaded):
        raise SuiteError(f"--compare {path}: not the records an --out file holds")
    kept = [
        r
        for r in loaded
        if r["system"] in KNOWN_SYSTEMS
        and r["system"] not in running
        and r["budget_s"] == budget_s
        and r.get("busy", 0) == busy
        and (r["dataset"], r["seed"]) in instances
    ]
    if not kept:
        load = f" with --busy {busy}" if busy else ""
        raise SuiteError(
            f"--compare {path}: no run of another system on these datasets and seeds at {budget_s:g} s{load}"
        )
    return kept


def tidy(scratch: Path) -> None:
    """Removes the split files, and the scratch folder itself unless a failed run's folder is kept there."""
    shutil.rmtree(scratch / "data", ignore_errors=True)
    runs = scratch / "runs"
    if runs.is_dir() and not any(runs.iterdir()):
        runs.rmdir()
    if scratch.is_dir() and not any(scratch.iterdir()):
        scratch.rmdir()


def _progress(done: int, total: int, result: dict) -> None:
    value = "" if result["value"] is None else f" {result['metric']}={result['value']:.4f}"
    wall = "" if result["wall_s"] is None else f" wall {result['wall_s']:.1f} s, peak {result['peak_mb']:.0f} MB"
    print(
        f"[{done}/{total}] {result['system']} on {result['dataset']} seed {result['seed']}: "
        f"{result['status']}{value}{wall}",
        file=sys.stderr,
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
