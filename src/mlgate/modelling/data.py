"""The dataset declaration (conf/data/<name>.yaml): source, target, task and data contract."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlgate.modelling import personal
from mlgate.modelling.personal import PersonalData
from mlgate.modelling.source import SourceSpec
from mlgate.modelling.task import TASKS, Task, for_spec, named

COLUMN_TYPES = ("integer", "float", "string", "boolean", "datetime", "text")
# an id column is checked for uniqueness, never a feature; a sensitive one (sex, race) is never a feature
# either, but stays in the data for the gate's fairness rule
ROLES = ("feature", "id", "sensitive")
CATEGORY_POLICIES = ("fail", "warn", "other")  # a value outside `categories`: violation, warning, or mapped
MISSING_COLUMN_POLICIES = ("fail", "impute")  # a feature column absent at predict time
NON_FINITE_POLICIES = ("fail", "missing")  # an infinite or too large number: violation, or a missing value
# The largest magnitude a numeric column may hold: float32's. Tree models (random forest, extra
# trees) compute in float32, where a larger number is an infinity and fails the fit.
LARGEST_NUMBER = float(np.finfo(np.float32).max)
_DECIMAL = re.compile(r"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*")
OTHER_CATEGORY = "__other__"


@dataclass(frozen=True)
class ColumnSpec:
    type: str
    role: str = "feature"
    max_missing_share: float | None = None  # None: the contract's default
    min: float | None = None
    max: float | None = None
    categories: list[str] | None = None  # the allowed values; None: any
    new_categories: str | None = None  # policy for values outside `categories`; None: the contract's
    unique: bool = False
    non_finite: str | None = None  # policy for inf, -inf and |x| > 3.4e38; None: the contract's
    pii: str | None = None  # direct | quasi personal data, or none (reviewed: not personal); see modelling.personal
    handling: str | None = None  # for pii direct or quasi: drop | hash | keep
    reason: str | None = None  # why a personal column is kept in the clear (handling: keep)

    def __post_init__(self) -> None:
        if self.type not in COLUMN_TYPES:
            raise ValueError(f"type must be one of {COLUMN_TYPES}, got '{self.type}'")
        self._check_personal()
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got '{self.role}'")
        if (self.min is not None or self.max is not None) and self.type not in ("integer", "float"):
            raise ValueError(f"min/max apply to integer and float columns, not '{self.type}'")
        if any(bound is not None and bound != bound for bound in (self.min, self.max)):  # .nan in YAML
            raise ValueError("min/max must be numbers; .nan compares false with everything and would check nothing")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is above max {self.max:g}")
        if self.categories is not None and self.type not in ("string", "boolean", "integer"):
            raise ValueError(f"categories apply to string, boolean and integer columns, not '{self.type}'")
        if self.new_categories is not None and self.new_categories not in CATEGORY_POLICIES:
            raise ValueError(f"new_categories must be one of {CATEGORY_POLICIES}, got '{self.new_categories}'")
        if self.non_finite is not None:
            if self.non_finite not in NON_FINITE_POLICIES:
                raise ValueError(f"non_finite must be one of {NON_FINITE_POLICIES}, got '{self.non_finite}'")
            if self.type not in ("integer", "float"):
                raise ValueError(f"non_finite applies to integer and float columns, not '{self.type}'")

    def _check_personal(self) -> None:
        if self.pii is not None and self.pii not in personal.PII_KINDS:
            raise ValueError(f"pii must be one of {personal.PII_KINDS}, got '{self.pii}'")
        if self.pii in (None, "none"):
            if self.handling is not None or self.reason is not None:
                raise ValueError("handling and reason apply to personal columns: declare pii: direct or quasi")
            return
        if self.handling not in personal.HANDLINGS:
            raise ValueError(
                f"a pii: {self.pii} column needs handling: one of {personal.HANDLINGS} (drop: never a feature, "
                f"never written; hash: a keyed hash; keep: in the clear, with a reason)"
            )
        if self.handling == "keep" and not (self.reason or "").strip():
            raise ValueError("handling: keep needs a reason: why this personal column is used in the clear")
        if self.handling != "keep" and self.reason is not None:
            raise ValueError(f"reason applies to handling: keep, not {self.handling}")
        if self.handling == "hash":
            if self.type != "string":
                raise ValueError(f"a hashed column holds text (its hash): declare type: string, not '{self.type}'")
            if self.categories is not None:
                raise ValueError("a hashed column cannot list categories: they would be its values in the clear")

    @property
    def dropped(self) -> bool:
        return self.handling == "drop"


@dataclass(frozen=True)
class Contract:
    columns: dict[str, ColumnSpec]
    min_rows: int = 1
    max_rows: int | None = None
    min_class_count: int = 1
    max_missing_share: float = 0.0
    new_categories: str = "warn"
    missing_columns: str = "fail"
    non_finite: str = "fail"  # numeric columns hold finite numbers within ±3.4e38 unless a column says missing
    # A feature that alone reaches this ROC AUC (binary) or R² (regression) is named as a likely leak.
    leakage_threshold: float = 0.98
    pii_key_env: str = personal.DEFAULT_KEY_ENV  # the environment variable holding the key of hashed columns
    undeclared_pii: str = "warn"  # a column that looks personal and has no pii declaration: warn or fail

    def __post_init__(self) -> None:
        if self.undeclared_pii not in personal.UNDECLARED_POLICIES:
            raise ValueError(
                f"data.contract.undeclared_pii must be one of {personal.UNDECLARED_POLICIES}, "
                f"got '{self.undeclared_pii}'"
            )
        if self.new_categories not in CATEGORY_POLICIES:
            raise ValueError(
                f"data.contract.new_categories must be one of {CATEGORY_POLICIES}, got '{self.new_categories}'"
            )
        if self.non_finite not in NON_FINITE_POLICIES:
            raise ValueError(f"data.contract.non_finite must be one of {NON_FINITE_POLICIES}, got '{self.non_finite}'")
        if self.missing_columns not in MISSING_COLUMN_POLICIES:
            raise ValueError(
                f"data.contract.missing_columns must be one of {MISSING_COLUMN_POLICIES}, got '{self.missing_columns}'"
            )
        if self.max_rows is not None and self.max_rows < self.min_rows:
            raise ValueError(f"data.contract.max_rows {self.max_rows} is below min_rows {self.min_rows}")

    def category_policy(self, column: str) -> str:
        return self.columns[column].new_categories or self.new_categories

    @property
    def personal(self) -> PersonalData:
        """The personal-data policy the declarations add up to."""
        declared = {name: col for name, col in self.columns.items() if col.pii not in (None, "none")}
        return PersonalData(
            drop=tuple(name for name, col in declared.items() if col.handling == "drop"),
            hash=tuple(name for name, col in declared.items() if col.handling == "hash"),
            kept={name: col.reason for name, col in declared.items() if col.handling == "keep"},
            kinds={name: col.pii for name, col in declared.items()},
            key_env=self.pii_key_env,
        )

    def non_finite_policy(self, column: str) -> str:
        return self.columns[column].non_finite or self.non_finite


@dataclass(frozen=True)
class DataSpec:
    name: str
    task: str
    target: str | None  # None: a task without one (clustering)
    metric: str
    source: SourceSpec
    contract: Contract
    positive_class: str | None = None
    current_path: str | None = None
    # multiclass: every class label (as text); its order is the order of the model's probability columns
    classes: list[str] | None = None

    def __post_init__(self) -> None:
        task = named(self.task)
        if not task.supervised:
            if self.target is not None:
                raise ValueError(f"data.target: a {self.task} task has no target; set it to null")
            task.check_metric(self.metric)
            unclustered = [c for c in self.features if self.contract.columns[c].type in ("datetime", "text")]
            if unclustered:
                raise ValueError(
                    f"data.contract.columns: {unclustered} are datetime or text columns, which clustering does "
                    f"not use; give them role: id, or drop them from the contract"
                )
            return
        if self.target is None:
            raise ValueError(f"data.target is required for a {self.task} task")
        if self.target not in self.contract.columns:
            raise ValueError(f"data.contract.columns must declare the target column '{self.target}'")
        handling = self.contract.columns[self.target].handling
        if handling in ("drop", "hash"):
            raise ValueError(f"data.contract.columns.{self.target}: the target cannot have handling: {handling}")
        if self.contract.columns[self.target].role != "feature":
            raise ValueError(
                f"data.contract.columns.{self.target}: the target cannot have role "
                f"'{self.contract.columns[self.target].role}'"
            )
        object.__setattr__(self, "classes", TASKS[self.task].declared_classes(self.positive_class, self.classes))

    @property
    def learning_task(self) -> Task:
        """What differs by task type, with this dataset's class labels."""
        return for_spec(self)

    @property
    def is_classification(self) -> bool:
        return self.learning_task.is_classification

    @property
    def features(self) -> list[str]:
        return [
            c
            for c, col in self.contract.columns.items()
            if c != self.target and col.role == "feature" and not col.dropped
        ]

    @property
    def sensitive(self) -> list[str]:
        """Columns kept beside the features for the gate's fairness rule, never given to a model."""
        return [c for c, col in self.contract.columns.items() if col.role == "sensitive"]

    @property
    def erasable_ids(self) -> list[str]:
        """The id columns (role: id) declared ``handling: hash``: their values are keyed hashes wherever
        mlgate keeps them, so each version can record which ones it saw (``mlgate forget``)."""
        return [c for c, col in self.contract.columns.items() if col.role == "id" and c in self.contract.personal.hash]

    def _of_types(self, *types: str) -> list[str]:
        return [c for c in self.features if self.contract.columns[c].type in types]

    @property
    def numeric_features(self) -> list[str]:
        return self._of_types("integer", "float")

    @property
    def categorical_features(self) -> list[str]:
        return self._of_types("string", "boolean")

    @property
    def datetime_features(self) -> list[str]:
        return self._of_types("datetime")

    @property
    def text_features(self) -> list[str]:
        return self._of_types("text")


