"""Which RUNNING runs a killed process left behind: the decision, on fake process tables, then
close_dead_runs on a real SQLite store: what a killed process left RUNNING is closed, with its nested
runs; what may still be alive is not touched. (All here import MLflow, through the tracking adapter.)"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import threading
import time

import pytest

from mlgate.adapters import tracking
from mlgate.errors import StageError

HOST = "laptop"
NOW = 1_800_000_000.0
STARTED = 1_799_990_000.0  # when process 4242 started


def _tags(host=HOST, pid="4242", started=f"{STARTED:.3f}", heartbeat=None) -> dict[str, str]:
    tags = {"mlgate.host": host, "mlgate.pid": pid, "mlgate.pid_started": started}
    if heartbeat is not None:
        tags["mlgate.heartbeat"] = f"{heartbeat:.0f}"
    return {k: v for k, v in tags.items() if v is not None}


def _state(tags, table, grace_s=900.0):
    return tracking.liveness(tags, host=HOST, now=NOW, started=table.get, grace_s=grace_s)


@pytest.mark.parametrize(
    "tags, table, state",
    [
        (_tags(), {}, "dead"),  # killed: its pid is gone
        (_tags(), {4242: STARTED}, "alive"),  # still running (another user's dvc repro)
        (_tags(), {4242: STARTED + 0.4}, "alive"),  # the start time as another reading rounds it
        (_tags(), {4242: STARTED + 3600}, "dead"),  # the pid was reused by a later process
        (_tags(), {4242: math.nan}, "alive"),  # the pid exists, its start hidden from us
        (_tags(heartbeat=NOW - 5), {}, "dead"),  # kill -9 a moment ago: the pid decides
        (_tags(started=None), {4242: STARTED + 3600}, "alive"),  # no start time recorded: a live pid may be it
        (_tags(host="gpu-box"), {}, "unknown"),  # elsewhere, no heartbeat: cannot tell
        (_tags(host="gpu-box", heartbeat=NOW - 60), {}, "alive"),
        (_tags(host="gpu-box", heartbeat=NOW - 901), {}, "dead"),  # silent past the grace period
        (_tags(host=None, pid=None, started=None, heartbeat=NOW - 5000), {}, "dead"),  # a heartbeat-only worker
        ({}, {}, "unknown"),  # an older mlgate, or another tool
        (_tags(pid="not-a-pid"), {}, "unknown"),
        (_tags(pid="0"), {}, "unknown"),
    ],
)
def test_a_run_is_dead_only_when_its_process_provably_is(tags, table, state):
    assert _state(tags, table)[0] == state


def test_the_reason_names_the_process_and_what_proved_it_dead():
    assert _state(_tags(), {})[1] == "process 4242 on laptop is gone"
    assert "now belongs to a process started 2027-01-15T08:00:00+00:00" in _state(_tags(), {4242: NOW})[1]
    assert (
        _state(_tags(host="gpu-box", heartbeat=NOW - 1000), {})[1] == "no heartbeat from gpu-box for 1000s (grace 900s)"
    )


def test_this_process_as_recorded_is_alive_in_the_real_process_table():
    tags = tracking.owner_tags()

    assert tags["mlgate.pid"] == str(os.getpid())
    assert tracking.liveness(tags, host=tags["mlgate.host"], now=NOW, started=tracking.process_started)[0] == "alive"


def test_a_reaped_process_has_no_start_time():
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True, timeout=60
    )

    assert tracking.process_started(int(ended.stdout)) is None


def test_the_summary_says_what_was_closed_and_why():
    closed = [tracking.ClosedRun("0123456789abcdef", "tune", "process 4242 on laptop is gone", nested=3)]

    assert tracking.closed_summary(closed) == (
        "closed 1 run left RUNNING by a killed process: "
        "tune 01234567 (process 4242 on laptop is gone), with 3 nested runs"
    )


# --- on a real store ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One SQLite store for the module (creating one costs seconds); each test uses its own experiments."""
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


def test_a_stage_run_opened_behind_lets_the_block_go_on_while_it_opens(store):
    """The block runs before the run exists (``before`` waits for the block); the run then gets ``then``'s
    params, a heartbeat, and ends FINISHED; the thread's CPU is reported."""
    tracking = store
    block_started = threading.Event()
    with tracking.stage_run_behind(
        "behind",
        "tune",
        {"mlgate.stage": "tune"},
        before=lambda: block_started.wait(timeout=60) or pytest.fail("the block waited for the run"),
        then=lambda run_id: tracking.log(run_id, params={"logged": "by then"}),
    ) as opening:
        block_started.set()
        run_id = opening.id
        assert opening.opened() == run_id
    run = tracking.client().get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"logged": "by then"}
    assert {"mlgate.pid", "mlgate.heartbeat"} <= set(run.data.tags)
    assert opening.cpu_s > 0


