"""Per-prediction explanations: for every family with an exact method, contributions per raw input
column plus the base value add up to the model's own raw output (computed by the model, not by
shap), one-hot and derived columns are summed into the column they came from, ensembles add up on
their combiner's scale, and families without an exact method say so."""

import numpy as np
import pandas as pd
import pytest
import yaml

from mlgate import config
from mlgate.modelling import explain, models, schema
from mlgate.modelling.data import DataSpec, target_vector
from mlgate.modelling.ensemble import FinalModel
from mlgate.modelling.task import logit
from tests.helpers import REPO, SMALL_PARAMS


def spec_of(frame: pd.DataFrame, target: str) -> DataSpec:
    drafted = schema.draft(frame, "t", {"kind": "file", "path": "t.csv", "format": "csv"}, target, origin="test")
    return config.build(DataSpec, yaml.safe_load(drafted.text), "data")


@pytest.fixture(scope="module")
def telco():
    """400 real telco rows (categoricals, a missing total_charges) and a constant column the filter drops,
    plus a date the model sees as its parts."""
    frame = pd.read_csv(REPO / "data/source/telco_churn.csv.gz").sample(400, random_state=0).reset_index(drop=True)
    frame["region"] = "north"
    frame["signed_up"] = pd.Timestamp("2020-01-01") + pd.to_timedelta(frame["tenure"] * 30, unit="D")
    frame.loc[3, "total_charges"] = np.nan
    spec = spec_of(frame, "churn")
    return frame, spec


@pytest.fixture(scope="module")
def diamonds():
    frame = pd.read_csv(REPO / "data/source/diamonds.csv.gz").sample(400, random_state=0).reset_index(drop=True)
    return frame, spec_of(frame, "price")


@pytest.fixture(scope="module")
def iris():
    from sklearn.datasets import load_iris

    data = load_iris(as_frame=True)
    frame = data.data.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    frame["band"] = pd.cut(frame.sepal_width, [0, 2.9, 3.3, 9], labels=["narrow", "mid", "wide"]).astype(str)
    frame["species"] = np.asarray(["setosa", "versicolor", "virginica"])[data.target]
    return frame, spec_of(frame, "species")


def fitted(family: str, frame: pd.DataFrame, spec: DataSpec, **params):
    X, y = frame[spec.features], target_vector(frame, spec)
    return models.build(family, {**SMALL_PARAMS[family], **params}, spec).fit(X, y)


def raw_output(pipeline, X: pd.DataFrame, scale: str, task) -> np.ndarray:
    """The model's own output on ``scale``, for binary and regression."""
    if not task.is_classification:
        return pipeline.predict(X)
    probability = pipeline.predict_proba(X)[:, 1]
    return probability if scale == explain.PROBABILITY else logit(probability)


BINARY = [
    ("catboost", {}, explain.LOG_ODDS),
    ("hist_gradient_boosting", {}, explain.LOG_ODDS),  # on telco's categoricals: native category splits
    ("lightgbm", {}, explain.LOG_ODDS),  # native category splits too
    ("random_forest", {}, explain.PROBABILITY),
    ("extra_trees", {}, explain.PROBABILITY),
    ("linear", {}, explain.LOG_ODDS),
    ("linear", {"penalty": "elasticnet", "l1_ratio": 0.5}, explain.LOG_ODDS),
]


@pytest.mark.parametrize("family, params, scale", BINARY, ids=[f"{f}-{p.get('penalty', '')}" for f, p, _ in BINARY])
def test_binary_contributions_add_up_to_the_models_own_output(telco, family, params, scale):
    frame, spec = telco
    pipeline = fitted(family, frame, spec, **params)
    X = frame[spec.features].iloc[:60]

    explained = explain.explain(pipeline, X, spec.learning_task)

    assert explained.scale == scale
    assert sorted(explained.columns) == sorted(spec.features)  # one contribution per raw input column
    np.testing.assert_allclose(explained.output, raw_output(pipeline, X, scale, spec.learning_task), atol=1e-9)
    assert np.abs(explained.contributions).sum(axis=0)[spec.features.index("contract")] > 0


@pytest.mark.parametrize(
    "family", ["catboost", "lightgbm", "random_forest", "extra_trees", "linear", "hist_gradient_boosting"]
)
def test_regression_contributions_add_up_to_the_prediction(diamonds, family):
    frame, spec = diamonds
    numeric = spec_of(frame[[*spec.numeric_features, "price"]], "price") if family == "hist_gradient_boosting" else spec
    pipeline = fitted(family, frame, numeric)
    X = frame[numeric.features].iloc[:60]

    explained = explain.explain(pipeline, X, numeric.learning_task)

    assert explained.scale == explain.VALUE
    np.testing.assert_allclose(explained.output, pipeline.predict(X), rtol=1e-9, atol=1e-6)
    # a diamond's size (its carat, or its x, y, z in mm, near copies of it) drives its price
    assert explained.columns[int(np.abs(explained.contributions).mean(axis=0).argmax())] in ("carat", "x", "y", "z")