@dataclass(frozen=True)
class Violation:
    column: str | None
    rule: str
    message: str

    def as_dict(self) -> dict[str, str | None]:
        return {"column": self.column, "rule": self.rule, "message": self.message}


@dataclass(frozen=True)
class ValidationResult:
    violations: list[Violation]
    warnings: list[Violation] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.violations


def check_contract(frame: pd.DataFrame, spec: DataSpec, *, labelled: bool = True) -> ValidationResult:
    """Every contract violation of ``frame`` at once (not just the first), plus warnings.

    ``labelled=False`` checks a batch of new traffic to compare for drift: the target may be absent
    (if present it is checked as usual), and the row bounds, which describe a training set, do not apply.
    """
    contract = spec.contract
    violations: list[Violation] = []
    warnings: list[Violation] = []
    if labelled and len(frame) < contract.min_rows:
        violations.append(
            Violation(None, "min_rows", f"{len(frame):,} rows, the contract asks for at least {contract.min_rows:,}")
        )
    if labelled and contract.max_rows is not None and len(frame) > contract.max_rows:
        violations.append(
            Violation(None, "max_rows", f"{len(frame):,} rows, the contract allows at most {contract.max_rows:,}")
        )
    missing = [c for c, col in contract.columns.items() if c not in frame.columns and not col.dropped]
    for column in missing:
        if column == spec.target and not labelled:
            continue
        role = "target column" if column == spec.target else "column"
        violations.append(
            Violation(column, "required", f"{role} '{column}' is missing (found: {', '.join(map(str, frame.columns))})")
        )
    for column in frame.columns:
        if column not in contract.columns:
            warnings.append(
                Violation(str(column), "undeclared", f"column '{column}' is not in the contract and is not used")
            )
    for problem in _undeclared_personal(frame, contract):
        (violations if contract.undeclared_pii == "fail" else warnings).append(problem)
    for column, col_spec in contract.columns.items():
        if column in missing or col_spec.dropped:
            continue
        values = frame[column]
        type_problems = _check_type(column, values, col_spec.type)
        violations.extend(type_problems)
        numeric = col_spec.type in ("integer", "float") and not type_problems
        beyond = non_finite(values) if numeric else pd.Series(False, index=values.index)
        policy = contract.non_finite_policy(column) if numeric else "fail"
        if beyond.any() and policy == "fail":
            violations.append(_non_finite_violation(column, values, beyond))
        absent = values.isna() | beyond if policy == "missing" else values.isna()
        limit = contract.max_missing_share if col_spec.max_missing_share is None else col_spec.max_missing_share
        if column == spec.target:
            limit = 0.0
        share = float(absent.mean()) if len(values) else 0.0
        if share > limit:
            counted = (
                " (infinite or too large values included: non_finite: missing)"
                if beyond.any() and policy == "missing"
                else ""
            )
            violations.append(
                Violation(
                    column,
                    "max_missing_share",
                    f"{share:.2%} missing ({int(absent.sum()):,} rows{counted}), limit {limit:.2%}",
                )
            )
        if not type_problems:
            violations.extend(_check_range(column, values.where(~beyond), col_spec))
        if col_spec.categories is not None:
            if col_spec.type == "boolean":
                values = normalize_boolean(values)
            problem = _check_categories(column, values, col_spec.categories, contract.category_policy(column))
            if problem is not None:
                (violations if problem.rule == "categories" else warnings).append(problem)
        if col_spec.unique or col_spec.role == "id":
            violations.extend(_check_unique(column, values))
    if spec.target is not None and spec.target not in missing:
        problems = spec.learning_task.target_problems(frame[spec.target], contract.min_class_count, labelled=labelled)
        violations.extend(Violation(spec.target, rule, message) for rule, message in problems)
    if spec.target is not None and spec.target not in missing and not any(v.column == spec.target for v in violations):
        for column, score in leakage_scores(frame, spec).items():
            if score >= contract.leakage_threshold:
                measure = spec.learning_task.leakage_measure
                warnings.append(
                    Violation(
                        column,
                        "leakage",
                        f"alone predicts '{spec.target}' with {measure} {score:.3f} "
                        f"(leakage_threshold {contract.leakage_threshold}); is it "
                        f"known before the target is? If not, drop it",
                    )
                )
    return ValidationResult(violations, warnings)


