import dataclasses
import functools
import json
import math
import time

import numpy as np
import pandas as pd
import pytest

from mlgate.adapters import optuna_study
from mlgate.adapters.optuna_study import TrialOutcome
from mlgate.errors import StageError
from mlgate.stages.tune import CrossValidation, best, screening_share, trial_table, use_holdout


def _outcome(
    number: int, state: str, score: float | None, *, family: str = "linear", error: str | None = None, folds: int = 3
) -> TrialOutcome:
    fold_scores = () if score is None else (score,) * folds
    return TrialOutcome(number, family, {"alpha": float(number)}, score, fold_scores, state, 100.0, 101.5, error)


@pytest.fixture
def mixed_outcomes() -> list[TrialOutcome]:
    return [
        _outcome(0, "COMPLETE", 0.70),
        _outcome(1, "PRUNED", 0.95, folds=1),
        _outcome(2, "COMPLETE", 0.90, family="catboost"),
        _outcome(3, "FAIL", None, error="ValueError: bad alpha"),
        _outcome(4, "COMPLETE", 0.80),
    ]


def test_trial_table_puts_complete_trials_first_best_first_when_maximizing(mixed_outcomes):
    board = trial_table(mixed_outcomes, maximize=True)

    assert board["trial"].tolist() == [2, 4, 0, 1, 3]
    assert board["state"].tolist() == ["COMPLETE"] * 3 + ["PRUNED", "FAIL"]


def test_trial_table_puts_the_lowest_score_first_when_minimizing(mixed_outcomes):
    board = trial_table(mixed_outcomes, maximize=False)

    assert board["trial"].tolist()[:3] == [0, 4, 2]
    assert set(board["trial"].tolist()[3:]) == {1, 3}


def test_trial_table_rows_describe_each_trial(mixed_outcomes):
    board = trial_table(mixed_outcomes, maximize=True).set_index("trial")

    assert board.loc[2, "family"] == "catboost"
    assert board.loc[1, "folds"] == 1
    assert board.loc[0, "cv_std"] == pytest.approx(0.0, abs=1e-12)
    assert board.loc[0, "duration_s"] == 1.5
    assert board.loc[0, "params"] == '{"alpha": 0.0}'
    assert board.loc[3, "error"] == "ValueError: bad alpha"


def test_best_picks_the_best_complete_trial_in_either_direction(mixed_outcomes):
    assert best(mixed_outcomes, maximize=True).number == 2
    assert best(mixed_outcomes, maximize=False).number == 0


def test_best_names_the_first_failure_when_no_trial_completed():
    outcomes = [
        _outcome(0, "PRUNED", 0.5),
        _outcome(1, "FAIL", None, error="ValueError: first"),
        _outcome(2, "FAIL", None, error="RuntimeError: second"),
    ]

    with pytest.raises(StageError) as raised:
        best(outcomes, maximize=True)

    message = str(raised.value)
    assert "no trial completed out of 3" in message
    assert "trial 1 (linear): ValueError: first" in message
    assert "second" not in message


def test_best_without_failures_says_how_many_trials_ran():
    with pytest.raises(StageError, match="no trial completed out of 2$"):
        best([_outcome(0, "PRUNED", 0.5), _outcome(1, "PRUNED", 0.4)], maximize=True)


def test_best_ignores_a_nan_score():
    outcomes = [_outcome(0, "COMPLETE", math.nan), _outcome(1, "COMPLETE", 0.7)]

    assert best(outcomes, maximize=True).number == 1


def test_cross_validation_scores_each_fold(mixed_frame, binary_spec):
    frame = mixed_frame(60)
    objective = CrossValidation(frame, binary_spec, 3, parallel_trials=1, cores=1, seed=0)
    reported = []

    score, fold_scores = objective("linear", {"alpha": 1.0}, lambda step, value: reported.append((step, value)))

    assert len(fold_scores) == 3
    assert [step for step, _ in reported] == [0, 1, 2]
    assert [value for _, value in reported] == fold_scores
    assert score == pytest.approx(np.mean(fold_scores))
    assert all(0.8 <= s <= 1.0 for s in fold_scores)


def test_cross_validation_folds_are_stratified_and_cover_every_row(mixed_frame, binary_spec):
    frame = mixed_frame(60)

    objective = CrossValidation(frame, binary_spec, 3, parallel_trials=1, cores=1, seed=0)

    scored_rows = np.concatenate([score_rows for _, score_rows in objective.folds])
    assert sorted(scored_rows.tolist()) == list(range(60))
    assert all(objective.y[score_rows].sum() in (6, 7) for _, score_rows in objective.folds)


