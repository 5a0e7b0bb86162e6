import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression

from mlgate.modelling import ensemble
from mlgate.modelling.ensemble import Candidate, FinalModel, FinishSettings


def noisy_views(n=2000, seed=0):
    """A binary target and three scorers: two independent noisy views of the signal, one noise."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    y = (signal + rng.normal(scale=0.5, size=n) > 0).astype(int)

    def view(scale):
        return 1 / (1 + np.exp(-(signal + rng.normal(scale=scale, size=n))))

    folds = np.arange(n) % 5
    return y, folds, {"a": view(1.0), "b": view(1.0), "noise": rng.random(n)}


def candidates_from(views, y, folds, metric="roc_auc"):
    return [
        Candidate(i, name, {}, ensemble.fold_score(metric, y, p, folds), p, refit_s=1.0)
        for i, (name, p) in enumerate(views.items())
    ]


def test_caruana_weights_pick_the_better_columns_and_sum_to_one():
    y, _, views = noisy_views()
    weights = ensemble.caruana_weights(np.column_stack(list(views.values())), y, "roc_auc", rounds=20)
    assert weights.sum() == pytest.approx(1.0)
    assert weights[2] == 0  # the noise column never helps
    assert weights[0] > 0 and weights[1] > 0  # averaging two independent views beats either


def test_caruana_minimises_a_loss_metric():
    rng = np.random.default_rng(1)
    y = rng.normal(size=500)
    good, bad = y + rng.normal(scale=0.1, size=500), y + rng.normal(scale=3.0, size=500)
    weights = ensemble.caruana_weights(np.column_stack([bad, good]), y, "rmse", rounds=10)
    assert weights[1] > 0.8


def test_ensemble_of_two_independent_views_beats_the_best_trial_cross_fitted():
    y, folds, views = noisy_views()
    choice = ensemble.choose_ensemble(
        candidates_from(views, y, folds), y, folds, task="binary", metric="roc_auc", settings=FinishSettings()
    )
    assert choice.method in ("caruana", "stacking")
    assert choice.score > choice.scores["single"]
    assert {m.family for m in choice.members} >= {"a", "b"}
    assert len(choice.predictions) == len(y)


def test_a_single_good_model_is_kept_alone_when_the_others_only_add_noise():
    rng = np.random.default_rng(2)
    n = 1500
    y = rng.integers(0, 2, n)
    good = np.clip(y * 0.6 + rng.random(n) * 0.4, 0, 1)
    folds = np.arange(n) % 5
    views = {"good": good, "noise1": rng.random(n), "noise2": rng.random(n)}
    choice = ensemble.choose_ensemble(
        candidates_from(views, y, folds),
        y,
        folds,
        task="binary",
        metric="roc_auc",
        settings=FinishSettings(ensemble="caruana"),
    )
    assert [m.family for m in choice.members] == ["good"]


def test_ensemble_none_returns_the_best_trial():
    y, folds, views = noisy_views()
    choice = ensemble.choose_ensemble(
        candidates_from(views, y, folds),
        y,
        folds,
        task="binary",
        metric="roc_auc",
        settings=FinishSettings(ensemble="none"),
    )
    assert choice.method == "single" and choice.combiner is None and set(choice.scores) == {"single"}


def test_a_family_below_the_top_candidates_still_joins_the_ensemble():
    """Near-copies of one family can fill every top place; another family's best stays a candidate."""
    y, folds, views = noisy_views()
    rng = np.random.default_rng(4)
    copies = [
        Candidate(i, "a", {"copy": i}, 0.0, np.clip(views["a"] + rng.normal(scale=1e-3, size=len(y)), 0, 1))
        for i in range(5)
    ]
    copies = [
        Candidate(c.trial, c.family, c.params, ensemble.fold_score("roc_auc", y, c.predictions, folds), c.predictions)
        for c in copies
    ]
    other = Candidate(9, "b", {}, min(c.score for c in copies) - 0.01, views["b"])
    choice = ensemble.choose_ensemble(
        [*copies, other], y, folds, task="binary", metric="roc_auc", settings=FinishSettings(ensemble_candidates=3)
    )
    assert "stacking" in choice.scores
    assert {m.family for m in choice.members} == {"a", "b"}


