"""Model families: each one a scikit-learn Pipeline (shared preprocessing, its own encoding, the
estimator), fitted as a whole.

Preprocessing lives inside the pipeline so it is fitted on the training fold only and shipped with
the model: serving sees exactly what training saw.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import sys
import threading
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.linear_model import ElasticNet, LogisticRegression, Ridge
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler
from threadpoolctl import ThreadpoolController

from mlgate.modelling import features
from mlgate.modelling.data import DataSpec
from mlgate.modelling.features import FeatureSettings
from mlgate.modelling.task import Task, named

# scikit-learn's coordinate descent, which warns when ElasticNetRegressor's deliberate pass cap stops it
_COORDINATE_DESCENT = r"sklearn\.linear_model\._coordinate_descent"

MISSING_CATEGORY = "__missing__"
# CatBoost's Python fit/predict path swaps process-global logger state (catboost#2620), so two
# CatBoost calls from parallel trial threads must not overlap; other families run concurrently.
_CATBOOST_LOCK = threading.Lock()
# Early stopping (``early_stopping_rounds`` in a boosting family's params): the share of the rows it is
# given that it holds out to stop on, and the fewest rows for which it does. CatBoost: below 500 held-out
# rows the loss there is too noisy to stop on: on ames (1,465 rows a fold, RMSE on 146 held-out prices
# with a few extreme houses) one fold stopped at 23 of 300 trees and the CV RMSE rose from 23,800 to 27,900.
# LightGBM without it fits all of its 1,000 trees and overfits small data: on benchmarks/dev_suite
# (14 datasets of 603-3,000 rows, 3-fold CV) stopping at every size lowered its first trial's error by 13%
# (geometric mean; log loss on heating 3.08 to 1.13; regression even, -7% to +7%) in a fifth of the time.
EARLY_STOPPING_SHARE = 0.1
EARLY_STOPPING_MIN_ROWS = 5_000
LIGHTGBM_EARLY_STOPPING_MIN_ROWS = 200  # 20 held-out rows; the dev suite's smallest fold fitted on 402


class _BuiltAtFit(BaseEstimator):
    """A third-party estimator built at fit time from the frame the shared front passes on, which
    decides what columns survive. Subclasses say how to fit it (``fit``), how to shape its input
    (``_prepare``), what every call into it needs (``_calls``) and takes (``_predict_options``).

    ``stop_when`` (set by ``stop_fit_when``, not a parameter: a clone or a refit never has it): a family
    that ``stops_at_deadline`` asks it after each tree and keeps the trees it has once it says so, for one
    fit."""

    stop_when: Callable[[], bool] | None = None
    stops_at_deadline = False

    def __init__(self, params=None, threads: int = 1, seed: int = 0):
        self.params = params
        self.threads = threads
        self.seed = seed

    def _take_stop_when(self) -> Callable[[], bool] | None:
        """``stop_when`` for this fit, cleared so that a kept model carries no stale clock."""
        stop_when, self.stop_when = self.stop_when, None
        return stop_when

    def _calls(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def _predict_options(self) -> dict[str, Any]:
        return {}

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        with self._calls():
            return self.model_.predict(self._prepare(X), **self._predict_options())

    def _fit_stopping_early(
        self, X: pd.DataFrame, y: np.ndarray, rounds: int | None, stopping: Callable, min_rows: int, **options: Any
    ) -> None:
        """Fit ``model_`` on every row, or, with ``rounds`` and at least ``min_rows`` rows, by
        ``stopping(X, y, eval_set)`` on all but a seeded held-out share that it stops on; sets
        ``best_iteration_`` (None when it did not stop early). ``options`` go to the plain fit."""
        if rounds and len(X) >= min_rows:
            fit_rows, stop_rows = _early_stopping_split(y, classify=isinstance(self, ClassifierMixin), seed=self.seed)
            stopping(X.iloc[fit_rows], y[fit_rows], (X.iloc[stop_rows], y[stop_rows]))
            self.best_iteration_ = self.model_.best_iteration_
        else:
            self.model_.fit(X, y, **options)
            self.best_iteration_ = None


class _Probabilities(ClassifierMixin):
    """The classifier half of a ``_BuiltAtFit`` estimator: classes and probabilities."""

    def fit(self, X: pd.DataFrame, y):
        super().fit(X, y)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        with self._calls():
            return self.model_.predict_proba(self._prepare(X), **self._predict_options())


class _CatBoostModel(_BuiltAtFit):
    """CatBoost with its categorical columns found at fit time (whatever the column filter kept).

    Missing categorical values become their own category: CatBoost rejects NaN there.

    With ``early_stopping_rounds`` in its params and at least ``EARLY_STOPPING_MIN_ROWS`` rows, it
    holds out a seeded ``EARLY_STOPPING_SHARE`` of them (stratified for a classifier), stops when the
    loss there has not improved for that many trees and keeps the best model (``use_best_model``):
    ``iterations`` is then a cap. The early-stopped model itself is kept, not refit on every row: in
    the search that would double the cost early stopping saves, and ``train`` refits the final model
    on all rows with the number of trees found here (``refit_params``). ``tree_count_`` is the trees
    the model holds; ``best_iteration_`` is None when it did not stop early.
    """

    stops_at_deadline = True

    def _predict_options(self) -> dict[str, Any]:
        return {"thread_count": self.threads}  # CatBoost's default is every core, even for one row

    def _prepare(self, X: pd.DataFrame) -> pd.DataFrame:
        if not self.categorical_:
            return X
        X = X.copy()
        block = X[self.categorical_].astype(object)  # one block operation: a single-row call is all overhead
        X[self.categorical_] = block.where(block.notna(), MISSING_CATEGORY).astype(str)
        return X

    def fit(self, X: pd.DataFrame, y):
        import catboost

        params = dict(self.params or {})
        rounds = params.pop("early_stopping_rounds", None)
        self.categorical_ = [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]
        estimator_cls = catboost.CatBoostClassifier if isinstance(self, ClassifierMixin) else catboost.CatBoostRegressor
        self.model_ = estimator_cls(
            **params,
            cat_features=self.categorical_,
            thread_count=self.threads,
            random_seed=self.seed,
            verbose=0,
            allow_writing_files=False,
        )
        stop_when = self._take_stop_when()
        callbacks = {"callbacks": [_CatBoostStop(stop_when)]} if stop_when else {}
        self._fit_stopping_early(
            self._prepare(X),
            np.asarray(y),
            rounds,
            lambda X, y, eval_set: self.model_.fit(
                X, y, eval_set=eval_set, early_stopping_rounds=rounds, use_best_model=True, **callbacks
            ),
            EARLY_STOPPING_MIN_ROWS,
            **callbacks,
        )
        self.tree_count_ = self.model_.tree_count_
        self.feature_importances_ = self.model_.get_feature_importance()
        return self

    def continue_on(self, X: pd.DataFrame, y, iterations: int, learning_rate: float) -> None:
        """Go on from the trees this fitted model holds: ``iterations`` more, at ``learning_rate``, fitted to
        what they leave unexplained on ``X``, ``y`` (CatBoost's ``init_model``). The trees it had stay as
        they are."""
        previous = self.model_
        grown = type(previous)(**previous.get_params() | {"iterations": iterations, "learning_rate": learning_rate})
        grown.set_params(thread_count=self.threads)
        stop_when = self._take_stop_when()
        callbacks = {"callbacks": [_CatBoostStop(stop_when)]} if stop_when else {}
        grown.fit(self._prepare(X), np.asarray(y), init_model=previous, **callbacks)
        # A copy of its own while ``previous`` lives: a model grown from an unpickled one (a kept or
        # registered model) still points into it, and predicting after it is freed never returns
        # (CatBoost 1.2.10: tests/integration/test_warm_start.py's telco retraining hung so)
        self.model_ = grown.copy()
        self.tree_count_ = self.model_.tree_count_
        self.feature_importances_ = self.model_.get_feature_importance()


class _CatBoostStop:
    """CatBoost's per-tree callback: go on until ``stop_when`` says stop (the trees so far are kept)."""

    def __init__(self, stop_when: Callable[[], bool]):
        self.stop_when = stop_when

    def after_iteration(self, info: Any) -> bool:
        return not self.stop_when()


def _lightgbm_stop(stop_when: Callable[[], bool]) -> Callable[[Any], None]:
    """LightGBM's per-round callback: once ``stop_when`` says stop, end the fit with the rounds so far."""
    import lightgbm

    def stop(env: Any) -> None:
        if stop_when():
            raise lightgbm.callback.EarlyStopException(env.iteration, env.evaluation_result_list or [])

    stop.order = 40  # after LightGBM's own early stopping (30)
    return stop


def stop_fit_when(pipeline: Pipeline, stop_when: Callable[[], bool]) -> None:
    """Make the next fit of a boosting family (CatBoost, LightGBM) end early, keeping the trees it has, once
    ``stop_when()`` is true: a search's trial at its deadline. Other families fit as they do."""
    estimator = pipeline.steps[-1][1]
    if getattr(estimator, "stops_at_deadline", False):  # a clock left on another family would be pickled
        estimator.stop_when = stop_when


def _early_stopping_split(y: np.ndarray, *, classify: bool, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row positions to fit on and to stop on: a seeded EARLY_STOPPING_SHARE, by class when every
    class has two rows to split."""
    rows = np.arange(len(y))
    stratify = y if classify and np.unique(y, return_counts=True)[1].min() >= 2 else None
    fit_rows, stop_rows = train_test_split(rows, test_size=EARLY_STOPPING_SHARE, random_state=seed, stratify=stratify)
    return np.sort(fit_rows), np.sort(stop_rows)


class CatBoostClassifierModel(_Probabilities, _CatBoostModel):
    pass


class CatBoostRegressorModel(RegressorMixin, _CatBoostModel):
    pass


def _numeric_and_categorical(
    numeric: Pipeline | BaseEstimator, categorical: Pipeline | BaseEstimator
) -> ColumnTransformer:
    """Encoders chosen by dtype: the shared front decides which columns survive."""
    return ColumnTransformer(
        [
            ("numeric", numeric, make_column_selector(dtype_include="number")),
            ("categorical", categorical, make_column_selector(dtype_exclude="number")),
        ]
    )


def _check_rounds(family: str, rounds: Any) -> None:
    if rounds is not None and (isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1):
        raise ValueError(f"model.{family}: early_stopping_rounds must be a positive integer or null, got {rounds!r}")


def _catboost(
    params: dict[str, Any], spec: DataSpec, settings: FeatureSettings, threads: int, seed: int
) -> BaseEstimator:
    import catboost

    _check_rounds("catboost", params.get("early_stopping_rounds"))
    task = spec.learning_task  # a multiclass target picks CatBoost's MultiClass loss itself
    task.variant(catboost.CatBoostClassifier, catboost.CatBoostRegressor)(**params)  # unknown arguments fail now
    return task.variant(CatBoostClassifierModel, CatBoostRegressorModel)(params, threads, seed)


def _scaled_one_hot(settings: FeatureSettings) -> ColumnTransformer:
    """Scaled numerics (median-imputed, with missing indicators) and one-hot categoricals."""
    numeric = Pipeline(
        [
            (
                "impute",
                SimpleImputer(strategy="median", add_indicator=settings.missing_indicators, keep_empty_features=True),
            ),
            ("scale", StandardScaler()),
        ]
    )
    categorical = Pipeline(
        [
            ("impute", SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY, keep_empty_features=True)),
            ("encode", OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=5, sparse_output=False)),
        ]
    )
    return _numeric_and_categorical(numeric, categorical)


def _ordinal(settings: FeatureSettings) -> ColumnTransformer:
    """Median-imputed numerics and integer-coded categoricals (unseen and missing: -1), for trees."""
    numeric = SimpleImputer(strategy="median", add_indicator=settings.missing_indicators, keep_empty_features=True)
    categorical = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1)
    return _numeric_and_categorical(numeric, categorical)


class ElasticNetRegressor(RegressorMixin, BaseEstimator):
    """ElasticNet with ``alpha`` on Ridge's scale (sum of squared errors), so one searched ``alpha``
    means the same strength for both; scikit-learn's ElasticNet averages the errors instead.

    Coordinate descent stops after ``max_iter`` passes, converged or not: under a weak penalty on
    one-hot data it does not converge in 5,000 passes either, but its predictions settle long before.
    On hotel_rates (benchmarks/dev_suite: 11,551 rows, 229 encoded columns, alpha 0.0023) 1,000 passes
    gave the test RMSE of 5,000 (22.1406 against 22.1408) in a fifth of the time (1.1 s, not 5.4 s),
    and one such fit had overrun a 30 s search. So the cap is deliberate, and its warning not shown: by a
    filter on scikit-learn's coordinate descent module (``_quiet_pass_cap``), never removed. Trials fit in
    threads, and ``warnings.catch_warnings`` is not thread-safe: one fit leaving it restored the filters
    under another still fitting, which let the warnings through to a search's terminal (on ames, by the
    hundred)."""

    def __init__(self, alpha: float = 1.0, l1_ratio: float = 0.5, max_iter: int = 1000, random_state=None):
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.max_iter = max_iter
        self.random_state = random_state

    def fit(self, X, y):
        _quiet_pass_cap()
        self.model_ = ElasticNet(
            alpha=self.alpha / len(X), l1_ratio=self.l1_ratio, max_iter=self.max_iter, random_state=self.random_state
        ).fit(X, y)
        self.coef_ = self.model_.coef_
        return self

    def predict(self, X) -> np.ndarray:
        return self.model_.predict(X)


def _quiet_pass_cap() -> None:
    """Ignore coordinate descent's convergence warnings in this process, unless already so. Checked at each fit:
    a caller's ``catch_warnings`` (pytest's around each test) drops a filter added inside it when it ends."""
    if not any(
        f[2] is ConvergenceWarning and getattr(f[3], "pattern", None) == _COORDINATE_DESCENT for f in warnings.filters
    ):
        warnings.filterwarnings("ignore", category=ConvergenceWarning, module=_COORDINATE_DESCENT)


def _linear(
    params: dict[str, Any], spec: DataSpec, settings: FeatureSettings, threads: int, seed: int
) -> BaseEstimator:
    """Logistic regression or Ridge; ``penalty: elasticnet`` mixes in an L1 share (``l1_ratio``)."""
    params = dict(params)
    alpha = float(params.pop("alpha", 1.0))
    penalty = params.pop("penalty", "l2")
    l1_ratio = float(params.pop("l1_ratio", 0.5))
    if penalty not in ("l2", "elasticnet"):
        raise ValueError(f"model.linear: penalty must be l2 or elasticnet, got '{penalty}'")
    classify = spec.is_classification  # multiclass: scikit-learn's multinomial loss (lbfgs and saga)
    if penalty == "l2":
        estimator = (
            LogisticRegression(C=1.0 / alpha, max_iter=2000, random_state=seed, **params)
            if classify
            else Ridge(alpha=alpha, random_state=seed, **params)
        )
    elif classify:  # saga, scikit-learn's only elastic-net solver for logistic regression, to a looser tolerance:
        # on telco the same AUC as at its default 1e-4, in a twentieth of the time (84 epochs, not 1,700)
        estimator = LogisticRegression(
            C=1.0 / alpha, l1_ratio=l1_ratio, solver="saga", max_iter=2000, random_state=seed, **{"tol": 1e-3, **params}
        )
    else:
        estimator = ElasticNetRegressor(alpha=alpha, l1_ratio=l1_ratio, random_state=seed, **params)
    return Pipeline([("encode", _scaled_one_hot(settings)), ("model", estimator)])


def _random_forest(
    params: dict[str, Any], spec: DataSpec, settings: FeatureSettings, threads: int, seed: int
) -> BaseEstimator:
    estimator_cls = spec.learning_task.variant(RandomForestClassifier, RandomForestRegressor)
    estimator = estimator_cls(**params, n_jobs=threads, random_state=seed)
    return Pipeline([("encode", _ordinal(settings)), ("model", estimator)])


def _extra_trees(
    params: dict[str, Any], spec: DataSpec, settings: FeatureSettings, threads: int, seed: int
) -> BaseEstimator:
    estimator_cls = spec.learning_task.variant(ExtraTreesClassifier, ExtraTreesRegressor)
    estimator = estimator_cls(**params, n_jobs=threads, random_state=seed)
    return Pipeline([("encode", _ordinal(settings)), ("model", estimator)])


@functools.cache
def _thread_pools() -> ThreadpoolController:
    """One scan of the loaded native libraries: a fresh scan per call costs ~2.6 ms, a served request's budget."""
    return ThreadpoolController()