def test_cross_validation_uses_the_metric_of_a_regression_task(mixed_frame, regression_spec):
    frame = mixed_frame(60, "regression")
    objective = CrossValidation(frame, regression_spec, 3, parallel_trials=1, cores=1, seed=0)

    score, fold_scores = objective("linear", {"alpha": 1.0}, lambda step, value: None)

    assert len(fold_scores) == 3
    assert 0 < score < frame["spend"].std()


def test_cross_validation_keeps_out_of_fold_predictions_and_costs(mixed_frame, binary_spec, tmp_path):
    frame = mixed_frame(60)
    objective = CrossValidation(frame, binary_spec, 3, parallel_trials=1, cores=1, seed=0, store_dir=tmp_path)

    objective("linear", {"alpha": 1.0}, lambda step, value: None)

    result = objective.result("linear", {"alpha": 1.0})
    assert np.isfinite(result.predictions).all() and ((result.predictions >= 0) & (result.predictions <= 1)).all()
    assert len(result.folds) == 3 and result.fit_s > 0 and result.size_mb > 0
    assert sorted(objective.fold_of_row.tolist()) == sorted([0] * 20 + [1] * 20 + [2] * 20)
    reloaded = CrossValidation(frame, binary_spec, 3, parallel_trials=1, cores=1, seed=0, store_dir=tmp_path)
    assert np.array_equal(reloaded.result("linear", {"alpha": 1.0}).predictions, result.predictions)
    assert reloaded.result("linear", {"alpha": 2.0}) is None


def test_holdout_validates_one_share_of_the_rows(mixed_frame, binary_spec):
    frame = mixed_frame(100)
    objective = CrossValidation(frame, binary_spec, 5, parallel_trials=1, cores=1, seed=0, holdout=0.2)

    score, fold_scores = objective("linear", {"alpha": 1.0}, lambda step, value: None)

    assert len(objective.folds) == 1 and len(objective.folds[0][1]) == 20 and len(fold_scores) == 1
    predictions = objective.result("linear", {"alpha": 1.0}).predictions
    assert np.isfinite(predictions).sum() == 20
    assert ((objective.fold_of_row >= 0) == np.isfinite(predictions)).all()  # held-out rows, in groups
    assert set(objective.fold_of_row[objective.fold_of_row >= 0]) <= set(range(5))


def test_a_trial_past_the_deadline_stops_once_one_configuration_has_completed(mixed_frame, binary_spec):
    objective = CrossValidation(
        mixed_frame(60),
        binary_spec,
        3,
        parallel_trials=1,
        cores=1,
        seed=0,
        deadline=optuna_study.Deadline(time.time() - 1),
    )
    objective("linear", {"alpha": 1.0}, lambda step, value: None)  # the study needs one model, budget or not
    with pytest.raises(optuna_study.OutOfTime, match="time budget after 0 of 3 folds"):
        objective("linear", {"alpha": 2.0}, lambda step, value: None)


def test_a_fold_expected_to_end_past_the_deadline_is_not_started(mixed_frame, binary_spec):
    objective = CrossValidation(
        mixed_frame(60), binary_spec, 3, parallel_trials=1, cores=1, seed=0, deadline=optuna_study.Deadline.after(3600)
    )
    objective("linear", {"alpha": 1.0}, lambda step, value: None)  # a first fold always runs: no estimate yet
    objective._fold_seconds["linear"] = [7200.0]

    with pytest.raises(optuna_study.OutOfTime, match="a linear fold takes up to 7200s"):
        objective("linear", {"alpha": 2.0}, lambda step, value: None)
    # a family with no fold yet is expected to cost what the slowest one seen did
    with pytest.raises(optuna_study.OutOfTime, match="knn has no fold yet, the slowest family's take up to 7200s"):
        objective("knn", {"n_neighbors": 3}, lambda step, value: None)
    objective._fold_seconds["knn"] = [0.01]
    objective("knn", {"n_neighbors": 3}, lambda step, value: None)  # once measured, its cost is its own


def test_use_holdout_follows_the_setting_and_the_row_count():
    settings = optuna_study.SearchSettings(
        sampler="tpe", pruner="none", n_trials=1, timeout_s=1, cv_folds=3, n_jobs=1, holdout_above_rows=1000
    )
    assert not use_holdout(settings, 999) and use_holdout(settings, 1000)
    assert use_holdout(dataclasses.replace(settings, validation="holdout"), 10)
    assert not use_holdout(dataclasses.replace(settings, validation="cv"), 10**6)


