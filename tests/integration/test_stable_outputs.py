"""Stage outputs that a later stage depends on have the same bytes when the stage runs again on the
same inputs, on a quiet or a busy machine, so an unchanged upstream never reruns downstream work."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.helpers import copy_project, run_cli, run_stages, tracking_env

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def split_project(tmp_path_factory):
    """The project after ingest, validate and split, searching 6 trials in batches of 2."""
    from mlgate import config
    from mlgate.stages import ingest, split, validate

    root = copy_project(tmp_path_factory.mktemp("stable") / "project", ["search.n_jobs=2", "search.n_trials=6"])
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        params = config.read_params()
        for stage in (ingest, validate, split):
            stage.run(params)
    return root


def _fresh(split_project, dest):
    """A copy with no MLflow store and no stored study: a fresh clone's first `mlgate tune`."""
    return shutil.copytree(split_project, dest, ignore=shutil.ignore_patterns("mlflow.db", "mlruns", "optuna.db"))


def test_tune_train_and_evaluate_write_the_same_bytes_on_a_busy_machine(split_project, tmp_path):
    """Two fresh clones, one beside a CPU burner (on top of the suite's own workers): the same recipe, model,
    train record and test metrics, byte for byte."""
    quiet = _fresh(split_project, tmp_path / "quiet")
    busy = _fresh(split_project, tmp_path / "busy")
    run_cli(["mlgate", "tune"], quiet, env=tracking_env(quiet))
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        run_cli(["mlgate", "tune"], busy, env=tracking_env(busy))
    finally:
        burner.kill()
        burner.wait(timeout=30)

    written = [(root / "reports" / "best_params.json").read_bytes() for root in (quiet, busy)]
    assert written[0] == written[1]
    assert json.loads(written[0])["budget"] == {"kind": "trials", "n_trials": 6, "batch": 2, "reproducible": True}

    for root in (quiet, busy):  # the search above ran in processes of its own; these need not
        assert run_stages(root, stages=("train", "evaluate")).returncode == 0
    metrics = [(root / "metrics" / "test.json").read_bytes() for root in (quiet, busy)]
    assert metrics[0] == metrics[1]
    from mlgate.adapters import tracking

    trained = [(root / "models" / "train.json").read_bytes() for root in (quiet, busy)]
    assert trained[0] == trained[1]
    models = [tracking.artifact_digest(root / "models" / "model") for root in (quiet, busy)]
    assert models[0] == models[1] == json.loads(trained[0])["model_sha256"]

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", tracking_env(busy)["MLFLOW_TRACKING_URI"])
        tune_run_id = json.loads((busy / "models" / "train_run.json").read_text())["tune_run_id"]
        tune_run = tracking.client().get_run(tune_run_id)
    assert tune_run.info.run_name == "tune" and tune_run.data.tags["mlgate.reproducible"] == "true"


def test_drift_json_has_the_same_bytes_whatever_the_process_string_hashing(split_project):
    written = []
    for hash_seed in ("1", "2"):  # what two fresh processes may draw; Evidently's category sums follow it
        run_cli(["mlgate", "drift"], split_project, env=tracking_env(split_project) | {"PYTHONHASHSEED": hash_seed})
        written.append((split_project / "reports" / "drift.json").read_bytes())

    assert written[0] == written[1]