def _openmp_threads(threads: int) -> contextlib.AbstractContextManager:
    return _thread_pools().limit(limits=threads, user_api="openmp")


class _HistGradientBoostingModel(_BuiltAtFit):
    """scikit-learn's HistGradientBoosting with native categorical splits.

    The categoricals the shared front passes on (object columns) become pandas categories fixed at
    fit time: unseen values and values beyond the ``max_bins`` most frequent ones count as missing,
    which the trees route on their own. OpenMP threads are capped per call (``threads``), which
    holds per Python thread, so parallel trials do not oversubscribe the cores.
    """

    def _calls(self) -> contextlib.AbstractContextManager:
        return _openmp_threads(self.threads)

    def _prepare(self, X: pd.DataFrame) -> pd.DataFrame:
        X = X.copy()
        for column, categories in self.categories_.items():
            X[column] = pd.Categorical(X[column], categories=categories)
        return X

    def fit(self, X: pd.DataFrame, y):
        params = dict(self.params or {})
        limit = int(params.get("max_bins", 255))
        self.categories_ = {
            c: list(X[c].value_counts().index[:limit]) for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])
        }
        estimator_cls = (
            HistGradientBoostingClassifier if isinstance(self, ClassifierMixin) else HistGradientBoostingRegressor
        )
        self.model_ = estimator_cls(**params, categorical_features="from_dtype", random_state=self.seed)
        with self._calls():
            self.model_.fit(self._prepare(X), y)
        return self


