"""A retraining's warm start (search.warm_start): with a `production` version, the search runs that
version's study's best configurations first, its best trial as trial 0, and its sampler learns from that
study's scored trials; without one, it is cold."""

from __future__ import annotations

import copy
import dataclasses
import json

import pandas as pd
import pytest

from tests.helpers import clone_project

pytestmark = pytest.mark.slow


@pytest.fixture
def retraining(built_project, tmp_path, monkeypatch):
    """A copy of the built project with its version 1 in production, and params asking for a warm start
    of a few trials."""
    from mlgate import config

    root = clone_project(built_project.root, tmp_path / "project")
    monkeypatch.chdir(root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    params = copy.deepcopy(config.read_params())
    params["search"] |= {"warm_start": True, "warm_start_trials": 3, "n_trials": 6}
    return root, params


def _trials_of(run_id: str) -> pd.DataFrame:
    from mlgate.adapters import tracking

    text = tracking.client().download_artifacts(run_id, "trials.csv")
    return pd.read_csv(text)


def test_the_champions_best_trial_runs_first_then_its_studys_next_best(retraining, capsys):
    from mlgate import project
    from mlgate.adapters import tracking
    from mlgate.services import promote
    from mlgate.stages import tune

    root, params = retraining
    name = params["tracking"]["registered_model"]
    promote.promote(name, 1, "production", "the champion")
    champion_tune = tracking.run_tags(tracking.get_version(name, 1).run_id)[tracking.TUNE_RUN_TAG]
    before = _trials_of(champion_tune)
    done = before[(before["state"] == "COMPLETE") & before["subsample"].isna()]
    best_first = done.sort_values("cv_score", ascending=False, kind="stable")
    expected = []
    for family, text in zip(best_first["family"], best_first["params"], strict=True):
        if (family, json.loads(text)) not in expected:
            expected.append((family, json.loads(text)))

    result = tune.run(params)

    after = _trials_of(result.run_id).sort_values("trial")
    ran = [(family, json.loads(text)) for family, text in zip(after["family"], after["params"], strict=True)]
    assert ran[0] == expected[0]  # the champion's best trial is trial 0
    assert ran[:3] == expected[:3]
    # the sampler learned from every scored full-fidelity trial of the champion's study
    assert result.recipe.study["warm_start"] == {"version": 1, "configurations": 3, "observations": len(done)}
    assert f"the sampler learned from its {len(done)} scored trials" in capsys.readouterr().out
    cold = tune.TuneSettings.parse(params, project.data_spec(params))
    train = pd.read_parquet(root / "data/split/train.parquet")
    assert result.recipe.study["name"] != tune.StudyPlan.of(cold, train, "x").name  # not the cold study resumed


def test_without_a_production_version_the_search_is_cold(retraining, capsys):
    from mlgate.stages import tune

    _, params = retraining
    params["search"]["n_trials"] = 3

    result = tune.run(params)

    assert "warm_start" not in result.recipe.study
    assert "search.warm_start: no version holds 'production'; a cold search" in capsys.readouterr().out


def test_the_gate_compares_with_production_only_on_test_rows_production_never_trained_on(retraining):
    """A retraining splits grown data anew, so its test split holds rows production trained on: scored on
    them production looks better than it is. The gate leaves them out, counts them and says so."""
    from mlgate.services import promote
    from mlgate.stages import gate
    from mlgate.stages import train as training

    root, params = retraining
    name = params["tracking"]["registered_model"]
    promote.promote(name, 1, "production", "the champion")
    split = root / "data/split"
    train, test = pd.read_parquet(split / "train.parquet"), pd.read_parquet(split / "test.parquet")
    mixed = pd.concat([train.iloc[:150], test.iloc[150:]], ignore_index=True)  # 150 of v1's training rows
    mixed.to_parquet(split / "test.parquet", index=False)
    training.run(params)  # the candidate: v1's recipe refit, a model of its own

    report = gate.run(params)

    compared = report.comparison.test
    assert (compared.champion_trained_rows, compared.rows, compared.batch_rows) == (150, len(test) - 150, len(test))
    assert report.test_rows == len(test) - 150
    assert report.comparison.current.champion_trained_rows == 0  # held-out rows: v1 never saw them
    written = json.loads((root / "reports/gate.json").read_text())
    assert written["comparison"]["test"]["champion_trained_rows"] == 150
    pull_request = (root / "reports/promotion.md").read_text()
    assert "Production v1 trained on 150 of these rows (a new split of grown data mixes them in): both are " in (
        pull_request
    )
    # the candidate is v1's recipe refit on the same rows: on rows neither trained on, the two score the same
    assert report.candidate.version == 2 and compared.gain == 0.0


def test_a_retraining_searches_production_catboost_going_on_training_and_train_goes_on_from_it(retraining, capsys):
    """New rows arrived (the held-out rows join train): the warm search also tries production's CatBoost
    member going on training on them, and `train` makes that model from production's own."""
    from mlgate.adapters import tracking
    from mlgate.modelling import models
    from mlgate.records import Member
    from mlgate.services import promote
    from mlgate.stages import gate, tune
    from mlgate.stages import train as training

    root, params = retraining
    name = params["tracking"]["registered_model"]
    promote.promote(name, 1, "production", "the champion")
    split = root / "data/split"
    old, new = pd.read_parquet(split / "train.parquet"), pd.read_parquet(split / "current.parquet")
    pd.concat([old, new], ignore_index=True).to_parquet(split / "train.parquet", index=False)
    params["search"] |= {"warm_start_trials": 2, "n_trials": 4}

    result = tune.run(params)

    continuation = result.recipe.study["warm_start"]["continuation"]
    assert continuation["version"] == 1 and continuation["new_rows"] == len(new)
    trials = _trials_of(result.run_id).sort_values("trial")
    third = trials.iloc[2]
    assert (third["family"], json.loads(third["params"])) == (models.CONTINUED, tune.CONTINUATION_FIRST_TRIAL)
    assert third["state"] == "COMPLETE" and 0.5 < third["cv_score"] < 1
    assert f"{models.CONTINUED} searched: its CatBoost model (member {continuation['member']}) going on" in (
        capsys.readouterr().out
    )

    # the recipe's model is the continuation alone: train goes on from v1's member on the new rows
    chosen = Member(int(third["trial"]), models.CONTINUED, tune.CONTINUATION_FIRST_TRIAL, 1.0)
    recipe = dataclasses.replace(
        result.recipe,
        finish=dataclasses.replace(result.recipe.finish, method="single", combiner=None, members=(chosen,)),
    )
    (root / "reports/best_params.json").write_text(recipe.to_json())
    production = tracking.load(tracking.get_version(name, 1).uri).pipeline.members_[continuation["member"]]

    trained = training.run(params)

    model = tracking.load(trained.model_uri).pipeline.sole_pipeline
    assert models.trees(model) == models.trees(production) + tune.CONTINUATION_FIRST_TRIAL["iterations"]

    # it holds v1's trees, so the gate judges it, like v1, only on test rows v1 never trained on
    test = pd.read_parquet(split / "test.parquet")
    pd.concat([old.iloc[:150], test.iloc[150:]], ignore_index=True).to_parquet(split / "test.parquet", index=False)
    report = gate.run(params)
    compared = report.comparison.test
    assert compared.champion_trained_rows == 150
    assert report.check("metric_floor").observed == pytest.approx(compared.candidate.metrics[params["data"]["metric"]])
