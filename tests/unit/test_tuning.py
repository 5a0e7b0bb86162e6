import math

import pytest

from mlgate import config, tuning

FOLDS = 3


def _settings(n_trials: int = 12, *, sampler: str = "tpe", pruner: str = "none") -> tuning.SearchSettings:
    return tuning.SearchSettings(sampler=sampler, pruner=pruner, n_trials=n_trials, timeout_s=60, cv_folds=FOLDS, n_jobs=1)


def _toy_spaces(first_x: float = 0.3) -> list[tuning.FamilySpace]:
    return tuning.parse_spaces({
        "toy": {"fixed": {"size": 2}, "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
                "first_trial": {"x": first_x}},
        "flat": {"fixed": {"size": 1}},
    })


def _parabola(family, params, report):
    """Best at x = 0.3; the fixed-only family scores a constant."""
    score = -(params["x"] - 0.3) ** 2 if family == "toy" else -0.5
    folds = []
    for step in range(FOLDS):
        folds.append(score)
        report(step, score)
    return sum(folds) / len(folds), folds


def _optimize(evaluate, settings, spaces=None, seen=None):
    on_trial = (seen.append if seen is not None else lambda outcome: None)
    return tuning.optimize(spaces or _toy_spaces(), evaluate, settings, maximize=True, seed=0, on_trial=on_trial)


def test_parse_spaces_reads_the_committed_model_section(project_root):
    model_section = config.section(config.read_params(project_root / "params.yaml"), "model")

    spaces = {s.family: s for s in tuning.parse_spaces(model_section)}

    assert set(spaces) == set(model_section)
    assert spaces["catboost"].space["depth"] == tuning.ParamSpec("int", 3, 8)
    assert spaces["catboost"].space["learning_rate"].log is True
    assert spaces["linear"].first_trial == {"alpha": 1.0, "selection": "none", "keep_share": 1.0}
    assert spaces["random_forest"].fixed == {"n_estimators": 200}


def test_parse_spaces_accepts_categorical_choices():
    [space] = tuning.parse_spaces({"toy": {"space": {"kind": {"type": "categorical", "choices": ["a", "b"]}}}})

    assert space.space["kind"].choices == ("a", "b")


@pytest.mark.parametrize("model_section, message", [
    ({"toy": {"space": {"x": {"type": "float", "low": 2.0, "high": 1.0}}}}, "model.toy.space.x: a float parameter needs low <= high"),
    ({"toy": {"space": {"x": {"type": "int", "low": 1}}}}, "model.toy.space.x: a int parameter needs low <= high"),
    ({"toy": {"space": {"x": {"type": "uniform", "low": 0, "high": 1}}}}, "model.toy.space.x: 'type' must be float, int or categorical"),
    ({"toy": {"space": {"x": {"type": "categorical", "choices": []}}}}, "model.toy.space.x: a categorical parameter needs"),
    ({"toy": {"space": {"x": {"type": "int", "low": 1, "high": 3}}, "first_trial": {"y": 2}}}, "model.toy.first_trial: ['y'] not in model.toy.space"),
    ({"toy": {"fixed": {}, "spaces": {}}}, "model.toy: unknown key(s) ['spaces']"),
    ({}, "'model' selects no family"),
])
def test_parse_spaces_rejects_bad_specs(model_section, message):
    with pytest.raises(ValueError) as raised:
        tuning.parse_spaces(model_section)

    assert message in str(raised.value)


@pytest.mark.parametrize("change", [{"sampler": "grid"}, {"pruner": "hyperband"}, {"n_trials": 0}, {"cv_folds": 1}])
def test_search_settings_reject_bad_values(change):
    values = {"sampler": "tpe", "pruner": "median", "n_trials": 5, "timeout_s": 10, "cv_folds": 3, "n_jobs": 1} | change

    with pytest.raises(ValueError, match="search"):
        tuning.SearchSettings(**values)


def test_optimize_runs_every_trial_and_reports_each_once():
    seen = []

    outcomes = _optimize(_parabola, _settings(12), seen=seen)

    assert [o.number for o in outcomes] == list(range(12))
    assert sorted(o.number for o in seen) == list(range(12))
    assert all(o.state == "COMPLETE" for o in outcomes)
    assert all(len(o.fold_scores) == FOLDS for o in outcomes)


