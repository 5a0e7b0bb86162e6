import numpy as np
import pandas as pd
import pytest

from mlgate import config
from mlgate.data import DataSpec, check_contract, conform, target_vector


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
    frame = pd.DataFrame({
        "tenure": [1, 2.5, 3, 4, 5, 6],
        "charges": [20.0, "abc", np.nan, np.nan, np.nan, np.nan],
        "plan": ["basic", "plus", "pro", "basic", "plus", "pro"],
        "churn": ["Yes", "No", "No", "No", "No", "No"],
    })

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
    assert "'n/a'" in violation.message
    assert "row 3" in violation.message


def test_fractional_value_in_integer_column_names_the_row(clean_frame, binary_spec):
    frame = clean_frame.assign(tenure=[1, 5, 12.5, 24, 36, 60])

    [violation] = check_contract(frame, binary_spec).violations

    assert (violation.column, violation.rule) == ("tenure", "type")
    assert "fractional" in violation.message
    assert "row 2" in violation.message


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
    frame = pd.DataFrame({
        "customer_id": ["a", "b", "c"],
        "tenure": [1, 2, 3],
        "charges": ["20.5", None, "30"],
        "plan": [1, np.nan, "pro"],
        "churn": ["Yes", "No", "Yes"],
    })

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


@pytest.mark.parametrize("change, message", [
    ({"task": "multiclass"}, "data.task"),
    ({"target": "absent"}, "declare the target column 'absent'"),
    ({"positive_class": None}, "positive_class is required"),
])
def test_dataspec_rejects_inconsistent_declarations(data_section, change, message):
    data_section.update(change)

    with pytest.raises(ValueError, match=message):
        config.build(DataSpec, data_section, "data")


def test_dataspec_rejects_an_unknown_column_type(data_section):
    data_section["contract"]["columns"]["plan"]["type"] = "text"

    with pytest.raises(ValueError, match=r"data\.contract\.columns\.plan\.type"):
        config.build(DataSpec, data_section, "data")
