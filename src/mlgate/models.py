"""Model families: each one a scikit-learn Pipeline with its own preprocessing, fitted as a whole.

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
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from mlgate.data import DataSpec

MISSING_CATEGORY = "__missing__"
# CatBoost's Python fit/predict path swaps process-global logger state (catboost#2620), so two
# CatBoost calls from parallel trial threads must not overlap; other families run concurrently.
_CATBOOST_LOCK = threading.Lock()


class CategoriesAsText(BaseEstimator, TransformerMixin):
    """Categorical columns as strings with missing values as their own category (CatBoost rejects NaN)."""

    def __init__(self, categorical: tuple[str, ...] = ()):
        self.categorical = categorical

    def fit(self, X: pd.DataFrame, y=None):
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        X = X.copy()
        for column in self.categorical:
            X[column] = X[column].astype(object).where(X[column].notna(), MISSING_CATEGORY).astype(str)
        return X


def _catboost(params: dict[str, Any], spec: DataSpec, threads: int, seed: int) -> Pipeline:
    from catboost import CatBoostClassifier, CatBoostRegressor

    estimator_cls = CatBoostClassifier if spec.task == "binary" else CatBoostRegressor
    categorical = tuple(spec.categorical_features)  # a tuple: sklearn.clone breaks on lists (catboost#3078)
    estimator = estimator_cls(
        **params, cat_features=categorical, thread_count=threads, random_seed=seed,
        verbose=0, allow_writing_files=False,
    )
    return Pipeline([("prepare", CategoriesAsText(categorical)), ("model", estimator)])


def _linear(params: dict[str, Any], spec: DataSpec, threads: int, seed: int) -> Pipeline:
    params = dict(params)
    alpha = float(params.pop("alpha", 1.0))
    numeric = Pipeline([("impute", SimpleImputer(strategy="median", add_indicator=True)), ("scale", StandardScaler())])
    categorical = Pipeline([
        ("impute", SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY)),
        ("encode", OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=5, sparse_output=False)),
    ])
    prepare = ColumnTransformer([("numeric", numeric, spec.numeric_features),
                                 ("categorical", categorical, spec.categorical_features)])
    if spec.task == "binary":
        estimator = LogisticRegression(C=1.0 / alpha, max_iter=2000, random_state=seed, **params)
    else:
        estimator = Ridge(alpha=alpha, random_state=seed, **params)
    return Pipeline([("prepare", prepare), ("model", estimator)])


def _random_forest(params: dict[str, Any], spec: DataSpec, threads: int, seed: int) -> Pipeline:
    prepare = ColumnTransformer([
        ("numeric", SimpleImputer(strategy="median"), spec.numeric_features),
        ("categorical", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1,
                                       encoded_missing_value=-1), spec.categorical_features),
    ])
    estimator_cls = RandomForestClassifier if spec.task == "binary" else RandomForestRegressor
    estimator = estimator_cls(**params, n_jobs=threads, random_state=seed)
    return Pipeline([("prepare", prepare), ("model", estimator)])


FAMILIES: dict[str, Callable[[dict[str, Any], DataSpec, int, int], Pipeline]] = {
    "catboost": _catboost,
    "linear": _linear,
    "random_forest": _random_forest,
}


def build(family: str, params: dict[str, Any], spec: DataSpec, *, threads: int = 1, seed: int = 0) -> Pipeline:
    if family not in FAMILIES:
        raise ValueError(f"unknown model family '{family}' (params.yaml: model.{family}); known: {sorted(FAMILIES)}")
    try:
        return FAMILIES[family](params, spec, threads, seed)
    except TypeError as error:  # an unknown constructor argument in conf/model/<family>.yaml
        raise ValueError(f"model.{family}: {error}") from error


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
