import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning

from mlgate.modelling import models
from mlgate.modelling.data import DataSpec, conform, target_vector
from tests.helpers import SMALL_PARAMS


def _features(frame: pd.DataFrame, spec: DataSpec) -> pd.DataFrame:
    return conform(frame, spec)[spec.numeric_features + spec.categorical_features]


def _with_unseen_category(X: pd.DataFrame) -> pd.DataFrame:
    return X.assign(plan=["platinum"] * len(X))


@pytest.fixture
def binary_data(mixed_frame, binary_spec):
    frame = mixed_frame(40, with_missing=True)
    return _features(frame, binary_spec), target_vector(frame, binary_spec)


@pytest.fixture
def regression_data(mixed_frame, regression_spec):
    frame = mixed_frame(40, "regression", with_missing=True)
    return _features(frame, regression_spec), target_vector(frame, regression_spec)


def test_every_family_has_small_test_params():
    assert set(SMALL_PARAMS) == set(models.FAMILIES)


@pytest.mark.parametrize("family", sorted(SMALL_PARAMS))
def test_binary_family_fits_with_missing_values_and_scores_unseen_categories(family, binary_spec, binary_data):
    X, y = binary_data

    pipeline = models.build(family, SMALL_PARAMS[family], binary_spec).fit(X, y)
    prediction, probability = models.predict(pipeline, X, "binary")
    _, unseen_probability = models.predict(pipeline, _with_unseen_category(X), "binary")

    assert (prediction == y).mean() >= 0.8
    assert set(np.unique(prediction)) <= {0, 1}
    assert ((probability >= 0) & (probability <= 1)).all()
    assert unseen_probability.shape == (len(X),)
    assert np.isfinite(unseen_probability).all()


@pytest.mark.parametrize("family", sorted(SMALL_PARAMS))
def test_regression_family_fits_with_missing_values_and_scores_unseen_categories(
    family, regression_spec, regression_data
):
    X, y = regression_data

    pipeline = models.build(family, SMALL_PARAMS[family], regression_spec).fit(X, y)
    prediction, probability = models.predict(pipeline, X, "regression")
    unseen_prediction, _ = models.predict(pipeline, _with_unseen_category(X), "regression")

    assert probability is None
    assert np.corrcoef(prediction, y)[0, 1] > 0.8
    assert np.isfinite(unseen_prediction).all()


@pytest.mark.parametrize("family", sorted(SMALL_PARAMS))
def test_clone_refits_to_the_same_predictions(family, binary_spec, binary_data):
    X, y = binary_data
    pipeline = models.build(family, SMALL_PARAMS[family], binary_spec)

    cloned = clone(pipeline)
    _, original = models.predict(pipeline.fit(X, y), X, "binary")
    _, refitted = models.predict(cloned.fit(X, y), X, "binary")

    assert cloned is not pipeline
    np.testing.assert_allclose(refitted, original)


def test_an_unknown_family_is_named(binary_spec):
    with pytest.raises(ValueError, match=r"model\.xgboost"):
        models.build("xgboost", {}, binary_spec)


@pytest.mark.parametrize("family", sorted(SMALL_PARAMS))
def test_an_unknown_constructor_argument_names_the_family(family, binary_spec):
    with pytest.raises(ValueError, match=rf"model\.{family}: .*not_a_param"):
        models.build(family, {"not_a_param": 1}, binary_spec)


def test_linear_alpha_is_the_inverse_of_logistic_c(binary_spec):
    pipeline = models.build("linear", {"alpha": 4.0}, binary_spec)

    assert pipeline.named_steps["model"].C == 0.25


def test_build_does_not_modify_its_params(binary_spec):
    params = {"alpha": 2.0}

    models.build("linear", params, binary_spec)

    assert params == {"alpha": 2.0}


def test_catboost_gives_missing_categories_their_own_level_without_touching_the_input():
    X = pd.DataFrame({"plan": ["basic", np.nan, None, "pro"] * 5, "charges": [1.0, np.nan, 3.0, 4.0] * 5})
    y = np.array([0, 1, 1, 0] * 5)

    model = models.CatBoostClassifierModel({"iterations": 5}, threads=1, seed=0).fit(X, y)

    assert model.categorical_ == ["plan"]
    assert model._prepare(X)["plan"].tolist()[:3] == ["basic", models.MISSING_CATEGORY, models.MISSING_CATEGORY]
    assert model.predict_proba(X).shape == (20, 2)
    assert X["plan"].isna().sum() == 10