class HistGradientBoostingClassifierModel(_Probabilities, _HistGradientBoostingModel):
    pass


class HistGradientBoostingRegressorModel(RegressorMixin, _HistGradientBoostingModel):
    pass


class _LightGBMModel(_BuiltAtFit):
    """LightGBM with native categorical splits and early stopping as CatBoost has it.

    Categoricals become pandas categories fixed at fit time, as for HistGradientBoosting: unseen values
    count as missing. From ``LIGHTGBM_EARLY_STOPPING_MIN_ROWS`` rows with ``early_stopping_rounds`` it stops on
    the same held-out share CatBoost does and predicts with its best iteration; ``tree_count_`` is the
    boosting rounds it uses (what ``refit_params`` refits with). ``deterministic`` with row-wise
    histograms makes a seed give the same model whatever the thread count."""

    stops_at_deadline = True

    def _prepare(self, X: pd.DataFrame) -> pd.DataFrame:
        if not self.categories_:
            return X
        X = X.copy()
        for column, categories in self.categories_.items():
            X[column] = pd.Categorical(X[column].where(X[column].isin(categories)), categories=categories)
        return X

    def _predict_options(self) -> dict[str, Any]:
        return {"num_threads": self.threads}

    def fit(self, X: pd.DataFrame, y):
        import lightgbm

        params = dict(self.params or {})
        rounds = params.pop("early_stopping_rounds", None)
        self.categories_ = {
            c: sorted(X[c].dropna().unique().tolist(), key=str)
            for c in X.columns
            if not pd.api.types.is_numeric_dtype(X[c])
        }
        estimator_cls = lightgbm.LGBMClassifier if isinstance(self, ClassifierMixin) else lightgbm.LGBMRegressor
        self.model_ = estimator_cls(
            **params, n_jobs=self.threads, random_state=self.seed, deterministic=True, force_row_wise=True, verbose=-1
        )
        stop_when = self._take_stop_when()
        stop = [_lightgbm_stop(stop_when)] if stop_when else []
        self._fit_stopping_early(
            self._prepare(X),
            np.asarray(y),
            rounds,
            lambda X, y, eval_set: self.model_.fit(
                X, y, eval_set=[eval_set], callbacks=[lightgbm.early_stopping(rounds, verbose=False), *stop]
            ),
            LIGHTGBM_EARLY_STOPPING_MIN_ROWS,
            callbacks=stop,
        )
        self.tree_count_ = self.best_iteration_ or self.model_.n_estimators_
        self.feature_importances_ = self.model_.feature_importances_
        return self


