"""Model families: each one a scikit-learn Pipeline (shared preprocessing, its own encoding, the
estimator), fitted as a whole.

Preprocessing lives inside the pipeline so it is fitted on the training fold only and shipped with
the model: serving sees exactly what training saw.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from mlgate import features
from mlgate.data import DataSpec
from mlgate.features import FeatureSettings

MISSING_CATEGORY = "__missing__"
# CatBoost's Python fit/predict path swaps process-global logger state (catboost#2620), so two
# CatBoost calls from parallel trial threads must not overlap; other families run concurrently.
_CATBOOST_LOCK = threading.Lock()


class _CatBoostModel(BaseEstimator):
    """CatBoost with its categorical columns found at fit time (whatever the column filter kept).

    Missing categorical values become their own category: CatBoost rejects NaN there.
    """

    def __init__(self, params=None, threads: int = 1, seed: int = 0):
        self.params = params
        self.threads = threads
        self.seed = seed

    def _prepare(self, X: pd.DataFrame) -> pd.DataFrame:
        X = X.copy()
        for column in self.categorical_:
            X[column] = X[column].astype(object).where(X[column].notna(), MISSING_CATEGORY).astype(str)
        return X

    def fit(self, X: pd.DataFrame, y):
        import catboost

        self.categorical_ = [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]
        estimator_cls = catboost.CatBoostClassifier if isinstance(self, ClassifierMixin) else catboost.CatBoostRegressor
        self.model_ = estimator_cls(**(self.params or {}), cat_features=self.categorical_, thread_count=self.threads,
                                    random_seed=self.seed, verbose=0, allow_writing_files=False)
        self.model_.fit(self._prepare(X), y)
        self.feature_importances_ = self.model_.get_feature_importance()
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.model_.predict(self._prepare(X))


class CatBoostClassifierModel(ClassifierMixin, _CatBoostModel):
    def fit(self, X: pd.DataFrame, y):
        super().fit(X, y)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return self.model_.predict_proba(self._prepare(X))


class CatBoostRegressorModel(RegressorMixin, _CatBoostModel):
    pass


def _numeric_and_categorical(numeric: Pipeline | BaseEstimator, categorical: Pipeline | BaseEstimator) -> ColumnTransformer:
    """Encoders chosen by dtype: the shared front decides which columns survive."""
    return ColumnTransformer([("numeric", numeric, make_column_selector(dtype_include="number")),
                              ("categorical", categorical, make_column_selector(dtype_exclude="number"))])


def _catboost(params: dict[str, Any], spec: DataSpec, settings: FeatureSettings, threads: int, seed: int) -> BaseEstimator:
    import catboost

    binary = spec.task == "binary"
    (catboost.CatBoostClassifier if binary else catboost.CatBoostRegressor)(**params)  # unknown arguments fail now
    estimator_cls = CatBoostClassifierModel if binary else CatBoostRegressorModel
    return estimator_cls(params, threads, seed)


def _linear(params: dict[str, Any], spec: DataSpec, settings: FeatureSettings, threads: int, seed: int) -> BaseEstimator:
    params = dict(params)
    alpha = float(params.pop("alpha", 1.0))
    numeric = Pipeline([("impute", SimpleImputer(strategy="median", add_indicator=settings.missing_indicators,
                                                 keep_empty_features=True)),
                        ("scale", StandardScaler())])
    categorical = Pipeline([
        ("impute", SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY, keep_empty_features=True)),
        ("encode", OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=5, sparse_output=False)),
    ])
    if spec.task == "binary":
        estimator = LogisticRegression(C=1.0 / alpha, max_iter=2000, random_state=seed, **params)
    else:
        estimator = Ridge(alpha=alpha, random_state=seed, **params)
    return Pipeline([("encode", _numeric_and_categorical(numeric, categorical)), ("model", estimator)])


def _random_forest(params: dict[str, Any], spec: DataSpec, settings: FeatureSettings, threads: int, seed: int) -> BaseEstimator:
    numeric = SimpleImputer(strategy="median", add_indicator=settings.missing_indicators, keep_empty_features=True)
    categorical = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1)
    estimator_cls = RandomForestClassifier if spec.task == "binary" else RandomForestRegressor
    estimator = estimator_cls(**params, n_jobs=threads, random_state=seed)
    return Pipeline([("encode", _numeric_and_categorical(numeric, categorical)), ("model", estimator)])


FAMILIES: dict[str, Callable[[dict[str, Any], DataSpec, FeatureSettings, int, int], BaseEstimator]] = {
    "catboost": _catboost,
    "linear": _linear,
    "random_forest": _random_forest,
}
# Searched like hyperparameters but consumed by the shared preprocessing, not the estimator.
PREPROCESSING_PARAMS = ("selection", "keep_share")


def build(family: str, params: dict[str, Any], spec: DataSpec, settings: FeatureSettings | None = None, *,
          threads: int = 1, seed: int = 0) -> Pipeline:
    """The whole model: shared preprocessing (``features.steps``), the family's encoding, the estimator."""
    if family not in FAMILIES:
        raise ValueError(f"unknown model family '{family}' (params.yaml: model.{family}); known: {sorted(FAMILIES)}")
    settings = settings or FeatureSettings()
    estimator_params = {k: v for k, v in params.items() if k not in PREPROCESSING_PARAMS}
    front = features.steps(spec, settings, selection=params.get("selection", "none"),
                           keep_share=float(params.get("keep_share", 1.0)), seed=seed)
    try:
        model = FAMILIES[family](estimator_params, spec, settings, threads, seed)
    except TypeError as error:  # an unknown constructor argument in conf/model/<family>.yaml
        raise ValueError(f"model.{family}: {error}") from error
    back = model.steps if isinstance(model, Pipeline) else [("model", model)]
    return Pipeline(front + back)


def exclusive(family: str) -> contextlib.AbstractContextManager:
    """Hold this around fit and predict when trials run in threads."""
    return _CATBOOST_LOCK if family == "catboost" else contextlib.nullcontext()


def threads_for(family: str, cores: int, parallel_trials: int) -> int:
    """CatBoost runs one call at a time (see ``exclusive``), so it may use every core."""
    return cores if family == "catboost" else max(1, cores // parallel_trials)


def predict(pipeline: Pipeline, X: pd.DataFrame, task: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(prediction, probability of the positive class or None)."""
    if task == "binary":
        probability = pipeline.predict_proba(X)[:, 1]
        return (probability >= 0.5).astype(np.int64), probability
    return pipeline.predict(X), None
