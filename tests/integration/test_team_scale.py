"""Team scale: one study in PostgreSQL run by several `mlgate worker` processes, tracked on a real
`mlflow server` (PostgreSQL backend, proxied artifacts) that the tests start on a free loopback port."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import (
    BIN,
    TINY_BUDGET,
    clone_project,
    copy_project,
    run_cli,
    run_mlgate,
    run_stages,
    study_storage,
    with_overrides,
)

pytestmark = pytest.mark.slow

# trials of a second or two each: long enough to kill a worker in the middle of one
SEARCH = ["search.n_trials=6", "search.cv_folds=2", "search.heartbeat_s=1", "model.catboost.fixed.iterations=150"]


@pytest.fixture(scope="module")
def split_project(tmp_path_factory):
    """The project after ingest, validate and split (none of which touches MLflow)."""
    root = copy_project(tmp_path_factory.mktemp("split") / "project", SEARCH)
    assert run_stages(root, stages=("ingest", "validate", "split")).returncode == 0
    return root


@pytest.fixture
def team(split_project, tmp_path, databases, mlflow_server):
    """A clone of the split project whose study is a new PostgreSQL database and whose store is the server."""
    root = clone_project(split_project, tmp_path / "project")
    study = databases("study")
    return root, study, {"MLFLOW_TRACKING_URI": mlflow_server}


def _own_experiment() -> str:
    """An experiment of the test's own on the session's shared server: its runs are the only ones there."""
    return f"tracking.experiment=team-{uuid.uuid4().hex[:8]}"


def _params(root, study: str, *overrides: str) -> None:
    chosen = [*SEARCH, f"paths.study={study}", _own_experiment(), *overrides]
    run_cli(["mlgate", "params", *with_overrides(TINY_BUDGET, chosen)], root)


def _study_trials(study: str) -> pd.DataFrame:
    import optuna

    (name,) = [s.study_name for s in optuna.get_all_study_summaries(study_storage(study), include_best_trial=False)]
    stored = optuna.load_study(study_name=name, storage=study_storage(study))
    return stored.trials_dataframe(attrs=("number", "state", "system_attrs"))


def _runs(server: str, experiment: str) -> list:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=server)
    found = client.get_experiment_by_name(experiment)
    return list(client.search_runs([found.experiment_id], max_results=1000))


def _experiment(root) -> str:
    from mlgate import config, project

    return project.tracking(config.read_params(root / "params.yaml")).experiment


def test_three_workers_run_exactly_n_trials_each_a_child_run_of_the_one_parent(team):
    """...and their validation predictions travel with their runs: a rerun on a disk without them (another
    machine) resumes the whole study, without starting a worker, and finishes it into the same recipe."""
    root, study, env = team
    _params(root, study, "search.workers=3")
    out = run_cli(["mlgate", "tune"], root, env)

    assert "3 worker processes" in out.stdout
    trials = _study_trials(study)
    assert len(trials) == 6 and sorted(trials["number"]) == list(range(6))
    assert set(trials["state"]) <= {"COMPLETE", "PRUNED"}
    runs = _runs(env["MLFLOW_TRACKING_URI"], _experiment(root))
    (parent,) = [r for r in runs if r.info.run_name == "tune"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(int(r.data.tags.get("mlgate.trial", -1)) for r in children) == list(range(6)), out.stdout
    workers = {r.data.tags["mlgate.worker"] for r in children}
    assert 1 <= len(workers) <= 3 and all(w.startswith(socket.gethostname() + ":") for w in workers)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    recipe = (root / "reports" / "best_params.json").read_bytes()
    shutil.rmtree(root / "reports" / "trials")
    again = run_mlgate(["tune"], root, env)  # in this process: it starts no worker, or fails below
    assert again.returncode == 0, again.stdout + again.stderr
    assert "6 of them reused" in again.stdout and "have no predictions" not in again.stdout
    assert not [line for line in again.stdout.splitlines() if line.startswith("worker ")]  # none was started
    assert (root / "reports" / "best_params.json").read_bytes() == recipe
    assert json.loads(recipe)["budget"] == {
        "kind": "trials",
        "n_trials": 6,
        "workers": 3,
        "reproducible": False,
        "why": ("search.workers 3: the processes' trials end in whatever order they run"),
    }


def test_a_worker_killed_mid_trial_is_retried_and_its_run_closed_with_the_reason(team):
    root, study, env = team
    _params(root, study, "search.workers=2")
    coordinator = _start_tune(root, env)
    victim = _running_worker(study, coordinator)
    time.sleep(0.5)  # into the trial, past its first heartbeat
    os.kill(victim, signal.SIGKILL)
    output, _ = coordinator.communicate(timeout=600)

    assert coordinator.returncode == 0, output
    trials = _study_trials(study)
    dead = trials[trials["state"] == "FAIL"]
    assert len(dead) == 1, trials
    retries = trials["system_attrs_failed_trial"].dropna().astype(int).tolist()
    assert retries == dead["number"].tolist()  # one copy of it was queued and ran
    assert (trials["state"] != "FAIL").sum() == 6
    runs = _runs(env["MLFLOW_TRACKING_URI"], _experiment(root))
    victims = [r for r in runs if r.data.tags.get("mlgate.worker", "").endswith(f":{victim}")]
    killed = [r for r in victims if r.info.status != "FINISHED"]  # it may have finished trials before
    assert [r.info.status for r in killed] == ["KILLED"], output
    assert "stopped sending heartbeats" in killed[0].data.tags["mlgate.closed_reason"]
    assert all("mlgate.trial" in r.data.tags for r in victims if r.info.status == "FINISHED")
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert f"its worker {socket.gethostname()}:{victim} stopped sending heartbeats" in output


def test_a_worker_stopped_with_sigterm_writes_its_finished_trials_first(team):
    """`kill`, `systemctl stop`: the worker writes the runs of the trials it finished, then exits; the trial
    it was running is retried by the other worker and its run closed."""
    root, study, env = team
    _params(root, study, "search.workers=2")
    coordinator = _start_tune(root, env)
    victim = _running_worker(study, coordinator, finished=1)
    os.kill(victim, signal.SIGTERM)
    output, _ = coordinator.communicate(timeout=600)

    assert coordinator.returncode == 0, output
    assert "stopped: its finished trials are recorded" in output, output
    assert _recorded(study) == 6
    runs = _runs(env["MLFLOW_TRACKING_URI"], _experiment(root))
    victims = [r for r in runs if r.data.tags.get("mlgate.worker", "").endswith(f":{victim}")]
    finished = [r for r in victims if r.info.status == "FINISHED"]
    assert finished and all("mlgate.trial" in r.data.tags for r in finished), output
    assert not [r for r in runs if r.info.status == "RUNNING"]
    interrupted = [r for r in victims if r.info.status != "FINISHED"]  # none if the stop came as it recorded one
    assert all(r.info.status == "KILLED" for r in interrupted), output
    assert all("was stopped mid-trial" in r.data.tags["mlgate.closed_reason"] for r in interrupted)


def _start_tune(root, env: dict[str, str]) -> subprocess.Popen:
    full_env = {**{k: v for k, v in os.environ.items() if k != "MLFLOW_REGISTRY_URI"}, **env}
    full_env["PATH"] = f"{BIN}{os.pathsep}{os.environ['PATH']}"
    return subprocess.Popen(
        ["mlgate", "tune"], cwd=root, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _recorded(study: str) -> int:
    """Trials that count toward n_trials: finished with mlgate's record (not died)."""
    import optuna

    (name,) = [s.study_name for s in optuna.get_all_study_summaries(study_storage(study), include_best_trial=False)]
    trials = optuna.load_study(study_name=name, storage=study_storage(study)).get_trials()
    return sum(t.state.is_finished() and "mlgate" in t.user_attrs for t in trials)