class LightGBMClassifierModel(_Probabilities, _LightGBMModel):
    pass


class LightGBMRegressorModel(RegressorMixin, _LightGBMModel):
    pass


def _hist_gradient_boosting(
    params: dict[str, Any], spec: DataSpec, settings: FeatureSettings, threads: int, seed: int
) -> BaseEstimator:
    task = spec.learning_task
    task.variant(HistGradientBoostingClassifier, HistGradientBoostingRegressor)(**params)  # unknown arguments fail now
    return task.variant(HistGradientBoostingClassifierModel, HistGradientBoostingRegressorModel)(params, threads, seed)


def _lightgbm(
    params: dict[str, Any], spec: DataSpec, settings: FeatureSettings, threads: int, seed: int
) -> BaseEstimator:
    import inspect

    import lightgbm

    _check_rounds("lightgbm", params.get("early_stopping_rounds"))
    # LightGBM takes unknown keyword arguments and only warns at fit: refuse them here, by name
    known = set(inspect.signature(lightgbm.LGBMModel).parameters) - {"kwargs", "n_jobs", "random_state"}
    unknown = sorted(set(params) - known - {"early_stopping_rounds"})
    if unknown:
        raise ValueError(
            f"model.lightgbm: unknown argument(s) {unknown}; LightGBM's scikit-learn API takes {sorted(known)}"
        )
    return spec.learning_task.variant(LightGBMClassifierModel, LightGBMRegressorModel)(params, threads, seed)


