import dataclasses
import math
import time

import pytest

from mlgate import config
from mlgate.adapters import optuna_study

FOLDS = 3


def _settings(n_trials: int = 12, *, sampler: str = "tpe", pruner: str = "none") -> optuna_study.SearchSettings:
    return optuna_study.SearchSettings(
        sampler=sampler, pruner=pruner, n_trials=n_trials, timeout_s=60, cv_folds=FOLDS, n_jobs=1
    )


def _toy_spaces(first_x: float = 0.3) -> list[optuna_study.FamilySpace]:
    return optuna_study.parse_spaces(
        {
            "toy": {
                "fixed": {"size": 2},
                "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
                "first_trial": {"x": first_x},
            },
            "flat": {"fixed": {"size": 1}},
        }
    )


def _parabola(family, params, report):
    """Best at x = 0.3; the fixed-only family scores a constant."""
    score = -((params["x"] - 0.3) ** 2) if family == "toy" else -0.5
    folds = []
    for step in range(FOLDS):
        folds.append(score)
        report(step, score)
    return sum(folds) / len(folds), folds


def _optimize(evaluate, settings, spaces=None, seen=None):
    on_trial = seen.append if seen is not None else lambda outcome: None
    return optuna_study.optimize(spaces or _toy_spaces(), evaluate, settings, maximize=True, seed=0, on_trial=on_trial)


def test_parse_spaces_reads_the_committed_model_section(project_root):
    model_section = config.section(config.read_params(project_root / "params.yaml"), "model")

    spaces = {s.family: s for s in optuna_study.parse_spaces(model_section)}

    assert set(spaces) == set(model_section)
    assert spaces["catboost"].space["depth"] == optuna_study.ParamSpec("int", 3, 8)
    assert spaces["catboost"].space["learning_rate"].log is True
    assert spaces["linear"].first_trial == {"alpha": 1.0, "penalty": "l2", "class_weight": "none", "selection": "none"}
    assert spaces["linear"].space["keep_share"].when == {"selection": ("mutual_info", "model")}
    assert spaces["random_forest"].fixed == {"n_estimators": 200}


def test_parse_spaces_accepts_categorical_choices():
    [space] = optuna_study.parse_spaces({"toy": {"space": {"kind": {"type": "categorical", "choices": ["a", "b"]}}}})

    assert space.space["kind"].choices == ("a", "b")


@pytest.mark.parametrize(
    "model_section, message",
    [
        (
            {"toy": {"space": {"x": {"type": "float", "low": 2.0, "high": 1.0}}}},
            "model.toy.space.x: a float parameter needs low <= high",
        ),
        ({"toy": {"space": {"x": {"type": "int", "low": 1}}}}, "model.toy.space.x: a int parameter needs low <= high"),
        (
            {"toy": {"space": {"x": {"type": "uniform", "low": 0, "high": 1}}}},
            "model.toy.space.x: 'type' must be float, int or categorical",
        ),
        (
            {"toy": {"space": {"x": {"type": "categorical", "choices": []}}}},
            "model.toy.space.x: a categorical parameter needs",
        ),
        (
            {"toy": {"space": {"x": {"type": "int", "low": 1, "high": 3}}, "first_trial": {"y": 2}}},
            "model.toy.first_trial: ['y'] not in model.toy.space",
        ),
        ({"toy": {"fixed": {}, "spaces": {}}}, "model.toy: unknown key(s) ['spaces']"),
        ({}, "'model' selects no family"),
    ],
)
def test_parse_spaces_rejects_bad_specs(model_section, message):
    with pytest.raises(ValueError) as raised:
        optuna_study.parse_spaces(model_section)

    assert message in str(raised.value)


@pytest.mark.parametrize(
    "change",
    [
        {"sampler": "bayes"},
        {"sampler": "gp"},
        {"pruner": "hyperband"},
        {"n_trials": 0},
        {"cv_folds": 1},
        {"grid_points": 1},
        {"workers": 0},
        {"heartbeat_s": 0},
        {"warm_start_trials": 0},
        {"warm_start": True, "workers": 2},
    ],
)
def test_search_settings_reject_bad_values(change):
    values = {"sampler": "tpe", "pruner": "median", "n_trials": 5, "timeout_s": 10, "cv_folds": 3, "n_jobs": 1} | change

    with pytest.raises(ValueError, match="search"):
        optuna_study.SearchSettings(**values)


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