@pytest.mark.parametrize("sampler", optuna_study.SAMPLERS)
def test_every_sampler_runs_a_tiny_study_over_several_families(sampler, mixed_frame, binary_spec):
    spaces = optuna_study.parse_spaces(
        {
            "linear": {
                "space": {
                    "alpha": {"type": "float", "low": 0.01, "high": 10.0, "log": True},
                    "penalty": {"type": "categorical", "choices": ["l2", "elasticnet"]},
                    "l1_ratio": {"type": "float", "low": 0.1, "high": 0.9, "when": {"penalty": ["elasticnet"]}},
                },
                "first_trial": {"alpha": 1.0, "penalty": "l2"},
            },
            "knn": {"space": {"n_neighbors": {"type": "int", "low": 3, "high": 15}}, "first_trial": {"n_neighbors": 5}},
        }
    )
    settings = optuna_study.SearchSettings(
        sampler=sampler, pruner="none", n_trials=8, timeout_s=60, cv_folds=3, n_jobs=1
    )
    objective = CrossValidation(mixed_frame(60), binary_spec, 3, parallel_trials=1, cores=1, seed=0)

    outcomes = optuna_study.optimize(spaces, objective, settings, maximize=True, seed=0, on_trial=lambda outcome: None)

    assert len(outcomes) == 8
    assert {o.family for o in outcomes} == {"linear", "knn"}
    assert all(o.state == "COMPLETE" and 0.5 < o.score <= 1.0 for o in outcomes)


@pytest.fixture
def digest_once(monkeypatch):
    """The code's digest (tests/unit/test_code_deps.py) parses the stage's modules: once per test is enough."""
    from mlgate import code_deps

    monkeypatch.setattr(code_deps, "closure_digest", functools.cache(code_deps.closure_digest))


def test_the_study_name_follows_what_scores_depend_on_and_not_the_budget(
    project_root, mixed_frame, monkeypatch, digest_once
):
    from mlgate import code_deps, config, project
    from mlgate.stages import tune

    params = config.read_params(project_root / "params.yaml")
    train = mixed_frame(30)

    def study_name(params, train) -> str:
        return tune.study_name(tune.TuneSettings.parse(params, project.data_spec(params)), train)

    name = study_name(params, train)

    def changed(section: str, key: str, value) -> str:
        copy = json.loads(json.dumps(params))
        copy[section][key] = value
        return study_name(copy, train)

    assert name.startswith(f"{params['data']['name']}-") and name == study_name(params, train.copy())
    assert changed("search", "n_trials", 999) == changed("search", "timeout_s", 1) == name
    assert changed("search", "n_jobs", 1) != name  # the batch size decides what each trial of the study sees
    timed = json.loads(json.dumps(params))
    timed["search"]["budget"] = "time"
    assert study_name(timed, train) != name
    timed["search"]["n_jobs"] = 1  # under a time budget the clock decides that already
    assert study_name(timed, train) == study_name({**timed, "search": {**timed["search"], "n_jobs": 2}}, train)
    assert changed("search", "sampler", "random") != name
    assert changed("search", "cv_folds", 3) != name
    assert changed("features", "clip_quantiles", None) != name
    assert study_name({**params, "seed": 7}, train) != name
    assert study_name(params, mixed_frame(30, seed=1)) != name
    assert study_name({**params, "portfolio": {"configurations": []}}, train) == name
    queued = {"configurations": [{"family": "linear", "params": {"alpha": 0.1}}]}
    assert study_name({**params, "portfolio": queued}, train) != name  # what runs first is part of the study
    monkeypatch.setattr(code_deps, "closure_digest", lambda module: "other code")
    assert study_name(params, train) != name