def test_refit_budget_limits_the_members():
    y, folds, views = noisy_views()
    cands = candidates_from(views, y, folds)
    choice = ensemble.choose_ensemble(
        cands, y, folds, task="binary", metric="roc_auc", settings=FinishSettings(refit_budget_s=1.5)
    )
    assert len(choice.members) == 1


@pytest.mark.parametrize(
    ("refits_s", "max_members", "budget_s", "pooled"),
    [
        ([1.0] * 6, 4, 4.0, 6),  # any four of them refit in 4 s: the whole pool is Caruana's to choose from
        ([1.0] * 6, 4, 3.5, 3),
        ([3.0, 1.0, 1.0, 0.5], 3, 4.0, 2),  # 3 s + 1 s fits; any third member would not
        ([5.0, 1.0], 4, 4.0, 1),  # the best stays whatever its refit costs
    ],
)
def test_the_pool_holds_the_best_candidates_any_ensemble_of_which_refits_within_the_budget(
    refits_s, max_members, budget_s, pooled
):
    pool = [Candidate(i, "a", {"i": i}, 1.0 - i / 10, np.zeros(3), refit_s=s) for i, s in enumerate(refits_s)]
    kept = ensemble._within_refit_budget(pool, budget_s, max_members)
    assert [c.trial for c in kept] == list(range(pooled))


def test_kept_models_let_the_ensemble_use_members_whose_refit_would_not_fit():
    y, folds, views = noisy_views()
    settings = FinishSettings(refit_budget_s=1.5, refit="within_budget")
    choice = ensemble.choose_ensemble(
        candidates_from(views, y, folds), y, folds, task="binary", metric="roc_auc", settings=settings, models_kept=True
    )
    assert len(choice.members) == 2  # the two views, each refit costing 1 s of the 1.5


@pytest.mark.parametrize(
    ("refit", "expected"),
    [
        ("always", [True, True, True, True]),
        ("never", [False, False, True, False]),  # the member without a kept model is refit all the same
        ("within_budget", [False, True, True, False]),  # by weight: 0.4 (3 s) fits, 0.3 (4 s) and 0.1 do not
    ],
)
def test_train_refits_what_the_budget_affords_heaviest_member_first(refit, expected):
    settings = FinishSettings(refit=refit, refit_budget_s=None if refit != "within_budget" else 5.0)
    estimates, weights = [4.0, 3.0, None, 2.5], [0.3, 0.4, 0.2, 0.1]
    assert ensemble.refits(estimates, weights, settings) == expected


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"refit": "sometimes"}, "finish.refit must be one of"),
        ({"refit": "within_budget"}, "finish.refit within_budget needs finish.refit_budget_s"),
    ],
)
def test_a_refit_setting_that_cannot_work_is_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        FinishSettings(**fields)


def test_a_final_model_takes_the_members_given_fitted_and_fits_the_others():
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"x": rng.normal(size=200)})
    y = 2 * X["x"].to_numpy() + rng.normal(scale=0.1, size=200)
    fitted_elsewhere = LinearRegression().fit(X.iloc[:50], y[:50])
    model = FinalModel(
        [LinearRegression(), LinearRegression()],
        combiner={"method": "caruana", "weights": [0.5, 0.5]},
        task="regression",
    ).fit(X, y, fitted=[fitted_elsewhere, None])
    assert model.members_[0] is fitted_elsewhere
    assert model.members_[1].coef_ == pytest.approx(LinearRegression().fit(X, y).coef_)


def test_rows_outside_the_validation_are_ignored():
    y, folds, views = noisy_views()
    folds = folds.copy()
    folds[:500] = -1  # e.g. a holdout: these rows were never predicted
    views = {k: np.where(folds >= 0, v, np.nan) for k, v in views.items()}
    cands = [Candidate(i, k, {}, 0.0, v) for i, (k, v) in enumerate(views.items())]
    choice = ensemble.choose_ensemble(cands, y, folds, task="binary", metric="roc_auc", settings=FinishSettings())
    assert np.isfinite(choice.score) and len(choice.predictions) == 1500


