"""Serve the promoted model, send a shifted batch, run `mlgate monitor`: drift is reported and a
retraining branch is left with its promotion report, while `production` stays where it was."""

from __future__ import annotations

import json
import subprocess

import pandas as pd
import pytest
import yaml

from tests.helpers import (
    TINY_BUDGET,
    clone_project,
    git_commit_all,
    run_cli,
    run_mlgate,
    tracking_env,
)

pytestmark = pytest.mark.slow


def _budget() -> dict:
    return {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in TINY_BUDGET)}


def test_shifted_traffic_is_reported_and_opens_a_retraining_branch(built_project, tmp_path, monkeypatch):
    # The project after `dvc repro` on branch main; no stage reads `monitor:`, so setting the policy
    # now leaves every stage as it ran.
    root = clone_project(built_project.root, tmp_path / "project")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["monitor"]["retrain_overrides"] = _budget()
    params["monitor"]["min_rows"] = 100
    params["monitor"]["max_drift_share"] = 0.05  # two shifted columns of 19 breach it
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git_commit_all(root, "monitoring policy")
    env = tracking_env(root)
    uri = env["MLFLOW_TRACKING_URI"]
    assert "Stage 'gate' didn't change, skipping" in run_cli(["dvc", "repro", "gate"], root, env).stdout
    assert run_mlgate(["promote", "--version", "1", "--expect-current", "none"], root, env).returncode == 0
    git_commit_all(root, "first model promoted")

    monkeypatch.chdir(root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    from starlette.testclient import TestClient

    from mlgate.services.serving import ServeSettings, create_app

    rows = pd.read_csv(root / "data/source/telco_churn.csv.gz").sample(400, random_state=3).reset_index(drop=True)
    shifted = rows.drop(columns=["churn"]).assign(
        monthly_charges=rows["monthly_charges"] * 1.8 + 30, tenure=(rows["tenure"] + 40).clip(upper=120)
    )
    request_ids = []  # the server's: labels join on the id each answer carries
    with TestClient(create_app(ServeSettings(model="telco_churn", log_dir=str(root / "data/predictions")))) as client:
        for start in range(0, len(shifted), 50):
            batch = shifted.iloc[start : start + 50]
            response = client.post(
                "/invocations", json={"dataframe_split": json.loads(batch.to_json(orient="split", index=False))}
            )
            assert response.status_code == 200, response.text
            request_ids.append(response.headers["X-Request-Id"])
    labels = pd.DataFrame(
        {
            "request_id": [request_ids[i // 50] for i in range(len(rows))],
            "row": [i % 50 for i in range(len(rows))],
            "churn": rows["churn"],
        }
    )
    labels.to_csv(root / "labels.csv", index=False)

    result = run_mlgate(["monitor", "--labels", "labels.csv"], root, env)

    assert result.returncode == 2, result.stdout + result.stderr  # 2: the policy is breached
    summary = json.loads((root / "reports/monitor.json").read_text())
    assert summary["rows"] == 400 and summary["version"] == 1
    assert {"monthly_charges", "tenure"} <= set(summary["drift"]["drifted_columns"])
    assert any(b.startswith("drift share") for b in summary["breaches"])
    assert summary["decay"]["labelled_rows"] == 400
    assert "mlgate_monitor_drift_share{" in (root / "reports/monitor.prom").read_text()
    branch = summary["retraining"]["branch"]
    assert branch.startswith("retrain/") and "gh pr create" in summary["retraining"]["next"]
    report = subprocess.run(["git", "show", f"{branch}:reports/promotion.md"], cwd=root, capture_output=True, text=True)
    assert report.stdout.startswith("# Model promotion")
    log = subprocess.run(["git", "log", "--format=%s", branch], cwd=root, capture_output=True, text=True).stdout
    assert "Retrain on monitored traffic" in log and "Gate verdict for the retraining" in log
    assert (
        subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True
        ).stdout
        == ""
    )  # the working tree is untouched
    current = json.loads((root / "reports/gate.json").read_text())
    assert current["candidate"]["version"] == 1  # the main checkout still holds the first run's verdict
    aliases = run_mlgate(["history"], root, env).stdout
    assert "none → v1" in aliases and "v2" not in aliases  # production did not move
