import re

import numpy as np
import pandas as pd
import pytest

from mlgate import config
from mlgate.modelling.data import DataSpec, check_contract, conform, target_vector


def _rules(violations) -> set[tuple[str | None, str]]:
    return {(v.column, v.rule) for v in violations}


def test_clean_frame_passes(clean_frame, binary_spec):
    result = check_contract(clean_frame, binary_spec)

    assert result.passed
    assert result.violations == []
    assert result.warnings == []


def test_all_violations_are_reported_at_once(data_section):
    data_section["contract"].update(min_rows=10, min_class_count=2)
    spec = config.build(DataSpec, data_section, "data")
    frame = pd.DataFrame(
        {
            "tenure": [1, 2.5, 3, 4, 5, 6],
            "charges": [20.0, "abc", np.nan, np.nan, np.nan, np.nan],
            "plan": ["basic", "plus", "pro", "basic", "plus", "pro"],
            "churn": ["Yes", "No", "No", "No", "No", "No"],
        }
    )

    result = check_contract(frame, spec)

    assert not result.passed
    assert _rules(result.violations) == {
        (None, "min_rows"),
        ("tenure", "type"),
        ("charges", "type"),
        ("charges", "max_missing_share"),
        ("churn", "min_class_count"),
    }


def test_missing_target_is_reported_with_other_violations(clean_frame, binary_spec):
    frame = clean_frame.drop(columns="churn").assign(plan=[np.nan] * 5 + ["pro"])

    result = check_contract(frame, binary_spec)

    assert _rules(result.violations) == {("churn", "required"), ("plan", "max_missing_share")}
    required = next(v for v in result.violations if v.rule == "required")
    assert "target column 'churn' is missing" in required.message


def test_non_numeric_value_names_the_value_and_row(clean_frame, binary_spec):
    frame = clean_frame.astype({"charges": object})
    frame.loc[3, "charges"] = "n/a"

    [violation] = check_contract(frame, binary_spec).violations

    assert (violation.column, violation.rule) == ("charges", "type")
    assert "first 'n/a' at row 4" in violation.message  # rows count from 1, header excluded


def test_fractional_value_in_integer_column_names_the_row(clean_frame, binary_spec):
    frame = clean_frame.assign(tenure=[1, 5, 12.5, 24, 36, 60])

    [violation] = check_contract(frame, binary_spec).violations

    assert (violation.column, violation.rule) == ("tenure", "type")
    assert "fractional part, first 12.5 at row 3" in violation.message


def test_numeric_strings_in_a_numeric_column_pass(clean_frame, binary_spec):
    frame = clean_frame.assign(tenure=[str(v) for v in clean_frame["tenure"]])

    assert check_contract(frame, binary_spec).passed


def test_missing_share_uses_the_column_limit_over_the_default(clean_frame, binary_spec):
    within_column_limit = clean_frame.assign(charges=[np.nan, np.nan, np.nan, 70.0, 89.9, 110.0])
    over_default_limit = clean_frame.assign(tenure=[np.nan, 5, 12, 24, 36, 60])

    assert check_contract(within_column_limit, binary_spec).passed
    assert _rules(check_contract(over_default_limit, binary_spec).violations) == {("tenure", "max_missing_share")}


def test_missing_target_value_is_a_violation_whatever_the_default_limit(clean_frame, data_section):
    data_section["contract"]["max_missing_share"] = 0.5
    spec = config.build(DataSpec, data_section, "data")
    frame = clean_frame.assign(churn=["Yes", None, "No", "Yes", "No", "No"])

    assert ("churn", "max_missing_share") in _rules(check_contract(frame, spec).violations)


def test_single_class_target_is_a_violation(clean_frame, binary_spec):
    frame = clean_frame.assign(churn="No")

    rules = _rules(check_contract(frame, binary_spec).violations)

    assert ("churn", "min_classes") in rules
    assert ("churn", "positive_class") in rules