def test_elastic_net_regression_adds_up(diamonds):
    frame, spec = diamonds
    pipeline = fitted("linear", frame, spec, penalty="elasticnet", l1_ratio=0.5)
    X = frame[spec.features].iloc[:40]
    np.testing.assert_allclose(explain.explain(pipeline, X, spec.learning_task).output, pipeline.predict(X), atol=1e-6)


def test_encoded_and_derived_columns_are_summed_into_the_column_they_came_from(telco):
    """A categorical's one-hot columns, a numeric's missing indicator and a date's parts each count for
    their raw column; a column the filter dropped contributes nothing."""
    frame, spec = telco
    pipeline = fitted("linear", frame, spec)
    X = frame[spec.features].iloc[:10]
    explained = explain.explain(pipeline, X, spec.learning_task)
    by_column = dict(zip(explained.columns, explained.contributions.T, strict=True))

    encoder, model = pipeline.named_steps["encode"], pipeline.named_steps["model"]
    seen = pipeline[:-2].transform(X)
    encoded = encoder.transform(seen) * model.coef_[0]
    names = list(encoder.get_feature_names_out())
    for column, prefix in [("payment_method", "categorical__payment_method_"), ("total_charges", None)]:
        positions = [
            i
            for i, n in enumerate(names)
            if (prefix and n.startswith(prefix)) or n in (f"numeric__{column}", f"numeric__missingindicator_{column}")
        ]
        np.testing.assert_allclose(by_column[column], encoded[:, positions].sum(axis=1), atol=1e-12)
    assert "numeric__missingindicator_total_charges" in names
    assert all(f"signed_up__{part}" not in explained.columns for part in ("year", "month"))
    assert np.abs(by_column["signed_up"]).sum() > 0
    np.testing.assert_array_equal(by_column["region"], 0.0)  # constant: the filter dropped it


@pytest.mark.parametrize("method", ["stacking", "caruana"])
def test_an_ensemble_adds_up_on_its_combiners_scale(telco, method):
    """Stacking adds log-odds (CatBoost and logistic exactly, the forest carried over), Caruana averages
    probabilities (the log-odds members carried over); either way the contributions add up to the
    combined output, which the calibration map then maps."""
    frame, spec = telco
    members = [fitted(f, frame, spec) for f in ("catboost", "linear", "random_forest")]
    combiner = (
        {"method": "stacking", "coef": [0.7, 0.0, 0.4], "intercept": -0.2}
        if method == "stacking"
        else {"method": "caruana", "weights": [0.5, 0.3, 0.2]}
    )
    final = FinalModel(members, combiner, {"method": "sigmoid", "coef": 1.3, "intercept": 0.1}, 0.4, "binary")
    final.members_ = members
    X = frame[spec.features].iloc[:50]

    explained = explain.explain(final, X, spec.learning_task)

    combined = final._combined(X)
    if method == "stacking":
        assert explained.scale == explain.LOG_ODDS
        np.testing.assert_allclose(explained.output, logit(combined), atol=1e-9)
        only_exact = FinalModel(members, {**combiner, "coef": [0.7, 0.5, 0.0]}, None, 0.5, "binary")
        only_exact.members_ = members  # CatBoost and logistic: the members' own SHAP values, weighted
        catboost, linear = (explain.explain(m, X, spec.learning_task).contributions for m in members[:2])
        expected = 0.7 * catboost + 0.5 * linear
        np.testing.assert_allclose(explain.explain(only_exact, X, spec.learning_task).contributions, expected)
    else:
        assert explained.scale == explain.PROBABILITY
        np.testing.assert_allclose(explained.output, combined, atol=1e-9)