def test_catboost_calls_are_serialised_and_may_use_every_core():
    from mlgate.modelling import models

    assert models.exclusive("catboost") is models.exclusive("catboost")
    assert models.threads_for("catboost", cores=2, parallel_trials=2) == 2
    assert models.threads_for("linear", cores=2, parallel_trials=2) == 1
    with models.exclusive("linear"), models.exclusive("random_forest"):
        pass  # other families take no lock, so they may nest and overlap freely


def test_linear_elastic_net_is_a_searched_choice(binary_spec, regression_spec, binary_data):
    X, y = binary_data

    logistic = models.build("linear", {"alpha": 2.0, "penalty": "elasticnet", "l1_ratio": 0.3}, binary_spec)
    regression = models.build("linear", {"alpha": 2.0, "penalty": "elasticnet", "l1_ratio": 0.3}, regression_spec)

    estimator = logistic.named_steps["model"]
    assert (estimator.solver, estimator.l1_ratio, estimator.C) == ("saga", 0.3, 0.5)
    assert isinstance(regression.named_steps["model"], models.ElasticNetRegressor)
    assert models.predict(logistic.fit(X, y), X, "binary")[1].shape == (len(X),)
    with pytest.raises(ValueError, match="model.linear: penalty must be l2 or elasticnet"):
        models.build("linear", {"penalty": "l1"}, binary_spec)


def test_elastic_net_alpha_is_on_ridges_scale():
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = X @ np.array([1.0, 2.0, 3.0]) + rng.normal(size=200)

    elastic = models.ElasticNetRegressor(alpha=50.0, l1_ratio=0.0).fit(X, y)

    np.testing.assert_allclose(elastic.coef_, Ridge(alpha=50.0).fit(X, y).coef_, rtol=1e-4)


def test_elastic_net_stops_at_its_pass_cap_without_a_convergence_warning_also_when_fits_run_in_threads():
    """A weak penalty on many correlated columns does not converge; the fit stops at 1,000 passes quietly,
    whatever other trials' fits do meanwhile (a search fits in threads; catch_warnings is not thread-safe)."""
    import warnings
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(0)
    base = rng.normal(size=(300, 5))
    X = np.hstack([base, base + 1e-6 * rng.normal(size=(300, 5))])
    y = base @ np.arange(1.0, 6.0) + rng.normal(size=300)

    with warnings.catch_warnings(record=True) as shown, ThreadPoolExecutor(4) as pool:
        fitted = list(pool.map(lambda _: models.ElasticNetRegressor(alpha=1e-6, l1_ratio=0.5).fit(X, y), range(8)))

    assert not [w for w in shown if issubclass(w.category, ConvergenceWarning)]
    assert all(elastic.model_.n_iter_ == 1000 for elastic in fitted)
    assert np.corrcoef(fitted[0].predict(X), y)[0, 1] > 0.95


def test_hist_gradient_boosting_splits_categoricals_natively_and_treats_unseen_as_missing(binary_spec, binary_data):
    X, y = binary_data

    pipeline = models.build("hist_gradient_boosting", SMALL_PARAMS["hist_gradient_boosting"], binary_spec).fit(X, y)

    estimator = pipeline.named_steps["model"]
    assert sorted(estimator.categories_["plan"]) == ["basic", "plus", "pro"]
    assert estimator.model_.is_categorical_.tolist() == [False, False, True]
    unseen = models.predict(pipeline, X.assign(plan="platinum"), "binary")[1]
    missing = models.predict(pipeline, X.assign(plan=np.nan), "binary")[1]
    np.testing.assert_allclose(unseen, missing)


def test_hist_gradient_boosting_keeps_the_most_frequent_categories_up_to_max_bins():
    X = pd.DataFrame({"code": [f"c{i % 40}" for i in range(400)] + ["c0"] * 40, "x": np.arange(440.0)})
    y = np.arange(440) % 2

    model = models.HistGradientBoostingClassifierModel({"max_iter": 5, "max_bins": 10}).fit(X, y)

    assert len(model.categories_["code"]) == 10
    assert model.categories_["code"][0] == "c0"
    assert model.predict_proba(X).shape == (440, 2)


def test_mlp_stops_early_by_default_and_builds_its_layers(binary_spec):
    estimator = models.build("mlp", {"hidden_units": 32, "hidden_layers": 2}, binary_spec).named_steps["model"]

    assert estimator.early_stopping is True
    assert estimator.hidden_layer_sizes == (32, 32)