def test_stacking_regression_uses_non_negative_weights():
    rng = np.random.default_rng(3)
    y = rng.normal(size=400)
    matrix = np.column_stack([y + rng.normal(scale=0.3, size=400), -y])
    combiner = ensemble.stacking_fit(matrix, y, "regression")
    assert combiner["coef"][1] == 0 and combiner["coef"][0] > 0
    assert ensemble.combine(combiner, matrix, "regression").shape == (400,)


def _nudged(matrix: np.ndarray, seed: int = 7) -> np.ndarray:
    """``matrix`` a few units in the last place off, as another CPU's BLAS kernel leaves the members' outputs."""
    signs = np.random.default_rng(seed).choice([-1.0, 1.0], matrix.shape)
    return matrix * (1 + 4 * np.finfo(float).eps * signs)


def test_the_fitted_combiner_and_calibration_ignore_differences_in_the_last_bits():
    """best_params.json holds them: a run on a machine whose BLAS sums in another order writes the same bytes."""
    y, _, views = noisy_views()
    members = np.column_stack([views["a"], views["b"]])
    for task, matrix in (("binary", members), ("regression", members * 3)):
        assert ensemble.stacking_fit(matrix, y, task) == ensemble.stacking_fit(_nudged(matrix), y, task)
    sigmoid = [ensemble.calibrator_fit("sigmoid", p, y) for p in (views["a"], _nudged(views["a"]))]
    assert sigmoid[0] == sigmoid[1]
    settings = FinishSettings(threshold="f1")
    thresholds = [ensemble.choose_threshold(p, y, settings) for p in (views["a"], _nudged(views["a"]))]
    assert thresholds[0] == thresholds[1]
    folds = np.arange(len(y)) % 5
    losses = [
        ensemble.choose_calibration(p, y, folds, metric="roc_auc", setting="auto").log_loss
        for p in (views["a"], _nudged(views["a"]))
    ]
    assert losses[0] == losses[1]


def test_sigmoid_calibration_repairs_overconfident_probabilities():
    rng = np.random.default_rng(4)
    truth = rng.random(4000)
    y = (rng.random(4000) < truth).astype(int)
    overconfident = 1 / (1 + np.exp(-6 * (truth - 0.5)))  # same ranking, too extreme
    folds = np.arange(4000) % 5
    choice = ensemble.choose_calibration(overconfident, y, folds, metric="roc_auc", setting="auto")
    assert choice.calibrator is not None
    assert choice.log_loss[choice.calibrator["method"]] < choice.log_loss["none"]
    calibrated = ensemble.calibrate(choice.calibrator, overconfident)
    assert np.all(np.diff(calibrated[np.argsort(overconfident)]) >= -1e-12)  # order kept


def test_calibration_is_left_off_when_the_probabilities_are_already_calibrated():
    rng = np.random.default_rng(5)
    p = rng.random(3000)
    y = (rng.random(3000) < p).astype(int)
    choice = ensemble.choose_calibration(p, y, np.arange(3000) % 5, metric="roc_auc", setting="auto")
    assert choice.log_loss["none"] <= min(choice.log_loss.values()) + 0.002


def test_threshold_for_f1_is_below_half_for_a_rare_class():
    rng = np.random.default_rng(6)
    p = rng.random(5000) ** 3
    y = (rng.random(5000) < p).astype(int)
    chosen = ensemble.choose_threshold(p, y, FinishSettings(threshold="f1"))
    assert chosen["threshold"] < 0.5 and chosen["value"] >= chosen["value_at_0.5"]


