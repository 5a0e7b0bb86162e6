"""tune interrupted (Ctrl-C) and rerun: the stored study resumes, and each trial is one MLflow run."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.helpers import clone_project, copy_project

pytestmark = pytest.mark.slow


def _tune_runs(experiment: str) -> list:
    from mlgate.adapters import tracking

    experiment_id = tracking.experiment_id(experiment)
    runs = tracking.client().search_runs(
        [experiment_id], filter_string="attributes.run_name = 'tune'", order_by=["attributes.start_time ASC"]
    )
    return list(runs)


def _trial_numbers(parent_run_id: str) -> list[int]:
    from mlgate.adapters import tracking

    return sorted(int(c["tags"]["mlgate.trial"]) for c in tracking.child_runs(parent_run_id))


@pytest.fixture(scope="module")
def split_project(tmp_path_factory):
    """The project after ingest, validate and split (none of which touches MLflow)."""
    from mlgate import config
    from mlgate.stages import ingest, split, validate

    root = copy_project(tmp_path_factory.mktemp("split") / "project")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        params = config.read_params()
        for stage in (ingest, validate, split):
            stage.run(params)
    assert not (root / "mlflow.db").exists()
    return root


@pytest.fixture
def project(split_project, tmp_path, monkeypatch):
    from mlgate import config

    root = clone_project(split_project, tmp_path / "project")
    monkeypatch.chdir(root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    return root, config.read_params()


def _interrupt_at(monkeypatch, call: int) -> None:
    """Ctrl-C during the ``call``-th model evaluation of the study."""
    from mlgate.stages import tune

    original, calls = tune.CrossValidation.__call__, []

    def interrupting(self, family, params, report):
        calls.append(family)
        if len(calls) == call:
            raise KeyboardInterrupt
        return original(self, family, params, report)

    monkeypatch.setattr(tune.CrossValidation, "__call__", interrupting)


def test_an_interrupted_tune_resumes_and_logs_each_trial_once(project, monkeypatch):
    from mlgate.stages import tune

    root, params = project
    n_trials, experiment = params["search"]["n_trials"], params["tracking"]["experiment"]
    with monkeypatch.context() as patch:
        _interrupt_at(patch, 3)
        with pytest.raises(KeyboardInterrupt):
            tune.run(params)

    result = tune.run(params)

    first, second = _tune_runs(experiment)
    assert first.info.status == "KILLED" and second.info.run_id == result.run_id
    assert _trial_numbers(first.info.run_id) == [0, 1]
    assert _trial_numbers(second.info.run_id) == list(
        range(2, n_trials)
    )  # the interrupted trial 2 runs again as itself
    assert second.data.metrics["trials_reused"] == 2
    assert second.data.tags["mlgate.resumed_from"] == first.info.run_id
    board = pd.read_csv(root / params["paths"]["trials"])
    assert len(board) == n_trials and board["reused"].sum() == 2
    assert result.reused_trials == 2
    assert (root / params["paths"]["study"]).is_file()


def test_trials_an_earlier_run_never_logged_are_logged_by_the_run_that_resumes(project, monkeypatch):
    from mlgate.adapters import tracking
    from mlgate.stages import tune

    _, params = project
    experiment = params["tracking"]["experiment"]
    with monkeypatch.context() as patch:
        _interrupt_at(patch, 3)
        with pytest.raises(KeyboardInterrupt):
            tune.run(params)
    [first] = _tune_runs(experiment)
    for child in tracking.child_runs(first.info.run_id):  # as if the process died before its trial runs were written
        tracking.client().delete_run(child["run_id"])
    tracking.client().delete_run(first.info.run_id)

    result = tune.run(params)

    children = tracking.child_runs(result.run_id)
    numbers = sorted(int(c["tags"]["mlgate.trial"]) for c in children)
    assert numbers == sorted(set(numbers)) and {0, 1} <= set(numbers)
    assert {int(c["tags"]["mlgate.trial"]) for c in children if c["tags"].get("mlgate.reused") == "true"} == {0, 1}


def test_a_changed_search_starts_a_new_study(project, monkeypatch):
    from mlgate.stages import tune

    _, params = project
    first = tune.run(params)
    changed = {**params, "search": {**params["search"], "sampler": "random"}}

    second = tune.run(changed)

    assert second.recipe.study["name"] != first.recipe.study["name"] and second.reused_trials == 0


def _trial_runs_under_running_tune(experiment: str) -> tuple[str | None, int]:
    """(the RUNNING tune run, how many trial runs it has) in the store, or (None, 0)."""
    running = [r for r in _tune_runs(experiment) if r.info.status == "RUNNING"]
    return (running[0].info.run_id, len(_trial_numbers(running[0].info.run_id))) if running else (None, 0)


def test_a_tune_killed_with_sigkill_is_closed_by_the_next_run(project, tmp_path):
    """kill -9 in the middle of the study: the rerun resumes it and closes the killed run as KILLED
    (with its nested runs), saying so; the killed run's trial recorder does not outlive it."""
    import os
    import signal
    import subprocess
    import time

    import psutil
    import yaml

    from mlgate.adapters import tracking
    from tests.helpers import BIN, run_mlgate, tracking_env

    root, params = project
    experiment = params["tracking"]["experiment"]
    long_study = yaml.safe_load((root / "params.yaml").read_text())
    long_study["search"]["n_trials"] = 200  # still searching when killed
    (root / "params.yaml").write_text(yaml.safe_dump(long_study, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_REGISTRY_URI"} | tracking_env(root)
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    with (tmp_path / "killed.log").open("w") as log:
        killed = subprocess.Popen(
            [str(BIN / "mlgate"), "tune"], cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 600
        while (found := _trial_runs_under_running_tune(experiment))[1] < 2:
            assert killed.poll() is None, (tmp_path / "killed.log").read_text()
            assert time.monotonic() < deadline, "no two trials logged within 600 s"
            time.sleep(0.2)
        helpers = psutil.Process(killed.pid).children(recursive=True)  # the trial recorder, at least
        os.kill(killed.pid, signal.SIGKILL)
    finally:
        killed.kill()
        killed.wait(timeout=60)
    dead_run = found[0]
    assert tracking.client().get_run(dead_run).info.status == "RUNNING"  # what the killed process left
    _, alive = psutil.wait_procs(helpers, timeout=60)
    for orphan in alive:
        orphan.kill()
    assert alive == [], f"outlived the killed tune: {alive}"

    long_study["search"]["n_trials"] = 2  # fewer than the study holds: the rerun only resumes and finishes
    (root / "params.yaml").write_text(yaml.safe_dump(long_study, sort_keys=False))
    rerun = run_mlgate(["tune"], root)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr

    host = tracking.owner_tags()["mlgate.host"]
    reason = f"process {killed.pid} on {host} is gone"
    assert f"closed 1 run left RUNNING by a killed process: tune {dead_run[:8]} ({reason})" in rerun.stdout
    first = tracking.client().get_run(dead_run)
    assert (first.info.status, first.data.tags["mlgate.closed_reason"]) == ("KILLED", reason)
    assert first.data.tags["mlgate.pid"] == str(killed.pid)
    assert {c["status"] for c in tracking.child_runs(dead_run)} <= {"FINISHED", "KILLED", "FAILED"}
    second = _tune_runs(experiment)[-1]
    assert second.info.status == "FINISHED" and dead_run in second.data.tags["mlgate.resumed_from"]
    assert second.data.metrics["trials_reused"] >= 2


def test_a_tune_whose_run_cannot_be_opened_stops_after_its_first_trials_and_says_why(project, monkeypatch):
    """The run is opened behind the search: when that fails, the search stops at the first trials that end
    rather than running untracked to its end, and the error names the tracking URI."""
    from mlgate.errors import StageError
    from mlgate.stages import tune

    root, params = project
    n_trials, experiment = params["search"]["n_trials"], params["tracking"]["experiment"]
    original, evaluated = tune.CrossValidation.__call__, []

    def counting(self, family, params, report):
        evaluated.append(family)
        return original(self, family, params, report)

    with monkeypatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", "nosuchscheme://tracking")
        patch.setattr(tune.CrossValidation, "__call__", counting)
        with pytest.raises(StageError, match="MLflow tracking at nosuchscheme://tracking failed while opening the run"):
            tune.run(params)
    assert 1 <= len(evaluated) <= params["search"]["n_jobs"] < n_trials

    result = tune.run(params)  # tracking back: the study resumes, every trial one run under the one parent
    [only] = _tune_runs(experiment)
    assert only.info.run_id == result.run_id and only.info.status == "FINISHED"
    assert _trial_numbers(result.run_id) == list(range(n_trials))
    assert len(pd.read_csv(root / params["paths"]["trials"])) == n_trials