def test_class_below_min_class_count_is_named(clean_frame, data_section):
    data_section["contract"]["min_class_count"] = 3
    spec = config.build(DataSpec, data_section, "data")

    [violation] = check_contract(clean_frame, spec).violations

    assert violation.rule == "min_class_count"
    assert "class 'Yes' has 2 rows" in violation.message


def test_too_few_rows_is_a_violation(clean_frame, data_section):
    data_section["contract"]["min_rows"] = 7
    spec = config.build(DataSpec, data_section, "data")

    [violation] = check_contract(clean_frame, spec).violations

    assert (violation.column, violation.rule) == (None, "min_rows")


def test_undeclared_column_is_a_warning_not_a_violation(clean_frame, binary_spec):
    result = check_contract(clean_frame.assign(customer_id=range(6)), binary_spec)

    assert result.passed
    assert _rules(result.warnings) == {("customer_id", "undeclared")}


def test_regression_target_has_no_class_checks(mixed_frame, regression_spec):
    assert check_contract(mixed_frame(6, "regression"), regression_spec).passed


def test_conform_types_numerics_and_categoricals(binary_spec):
    frame = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c"],
            "tenure": [1, 2, 3],
            "charges": ["20.5", None, "30"],
            "plan": [1, np.nan, "pro"],
            "churn": ["Yes", "No", "Yes"],
        }
    )

    conformed = conform(frame, binary_spec)

    assert list(conformed.columns) == ["tenure", "charges", "plan", "churn"]
    assert conformed["tenure"].dtype == np.float64
    assert conformed["charges"].dtype == np.float64
    assert np.isnan(conformed.loc[1, "charges"])
    assert conformed.loc[0, "plan"] == "1"
    assert pd.isna(conformed.loc[1, "plan"])
    assert conformed.loc[2, "plan"] == "pro"


def test_conform_does_not_modify_its_input(clean_frame, binary_spec):
    before = clean_frame.copy()

    conform(clean_frame, binary_spec)

    pd.testing.assert_frame_equal(clean_frame, before)


def test_target_vector_maps_the_positive_class_to_one(clean_frame, binary_spec):
    vector = target_vector(clean_frame, binary_spec)

    assert vector.dtype == np.int64
    assert vector.tolist() == [1, 0, 0, 1, 0, 0]


def test_target_vector_is_float_for_regression(mixed_frame, regression_spec):
    frame = mixed_frame(5, "regression")

    vector = target_vector(frame, regression_spec)

    assert vector.dtype == np.float64
    np.testing.assert_allclose(vector, frame["spend"])


@pytest.mark.parametrize(
    "change, message",
    [
        ({"task": "ordinal"}, "data.task"),
        ({"task": "multiclass"}, "data.classes must list"),
        ({"target": "absent"}, "declare the target column 'absent'"),
        ({"positive_class": None}, "positive_class is required"),
    ],
)
def test_dataspec_rejects_inconsistent_declarations(data_section, change, message):
    data_section.update(change)

    with pytest.raises(ValueError, match=message):
        config.build(DataSpec, data_section, "data")


def test_dataspec_rejects_an_unknown_column_type(data_section):
    data_section["contract"]["columns"]["plan"]["type"] = "json"

    with pytest.raises(ValueError, match=r"data\.contract\.columns\.plan: type must be one of .*'json'"):
        config.build(DataSpec, data_section, "data")


def _spec_with(data_section, contract=None, **columns) -> DataSpec:
    data_section["contract"].update(contract or {})
    for name, fields in columns.items():
        data_section["contract"]["columns"].setdefault(name, {}).update(fields)
    return config.build(DataSpec, data_section, "data")


def test_range_violations_name_the_bound_the_observed_value_and_the_row(clean_frame, data_section):
    spec = _spec_with(data_section, tenure={"min": 0, "max": 48})
    frame = clean_frame.assign(tenure=[1, -3, 12, 24, 36, 60])

    result = check_contract(frame, spec)

    messages = {v.message for v in result.violations if v.rule == "range"}
    assert messages == {
        "1 value(s) below min 0 (observed min -3, first at row 2)",
        "1 value(s) above max 48 (observed max 60, first at row 6)",
    }