def test_queued_points_come_first_in_their_order_and_replace_their_familys_first_trial():
    """Queued configurations (a retraining's best first, then a portfolio's) run before any exploration;
    a family they cover skips its own first trial, others keep it; a family no longer searched, a
    repeated point and a parameter the space no longer has are left out."""
    warm = [
        ("toy", {"x": 0.31, "size": 2, "gone": 1}),
        ("retired", {"x": 0.5}),
        ("toy", {"x": 0.31}),
        ("toy", {"x": 0.9}),
    ]

    outcomes = optuna_study.optimize(
        _toy_spaces(), _parabola, _settings(6), maximize=True, seed=0, on_trial=lambda o: None, queued=warm
    )

    assert [(o.family, o.params) for o in outcomes[:3]] == [
        ("toy", {"size": 2, "x": 0.31}),
        ("toy", {"size": 2, "x": 0.9}),
        ("flat", {"size": 1}),
    ]
    assert all(o.params != {"size": 2, "x": 0.3} for o in outcomes[:3])  # toy's own first trial gave way


def _peaked_at(peak: float):
    def evaluate(family, params, report):
        score = -((params["x"] - peak) ** 2) if family == "toy" else -0.5
        for step in range(FOLDS):
            report(step, score)
        return score, [score] * FOLDS

    return evaluate


def test_prior_trials_keep_to_the_current_space():
    """A previous study's scored configurations the sampler may learn from: a family no longer searched,
    a value outside the space, a parameter the space lost and a score that is not finite say nothing."""
    observations = [
        ("toy", {"x": 0.4, "size": 2, "gone": 7}, -0.1),
        ("retired", {"x": 0.5}, -0.2),
        ("toy", {"x": 1.5}, -0.3),  # outside [0, 1]
        ("toy", {"x": 0.6}, float("nan")),
        ("flat", {"size": 1}, -0.5),
    ]

    prior = optuna_study.prior_trials(_toy_spaces(), observations)

    assert [(t.params, t.value) for t in prior] == [({"family": "toy", "toy.x": 0.4}, -0.1), ({"family": "flat"}, -0.5)]


def test_the_prior_leads_the_sampler_to_where_the_previous_study_scored_well_and_stays_out_of_the_study(tmp_path):
    """With a previous study's trials (best near x = 0.8, as the new data's), TPE's first sampled trials lie
    near 0.8; without them they are its random start-up trials. The prior is never stored in the study:
    its trials are numbered from 0 and a resumed study reuses exactly its own."""
    peak = 0.8
    observations = [("toy", {"x": x / 20}, -((x / 20 - peak) ** 2)) for x in range(21)] + [("flat", {"size": 1}, -0.5)]
    url = optuna_study.storage_url(str(tmp_path / "optuna.db"))

    def search(prior, seen=None, trials=10):
        return optuna_study.optimize(
            _toy_spaces(),
            _peaked_at(peak),
            _settings(trials),
            maximize=True,
            seed=0,
            on_trial=(seen or []).append,
            storage=url if prior else None,
            study_name="warm",
            prior=prior,
        )

    def distance(outcomes):
        sampled = [o.params["x"] for o in outcomes[2:] if o.family == "toy"]  # after the two first trials
        return sum(abs(x - peak) for x in sampled) / len(sampled)

    informed, cold = search(observations), search(())

    assert distance(informed) < 0.05 < 0.15 < distance(cold)
    assert [o.number for o in informed] == list(range(10))
    seen = []
    resumed = search(observations, seen)
    assert len(resumed) == 10 and all(o.reused for o in seen)


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


def _bad_above_half(family, params, report):
    if family == "toy" and params["x"] > 0.5:
        folds = []
        for step in range(FOLDS):
            folds.append(-10.0)
            report(step, -10.0)
        return -10.0, folds
    return _parabola(family, params, report)


@pytest.mark.parametrize("pruner", ["median", "successive_halving"])
def test_pruners_stop_trials_with_bad_fold_scores(pruner):
    outcomes = _optimize(_bad_above_half, _settings(20, sampler="random", pruner=pruner))

    pruned = [o for o in outcomes if o.state == "PRUNED"]
    assert len(outcomes) == 20
    assert pruned and all(len(o.fold_scores) < FOLDS for o in pruned)
    if pruner == "median":  # below the median: the bad toy trials, and the flat family's -0.5 once toy does better
        assert all(o.score <= -0.5 for o in pruned) and any(o.score == -10.0 for o in pruned)
    else:  # successive halving keeps only the top third at each rung, whatever the family
        best = max(o.score for o in outcomes if o.state == "COMPLETE")
        assert all(o.score < best for o in pruned)
        assert sum(o.score == -10.0 for o in pruned) >= 3


