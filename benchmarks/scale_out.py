"""Scale-out of the distributed search: completed trials per minute of one study run by 1 and 2 worker processes,
one thread each, tracked on a real `mlflow server` (PostgreSQL backend, proxied artifacts), and what would
saturate first with more machines (study-database connections per worker, the server's CPU per trial).

Starts `mlflow server` on a new PostgreSQL database (dropped at the end) at a free loopback port, copies the
project into a temporary folder, runs ingest, validate and split once, then per case a new study database,
params composed with `mlgate params` (search.workers, a fixed-cost CatBoost space) and one timed `mlgate tune`.
Trials per minute count the study's COMPLETE trials over its first trial start to its last trial end (the
workers' start-up and the finishing step are left out). Goal: 2 workers >= 1.8x one.

    .venv/bin/python benchmarks/scale_out.py [--trials 16] [--folds 3] [--repeats 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import psutil
import psycopg
from serving import Server, free_port
from tiny_model import BIN, REPO, copy_project, environment, run_benchmark

GOAL_RATIO = 1.8
POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432"  # the machine's server, as the tests use it
PROJECTION_MACHINES = 10

# `mlgate tune` on as many cores as the case has workers (its processes inherit the affinity): the coordinator
# gives each local worker usable_cores() // workers threads and, with search.workers 1, runs the trials itself
# on the cores it may use (CatBoost's thread_count), so each case runs one thread per worker on any machine.
TUNE = "import os, sys; os.sched_setaffinity(0, range(int(sys.argv[1]))); from mlgate.cli import main; main(['tune'])"
# One busy one-thread process for argv[1] seconds; prints the CPU seconds it got.
SPIN = (
    "import sys, time\nend = time.time() + float(sys.argv[1])\nwhile time.time() < end: pass\n"
    "print(time.process_time())"
)


def search_overrides(trials: int, folds: int, iterations: int, workers: int, study: str, experiment: str) -> list[str]:
    """`mlgate params` overrides for one case: CatBoost only, a space whose trials all cost about the same (no
    early stopping, a fixed depth, no feature selection), no pruning, a budget of ``trials`` only, no ensemble."""
    return [
        "model=[catboost]",
        f"model.catboost.fixed.iterations={iterations}",
        "~model.catboost.fixed.early_stopping_rounds",
        "~model.catboost.space.depth",
        "+model.catboost.fixed.depth=6",
        "~model.catboost.space.selection",
        "~model.catboost.space.keep_share",
        "~model.catboost.first_trial",
        "search.pruner=none",
        f"search.n_trials={trials}",
        f"search.cv_folds={folds}",
        "search.n_jobs=1",
        "search.timeout_s=7200",
        f"search.workers={workers}",
        "finish.ensemble=none",
        f"paths.study={study}",
        f"tracking.experiment={experiment}",
    ]


class Trial(NamedTuple):
    start: float
    end: float
    completed: bool
    worker: str  # host:pid of a distributed trial's worker; "" when the tune process ran it
    evaluate_s: float  # of which the objective (the CV fits) took this long, as the trial's record says


def trials_per_minute(trials: list[Trial]) -> tuple[float, float]:
    """(completed trials per minute, search seconds) of finished ``trials``: the completed ones over the first
    start to the last end."""
    if not trials:
        return 0.0, 0.0
    span = max(t.end for t in trials) - min(t.start for t in trials)
    return (60 * sum(t.completed for t in trials) / span if span > 0 else 0.0), span


def timeline(trials: list[Trial]) -> dict[str, float]:
    """Where a worker's time went: the mean trial's seconds (Optuna's, ask to tell), the objective's part of
    them, and the mean seconds between the end of one of a worker's trials and the start of its next."""
    gaps = []
    for worker in {t.worker for t in trials}:
        own = sorted((t for t in trials if t.worker == worker), key=lambda t: t.start)
        gaps += [b.start - a.end for a, b in zip(own, own[1:], strict=False)]
    return {
        "trial_s": statistics.fmean(t.end - t.start for t in trials) if trials else 0.0,
        "evaluate_s": statistics.fmean(t.evaluate_s for t in trials) if trials else 0.0,
        "between_trials_s": statistics.fmean(gaps) if gaps else 0.0,
    }


def value_at(samples: list[tuple[float, float]], moment: float) -> float:
    """The last sampled (time, value) value at or before ``moment`` (the first sample's before any)."""
    earlier = [value for at, value in samples if at <= moment]
    return earlier[-1] if earlier else samples[0][1]


def projection(
    machines: int,
    workers_per_machine: int,
    tpm_per_worker: float,
    connections_per_worker: float,
    coordinator_connections: float,
    tracking_connections: float,
    server_cpu_s_per_trial: float,
) -> dict:
    """What ``machines`` of ``workers_per_machine`` one-thread workers would ask of the shared parts, if each
    worker kept its measured rate: PostgreSQL connections (the study's grow with the workers; the tracking
    server's pool does not, it grows with the server's processes) and the tracking server's busy cores."""
    workers = machines * workers_per_machine
    tpm = workers * tpm_per_worker
    return {
        "machines": machines,
        "workers": workers,
        "trials_per_minute": tpm,
        "study_connections": coordinator_connections + workers * connections_per_worker,
        "postgres_connections": coordinator_connections + workers * connections_per_worker + tracking_connections,
        "server_cores_busy": tpm * server_cpu_s_per_trial / 60,
    }


def cores_granted(processes: int, seconds: float) -> float:
    """Cores the machine gives ``processes`` busy one-thread processes of this session for ``seconds``: the most
    that as many workers could use right now (a loaded machine gives a session its share, however many
    processes it runs), measured just before their case, so that the ratio can be read against the machine's."""
    spinners = [
        subprocess.Popen([sys.executable, "-c", SPIN, str(seconds)], stdout=subprocess.PIPE, text=True)
        for _ in range(processes)
    ]
    return sum(float(spinner.communicate()[0]) for spinner in spinners) / seconds


class Databases:
    """New PostgreSQL databases on ``server``, dropped (FORCE: a killed process may hold a connection) on close."""

    def __init__(self, server: str):
        self.server = server.rstrip("/")
        self.made: list[str] = []
        self.admin = psycopg.connect(self._dsn("postgres"), autocommit=True)

    def _dsn(self, name: str) -> str:
        return f"{self.server.replace('postgresql+psycopg://', 'postgresql://')}/{name}"

    def make(self, prefix: str) -> tuple[str, str]:
        """(name, SQLAlchemy URL) of a new empty database."""
        name = f"mlgate_bench_{prefix}_{uuid.uuid4().hex[:8]}"
        self.admin.execute(f"CREATE DATABASE {name}")
        self.made.append(name)
        return name, f"{self.server}/{name}"

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        return self.admin.execute(sql, params).fetchall()

    def close(self) -> None:
        for name in self.made:
            with contextlib.suppress(psycopg.Error):
                self.admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        self.admin.close()


@contextlib.contextmanager
def tracking_server(
    databases: Databases, folder: Path, workers: int = 2, settings: dict[str, str] | None = None
) -> Iterator[tuple[Server, str, str]]:
    """(server, URL, database name) of the team's server as deploy/mlflow-server.sh runs it, on a new
    PostgreSQL database with proxied artifacts in ``folder``, at a free loopback port, with ``settings``
    (environment variables) over the script's; stopped on exit."""
    database, backend = databases.make("tracking")
    port = free_port()
    env = environment() | {
        "MLGATE_SERVER_DB": backend,
        "MLGATE_SERVER_ARTIFACTS": str(folder / "artifacts"),
        "MLGATE_SERVER_HOST": "127.0.0.1",
        "MLGATE_SERVER_PORT": str(port),
    }
    command = [str(REPO / "deploy" / "mlflow-server.sh"), "--workers", str(workers)]
    server = Server("mlflow-server", command, "/health", port, env | (settings or {}), folder)
    started = server.start()
    print(f"mlflow server ({workers} workers) on PostgreSQL ready at 127.0.0.1:{port} in {started:.1f} s")
    try:
        yield server, f"http://127.0.0.1:{port}", database
    finally:
        server.stop()


@dataclass
class Samples:
    """What the sampler saw, as (time, value) series."""

    cpu: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # server and each role of the tune
    connections: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # per database
    held: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # by the coordinator, the busiest worker
    backend_cpu: dict[int, list[float]] = field(default_factory=dict)  # PostgreSQL backend pid: CPU seconds seen

    def peak(self, series: list[tuple[float, float]], start: float, end: float) -> float:
        return max((value for at, value in series if start <= at <= end), default=0.0)

    def spent(self, series: list[tuple[float, float]], start: float, end: float) -> float:
        return value_at(series, end) - value_at(series, start)


def role(process: psutil.Process, tune: int) -> str:
    """A process of the tune's tree: the coordinator (`mlgate tune`), a worker (`mlgate worker`), or one of
    their trial recorders (multiprocessing's processes)."""
    if process.pid == tune:
        return "coordinator"
    return "workers" if "worker" in process.cmdline() else "recorders"


class Sampler(threading.Thread):
    """Every ``interval_s`` while a tune runs: its databases' connections (pg_stat_activity), the PostgreSQL
    connections the coordinator and each worker hold, and the CPU seconds of the tracking server's process tree,
    of each role in the tune's (a process that ended keeps its last figure) and of the databases' backends."""

    def __init__(self, databases: Databases, names: dict[str, str], tune: int, server: Server, interval_s=0.5):
        super().__init__(daemon=True)
        self.databases, self.names, self.tune, self.server = databases, names, tune, server
        self.interval_s, self.done, self.samples = interval_s, threading.Event(), Samples()
        self.port = int(databases.server.rsplit(":", 1)[1])
        self.seen: dict[int, tuple[str, float]] = {}  # pid: (role, CPU seconds last seen)

    def run(self) -> None:
        while not self.done.is_set():
            self.sample()
            self.done.wait(self.interval_s)
        self.sample()

    def sample(self) -> None:
        now = time.time()
        held = {"coordinator": 0.0, "worker": 0.0}
        with contextlib.suppress(psutil.Error):
            coordinator = psutil.Process(self.tune)
            for process in [coordinator, *coordinator.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    kind = self.seen[process.pid][0] if process.pid in self.seen else role(process, self.tune)
                    times = process.cpu_times()
                    self.seen[process.pid] = (kind, times.user + times.system)
                    if kind != "recorders":
                        key = "coordinator" if kind == "coordinator" else "worker"
                        held[key] = max(held[key], self._held(process))
        for kind in ("coordinator", "workers", "recorders"):
            spent = sum(cpu for k, cpu in self.seen.values() if k == kind)
            self.samples.cpu.setdefault(kind, []).append((now, spent))
        self.samples.cpu.setdefault("server", []).append((now, self.server.cpu_seconds()))
        for key, count in held.items():
            self.samples.held.setdefault(key, []).append((now, count))
        rows = self.databases.query(
            "select datname, pid from pg_stat_activity where datname = any(%s)", (list(self.names.values()),)
        )
        for label, name in self.names.items():
            self.samples.connections.setdefault(label, []).append((now, sum(row[0] == name for row in rows)))
        for _, pid in rows:
            with contextlib.suppress(psutil.Error):
                times = psutil.Process(pid).cpu_times()
                self.samples.backend_cpu.setdefault(pid, []).append(times.user + times.system)

    def _held(self, process: psutil.Process) -> float:
        return float(sum(c.raddr and c.raddr.port == self.port for c in process.net_connections("tcp")))


def study_trials(url: str) -> list[Trial]:
    """The finished trials of the one study in ``url``."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    (summary,) = optuna.get_all_study_summaries(url, include_best_trial=False)
    trials = optuna.load_study(study_name=summary.study_name, storage=url).get_trials(deepcopy=False)
    return [
        Trial(
            t.datetime_start.timestamp(),
            t.datetime_complete.timestamp(),
            t.state.name == "COMPLETE",
            t.user_attrs.get("mlgate_worker", ""),
            t.user_attrs["mlgate"]["end"] - t.user_attrs["mlgate"]["start"],  # optuna_study's record of the trial
        )
        for t in trials
        if t.datetime_start is not None and t.datetime_complete is not None
    ]


def tracked_runs(server_url: str, experiment: str) -> dict:
    """The experiment's child runs of its `tune` parent, and its runs still RUNNING."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=server_url)
    found = client.get_experiment_by_name(experiment)
    runs = list(client.search_runs([found.experiment_id], max_results=5000)) if found else []
    parents = [r.info.run_id for r in runs if r.info.run_name == "tune"]
    return {
        "parent_runs": len(parents),
        "child_runs": sum(r.data.tags.get("mlflow.parentRunId") in parents for r in runs),
        "runs_left_running": sum(r.info.status == "RUNNING" for r in runs),
    }


def run_case(
    workers: int, repeat: int, root: Path, databases: Databases, tracking: tuple[Server, str, str], args
) -> dict:
    """One timed `mlgate tune` with ``workers`` processes on a new study database, sampled while it runs."""
    server, url, tracking_database = tracking
    granted = cores_granted(workers, args.share_seconds)
    study_name, study = databases.make("study")
    experiment = f"scale-out-{workers}w-{repeat}"
    env = environment(url)
    overrides = search_overrides(args.trials, args.folds, args.iterations, workers, study, experiment)
    subprocess.run([str(BIN / "mlgate"), "params", *overrides], cwd=root, env=env, check=True, capture_output=True)
    names = {"study": study_name, "tracking": tracking_database}
    server_before = server.cpu_seconds()
    started = time.perf_counter()
    log = root / f"tune-{workers}w-{repeat}.log"
    with log.open("wb") as out:
        tune = subprocess.Popen(
            [sys.executable, "-c", TUNE, str(workers)], cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT
        )
        sampler = Sampler(databases, names, tune.pid, server)
        sampler.start()
        try:
            code = tune.wait(args.timeout)
        finally:
            if tune.poll() is None:
                tune.kill()
            sampler.done.set()
            sampler.join()
    tune_s = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"mlgate tune with {workers} worker(s) exited {code}:\n{log.read_text()[-4000:]}")
    finished = study_trials(study)
    tpm, search_s = trials_per_minute(finished)
    first, last = min(t.start for t in finished), max(t.end for t in finished)
    s = sampler.samples
    completed = sum(t.completed for t in finished)
    cpu = {kind: s.spent(series, first, last) for kind, series in s.cpu.items()}
    tune_cpu = cpu["coordinator"] + cpu["workers"] + cpu["recorders"]
    return {
        "workers": workers,
        "tune_s": tune_s,
        "search_s": search_s,
        "tpm": tpm,
        "trials_completed": completed,
        "trials_finished": len(finished),
        **timeline(finished),
        **tracked_runs(url, experiment),
        "tune_cpu_s_per_trial": tune_cpu / max(completed, 1),
        "cpu_s_per_trial": {kind: spent / max(completed, 1) for kind, spent in cpu.items()},
        "tune_cores_busy": tune_cpu / search_s if search_s else 0.0,
        "cores_granted": granted,
        "server_cores_busy": cpu["server"] / search_s if search_s else 0.0,
        "server_cpu_s_per_trial": cpu["server"] / max(completed, 1),
        "server_cpu_s_whole_tune": server.cpu_seconds() - server_before,
        "study_connections_max": s.peak(s.connections["study"], first, last),
        "tracking_connections_max": s.peak(s.connections["tracking"], first, last),
        "coordinator_connections_max": s.peak(s.held["coordinator"], first, last),
        "worker_connections_max": s.peak(s.held["worker"], first, last),
        "postgres_backend_cpu_s": sum(seen[-1] - seen[0] for seen in s.backend_cpu.values()),
    }


COLUMNS = [  # key, header, format
    ("workers", "workers", "d"),
    ("tune_s", "tune_s", ".1f"),
    ("search_s", "search_s", ".1f"),
    ("trials_completed", "done", "d"),
    ("tpm", "trials/min", ".2f"),
    ("trial_s", "trial_s", ".2f"),
    ("evaluate_s", "cv_s", ".2f"),
    ("between_trials_s", "between_s", ".2f"),
    ("tune_cpu_s_per_trial", "cpu_s/trial", ".2f"),
    ("tune_cores_busy", "cores", ".2f"),
    ("cores_granted", "granted", ".2f"),
    ("server_cpu_s_per_trial", "srv_cpu_s/trial", ".3f"),
    ("server_cores_busy", "srv_cores", ".2f"),
    ("child_runs", "child_runs", "d"),
    ("runs_left_running", "running", "d"),
    ("study_connections_max", "study_conn", ".0f"),
    ("worker_connections_max", "conn/worker", ".0f"),
    ("tracking_connections_max", "mlflow_conn", ".0f"),
    ("postgres_backend_cpu_s", "pg_cpu_s", ".1f"),
]


def row(case: dict) -> str:
    return "".join(f"{case[key]:>{max(len(header), 6) + 2}{fmt}}" for key, header, fmt in COLUMNS)


def benchmark(args) -> dict:
    load_before = os.getloadavg()
    scratch = Path(tempfile.mkdtemp(prefix="mlgate-scale-out-"))
    databases = Databases(args.postgres)
    try:
        with tracking_server(databases, scratch, args.server_workers) as tracking:
            url = tracking[1]
            root = copy_project(scratch / "project", environment())
            for stage in ("ingest", "validate", "split"):
                subprocess.run(
                    [str(BIN / "mlgate"), stage], cwd=root, env=environment(url), check=True, capture_output=True
                )
            max_connections = int(databases.query("show max_connections")[0][0])
            print("".join(f"{header:>{max(len(header), 6) + 2}}" for _, header, _ in COLUMNS))
            cases = []
            for repeat in range(args.repeats):
                for workers in (1, 2) if repeat % 2 == 0 else (2, 1):
                    cases.append(run_case(workers, repeat, root, databases, tracking, args))
                    print(row(cases[-1]), flush=True)
    finally:
        databases.close()
        shutil.rmtree(scratch, ignore_errors=True)
    return summary(cases, args, load_before, max_connections)


def summary(cases: list[dict], args, load_before: tuple, max_connections: int) -> dict:
    one = [c for c in cases if c["workers"] == 1]
    two = [c for c in cases if c["workers"] == 2]
    pairs = list(zip(one, two, strict=True))
    ratios = [b["tpm"] / a["tpm"] for a, b in pairs if a["tpm"]]
    granted = [b["cores_granted"] / a["cores_granted"] for a, b in pairs if a["cores_granted"]]
    cpu = [2 * a["tune_cpu_s_per_trial"] / b["tune_cpu_s_per_trial"] for a, b in pairs if b["tune_cpu_s_per_trial"]]
    median = {k: statistics.median(c[k] for c in two) for k in ("tpm", "server_cpu_s_per_trial")}
    # a worker with a core to itself runs a trial per its CPU seconds per trial at best: the load to plan for
    worker_cpu = statistics.median(c["cpu_s_per_trial"]["workers"] for c in two)
    per_worker = max(c["worker_connections_max"] for c in two)
    coordinator = max(c["coordinator_connections_max"] for c in two)
    result = {
        "one_worker_tpm": statistics.median(c["tpm"] for c in one),
        "two_workers_tpm": median["tpm"],
        "ratio": statistics.median(ratios) if ratios else 0.0,
        "goal_ratio": GOAL_RATIO,
        # 2 spinning processes' cores over 1's just before the cases: the ratio the machine allowed (2.0 idle)
        "machine_ratio": statistics.median(granted) if granted else 0.0,
        # the ratio if each case had its cores to itself: 2 x CPU s per trial (1 worker) / CPU s per trial (2)
        "cpu_ratio": statistics.median(cpu) if cpu else 0.0,
        "trials_expected": args.trials,
        "trials_completed": {"1": [c["trials_completed"] for c in one], "2": [c["trials_completed"] for c in two]},
        "runs_left_running": sum(c["runs_left_running"] for c in cases),
        "load_average": {"before": list(load_before), "after": list(os.getloadavg())},
        "cores": os.cpu_count(),
        "connections_per_worker": per_worker,
        "coordinator_connections": coordinator,
        "tracking_connections_max": max(c["tracking_connections_max"] for c in two),
        "postgres_max_connections": max_connections,
        "server_cpu_s_per_trial": median["server_cpu_s_per_trial"],
        "worker_cpu_s_per_trial": worker_cpu,
        "tune_cores_busy": {"1": [c["tune_cores_busy"] for c in one], "2": [c["tune_cores_busy"] for c in two]},
        "server_workers": args.server_workers,
        "settings": {"folds": args.folds, "iterations": args.iterations, "repeats": args.repeats},
        "cases": cases,
    }
    result["goal_met"] = result["ratio"] >= GOAL_RATIO
    result["projection"] = projection(
        PROJECTION_MACHINES,
        2,
        60 / worker_cpu,
        per_worker,
        coordinator,
        result["tracking_connections_max"],
        median["server_cpu_s_per_trial"],
    )
    return result


def report(result: dict) -> None:
    p = result["projection"]
    met = "met" if result["goal_met"] else "NOT met"
    print(
        f"ratio {result['ratio']:.2f} (2 workers {result['two_workers_tpm']:.2f} / 1 worker "
        f"{result['one_worker_tpm']:.2f} trials/min): goal >= {GOAL_RATIO}: {met}"
    )
    print(
        f"the machine allowed {result['machine_ratio']:.2f} (2 busy processes' cores / 1's, measured before each "
        f"case; 2.0 when idle); the tune's processes kept {max(result['tune_cores_busy']['2']):.2f} cores busy with 2 "
        f"workers, {max(result['tune_cores_busy']['1']):.2f} with 1; with their cores to themselves, by CPU per "
        f"trial: {result['cpu_ratio']:.2f}"
    )
    unlike = [c["workers"] for c in result["cases"] if (c["parent_runs"], c["child_runs"]) != (1, c["trials_finished"])]
    print(
        "MLflow: one tune parent run and one child run per trial in every case"
        if not unlike
        else f"FAIL: the {unlike} worker case(s) do not have one tune parent run and one child run per trial"
    )
    print(
        f"trials expected {result['trials_expected']}, completed {result['trials_completed']}; runs left RUNNING "
        f"{result['runs_left_running']}. load average before {result['load_average']['before'][0]:.2f}, after "
        f"{result['load_average']['after'][0]:.2f} on {result['cores']} cores (the machine is shared)"
    )
    print(
        f"study database: {result['coordinator_connections']:.0f} connection(s) held by the coordinator, "
        f"{result['connections_per_worker']:.0f} per worker; the server's own pool: "
        f"{result['tracking_connections_max']:.0f}; PostgreSQL max_connections {result['postgres_max_connections']}"
    )
    print(
        f"projection, {p['machines']} machines x 2 one-thread workers, each a trial per "
        f"{result['worker_cpu_s_per_trial']:.2f} CPU s (a core to itself): {p['trials_per_minute']:.0f} trials/min, "
        f"{p['study_connections']:.0f} study connections ({p['postgres_connections']:.0f} with the server's pool, on "
        f"one PostgreSQL), {p['server_cores_busy']:.2f} server cores busy"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16, help="search.n_trials of each study")
    parser.add_argument("--folds", type=int, default=3, help="search.cv_folds")
    # 300 trees: trials of 5-9 s here, as long as the default search's (reports/trials.csv of a `make run`)
    parser.add_argument("--iterations", type=int, default=300, help="CatBoost's fixed trees per fit")
    parser.add_argument("--repeats", type=int, default=1, help="1-and-2-worker pairs, order alternating")
    parser.add_argument("--share-seconds", type=float, default=5, help="how long to measure the machine's share")
    parser.add_argument("--server-workers", type=int, default=2, help="`mlflow server --workers`")
    parser.add_argument("--postgres", default=POSTGRES, help="PostgreSQL server (no database) for the new databases")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds one `mlgate tune` may take")
    run_benchmark(parser, benchmark, report)


if __name__ == "__main__":
    main()