@pytest.mark.parametrize(
    "policy, rule, passed",
    [("fail", "categories", False), ("warn", "new_categories", True), ("other", "new_categories", True)],
)
def test_a_new_category_follows_the_column_policy(clean_frame, data_section, policy, rule, passed):
    spec = _spec_with(data_section, plan={"categories": ["basic", "plus"], "new_categories": policy})

    result = check_contract(clean_frame, spec)

    [problem] = [v for v in result.violations + result.warnings if v.column == "plan"]
    assert result.passed is passed and problem.rule == rule
    assert "2 value(s) outside the 2 allowed categories: 'pro' (2)" in problem.message


def test_the_contract_default_category_policy_applies_when_the_column_has_none(clean_frame, data_section):
    spec = _spec_with(data_section, {"new_categories": "fail"}, plan={"categories": ["basic", "plus", "pro"]})

    assert check_contract(clean_frame.assign(plan=["basic"] * 5 + ["gold"]), spec).violations[0].rule == "categories"


def test_integer_categories_match_values_read_back_as_floats(clean_frame, data_section):
    spec = _spec_with(data_section, tenure={"categories": ["1", "5", "24", "36", "60"], "max_missing_share": 0.5})

    result = check_contract(clean_frame.assign(tenure=[1.0, 5.0, np.nan, 24.0, 36.0, 60.0]), spec)
    assert result.passed and result.warnings == []
    [warning] = check_contract(clean_frame.assign(tenure=[1.0, 5.0, 7.0, 24.0, 36.0, 60.0]), spec).warnings
    assert "'7.0' (1)" in warning.message


def test_an_id_column_must_be_unique_and_is_not_a_feature(clean_frame, data_section):
    spec = _spec_with(data_section, customer={"type": "string", "role": "id"})
    frame = clean_frame.assign(customer=["a", "b", "c", "b", "d", "b"])

    [violation] = check_contract(frame, spec).violations

    assert "customer" not in spec.features
    assert (violation.column, violation.rule) == ("customer", "unique")
    assert violation.message == "2 duplicate value(s) in an id column, first 'b' at rows 2, 4, 6"


def test_row_count_upper_bound(clean_frame, data_section):
    spec = _spec_with(data_section, {"max_rows": 5})

    [violation] = check_contract(clean_frame, spec).violations

    assert violation.message == "6 rows, the contract allows at most 5"


def test_datetime_column_accepts_iso_dates_and_names_the_first_bad_one(clean_frame, data_section):
    spec = _spec_with(data_section, signed={"type": "datetime"})
    dates = ["2024-01-05", "2024-02-01T10:30:00", None, "2024-03-01", "2024-04-01 08:00", "2024-05-01"]

    assert check_contract(clean_frame.assign(signed=dates), spec).passed is False  # one missing, limit 0
    dates[2] = "05/03/2024 noon"
    spec = _spec_with(data_section, signed={"max_missing_share": 0.5})
    [violation] = check_contract(clean_frame.assign(signed=dates), spec).violations
    assert violation.rule == "type" and "'05/03/2024 noon' at row 3" in violation.message


@pytest.mark.parametrize(
    "column, fields, message",
    [
        ("plan", {"min": 0}, "min/max apply to integer and float columns, not 'string'"),
        ("tenure", {"min": 5, "max": 1}, "min 5 is above max 1"),
        ("plan", {"new_categories": "drop"}, "new_categories must be one of"),
        ("churn", {"role": "id"}, "the target cannot have role 'id'"),
        ("plan", {"non_finite": "missing"}, "non_finite applies to integer and float columns, not 'string'"),
        ("charges", {"non_finite": "drop"}, "non_finite must be one of ('fail', 'missing')"),
        ("charges", {"max": float("nan")}, "min/max must be numbers; .nan compares false with everything"),
    ],
)
def test_contract_mistakes_name_the_column(data_section, column, fields, message):
    data_section["contract"]["columns"][column].update(fields)

    with pytest.raises(config.ConfigError, match=rf"data\.contract\.columns\.{column}.*{re.escape(message)}"):
        config.build(DataSpec, data_section, "data")