def test_without_a_pruner_no_trial_is_pruned():
    outcomes = _optimize(_parabola, _settings(12, sampler="random", pruner="none"))

    assert {o.state for o in outcomes} == {"COMPLETE"}


def test_median_pruner_follows_a_minimize_direction():
    def high_above_half(family, params, report):
        score = 10.0 if family == "toy" and params["x"] > 0.5 else 0.1
        for step in range(FOLDS):
            report(step, score)
        return score, [score] * FOLDS

    outcomes = optuna_study.optimize(
        _toy_spaces(),
        high_above_half,
        _settings(20, sampler="random", pruner="median"),
        maximize=False,
        seed=0,
        on_trial=lambda outcome: None,
    )

    pruned = [o for o in outcomes if o.state == "PRUNED"]
    assert pruned
    assert all(o.params["x"] > 0.5 for o in pruned)


def test_parse_spaces_rejects_a_log_scale_from_zero():
    with pytest.raises(ValueError, match=r"model\.toy\.space\.x"):
        optuna_study.parse_spaces({"toy": {"space": {"x": {"type": "float", "low": 0.0, "high": 1.0, "log": True}}}})


def test_a_trial_that_fails_while_sampling_still_yields_a_fail_outcome():
    unsampleable = optuna_study.FamilySpace("toy", {}, {"x": optuna_study.ParamSpec("float", 0.0, 1.0, log=True)}, {})
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


# --- samplers, grids, conditional dimensions ----------------------------------------------------


def _numeric_spaces() -> list[optuna_study.FamilySpace]:
    """One family, two numeric dimensions (what CMA-ES and NSGA-II model) and a categorical one."""
    return optuna_study.parse_spaces(
        {
            "toy": {
                "space": {
                    "x": {"type": "float", "low": 0.0, "high": 1.0},
                    "n": {"type": "int", "low": 1, "high": 64, "log": True},
                    "kind": {"type": "categorical", "choices": ["a", "b"]},
                },
                "first_trial": {"x": 0.5, "n": 8, "kind": "a"},
            }
        }
    )


def _bowl(family, params, report):
    score = -((params["x"] - 0.3) ** 2) - (math.log2(params["n"]) - 3) ** 2 / 36 - (params["kind"] == "b") * 0.1
    for step in range(FOLDS):
        report(step, score)
    return score, [score] * FOLDS


@pytest.mark.parametrize("sampler", optuna_study.SAMPLERS)
def test_every_sampler_runs_past_its_startup_trials_and_stays_in_the_space(sampler):
    outcomes = _optimize(_bowl, _settings(16, sampler=sampler), spaces=_numeric_spaces())

    assert len(outcomes) == 16
    assert all(o.state == "COMPLETE" for o in outcomes)
    assert outcomes[0].params == {"x": 0.5, "n": 8, "kind": "a"}
    assert all(0 <= o.params["x"] <= 1 and 1 <= o.params["n"] <= 64 and o.params["kind"] in "ab" for o in outcomes)
    assert len({(o.params["x"], o.params["n"], o.params["kind"]) for o in outcomes}) > 8


@pytest.mark.parametrize("sampler", ["random", "tpe", "cmaes", "nsga2", "grid"])
def test_every_sampler_is_seeded(sampler):
    first = _optimize(_bowl, _settings(10, sampler=sampler), spaces=_numeric_spaces())
    again = _optimize(_bowl, _settings(10, sampler=sampler), spaces=_numeric_spaces())

    assert [o.params for o in first] == [o.params for o in again]


def test_grid_values_are_spaced_log_aware_and_include_the_first_trial_value():
    log_float = optuna_study.ParamSpec("float", 0.01, 1.0, log=True)
    int_range = optuna_study.ParamSpec("int", 3, 8)

    assert optuna_study.grid_values(log_float, 3) == [0.01, 0.1, 1.0]
    assert optuna_study.grid_values(log_float, 3, first=0.05) == [0.01, 0.05, 1.0]
    assert optuna_study.grid_values(int_range, 3) == [3, 6, 8]
    assert optuna_study.grid_values(optuna_study.ParamSpec("int", 1, 3), 5) == [1, 2, 3]
    assert optuna_study.grid_values(optuna_study.ParamSpec("float", 0.0, 1.0, grid=(0.2, 0.4)), 3, first=1.0) == [
        0.2,
        0.4,
        1.0,
    ]
    assert optuna_study.grid_values(optuna_study.ParamSpec("categorical", choices=("a", "b")), 3) == ["a", "b"]