def _knn(params: dict[str, Any], spec: DataSpec, settings: FeatureSettings, threads: int, seed: int) -> BaseEstimator:
    estimator_cls = spec.learning_task.variant(KNeighborsClassifier, KNeighborsRegressor)
    return Pipeline([("encode", _scaled_one_hot(settings)), ("model", estimator_cls(**params, n_jobs=threads))])


def _mlp(params: dict[str, Any], spec: DataSpec, settings: FeatureSettings, threads: int, seed: int) -> BaseEstimator:
    """A multi-layer perceptron: ``hidden_layers`` layers of ``hidden_units`` each; stops early on a
    10% validation share of the training rows unless ``early_stopping: false``."""
    params = dict(params)
    layers = (int(params.pop("hidden_units", 64)),) * int(params.pop("hidden_layers", 1))
    estimator_cls = spec.learning_task.variant(MLPClassifier, MLPRegressor)
    estimator = estimator_cls(**{"early_stopping": True, **params}, hidden_layer_sizes=layers, random_state=seed)
    return Pipeline([("encode", _scaled_one_hot(settings)), ("model", estimator)])


FAMILIES: dict[str, Callable[[dict[str, Any], DataSpec, FeatureSettings, int, int], BaseEstimator]] = {
    "catboost": _catboost,
    "linear": _linear,
    "random_forest": _random_forest,
    "extra_trees": _extra_trees,
    "hist_gradient_boosting": _hist_gradient_boosting,
    "lightgbm": _lightgbm,
    "knn": _knn,
    "mlp": _mlp,
}
# Searched like hyperparameters but consumed by the shared preprocessing, not the estimator.
PREPROCESSING_PARAMS = ("selection", "keep_share")
# `class_weight: balanced` (weights inversely proportional to class frequency) in each family's words.
_BALANCED = {
    "catboost": ("auto_class_weights", "Balanced"),
    "linear": ("class_weight", "balanced"),
    "random_forest": ("class_weight", "balanced"),
    "extra_trees": ("class_weight", "balanced"),
    "hist_gradient_boosting": ("class_weight", "balanced"),
    "lightgbm": ("class_weight", "balanced"),
}


