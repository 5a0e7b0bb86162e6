"""tune interrupted (Ctrl-C) and rerun: the stored study resumes, and each trial is one MLflow run."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.conftest import clone_project, copy_project

pytestmark = pytest.mark.slow


def _tune_runs(experiment: str) -> list:
    from mlgate import tracking

    experiment_id = tracking.experiment_id(experiment)
    runs = tracking.client().search_runs([experiment_id], filter_string="attributes.run_name = 'tune'", order_by=["attributes.start_time ASC"])
    return list(runs)


def _trial_numbers(parent_run_id: str) -> list[int]:
    from mlgate import tracking

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
    assert first.info.status == "KILLED" and second.info.run_id == result["tune_run_id"]
    assert _trial_numbers(first.info.run_id) == [0, 1]
    assert _trial_numbers(second.info.run_id) == list(range(3, n_trials + 1))  # the interrupted trial 2 reruns as 3
    assert second.data.metrics["trials_reused"] == 2
    assert second.data.tags["mlgate.resumed_from"] == first.info.run_id
    board = pd.read_csv(root / params["paths"]["trials"])
    assert len(board) == n_trials and board["reused"].sum() == 2
    assert json.loads((root / params["paths"]["best_params"]).read_text())["study"]["reused_trials"] == 2
    assert (root / params["paths"]["study"]).is_file()


def test_trials_an_earlier_run_never_logged_are_logged_by_the_run_that_resumes(project, monkeypatch):
    from mlgate import tracking
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

    children = tracking.child_runs(result["tune_run_id"])
    numbers = sorted(int(c["tags"]["mlgate.trial"]) for c in children)
    assert numbers == sorted(set(numbers)) and {0, 1} <= set(numbers)
    assert {int(c["tags"]["mlgate.trial"]) for c in children if c["tags"].get("mlgate.reused") == "true"} == {0, 1}


def test_a_changed_search_starts_a_new_study(project, monkeypatch):
    from mlgate.stages import tune

    _, params = project
    first = tune.run(params)
    changed = {**params, "search": {**params["search"], "sampler": "random"}}

    second = tune.run(changed)

    assert second["study"]["name"] != first["study"]["name"] and second["study"]["reused_trials"] == 0