def _grid_spaces() -> list[optuna_study.FamilySpace]:
    """Two families with their own grids: x 2 times mode (plain, or tuned at depth 1, 2, 3) = 8 points, and 3."""
    return optuna_study.parse_spaces(
        {
            "toy": {
                "space": {
                    "x": {"type": "float", "low": 0.0, "high": 1.0, "grid": [0.3, 0.9]},
                    "mode": {"type": "categorical", "choices": ["plain", "tuned"]},
                    "depth": {"type": "int", "low": 1, "high": 3, "when": {"mode": ["tuned"]}},
                },
                "first_trial": {"x": 0.3, "mode": "plain"},
            },
            "other": {"fixed": {"size": 1}, "space": {"y": {"type": "float", "low": 1.0, "high": 100.0, "log": True}}},
        }
    )


def _grid_score(family, params, report):
    score = -abs(params.get("x", 0.5) - 0.3) - params.get("depth", 0) / 10
    for step in range(FOLDS):
        report(step, score)
    return score, [score] * FOLDS


def _points(outcomes) -> list[tuple]:
    return [(o.family, tuple(sorted(o.params.items()))) for o in outcomes]


def test_grid_covers_each_familys_own_grid_exactly_once_then_stops():
    outcomes = _optimize(_grid_score, _settings(50, sampler="grid"), spaces=_grid_spaces())

    points = _points(outcomes)
    assert len(points) == len(set(points)) == 11
    assert outcomes[0].params == {"x": 0.3, "mode": "plain"}
    assert sorted(o.params["y"] for o in outcomes if o.family == "other") == [1.0, 10.0, 100.0]
    assert all(("depth" in o.params) == (o.params["mode"] == "tuned") for o in outcomes if o.family == "toy")


def test_a_conditional_dimension_is_searched_only_under_its_choices():
    outcomes = _optimize(_grid_score, _settings(20, sampler="random"), spaces=_grid_spaces())

    toy = [o for o in outcomes if o.family == "toy"]
    assert {o.params["mode"] for o in toy} == {"plain", "tuned"}
    assert all(("depth" in o.params) == (o.params["mode"] == "tuned") for o in toy)


@pytest.mark.parametrize(
    "space, first, message",
    [
        (
            {"x": {"type": "float", "low": 0, "high": 1, "when": {"mode": ["a"]}}},
            {},
            "'mode' must be a categorical parameter listed before",
        ),
        (
            {
                "x": {"type": "float", "low": 0, "high": 1},
                "y": {"type": "int", "low": 0, "high": 2, "when": {"x": [1]}},
            },
            {},
            "'x' must be a categorical parameter",
        ),
        (
            {
                "mode": {"type": "categorical", "choices": ["a", "b"]},
                "x": {"type": "float", "low": 0, "high": 1, "when": {"mode": ["c"]}},
            },
            {},
            "['c'] not among the choices of 'mode'",
        ),
        (
            {
                "mode": {"type": "categorical", "choices": ["a", "b"]},
                "x": {"type": "float", "low": 0, "high": 1, "when": {"mode": ["b"]}},
            },
            {"mode": "a", "x": 0.5},
            "first_trial: 'x' is searched only when mode is one of ['b']",
        ),
        (
            {"x": {"type": "float", "low": 0, "high": 1, "grid": [0.5, 2.0]}},
            {},
            "grid value(s) [2.0] are not floats within [0, 1]",
        ),
        ({"n": {"type": "int", "low": 0, "high": 9, "grid": [1.5]}}, {}, "grid value(s) [1.5] are not ints"),
        ({"k": {"type": "categorical", "choices": ["a"], "grid": ["a"]}}, {}, "'grid' is for float and int parameters"),
        ({"x": {"type": "float", "low": 0, "high": 1, "step": 0.1}}, {}, "unknown key(s) ['step']"),
    ],
)
def test_parse_spaces_rejects_bad_conditions_and_grids(space, first, message):
    with pytest.raises(ValueError) as raised:
        optuna_study.parse_spaces({"toy": {"space": space, "first_trial": first}})

    assert message in str(raised.value)