def _class_weight(family: str, params: dict[str, Any], task: Task) -> dict[str, Any]:
    """Translate the searched ``class_weight`` (none | balanced) into the family's own argument."""
    if "class_weight" not in params:
        return params
    params = dict(params)
    choice = params.pop("class_weight")
    if choice not in ("none", "balanced", None):
        raise ValueError(f"model.{family}: class_weight must be none or balanced, got '{choice}'")
    if choice == "balanced":
        if not task.is_classification or family not in _BALANCED:
            raise ValueError(f"model.{family}: class_weight applies to classification with one of {sorted(_BALANCED)}")
        key, value = _BALANCED[family]
        params[key] = value
    return params


def build(
    family: str,
    params: dict[str, Any],
    spec: DataSpec,
    settings: FeatureSettings | None = None,
    *,
    threads: int = 1,
    seed: int = 0,
) -> Pipeline:
    """The whole model: shared preprocessing (``features.steps``), the family's encoding, the estimator."""
    if family not in FAMILIES:
        raise ValueError(f"unknown model family '{family}' (params.yaml: model.{family}); known: {sorted(FAMILIES)}")
    settings = settings or FeatureSettings()
    estimator_params = _class_weight(
        family, {k: v for k, v in params.items() if k not in PREPROCESSING_PARAMS}, spec.learning_task
    )
    front = features.steps(
        spec,
        settings,
        selection=params.get("selection", "none"),
        keep_share=float(params.get("keep_share", 1.0)),
        seed=seed,
    )
    try:
        model = FAMILIES[family](estimator_params, spec, settings, threads, seed)
    except TypeError as error:  # an unknown constructor argument in conf/model/<family>.yaml
        raise ValueError(f"model.{family}: {error}") from error
    back = model.steps if isinstance(model, Pipeline) else [("model", model)]
    return Pipeline(front + back)


