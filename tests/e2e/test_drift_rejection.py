"""`dvc repro` of the default dataset with a deliberately drifted current batch: the gate must reject
the candidate and name the drift rules in reports/promotion.md."""

from __future__ import annotations

import json
import sqlite3
import subprocess

import pandas as pd
import pytest

from tests.conftest import copy_project, git_commit_all, run_cli

pytestmark = pytest.mark.slow

NEW_BATCH = "data/source/new_market.csv"
BATCH_ROWS = 1500   # about the share `split` would hold out as the current batch


def new_market(rows: pd.DataFrame) -> pd.DataFrame:
    """Customers from a market the model never saw: dearer plans, longer tenure, and all of them fibre,
    month-to-month, paperless and paying by electronic check (7 of 19 columns shift, more than the
    policy's 30% drift share)."""
    batch = rows.copy()
    batch["monthly_charges"] = batch["monthly_charges"] * 1.8 + 30
    batch["tenure"] = batch["tenure"] + 24
    batch["total_charges"] = (batch["monthly_charges"] * batch["tenure"]).where(batch["total_charges"].notna())
    return batch.assign(internet_service="Fiber optic", contract="Month-to-month", paperless_billing=1,
                        payment_method="Electronic check")


@pytest.fixture(scope="module")
def drifted(tmp_path_factory):
    root = copy_project(tmp_path_factory.mktemp("drifted"), [f"data.current_path={NEW_BATCH}"])
    source = root / "data/source/telco_churn.csv.gz"
    rows = pd.read_csv(source).sample(frac=1.0, random_state=0)
    rows.iloc[BATCH_ROWS:].to_csv(source, index=False)
    new_market(rows.iloc[:BATCH_ROWS]).to_csv(root / NEW_BATCH, index=False)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    git_commit_all(root, "project with a drifted current batch")
    result = run_cli(["dvc", "repro"], root, {"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"})
    return root, result


def test_the_gate_rejects_naming_the_drift_rules(drifted):
    root, result = drifted
    gate = json.loads((root / "reports/gate.json").read_text())
    failed = {c["name"]: c for c in gate["checks"] if c["verdict"] == "fail"}
    assert gate["passed"] is False and "REJECTED, no alias" in result.stdout
    assert {"drift", "critical_features", "prediction_drift"} <= set(failed)
    assert {"monthly_charges", "tenure"} <= set(gate["drift"]["drifted_columns"])
    assert failed["critical_features"]["evidence"]["monthly_charges"]["drifted"]
    assert failed["critical_features"]["evidence"]["tenure"]["drifted"]
    assert not {"validation", "metric_floor", "calibration", "slices", "target_drift"} & set(failed)


def test_the_promotion_report_names_the_drift_rules(drifted):
    root, _ = drifted
    markdown = (root / "reports/promotion.md").read_text()
    reasons = markdown.split("Reasons:")[1].split("##")[0]
    assert "❌ **REJECTED**: not granted `staging`" in markdown
    assert "| drift | **FAIL** |" in markdown and "| critical_features | **FAIL** |" in markdown
    assert "- drift share" in reasons
    critical = next(line for line in reasons.splitlines() if line.startswith("- critical feature drifted:"))
    assert "monthly_charges" in critical and "tenure" in critical
    assert "- prediction drift (PSI" in reasons


def test_no_alias_is_granted_and_the_card_records_the_rejection(drifted):
    root, _ = drifted
    with sqlite3.connect(root / "mlflow.db") as db:
        assert db.execute("select alias from registered_model_aliases").fetchall() == []
        tags = dict(db.execute("select key, value from model_version_tags where version = 1").fetchall())
    assert tags["mlgate.gate.passed"] == "false"
    assert tags["mlgate.gate.critical_features"].startswith("fail: critical feature drifted: ")
    card = (root / "reports/model_card.md").read_text()
    assert "**REJECTED: not granted `staging`**" in card and "(data/source/new_market.csv, 1,500 rows)" in card