def _undeclared_personal(frame: pd.DataFrame, contract: Contract) -> list[Violation]:
    """Columns that look personal (by name or values) and carry no pii declaration."""
    problems = []
    for column in frame.columns:
        declared = contract.columns.get(str(column))
        if declared is not None and declared.pii is not None:
            continue
        found = personal.finding(str(column), frame[column])
        if found is not None:
            problems.append(
                Violation(
                    str(column),
                    "personal_data",
                    f"{found.describe(str(column))} and has no pii declaration; declare it in "
                    f"data.contract.columns with pii: {found.kind} and handling: drop, hash or keep (with a "
                    f"reason), or pii: none if it is not",
                )
            )
    return problems


def normalize_boolean(values: pd.Series) -> pd.Series:
    """True/"true"/"True" (and False alike) as the strings "True"/"False"; missing kept; others unchanged."""
    spelled = values.astype(object).map(
        lambda v: {"true": "True", "false": "False"}.get(str(v).lower(), v) if pd.notna(v) else v
    )
    return spelled


def parse_datetime(values: pd.Series) -> pd.Series:
    """Datetimes as UTC timestamps; unparseable values become NaT. Strings must be ISO 8601."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return values.dt.tz_localize("UTC") if values.dt.tz is None else values.dt.tz_convert("UTC")
    return pd.to_datetime(values, errors="coerce", utc=True, format="ISO8601")


def as_numbers(values: pd.Series) -> pd.Series:
    """``values`` as float64, NaN where a value is not a number. Text is read as pandas reads it
    (inf, -Infinity, 1.5e3), and a decimal whose exponent overflows (1e999, which read_csv leaves
    as text) as the infinity it stands for, so the finite rule, not the type rule, names it."""
    if pd.api.types.is_numeric_dtype(values):
        return values.astype("float64")
    numbers = pd.to_numeric(values.astype(object), errors="coerce").astype("float64")
    candidates = values[numbers.isna() & values.notna()]
    unread = candidates[candidates.map(lambda v: isinstance(v, str) and _DECIMAL.fullmatch(v) is not None).astype(bool)]
    if len(unread):
        numbers[unread.index] = unread.map(float)
    return numbers


def non_finite(values: pd.Series) -> pd.Series:
    """True where a value is a number (or text read as one: inf, -Infinity, 1e999) that is infinite
    or larger in magnitude than LARGEST_NUMBER. Missing values and words are False."""
    numbers = as_numbers(values)
    with np.errstate(invalid="ignore"):
        return pd.Series(np.abs(numbers.to_numpy()) > LARGEST_NUMBER, index=values.index)


def _non_finite_violation(column: str, values: pd.Series, beyond: pd.Series) -> Violation:
    rows = ", ".join(_row(i).removeprefix("row ") for i in beyond.index[beyond][:5])
    rows += ", ..." if beyond.sum() > 5 else ""
    return Violation(
        column,
        "finite",
        f"{int(beyond.sum()):,} value(s) are infinite or beyond ±{LARGEST_NUMBER:.1e}, "
        f"first {_shown(values[beyond].iloc[0])}, at row(s) {rows}; the contract allows "
        f"finite numbers only (non_finite: fail); fix the source, or set non_finite: "
        f"missing on the column to read them as missing values",
    )


def _shown(value: Any) -> str:
    """A value as the user wrote it: 3, not np.int64(3)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _row(index: Any) -> str:
    """Rows are counted from 1, header excluded (CSV line = row + 1)."""
    return f"row {index + 1}" if isinstance(index, (int, np.integer)) else f"row {index!r}"