# --- a stored study resumes -------------------------------------------------------------------------


class _Interrupting:
    """Evaluates like ``_parabola`` but raises KeyboardInterrupt (Ctrl-C) on call ``stop_at``."""

    def __init__(self, stop_at: int | None = None, score=_parabola):
        self.stop_at, self.score, self.calls = stop_at, score, []

    def __call__(self, family, params, report):
        self.calls.append((family, dict(params)))
        if len(self.calls) == self.stop_at:
            raise KeyboardInterrupt
        return self.score(family, params, report)


def _stored(tmp_path, evaluate, settings, spaces=None, seen=None, origin="first", subsample=None):
    return optuna_study.optimize(
        spaces or _toy_spaces(),
        evaluate,
        settings,
        maximize=True,
        seed=0,
        on_trial=(seen.append if seen is not None else lambda outcome: None),
        storage=optuna_study.storage_url(str(tmp_path / "studies" / "optuna.db")),
        study_name="tiny-abc",
        origin=origin,
        subsample=subsample,
        deadline=None if settings.reproducible else optuna_study.Deadline.after(settings.timeout_s),
    )


def test_an_interrupted_study_resumes_with_its_finished_trials(tmp_path):
    interrupted = _Interrupting(stop_at=5)
    with pytest.raises(KeyboardInterrupt):
        _stored(tmp_path, interrupted, _settings(10))
    resumed, seen = _Interrupting(), []

    outcomes = _stored(tmp_path, resumed, _settings(10), seen=seen, origin="second")

    assert len(outcomes) == 10
    assert [o.number for o in outcomes if o.reused] == [0, 1, 2, 3]
    assert {o.origin for o in outcomes if o.reused} == {"first"}
    assert {o.origin for o in outcomes if not o.reused} == {"second"}
    assert [o.reused for o in seen[:4]] == [True] * 4 and not any(o.reused for o in seen[4:])
    assert len(resumed.calls) == 6  # only the missing trials ran
    assert resumed.calls[0] == interrupted.calls[4]  # the interrupted one first, with its parameters
    assert outcomes[0].params == {"size": 2, "x": 0.3} and outcomes[0].score == 0.0


def test_a_complete_stored_study_runs_nothing_and_a_larger_budget_extends_it(tmp_path):
    _stored(tmp_path, _parabola, _settings(6))
    again, more = _Interrupting(), _Interrupting()

    unchanged = _stored(tmp_path, again, _settings(6))
    extended = _stored(tmp_path, more, _settings(9))

    assert again.calls == [] and len(unchanged) == 6 and all(o.reused for o in unchanged)
    assert len(more.calls) == 3 and len(extended) == 9


def test_a_trial_left_running_by_a_killed_process_is_retried_under_a_time_budget(tmp_path):
    import optuna

    _stored(tmp_path, _parabola, dataclasses.replace(_settings(3), budget="time"))
    url = optuna_study.storage_url(str(tmp_path / "studies" / "optuna.db"))
    study = optuna.load_study(study_name="tiny-abc", storage=url)
    study.enqueue_trial({"family": "flat"})
    orphan = study.ask({"family": optuna.distributions.CategoricalDistribution(["toy", "flat"])})
    resumed = _Interrupting()

    outcomes = _stored(tmp_path, resumed, dataclasses.replace(_settings(5), budget="time"))

    assert len(outcomes) == 5 and orphan.number not in [o.number for o in outcomes]
    assert resumed.calls[0] == ("flat", {"size": 1})
    states = {t.number: t.state.name for t in optuna.load_study(study_name="tiny-abc", storage=url).trials}
    assert states[orphan.number] == "FAIL"


def test_a_trial_left_running_by_a_killed_process_runs_again_as_itself(tmp_path):
    import optuna

    _stored(tmp_path, _parabola, _settings(3))
    url = optuna_study.storage_url(str(tmp_path / "studies" / "optuna.db"))
    study = optuna.load_study(study_name="tiny-abc", storage=url)
    study.enqueue_trial({"family": "flat"})
    orphan = study.ask({"family": optuna.distributions.CategoricalDistribution(["toy", "flat"])})
    resumed = _Interrupting()

    outcomes = _stored(tmp_path, resumed, _settings(5))

    assert [o.number for o in outcomes] == [0, 1, 2, 3, 4] and outcomes[orphan.number].state == "COMPLETE"
    assert resumed.calls[0] == ("flat", {"size": 1})