@pytest.mark.parametrize(
    "family, threads",
    [("catboost", 2), ("hist_gradient_boosting", 1), ("lightgbm", 1), ("extra_trees", 1), ("knn", 1), ("mlp", 1)],
)
def test_threads_per_family_with_two_parallel_trials_on_two_cores(family, threads):
    assert models.threads_for(family, cores=2, parallel_trials=2) == threads
    assert models.threads_for(family, cores=2, parallel_trials=1) == 2


@pytest.mark.parametrize(
    "family,argument,value",
    [
        ("catboost", "auto_class_weights", "Balanced"),
        ("linear", "class_weight", "balanced"),
        ("random_forest", "class_weight", "balanced"),
        ("extra_trees", "class_weight", "balanced"),
        ("hist_gradient_boosting", "class_weight", "balanced"),
        ("lightgbm", "class_weight", "balanced"),
    ],
)
def test_balanced_class_weight_becomes_the_familys_own_argument(family, argument, value, binary_spec, binary_data):
    def arguments(estimator):
        return estimator.params if isinstance(estimator, models._BuiltAtFit) else estimator.get_params()

    model = models.build(family, {**SMALL_PARAMS[family], "class_weight": "balanced"}, binary_spec)
    plain = models.build(family, {**SMALL_PARAMS[family], "class_weight": "none"}, binary_spec)
    assert arguments(model[-1])[argument] == value
    assert arguments(plain[-1]).get(argument) is None
    model.fit(*binary_data)


def test_class_weight_is_refused_where_it_means_nothing(binary_spec, regression_spec):
    with pytest.raises(ValueError, match="model.knn: class_weight"):
        models.build("knn", {"class_weight": "balanced"}, binary_spec)
    with pytest.raises(ValueError, match="model.linear: class_weight"):
        models.build("linear", {"class_weight": "balanced"}, regression_spec)
    with pytest.raises(ValueError, match="none or balanced"):
        models.build("linear", {"class_weight": "heavy"}, binary_spec)


def test_predict_uses_the_models_decision_threshold(binary_spec, binary_data):
    X, y = binary_data
    pipeline = models.build("linear", SMALL_PARAMS["linear"], binary_spec).fit(X, y)
    labels, probability = models.predict(pipeline, X, "binary")
    assert np.array_equal(labels, (probability >= 0.5).astype(int))
    pipeline.threshold = 0.9
    labels, _ = models.predict(pipeline, X, "binary")
    assert np.array_equal(labels, (probability >= 0.9).astype(int))


@pytest.mark.parametrize("family", ["random_forest", "extra_trees", "knn"])
def test_serial_predictions_keeps_the_predictions_on_one_thread(family, binary_spec, binary_data):
    X, y = binary_data
    fitted = models.build(family, SMALL_PARAMS[family], binary_spec, threads=2).fit(X, y)
    before = fitted.predict_proba(X)

    models.serial_predictions(fitted)

    assert fitted[-1].n_jobs == 1
    assert np.allclose(fitted.predict_proba(X), before)


