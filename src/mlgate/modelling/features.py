"""Preprocessing shared by every model family, fitted inside the model pipeline on the training fold only.

The steps, in pipeline order: ``InputGuard`` (the contract at predict time), ``DatetimeFeatures``,
``TextFeatures``, ``ColumnFilter`` (constant and duplicate columns always; a searched selection
method) and ``QuantileClipper``. Each is a scikit-learn transformer on DataFrames, so the fitted
state travels with the logged model and serving sees exactly what training saw.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from mlgate.modelling.data import OTHER_CATEGORY, DataSpec, normalize_boolean, parse_datetime
from mlgate.modelling.task import named

SELECTION_METHODS = ("none", "mutual_info", "model")
DATETIME_PARTS = ("year", "month", "day_of_week", "hour", "days_elapsed")
# Selection scores on a sample: its ranking is stable well below the size of most training folds.
SELECTION_SAMPLE_ROWS = 4_000


@dataclass(frozen=True)
class FeatureSettings:
    """params.yaml `features:`; how every family's preprocessing behaves (selection is searched)."""

    clip_quantiles: list[float] | None = None  # [low, high]; null: no clipping
    missing_indicators: bool = True
    near_duplicate_correlation: float = 0.999
    text_max_features: int = 20_000
    text_components: int = 20

    def __post_init__(self) -> None:
        if self.clip_quantiles is not None:
            low, high = self.clip_quantiles
            if not 0 <= low < high <= 1:
                raise ValueError(
                    f"features.clip_quantiles must be [low, high] with 0 <= low < high <= 1, got {self.clip_quantiles}"
                )
        if not 0 < self.near_duplicate_correlation <= 1:
            raise ValueError("features.near_duplicate_correlation must be in (0, 1]")


class InputValidationError(ValueError):
    """The input breaks the contract the model was trained under; the message names the column."""


class UnseenCategoryWarning(UserWarning):
    pass


class InputGuard(BaseEstimator, TransformerMixin):
    """The contract applied to every input frame: column presence, types and the category policy.

    Missing feature columns fail or become missing values (``missing_columns``); values outside a
    column's declared ``categories`` fail, warn, or become ``__other__`` (a missing value in a
    numeric column). Numerics come out as float64, categoricals and text as str (NaN kept; booleans
    spelled "True"/"False"), datetimes as UTC timestamps.
    """

    def __init__(
        self,
        numeric=(),
        categorical=(),
        datetime=(),
        text=(),
        boolean=(),
        categories=None,
        policies=None,
        missing_columns: str = "fail",
    ):
        self.numeric = numeric
        self.categorical = categorical
        self.datetime = datetime
        self.text = text
        self.boolean = boolean
        self.categories = categories
        self.policies = policies
        self.missing_columns = missing_columns

    @classmethod
    def from_spec(cls, spec: DataSpec) -> InputGuard:
        contract = spec.contract
        declared = {}
        for column in spec.numeric_features + spec.categorical_features:
            allowed = contract.columns[column].categories
            if allowed is None:
                continue
            if column in spec.numeric_features:
                declared[column] = tuple(float(v) for v in allowed)
            else:
                declared[column] = tuple(normalize_boolean(pd.Series(allowed, dtype=object)).astype(str))
        boolean = tuple(c for c in spec.categorical_features if contract.columns[c].type == "boolean")
        return cls(
            tuple(spec.numeric_features),
            tuple(spec.categorical_features),
            tuple(spec.datetime_features),
            tuple(spec.text_features),
            boolean,
            declared,
            {c: contract.category_policy(c) for c in declared},
            contract.missing_columns,
        )

    @property
    def columns(self) -> list[str]:
        return [*self.numeric, *self.categorical, *self.datetime, *self.text]

    def fit(self, X: pd.DataFrame, y=None):
        self.transform(X)
        self.n_features_in_ = len(self.columns)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        if not isinstance(X, pd.DataFrame):
            raise InputValidationError(f"expected a DataFrame with columns {self.columns}, got {type(X).__name__}")
        missing = [c for c in self.columns if c not in X.columns]
        if missing and self.missing_columns == "fail":
            raise InputValidationError(
                f"input is missing column(s) {missing}; the model was trained on "
                f"{self.columns} (contract missing_columns: fail)"
            )
        if missing:
            warnings.warn(
                f"input is missing column(s) {missing}; treated as missing values (contract missing_columns: impute)",
                UserWarning,
                stacklevel=2,
            )
        X = X.reindex(columns=self.columns) if missing else X
        parts = []
        if self.numeric:
            numeric = X[list(self.numeric)]
            if not all(pd.api.types.is_numeric_dtype(t) for t in numeric.dtypes):
                numeric = pd.DataFrame({c: _as_float(c, numeric[c]) for c in self.numeric}, index=X.index)
            numeric = numeric.astype("float64")
            _refuse_non_finite(numeric)
            parts.append(numeric)
        strings = [*self.categorical, *self.text]
        if strings:  # one block operation: per-column pandas calls dominate a single-row request
            block = X[strings].astype(object)
            for column in self.boolean:
                block[column] = normalize_boolean(block[column])
            parts.append(block.where(block.isna(), block.astype(str)))
        if self.datetime:
            parts.append(pd.DataFrame({c: _as_datetime(c, X[c]) for c in self.datetime}, index=X.index))
        out = pd.concat(parts, axis=1) if len(parts) > 1 else parts[0].copy()
        for column in self._possibly_undeclared(out):
            checked = self._apply_policy(column, out[column])
            if checked is not out[column]:
                out[column] = checked
        return out if out.columns.tolist() == self.columns else out[self.columns]

    def _possibly_undeclared(self, out: pd.DataFrame) -> list[str]:
        """The columns with declared categories that may hold a value outside them. On a few rows, one
        set lookup per cell over the whole frame rules out the rest: a single-row request would
        otherwise pay a Series round trip for each such column."""
        declared = list(self.categories or {})
        if len(out) > 64 or not declared:
            return declared
        cells = out.to_numpy(dtype=object)  # cheaper than selecting the declared columns first
        possibly = []
        for column, j in zip(declared, out.columns.get_indexer(declared), strict=True):
            known = frozenset(self.categories[column])
            if any(v == v and v is not None and v not in known for v in cells[:, j]):
                possibly.append(column)
        return possibly

    def _apply_policy(self, column: str, values: pd.Series) -> pd.Series:
        allowed = self.categories[column]
        if len(values) <= 64:  # a set lookup per value beats pandas' isin machinery on a few rows
            known = frozenset(allowed)
            outside = pd.Series(
                [v == v and v is not None and v not in known for v in values.to_numpy()], index=values.index, dtype=bool
            )
        else:
            outside = values.notna() & ~values.isin(allowed)
        if not outside.any():
            return values
        policy = self.policies[column]
        unseen = [_Quoted(v) for v in sorted(values[outside].unique())[:5]]
        if policy == "fail":
            raise InputValidationError(
                f"column '{column}': value(s) {unseen} are outside its declared categories "
                f"(contract new_categories: fail)"
            )
        if policy == "warn":
            warnings.warn(
                f"column '{column}': unseen value(s) {unseen} (contract new_categories: warn)",
                UnseenCategoryWarning,
                stacklevel=2,
            )
            return values
        return values.where(~outside, np.nan if column in self.numeric else OTHER_CATEGORY)