# A retraining's continuation of production's CatBoost model: not a family of conf/model, it is searched only
# when a warm start finds such a model (``stages.tune``); its params are the trees added and their rate.
CONTINUED = "catboost_continued"


def continued(
    base: Pipeline,
    X: pd.DataFrame,
    y,
    params: dict[str, Any],
    *,
    threads: int,
    stop_when: Callable[[], bool] | None = None,
) -> Pipeline:
    """A copy of the fitted CatBoost pipeline ``base`` that went on training on ``X``, ``y`` (rows it never
    saw): ``params["iterations"]`` more trees at ``params["learning_rate"]``. Its preprocessing stays as
    fitted, so the new rows reach the trees as the old ones did."""
    pipeline = copy.deepcopy(base)
    estimator = pipeline.steps[-1][1]
    if not isinstance(estimator, _CatBoostModel):
        raise ValueError(f"{CONTINUED}: only a CatBoost model can go on training, not {type(estimator).__name__}")
    estimator.threads, estimator.stop_when = threads, stop_when
    seen_as = pipeline[:-1].transform(X) if len(pipeline.steps) > 1 else X
    estimator.continue_on(seen_as, y, int(params["iterations"]), float(params["learning_rate"]))
    return pipeline


def trees(pipeline: Pipeline) -> int | None:
    """The trees (boosting rounds) a fitted early-stopping model uses (CatBoost, LightGBM), else None."""
    return getattr(pipeline.steps[-1][1], "tree_count_", None)


# The argument that counts an early-stopping family's trees (its cap in the search).
_TREE_COUNT = {"catboost": "iterations", "lightgbm": "n_estimators"}


def refit_params(family: str, params: dict[str, Any], trees: float | None) -> dict[str, Any]:
    """What ``train`` refits a searched configuration with: for a CatBoost or LightGBM trial that could
    stop early, as many trees as its folds kept on average and no early stopping, so the refit sees
    every row and spends no time on trees the search found useless. The count is used as found, not
    scaled up for the extra rows: the held-out loss is flat near its best (that is why a patience of
    tens of trees works), and the trial's measured fit time stays the refit's cost estimate
    (finish.refit_budget_s)."""
    if family not in _TREE_COUNT or trees is None or not params.get("early_stopping_rounds"):
        return params
    kept = {k: v for k, v in params.items() if k != "early_stopping_rounds"}
    return kept | {_TREE_COUNT[family]: max(1, round(trees))}


