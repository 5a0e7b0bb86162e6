"""The shared preprocessing (mlgate.modelling.features) on awkward inputs, alone and inside every family's pipeline."""

import io
import math
import pickle
import warnings

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from mlgate.modelling import models
from mlgate.modelling.data import OTHER_CATEGORY, DataSpec, target_vector
from mlgate.modelling.features import (
    DATETIME_PARTS,
    ColumnFilter,
    DatetimeFeatures,
    FeatureSettings,
    InputGuard,
    InputValidationError,
    QuantileClipper,
    TextFeatures,
    UnseenCategoryWarning,
    steps,
)
from tests.helpers import SMALL_PARAMS, spec_over

# Every column type and role the contract knows, for the end-to-end tests.
RICH_COLUMNS = {
    "customer_id": {"type": "string", "role": "id"},
    "tenure": {"type": "integer"},
    "charges": {"type": "float"},
    "plan": {"type": "string", "categories": ["basic", "plus", "pro"]},
    "signed_up": {"type": "datetime"},
    "note": {"type": "text"},
}
NOTES = [
    "late payment again",
    "happy customer great value",
    "slow support call",
    "great value plan",
    "billing issue late",
    "support call resolved",
]


def _spec(columns: dict, *, task: str = "binary", **contract) -> DataSpec:
    return spec_over(columns, task=task, **{"max_missing_share": 0.5, **contract})


def _rich_spec(task: str = "binary", *, new_categories: str = "other", missing_columns: str = "impute") -> DataSpec:
    return _spec(RICH_COLUMNS, task=task, new_categories=new_categories, missing_columns=missing_columns)


def _rich_frame(rows: int = 60, task: str = "binary", seed: int = 0) -> pd.DataFrame:
    """Raw input as a source delivers it: ISO strings for dates, some values missing; the target follows charges."""
    rng = np.random.default_rng(seed)
    charges = rng.uniform(20, 120, rows).round(2)
    stamps = (
        pd.Timestamp("2023-01-01")
        + pd.to_timedelta(rng.integers(0, 700, rows), "D")
        + pd.to_timedelta(rng.integers(0, 24, rows), "h")
    )
    frame = pd.DataFrame(
        {
            "customer_id": [f"C{i:04d}" for i in range(rows)],
            "tenure": rng.integers(0, 72, rows),
            "charges": charges,
            "plan": rng.choice(["basic", "plus", "pro"], rows).astype(object),
            "signed_up": pd.Series(stamps.strftime("%Y-%m-%dT%H:%M:%S"), dtype=object),
            "note": rng.choice(NOTES, rows).astype(object),
        }
    )
    frame.loc[[1, 8], "charges"] = np.nan
    frame.loc[[2, 9], "plan"] = np.nan
    frame.loc[[3], "signed_up"] = None
    frame.loc[[4, 11], "note"] = np.nan
    if task == "binary":
        frame["churn"] = np.where(charges > np.quantile(charges, 2 / 3), "Yes", "No")
    else:
        frame["spend"] = 3.0 * charges + rng.normal(0, 5, rows)
    return frame