def _check_type(column: str, values: pd.Series, declared: str) -> list[Violation]:
    present = values.dropna()
    if declared in ("integer", "float"):
        numeric = as_numbers(present) if not pd.api.types.is_numeric_dtype(present) else present
        bad = present[numeric.isna()]
        if len(bad):
            return [
                Violation(
                    column,
                    "type",
                    f"declared {declared} but {len(bad):,} value(s) are not numeric, "
                    f"first {_shown(bad.iloc[0])} at {_row(bad.index[0])}",
                )
            ]
        if declared == "integer" and len(numeric):
            as_float = numeric.astype(float)  # an infinity has no fractional part: the finite rule names it
            with np.errstate(invalid="ignore"):
                fractional = numeric[(np.mod(as_float, 1) != 0) & np.isfinite(as_float)]
            if len(fractional):
                return [
                    Violation(
                        column,
                        "type",
                        f"declared integer but {len(fractional):,} value(s) have a "
                        f"fractional part, first {_shown(fractional.iloc[0])} at {_row(fractional.index[0])}",
                    )
                ]
    if declared == "boolean":
        allowed = {True, False, "true", "false", "True", "False"}
        bad = present[~present.isin(allowed)]
        if len(bad):
            return [
                Violation(column, "type", f"declared boolean but found {_shown(bad.iloc[0])} at {_row(bad.index[0])}")
            ]
    if declared == "datetime":
        bad = present[parse_datetime(present).isna()]
        if len(bad):
            return [
                Violation(
                    column,
                    "type",
                    f"declared datetime but {len(bad):,} value(s) are not ISO 8601 "
                    f"dates, first {_shown(bad.iloc[0])} at {_row(bad.index[0])}",
                )
            ]
    return []