def test_a_stage_run_that_cannot_be_opened_fails_its_block_with_the_reason(store):
    tracking = store

    def store_down() -> None:
        raise ConnectionError("store down")

    with (
        pytest.raises(StageError, match=r"MLflow tracking at sqlite:///.* failed while opening the run: .*store down"),
        tracking.stage_run_behind("unopened", "tune", {}, before=store_down) as opening,
    ):
        with pytest.raises(StageError, match="store down"):
            opening.id  # noqa: B018 - the property raises
        assert isinstance(opening.failure, ConnectionError)
    assert tracking.client().search_runs([tracking.experiment_id("unopened")]) == []


def test_a_stage_run_whose_set_up_failed_ends_failed_and_one_stopped_by_ctrl_c_killed(store):
    tracking = store

    def refuse(run_id: str) -> None:
        raise ValueError(f"cannot log to {run_id}")

    with (
        pytest.raises(StageError, match="cannot log"),
        tracking.stage_run_behind("half", "tune", {}, then=refuse) as opening,
    ):
        run_id = opening.id
    assert tracking.client().get_run(run_id).info.status == "FAILED"

    with pytest.raises(KeyboardInterrupt), tracking.stage_run_behind("half", "tune", {}) as opening:
        run_id = opening.id
        raise KeyboardInterrupt
    assert tracking.client().get_run(run_id).info.status == "KILLED"


def test_processes_opening_a_new_store_at_once_all_get_it(tmp_path):
    """Four processes open one fresh SQLite store together (`dvc repro` and `mlgate ui` on a new clone):
    MLflow migrates a new file without a lock, so without mlgate's every one but the first could fail."""
    opener = "from mlgate.adapters import tracking; print(tracking.experiment_id('shared'))"
    env = os.environ | {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    command = [sys.executable, "-c", opener]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    openers = [subprocess.Popen(command, env=env, cwd=tmp_path, **pipes) for _ in range(4)]
    results = [(p.communicate(timeout=300), p.returncode) for p in openers]
    assert [code for _, code in results] == [0, 0, 0, 0], [err[-2000:] for (_, err), _ in results]
    assert len({out.strip() for (out, _), _ in results}) == 1


def test_runs_of_trials_a_killed_worker_finished_are_written_from_the_study(store):
    """A worker killed after it told the study a trial's result and before its recorder thread wrote the run:
    the coordinator writes that run from the study, with its fold runs; a run the worker wrote, and the run of
    a trial that died with its worker (closed KILLED elsewhere), are left as they are."""
    from mlgate.adapters import optuna_study
    from mlgate.stages import tune

    tracking = store
    parent = tracking.create_run("workers", "tune", {})
    unwritten, written, died = (
        tracking.create_run("workers", f"trial-00{n}", {"mlgate.worker": "gpu-box:7"}, parent) for n in range(3)
    )
    tracking.finish_run(written)
    ended = time.time() - tune.RECORD_GRACE_S - 1

    def outcome(number: int, state: str) -> optuna_study.TrialOutcome:
        return optuna_study.TrialOutcome(number, "catboost", {"depth": 4}, 0.81, (0.8, 0.82), state, ended - 5, ended)

    shared = optuna_study.SharedStudy(
        [outcome(0, "COMPLETE"), outcome(1, "COMPLETE"), outcome(2, "FAIL")],
        {0: unwritten, 1: written, 2: died},
        [optuna_study.DeadTrial(2, died, "gpu-box:7", retried_as=3)],
    )
    with tracking.trial_recorder("workers", parent, {}, separate_process=False) as recorder:
        assert tune._write_unrecorded(shared, parent, "roc_auc", True, recorder) == [0]
    assert (recorder.written, recorder.errors) == (1, [])

    run = tracking.client().get_run(unwritten)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["cv/roc_auc"] == 0.81
    assert run.data.params == {"family": "catboost", "depth": "4"}
    assert run.data.tags["mlgate.worker"] == "gpu-box:7"
    assert "its worker ended before writing the run" in run.data.tags["mlgate.recorded_by"]
    folds = tracking.child_runs(unwritten)
    assert sorted(r["metrics"]["cv/roc_auc"] for r in folds) == [0.8, 0.82]
    assert _status(tracking, written) == ("FINISHED", None)
    assert _status(tracking, died) == ("RUNNING", None)
