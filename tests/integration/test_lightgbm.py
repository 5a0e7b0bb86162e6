"""The lightgbm family through every stage of the default project (run() in-process): searched with
early stopping, refit with the rounds it kept, logged as an MLflow model that predicts raw rows,
explained by its own TreeSHAP in evaluate's importance, and gated."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.helpers import TINY_BUDGET, copy_project, stages_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lightgbm_project(tmp_path_factory):
    # LightGBM stops early from 200 rows: the refit takes the rounds the folds kept
    root = copy_project(
        tmp_path_factory.mktemp("lightgbm") / "project",
        ["model=[lightgbm]", "model.lightgbm.fixed.n_estimators=200", "model.lightgbm.fixed.early_stopping_rounds=10"],
        budget=[item for item in TINY_BUDGET if not item.startswith("model.")],  # the other families' settings
    )
    with stages_run(root) as (params, results):
        yield root, params, results


def test_every_trial_is_lightgbm_and_the_refit_keeps_the_rounds_the_folds_kept(lightgbm_project):
    root, _, _ = lightgbm_project
    best = json.loads((root / "reports/best_params.json").read_text())
    members = best["finish"]["members"]
    assert {m["family"] for m in members} == {"lightgbm"}
    for member in members:
        assert "early_stopping_rounds" not in member["params"]
        assert 1 <= member["params"]["n_estimators"] < 200
    board = pd.read_csv(root / "reports/leaderboard.csv")  # the family's best trial, the finished model
    assert len(board) >= 1 and board["model"].str.contains("lightgbm").all()


def test_the_logged_model_predicts_raw_rows_and_evaluate_explains_it(lightgbm_project):
    from mlgate.adapters import tracking

    root, _, results = lightgbm_project
    raw = pd.read_csv(root / "data/source/telco_churn.csv.gz").drop(columns=["churn"]).head(20)
    output = tracking.load(results["train"].model_uri).predict(raw)
    assert output["probability"].between(0, 1).all() and set(output["prediction"]) <= {"Yes", "No"}
    assert 0.7 < json.loads((root / "metrics/test.json").read_text())["roc_auc"] < 1
    shap = pd.read_csv(root / "plots/shap_importance.csv")  # LightGBM's own TreeSHAP (explain.py)
    assert len(shap) == 19 and shap.iloc[:, 1].sum() > 0


def test_the_gate_judges_it_like_any_other_family(lightgbm_project):
    root, _, _ = lightgbm_project
    gate = json.loads((root / "reports/gate.json").read_text())
    assert gate["passed"] is True, gate["reasons"]