def _running_worker(
    study: str, coordinator: subprocess.Popen, finished: int = 0, pid: int | None = None, family: str | None = None
) -> int:
    """The pid of a worker (``pid``, or any) that is running a trial (of ``family``, or any) and has
    ``finished`` trials or more, once one is."""
    import optuna

    give_up = time.time() + 120
    while time.time() < give_up and coordinator.poll() is None:
        try:
            for summary in optuna.get_all_study_summaries(study_storage(study), include_best_trial=False):
                trials = optuna.load_study(study_name=summary.study_name, storage=study_storage(study)).get_trials()
                for trial in trials:
                    worker = trial.user_attrs.get("mlgate_worker")
                    done = sum(t.state.is_finished() and t.user_attrs.get("mlgate_worker") == worker for t in trials)
                    mine = worker and (pid is None or worker.endswith(f":{pid}"))
                    mine = mine and family in (None, trial.params.get("family"))
                    if trial.state.name == "RUNNING" and mine and done >= finished:
                        return int(worker.rsplit(":", 1)[1])
        except Exception:  # noqa: BLE001 - the coordinator may be creating the study's tables right now
            pass
        time.sleep(0.2)
    raise AssertionError(f"no worker started a trial:\n{coordinator.communicate()[0]}")


def test_one_worker_on_postgresql_gives_the_study_sqlite_gives(team, tmp_path):
    """Both searches run in this process (one worker: no process of its own is started)."""
    root, study, env = team
    _params(root, study)
    assert run_mlgate(["tune"], root, env).returncode == 0
    on_postgres = pd.read_csv(root / "reports" / "trials.csv")
    _params(root, "reports/optuna.db")
    assert run_mlgate(["tune"], root, env).returncode == 0
    on_sqlite = pd.read_csv(root / "reports" / "trials.csv")

    columns = ["trial", "family", "state", "cv_score", "params"]
    pd.testing.assert_frame_equal(
        on_postgres[columns].sort_values("trial", ignore_index=True),
        on_sqlite[columns].sort_values("trial", ignore_index=True),
    )