def _signature(outcomes):
    return [(o.number, o.family, o.params, o.state, o.fold_scores) for o in outcomes]


def _noisy_parabola(family, params, report):
    """Like ``_parabola``, with fold scores below and above the median, so the pruner has work."""
    folds = []
    for step in range(FOLDS):
        folds.append(-((params.get("x", 0.9) - 0.3) ** 2) - 0.01 * step)
        report(step, folds[-1])
    return sum(folds) / len(folds), folds


@pytest.mark.parametrize("pruner", ["median", "successive_halving"])
def test_parallel_trials_in_batches_give_the_same_study_whichever_thread_finishes_first(pruner):
    settings = dataclasses.replace(_settings(16, pruner=pruner), n_jobs=2)

    def first_thread_slow(family, params, report):
        """The even-numbered trial of each batch finishes last, unlike the unhurried run."""
        if params.get("x", 0.0) * 1000 % 2 < 1:
            time.sleep(0.01)
        return _noisy_parabola(family, params, report)

    unhurried, hurried = _optimize(_noisy_parabola, settings), _optimize(first_thread_slow, settings)

    assert _signature(unhurried) == _signature(hurried)
    assert {o.state for o in unhurried} >= {"COMPLETE", "PRUNED"}


def test_a_study_killed_mid_batch_resumes_to_the_study_an_uninterrupted_run_makes(tmp_path):
    settings = dataclasses.replace(_settings(12, pruner="median"), n_jobs=2)
    whole = _optimize(_noisy_parabola, settings)
    with pytest.raises(KeyboardInterrupt):
        _stored(tmp_path, _Interrupting(stop_at=7, score=_noisy_parabola), settings)

    resumed = _stored(tmp_path, _Interrupting(score=_noisy_parabola), settings)

    assert _signature(resumed) == _signature(whole)
    assert sum(o.reused for o in resumed) == 6


