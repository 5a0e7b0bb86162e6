"""close_dead_runs on a real SQLite store: what a killed process left RUNNING is closed, with its
nested runs; what may still be alive is not touched."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One SQLite store for the module (creating one costs seconds); each test uses its own experiments."""
    from mlgate.adapters import tracking

    root = tmp_path_factory.mktemp("store")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        patch.chdir(root)
        yield tracking


def _dead_pid() -> int:
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True, timeout=60
    )
    return int(ended.stdout)


def _run(tracking, name: str, tags: dict[str, str], parent: str | None = None, experiment: str = "exp") -> str:
    """A RUNNING run with these tags and no other record, as the trial recorder or another tool makes them."""
    if parent is not None:
        tags = {**tags, tracking.PARENT_TAG: parent}
    return tracking.client().create_run(tracking.experiment_id(experiment), run_name=name, tags=tags).info.run_id


def _status(tracking, run_id: str) -> tuple[str, str | None]:
    run = tracking.client().get_run(run_id)
    return run.info.status, run.data.tags.get("mlgate.closed_reason")


def test_runs_of_a_dead_process_are_closed_with_their_nested_runs_and_live_ones_kept(store):
    tracking = store
    host = tracking.owner_tags()["mlgate.host"]
    dead = {"mlgate.host": host, "mlgate.pid": str(_dead_pid()), "mlgate.pid_started": "1.0"}
    parent = _run(tracking, "tune", dead)
    trial = _run(tracking, "trial-000", {}, parent)  # the trial recorder's: no owner record of its own
    fold = _run(tracking, "fold-0", {}, trial)
    logged = _run(tracking, "trial-001", {}, parent)
    tracking.finish_run(logged)
    busy = tracking.create_run("exp", "trial-002", {}, parent_run_id=parent)  # owned by this live process
    own = _run(tracking, "trial-003", dead, parent)  # dead with a record of its own: closed once, as nested
    alive = tracking.create_run("exp", "train", {})
    foreign = _run(
        tracking,
        "tune",
        {
            "mlgate.host": "gpu-box",
            "mlgate.pid": "1",
            "mlgate.pid_started": "1.0",
            "mlgate.heartbeat": f"{time.time():.0f}",
        },
    )
    silent = _run(
        tracking,
        "tune",
        {
            "mlgate.host": "gpu-box",
            "mlgate.pid": "1",
            "mlgate.pid_started": "1.0",
            "mlgate.heartbeat": f"{time.time() - 3600:.0f}",
        },
    )
    untagged = _run(tracking, "notebook", {})
    elsewhere = _run(tracking, "tune", dead, experiment="other")

    closed = tracking.close_dead_runs("exp")

    reason = f"process {dead['mlgate.pid']} on {host} is gone"
    assert sorted((c.run_id, c.nested) for c in closed) == sorted([(parent, 3), (silent, 0)])
    reasons = {c.run_id: c.reason for c in closed}
    assert reasons[parent] == reason
    # the clock ticks between tagging and closing: the silence is 3600 s give or take a second
    assert re.fullmatch(r"no heartbeat from gpu-box for 360[01]s \(grace 900s\)", reasons[silent])
    assert _status(tracking, parent) == ("KILLED", reason)
    for nested in (trial, fold, own):
        assert _status(tracking, nested) == ("KILLED", f"its parent run {parent} was closed: {reason}")
    assert _status(tracking, logged) == ("FINISHED", None)
    for untouched in (busy, alive, foreign, untagged, elsewhere):
        assert _status(tracking, untouched) == ("RUNNING", None)
    assert tracking.close_dead_runs("exp") == []  # nothing left to close
    assert tracking.close_dead_runs("no-such-experiment") == []


def test_a_stage_run_ends_killed_on_ctrl_c_and_keeps_a_heartbeat(store):
    tracking = store

    with (
        pytest.raises(KeyboardInterrupt),
        tracking.stage_run("interrupted", "train", {"mlgate.stage": "train"}) as run_id,
    ):
        raise KeyboardInterrupt

    run = tracking.client().get_run(run_id)
    assert run.info.status == "KILLED"
    assert {"mlgate.host", "mlgate.pid", "mlgate.pid_started", "mlgate.heartbeat"} <= set(run.data.tags)