def test_the_queue_is_the_warm_start_then_the_other_first_trials_then_the_portfolio(project_root):
    from mlgate import config, project
    from mlgate.stages import tune

    params = config.read_params(project_root / "params.yaml")  # catboost, linear, random_forest
    entries = [{"family": "random_forest", "params": {"max_depth": 4}}, {"family": "knn", "params": {}}]
    settings = tune.TuneSettings.parse({**params, "portfolio": {"configurations": entries}}, project.data_spec(params))
    firsts = [(s.family, s.first_trial) for s in settings.spaces]
    warm = tune.WarmStart(1, "run", (("linear", {"alpha": 0.5}),))

    assert settings.queued == (*firsts, ("random_forest", {"max_depth": 4}), ("knn", {}))
    assert dataclasses.replace(settings, warm=warm).queued == (
        ("linear", {"alpha": 0.5}),
        *[first for first in firsts if first[0] != "linear"],  # the warm start replaces linear's first trial
        ("random_forest", {"max_depth": 4}),
        ("knn", {}),  # a family not searched is left out when the study queues it
    )
    assert dataclasses.replace(settings, portfolio=(), warm=warm).queued == (("linear", {"alpha": 0.5}),)


def test_a_portfolio_is_read_in_its_order_and_a_bad_entry_is_named_by_its_index():
    from mlgate.stages.tune import portfolio_configurations

    entries = [{"family": "lightgbm", "params": {"num_leaves": 15}}, {"family": "linear", "params": {}}]

    assert portfolio_configurations(None) == portfolio_configurations({"configurations": []}) == ()
    assert portfolio_configurations({"configurations": entries}) == (("lightgbm", {"num_leaves": 15}), ("linear", {}))
    with pytest.raises(ValueError, match=r"portfolio.configurations\[1\].family: 'xgboost' is not one of"):
        portfolio_configurations({"configurations": [entries[0], {"family": "xgboost", "params": {}}]})
    with pytest.raises(ValueError, match=r"portfolio.configurations\[0\] must hold exactly family and params"):
        portfolio_configurations({"configurations": [{"family": "linear", "params": {}, "score": 1.0}]})
    with pytest.raises(ValueError, match="must be a list"):
        portfolio_configurations({"configurations": {"family": "linear"}})


def test_the_study_stops_when_no_family_fits_in_the_time_left(mixed_frame, binary_spec):
    objective = CrossValidation(
        mixed_frame(60), binary_spec, 3, parallel_trials=1, cores=1, seed=0, deadline=optuna_study.Deadline.after(3600)
    )
    objective("knn", {"n_neighbors": 3}, lambda step, value: None)
    objective._fold_seconds = {"linear": [7200.0], "knn": [0.01]}
    with pytest.raises(optuna_study.OutOfTime) as stopped:
        objective("linear", {"alpha": 1.0}, lambda step, value: None)
    assert not stopped.value.final  # knn still fits
    objective._fold_seconds["knn"] = [7200.0]
    with pytest.raises(optuna_study.OutOfTime) as stopped:
        objective("linear", {"alpha": 1.0}, lambda step, value: None)
    assert stopped.value.final


def test_trial_table_of_a_multi_objective_study_marks_the_pareto_front():
    outcomes = [
        dataclasses.replace(_outcome(0, "COMPLETE", 0.90), costs=(5.0,)),
        dataclasses.replace(_outcome(1, "COMPLETE", 0.85), costs=(1.0,)),
        dataclasses.replace(_outcome(2, "COMPLETE", 0.80), costs=(2.0,)),
        _outcome(3, "FAIL", None, error="boom"),
    ]

    board = trial_table(outcomes, maximize=True, objectives=("score", "predict_time")).set_index("trial")

    assert board["pareto"].to_dict() == {0: True, 1: True, 2: False, 3: False}
    assert board.loc[2, "predict_time"] == 2.0


def test_pickled_size_counts_the_bytes_without_keeping_them():
    import pickle

    from mlgate.stages.tune import pickled_size

    model = {"weights": list(range(10_000)), "name": "x" * 1000}
    assert pickled_size(model) == len(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL))


def test_pickled_size_counts_large_arrays_too():
    import pickle

    from mlgate.stages.tune import pickled_size

    model = {"array": np.arange(1_000_000, dtype=float)}
    assert pickled_size(model) == len(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL))


CATBOOST_STOPPING = {"iterations": 300, "learning_rate": 0.5, "depth": 3, "early_stopping_rounds": 10}
_QUIET = {"ensemble": "none", "calibration": "none", "threshold": "none"}


