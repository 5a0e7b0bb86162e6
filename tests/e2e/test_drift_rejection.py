"""The pipeline (its stages as `dvc repro` runs them, in this process) on the default dataset with a
deliberately drifted current batch: the gate must reject
the candidate and name the drift rules in reports/promotion.md. The batch carries labels, so the gate
also scores the candidate on it, and compares it with production once there is one."""

from __future__ import annotations

import json
import sqlite3
import subprocess

import pandas as pd
import pytest

from tests.helpers import clone_project, copy_project, git_commit_all, run_stages, tracking_env

pytestmark = pytest.mark.slow

NEW_BATCH = "data/source/new_market.csv"
BATCH_ROWS = 1500  # about the share `split` would hold out as the current batch


def new_market(rows: pd.DataFrame) -> pd.DataFrame:
    """Customers from a market the model never saw: dearer plans, longer tenure, and all of them fibre,
    month-to-month, paperless and paying by electronic check (7 of 19 columns shift, more than the
    policy's 30% drift share)."""
    batch = rows.copy()
    batch["monthly_charges"] = batch["monthly_charges"] * 1.8 + 30
    batch["tenure"] = batch["tenure"] + 24
    batch["total_charges"] = (batch["monthly_charges"] * batch["tenure"]).where(batch["total_charges"].notna())
    return batch.assign(
        internet_service="Fiber optic",
        contract="Month-to-month",
        paperless_billing=1,
        payment_method="Electronic check",
    )


@pytest.fixture(scope="module")
def drifted(tmp_path_factory):
    root = copy_project(
        tmp_path_factory.mktemp("drifted"), [f"data.current_path={NEW_BATCH}", "gate.current_batch.max_regression=0.02"]
    )
    source = root / "data/source/telco_churn.csv.gz"
    rows = pd.read_csv(source).sample(frac=1.0, random_state=0)
    rows.iloc[BATCH_ROWS:].to_csv(source, index=False)
    new_market(rows.iloc[:BATCH_ROWS]).to_csv(root / NEW_BATCH, index=False)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    git_commit_all(root, "project with a drifted current batch")
    result = run_stages(root)
    assert result.returncode == 0, result.stdout + result.stderr
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


PLOTS = ("metric", "roc", "drift", "slices")


def test_the_labelled_batch_is_scored_and_the_rule_says_why_it_was_not_compared(drifted):
    root, _ = drifted
    gate = json.loads((root / "reports/gate.json").read_text())
    current = gate["comparison"]["current"]
    assert (current["source"], current["batch_rows"], current["rows"]) == (NEW_BATCH, BATCH_ROWS, BATCH_ROWS)
    assert len(current["content_hash"]) == 64 and current["content_hash"] != gate["test_hash"]
    assert (
        current["candidate"]["interval"]["low"]
        <= current["candidate"]["metrics"]["roc_auc"]
        <= current["candidate"]["interval"]["high"]
    )
    assert current["champion"] is None and current["skipped"] == "no 'production' model yet"
    check = next(c for c in gate["checks"] if c["name"] == "current_batch")
    assert check["verdict"] == "skipped" and check["detail"] == "current batch not compared: no 'production' model yet"
    markdown = (root / "reports/promotion.md").read_text()
    assert f"Current batch ({NEW_BATCH}, 1,500 rows): 1,500 labelled rows" in markdown
    assert "| current_batch | skipped |" in markdown


def test_the_reports_embed_small_committable_plots(drifted):
    root, _ = drifted
    markdown = (root / "reports/promotion.md").read_text()
    for name in PLOTS:
        png = root / "reports/plots" / f"{name}.png"
        assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size < 120_000
        assert f"](plots/{name}.png)" in markdown
    ignored = subprocess.run(
        ["git", "check-ignore", *(f"reports/plots/{name}.png" for name in PLOTS)],
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert ignored.returncode == 1 and ignored.stdout == ""
    card = (root / "reports/model_card.md").read_text()
    importance = next(name for name in ("shap_importance", "importance") if f"](plots/{name}.png)" in card)
    assert (root / "reports/plots" / f"{importance}.png").is_file() and f"](../plots/{importance}.csv)" in card


@pytest.fixture(scope="module")
def with_champion(drifted, tmp_path_factory):
    """A copy of the project after the first run, where version 1 holds `production` and the same model
    is registered again as the candidate: the gate then scores both on the test set and the batch."""
    first, _ = drifted
    root = clone_project(first, tmp_path_factory.mktemp("champion") / "project")
    info = json.loads((root / "models/train_run.json").read_text())
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.setenv("MLFLOW_TRACKING_URI", tracking_env(root)["MLFLOW_TRACKING_URI"])
        from mlgate.adapters import tracking

        tracking.client().create_model_version("telco_churn", info["model_uri"], run_id=info["run_id"])
        tracking.set_alias("telco_churn", "production", 1)
    result = run_stages(root, stages=("gate",))
    return root, result


def test_with_production_the_batch_is_compared_with_a_paired_interval(with_champion):
    root, result = with_champion
    gate = json.loads((root / "reports/gate.json").read_text())
    assert gate["candidate"]["version"] == 2 and gate["champion"]["version"] == 1, result.stdout + result.stderr
    current = gate["comparison"]["current"]
    assert current["skipped"] is None and current["rows"] == BATCH_ROWS
    assert current["champion"]["metrics"] == current["candidate"]["metrics"]  # the same model, registered twice
    assert current["gain"] == 0 and current["gain_interval"]["low"] == current["gain_interval"]["high"] == 0
    check = next(c for c in gate["checks"] if c["name"] == "current_batch")
    assert (check["verdict"], check["observed"], check["limit"]) == ("pass", 0, -0.02)
    assert check["detail"].startswith("current batch (1,500 labelled rows) roc_auc ")
    assert gate["comparison"]["test"]["gain_interval"] == {"confidence": 0.95, "low": 0.0, "high": 0.0}
    assert (
        "| metric | candidate v2 | production v1 | difference | 95% CI of the gain |"
        in ((root / "reports/promotion.md").read_text().split("## Current batch")[1])
    )
