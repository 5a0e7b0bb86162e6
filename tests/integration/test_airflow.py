"""deploy/airflow/mlgate_monitor.py run by a real Airflow (its own environment, .airflow/, built by make):
`airflow dags test` runs the DAG's task, which runs `mlgate monitor` from the project's .venv on logged
traffic. A breach (exit 2) is a successful run that exports its time; a monitor that fails fails the run
and leaves the last success where it was, so the lateness alert fires."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.helpers import BIN, REPO, clone_project, git_commit_all, run_mlgate, tracking_env

AIRFLOW = REPO / ".airflow" / "bin" / "airflow"
DAGS = REPO / "deploy" / "airflow"
LAST_SUCCESS = "mlgate_monitor_last_success_timestamp_seconds"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not AIRFLOW.exists(), reason="Airflow's environment is not built: make .airflow/.installed"),
]


def _airflow(args: list[str], home: Path, **env: str) -> subprocess.CompletedProcess:
    settings = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PYTHONDONTWRITEBYTECODE": "1",  # parsing the DAG writes nothing into the checkout
        # what a worker's environment holds: not the test's venv, whose libraries Airflow's must not see
        "PATH": os.environ["PATH"].replace(f"{BIN}{os.pathsep}", ""),
    }
    quiet = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON", "MLFLOW_"))}
    return subprocess.run(
        [str(AIRFLOW), *args], env=quiet | settings | env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory) -> Path:
    """Airflow's metadata database (SQLite), migrated once."""
    home = tmp_path_factory.mktemp("airflow")
    migrated = _airflow(["db", "migrate"], home)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    return home


@pytest.fixture(scope="module")
def monitored(built_project, tmp_path_factory) -> Path:
    """The project (with the tests' .venv as its own) with version 1 in production and 300 shifted rows
    served into its prediction log; the monitoring policy breached by them, retraining off (this test is
    about the schedule)."""
    root = clone_project(built_project.root, tmp_path_factory.mktemp("monitored") / "project")
    (root / ".venv").symlink_to(BIN.parent)  # a checkout with its .venv, as the DAG expects
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["monitor"].update(min_rows=100, max_drift_share=0.05, retrain=False)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git_commit_all(root, "monitoring policy")
    env = tracking_env(root)
    assert run_mlgate(["promote", "--version", "1", "--expect-current", "none"], root, env).returncode == 0

    from starlette.testclient import TestClient

    from mlgate.services.serving import ServeSettings, create_app

    rows = pd.read_csv(root / "data/source/telco_churn.csv.gz").sample(300, random_state=5).drop(columns=["churn"])
    shifted = rows.assign(monthly_charges=rows["monthly_charges"] * 1.8 + 30)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.setenv("MLFLOW_TRACKING_URI", env["MLFLOW_TRACKING_URI"])
        settings = ServeSettings(model="telco_churn", log_dir=str(root / "data/predictions"))
        with TestClient(create_app(settings)) as client:
            body = {"dataframe_split": json.loads(shifted.to_json(orient="split", index=False))}
            assert client.post("/invocations", json=body).status_code == 200
    return root


def _dag_test(home: Path, root: Path, prediction_log: Path, textfile: Path) -> subprocess.CompletedProcess:
    return _airflow(
        ["dags", "test", "mlgate_monitor"],
        home,
        MLGATE_HOME=str(root),
        MLFLOW_TRACKING_URI=tracking_env(root)["MLFLOW_TRACKING_URI"],
        MLGATE_PREDICTION_LOG=str(prediction_log),
        MLGATE_TEXTFILE=str(textfile),
    )


def _task_output(run: subprocess.CompletedProcess) -> str:
    """What the task's command printed, from Airflow's log lines."""
    return "\n".join(line for line in run.stdout.splitlines() if "hooks.subprocess" in line)


def test_the_dag_parses_into_one_task_on_a_daily_schedule_one_run_at_a_time(airflow_home):
    parsed = _airflow(["dags", "reserialize"], airflow_home)
    assert parsed.returncode == 0, parsed.stdout + parsed.stderr
    described = _airflow(["dags", "details", "mlgate_monitor", "--output", "json"], airflow_home)
    tasks = _airflow(["tasks", "list", "mlgate_monitor"], airflow_home)

    (details,) = json.loads(next(line for line in described.stdout.splitlines() if line.startswith("[")))
    assert details["fileloc"] == str(DAGS / "mlgate_monitor.py") and details["has_import_errors"] == "False"
    assert (details["timetable_summary"], details["max_active_runs"]) == ("17 5 * * *", "1")
    assert tasks.stdout.split()[-1:] == ["monitor"], tasks.stdout + tasks.stderr


def test_a_breach_is_a_successful_run_that_exports_its_time_and_a_failure_keeps_the_last(
    airflow_home, monitored, tmp_path
):
    textfile = tmp_path / "mlgate_monitor.prom"
    breached = _dag_test(airflow_home, monitored, monitored / "data/predictions", textfile)

    assert breached.returncode == 0, _task_output(breached)
    said = breached.stdout + breached.stderr
    assert "Command exited with return code 0" in said and "state=success" in said
    summary = json.loads((monitored / "reports/monitor.json").read_text())
    assert summary["rows"] == 300 and any(b.startswith("drift share") for b in summary["breaches"])
    assert "retraining" not in summary or not summary["retraining"]
    exported = textfile.read_text()
    assert f"{LAST_SUCCESS}{{" in exported

    empty = tmp_path / "no-traffic"
    empty.mkdir()
    failed = _dag_test(airflow_home, monitored, empty, textfile)

    assert failed.returncode != 0
    said = failed.stdout + failed.stderr
    assert "no prediction log files" in said and "state=failed" in said, _task_output(failed)
    assert textfile.read_text() == exported  # the last success stays: MlgateMonitorLate can fire