def test_the_trees_catboost_kept_in_the_search_are_what_train_refits(
    mixed_frame, binary_spec, early_stopping_from_1000_rows
):
    from mlgate.modelling.ensemble import FinishSettings
    from mlgate.modelling.features import FeatureSettings
    from mlgate.stages import train
    from mlgate.stages.tune import _trial_record, finish

    frame = mixed_frame(1_600)
    objective = CrossValidation(frame, binary_spec, 3, parallel_trials=1, cores=1, seed=0)
    score, folds = objective("catboost", CATBOOST_STOPPING, lambda step, value: None)
    result = objective.result("catboost", CATBOOST_STOPPING)
    outcome = TrialOutcome(0, "catboost", CATBOOST_STOPPING, score, tuple(folds), "COMPLETE", 100.0, 101.0)

    finished = finish([outcome], objective, binary_spec, FinishSettings(**_QUIET))
    model = train.fit(frame, binary_spec, finished, FeatureSettings(), seed=0)

    per_fold = [f["trees"] for f in result.folds]
    assert all(trees < 300 for trees in per_fold) and result.trees == pytest.approx(np.mean(per_fold))
    assert finished.members[0].params == {"iterations": round(result.trees), "learning_rate": 0.5, "depth": 3}
    assert model.sole_pipeline.steps[-1][1].tree_count_ == round(result.trees)
    assert _trial_record(outcome, "roc_auc", result=result).metrics["trees"] == result.trees


def test_a_screening_call_fits_on_a_seeded_share_of_each_fold_and_scores_the_whole_fold(
    mixed_frame, binary_spec, tmp_path
):
    objective = CrossValidation(
        mixed_frame(120), binary_spec, 3, parallel_trials=1, cores=1, seed=0, store_dir=tmp_path
    )
    fit_rows = objective.folds[0][0]

    kept = objective._subsample(fit_rows, 0.5)
    objective("linear", {"alpha": 1.0}, lambda step, value: None, subsample=0.5)

    assert len(kept) == len(fit_rows) // 2 and set(kept) <= set(fit_rows)
    assert np.array_equal(kept, objective._subsample(fit_rows, 0.5))
    assert objective.y[kept].mean() == pytest.approx(objective.y[fit_rows].mean(), abs=0.02)
    screened = objective.result("linear", {"alpha": 1.0}, 0.5)
    assert np.isfinite(screened.predictions).all()
    assert objective.result("linear", {"alpha": 1.0}) is None  # a full run of the same configuration is another result
    reloaded = CrossValidation(mixed_frame(120), binary_spec, 3, parallel_trials=1, cores=1, seed=0, store_dir=tmp_path)
    assert np.array_equal(reloaded.result("linear", {"alpha": 1.0}, 0.5).predictions, screened.predictions)


def test_a_screening_fold_counts_towards_the_deadline_as_if_fit_on_every_row(mixed_frame, binary_spec):
    objective = CrossValidation(
        mixed_frame(60), binary_spec, 3, parallel_trials=1, cores=1, seed=0, deadline=optuna_study.Deadline.after(3600)
    )
    objective("linear", {"alpha": 1.0}, lambda step, value: None, subsample=0.5)
    seconds = [f["end"] - f["start"] for f in objective.result("linear", {"alpha": 1.0}, 0.5).folds]

    assert objective._fold_seconds["linear"] == pytest.approx([s / 0.5 for s in seconds])


def test_screened_trials_are_recorded_and_never_the_final_recipe_while_a_full_trial_exists(mixed_frame, binary_spec):
    from mlgate.modelling.ensemble import FinishSettings
    from mlgate.stages.tune import _trial_record, finish, model_leaderboard

    objective = CrossValidation(mixed_frame(90), binary_spec, 3, parallel_trials=1, cores=1, seed=0)
    outcomes = []
    for number, (alpha, share) in enumerate([(0.01, 0.5), (100.0, None), (1.0, 0.5), (10.0, None)]):
        _, folds = objective("linear", {"alpha": alpha}, lambda step, value: None, subsample=share)
        score = 0.99 if share else 0.8 + number / 100  # the screened ones look best
        outcomes.append(
            TrialOutcome(number, "linear", {"alpha": alpha}, score, tuple(folds), "COMPLETE", 1.0, 2.0, subsample=share)
        )

    finished = finish(outcomes, objective, binary_spec, FinishSettings(ensemble="caruana", calibration="none"))
    board = model_leaderboard(outcomes, objective, finished, maximize=True)

    assert best(outcomes, maximize=True).number == 3
    assert {m.trial for m in finished.members} <= {1, 3}
    assert set(board["trial"].dropna()) <= {1, 3}
    assert trial_table(outcomes, maximize=True).set_index("trial")["subsample"].to_dict()[0] == 0.5
    assert _trial_record(outcomes[0], "roc_auc").tags["mlgate.subsample"] == "0.5"
    assert "mlgate.subsample" not in _trial_record(outcomes[1], "roc_auc").tags
    assert best(outcomes[:1] + outcomes[2:3], maximize=True).number == 0  # no full trial: the screened ones serve


