"""A first data contract inferred from the data, for `mlgate infer-schema` to write and a person to review.

The contract describes the rows it was inferred from (observed ranges, observed categories), so the
same data passes `validate` and a different batch is judged against it. Writing it by hand for a
wide table is slow and error-prone; reviewing a draft is not. Nothing here reads or writes files.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
import yaml

from mlgate import config
from mlgate.modelling import personal
from mlgate.modelling.data import (
    LARGEST_NUMBER,
    DataSpec,
    as_numbers,
    check_contract,
    non_finite,
    parse_datetime,
)
from mlgate.modelling.task import TASKS, named

MAX_CATEGORIES = 30  # a string column with more distinct values gets no `categories` list
TEXT_MEDIAN_LENGTH = 30  # free text: median length above this ...
TEXT_DISTINCT_SHARE = 0.5  # ... and more than this share of the values distinct
BOOLEAN_VALUES = {"true", "false", "True", "False"}  # the strings check_contract accepts as boolean
# "id", "customer_id", "Order ID", "user-id", "customerId", "customerID"; not "paid" or "valid".
ID_NAME = re.compile(r"(?i:(?:^|[_\-\s.])id)$|[a-z0-9](?:Id|ID)$")
# A multiclass class needs this many rows: about 60% of them land in train (the split's default
# test and current shares), and each of the default 5 stratified CV folds must see the class.
MIN_CLASS_ROWS = 10


def column_type(values: pd.Series) -> str:
    """The contract type of one column, from its present values.

    A column with no values at all is float: that is what pandas reads an empty CSV column as,
    and every type passes the contract on it. Numbers stored as strings count as numbers, as they
    do in check_contract; a mix of numbers and words is a string.
    """
    present = values.dropna()
    if present.empty:
        return "float"
    if pd.api.types.is_bool_dtype(present):
        return "boolean"
    if pd.api.types.is_datetime64_any_dtype(present):
        return "datetime"
    # Each rule below holds for every value if it holds for every distinct one; a column of text has few
    # (750,000 rows: 17 s value by value), and distinct strings never hash together as 1 and True do.
    all_text = pd.api.types.infer_dtype(present, skipna=True) == "string"
    checked = pd.Series(present.unique(), dtype=object) if all_text else present
    if not pd.api.types.is_numeric_dtype(checked) and checked.map(_is_boolean).all():
        return "boolean"
    numeric = _as_numeric(checked)
    if numeric is not None:  # an infinity says nothing about the type: the finite values decide
        finite = numeric[np.abs(numeric.astype(float)) <= LARGEST_NUMBER]
        return "integer" if len(finite) and (np.mod(finite.astype(float), 1) == 0).all() else "float"
    if not all_text and not checked.map(lambda value: isinstance(value, str)).all():
        return "string"
    if checked.str.contains(r"[-:]").all() and parse_datetime(checked).notna().all():
        return "datetime"  # ISO 8601 strings; the separator test keeps plain years and codes out
    if len(checked) > TEXT_DISTINCT_SHARE * len(present) and present.str.len().median() > TEXT_MEDIAN_LENGTH:
        return "text"
    return "string"


def infer_task(target_values: pd.Series) -> str:
    """binary for two classes, multiclass for 3 to MAX_CATEGORIES labels (strings), regression for
    a numeric quantity; a few distinct integers (codes or counts?) are not guessed."""
    present = target_values.dropna()
    classes = present.astype(str).unique()
    if len(classes) == 2:
        return "binary"
    kind = column_type(present)
    if kind == "float" or (kind == "integer" and len(classes) > MAX_CATEGORIES):
        return "regression"
    if kind in ("string", "boolean") and 3 <= len(classes) <= MAX_CATEGORIES:
        return "multiclass"
    raise ValueError(
        f"cannot tell the task of target '{target_values.name}': {len(classes)} distinct value(s) "
        f"({_examples(classes)}); pass --task multiclass for class labels (at most {MAX_CATEGORIES}) "
        f"or --task regression for a quantity"
    )


def classes(target_values: pd.Series) -> list[str]:
    """A multiclass target's classes as text, sorted: the order of the model's probability columns."""
    return sorted(target_values.dropna().astype(str).unique())


def positive_class(target_values: pd.Series, given: Any = None) -> str:
    """The class the model's probability is for: ``given`` if it occurs, else the minority class
    (ties broken by name), usually the event worth predicting (churn, default, fraud)."""
    counts = target_values.dropna().astype(str).value_counts()
    if given is not None:
        if str(given) not in counts.index:
            raise ValueError(
                f"positive class '{given}' does not occur in '{target_values.name}' "
                f"(classes: {_examples(sorted(counts.index))})"
            )
        return str(given)
    return min(counts.items(), key=lambda item: (item[1], item[0]))[0]


def declared_labels(target_values: pd.Series, task: str, given_positive_class: Any = None) -> dict[str, Any]:
    """The class labels the task's declaration needs (``Task.label_fields``), from the target's values."""
    inferred = {
        "positive_class": lambda: positive_class(target_values, given_positive_class),
        "classes": lambda: classes(target_values),
    }
    return {field: inferred[field]() for field in named(task).label_fields}


def infer_contract(frame: pd.DataFrame, target: str | None, task: str) -> dict[str, Any]:
    """The ``contract:`` mapping of conf/data/<name>.yaml that ``frame`` itself passes."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {tuple(TASKS)}, got '{task}'")
    if named(task).supervised:
        if target is None:
            raise ValueError(f"a {task} task needs a target column")
        _check_target(_target_values(frame, target), task)
    elif target is not None:
        raise ValueError(f"a {task} task has no target; leave out '{target}' (every column is a feature)")
    contract: dict[str, Any] = {"min_rows": _floor_to_two_digits(max(1, len(frame) // 2)), "max_rows": None}
    if named(task).is_classification:
        smallest_class = int(frame[target].astype(str).value_counts().min())
        contract["min_class_count"] = max(1, smallest_class // 2)
    contract |= {
        "max_missing_share": 0.0,
        "new_categories": "warn",
        "missing_columns": "fail",
        "non_finite": "fail",
        "leakage_threshold": 0.98,
        "columns": {str(name): _column_spec(frame[name], is_target=name == target) for name in frame.columns},
    }
    return contract


def _column_spec(values: pd.Series, *, is_target: bool) -> dict[str, Any]:
    kind = column_type(values)
    spec: dict[str, Any] = {"type": kind}
    is_id = not is_target and ID_NAME.search(str(values.name)) and values.notna().all() and values.is_unique
    found = None if is_target else personal.finding(str(values.name), values)
    if found is not None:  # no ranges or categories: they would write personal values into conf/
        proposed = personal.proposed_handling(found, "id" if is_id else "feature")
        hashed = {"type": "string"} if proposed["handling"] == "hash" else spec
        return hashed | ({"role": "id"} if is_id else {}) | proposed
    if is_id:
        return spec | {"role": "id"}  # ids grow and change: no range or categories to hold them to
    beyond = non_finite(values) if kind in ("integer", "float") else pd.Series(False, index=values.index)
    if beyond.any():  # described as they will be read: missing values, and the draft's warnings say so
        spec["non_finite"] = "missing"
    missing_share = float((values.isna() | beyond).mean())
    if missing_share > 0:
        spec["max_missing_share"] = _missing_limit(missing_share)
    present = values[values.notna() & ~beyond]
    if kind in ("integer", "float") and not present.empty:
        numeric = _as_numeric(present)
        cast = int if kind == "integer" else float
        spec |= {"min": cast(numeric.min()), "max": cast(numeric.max())}
    if kind in ("string", "boolean"):
        distinct = present.astype(str).unique()
        if len(distinct) <= MAX_CATEGORIES:
            spec["categories"] = sorted(distinct)
    return spec


def _target_values(frame: pd.DataFrame, target: str) -> pd.Series:
    if target not in frame.columns:
        raise ValueError(f"target column '{target}' not found (columns: {', '.join(map(str, frame.columns))})")
    return frame[target]


def _check_target(values: pd.Series, task: str) -> None:
    """Refuse a target the contract would reject on this very data."""
    missing = int(values.isna().sum())
    if missing:
        raise ValueError(
            f"target '{values.name}' has {missing:,} missing value(s) and the contract allows none "
            f"in the target; drop those rows from the source first"
        )
    classes = values.astype(str).unique()
    if task == "binary" and len(classes) != 2:
        raise ValueError(
            f"a binary target needs two classes; '{values.name}' has {len(classes)} ({_examples(classes)})"
        )
    if task == "multiclass":
        counts = values.astype(str).value_counts()
        if len(counts) < 3:
            raise ValueError(
                f"a multiclass target needs at least three classes; '{values.name}' has {len(counts)} "
                f"({_examples(counts.index)}): use --task binary"
            )
        if len(counts) > MAX_CATEGORIES:
            raise ValueError(
                f"a multiclass target has at most {MAX_CATEGORIES} classes; '{values.name}' has "
                f"{len(counts)} ({_examples(counts.index)})"
            )
        rare = counts[counts < MIN_CLASS_ROWS]
        if len(rare):
            listed = ", ".join(f"'{label}' ({count} row{'s' if count > 1 else ''})" for label, count in rare.items())
            raise ValueError(
                f"target '{values.name}': class(es) {listed} have fewer than {MIN_CLASS_ROWS} rows, too few "
                f"for stratified cross-validation folds; merge them into another class or drop their rows"
            )
    if task == "regression" and column_type(values) not in ("integer", "float"):
        raise ValueError(f"a regression target must be numeric; '{values.name}' holds {_examples(classes)}")
    beyond = non_finite(values) if task == "regression" else pd.Series(False, index=values.index)
    if beyond.any():
        rows = ", ".join(str(position + 1) for position in np.flatnonzero(beyond.to_numpy())[:5])
        raise ValueError(
            f"target '{values.name}' has {int(beyond.sum()):,} infinite or too large value(s) (beyond "
            f"±{LARGEST_NUMBER:.1e}) at row(s) {rows}{', ...' if beyond.sum() > 5 else ''}; no model "
            f"can learn from them: drop or fix those rows in the source first"
        )


def _missing_limit(observed: float) -> float:
    """Observed share plus headroom (half as much again, at least one point), rounded up to 0.001
    (after dropping float noise, so 0.05 * 1.5 stays 0.075)."""
    return min(1.0, math.ceil(round(max(observed * 1.5, observed + 0.01) * 1000, 6)) / 1000)


def _floor_to_two_digits(count: int) -> int:
    """2227 -> 2200: a round floor that a batch half the size of this one fails."""
    scale = 10 ** max(0, len(str(count)) - 2)
    return count // scale * scale


def _is_boolean(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_)) or (isinstance(value, str) and value in BOOLEAN_VALUES)


def _as_numeric(present: pd.Series) -> pd.Series | None:
    """The values as numbers, or None when any of them is not a number."""
    if pd.api.types.is_numeric_dtype(present):
        return present
    numeric = as_numbers(present)
    return None if numeric.isna().any() else numeric


def _examples(values, shown: int = 5) -> str:
    values = list(values)
    return ", ".join(f"'{v}'" for v in values[:shown]) + (", ..." if len(values) > shown else "")


# --- the YAML file ------------------------------------------------------------------------------


class _OneLine(dict):
    """A mapping written in flow style on one line, as conf/data/*.yaml writes each column."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(
    _OneLine, lambda dumper, mapping: dumper.represent_mapping("tag:yaml.org,2002:map", mapping, flow_style=True)
)


def render(
    name: str,
    source: dict[str, Any],
    target: str | None,
    task: str,
    positive_class: str | None,
    contract: dict[str, Any],
    *,
    rows: int,
    origin: str,
    class_labels: list[str] | None = None,
) -> str:
    """The text of conf/data/<name>.yaml: a header saying where it came from, then the declaration."""
    header = (
        f"# Inferred by `mlgate infer-schema` from {origin} ({rows:,} rows) on {date.today().isoformat()}. "
        f"Review every line, then commit.\n"
        f"# min/max and categories are the observed ones, not the allowed ones: widen them to what "
        f"new data may hold.\n"
    )
    declaration = {
        "name": name,
        "task": task,
        "target": target,
        "positive_class": None if positive_class is None else str(positive_class),
        **({"classes": list(class_labels or [])} if "classes" in named(task).label_fields else {}),
        "metric": named(task).default_metric,
        "source": source,
        "current_path": None,
        "contract": contract | {"columns": {column: _OneLine(spec) for column, spec in contract["columns"].items()}},
    }
    return header + yaml.dump(
        declaration, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True, width=math.inf
    )


def summary(contract: dict[str, Any], rows: int) -> str:
    columns = contract["columns"]
    ids = [name for name, spec in columns.items() if spec.get("role") == "id"]
    with_categories = sum("categories" in spec for spec in columns.values())
    with_ranges = sum("min" in spec for spec in columns.values())
    with_missing = sum("max_missing_share" in spec for spec in columns.values())
    declared = [f"{name} ({spec['handling']})" for name, spec in columns.items() if "handling" in spec]
    return (
        f"{len(columns)} columns from {rows:,} rows; {with_categories} with categories, {with_ranges} with "
        f"ranges, {with_missing} with missing values; ids: {', '.join(ids) or 'none'}; "
        f"personal data (review): {', '.join(declared) or 'none found'}"
    )


@dataclass(frozen=True)
class Draft:
    text: str  # conf/data/<name>.yaml
    summary: str
    warnings: list[str]  # what check_contract warns about on the same data (a likely leak, say)


def draft(
    frame: pd.DataFrame,
    name: str,
    source: dict[str, Any],
    target: str | None,
    *,
    task: str | None = None,
    given_positive_class: Any = None,
    origin: str,
) -> Draft:
    """infer_contract and render, then load the text back and check ``frame`` against it, so what
    gets written is a declaration the pipeline accepts and this data passes. No target: a clustering
    task (every column a feature)."""
    if target is None:
        if task not in (None, "clustering"):
            raise ValueError(f"a {task} task needs a target column (--target)")
        task = "clustering"
    task = task or infer_task(_target_values(frame, target))
    contract = infer_contract(frame, target, task)
    labels = {} if target is None else declared_labels(frame[target], task, given_positive_class)
    text = render(
        name,
        source,
        target,
        task,
        labels.get("positive_class"),
        contract,
        rows=len(frame),
        origin=origin,
        class_labels=labels.get("classes"),
    )
    result = check_contract(frame, config.build(DataSpec, yaml.safe_load(text), "data"))
    if not result.passed:
        problems = "; ".join(f"{v.column}: {v.message}" for v in result.violations)
        raise ValueError(f"the inferred contract rejects the data it came from (please report): {problems}")
    infinite = [
        f"{column}: {int(non_finite(frame[column]).sum()):,} infinite or too large value(s); drafted as "
        f"non_finite: missing (read as missing values); fix the source if they are errors"
        for column, spec in contract["columns"].items()
        if spec.get("non_finite")
    ]
    warned = [f"{w.column}: {w.message}" for w in result.warnings]
    return Draft(text, summary(contract, len(frame)), [*infinite, *warned])
