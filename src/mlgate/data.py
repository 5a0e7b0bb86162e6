"""The dataset declaration (conf/data/<name>.yaml): source, target, task and data contract."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

TASKS = ("binary", "regression")
COLUMN_TYPES = ("integer", "float", "string", "boolean")


@dataclass(frozen=True)
class ColumnSpec:
    type: str
    max_missing_share: float | None = None


@dataclass(frozen=True)
class Contract:
    columns: dict[str, ColumnSpec]
    min_rows: int = 1
    min_class_count: int = 1
    max_missing_share: float = 0.0


SOURCE_KINDS = ("file", "sql", "http")
FILE_OPTIONS = ("sep", "encoding", "na_values", "dtype", "decimal", "thousands", "skiprows", "storage_options")


@dataclass(frozen=True)
class SourceSpec:
    """Where the data comes from: one ``kind`` and the fields of that kind (see conf/data/*.yaml)."""
    kind: str
    # file: a local path or an fsspec URL (s3://, gs://, https://, ...), CSV or Parquet
    path: str | None = None
    format: str = "csv"
    options: dict[str, Any] = field(default_factory=dict)   # passed to pandas: FILE_OPTIONS
    # sql: a SQLAlchemy URL without credentials, and a table or a query with bound parameters
    url: str | None = None
    table: str | None = None
    query: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    username_env: str | None = None      # names of environment variables, never the secrets
    password_env: str | None = None
    fingerprint_query: str | None = None  # cheap query whose result changes when the data does
    # http: a JSON API (url above); records under a dotted key; optional pagination
    records_key: str | None = None
    pagination: dict[str, Any] = field(default_factory=dict)
    headers_env: dict[str, str] = field(default_factory=dict)  # header name -> environment variable
    timeout_s: float = 30.0
    retries: int = 3
    backoff_s: float = 0.5

    def __post_init__(self) -> None:
        where = "data.source"
        if self.kind not in SOURCE_KINDS:
            raise ValueError(f"{where}.kind must be one of {SOURCE_KINDS}, got '{self.kind}'")
        if self.kind == "file":
            if not self.path:
                raise ValueError(f"{where}.path is required for a file source")
            if self.format not in ("csv", "parquet"):
                raise ValueError(f"{where}.format must be csv or parquet, got '{self.format}'")
            unknown = sorted(set(self.options) - set(FILE_OPTIONS))
            if unknown:
                raise ValueError(f"{where}.options: unknown option(s) {unknown}; allowed: {list(FILE_OPTIONS)}")
        if self.kind == "sql" and (not self.url or (self.table is None) == (self.query is None)):
            raise ValueError(f"{where}: a sql source needs url and exactly one of table or query")
        if self.kind == "http" and not self.url:
            raise ValueError(f"{where}.url is required for an http source")


@dataclass(frozen=True)
class DataSpec:
    name: str
    task: str
    target: str
    metric: str
    source: SourceSpec
    contract: Contract
    positive_class: str | None = None
    current_path: str | None = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"data.task must be one of {TASKS}, got '{self.task}'")
        if self.target not in self.contract.columns:
            raise ValueError(f"data.contract.columns must declare the target column '{self.target}'")
        for name, spec in self.contract.columns.items():
            if spec.type not in COLUMN_TYPES:
                raise ValueError(
                    f"data.contract.columns.{name}.type must be one of {COLUMN_TYPES}, got '{spec.type}'"
                )
        if self.task == "binary" and self.positive_class is None:
            raise ValueError("data.positive_class is required for a binary task")

    @property
    def features(self) -> list[str]:
        return [c for c in self.contract.columns if c != self.target]

    @property
    def numeric_features(self) -> list[str]:
        return [c for c in self.features if self.contract.columns[c].type in ("integer", "float")]

    @property
    def categorical_features(self) -> list[str]:
        return [c for c in self.features if self.contract.columns[c].type in ("string", "boolean")]


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


def check_contract(frame: pd.DataFrame, spec: DataSpec) -> ValidationResult:
    """Every contract violation of ``frame`` at once (not just the first)."""
    contract = spec.contract
    violations: list[Violation] = []
    warnings: list[Violation] = []
    if len(frame) < contract.min_rows:
        violations.append(Violation(None, "min_rows", f"{len(frame):,} rows, the contract asks for at least {contract.min_rows:,}"))
    missing = [c for c in contract.columns if c not in frame.columns]
    for column in missing:
        role = "target column" if column == spec.target else "column"
        violations.append(Violation(column, "required", f"{role} '{column}' is missing (found: {', '.join(map(str, frame.columns))})"))
    for column in frame.columns:
        if column not in contract.columns:
            warnings.append(Violation(str(column), "undeclared", f"column '{column}' is not in the contract and is not used"))
    for column, col_spec in contract.columns.items():
        if column in missing:
            continue
        values = frame[column]
        violations.extend(_check_type(column, values, col_spec.type))
        limit = contract.max_missing_share if col_spec.max_missing_share is None else col_spec.max_missing_share
        if column == spec.target:
            limit = 0.0
        share = float(values.isna().mean()) if len(values) else 0.0
        if share > limit:
            violations.append(Violation(column, "max_missing_share",
                                        f"{share:.2%} missing ({int(values.isna().sum()):,} rows), limit {limit:.2%}"))
    if spec.target not in missing and spec.task == "binary":
        violations.extend(_check_classes(frame[spec.target], spec))
    return ValidationResult(violations, warnings)


def _check_type(column: str, values: pd.Series, declared: str) -> list[Violation]:
    present = values.dropna()
    if declared in ("integer", "float"):
        numeric = pd.to_numeric(present, errors="coerce") if not pd.api.types.is_numeric_dtype(present) else present
        bad = present[numeric.isna()]
        if len(bad):
            return [Violation(column, "type", f"declared {declared} but {len(bad):,} value(s) are not numeric, "
                                              f"first {bad.iloc[0]!r} at row {bad.index[0]}")]
        if declared == "integer" and len(numeric):
            fractional = numeric[np.mod(numeric.astype(float), 1) != 0]
            if len(fractional):
                return [Violation(column, "type", f"declared integer but {len(fractional):,} value(s) have a "
                                                  f"fractional part, first {fractional.iloc[0]!r} at row {fractional.index[0]}")]
    if declared == "boolean":
        allowed = {True, False, "true", "false", "True", "False"}
        bad = present[~present.isin(allowed)]
        if len(bad):
            return [Violation(column, "type", f"declared boolean but found {bad.iloc[0]!r} at row {bad.index[0]}")]
    return []


def _check_classes(target: pd.Series, spec: DataSpec) -> list[Violation]:
    counts = target.dropna().astype(str).value_counts()
    problems = []
    if len(counts) < 2:
        found = ", ".join(f"'{k}'" for k in counts.index) or "none"
        problems.append(Violation(spec.target, "min_classes", f"a binary target needs two classes, found {found}"))
    elif len(counts) > 2:
        problems.append(Violation(spec.target, "max_classes", f"a binary target has two classes, found {len(counts)}: {list(counts.index[:5])}"))
    if spec.positive_class is not None and str(spec.positive_class) not in counts.index:
        problems.append(Violation(spec.target, "positive_class", f"positive class '{spec.positive_class}' does not occur (classes: {list(counts.index)})"))
    small = counts[counts < spec.contract.min_class_count]
    for label, count in small.items():
        problems.append(Violation(spec.target, "min_class_count", f"class '{label}' has {count:,} rows, the contract asks for at least {spec.contract.min_class_count:,}"))
    return problems


def conform(frame: pd.DataFrame, spec: DataSpec) -> pd.DataFrame:
    """Contract columns only, numerics as float64 and categoricals as strings (missing kept as NaN)."""
    features = conform_features(frame, [c for c in spec.numeric_features if c in frame.columns],
                                [c for c in spec.categorical_features if c in frame.columns])
    if spec.target in frame.columns:
        features[spec.target] = frame[spec.target]
    return features


def conform_features(frame: pd.DataFrame, numeric: list[str], categorical: list[str]) -> pd.DataFrame:
    """The given columns in that order: numerics as float64, categoricals as str with NaN kept."""
    out = {}
    for column in numeric:
        out[column] = pd.to_numeric(frame[column], errors="raise").astype("float64")
    for column in categorical:
        values = frame[column].astype(object)
        out[column] = values.where(values.isna(), values.astype(str))
    return pd.DataFrame(out, index=frame.index)


def target_vector(frame: pd.DataFrame, spec: DataSpec) -> np.ndarray:
    """The target as the models see it: 0/1 for binary (1 = positive class), floats for regression."""
    values = frame[spec.target]
    if spec.task == "binary":
        return (values.astype(str) == str(spec.positive_class)).to_numpy(dtype=np.int64)
    return values.to_numpy(dtype=np.float64)
