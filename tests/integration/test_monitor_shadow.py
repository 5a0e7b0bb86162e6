"""`mlgate monitor` on a window that holds a shadow version's rows, against a real SQLite registry: the
served analyses keep to the served rows, the shadow is compared with production, and the evidence it
tags on the staging version is what `mlgate promote` reads under a required `gate.shadow` rule."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlgate import config
from mlgate.adapters import tracking
from mlgate.errors import StageError
from mlgate.gating.shadow import EVIDENCE_TAG, ShadowEvidence
from mlgate.registry import REFERENCE_DIR, REFERENCE_FILE
from mlgate.services import monitor
from mlgate.services import promote as promotion
from tests.helpers import REPO

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)  # promote judges the age against the clock
ROWS = 300


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project folder with telco_churn's params, production v1 (its training sample and test metric
    logged) and staging v2 in its own store; returns (params, policy)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("MLGATE_USER", "tester")
    params = config.read_params(REPO / "params.yaml")
    params["paths"] |= {
        "monitor": "reports/monitor.json",
        "monitor_report": "reports/monitor.html",
        "monitor_metrics": "reports/monitor.prom",
        "ledger": "registry/ledger.jsonl",
    }
    params["gate"]["shadow"] = {"required": True, "min_rows": 200, "min_labelled_rows": 100, "min_agreement": 0.5}
    (tmp_path / "params.yaml").write_text(json.dumps(params))  # the project root's marker
    data = pd.read_csv(REPO / "data/source/telco_churn.csv.gz").sample(2 * ROWS, random_state=0)
    data = data.reset_index(drop=True)
    reference, live = data.iloc[:ROWS], data.iloc[ROWS:].reset_index(drop=True)
    reference.to_parquet(tmp_path / REFERENCE_FILE)
    model = params["tracking"]["registered_model"]
    for number in (1, 2):
        run_id = tracking.create_run(params["tracking"]["experiment"], "train", {})
        tracking.log_artifact(run_id, tmp_path / REFERENCE_FILE, REFERENCE_DIR)
        tracking.log(run_id, metrics={"test/roc_auc": 0.84})
        tracking.finish_run(run_id)
        tracking.register(model, f"runs:/{run_id}/model", run_id)
        tracking.set_version_tags(model, number, {"mlgate.gate.passed": "true", tracking.DIGEST_TAG: f"{number:064x}"})
    tracking.set_alias(model, "production", 1)
    tracking.set_alias(model, "staging", 2)
    _write_log(tmp_path, params, live)
    policy = monitor.MonitorPolicy(
        prediction_log=str(tmp_path / "log"), labels=str(tmp_path / "labels.csv"), min_rows=100, retrain=False
    )
    return params, policy


def _write_log(root, params, live: pd.DataFrame) -> None:
    """Production's answers (v1) and the shadow's (v2, sharper) for the same requests, and the labels."""
    spec_target = params["data"]["target"]
    positive = params["data"]["positive_class"]
    y = (live[spec_target].astype(str) == str(positive)).to_numpy(int)
    rng = np.random.default_rng(0)
    served_p = np.clip(0.5 + (y - 0.5) * 0.2 + rng.normal(0, 0.3, ROWS), 0, 1)
    shadow_p = np.clip(0.5 + (y - 0.5) * 0.7 + rng.normal(0, 0.1, ROWS), 0, 1)
    negative = next(c for c in live[spec_target].astype(str).unique() if c != str(positive))
    keys = {
        "request_id": [f"req{i // 50}" for i in range(ROWS)],
        "client_request_id": None,
        "timestamp": pd.Timestamp(NOW) - pd.Timedelta(hours=1),
        "row": [i % 50 for i in range(ROWS)],
        "extra_inputs": None,
    }
    inputs = live.drop(columns=[spec_target]).add_prefix("input_")

    def answers(p, version, role, with_inputs):
        frame = pd.DataFrame(
            {
                **keys,
                "model_version": version,
                "role": role,
                "output_prediction": np.where(p >= 0.5, str(positive), negative),
                "output_probability": p,
            }
        )
        blank = inputs if with_inputs else pd.DataFrame(np.nan, index=inputs.index, columns=inputs.columns)
        return pd.concat([frame, blank], axis=1)

    log = pd.concat([answers(served_p, "1", "served", True), answers(shadow_p, "2", "shadow", False)])
    (root / "log").mkdir()
    log.to_parquet(root / "log" / "predictions-1-000001.parquet", index=False)
    labels = pd.DataFrame({"request_id": keys["request_id"], "row": keys["row"], spec_target: live[spec_target]})
    labels.to_csv(root / "labels.csv", index=False)


def test_monitor_compares_the_shadow_with_production_and_promote_reads_the_evidence(project, tmp_path):
    params, policy = project
    model = params["tracking"]["registered_model"]

    summary = monitor.run(params, policy, retrain=False, now=NOW)

    # the served analyses see the served rows only
    assert summary["rows"] == ROWS and summary["served_versions"] == ["1"]
    assert summary["decay"]["labelled_rows"] == ROWS
    shadow = summary["shadow"]
    assert (shadow["shadow_version"], shadow["served_version"], shadow["paired_rows"]) == (2, 1, ROWS)
    assert shadow["labelled_rows"] == ROWS and shadow["interval"][0] > 0  # the shadow is sharper
    assert json.loads((tmp_path / "reports/monitor.json").read_text())["shadow"] == json.loads(json.dumps(shadow))
    tagged = ShadowEvidence.from_tag(tracking.get_version(model, 2).tags[EVIDENCE_TAG])
    assert tagged.to_json() == shadow
    report = (tmp_path / "reports/shadow.md").read_text()
    assert "## Live shadow evidence: telco_churn v2 vs production v1" in report and "**Verdict: ready.**" in report
    assert summary["shadow_review"]["branch"] is None  # no branch under review names v2 (tests/unit/test_monitor.py)
    gauges = {
        (s.name, s.labels.get("shadow_version")): s.value
        for f in text_string_to_metric_families((tmp_path / "reports/monitor.prom").read_text())
        for s in f.samples
    }
    assert gauges[("mlgate_monitor_shadow_rows", "2")] == ROWS
    assert gauges[("mlgate_monitor_shadow_metric_change", "2")] == pytest.approx(shadow["change"])

    rule = promotion.shadow_rule(params)
    move = promotion.promote(
        model, 2, "production", "shadow looks good", ledger="registry/ledger.jsonl", shadow_rule=rule
    )

    assert move["shadow"]["served_version"] == 1 and move["shadow"]["paired_rows"] == ROWS
    moves, problems = promotion.history(model, "registry/ledger.jsonl")
    assert problems == [] and moves[-1]["shadow"] == move["shadow"]


def test_a_window_without_shadow_rows_has_no_shadow_evidence(project, tmp_path):
    params, policy = project
    path = tmp_path / "log" / "predictions-1-000001.parquet"
    log = pd.read_parquet(path)
    log[log["role"] == "served"].drop(columns=["role"]).to_parquet(path, index=False)  # a log from before shadows

    summary = monitor.run(params, policy, retrain=False, now=NOW)

    assert summary["rows"] == ROWS and summary["shadow"] is None and summary["shadow_review"] is None
    assert not (tmp_path / "reports/shadow.md").exists()
    with pytest.raises(StageError, match="no live shadow evidence"):
        promotion.promote(
            params["tracking"]["registered_model"],
            2,
            "production",
            "x",
            ledger="registry/ledger.jsonl",
            shadow_rule=promotion.shadow_rule(params),
        )