def test_threshold_for_cost_moves_with_the_costs():
    rng = np.random.default_rng(7)
    p = rng.random(5000)
    y = (rng.random(5000) < p).astype(int)
    cheap_misses = ensemble.choose_threshold(
        p, y, FinishSettings(threshold="cost", false_negative_cost=1, false_positive_cost=4)
    )
    costly_misses = ensemble.choose_threshold(
        p, y, FinishSettings(threshold="cost", false_negative_cost=4, false_positive_cost=1)
    )
    # calibrated probabilities: the Bayes threshold is fp / (fp + fn)
    assert cheap_misses["threshold"] == pytest.approx(0.8, abs=0.06)
    assert costly_misses["threshold"] == pytest.approx(0.2, abs=0.06)


def test_threshold_none_keeps_half():
    assert ensemble.choose_threshold(np.array([0.2, 0.8]), np.array([0, 1]), FinishSettings(threshold="none")) == {
        "objective": "none",
        "threshold": 0.5,
    }


@pytest.mark.parametrize("field,value", [("ensemble", "bagging"), ("calibration", "beta"), ("threshold", "auc")])
def test_finish_settings_name_the_bad_field(field, value):
    with pytest.raises(ValueError, match=f"finish.{field}"):
        FinishSettings(**{field: value})


def test_final_model_combines_calibrates_and_thresholds():
    X = pd.DataFrame({"x": np.linspace(-3, 3, 200)})
    y = (X["x"] > 0).astype(int).to_numpy()
    combiner = {"method": "caruana", "weights": [0.5, 0.5]}
    model = FinalModel(
        [LogisticRegression(), DummyClassifier(strategy="prior")],
        combiner=combiner,
        calibrator={"method": "sigmoid", "coef": 1.0, "intercept": 0.0},
        threshold=0.3,
    ).fit(X, y)
    probability = model.predict_proba(X)[:, 1]
    expected = 0.5 * LogisticRegression().fit(X, y).predict_proba(X)[:, 1] + 0.5 * y.mean()
    assert probability == pytest.approx(expected, abs=1e-6)  # an identity sigmoid map
    assert np.array_equal(model.predict(X), (probability >= 0.3).astype(int))
    assert model.sole_pipeline is None


def test_final_model_regression_and_sole_pipeline():
    X = pd.DataFrame({"x": np.arange(50.0)})
    y = 2 * X["x"].to_numpy()
    single = FinalModel([LinearRegression()], task="regression").fit(X, y)
    assert single.predict(X) == pytest.approx(y)
    assert isinstance(single.sole_pipeline, LinearRegression)
    stacked = FinalModel(
        [LinearRegression(), DummyRegressor()],
        task="regression",
        combiner={"method": "stacking", "coef": [1.0, 0.0], "intercept": 0.0},
    ).fit(X, y)
    assert stacked.predict(X) == pytest.approx(y)


def test_ensembles_hold_at_most_max_members_and_stacking_one_per_family():
    y, folds, views = noisy_views()
    rng = np.random.default_rng(9)
    more = {
        f"view{i}": 1 / (1 + np.exp(-(np.log(views["a"] / (1 - views["a"])) + rng.normal(scale=0.8, size=len(y)))))
        for i in range(6)
    }
    cands = candidates_from({**views, **more}, y, folds)
    for method in ("caruana", "stacking"):
        choice = ensemble.choose_ensemble(
            cands, y, folds, task="binary", metric="roc_auc", settings=FinishSettings(ensemble=method, max_members=3)
        )
        assert len(choice.members) <= 3
    weights = ensemble.caruana_weights(np.column_stack([c.predictions for c in cands]), y, "roc_auc", 30, max_members=2)
    assert np.count_nonzero(weights) <= 2
    twins = [
        Candidate(0, "linear", {}, 0.9, views["a"]),
        Candidate(1, "linear", {"alpha": 2}, 0.89, views["b"]),
        Candidate(2, "knn", {}, 0.8, views["noise"]),
    ]
    stacked = ensemble.choose_ensemble(
        twins, y, folds, task="binary", metric="roc_auc", settings=FinishSettings(ensemble="stacking")
    )
    assert stacked.method == "single"  # one linear trial and noise: nothing to stack
