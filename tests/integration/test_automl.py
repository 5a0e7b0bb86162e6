"""mlgate.services.automl.fit: the pipeline's stages on a frame, within a budget, tracked as under `dvc repro`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import mean_squared_error, roc_auc_score

from tests.helpers import REPO

pytestmark = pytest.mark.slow

TINY = [
    "model.catboost.fixed.iterations=40",
    "model.random_forest.fixed.n_estimators=25",
    "search.n_jobs=1",
    "search.n_trials=6",
]


@pytest.fixture(scope="module")
def telco():
    frame = pd.read_csv(REPO / "data/source/telco_churn.csv.gz").sample(1200, random_state=0).reset_index(drop=True)
    return frame.iloc[:900], frame.iloc[900:]


def test_fit_tracks_study_trial_and_fold_runs_and_predicts_held_out_rows(telco, tmp_path):
    from mlgate.adapters import tracking
    from mlgate.services import automl

    train, test = telco
    model = automl.fit(
        train,
        "churn",
        "binary",
        budget_s=40,
        seed=0,
        workdir=tmp_path,
        positive_class="Yes",
        overrides=[*TINY, "search.fold_runs=true"],
    )

    y = (test["churn"] == "Yes").astype(int)
    probability = model.predict_proba(test.drop(columns="churn"))
    assert roc_auc_score(y, probability) > 0.75
    assert model.summary["trials"] >= 3 and model.summary["validation"] == "cv"
    assert model.summary["tracking_s"] > 0 and model.summary["save_s"] > 0
    assert model.summary["tracking_behind_cpu_s"] > 0  # the tune run opened, and its trial runs written, off the path

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        trials = tracking.child_runs(model.summary["tune_run_id"])
        complete = [t for t in trials if t["tags"]["mlgate.trial_state"] == "COMPLETE"]
        assert complete
        folds = tracking.child_runs(complete[0]["run_id"])
        tune_metrics = tracking.run_metrics(model.summary["tune_run_id"])
        lent_s = tune_metrics["refit_reserve_lent_s"]
    assert sorted(int(f["tags"]["mlgate.fold"]) for f in folds) == [0, 1, 2]  # three folds under a short budget
    assert all("cv/roc_auc" in f["metrics"] and f["metrics"]["fit_s"] > 0 for f in folds)
    assert {"fit_s", "predict_ms_per_1k", "size_mb"} <= set(complete[0]["metrics"])
    # the tiny trials' refits need little of the refit's reserve (4.8 s of 40): the search was lent the rest
    assert 0 < model.summary["refit_reserve_lent_s"] <= 0.12 * 40
    assert lent_s == pytest.approx(model.summary["refit_reserve_lent_s"])
    # the tune run's own, and MLflow's imports before it (none when this process has them already)
    assert model.summary["tracking_behind_cpu_s"] >= tune_metrics["tracking_behind_cpu_s"] - 1e-3

    best = json.loads((tmp_path / "reports/best_params.json").read_text())
    assert best["finish"]["threshold"]["objective"] == "f1"
    # each family's first trial ran first, then the zero-shot portfolio's configurations, in their order
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    firsts = [(family, entry["first_trial"]) for family, entry in params["model"].items()]
    portfolio = [(e["family"], e["params"]) for e in params["portfolio"]["configurations"]]
    ran = pd.read_csv(tmp_path / "reports/trials.csv").sort_values("trial")
    queued = list(zip(ran["family"], map(json.loads, ran["params"]), strict=True))
    assert best["study"]["portfolio"] == len(portfolio) and len(queued) > len(firsts)
    for (family, params_), (expected_family, expected) in zip(queued, firsts + portfolio, strict=False):
        assert family == expected_family and params_ | expected == params_  # fixed parameters besides
    board = pd.read_csv(tmp_path / "reports/leaderboard.csv")
    assert board["chosen"].sum() == 1


def linear_frame(seed: int, n: int = 3000) -> pd.DataFrame:
    """y = 3x plus a category's offset plus a little noise: a regression any family learns in seconds."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"x": rng.normal(size=n), "kind": rng.choice(["a", "b", "c"], n)})
    frame["y"] = 3 * frame["x"] + frame["kind"].map({"a": 0.0, "b": 1.0, "c": -1.0}) + rng.normal(scale=0.1, size=n)
    return frame


# linear and catboost, 6 trials, scored on a holdout from 2,000 rows
ON_A_HOLDOUT = [
    "model=[linear,catboost]",
    "model.catboost.fixed.iterations=40",
    "search.n_jobs=1",
    "search.n_trials=6",
    "search.holdout_above_rows=2000",
]


def test_fit_on_a_large_regression_frame_uses_a_holdout(tmp_path):
    from mlgate.services import automl

    frame = linear_frame(0)
    model = automl.fit(
        frame.iloc[:2500], "y", "regression", budget_s=30, seed=0, workdir=tmp_path, overrides=ON_A_HOLDOUT
    )

    assert model.summary["validation"] == "holdout"
    rmse = mean_squared_error(frame["y"].iloc[2500:], model.predict(frame.iloc[2500:].drop(columns="y"))) ** 0.5
    assert rmse < 0.3


def test_on_a_holdout_train_keeps_the_models_the_search_fitted_instead_of_refitting(tmp_path):
    import joblib

    from mlgate.services import automl

    frame = linear_frame(1)
    test = frame.iloc[2500:].drop(columns="y")
    model = automl.fit(
        frame.iloc[:2500],
        "y",
        "regression",
        budget_s=30,
        seed=0,
        workdir=tmp_path,
        overrides=[*ON_A_HOLDOUT, "finish.refit=never"],
    )

    recipe = json.loads((tmp_path / "reports/best_params.json").read_text())
    members = recipe["finish"]["members"]
    assert [m["refit"] for m in members] == [False] * len(members)
    assert model.summary["kept_unrefit"] == len(members)
    kept = joblib.load(tmp_path / "models/kept.joblib")
    assert sorted(kept) == sorted(m["trial"] for m in members)
    # each member predicts as the model its trial fitted on the holdout's training rows (2,000 of 2,500)
    for member, fitted in zip(members, model.model.members_, strict=True):
        assert np.array_equal(kept[member["trial"]].predict(test), fitted.predict(test))
    trained = json.loads((tmp_path / "models/train.json").read_text())
    assert [m["refit"] for m in trained["members"]] == [False] * len(members)
    rmse = mean_squared_error(frame["y"].iloc[2500:], model.predict(test)) ** 0.5
    assert rmse < 0.3