def test_several_workers_on_a_sqlite_study_are_refused_with_what_to_use(split_project, tmp_path):
    root = clone_project(split_project, tmp_path / "project")
    run_cli(["mlgate", "params", *with_overrides(TINY_BUDGET, [*SEARCH, "search.workers=2"])], root)
    out = run_cli(["mlgate", "tune"], root, {"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}, check=False)
    assert out.returncode == 1
    assert "search.workers 2 needs a study database" in out.stderr and "postgresql+psycopg://" in out.stderr


def test_a_worker_for_a_study_that_does_not_exist_says_what_to_start(split_project, tmp_path, databases):
    root = clone_project(split_project, tmp_path / "project")
    out = run_cli(
        ["mlgate", "worker", "--study", "nosuch-123", "--wait", "1"],
        root,
        {"MLGATE_STUDY": databases("empty")},
        check=False,
    )
    assert out.returncode == 1
    assert "no study nosuch-123" in out.stderr and "start the tune stage first" in out.stderr


def test_a_postgresql_restart_mid_study_is_waited_out(split_project, tmp_path, mlflow_server, private_postgres):
    """The study's PostgreSQL server stopped (every connection cut, none accepted) for 5 s and started
    again, in the middle of a study run by two workers: they and the coordinator wait, then go on."""
    root = clone_project(split_project, tmp_path / "project")
    database = private_postgres()
    study = database.url
    env = {"MLFLOW_TRACKING_URI": mlflow_server}
    _params(root, study, "search.workers=2")
    coordinator = _start_tune(root, env)
    _running_worker(study, coordinator)
    database.stop()
    time.sleep(5)
    database.start()
    output, _ = coordinator.communicate(timeout=600)

    assert coordinator.returncode == 0, output
    assert "study database unreachable" in output and "study database back after" in output
    assert _recorded(study) == 6
    runs = _runs(env["MLFLOW_TRACKING_URI"], _experiment(root))
    left = [(r.info.run_name, r.data.tags) for r in runs if r.info.status == "RUNNING"]
    assert not left, f"{left}\n{output}\n{_study_trials(study).to_string()}"


def test_a_worker_cut_off_the_network_mid_trial_is_retried_and_says_so(
    split_project, tmp_path, private_postgres, network_namespace
):
    """A third worker joins from a network namespace of the test's own (another machine, as the study's
    database and the tracking server see it); its link is cut mid-trial. Its trial goes stale and is retried
    by the others, the study completes, and the cut-off worker says the database stopped answering."""
    import optuna

    from tests.integration.conftest import running_mlflow_server

    root = clone_project(split_project, tmp_path / "project")
    database = private_postgres(also_listen=network_namespace.host_ip)
    study = database.database("study")
    with running_mlflow_server(database.database("tracking"), tmp_path, host="0.0.0.0") as server:
        env = {"MLFLOW_TRACKING_URI": server}
        # CatBoost trials alone (a second or more each, so the cut falls inside one); the far worker starts
        # with the coordinator and waits for the study params.yaml names, so it joins as the local workers do
        catboost_only = ["model=[catboost]", "search.workers=2"]
        overrides = with_overrides(TINY_BUDGET, [*SEARCH, f"paths.study={study}", _own_experiment(), *catboost_only])
        run_cli(["mlgate", "params", *[o for o in overrides if not o.startswith("model.random_forest.")]], root)
        coordinator = _start_tune(root, env)
        far = {
            "MLGATE_STUDY": study.replace("127.0.0.1", network_namespace.host_ip),
            "MLFLOW_TRACKING_URI": server.replace("127.0.0.1", network_namespace.host_ip),
        }
        with (tmp_path / "far.log").open("w") as log:
            far_worker = subprocess.Popen(
                network_namespace.command([str(BIN / "mlgate"), "worker", "--threads", "1"]),
                cwd=root,
                env={**os.environ, **far, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        name = _study_name(study, coordinator)
        try:
            assert _running_worker(study, coordinator, pid=far_worker.pid, family="catboost") == far_worker.pid
            network_namespace.cut()
            output, _ = coordinator.communicate(timeout=600)
            said = _wait_for_line(tmp_path / "far.log", "study database unreachable", far_worker, 180)
        finally:
            far_worker.kill()
            far_worker.wait()

        assert coordinator.returncode == 0, output
        trials = optuna.load_study(study_name=name, storage=study_storage(study)).get_trials()
        (stale,) = [t for t in trials if t.state.name == "FAIL"]
        assert stale.user_attrs["mlgate_worker"].endswith(f":{far_worker.pid}")
        assert [t.system_attrs.get("failed_trial") for t in trials].count(stale.number) == 1  # retried once
        assert _recorded(study) == 6
        assert f"its worker {socket.gethostname()}:{far_worker.pid} stopped sending heartbeats" in output
        assert "study database unreachable" in said, said


def _study_name(study: str, coordinator: subprocess.Popen) -> str:
    import optuna

    give_up = time.time() + 120
    while time.time() < give_up and coordinator.poll() is None:
        try:
            (summary,) = optuna.get_all_study_summaries(study_storage(study), include_best_trial=False)
            return summary.study_name
        except Exception:  # noqa: BLE001 - no study yet, or its tables being created
            time.sleep(0.2)
    raise AssertionError(f"no study appeared:\n{coordinator.communicate()[0]}")


def _wait_for_line(log: Path, text: str, process: subprocess.Popen, timeout_s: float) -> str:
    give_up = time.time() + timeout_s
    while text not in log.read_text() and process.poll() is None and time.time() < give_up:
        time.sleep(0.5)
    return log.read_text()


def test_a_trial_whose_worker_died_before_its_first_heartbeat_is_failed_and_retried(databases):
    """Optuna sees a dead trial by its stale heartbeat; one that never beat (its worker killed, or cut from
    the database, between the claim and the first beat) would stay RUNNING and the coordinator wait for
    it. It is failed a grace period after the watcher first saw it, by the watcher's clock: the trial's
    start, stamped by the claimer, says nothing here (a restart of the database in that instant once
    held a study for ten minutes)."""
    import warnings

    import optuna

    from mlgate.adapters import optuna_study

    store = optuna_study._shared_storage(databases("study"), 1.0)
    study = optuna.create_study(storage=store, study_name="never-beat")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        orphan, alive = study.ask(), study.ask()
    time.sleep(store.grace_period + 0.5)  # claimed long ago, by the claimer's clock
    store.record_heartbeat(alive._trial_id)
    optuna_study._fail_stale_trials(study)
    assert [t.state.name for t in study.get_trials()] == ["RUNNING", "RUNNING"]  # a claim may beat late

    time.sleep(store.grace_period + 0.5)
    store.record_heartbeat(alive._trial_id)
    optuna_study._fail_stale_trials(study)
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "RUNNING", "WAITING"]
    assert trials[2].system_attrs["failed_trial"] == orphan.number


def test_the_server_ends_a_cut_off_workers_session_within_three_heartbeats(databases):
    """A worker cut off mid-transaction holds its trial's row locks until the server ends its session; the
    study's connections ask the server for the same keepalives as the client's, not its two-hour default."""
    from sqlalchemy import text

    from mlgate.adapters import optuna_study

    store = optuna_study._shared_storage(databases("study"), 4.0)
    with store.engine.connect() as connection:
        shown = {
            name: connection.execute(text(f"SHOW {name}")).scalar()
            for name in ("tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count", "tcp_user_timeout")
        }
    assert shown == {
        "tcp_keepalives_idle": "4",
        "tcp_keepalives_interval": "2",
        "tcp_keepalives_count": "3",
        "tcp_user_timeout": "12000",  # ms
    }


def test_a_trial_declared_dead_as_its_worker_starts_it_has_its_run_closed_and_the_worker_goes_on(databases):
    """The study database away past the heartbeats' grace just as a worker claims a trial: the watcher
    declares it dead (its retry queued) before the worker has named the trial's run on it. Nobody else
    knows that run, so the worker closes it, and goes on with the next trial instead of dying (a worker
    once died here and left its run RUNNING for ever)."""
    import optuna

    from mlgate.adapters import optuna_study

    storage = databases("study")
    settings = optuna_study.SearchSettings(
        sampler="random", pruner="none", n_trials=2, timeout_s=60, cv_folds=2, n_jobs=1, heartbeat_s=1.0
    )
    spaces = optuna_study.parse_spaces({"linear": {"space": {"alpha": {"type": "float", "low": 0.1, "high": 10.0}}}})
    study = optuna.create_study(storage=optuna_study._shared_storage(storage, 1.0), study_name="dead-at-start")
    study.set_user_attr(optuna_study._JOB, {"parent_run": "parent"})
    started, dropped, told = [], [], []

    def on_start(number: int) -> str:
        started.append(number)
        if number == 0:  # what the watcher does to a claim that stopped beating, while this worker starts it
            (claimed,) = [t for t in study.get_trials() if t.number == 0]
            study._storage.set_trial_state_values(claimed._trial_id, optuna.trial.TrialState.FAIL)
        return f"run-{number}"

    outcomes = optuna_study.work(
        spaces,
        lambda family, params, report: (0.5, (0.5, 0.5)),
        settings,
        maximize=True,
        seed=0,
        storage=storage,
        study_name="dead-at-start",
        worker="host:1",
        on_start=on_start,
        on_trial=told.append,
        on_dropped=lambda number, why: dropped.append((number, why)),
    )

    assert dropped == [(0, "trial 0 was declared dead as host:1 started it; retried")]
    assert [o.number for o in outcomes] == [o.number for o in told] == [1, 2] and started == [0, 1, 2]
    states = [t.state.name for t in study.get_trials()]
    assert states == ["FAIL", "COMPLETE", "COMPLETE"]