def test_an_interrupted_grid_resumes_and_still_covers_every_point_once(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _stored(
            tmp_path, _Interrupting(stop_at=4, score=_grid_score), _settings(50, sampler="grid"), spaces=_grid_spaces()
        )

    outcomes = _stored(tmp_path, _Interrupting(score=_grid_score), _settings(50, sampler="grid"), spaces=_grid_spaces())

    points = _points(outcomes)
    assert len(points) == len(set(points)) == 11
    assert sum(o.reused for o in outcomes) == 3


def test_parallel_trials_on_sqlite_run_each_queued_first_trial_once(tmp_path):
    """Without a lock both threads could claim one queued trial (SQLite ignores SELECT ... FOR UPDATE)."""
    spaces = optuna_study.parse_spaces({f"f{i:02d}": {"fixed": {"i": i}} for i in range(16)})
    settings = optuna_study.SearchSettings(
        sampler="random", pruner="none", n_trials=16, timeout_s=60, cv_folds=FOLDS, n_jobs=2
    )

    def slow(family, params, report):
        time.sleep(0.005)
        return float(params["i"]), [float(params["i"])] * FOLDS

    outcomes = _stored(tmp_path, slow, settings, spaces=spaces)

    assert {o.state for o in outcomes} == {"COMPLETE"}
    assert sorted(o.family for o in outcomes) == [s.family for s in spaces]


def test_a_regression_study_drops_classification_only_parameters():
    section = {
        "linear": {
            "space": {
                "alpha": {"type": "float", "low": 0.1, "high": 1.0},
                "class_weight": {"type": "categorical", "choices": ["none", "balanced"]},
            },
            "first_trial": {"alpha": 0.5, "class_weight": "none"},
        }
    }
    regression = optuna_study.parse_spaces(section, task="regression")[0]
    binary = optuna_study.parse_spaces(section, task="binary")[0]
    assert set(regression.space) == {"alpha"} and regression.first_trial == {"alpha": 0.5}
    assert set(binary.space) == {"alpha", "class_weight"}


def test_a_final_out_of_time_stops_the_study():
    spaces = optuna_study.parse_spaces({"linear": {"space": {"alpha": {"type": "float", "low": 0.1, "high": 1.0}}}})
    settings = optuna_study.SearchSettings(
        sampler="random", pruner="none", n_trials=50, timeout_s=600, cv_folds=3, n_jobs=1, budget="time"
    )
    calls = []

    def evaluate(family, params, report):
        calls.append(params)
        if len(calls) >= 3:
            raise optuna_study.OutOfTime("no time left", final=True)
        return 0.5, [0.5]

    outcomes = optuna_study.optimize(
        spaces,
        evaluate,
        settings,
        maximize=True,
        seed=0,
        on_trial=lambda o: None,
        deadline=optuna_study.Deadline.after(settings.timeout_s),
    )

    assert len(outcomes) == 3 and [o.state for o in outcomes] == ["COMPLETE", "COMPLETE", "PRUNED"]
    assert outcomes[-1].error == "no time left"


def test_pareto_front_keeps_the_points_nothing_dominates():
    points = [(0.90, 5.0), (0.85, 1.0), (0.80, 2.0), (0.90, 6.0), (0.70, 0.5)]
    assert optuna_study.pareto_front(points, maximize_first=True) == [True, True, False, False, True]
    assert optuna_study.pareto_front([(1.0, 1.0), (2.0, 0.5)], maximize_first=False) == [True, True]


def test_a_multi_objective_study_returns_the_costs_and_prunes_nothing():
    settings = optuna_study.SearchSettings(
        sampler="nsga2",
        pruner="none",
        n_trials=12,
        timeout_s=60,
        cv_folds=FOLDS,
        n_jobs=1,
        objectives=("score", "model_size"),
    )

    outcomes = optuna_study.optimize(
        _toy_spaces(),
        _parabola,
        settings,
        maximize=True,
        seed=0,
        on_trial=lambda o: None,
        costs=lambda family, params: [params.get("x", 0.0) * 10],
    )

    assert len(outcomes) == 12 and {o.state for o in outcomes} == {"COMPLETE"}
    assert all(o.costs == (o.params.get("x", 0.0) * 10,) for o in outcomes)


@pytest.mark.parametrize(
    "objectives,pruner,message",
    [
        (("score", "latency"), "none", "search.objectives"),
        (("model_size",), "none", "search.objectives"),
        (("score", "model_size"), "median", "search.pruner must be none"),
    ],
)
def test_bad_objectives_are_named(objectives, pruner, message):
    with pytest.raises(ValueError, match=message):
        optuna_study.SearchSettings(
            sampler="nsga2", pruner=pruner, n_trials=5, timeout_s=10, cv_folds=3, n_jobs=1, objectives=objectives
        )


def test_objectives_load_from_params_as_a_list():
    params = {
        "search": {
            "sampler": "nsga2",
            "pruner": "none",
            "n_trials": 5,
            "timeout_s": 10,
            "cv_folds": 3,
            "n_jobs": 1,
            "objectives": ["score", "predict_time"],
        }
    }
    assert config.load(optuna_study.SearchSettings, "search", params).objectives == ("score", "predict_time")


@pytest.mark.parametrize(
    "change, field",
    [
        ({"subsample_trials": -1}, "search.subsample_trials"),
        ({"subsample_share": 0.0}, "search.subsample_share"),
        ({"subsample_share": 1.0}, "search.subsample_share"),
        ({"subsample_above_rows": 0}, "search.subsample_above_rows"),
    ],
)
def test_bad_subsample_settings_name_the_field(change, field):
    values = {"sampler": "tpe", "pruner": "median", "n_trials": 5, "timeout_s": 10, "cv_folds": 3, "n_jobs": 1} | change

    with pytest.raises(ValueError, match=field):
        optuna_study.SearchSettings(**values)


class _Screened:
    """An evaluation that records the subsample it was asked for; a screened toy trial scores as if
    the last 0.1 of x were missing, so screening and full scores differ."""

    def __init__(self):
        self.calls = []

    def __call__(self, family, params, report, subsample=None):
        self.calls.append((family, dict(params), subsample))
        score, folds = _parabola(family, params, lambda step, value: None)
        if subsample is not None:
            folds = [f - 0.1 for f in folds]
        for step, value in enumerate(folds):
            report(step, value)
        return sum(folds) / len(folds), folds


def _screening_settings(n_trials: int, screening: int = 4, pruner: str = "none") -> optuna_study.SearchSettings:
    return dataclasses.replace(_settings(n_trials, sampler="random", pruner=pruner), subsample_trials=screening)


def test_the_first_trials_screen_on_a_subsample_then_the_best_of_each_family_runs_on_all_rows():
    evaluate = _Screened()

    outcomes = _optimize_screening(evaluate, _screening_settings(8))

    assert [o.subsample for o in outcomes] == [0.25] * 4 + [None] * 4
    assert [share for _, _, share in evaluate.calls] == [0.25] * 4 + [None] * 4
    screened = [o for o in outcomes[:4] if o.state == "COMPLETE"]
    best_toy = max((o for o in screened if o.family == "toy"), key=lambda o: o.score)
    best_flat = max((o for o in screened if o.family == "flat"), key=lambda o: o.score)
    promoted = sorted([best_toy, best_flat], key=lambda o: o.score, reverse=True)  # ceil(4 / 3) = 2 of them
    assert [(o.family, o.params) for o in outcomes[4:6]] == [(o.family, o.params) for o in promoted]
    assert outcomes[4].score == pytest.approx(promoted[0].score + 0.1)


def test_without_large_data_no_trial_screens():
    evaluate = _Screened()

    outcomes = optuna_study.optimize(
        _toy_spaces(), evaluate, _screening_settings(6), maximize=True, seed=0, on_trial=lambda o: None
    )

    assert all(o.subsample is None for o in outcomes) and all(share is None for _, _, share in evaluate.calls)


def test_screening_trials_do_not_judge_the_full_ones_for_the_pruner():
    def flattered_when_screened(family, params, report, subsample=None):
        score = 10.0 if subsample else -0.5
        for step in range(FOLDS):
            report(step, score)
        return score, [score] * FOLDS

    spaces = optuna_study.parse_spaces(
        {"flat": {"fixed": {"size": 1}}, "toy": {"space": {"x": {"type": "float", "low": 0.0, "high": 1.0}}}}
    )
    outcomes = _optimize_screening(
        flattered_when_screened, _screening_settings(12, screening=6, pruner="median"), spaces
    )

    # with the screened 10s in the pruner's history, every full trial's -0.5 would fall below the median
    assert [o.state for o in outcomes] == ["COMPLETE"] * 12


def test_a_resumed_study_keeps_which_trials_screened_and_still_promotes(tmp_path):
    first = _stored(tmp_path, _Screened(), _screening_settings(3), subsample=0.25)
    assert [o.subsample for o in first] == [0.25] * 3

    evaluate = _Screened()
    resumed = _stored(tmp_path, evaluate, _screening_settings(8), subsample=0.25)

    assert [o.subsample for o in resumed] == [0.25] * 4 + [None] * 4
    assert [o.reused for o in resumed[:3]] == [True] * 3
    assert [share for _, _, share in evaluate.calls] == [0.25] + [None] * 4
    best = max((o for o in resumed[:4] if o.state == "COMPLETE"), key=lambda o: o.score)
    assert (resumed[4].family, resumed[4].params) == (best.family, best.params)


def _optimize_screening(evaluate, settings, spaces=None):
    return optuna_study.optimize(
        spaces or _toy_spaces(), evaluate, settings, maximize=True, seed=0, on_trial=lambda o: None, subsample=0.25
    )


@pytest.mark.parametrize(
    "url, shared",
    [
        ("postgresql+psycopg://user@db:5432/optuna", True),
        ("postgresql://db/optuna", True),
        ("sqlite:////tmp/optuna.db", False),
        ("mysql+pymysql://db/optuna", False),
    ],
)
def test_only_postgresql_holds_a_study_several_processes_share(url, shared):
    assert optuna_study.is_shared_storage(url) is shared
    if not shared:
        with pytest.raises(ValueError, match="needs PostgreSQL"):
            optuna_study._shared_storage(url, 10.0)


def test_a_stop_inside_a_deferred_block_acts_once_the_block_ends():
    """SIGTERM (as `mlgate worker` handles it: KeyboardInterrupt) waits for the trial's bookkeeping."""
    import os
    import signal

    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    finished = []
    try:
        with pytest.raises(KeyboardInterrupt), optuna_study.stop_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            finished.append("told and recorded")
        assert finished == ["told and recorded"]
        assert signal.getsignal(signal.SIGTERM) is signal.default_int_handler
        with pytest.raises(KeyboardInterrupt), optuna_study.stop_deferred():  # asked twice: at once
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            finished.append("never")
        assert finished == ["told and recorded"]
    finally:
        signal.signal(signal.SIGTERM, previous)
