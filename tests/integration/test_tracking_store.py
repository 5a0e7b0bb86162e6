"""A new SQLite store starts as a copy of an empty migrated one, and trial runs are written by a recorder
process that runs none of the caller's code: real stores, real processes."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlgate.adapters import tracking


def _open(monkeypatch, project: Path) -> list[tuple[str, str, str]]:
    """Open ``project``'s new store as a stage does; its experiments (id, name, artifact location)."""
    project.mkdir()
    monkeypatch.chdir(project)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project / 'mlflow.db'}")
    found = tracking.client().search_experiments()
    return [(e.experiment_id, e.name, e.artifact_location) for e in found]


def test_a_new_store_is_a_copy_of_the_template_and_keeps_its_own_default_experiment(tmp_path, monkeypatch):
    """The first store makes the template (no experiment in it); the next is copied from it without any
    migration, and each gets its default experiment where MLflow would put it: in its own folder."""
    import mlflow.store.db.utils

    folder = tmp_path / "venv" / "share" / "mlgate"
    monkeypatch.setattr(tracking, "_template_folders", lambda: [folder])
    first = _open(monkeypatch, tmp_path / "first")
    template = folder / f"mlflow-{mlflow.__version__}-empty-store.db"
    with sqlite3.connect(template) as db:
        assert db.execute("select count(*) from experiments").fetchone() == (0,)
        assert db.execute("select count(*) from alembic_version").fetchone() == (1,)

    def no_migration(engine):
        raise AssertionError("a store copied from the template was migrated again")

    monkeypatch.setattr(mlflow.store.db.utils, "_initialize_tables", no_migration)
    second = _open(monkeypatch, tmp_path / "second")
    assert first == [("0", "Default", str(tmp_path / "first" / "mlruns" / "0"))]
    assert second == [("0", "Default", str(tmp_path / "second" / "mlruns" / "0"))]
    assert tracking.experiment_id("churn") == "1"
    assert sorted(p.name for p in (tmp_path / "second").iterdir()) == ["mlflow.db"]  # no partial copy left


def test_the_template_goes_to_the_user_cache_when_the_venv_is_read_only_and_nowhere_if_neither(tmp_path, monkeypatch):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    cache = tmp_path / "cache" / "mlgate"
    monkeypatch.setattr(tracking, "_template_folders", lambda: [blocked / "share", cache])
    assert _open(monkeypatch, tmp_path / "cached")[0][1] == "Default"
    assert [p.suffix for p in cache.iterdir()] == [".db"]

    monkeypatch.setattr(tracking, "_template_folders", lambda: [blocked / "share", blocked / "cache"])
    assert _open(monkeypatch, tmp_path / "migrated")[0][1] == "Default"  # MLflow migrates it, as without one


RECORDING_SCRIPT = """
import os, signal, sys, time
from mlgate.adapters import tracking

print("the script's top level ran", flush=True)
parent = tracking.create_run("scripted", "tune", {})
print(parent, flush=True)
now = int(time.time() * 1000)
recorder = tracking.TrialRecorder("scripted", parent, {"mlgate.stage": "tune"})
for number in range(3):
    recorder.record(tracking.TrialRecord(
        f"trial-{number:03d}", {"depth": number}, {"cv/rmse": 1.0 + number}, {}, {}, "FINISHED", now, now + 5
    ))
if sys.argv[1] == "kill":
    time.sleep(0.5)  # the records reach the pipe; the writer may still be importing MLflow
    os.kill(os.getpid(), signal.SIGKILL)
if sys.argv[1] == "ctrl-c":  # what Ctrl-C in the terminal sends the writer too
    time.sleep(0.5)
    os.kill(recorder._process.pid, signal.SIGINT)
recorder.close()
print(recorder.written, recorder.errors, flush=True)
"""


@pytest.mark.parametrize("ending", ["close", "kill", "ctrl-c"])
def test_a_script_without_a_main_guard_gets_every_trial_run_written_once(tmp_path, ending):
    """The recorder process is a fresh interpreter: the caller's unguarded script runs once (a
    multiprocessing child re-ran it, and with it a whole AutoML fit). Killed with kill -9 before it closed
    the recorder, the trials it had sent are written all the same; the writer outlives a Ctrl-C and
    writes them all."""
    script = tmp_path / "fit.py"  # a user's script: no `if __name__ == "__main__":`
    script.write_text(RECORDING_SCRIPT)
    env = os.environ | {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    ran = subprocess.run(
        [sys.executable, str(script), ending], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    lines = ran.stdout.splitlines()
    assert lines.count("the script's top level ran") == 1, ran.stdout + ran.stderr
    parent = lines[1]
    if ending != "kill":
        assert (ran.returncode, lines[2]) == (0, "3 []"), ran.stderr
    else:
        assert ran.returncode == -9
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", env["MLFLOW_TRACKING_URI"])
        deadline = time.monotonic() + 120  # a killed parent's writer finishes on its own
        while len(written := tracking.child_runs(parent)) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
    assert sorted(r["metrics"]["cv/rmse"] for r in written) == [1.0, 2.0, 3.0]
    assert {r["status"] for r in written} == {"FINISHED"}
