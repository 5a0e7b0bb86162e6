"""The whole pipeline as a team runs it: `dvc repro` in a git repo with MLFLOW_TRACKING_URI on a real
`mlflow server` (PostgreSQL backend, proxied artifacts) and the study in PostgreSQL searched by two
worker processes; then `mlgate promote` and `mlgate serve` through the same server, with no local store.

One build per module (the repro and the promotion, the expensive part); every test reads it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import requests

from mlgate.errors import StageError
from tests.helpers import BIN, copy_project, git_commit_all, point_mlflow_at, run_cli, run_mlgate, study_storage

pytestmark = pytest.mark.slow

MODEL = "telco_churn"  # params.yaml tracking.registered_model
N_TRIALS = 5  # TINY_BUDGET's search.n_trials


@dataclass(frozen=True)
class TeamBuild:
    root: Path
    server: str  # the mlflow server's URL: the only store the pipeline was given
    study: str  # the study's PostgreSQL database
    repro: subprocess.CompletedProcess
    promoted: subprocess.CompletedProcess


@pytest.fixture(scope="module")
def team_build(tmp_path_factory, databases, mlflow_server) -> TeamBuild:
    """The default project on the tiny budget in a git repo, its study in PostgreSQL with two workers,
    after one `dvc repro` and one `mlgate promote --from-gate` against the server."""
    study = databases("study")
    root = copy_project(tmp_path_factory.mktemp("team") / "project", [f"paths.study={study}", "search.workers=2"])
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=root, check=True)
    git_commit_all(root, "project")
    env = {"MLFLOW_TRACKING_URI": mlflow_server}
    repro = run_cli(["dvc", "repro"], root, env)
    promoted = run_mlgate(["promote", "--from-gate", "reports/gate.json", "--reason", "team review"], root, env)
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    return TeamBuild(root, mlflow_server, study, repro, promoted)


@pytest.fixture
def on_server(team_build, monkeypatch) -> TeamBuild:
    """MLflow and mlgate's tracking adapter, in this process, pointed at the build's server."""
    point_mlflow_at(monkeypatch, team_build.server)
    return team_build


def _client(build: TeamBuild):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=build.server, registry_uri=build.server)


def _gate(build: TeamBuild) -> dict:
    return json.loads((build.root / "reports/gate.json").read_text())


def test_repro_on_the_server_registers_version_1_with_staging_and_the_gate_names_it(team_build):
    out = team_build.repro.stdout
    assert "2 worker processes" in out and f"{MODEL} v1 (" in out and "PASSED → alias 'staging'" in out
    assert "Traceback" not in team_build.repro.stderr
    local = [team_build.root / "mlflow.db", team_build.root / "mlruns", team_build.root / "reports/optuna.db"]
    assert not [path for path in local if path.exists()]  # nothing fell back to a local store

    staged = _client(team_build).get_model_version_by_alias(MODEL, "staging")
    assert staged.version == "1" and staged.tags["mlgate.gate.passed"] == "true"
    train = json.loads((team_build.root / "models/train_run.json").read_text())
    assert staged.run_id == train["run_id"] and staged.source == train["model_uri"]
    gate = _gate(team_build)
    assert gate["passed"] and (gate["candidate"]["name"], gate["candidate"]["version"]) == (MODEL, 1)
    assert gate["candidate"]["model_sha256"] == staged.tags["mlgate.model.sha256"]


def test_the_study_ran_in_postgresql_as_children_of_one_tune_run_on_the_server(team_build):
    import optuna

    (summary,) = optuna.get_all_study_summaries(study_storage(team_build.study), include_best_trial=False)
    assert summary.n_trials == N_TRIALS
    client = _client(team_build)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=1000)
    (tune,) = [r for r in runs if r.info.run_name == "tune"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == tune.info.run_id]
    trials = sorted(int(r.data.tags.get("mlgate.trial", -1)) for r in children)
    assert trials == list(range(N_TRIALS)), team_build.repro.stdout
    assert not [r.info.run_name for r in runs if r.info.status != "FINISHED"]


def test_train_evaluate_and_gate_recorded_on_the_train_run_with_artifacts_in_the_proxied_store(team_build):
    client = _client(team_build)
    run = client.get_run(_gate(team_build)["candidate"]["run_id"])
    assert run.info.run_name == "train" and run.info.artifact_uri.startswith("mlflow-artifacts:/")
    assert run.data.metrics["test/roc_auc"] > 0.7 and run.data.metrics["gate/passed"] == 1.0
    assert run.data.tags["mlgate.registered_version"] == "1"
    assert "gate/gate.json" in {a.path for a in client.list_artifacts(run.info.run_id, "gate")}


def test_promote_moves_production_through_the_server_with_its_ledger_and_lock(team_build):
    assert "'production' no version → v1" in team_build.promoted.stdout
    client = _client(team_build)
    assert client.get_model_version_by_alias(MODEL, "production").version == "1"
    assert "previous" not in client.get_registered_model(MODEL).aliases
    (move,) = [json.loads(line) for line in (team_build.root / "registry/ledger.jsonl").read_text().splitlines()]
    assert (move["action"], move["model"], move["from_version"], move["to_version"], move["reason"]) == (
        "promote",
        MODEL,
        None,
        1,
        "team review",
    )
    assert move["model_sha256"] == _gate(team_build)["candidate"]["model_sha256"]
    assert client.get_registered_model(MODEL).tags["mlgate.ledger.head"] == move["hash"]
    locks = client.search_registered_models(filter_string=f"name LIKE '{MODEL}.promotion-lock.%'")
    assert [(m.name, m.tags.get("released")) for m in locks] == [(f"{MODEL}.promotion-lock.1", "true")]
    history = run_mlgate(["history"], team_build.root, {"MLFLOW_TRACKING_URI": team_build.server})
    assert "1 record(s)" in history.stdout and "none → v1" in history.stdout


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def _serving(build: TeamBuild, log: Path) -> Iterator[str]:
    """`mlgate serve` (following production) as a real process on the server alone; its URL once ready."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_REGISTRY_URI"}
    env |= {"MLFLOW_TRACKING_URI": build.server, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    with log.open("wb") as output:
        server = subprocess.Popen(
            [str(BIN / "mlgate"), "serve", "--port", str(port)],
            cwd=build.root,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        give_up = time.monotonic() + 120
        while True:
            assert server.poll() is None, log.read_text()[-3000:]
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(f"{url}/ready", timeout=5).status_code == 200:
                    break
            assert time.monotonic() < give_up, f"not ready within 120 s:\n{log.read_text()[-3000:]}"
            time.sleep(0.2)
        yield url
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)


def test_serve_loads_production_through_the_server_verified_and_answers(team_build, tmp_path):
    rows = pd.read_parquet(team_build.root / "data/split/test.parquet").drop(columns=["churn"]).head(5)
    body = {"dataframe_split": json.loads(rows.to_json(orient="split", index=False, double_precision=15))}

    with _serving(team_build, tmp_path / "serve.log") as url:  # ready = downloaded, digest checked, loaded
        version = requests.get(f"{url}/version", timeout=30).json()
        answer = requests.post(f"{url}/invocations", json=body, timeout=30)

    assert (version["model"], version["alias"], version["version"]) == (MODEL, "production", "1")
    assert version["uri"] == f"models:/{MODEL}/1" and version["gate_passed"] == "true"
    assert version["run_id"] == _gate(team_build)["candidate"]["run_id"]
    assert answer.status_code == 200 and answer.headers["X-Model-Version"] == "1", answer.text
    predictions = answer.json()["predictions"]
    assert len(predictions) == 5 and all(0 <= p["probability"] <= 1 for p in predictions)
    assert {p["prediction"] for p in predictions} <= {"Yes", "No"}


def test_a_file_planted_in_the_proxied_artifact_store_is_refused_at_load(on_server, tmp_path):
    """The digest check reads what the server's artifact store holds, not a local copy: one file added
    to the version's artifacts there and the load refuses; taken away again and it loads."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    from mlgate.adapters import tracking

    recorded = _gate(on_server)["candidate"]["model_sha256"]
    assert tracking.model_digest(MODEL, 1) == recorded
    logged = _client(on_server).get_logged_model(tracking.get_version(MODEL, 1).source.removeprefix("models:/"))
    assert logged.artifact_location.startswith("mlflow-artifacts:/")  # proxied: no path a client could open
    store = get_artifact_repository(logged.artifact_location, tracking_uri=on_server.server)
    planted = tmp_path / "planted.py"
    planted.write_text("print('not what the gate saw')\n")
    store.log_artifact(str(planted))
    try:
        with pytest.raises(StageError, match=f"{MODEL} v1: the artifacts in the store do not match"):
            tracking.load(f"models:/{MODEL}@production")
    finally:
        store.delete_artifacts("planted.py")
    assert tracking.load(f"models:/{MODEL}@production").features is not None


def test_links_in_the_gate_report_and_mlgate_ui_point_at_the_tracking_server(team_build):
    candidate = _gate(team_build)["candidate"]
    assert candidate["run_link"].startswith(f"{team_build.server}/#/experiments/")
    assert candidate["version_link"].startswith(f"{team_build.server}/#/models/")

    ui = run_cli(["mlgate", "ui"], team_build.root, {"MLFLOW_TRACKING_URI": team_build.server})
    assert f"open {team_build.server}/#/experiments/" in ui.stdout and "tracking server's UI" in ui.stdout