def _as_datetime(column: str, values: pd.Series) -> pd.Series:
    parsed = parse_datetime(values)
    bad = values[parsed.isna() & values.notna()]
    if len(bad):
        raise InputValidationError(
            f"column '{column}': {_quoted(bad.iloc[0])} at row {_position(values, bad.index[0])} "
            f"is not an ISO 8601 date ({len(bad):,} such value(s))"
        )
    return parsed


QUOTE_CHARS = 60  # a rejected value quoted in a message at most: a client must not get megabytes echoed back


def _quoted(value) -> str:
    text = repr(value.item() if isinstance(value, np.generic) else value)
    return text if len(text) <= QUOTE_CHARS else f"{text[:QUOTE_CHARS]}...({len(text):,} chars)"


class _Quoted:
    """A value that prints as ``_quoted`` inside a list in a message."""

    def __init__(self, value):
        self.text = _quoted(value)

    def __repr__(self) -> str:
        return self.text


def _refuse_non_finite(numeric: pd.DataFrame) -> None:
    """inf and -inf (a float, or text such as "inf" read as one) are not numbers a model can use."""
    infinite = np.isinf(numeric.to_numpy())
    if infinite.any():
        row, j = (int(i) for i in np.argwhere(infinite)[0])
        column = numeric.columns[j]
        raise InputValidationError(
            f"column '{column}': {numeric.iat[row, j]} at row {row} is not a finite number "
            f"({int(infinite[:, j].sum()):,} such value(s))"
        )


def _position(values: pd.Series, label) -> int:
    """The 0-based position of a row, as a client sending a list of records counts it."""
    return int(values.index.get_loc(label))


def _as_float(column: str, values: pd.Series) -> pd.Series:
    if pd.api.types.is_numeric_dtype(values):
        return values.astype("float64")
    numeric = pd.to_numeric(values, errors="coerce")
    bad = values[numeric.isna() & values.notna()]
    if len(bad):
        raise InputValidationError(
            f"column '{column}': {_quoted(bad.iloc[0])} at row {_position(values, bad.index[0])} "
            f"is not a number ({len(bad):,} such value(s))"
        )
    return numeric.astype("float64")