# A CSV spells infinity inf, Infinity, -inf or 1e999 (read_csv leaves that one as text); Parquet, SQL
# and JSON (Infinity, 1e999) hold IEEE infinities; 1e39 is finite in float64 but not in float32.
INFINITIES = [np.inf, -np.inf, "inf", "Infinity", "-inf", "1e999", 1e39]


@pytest.mark.parametrize("value", INFINITIES)
def test_an_infinite_value_is_a_violation_naming_column_and_rows(clean_frame, binary_spec, value):
    frame = clean_frame.astype({"charges": object}) if isinstance(value, str) else clean_frame.copy()
    frame.loc[[1, 4], "charges"] = value

    [violation] = check_contract(frame, binary_spec).violations

    assert (violation.column, violation.rule) == ("charges", "finite")
    assert "2 value(s) are infinite or beyond ±3.4e+38" in violation.message
    assert "at row(s) 2, 5; the contract allows finite numbers only (non_finite: fail)" in violation.message


@pytest.mark.parametrize("task", ["binary", "regression"])
@pytest.mark.parametrize("policy", ["fail", "missing"])
def test_an_infinity_never_reaches_the_leakage_check(mixed_frame, data_section, task, policy):
    """The leakage scores call scikit-learn, which raised `Input contains infinity` from validate."""
    frame = mixed_frame(40, task)
    frame.loc[3, "charges"] = np.inf
    if task == "regression":
        data_section["contract"]["columns"]["spend"] = {"type": "float"}
        del data_section["contract"]["columns"]["churn"]
        data_section.update(task="regression", target="spend", positive_class=None, metric="rmse")
    spec = _spec_with(
        data_section,
        {"non_finite": "missing"} if policy == "missing" else {},  # fail: the default
        charges={"max_missing_share": 0.1},
    )

    result = check_contract(frame, spec)

    assert [(v.column, v.rule) for v in result.violations] == ([("charges", "finite")] if policy == "fail" else [])


def test_an_infinite_integer_is_reported_once_by_the_finite_rule(clean_frame, data_section):
    spec = _spec_with(data_section, tenure={"max": 100})

    [violation] = check_contract(clean_frame.assign(tenure=[1, 5, np.inf, 24, 36, 60]), spec).violations

    assert violation.rule == "finite" and "first inf, at row(s) 3" in violation.message


def test_non_finite_missing_counts_infinities_as_missing_values(clean_frame, data_section):
    frame = clean_frame.assign(tenure=[1, 5, np.inf, 24, "-Infinity", 60])
    spec = _spec_with(data_section, tenure={"non_finite": "missing", "max_missing_share": 0.2, "max": 100})

    [violation] = check_contract(frame, spec).violations

    assert violation.rule == "max_missing_share"
    assert violation.message == (
        "33.33% missing (2 rows (infinite or too large values included: non_finite: missing)), limit 20.00%"
    )
    spec = _spec_with(data_section, {"non_finite": "missing"}, tenure={"max_missing_share": 0.5, "non_finite": None})
    assert check_contract(frame, spec).passed
    assert conform(frame, spec)["tenure"].isna().tolist() == [False, False, True, False, True, False]


def test_conform_refuses_an_infinity_the_contract_forbids(clean_frame, binary_spec):
    with pytest.raises(ValueError, match=r"column 'charges': 1 value\(s\) are infinite.*at row\(s\) 6"):
        conform(clean_frame.assign(charges=[1.0, 2.0, 3.0, 4.0, 5.0, "1e999"]), binary_spec)