def test_the_finish_caps_its_pool_by_each_trials_refit_on_every_row_not_by_its_fold_fit(mixed_frame, binary_spec):
    """A fold fits on 2/3 of the rows at 3 folds: pooling by the fold fit let a chosen ensemble's refit run
    1.5x over finish.refit_budget_s (4.6 s against 3.6 s at a 30 s budget)."""
    from mlgate.modelling.ensemble import FinishSettings
    from mlgate.stages.tune import finish, trial_key

    objective = CrossValidation(mixed_frame(90), binary_spec, 3, parallel_trials=1, cores=1, seed=0)
    outcomes = []
    for number, (family, params) in enumerate([("linear", {"alpha": 1.0}), ("knn", {"n_neighbors": 5})]):
        score, folds = objective(family, params, lambda step, value: None)
        key = trial_key(family, params)
        objective.results[key] = dataclasses.replace(objective.results[key], fit_s=1.0)  # a second per fold
        outcomes.append(TrialOutcome(number, family, params, score, tuple(folds), "COMPLETE", 1.0, 2.0))
    settings = FinishSettings(ensemble="caruana", calibration="none", threshold="none", refit_budget_s=2.5)

    finished = finish(outcomes, objective, binary_spec, settings)  # each refit on every row: 1.5 s, 3.0 s together

    assert objective.fit_share() == pytest.approx(2 / 3)
    assert set(finished.scores) == {"single"}  # the pool held the best trial alone: no ensemble was tried
    assert len(finished.members) == 1


def test_screening_applies_to_large_single_objective_studies_only():
    settings = optuna_study.SearchSettings(
        sampler="tpe",
        pruner="none",
        n_trials=10,
        timeout_s=1,
        cv_folds=3,
        n_jobs=1,
        subsample_above_rows=1000,
        subsample_share=0.3,
    )

    assert screening_share(settings, 999) is None and screening_share(settings, 1000) == 0.3
    assert screening_share(dataclasses.replace(settings, subsample_trials=0), 10**6) is None
    assert screening_share(dataclasses.replace(settings, objectives=("score", "model_size")), 10**6) is None


def test_the_deadline_spares_trials_and_fits_until_one_trial_has_completed(mixed_frame, binary_spec):
    """The study needs a model: nothing stops before one configuration has completed, and a screened
    one will do (``final_candidates`` builds from it when nothing ran on every row)."""
    objective = CrossValidation(
        mixed_frame(60),
        binary_spec,
        3,
        parallel_trials=1,
        cores=1,
        seed=0,
        deadline=optuna_study.Deadline(time.time() - 1),
    )
    assert not objective._past_deadline()  # a boosting fit goes on: there is nothing to fall back on
    objective("linear", {"alpha": 1.0}, lambda step, value: None, subsample=0.5)

    assert objective._past_deadline()
    with pytest.raises(optuna_study.OutOfTime):
        objective("linear", {"alpha": 2.0}, lambda step, value: None)


@pytest.mark.parametrize(
    "budget, refit_budget_s, reproducible",
    [
        ("trials", None, True),
        ("time", None, False),
        ("trials", 30.0, False),
    ],
)
def test_a_budget_a_clock_decides_is_marked_not_reproducible_saying_why(budget, refit_budget_s, reproducible):
    from mlgate.modelling.ensemble import FinishSettings
    from mlgate.stages.tune import budget_record

    search = optuna_study.SearchSettings(
        sampler="tpe", pruner="median", n_trials=30, timeout_s=150, cv_folds=5, n_jobs=2, budget=budget
    )

    record = budget_record(search, FinishSettings(refit_budget_s=refit_budget_s))

    assert record["reproducible"] is reproducible and ("why" in record) is not reproducible
    assert record["kind"] == budget


@pytest.mark.parametrize("budget", ["trials", "time"])
def test_a_study_several_workers_share_is_not_reproducible_and_says_so(budget):
    from mlgate.modelling.ensemble import FinishSettings
    from mlgate.stages.tune import budget_record

    search = optuna_study.SearchSettings(
        sampler="tpe", pruner="median", n_trials=30, timeout_s=150, cv_folds=5, n_jobs=2, budget=budget, workers=3
    )

    record = budget_record(search, FinishSettings())

    assert record["kind"] == budget and record["workers"] == 3 and "batch" not in record
    assert record["reproducible"] is False and "search.workers 3" in record["why"]