class DatetimeFeatures(BaseEstimator, TransformerMixin):
    """Each datetime column becomes year, month, day of week, hour and days since the training start."""

    def __init__(self, columns=()):
        self.columns = columns

    def fit(self, X: pd.DataFrame, y=None):
        self.start_ = {c: X[c].min() for c in self.columns}
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        X = X.copy()
        for column in self.columns:
            stamps = X.pop(column)
            start = self.start_[column]
            elapsed = (stamps - start).dt.total_seconds() / 86_400 if pd.notna(start) else np.nan
            parts = {
                "year": stamps.dt.year,
                "month": stamps.dt.month,
                "day_of_week": stamps.dt.dayofweek,
                "hour": stamps.dt.hour,
                "days_elapsed": elapsed,
            }
            for part in DATETIME_PARTS:
                X[f"{column}__{part}"] = pd.Series(parts[part], index=X.index).astype("float64")
        return X


class TextFeatures(BaseEstimator, TransformerMixin):
    """Each free-text column becomes TF-IDF reduced to a few dense components (LSA), for every family."""

    def __init__(self, columns=(), max_features: int = 20_000, components: int = 20, seed: int = 0):
        self.columns = columns
        self.max_features = max_features
        self.components = components
        self.seed = seed

    def fit(self, X: pd.DataFrame, y=None):
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.encoders_ = {}
        for column in self.columns:
            documents = X[column].fillna("").astype(str)
            vectorizer = TfidfVectorizer(max_features=self.max_features, sublinear_tf=True, min_df=2)
            try:
                matrix = vectorizer.fit_transform(documents)
            except ValueError:  # empty vocabulary: no word occurs twice; the column carries nothing
                self.encoders_[column] = None
                continue
            # LSA needs more terms than components; a small vocabulary is used as it is
            small = matrix.shape[1] <= self.components or matrix.shape[0] <= self.components
            reducer = None if small else TruncatedSVD(n_components=self.components, random_state=self.seed).fit(matrix)
            self.encoders_[column] = (vectorizer, reducer)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        X = X.copy()
        for column in self.columns:
            documents = X.pop(column).fillna("").astype(str)
            if self.encoders_[column] is None:
                continue
            vectorizer, reducer = self.encoders_[column]
            matrix = vectorizer.transform(documents)
            dense = matrix.toarray() if reducer is None else reducer.transform(matrix)
            for i in range(dense.shape[1]):
                X[f"{column}__text{i}"] = dense[:, i]
        return X


class ColumnFilter(BaseEstimator, TransformerMixin):
    """Drops constant and duplicate columns, then keeps the best ``keep_share`` by ``method``.

    Duplicates: numeric pairs with |correlation| >= ``near_duplicate_correlation``, categorical
    columns that are one-to-one relabellings of each other. ``method``: none, mutual_info (mutual
    information with the target) or model (extremely randomised trees' impurity importance).
    """

    def __init__(
        self,
        task: str = "binary",
        method: str = "none",
        keep_share: float = 1.0,
        near_duplicate_correlation: float = 0.999,
        seed: int = 0,
    ):
        self.task = task
        self.method = method
        self.keep_share = keep_share
        self.near_duplicate_correlation = near_duplicate_correlation
        self.seed = seed

    def fit(self, X: pd.DataFrame, y=None):
        if self.method not in SELECTION_METHODS:
            raise ValueError(f"selection must be one of {SELECTION_METHODS}, got '{self.method}'")
        if not 0 < self.keep_share <= 1:
            raise ValueError(f"keep_share must be in (0, 1], got {self.keep_share}")
        constant = [c for c in X.columns if X[c].nunique(dropna=False) <= 1]
        candidates = [c for c in X.columns if c not in constant]
        duplicates = _duplicates(X[candidates], self.near_duplicate_correlation)
        candidates = [c for c in candidates if c not in duplicates]
        self.dropped_ = {"constant": constant, "duplicate": duplicates, "unselected": []}
        if self.method != "none" and len(candidates) > 1 and y is not None:
            scores = self._scores(X[candidates], np.asarray(y))
            keep = max(1, math.ceil(self.keep_share * len(candidates)))
            ranked = sorted(candidates, key=lambda c: -scores[c])
            self.dropped_["unselected"] = ranked[keep:]
            candidates = [c for c in candidates if c in set(ranked[:keep])]
        self.kept_ = candidates if candidates else list(X.columns[:1])
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        return X[self.kept_]

    def _scores(self, X: pd.DataFrame, y: np.ndarray) -> dict[str, float]:
        if len(X) > SELECTION_SAMPLE_ROWS:
            rows = np.random.default_rng(self.seed).choice(len(X), SELECTION_SAMPLE_ROWS, replace=False)
            X, y = X.iloc[rows], y[rows]
        encoded, discrete = _encode(X)
        if self.method == "mutual_info":
            from sklearn.feature_selection import mutual_info_classif, mutual_info_regression

            score = named(self.task).variant(mutual_info_classif, mutual_info_regression)
            values = score(encoded, y, discrete_features=discrete, random_state=self.seed)
        else:
            from sklearn.ensemble import ExtraTreesClassifier, ExtraTreesRegressor

            forest = named(self.task).variant(ExtraTreesClassifier, ExtraTreesRegressor)(
                n_estimators=50, min_samples_leaf=5, n_jobs=1, random_state=self.seed
            )
            values = forest.fit(encoded, y).feature_importances_
        return dict(zip(X.columns, values, strict=True))