def _check_range(column: str, values: pd.Series, col_spec: ColumnSpec) -> list[Violation]:
    if col_spec.min is None and col_spec.max is None:
        return []
    numeric = as_numbers(values)
    problems = []
    for bound, limit, outside in (
        ("min", col_spec.min, numeric < (col_spec.min or 0)),
        ("max", col_spec.max, numeric > (col_spec.max or 0)),
    ):
        if limit is None or not outside.any():
            continue
        observed = numeric.min() if bound == "min" else numeric.max()
        word = "below" if bound == "min" else "above"
        problems.append(
            Violation(
                column,
                "range",
                f"{int(outside.sum()):,} value(s) {word} {bound} {limit:g} "
                f"(observed {bound} {observed:g}, first at {_row(outside.idxmax())})",
            )
        )
    return problems


def _check_categories(column: str, values: pd.Series, allowed: list, policy: str) -> Violation | None:
    present = values.dropna()
    if pd.api.types.is_numeric_dtype(present):  # 1.0 read back from a column with gaps is the category "1"
        new = present[~present.isin(set(pd.to_numeric(pd.Series(allowed), errors="coerce").dropna()))]
    else:
        present = present.astype(str)
        new = present[~present.isin(set(normalize_boolean(pd.Series(allowed, dtype=object)).astype(str)))]
    if new.empty:
        return None
    counts = new.value_counts()
    shown = ", ".join(f"'{k}' ({v:,})" for k, v in counts.head(5).items()) + (" ..." if len(counts) > 5 else "")
    consequence = {
        "fail": "new_categories: fail",
        "warn": "kept (new_categories: warn)",
        "other": f"mapped to '{OTHER_CATEGORY}' (new_categories: other)",
    }[policy]
    rule = "categories" if policy == "fail" else "new_categories"
    return Violation(
        column, rule, f"{len(new):,} value(s) outside the {len(allowed)} allowed categories: {shown}; {consequence}"
    )


def _check_unique(column: str, values: pd.Series) -> list[Violation]:
    duplicated = values[values.duplicated(keep=False) & values.notna()]
    if duplicated.empty:
        return []
    first = duplicated.iloc[0]
    rows = ", ".join(str(i + 1) for i in duplicated.index[duplicated == first][:3])
    return [
        Violation(
            column,
            "unique",
            f"{int(values.duplicated().sum()):,} duplicate value(s) in an id column, "
            f"first {_shown(first)} at rows {rows}",
        )
    ]