def test_how_many_workers_run_the_study_is_not_part_of_its_name(project_root, mixed_frame, digest_once):
    from mlgate import config, project
    from mlgate.stages import tune

    params = config.read_params(project_root / "params.yaml")

    def name(**search) -> str:
        changed = {**params, "search": {**params["search"], **search}}
        return tune.study_name(tune.TuneSettings.parse(changed, project.data_spec(changed)), mixed_frame(30))

    # a worker started with other workers or heartbeat settings joins the same study; n_jobs means
    # nothing to workers, which run one trial each at a time
    assert name(workers=2) == name(workers=5, heartbeat_s=3) == name(workers=2, n_jobs=1)


def test_a_supervised_study_refuses_clustering_families_and_objectives(project_root):
    from mlgate import config, project
    from mlgate.errors import StageError
    from mlgate.stages import tune

    params = config.read_params(project_root / "params.yaml")
    spec = project.data_spec(params)
    with_kmeans = {
        **params,
        "model": {**params["model"], "kmeans": {"space": {"n_clusters": {"type": "int", "low": 2, "high": 4}}}},
    }
    with pytest.raises(StageError, match=r"model \['kmeans'\] are clustering families; a binary task searches"):
        tune.TuneSettings.parse(with_kmeans, spec)
    counting = {**params, "search": {**params["search"], "pruner": "none", "objectives": ["score", "n_clusters"]}}
    with pytest.raises(StageError, match="n_clusters applies to a clustering task"):
        tune.TuneSettings.parse(counting, spec)


def test_warm_configs_are_the_best_complete_full_fidelity_trials_of_searched_families_once_each():
    from mlgate.stages.tune import warm_configs

    trials = pd.DataFrame(
        {
            "trial": [0, 1, 2, 3, 4, 5, 6],
            "family": ["catboost", "linear", "catboost", "knn", "catboost", "linear", "catboost"],
            "state": ["COMPLETE", "COMPLETE", "PRUNED", "COMPLETE", "COMPLETE", "COMPLETE", "COMPLETE"],
            "cv_score": [0.84, 0.83, 0.90, 0.85, 0.86, 0.83, 0.95],
            "params": [
                '{"depth": 4}',
                '{"alpha": 1.0}',
                '{"depth": 9}',
                '{"k": 5}',
                '{"depth": 6}',
                '{"alpha": 1.0}',
                '{"depth": 8}',
            ],
            "subsample": [None, None, None, None, None, None, 0.25],
        }
    )

    found = warm_configs(trials, {"catboost", "linear"}, count=3, maximize=True)

    # pruned (trial 2), screened (6) and knn (no longer searched) left out; linear's repeat once
    assert found == [("catboost", {"depth": 6}), ("catboost", {"depth": 4}), ("linear", {"alpha": 1.0})]
    assert warm_configs(trials, {"catboost", "linear"}, count=1, maximize=False) == [("linear", {"alpha": 1.0})]


def test_warm_observations_are_every_scored_full_fidelity_trial_of_searched_families_in_trial_order():
    from mlgate.stages.tune import warm_observations

    trials = pd.DataFrame(
        {
            "trial": [0, 1, 2, 3, 4],
            "family": ["catboost", "linear", "catboost", "knn", "catboost"],
            "state": ["COMPLETE", "COMPLETE", "PRUNED", "COMPLETE", "COMPLETE"],
            "cv_score": [0.84, 0.83, 0.90, 0.85, 0.95],
            "params": ['{"depth": 4}', '{"alpha": 1.0}', '{"depth": 9}', '{"k": 5}', '{"depth": 8}'],
            "subsample": [None, None, None, None, 0.25],
        }
    )

    assert warm_observations(trials, {"catboost", "linear"}) == [
        ("catboost", {"depth": 4}, 0.84),
        ("linear", {"alpha": 1.0}, 0.83),
    ]


def test_a_deadline_lends_the_search_at_most_its_reserve():
    deadline = optuna_study.Deadline(at=time.time() + 100, reserve=20.0)
    assert 99 < deadline.left() <= 100 and 119 < deadline.reserve_left() <= 120

    deadline.lend(50.0)
    assert deadline.lent == 20.0 and 119 < deadline.left() <= 120
    deadline.lend(-3.0)  # a later, slower best trial takes it back
    assert deadline.lent == 0.0 and deadline.left() <= 100
    assert optuna_study.Deadline.after(10).reserve == 0.0