def _encode(X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Numerics with missing values at the median; other columns as integer codes (missing = -1)."""
    columns, discrete = [], []
    for column in X.columns:
        values = X[column]
        if pd.api.types.is_numeric_dtype(values):
            columns.append(values.fillna(values.median()).fillna(0.0).to_numpy(dtype=float))
            discrete.append(False)
        else:
            columns.append(pd.factorize(values)[0].astype(float))
            discrete.append(True)
    return np.column_stack(columns), np.asarray(discrete)


def _duplicates(X: pd.DataFrame, threshold: float) -> list[str]:
    """Columns that repeat an earlier one: the later of each pair goes."""
    dropped: list[str] = []
    seen_codes: dict[str, str] = {}
    for column in X.columns:
        if not pd.api.types.is_numeric_dtype(X[column]):
            # factorize numbers values by first appearance, so relabellings get identical codes
            key = hashlib.sha1(pd.factorize(X[column])[0].tobytes()).hexdigest()
            if key in seen_codes:
                dropped.append(column)
            seen_codes.setdefault(key, column)
    numeric = [c for c in X.columns if pd.api.types.is_numeric_dtype(X[c])]
    if len(numeric) > 1:
        sample = (
            X[numeric]
            if len(X) <= SELECTION_SAMPLE_ROWS * 5
            else X[numeric].sample(SELECTION_SAMPLE_ROWS * 5, random_state=0)
        )
        correlation = sample.corr().abs().to_numpy()
        gaps = sample.isna()
        for j in range(len(numeric)):
            # corr() uses the rows where both have values: a duplicate must also miss the same rows
            if any(
                correlation[i, j] >= threshold and gaps[numeric[i]].equals(gaps[numeric[j]])
                for i in range(j)
                if numeric[i] not in dropped
            ):
                dropped.append(numeric[j])
    return dropped


class QuantileClipper(BaseEstimator, TransformerMixin):
    """Numeric values clipped to the [low, high] quantiles learned on the training rows."""

    def __init__(self, quantiles=(0.005, 0.995)):
        self.quantiles = quantiles

    def fit(self, X: pd.DataFrame, y=None):
        numeric = [c for c in X.columns if pd.api.types.is_numeric_dtype(X[c])]
        low, high = self.quantiles
        bounds = X[numeric].quantile([low, high])
        self.lower_ = bounds.iloc[0].to_dict()
        self.upper_ = bounds.iloc[1].to_dict()
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        columns = list(self.lower_)
        # a column all missing in training has NaN bounds: no bound
        lower = np.nan_to_num(np.array([self.lower_[c] for c in columns], dtype=float), nan=-np.inf)
        upper = np.nan_to_num(np.array([self.upper_[c] for c in columns], dtype=float), nan=np.inf)
        clipped = np.clip(X[columns].to_numpy(dtype=float), lower, upper)  # missing values stay missing
        X = X.copy(deep=False)
        X[columns] = clipped
        return X


def steps(
    spec: DataSpec, settings: FeatureSettings, *, selection: str = "none", keep_share: float = 1.0, seed: int = 0
) -> list[tuple[str, BaseEstimator]]:
    """The shared front of every family's pipeline, raw contract columns in, a clean frame out."""
    front: list[tuple[str, BaseEstimator]] = [("guard", InputGuard.from_spec(spec))]
    if spec.datetime_features:
        front.append(("datetime", DatetimeFeatures(tuple(spec.datetime_features))))
    if spec.text_features:
        front.append(
            (
                "text",
                TextFeatures(tuple(spec.text_features), settings.text_max_features, settings.text_components, seed),
            )
        )
    front.append(("filter", ColumnFilter(spec.task, selection, keep_share, settings.near_duplicate_correlation, seed)))
    if settings.clip_quantiles is not None:
        front.append(("clip", QuantileClipper(tuple(settings.clip_quantiles))))
    return front