def test_multiclass_explains_the_predicted_class_or_the_one_asked(iris):
    frame, spec = iris
    task = spec.learning_task
    X = frame[spec.features]
    members = [fitted(f, frame, spec) for f in ("catboost", "random_forest", "linear")]
    for member in members:
        explained = explain.explain(member, X, task)
        predicted = member.predict_proba(X).argmax(axis=1)
        np.testing.assert_array_equal(explained.explained_class, predicted)
    catboost, forest, linear = members
    raw = catboost[-1].model_.predict(
        catboost[-1]._prepare(catboost[:-1].transform(X)), prediction_type="RawFormulaVal"
    )
    rows = np.arange(len(X))
    for cls in range(3):
        asked = np.full(len(X), cls)
        np.testing.assert_allclose(explain.explain(catboost, X, task, asked).output, raw[:, cls], atol=1e-9)
        probability = forest.predict_proba(X)[:, cls]
        np.testing.assert_allclose(explain.explain(forest, X, task, asked).output, probability, atol=1e-9)
        decision = linear[-1].decision_function(linear[:-1].transform(X))
        np.testing.assert_allclose(explain.explain(linear, X, task, asked).output, decision[rows, cls], atol=1e-9)

    final = FinalModel(members, {"method": "caruana", "weights": [0.4, 0.4, 0.2]}, None, 0.5, "multiclass")
    final.fit(X, target_vector(frame, spec))
    explained = explain.explain(final, X, task)
    probability = final.predict_proba(X)
    np.testing.assert_array_equal(explained.explained_class, probability.argmax(axis=1))
    np.testing.assert_allclose(explained.output, probability[rows, explained.explained_class], atol=1e-9)
    top = explain.top_frame(explained, 2, task)
    assert top["explained_class"].tolist() == task.decode(probability.argmax(axis=1)).tolist()


def test_top_lists_the_largest_contributions_by_size_with_ties_in_column_order():
    explained = explain.Explanation(
        ["a", "b", "c", "d"], np.array([[0.1, -0.5, 0.5, 0.0], [0.0, 0.0, 0.0, 0.0]]), np.array([1.0, 2.0]), "value"
    )
    frame = explain.top_frame(explained, 3, None)
    assert frame.columns.tolist() == [
        "feature_1",
        "contribution_1",
        "feature_2",
        "contribution_2",
        "feature_3",
        "contribution_3",
        "base_value",
        "explanation_scale",
    ]
    assert frame.iloc[0][["feature_1", "feature_2", "feature_3"]].tolist() == ["b", "c", "a"]
    assert frame.iloc[0][["contribution_1", "contribution_2"]].tolist() == [-0.5, 0.5]
    assert frame.iloc[1][["feature_1", "feature_2", "feature_3"]].tolist() == ["a", "b", "c"]
    assert explain.top_frame(explained, 10, None).filter(like="feature_").shape[1] == 4  # at most every column


@pytest.mark.parametrize("family, words", [("knn", "the knn family"), ("mlp", "the mlp family")])
def test_families_without_an_exact_method_say_so(telco, family, words):
    frame, spec = telco
    with pytest.raises(explain.NoExplanation, match=words):
        explain.explain(fitted(family, frame, spec), frame[spec.features].head(3), spec.learning_task)


def test_hist_gradient_boosting_shap_is_the_shap_packages_on_numeric_columns(telco):
    """Where shap reads HistGradientBoosting right (numeric splits only, missing values included), our
    TreeSHAP gives its values: the known answer for the algorithm the categorical splits share."""
    import shap

    frame, _ = telco
    numeric = frame[["tenure", "monthly_charges", "total_charges", "senior_citizen", "churn"]]
    spec = spec_of(numeric, "churn")
    pipeline = fitted("hist_gradient_boosting", numeric, spec)
    X = numeric[spec.features].iloc[:80]

    explained = explain.explain(pipeline, X, spec.learning_task)

    seen = pipeline[:-1].transform(X)
    expected = shap.TreeExplainer(pipeline[-1].model_).shap_values(seen.to_numpy(np.float64))
    ours = explained.contributions[:, [explained.columns.index(c) for c in seen.columns]]
    np.testing.assert_allclose(ours, expected, atol=1e-10)
    assert np.isnan(X["total_charges"]).any()


def test_hist_gradient_boosting_multiclass_adds_up_per_class(iris):
    frame, spec = iris
    pipeline = fitted("hist_gradient_boosting", frame, spec)  # band: a native categorical column
    X = frame[spec.features]
    raw = pipeline[-1].model_._raw_predict(pipeline[-1]._prepare(pipeline[:-1].transform(X)))
    for cls in range(3):
        explained = explain.explain(pipeline, X, spec.learning_task, np.full(len(X), cls))
        np.testing.assert_allclose(explained.output, raw[:, cls], atol=1e-9)


def test_lightgbm_multiclass_adds_up_per_class_on_its_raw_scores(iris):
    frame, spec = iris
    pipeline = fitted("lightgbm", frame, spec)
    X = frame[spec.features]
    raw = pipeline[-1].model_.predict(pipeline[-1]._prepare(pipeline[:-1].transform(X)), raw_score=True)
    for cls in range(3):
        explained = explain.explain(pipeline, X, spec.learning_task, np.full(len(X), cls))
        np.testing.assert_allclose(explained.output, raw[:, cls], atol=1e-9)


def test_explainer_refuses_a_model_that_is_not_mlgates():
    with pytest.raises(explain.NoExplanation, match="trained by mlgate"):
        explain.explainer(None, None)