class _FitTimes:
    """A CrossValidation's two answers the refit reserve reads: a trial's mean fold fit (by trial number:
    ``_outcome``'s alpha), the share of the rows it fit on."""

    def __init__(self, fit_s: list[float]):
        self.fit_s = fit_s

    def result(self, family, params, subsample=None):
        return type("Result", (), {"fit_s": self.fit_s[int(params["alpha"])]})()

    def fit_share(self, subsample=None):
        return 0.5 * (subsample or 1.0)


def _reserve(fit_s, reserve_s=10.0, **finish):
    from mlgate.modelling.ensemble import FinishSettings
    from mlgate.stages.tune import RefitReserve

    settings = FinishSettings(refit_budget_s=reserve_s, refit="within_budget", **finish)
    deadline = optuna_study.Deadline.after(100, reserve=reserve_s)
    return RefitReserve(deadline, _FitTimes(fit_s), settings, maximize=True), deadline


def test_the_search_is_lent_what_the_refit_of_its_best_trials_would_not_need():
    reserve, deadline = _reserve([0.5, 1.0, 0.25, 9.0, 4.0], ensemble_candidates=3, max_members=2)
    assert deadline.lent == 0.0  # nothing known yet: the whole reserve is kept

    for number, score in enumerate((0.9, 0.8, 0.7)):
        reserve.update(_outcome(number, "COMPLETE", score))
    # the two slowest of the three best, each scaled to every row (fit on half of them): 2.0 + 1.0
    assert deadline.lent == pytest.approx(10.0 - 3.0)
    reserve.update(_outcome(1, "COMPLETE", 0.95))  # a re-run of trial 1's configuration: the finish drops it
    assert deadline.lent == pytest.approx(10.0 - 3.0)

    reserve.update(_outcome(3, "PRUNED", 0.99))  # only complete trials can be members
    reserve.update(_outcome(4, "COMPLETE", 0.6, family="catboost"))  # outside the best three, its family's best
    assert deadline.lent == pytest.approx(10.0 - 8.0 - 2.0)


def test_the_finish_refits_within_what_is_left_of_the_reserve_when_the_search_ends_late():
    from mlgate.modelling.ensemble import FinishSettings
    from mlgate.stages.tune import _refit_left

    settings = FinishSettings(refit_budget_s=4.0, refit="within_budget")
    overran = optuna_study.Deadline.after(-1.5, reserve=4.0)  # the last fold ended 1.5 s past the deadline
    on_time = optuna_study.Deadline.after(10.0, reserve=4.0)

    assert 2.4 < _refit_left(settings, overran).refit_budget_s <= 2.5
    assert _refit_left(settings, on_time).refit_budget_s == 4.0
    assert _refit_left(settings, None) is settings  # search.budget trials: no clock decides
    assert _refit_left(settings, optuna_study.Deadline.after(-9.0, reserve=4.0)).refit_budget_s == 0.0


def test_a_refit_that_would_need_more_than_the_reserve_is_lent_nothing():
    reserve, deadline = _reserve([30.0])
    reserve.update(_outcome(0, "COMPLETE", 0.9))
    assert deadline.lent == 0.0


def test_a_time_budget_study_runs_into_the_lent_reserve_and_stops_at_its_end():
    spaces = optuna_study.parse_spaces({"linear": {"space": {"alpha": {"type": "float", "low": 0.1, "high": 1.0}}}})
    settings = optuna_study.SearchSettings(
        sampler="random", pruner="none", n_trials=10_000, timeout_s=0.2, cv_folds=3, n_jobs=1, budget="time"
    )
    deadline = optuna_study.Deadline.after(settings.timeout_s, reserve=600.0)
    deadline.lend(0.3)

    def evaluate(family, params, report):  # stops as CrossValidation does, at the deadline as lent
        if deadline.expired():
            raise optuna_study.OutOfTime("no time left", final=True)
        time.sleep(0.02)
        return 0.5, [0.5]

    outcomes = optuna_study.optimize(
        spaces, evaluate, settings, maximize=True, seed=0, on_trial=lambda o: None, deadline=deadline
    )

    assert any(o.state == "COMPLETE" and o.end > deadline.at for o in outcomes)  # past the search's own time
    assert outcomes[-1].state == "PRUNED" and outcomes[-1].error == "no time left"  # ended by the lent deadline