def _noisy(rows: int, task: str = "binary", seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """A weak signal in one column, noise in the rest: boosting at a high rate overfits within tens of trees."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "signal": rng.normal(size=rows),
            "noise": rng.normal(size=rows),
            "plan": rng.choice(["basic", "plus", "pro"], rows).astype(object),
        }
    )
    latent = 0.5 * X["signal"].to_numpy() + rng.normal(size=rows)
    return X, ((latent > 0).astype(np.int64) if task == "binary" else latent)


FAST_STOPPING = {"iterations": 400, "learning_rate": 0.5, "depth": 4, "early_stopping_rounds": 10}


LIGHTGBM_STOPPING = {"n_estimators": 400, "learning_rate": 0.5, "num_leaves": 8, "early_stopping_rounds": 10}


@pytest.mark.parametrize(
    "estimator_cls, params, task, first_round",  # CatBoost counts rounds from 0, LightGBM from 1
    [
        (models.CatBoostClassifierModel, FAST_STOPPING, "binary", 0),
        (models.CatBoostRegressorModel, FAST_STOPPING, "regression", 0),
        (models.LightGBMClassifierModel, LIGHTGBM_STOPPING, "binary", 1),
        (models.LightGBMRegressorModel, LIGHTGBM_STOPPING, "regression", 1),
    ],
)
def test_a_boosting_family_stops_early_on_a_held_out_share_and_keeps_its_best_trees(
    estimator_cls, params, task, first_round, early_stopping_from_1000_rows
):
    X, y = _noisy(1_200, task)

    model = estimator_cls(params, threads=1, seed=0).fit(X, y)

    assert model.best_iteration_ is not None
    assert model.tree_count_ == model.best_iteration_ + 1 - first_round < 100


@pytest.mark.parametrize(
    "rows, params", [(999, FAST_STOPPING), (1_200, {**FAST_STOPPING, "early_stopping_rounds": None})]
)
def test_catboost_fits_every_tree_below_the_row_floor_or_without_rounds(rows, params, early_stopping_from_1000_rows):
    X, y = _noisy(rows)

    model = models.CatBoostClassifierModel(params, threads=1, seed=0).fit(X, y)

    assert model.tree_count_ == 400 and model.best_iteration_ is None


def test_catboost_early_stopping_is_deterministic_for_a_seed(early_stopping_from_1000_rows):
    X, y = _noisy(1_200)

    first, again = (models.CatBoostClassifierModel(FAST_STOPPING, threads=2, seed=3).fit(X, y) for _ in range(2))

    assert first.tree_count_ == again.tree_count_
    np.testing.assert_array_equal(first.predict_proba(X), again.predict_proba(X))


def test_the_early_stopping_share_is_held_out_by_class():
    y = np.array([1] * 100 + [0] * 900)

    fit_rows, stop_rows = models._early_stopping_split(y, classify=True, seed=0)

    assert len(stop_rows) == 100 and y[stop_rows].sum() == 10
    assert not set(fit_rows) & set(stop_rows) and len(fit_rows) + len(stop_rows) == 1000


@pytest.mark.parametrize("rounds", [0, -5, 2.5, "10", True])
def test_bad_early_stopping_rounds_are_named(rounds, binary_spec):
    with pytest.raises(ValueError, match="model.catboost: early_stopping_rounds must be a positive integer or null"):
        models.build("catboost", {"iterations": 10, "early_stopping_rounds": rounds}, binary_spec)
    with pytest.raises(ValueError, match="model.lightgbm: early_stopping_rounds must be a positive integer or null"):
        models.build("lightgbm", {"n_estimators": 10, "early_stopping_rounds": rounds}, binary_spec)


@pytest.mark.parametrize(
    "estimator_cls, task", [(models.LightGBMClassifierModel, "binary"), (models.LightGBMRegressorModel, "regression")]
)
def test_lightgbm_gives_the_same_model_for_a_seed_whatever_its_threads(
    estimator_cls, task, early_stopping_from_1000_rows
):
    """deterministic, with row-wise histograms: a trial's model is the refit's on any core count."""
    X, y = _noisy(1_200, task)

    on_two, on_one = (estimator_cls(LIGHTGBM_STOPPING, threads=threads, seed=0).fit(X, y) for threads in (2, 1))

    assert on_two.tree_count_ == on_one.tree_count_
    np.testing.assert_array_equal(on_two.predict(X), on_one.predict(X))


def test_lightgbm_fits_every_round_below_the_row_floor():
    X, y = _noisy(models.LIGHTGBM_EARLY_STOPPING_MIN_ROWS - 1)

    model = models.LightGBMClassifierModel(LIGHTGBM_STOPPING, threads=1, seed=0).fit(X, y)

    assert model.tree_count_ == 400 and model.best_iteration_ is None


@pytest.mark.parametrize("family", ["catboost", "lightgbm"])
@pytest.mark.parametrize("rows", [999, 1_200])  # below and above the early-stopping floor
def test_a_boosting_fit_told_to_stop_keeps_the_trees_it_has_for_that_fit_only(
    family, rows, early_stopping_from_1000_rows
):
    """A search's trial at its deadline: the fit ends after the tree it is on and the model predicts; the
    next fit (a refit, or a kept model fitted again) runs in full."""
    from sklearn.pipeline import Pipeline

    X, y = _noisy(rows)
    estimator_cls = models.CatBoostClassifierModel if family == "catboost" else models.LightGBMClassifierModel
    params = {**(FAST_STOPPING if family == "catboost" else LIGHTGBM_STOPPING), "early_stopping_rounds": 50}
    pipeline = Pipeline([("model", estimator_cls(params, threads=1, seed=0))])
    asked = []

    models.stop_fit_when(pipeline, lambda: asked.append(1) or len(asked) >= 3)
    pipeline.fit(X, y)

    assert len(asked) == 3 and 1 <= models.trees(pipeline) <= 3  # CatBoost keeps the best of them
    assert np.isfinite(models.predict(pipeline, X, "binary")[1]).all()
    assert pipeline.steps[-1][1].stop_when is None  # nothing stale in a kept model
    pipeline.fit(X, y)
    assert models.trees(pipeline) == estimator_cls(params, threads=1, seed=0).fit(X, y).tree_count_
    assert len(asked) == 3


@pytest.mark.parametrize("family", sorted(SMALL_PARAMS))
def test_every_family_fitted_under_a_deadline_pickles_without_the_clock(family, binary_spec, binary_data):
    """The search sizes every trial's model by pickling it; a clock that holds the search's lock must not
    be left on a family that never asks it (HistGradientBoosting's trials failed so)."""
    import pickle
    import threading

    X, y = binary_data
    lock = threading.Lock()
    pipeline = models.build(family, SMALL_PARAMS[family], binary_spec)

    models.stop_fit_when(pipeline, lambda: lock.locked())
    pipeline.fit(X, y)

    assert pickle.loads(pickle.dumps(pipeline)).predict(X).shape == (len(X),)


def test_lightgbm_splits_categoricals_natively_and_treats_unseen_as_missing(binary_spec, binary_data):
    X, y = binary_data

    pipeline = models.build("lightgbm", SMALL_PARAMS["lightgbm"], binary_spec).fit(X, y)

    estimator = pipeline.named_steps["model"]
    assert estimator.categories_ == {"plan": ["basic", "plus", "pro"]}
    unseen = models.predict(pipeline, X.assign(plan="platinum"), "binary")[1]
    missing = models.predict(pipeline, X.assign(plan=np.nan), "binary")[1]
    np.testing.assert_array_equal(unseen, missing)


def test_refit_params_carry_the_trees_early_stopping_kept():
    searched = {"iterations": 300, "early_stopping_rounds": 50, "depth": 6}

    assert models.refit_params("catboost", searched, 123.4) == {"iterations": 123, "depth": 6}
    assert models.refit_params("catboost", searched, None) == searched  # not measured: train stops early itself
    assert models.refit_params("catboost", {"iterations": 300}, 300.0) == {"iterations": 300}
    stopped = {"n_estimators": 1000, "early_stopping_rounds": 50, "num_leaves": 31}
    assert models.refit_params("lightgbm", stopped, 211.6) == {"n_estimators": 212, "num_leaves": 31}
    assert models.refit_params("random_forest", {"n_estimators": 200}, 123.4) == {"n_estimators": 200}


@pytest.mark.parametrize("task", ["binary", "regression"])
def test_a_catboost_pipeline_goes_on_training_on_new_rows_from_the_trees_it_has(
    task, binary_spec, regression_spec, mixed_frame
):
    """A retraining's continuation: the copy holds the old trees and the new ones; the base is untouched."""
    spec = binary_spec if task == "binary" else regression_spec
    frame = mixed_frame(80, task, with_missing=True)
    X, y = _features(frame, spec), target_vector(frame, spec)
    base = models.build("catboost", SMALL_PARAMS["catboost"], spec, threads=1).fit(X.iloc[:50], y[:50])
    before = models.predict(base, X, task)

    grown = models.continued(base, X.iloc[50:], y[50:], {"iterations": 7, "learning_rate": 0.1}, threads=1)

    assert models.trees(grown) == models.trees(base) + 7 == 27
    after = models.predict(grown, X, task)
    assert not np.allclose(
        after[0] if task == "regression" else after[1], before[0] if task == "regression" else before[1]
    )
    for old, again in zip(before, models.predict(base, X, task), strict=True):  # the base is as it was
        assert old is None or np.array_equal(old, again)
    import pickle

    assert np.array_equal(pickle.loads(pickle.dumps(grown)).predict(X), grown.predict(X))


def test_a_continuation_stops_at_the_deadline_with_the_trees_it_added(binary_spec, binary_data):
    X, y = binary_data
    base = models.build("catboost", SMALL_PARAMS["catboost"], binary_spec, threads=1).fit(X, y)
    asked = []

    grown = models.continued(
        base,
        X,
        y,
        {"iterations": 50, "learning_rate": 0.1},
        threads=1,
        stop_when=lambda: asked.append(1) or len(asked) >= 2,
    )

    assert models.trees(grown) == 20 + 2 and grown.steps[-1][1].stop_when is None


def test_only_a_catboost_model_goes_on_training(binary_spec, binary_data):
    X, y = binary_data
    forest = models.build("random_forest", SMALL_PARAMS["random_forest"], binary_spec).fit(X, y)

    with pytest.raises(ValueError, match="catboost_continued: only a CatBoost model can go on training"):
        models.continued(forest, X, y, {"iterations": 5, "learning_rate": 0.1}, threads=1)