LEAKAGE_SAMPLE_ROWS = 50_000


def leakage_scores(frame: pd.DataFrame, spec: DataSpec, seed: int = 0) -> dict[str, float]:
    """How well each feature alone predicts the target: ROC AUC (binary, either direction), its
    macro one-vs-rest mean over the classes (multiclass) or R².

    Numerics score by rank (AUC) or the larger of Pearson² and Spearman² (R², so a rescaled or
    monotone copy of the target is caught); other columns by cross-fitted per-value target means,
    so an id-like column scores near chance instead of memorising the target.
    """
    rows = frame[frame[spec.target].notna()]
    if len(rows) > LEAKAGE_SAMPLE_ROWS:
        rows = rows.sample(LEAKAGE_SAMPLE_ROWS, random_state=seed)
    y = target_vector(rows, spec).astype(float)
    if len(rows) < 10 or np.unique(y).size < 2:
        return {}
    half = np.random.default_rng(seed).random(len(rows)) < 0.5
    scores = {}
    for column in spec.features:
        if column not in rows.columns:
            continue
        values = rows[column]
        if column in spec.numeric_features:
            x = as_numbers(values).to_numpy(dtype=float, copy=True)
            x[np.abs(x) > LARGEST_NUMBER] = np.nan  # reported by the finite rule (or missing by policy)
            if np.isnan(x).all() or np.nanstd(x) == 0:
                continue
            x = np.where(np.isnan(x), np.nanmin(x) - 1.0, x)
            score = spec.learning_task.leakage_score(y, lambda target, x=x: x)
        else:
            keys = values.astype(str).to_numpy()
            score = spec.learning_task.leakage_score(
                y, lambda target, keys=keys: _cross_fitted_means(keys, target, half)
            )
        if score is not None:
            scores[column] = score
    return scores


def _cross_fitted_means(keys: np.ndarray, y: np.ndarray, half: np.ndarray) -> np.ndarray:
    """Each row's per-value target mean, computed on the other half of the rows."""
    out = np.full(len(y), float(np.mean(y)))
    for fit_rows in (half, ~half):
        means = pd.Series(y[fit_rows]).groupby(keys[fit_rows]).mean()
        out[~fit_rows] = pd.Series(keys[~fit_rows]).map(means).fillna(float(np.mean(y[fit_rows]))).to_numpy()
    return out


def conform(frame: pd.DataFrame, spec: DataSpec) -> pd.DataFrame:
    """Feature columns, the sensitive ones (as read) and the target only: numerics as float64 (an
    infinite or too large value missing under non_finite: missing, an error otherwise: no model sees
    one), categoricals and text as str with NaN kept, datetimes as UTC timestamps."""
    present = [c for c in spec.features if c in frame.columns]
    features = conform_features(
        frame,
        [c for c in spec.numeric_features if c in present],
        [c for c in spec.categorical_features + spec.text_features if c in present],
    )
    for column in [c for c in spec.numeric_features if c in present]:
        beyond = non_finite(features[column])
        if not beyond.any():
            continue
        if spec.contract.non_finite_policy(column) != "missing":
            raise ValueError(f"column '{column}': {_non_finite_violation(column, frame[column], beyond).message}")
        features[column] = features[column].where(~beyond)
    for column in spec.datetime_features:
        if column in present:
            features[column] = parse_datetime(frame[column])
    features = features[present]
    for column in (c for c in spec.sensitive if c in frame.columns):
        features[column] = frame[column]
    if spec.target is not None and spec.target in frame.columns:
        features[spec.target] = frame[spec.target]
    return features


def conform_features(frame: pd.DataFrame, numeric: list[str], categorical: list[str]) -> pd.DataFrame:
    """The given columns in that order: numerics as float64, categoricals as str with NaN kept."""
    out = {}
    for column in numeric:
        values = as_numbers(frame[column])
        unread = values.isna() & frame[column].notna()
        if unread.any():
            raise ValueError(
                f"column '{column}': {frame[column][unread].iloc[0]!r} at {_row(unread.idxmax())} is not a number"
            )
        out[column] = values
    for column in categorical:
        values = frame[column].astype(object)
        out[column] = values.where(values.isna(), values.astype(str))
    return pd.DataFrame(out, index=frame.index)


def target_vector(frame: pd.DataFrame, spec: DataSpec) -> np.ndarray:
    """The target as the models see it (``Task.encode``)."""
    return spec.learning_task.encode(frame[spec.target])