def exclusive(family: str) -> contextlib.AbstractContextManager:
    """Hold this around fit and predict when trials run in threads."""
    return _CATBOOST_LOCK if family in ("catboost", CONTINUED) else contextlib.nullcontext()


def threads_for(family: str, cores: int, parallel_trials: int) -> int:
    """Threads one fit may use while ``parallel_trials`` trials run at once.

    CatBoost runs one call at a time (see ``exclusive``), so it may use every core. The others share:
    the forests and k-NN through ``n_jobs``, HistGradientBoosting through a per-thread OpenMP cap.
    linear and mlp ignore it: their only parallelism is BLAS, whose pool is process-wide and cannot
    be capped per trial thread (mlgate's tests and the benchmark run with one BLAS thread).
    """
    return cores if family in ("catboost", CONTINUED) else max(1, cores // parallel_trials)


def serial_predictions(pipeline: Pipeline) -> Pipeline:
    """Predict on one thread: a fitted forest or k-NN with ``n_jobs > 1`` spends ~11 ms per call
    waiting for joblib's threads (a served row's whole budget), CatBoost on every core doubles a small
    call's CPU, and a forest's threaded sum over its trees is not reproducible in the last bit. Fit
    with threads, serve without."""
    for _, step in pipeline.steps:
        for threads in ("n_jobs", "threads"):  # scikit-learn's, and our third-party wrappers' (CatBoost, HGB)
            if threads in step.get_params(deep=False):
                step.set_params(**{threads: 1})
    return pipeline


def predict(pipeline: Pipeline, X: pd.DataFrame, task: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(prediction, probability or None) as ``Task.outputs`` gives them."""
    return named(task).outputs(pipeline, X)


def settle_bytes(model: Any) -> Any:
    """Make the pickled bytes of ``model`` depend only on what it learned, so that fitting the same
    recipe on the same rows twice writes the same file (train's model is a DVC dependency of evaluate,
    drift and gate). Predictions do not change.

    - A scikit-learn tree keeps its nodes in memory it allocates itself; bytes 57-63 of each 64-byte
      node record are never written, and pickle copies them as they happen to be. Each tree's nodes
      are reloaded from a zeroed copy holding the same fields.
    - CatBoost stores a random ``model_guid`` and the ``train_finish_time`` in its model's metadata;
      both are dropped.
    """
    from sklearn.tree._tree import Tree

    for tree in _reachable(model, Tree):
        state = tree.__getstate__()
        nodes = state["nodes"]
        zeroed = np.zeros(nodes.shape, dtype=nodes.dtype)  # fresh zeroed memory, padding included
        for field in nodes.dtype.names:  # field by field: copying whole records would copy the padding
            zeroed[field] = nodes[field]
        tree.__setstate__(state | {"nodes": zeroed})
    catboost = sys.modules.get("catboost")  # no CatBoost model exists unless it was imported
    for booster in _reachable(model, catboost.CatBoost) if catboost else ():
        metadata = booster.get_metadata()
        for per_fit in ("model_guid", "train_finish_time"):
            if per_fit in metadata:
                del metadata[per_fit]
    return model


def _reachable(root: Any, kind: type) -> list[Any]:
    """The objects of ``kind`` reachable from ``root`` through attributes, containers and object
    arrays (a forest's estimators_, gradient boosting's array of trees, a pipeline's steps)."""
    found, seen, pending = [], set(), [root]
    while pending:
        item = pending.pop()
        if id(item) in seen or item is None or isinstance(item, (str, bytes, int, float, bool)):
            continue
        seen.add(id(item))
        if isinstance(item, kind):
            found.append(item)
        elif isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            pending.extend(item)
        elif isinstance(item, np.ndarray):
            if item.dtype == object:
                pending.extend(item.ravel())
        elif hasattr(item, "__dict__"):
            pending.extend(vars(item).values())
    return found