def _awkward_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows to predict: an unseen category, missing values in every column type, a date past training."""
    rows = frame.drop(columns=["churn", "spend"], errors="ignore").head(6).copy()
    rows["plan"] = ["platinum", "basic", "plus", None, "pro", "basic"]
    rows.loc[rows.index[1], ["tenure", "charges"]] = np.nan
    rows.loc[rows.index[2], "signed_up"] = None
    rows.loc[rows.index[3], "note"] = np.nan
    rows.loc[rows.index[4], "signed_up"] = "2031-06-01T12:00:00"
    rows.loc[rows.index[5], "note"] = "words never seen in training"
    return rows


# --- InputGuard -----------------------------------------------------------------------------------


def test_guard_keeps_an_all_missing_numeric_column_as_float_nan():
    guard = InputGuard(numeric=("charges", "tenure"))
    frame = pd.DataFrame({"charges": [np.nan] * 4, "tenure": pd.Series([None] * 4, dtype=object)})

    out = guard.fit_transform(frame)

    assert out.dtypes.to_dict() == {"charges": np.float64, "tenure": np.float64}
    assert out.isna().all().all()


def test_guard_turns_mixed_values_in_a_string_column_into_str_keeping_missing():
    guard = InputGuard(categorical=("plan",))

    out = guard.fit_transform(pd.DataFrame({"plan": [1, "basic", 2.5, None, np.nan, True]}))

    assert out["plan"].tolist()[:3] == ["1", "basic", "2.5"]
    assert out["plan"].iloc[3:5].isna().all()
    assert out["plan"].iloc[5] == "True"
    assert all(isinstance(v, str) for v in out["plan"].dropna())


def test_guard_accepts_numeric_strings_in_a_numeric_column():
    guard = InputGuard(numeric=("charges",))

    out = guard.fit_transform(pd.DataFrame({"charges": ["20.5", 3, None, "1e2"]}))

    assert out["charges"].dtype == np.float64
    np.testing.assert_array_equal(out["charges"].to_numpy(), [20.5, 3.0, np.nan, 100.0])


@pytest.mark.parametrize("when", ["fit", "predict"])
def test_guard_rejects_a_word_in_a_numeric_column_naming_column_and_value(when):
    guard = InputGuard(numeric=("tenure", "charges"), categorical=("plan",))
    clean = pd.DataFrame({"tenure": [1, 2, 3], "charges": [20.0, 30.0, 40.0], "plan": ["a", "b", "c"]})
    bad = clean.astype({"charges": object})
    bad.loc[1, "charges"] = "abc"

    with pytest.raises(InputValidationError, match=r"column 'charges': 'abc' at row 1 is not a number"):
        if when == "fit":
            guard.fit(bad)
        else:
            guard.fit(clean).transform(bad)


def test_input_validation_error_is_a_value_error():
    assert issubclass(InputValidationError, ValueError)


def test_guard_rejects_something_that_is_not_a_dataframe():
    guard = InputGuard(numeric=("charges",)).fit(pd.DataFrame({"charges": [1.0]}))

    with pytest.raises(InputValidationError, match=r"expected a DataFrame.*'charges'.*ndarray"):
        guard.transform(np.array([[1.0]]))


def test_guard_ignores_extra_columns_and_restores_contract_order():
    spec = _rich_spec()
    guard = InputGuard.from_spec(spec)
    frame = _rich_frame(12)

    out = guard.fit_transform(frame[frame.columns[::-1]].assign(unexpected=1))

    assert list(out.columns) == ["tenure", "charges", "plan", "signed_up", "note"]
    assert "customer_id" not in guard.columns


def _policy_guard(policy: str) -> InputGuard:
    spec = _spec(
        {"tenure": {"type": "integer"}, "plan": {"type": "string", "categories": ["basic", "plus", "pro"]}},
        new_categories=policy,
    )
    return InputGuard.from_spec(spec).fit(pd.DataFrame({"tenure": [1, 2, 3], "plan": ["basic", "plus", "pro"]}))


def _unseen() -> pd.DataFrame:
    return pd.DataFrame({"tenure": [1, 2, 3], "plan": ["basic", "platinum", None]})


def test_unseen_category_under_fail_names_column_and_value():
    with pytest.raises(InputValidationError, match=r"column 'plan'.*'platinum'.*new_categories: fail"):
        _policy_guard("fail").transform(_unseen())


def test_unseen_category_under_warn_warns_and_keeps_the_value():
    with pytest.warns(UnseenCategoryWarning, match=r"column 'plan'.*'platinum'"):
        out = _policy_guard("warn").transform(_unseen())

    assert out["plan"].tolist()[:2] == ["basic", "platinum"]
    assert pd.isna(out["plan"].iloc[2])


def test_unseen_category_under_other_is_mapped_to_the_other_category():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = _policy_guard("other").transform(_unseen())

    assert out["plan"].tolist()[:2] == ["basic", OTHER_CATEGORY]
    assert pd.isna(out["plan"].iloc[2])


@pytest.mark.parametrize("policy", ["fail", "warn", "other"])
def test_missing_and_declared_values_are_not_unseen_under_any_policy(policy):
    frame = pd.DataFrame({"tenure": [1, 2, 3], "plan": ["pro", np.nan, None]})

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = _policy_guard(policy).transform(frame)

    assert out["plan"].iloc[0] == "pro"
    assert out["plan"].iloc[1:].isna().all()


def test_a_column_policy_overrides_the_contract_default():
    spec = _spec(
        {
            "plan": {"type": "string", "categories": ["basic"], "new_categories": "fail"},
            "region": {"type": "string", "categories": ["north"]},
        },
        new_categories="other",
    )
    guard = InputGuard.from_spec(spec).fit(pd.DataFrame({"plan": ["basic"], "region": ["north"]}))

    assert guard.policies == {"plan": "fail", "region": "other"}
    assert guard.transform(pd.DataFrame({"plan": ["basic"], "region": ["south"]}))["region"].tolist() == [
        OTHER_CATEGORY
    ]
    with pytest.raises(InputValidationError, match=r"column 'plan'.*'gold'"):
        guard.transform(pd.DataFrame({"plan": ["gold"], "region": ["north"]}))


def test_an_integer_column_with_categories_rejects_an_unseen_value_under_fail():
    spec = _spec({"stars": {"type": "integer", "categories": [1, 2, 3], "new_categories": "fail"}})
    guard = InputGuard.from_spec(spec).fit(pd.DataFrame({"stars": [1, 2, 3]}))

    with pytest.raises(InputValidationError, match=r"column 'stars'.*7"):
        guard.transform(pd.DataFrame({"stars": [7]}))


@pytest.mark.parametrize("categories", [None, [True, False]], ids=["undeclared", "declared"])
def test_boolean_spellings_the_contract_accepts_are_the_same_category(categories):
    column = {"type": "boolean", "new_categories": "fail"}
    if categories is not None:
        column["categories"] = categories
    guard = InputGuard.from_spec(_spec({"flag": column})).fit(pd.DataFrame({"flag": [True, False]}))

    spelled = guard.transform(pd.DataFrame({"flag": ["true", "false"]}))
    native = guard.transform(pd.DataFrame({"flag": [True, False]}))

    assert spelled["flag"].tolist() == native["flag"].tolist()


def test_missing_column_under_fail_names_the_column():
    guard = InputGuard.from_spec(_rich_spec(missing_columns="fail")).fit(_rich_frame(12))

    with pytest.raises(InputValidationError, match=r"missing column\(s\) \['charges'\].*missing_columns: fail"):
        guard.transform(_rich_frame(12).drop(columns="charges"))


def test_missing_columns_under_impute_warn_and_become_missing_values():
    guard = InputGuard.from_spec(_rich_spec(missing_columns="impute")).fit(_rich_frame(12))

    with pytest.warns(UserWarning, match=r"missing column\(s\) \['charges', 'signed_up', 'note'\]"):
        out = guard.transform(_rich_frame(12).drop(columns=["charges", "signed_up", "note"]))

    assert out["charges"].dtype == np.float64
    assert out[["charges", "signed_up", "note"]].isna().all().all()
    assert isinstance(out["signed_up"].dtype, pd.DatetimeTZDtype)
    assert out["tenure"].notna().all()


# --- DatetimeFeatures -----------------------------------------------------------------------------


def _dates(values) -> pd.DataFrame:
    return InputGuard(datetime=("when",)).fit_transform(pd.DataFrame({"when": values}))


def test_iso_datetime_strings_become_float_parts_relative_to_the_training_start():
    train = _dates(["2024-01-15T10:30:00", "2024-03-01", None, "2024-01-10T00:00:00+02:00"])
    step = DatetimeFeatures(("when",)).fit(train)

    out = step.transform(_dates(["2024-01-20T06:00:00Z", None, "2024-01-09T22:00:00Z"]))

    assert list(out.columns) == [f"when__{part}" for part in DATETIME_PARTS]
    assert (out.dtypes == np.float64).all()
    # the training minimum is 2024-01-10T00:00+02:00, i.e. 2024-01-09T22:00 UTC
    assert step.start_["when"] == pd.Timestamp("2024-01-09T22:00:00Z")
    first = out.iloc[0]
    assert (first["when__year"], first["when__month"], first["when__day_of_week"], first["when__hour"]) == (
        2024,
        1,
        5,
        6,
    )
    assert first["when__days_elapsed"] == pytest.approx(10 + 8 / 24)
    assert out.iloc[1].isna().all()
    assert out.iloc[2]["when__days_elapsed"] == 0.0


def test_datetime_start_is_learned_on_fit_data_only():
    step = DatetimeFeatures(("when",)).fit(_dates(["2024-06-01", "2024-06-11"]))

    out = step.transform(_dates(["2024-05-31", "2024-06-21"]))

    np.testing.assert_allclose(out["when__days_elapsed"], [-1.0, 20.0])


def test_an_all_missing_datetime_column_does_not_crash():
    step = DatetimeFeatures(("when",)).fit(_dates([None, None, None]))

    out = step.transform(_dates(["2024-01-01T05:00:00", None]))

    assert out["when__days_elapsed"].isna().all()
    assert out.loc[0, "when__hour"] == 5.0


# --- TextFeatures ---------------------------------------------------------------------------------


def test_text_becomes_dense_lsa_components_and_the_raw_column_goes():
    documents = ["red car fast", "blue car slow", "red bike fast", "blue bike slow", "green car", "green bike"] * 2
    step = TextFeatures(("note",), components=3).fit(pd.DataFrame({"note": documents, "n": range(12)}))

    out = step.transform(pd.DataFrame({"note": ["red car", None, "unheard words"], "n": [1, 2, 3]}))

    assert list(out.columns) == ["n", "note__text0", "note__text1", "note__text2"]
    assert (out.filter(like="note__").dtypes == np.float64).all()
    assert np.isfinite(out.to_numpy(dtype=float)).all()
    assert out.iloc[0, 1:].abs().sum() > 0
    assert (out.iloc[1:, 1:] == 0).all().all()  # no known words: the zero vector


def test_text_components_never_exceed_the_vocabulary():
    step = TextFeatures(("note",), components=20).fit(pd.DataFrame({"note": ["red car", "blue car", "red bike"] * 4}))

    out = step.transform(pd.DataFrame({"note": ["red car"]}))

    # vocabulary {red, blue, car, bike}, smaller than the 20 components: used as it is
    assert out.shape[1] == 4
    assert all(c.startswith("note__text") for c in out.columns)


@pytest.mark.parametrize(
    "documents",
    [
        pytest.param([np.nan] * 6, id="all-missing"),
        pytest.param(["alpha", "beta", "gamma", "delta", "epsilon", None], id="no-word-twice"),
        pytest.param(["a", "b", "a", "b", "c", "a"], id="one-letter-tokens"),
    ],
)
def test_a_text_column_that_carries_nothing_adds_no_columns(documents):
    step = TextFeatures(("note",)).fit(pd.DataFrame({"note": documents, "n": range(6)}))

    out = step.transform(pd.DataFrame({"note": ["alpha beta", None], "n": [1, 2]}))

    assert list(out.columns) == ["n"]


def test_a_text_column_of_one_repeated_word_does_not_crash():
    step = TextFeatures(("note",)).fit(pd.DataFrame({"note": ["hello"] * 6, "n": range(6)}))

    out = step.transform(pd.DataFrame({"note": ["hello", None], "n": [1, 2]}))

    assert list(out.columns) == ["n", "note__text0"]  # one term; ColumnFilter drops it if constant


def test_a_text_column_with_a_single_repeated_word_among_unique_ones_does_not_crash():
    documents = ["hello there", "hello world", "bonjour", "hola amigos", "ciao bella", "salut"]

    step = TextFeatures(("note",)).fit(pd.DataFrame({"note": documents}))
    out = step.transform(pd.DataFrame({"note": ["hello", None, "nothing known"]}))

    assert len(out) == 3
    assert np.isfinite(out.to_numpy(dtype=float)).all()


# --- ColumnFilter ---------------------------------------------------------------------------------


def test_all_missing_and_single_valued_columns_are_dropped_as_constant():
    frame = pd.DataFrame(
        {
            "empty": [np.nan] * 6,
            "one_plan": ["pro"] * 6,
            "one_number": [3.0] * 6,
            "x": [1.0, 5.0, 2.0, 8.0, 3.0, 4.0],
            "sparse": [np.nan] * 5 + [1.0],
        }
    )

    step = ColumnFilter().fit(frame)

    assert step.dropped_["constant"] == ["empty", "one_plan", "one_number"]
    assert step.kept_ == ["x", "sparse"]  # one value plus missing is not constant: missingness may inform
    assert list(step.transform(frame).columns) == ["x", "sparse"]


def test_a_frame_of_constants_keeps_one_column_so_the_model_still_fits():
    step = ColumnFilter().fit(pd.DataFrame({"a": [1.0, 1.0], "b": ["x", "x"]}))

    assert step.kept_ == ["a"]


def _duplicates_frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    x = rng.normal(size=40)
    plan = rng.choice(["a", "b"], 40).astype(object)
    return pd.DataFrame(
        {
            "x": x,
            "plan": plan,
            "noise": rng.normal(size=40),
            "x_rescaled": 2 * x + 1,
            "plan_relabelled": pd.Series(plan).map({"a": "x", "b": "y"}),
        }
    )


def test_numeric_and_categorical_duplicates_are_dropped_keeping_the_first():
    step = ColumnFilter().fit(_duplicates_frame())

    assert sorted(step.dropped_["duplicate"]) == ["plan_relabelled", "x_rescaled"]
    assert step.kept_ == ["x", "plan", "noise"]


def test_which_duplicate_is_kept_follows_column_order():
    frame = _duplicates_frame()

    step = ColumnFilter().fit(frame[frame.columns[::-1]])

    assert sorted(step.dropped_["duplicate"]) == ["plan", "x"]
    assert step.kept_ == ["plan_relabelled", "x_rescaled", "noise"]


def test_a_negated_copy_is_a_duplicate_but_a_merely_correlated_column_is_not():
    rng = np.random.default_rng(1)
    x = rng.normal(size=50)
    frame = pd.DataFrame({"x": x, "negated": -x, "related": x + rng.normal(0, 0.5, 50)})

    assert ColumnFilter().fit(frame).dropped_["duplicate"] == ["negated"]


def test_a_categorical_that_merges_two_levels_is_not_a_duplicate():
    frame = pd.DataFrame({"plan": ["a", "b", "c", "a", "b", "c"], "tier": ["x", "x", "y", "x", "x", "y"]})

    assert ColumnFilter().fit(frame).dropped_["duplicate"] == []


def test_a_mostly_missing_column_is_not_a_duplicate_of_an_unrelated_one():
    rng = np.random.default_rng(2)
    frame = pd.DataFrame({"x": rng.normal(size=20), "rare": [1.0, 2.0] + [np.nan] * 18})

    assert ColumnFilter().fit(frame).dropped_["duplicate"] == []


def _selection_frame(rows: int = 120, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=rows)
    frame = pd.DataFrame({f"noise{i}": rng.normal(size=rows) for i in range(6)})
    frame.insert(3, "signal", signal)
    frame["noise_plan"] = rng.choice(["a", "b", "c"], rows).astype(object)
    return frame, (signal + rng.normal(0, 0.2, rows) > 0).astype(int)


@pytest.mark.parametrize("method", ["mutual_info", "model"])
@pytest.mark.parametrize("keep_share", [0.1, 0.3, 0.5, 1.0])
def test_selection_keeps_the_ceiling_of_keep_share_and_the_informative_column(method, keep_share):
    frame, y = _selection_frame()

    step = ColumnFilter("binary", method, keep_share).fit(frame, y)

    assert len(step.kept_) == math.ceil(keep_share * frame.shape[1])
    assert "signal" in step.kept_
    assert sorted(step.kept_ + step.dropped_["unselected"]) == sorted(frame.columns)
    assert step.kept_ == [c for c in frame.columns if c in step.kept_]  # original order
    assert list(step.transform(frame).columns) == step.kept_


@pytest.mark.parametrize("method", ["mutual_info", "model"])
def test_selection_for_regression_keeps_the_informative_column(method):
    frame, _ = _selection_frame()
    y = 3.0 * frame["signal"].to_numpy() + np.random.default_rng(5).normal(0, 0.1, len(frame))

    step = ColumnFilter("regression", method, 0.1).fit(frame, y)

    assert step.kept_ == ["signal"]


def test_selection_counts_only_columns_left_after_constant_and_duplicate_removal():
    frame, y = _selection_frame()
    frame = frame.assign(constant=1.0, signal_copy=frame["signal"] * 10)

    step = ColumnFilter("binary", "mutual_info", 0.5).fit(frame, y)

    assert len(step.kept_) == math.ceil(0.5 * 8)
    assert step.dropped_["constant"] == ["constant"] and step.dropped_["duplicate"] == ["signal_copy"]


def test_selection_none_or_without_a_target_keeps_every_useful_column():
    frame, y = _selection_frame()

    assert ColumnFilter("binary", "none", 0.1).fit(frame, y).kept_ == list(frame.columns)
    assert ColumnFilter("binary", "mutual_info", 0.1).fit(frame).kept_ == list(frame.columns)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"method": "lasso"}, r"selection must be one of .*'lasso'"),
        ({"keep_share": 0.0}, r"keep_share must be in \(0, 1\], got 0.0"),
        ({"keep_share": 1.5}, r"keep_share must be in \(0, 1\], got 1.5"),
        ({"keep_share": -0.2}, r"keep_share must be in \(0, 1\]"),
    ],
)
def test_invalid_selection_settings_raise_value_error(kwargs, message):
    frame, y = _selection_frame(20)

    with pytest.raises(ValueError, match=message):
        ColumnFilter("binary", **kwargs).fit(frame, y)


def test_invalid_selection_settings_from_build_fail_when_fitted():
    spec = _spec({"tenure": {"type": "integer"}, "charges": {"type": "float"}})
    frame = pd.DataFrame({"tenure": [1, 2, 3, 4], "charges": [4.0, 1.0, 3.0, 2.0], "churn": ["Yes", "No"] * 2})
    pipeline = models.build("linear", {"alpha": 1.0, "selection": "lasso"}, spec)

    with pytest.raises(ValueError, match="selection must be one of"):
        pipeline.fit(frame, target_vector(frame, spec))


# --- QuantileClipper ------------------------------------------------------------------------------


def test_clipper_learns_bounds_on_fit_data_and_clips_new_data_to_them():
    train = pd.DataFrame({"x": np.arange(101, dtype=float), "plan": ["a"] * 101})
    step = QuantileClipper((0.1, 0.9)).fit(train)

    out = step.transform(pd.DataFrame({"x": [-50.0, 50.0, 500.0, np.nan], "plan": ["z", "a", None, "a"]}))

    assert step.lower_ == {"x": 10.0} and step.upper_ == {"x": 90.0}
    np.testing.assert_array_equal(out["x"].to_numpy(), [10.0, 50.0, 90.0, np.nan])
    assert out["plan"].tolist()[:2] == ["z", "a"]  # non-numeric columns pass through


def test_clipper_does_not_modify_its_input_or_learn_from_transformed_data():
    train = pd.DataFrame({"x": np.arange(11, dtype=float)})
    step = QuantileClipper((0.2, 0.8)).fit(train)
    new = pd.DataFrame({"x": [-100.0, 100.0]})

    step.transform(new)
    step.transform(pd.DataFrame({"x": [1e9, -1e9]}))

    assert new["x"].tolist() == [-100.0, 100.0]
    assert (step.lower_, step.upper_) == ({"x": 2.0}, {"x": 8.0})


def test_clipper_on_an_all_missing_column_does_not_crash_and_leaves_it_alone():
    step = QuantileClipper((0.1, 0.9)).fit(pd.DataFrame({"empty": [np.nan] * 5, "x": [1.0, 2.0, 3.0, 4.0, 5.0]}))

    out = step.transform(pd.DataFrame({"empty": [7.0, np.nan, -3.0], "x": [0.0, 3.0, 99.0]}))

    np.testing.assert_array_equal(out["empty"].to_numpy(), [7.0, np.nan, -3.0])
    np.testing.assert_allclose(out["x"], [1.4, 3.0, 4.6])


# --- steps() and FeatureSettings -----------------------------------------------------------------


def test_steps_are_in_pipeline_order_and_only_where_needed():
    plain = _spec({"tenure": {"type": "integer"}})

    assert [name for name, _ in steps(plain, FeatureSettings())] == ["guard", "filter"]
    names = [name for name, _ in steps(_rich_spec(), FeatureSettings(clip_quantiles=[0.01, 0.99]))]
    assert names == ["guard", "datetime", "text", "filter", "clip"]


def test_steps_pass_settings_and_selection_through():
    settings = FeatureSettings(clip_quantiles=[0.05, 0.95], near_duplicate_correlation=0.9, text_components=4)

    front = dict(steps(_rich_spec("regression"), settings, selection="model", keep_share=0.4, seed=7))

    assert front["filter"].get_params() == {
        "task": "regression",
        "method": "model",
        "keep_share": 0.4,
        "near_duplicate_correlation": 0.9,
        "seed": 7,
    }
    assert front["text"].components == 4 and front["text"].seed == 7
    assert front["clip"].quantiles == (0.05, 0.95)
    assert front["guard"].categories == {"plan": ("basic", "plus", "pro")}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"clip_quantiles": [0.9, 0.1]},
        {"clip_quantiles": [-0.1, 0.9]},
        {"clip_quantiles": [0.1, 1.5]},
        {"near_duplicate_correlation": 0.0},
    ],
)
def test_feature_settings_reject_impossible_values(kwargs):
    with pytest.raises(ValueError, match="features"):
        FeatureSettings(**kwargs)


# --- End to end: every family on every column type ------------------------------------------------


@pytest.fixture(scope="module", params=sorted(SMALL_PARAMS))
def fitted(request):
    """(family, spec, training frame, pipeline fitted on it), once per family for the module."""
    family = request.param
    spec = _rich_spec()
    frame = _rich_frame()
    pipeline = models.build(family, SMALL_PARAMS[family], spec, FeatureSettings(clip_quantiles=[0.01, 0.99]))
    return family, spec, frame, pipeline.fit(frame, target_vector(frame, spec))


def test_every_family_has_small_test_params():
    assert set(SMALL_PARAMS) == set(models.FAMILIES)


def test_a_family_fits_every_column_type_and_leaves_the_id_out(fitted):
    _, spec, frame, pipeline = fitted

    prediction, probability = models.predict(pipeline, frame, "binary")

    kept = pipeline.named_steps["filter"].kept_
    assert "customer_id" not in kept and "customer_id" not in pipeline.named_steps["guard"].columns
    assert {"tenure", "charges", "plan"} <= set(kept)
    assert any(c.startswith("signed_up__") for c in kept)
    assert any(c.startswith("note__text") for c in kept)
    assert (prediction == target_vector(frame, spec)).mean() >= 0.75
    assert ((probability >= 0) & (probability <= 1)).all()


def test_two_fits_of_a_family_pickle_to_the_same_bytes_once_settled(fitted):
    """train's model is a DVC dependency: the same recipe on the same rows must write the same file
    (CatBoost stores a random guid and its finish time, scikit-learn's trees uninitialised padding)."""
    family, spec, frame, pipeline = fitted
    settings = FeatureSettings(clip_quantiles=[0.01, 0.99])
    again = models.build(family, SMALL_PARAMS[family], spec, settings).fit(frame, target_vector(frame, spec))
    before = models.predict(pipeline, frame, "binary")

    dumped = [pickle.dumps(models.settle_bytes(p)) for p in (pipeline, again)]

    assert dumped[0] == dumped[1]
    for settled, unsettled in zip(models.predict(pipeline, frame, "binary"), before, strict=True):
        np.testing.assert_array_equal(settled, unsettled)


def test_a_family_predicts_unseen_categories_and_missing_values(fitted):
    _, _, frame, pipeline = fitted
    rows = _awkward_rows(frame)

    prediction, probability = models.predict(pipeline, rows, "binary")
    shuffled, _ = models.predict(pipeline, rows[rows.columns[::-1]].drop(columns="customer_id"), "binary")

    assert prediction.shape == (6,) and set(prediction) <= {0, 1}
    assert np.isfinite(probability).all()
    np.testing.assert_array_equal(shuffled, prediction)


def test_a_family_predicts_with_missing_columns_under_impute(fitted):
    _, _, frame, pipeline = fitted
    rows = frame.drop(columns=["churn", "charges", "plan", "signed_up", "note"]).head(5)

    with pytest.warns(UserWarning, match=r"missing column\(s\) \['charges', 'plan', 'signed_up', 'note'\]"):
        _, probability = models.predict(pipeline, rows, "binary")

    assert probability.shape == (5,)
    assert np.isfinite(probability).all()


def test_a_fitted_pipeline_survives_clone_and_refits_to_the_same_predictions(fitted):
    _, spec, frame, pipeline = fitted
    rows = _awkward_rows(frame)

    cloned = clone(pipeline)
    assert cloned is not pipeline
    assert not hasattr(cloned.named_steps["filter"], "kept_")
    assert cloned.named_steps["guard"].get_params() == pipeline.named_steps["guard"].get_params()
    cloned.fit(frame, target_vector(frame, spec))

    np.testing.assert_allclose(models.predict(cloned, rows, "binary")[1], models.predict(pipeline, rows, "binary")[1])


def test_a_fitted_pipeline_pickles_and_predicts_the_same(fitted):
    _, _, frame, pipeline = fitted
    rows = _awkward_rows(frame)
    buffer = io.BytesIO()

    joblib.dump(pipeline, buffer)
    buffer.seek(0)
    restored = joblib.load(buffer)

    np.testing.assert_array_equal(
        models.predict(restored, rows, "binary")[1], models.predict(pipeline, rows, "binary")[1]
    )
    assert restored.named_steps["filter"].kept_ == pipeline.named_steps["filter"].kept_


@pytest.mark.parametrize("family", sorted(SMALL_PARAMS))
def test_a_regression_family_fits_every_column_type_and_predicts_awkward_rows(family):
    spec = _rich_spec("regression")
    frame = _rich_frame(task="regression")
    y = target_vector(frame, spec)

    pipeline = models.build(family, {**SMALL_PARAMS[family], "selection": "model", "keep_share": 0.5}, spec).fit(
        frame, y
    )
    fitted_values, _ = models.predict(pipeline, frame, "regression")
    prediction, probability = models.predict(pipeline, _awkward_rows(frame), "regression")

    assert probability is None
    assert np.corrcoef(fitted_values, y)[0, 1] > 0.8
    assert "charges" in pipeline.named_steps["filter"].kept_
    assert prediction.shape == (6,) and np.isfinite(prediction).all()


def test_a_pipeline_under_the_fail_policy_rejects_an_unseen_category_at_predict():
    spec = _rich_spec(new_categories="fail")
    frame = _rich_frame(30)
    pipeline = models.build("linear", SMALL_PARAMS["linear"], spec).fit(frame, target_vector(frame, spec))

    with pytest.raises(InputValidationError, match=r"column 'plan'.*'platinum'"):
        pipeline.predict_proba(_awkward_rows(frame))


def test_a_pipeline_under_the_warn_policy_warns_and_still_predicts():
    spec = _rich_spec(new_categories="warn")
    frame = _rich_frame(30)
    pipeline = models.build("random_forest", SMALL_PARAMS["random_forest"], spec).fit(frame, target_vector(frame, spec))

    with pytest.warns(UnseenCategoryWarning, match="platinum"):
        probability = pipeline.predict_proba(_awkward_rows(frame))[:, 1]

    assert np.isfinite(probability).all()