def test_first_trial_points_come_first():
    outcomes = _optimize(_parabola, _settings(12))

    assert (outcomes[0].family, outcomes[0].params) == ("toy", {"size": 2, "x": 0.3})
    assert (outcomes[1].family, outcomes[1].params) == ("flat", {"size": 1})
    assert outcomes[0].score == 0.0


def test_searched_params_stay_in_their_space_and_keep_fixed_values():
    outcomes = _optimize(_parabola, _settings(12, sampler="random"))

    toy = [o for o in outcomes if o.family == "toy"]
    assert len(toy) > 1
    assert all(0.0 <= o.params["x"] <= 1.0 and o.params["size"] == 2 for o in toy)


def test_a_failing_evaluation_is_a_fail_outcome_and_the_study_continues():
    def fails_above_half(family, params, report):
        if family == "toy" and params["x"] > 0.5:
            raise RuntimeError(f"x too large: {params['x']:.2f}")
        return _parabola(family, params, report)

    outcomes = _optimize(fails_above_half, _settings(12, sampler="random"))

    failed = [o for o in outcomes if o.state == "FAIL"]
    assert len(outcomes) == 12
    assert failed
    assert all(o.error.startswith("RuntimeError: x too large") and o.score is None for o in failed)
    assert any(o.state == "COMPLETE" and o.number > failed[0].number for o in outcomes)


def test_median_pruner_stops_trials_with_bad_fold_scores():
    def bad_above_half(family, params, report):
        if family == "toy" and params["x"] > 0.5:
            folds = []
            for step in range(FOLDS):
                folds.append(-10.0)
                report(step, -10.0)
            return -10.0, folds
        return _parabola(family, params, report)

    outcomes = _optimize(bad_above_half, _settings(20, sampler="random", pruner="median"))

    pruned = [o for o in outcomes if o.state == "PRUNED"]
    assert len(outcomes) == 20
    assert pruned
    assert all(o.params["x"] > 0.5 and o.score == -10.0 and len(o.fold_scores) < FOLDS for o in pruned)


def test_without_a_pruner_no_trial_is_pruned():
    outcomes = _optimize(_parabola, _settings(12, sampler="random", pruner="none"))

    assert {o.state for o in outcomes} == {"COMPLETE"}


def test_median_pruner_follows_a_minimize_direction():
    def high_above_half(family, params, report):
        score = 10.0 if family == "toy" and params["x"] > 0.5 else 0.1
        for step in range(FOLDS):
            report(step, score)
        return score, [score] * FOLDS

    outcomes = tuning.optimize(_toy_spaces(), high_above_half, _settings(20, sampler="random", pruner="median"),
                               maximize=False, seed=0, on_trial=lambda outcome: None)

    pruned = [o for o in outcomes if o.state == "PRUNED"]
    assert pruned
    assert all(o.params["x"] > 0.5 for o in pruned)


def test_parse_spaces_rejects_a_log_scale_from_zero():
    with pytest.raises(ValueError, match=r"model\.toy\.space\.x"):
        tuning.parse_spaces({"toy": {"space": {"x": {"type": "float", "low": 0.0, "high": 1.0, "log": True}}}})


def test_a_trial_that_fails_while_sampling_still_yields_a_fail_outcome():
    unsampleable = tuning.FamilySpace("toy", {}, {"x": tuning.ParamSpec("float", 0.0, 1.0, log=True)}, {})
    seen = []

    outcomes = _optimize(_parabola, _settings(3, sampler="random"), spaces=[unsampleable], seen=seen)

    assert [o.state for o in outcomes] == ["FAIL"] * 3
    assert len(seen) == 3


def test_a_nan_score_is_not_a_complete_outcome():
    def nan_for_toy(family, params, report):
        if family == "toy":
            return math.nan, [math.nan] * FOLDS
        return _parabola(family, params, report)

    outcomes = _optimize(nan_for_toy, _settings(4))

    assert all(o.state != "COMPLETE" for o in outcomes if o.family == "toy")
