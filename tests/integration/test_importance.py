"""SHAP importance per input column: the mean size of the per-prediction contributions (``explain``),
one-hot columns and missing indicators summed into their column; none for k-NN, the MLP, multiclass and
models too large to explain in time."""

import numpy as np
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from mlgate.modelling import models
from mlgate.modelling.data import conform, target_vector
from mlgate.modelling.ensemble import FinalModel
from mlgate.stages import evaluate
from mlgate.stages.evaluate import shap_importance
from tests.helpers import SMALL_PARAMS, spec_over

SMALL_CATBOOST = {"iterations": 30, "depth": 3, "learning_rate": 0.3}
FORESTS = ("random_forest", "extra_trees")


def _fitted(family, params, frame, spec):
    return models.build(family, params, spec, seed=0).fit(
        conform(frame, spec)[spec.features], target_vector(frame, spec)
    )


def _numeric(task, mixed_frame):
    """(spec, frame) without the categorical `plan`: HistGradientBoosting then sees numbers only."""
    spec = spec_over({"tenure": {"type": "integer"}, "charges": {"type": "float", "max_missing_share": 0.5}}, task=task)
    return spec, conform(mixed_frame(200, task, with_missing=True).drop(columns="plan"), spec)


@pytest.mark.parametrize("task", ["binary", "regression"])
def test_shap_ranks_the_column_that_drives_the_target_first(task, mixed_frame, binary_spec, regression_spec):
    spec = binary_spec if task == "binary" else regression_spec
    frame = conform(mixed_frame(200, task), spec)  # churn / spend follow `charges` only
    pipeline = _fitted("catboost", SMALL_CATBOOST, frame, spec)

    board = shap_importance(pipeline, frame, spec, seed=0)

    assert list(board.columns) == ["feature", "importance"]
    assert set(board.feature) == set(spec.features)
    assert board.feature[0] == "charges"
    assert (board.importance >= 0).all() and board.importance.is_monotonic_decreasing


def test_shap_values_add_up_to_the_model_output(mixed_frame, binary_spec):
    """Known answer: TreeSHAP values plus the expected value are the raw prediction (log-odds) of each row."""
    import catboost

    frame = conform(mixed_frame(120, with_missing=True), binary_spec)
    pipeline = _fitted("catboost", SMALL_CATBOOST, frame, binary_spec)
    estimator = pipeline[-1]
    seen = estimator._prepare(pipeline[:-1].transform(frame[binary_spec.features]))
    values = estimator.model_.get_feature_importance(
        catboost.Pool(seen, cat_features=estimator.categorical_), type="ShapValues"
    )

    raw = estimator.model_.predict(seen, prediction_type="RawFormulaVal")
    assert np.allclose(values.sum(axis=1), raw)
    board = shap_importance(pipeline, frame, binary_spec, seed=0).set_index("feature")
    assert board.importance.to_dict() == pytest.approx(
        dict(zip(seen.columns, np.abs(values[:, :-1]).mean(axis=0), strict=True))
    )


@pytest.mark.parametrize("task", ["binary", "regression"])
@pytest.mark.parametrize("family", FORESTS)
def test_forest_shap_sums_the_encoded_columns_into_their_input_column_and_ranks_the_driver_first(
    family, task, mixed_frame, binary_spec, regression_spec
):
    spec = binary_spec if task == "binary" else regression_spec
    frame = conform(mixed_frame(200, task, with_missing=True), spec)

    board = shap_importance(_fitted(family, SMALL_PARAMS[family], frame, spec), frame, spec, seed=0)

    assert list(board.columns) == ["feature", "importance"]
    assert set(board.feature) == {"tenure", "charges", "plan"}  # charges' missing indicator counts for charges
    assert board.feature[0] == "charges"
    assert (board.importance >= 0).all() and board.importance.is_monotonic_decreasing


@pytest.mark.parametrize("task", ["binary", "regression"])
def test_hist_gradient_boosting_shap_on_numeric_columns(task, mixed_frame):
    spec, frame = _numeric(task, mixed_frame)

    board = shap_importance(
        _fitted("hist_gradient_boosting", SMALL_PARAMS["hist_gradient_boosting"], frame, spec), frame, spec, seed=0
    )

    assert list(board.feature) == ["charges", "tenure"]
    assert (board.importance > 0).all()


@pytest.mark.parametrize(
    "family, task", [("random_forest", "binary"), ("extra_trees", "regression"), ("hist_gradient_boosting", "binary")]
)
def test_tree_shap_adds_up_to_the_models_own_output(family, task, mixed_frame, binary_spec, regression_spec):
    """Known answer against scikit-learn, not shap's reading of the trees: SHAP values plus the expected
    value are the positive-class probability (forests), the prediction, or the log-odds (HistGradientBoosting)."""
    import shap

    if family == "hist_gradient_boosting":
        spec, frame = _numeric(task, mixed_frame)
    else:
        spec = binary_spec if task == "binary" else regression_spec
        frame = conform(mixed_frame(120, task, with_missing=True), spec)
    pipeline = _fitted(family, SMALL_PARAMS[family], frame, spec)
    model = pipeline[-1] if family in FORESTS else pipeline[-1].model_
    seen = pipeline[:-1].transform(frame[spec.features])
    explainer = shap.TreeExplainer(model)
    values, expected = explainer.shap_values(np.asarray(seen, dtype=np.float64)), np.ravel(explainer.expected_value)

    if family == "hist_gradient_boosting":
        columns, output = {"tenure": [0], "charges": [1]}, model.decision_function(seen)
    else:  # numeric (charges with its missing indicator), then categorical
        columns = {"tenure": [0], "charges": [1, 2], "plan": [3]}
        if task == "binary":
            values, expected, output = values[..., 1], expected[1:], model.predict_proba(seen)[:, 1]
        else:
            output = model.predict(seen)
    assert values.sum(axis=1) + expected[0] == pytest.approx(output)
    board = shap_importance(pipeline, frame, spec, seed=0).set_index("feature")
    expected_board = {c: np.abs(values[:, at].sum(axis=1)).mean() for c, at in columns.items()}
    assert board.importance.to_dict() == pytest.approx(expected_board)


def test_hist_gradient_boosting_on_categorical_columns_has_shap_importance(mixed_frame, binary_spec):
    """Its native category splits are explained by mlgate's own TreeSHAP (shap misreads them)."""
    frame = conform(mixed_frame(200), binary_spec)
    pipeline = _fitted("hist_gradient_boosting", SMALL_PARAMS["hist_gradient_boosting"], frame, binary_spec)

    assert pipeline[-1].categories_  # `plan` is a native categorical
    board = shap_importance(pipeline, frame, binary_spec, seed=0)
    assert set(board.feature) == {"tenure", "charges", "plan"} and board.feature[0] == "charges"


def test_shap_output_as_a_list_per_class_gives_the_same_table(monkeypatch, mixed_frame, binary_spec):
    """Older shap returns a list per class where 0.51 returns a trailing class axis."""
    import shap

    frame = conform(mixed_frame(60), binary_spec)
    pipeline = _fitted("random_forest", SMALL_PARAMS["random_forest"], frame, binary_spec)
    expected = shap_importance(pipeline, frame, binary_spec, seed=0)
    as_array = shap.TreeExplainer.shap_values
    monkeypatch.setattr(
        shap.TreeExplainer,
        "shap_values",
        lambda self, X, **kwargs: list(np.moveaxis(as_array(self, X, **kwargs), -1, 0)),
    )

    assert shap_importance(pipeline, frame, binary_spec, seed=0).equals(expected)


def test_a_forest_too_large_to_explain_in_time_has_no_shap_importance(monkeypatch, mixed_frame, binary_spec):
    frame = conform(mixed_frame(200), binary_spec)
    pipeline = _fitted("random_forest", SMALL_PARAMS["random_forest"], frame, binary_spec)
    monkeypatch.setattr(evaluate, "SHAP_WORK", 1e3)  # fewer than SHAP_MIN_ROWS rows fit in it

    assert shap_importance(pipeline, frame, binary_spec, seed=0) is None


def test_an_encoder_without_output_names_gives_no_shap_table(mixed_frame, binary_spec):
    frame = conform(mixed_frame(60), binary_spec)
    pipeline = Pipeline(
        [
            ("encode", ColumnTransformer([("numbers", FunctionTransformer(), ["tenure", "charges"])])),
            ("model", RandomForestClassifier(n_estimators=5, random_state=0)),
        ]
    )
    pipeline.fit(frame[binary_spec.features], target_vector(frame, binary_spec))

    assert shap_importance(pipeline, frame, binary_spec, seed=0) is None


def test_an_ensemble_weighs_its_members_and_a_sole_member_has_its_own(mixed_frame, binary_spec):
    frame = conform(mixed_frame(120), binary_spec)
    X, y = frame[binary_spec.features], target_vector(frame, binary_spec)
    members = [models.build(family, SMALL_PARAMS[family], binary_spec, seed=0) for family in FORESTS]
    ensemble = FinalModel(members, combiner={"method": "caruana", "weights": [0.5, 0.5]}).fit(X, y)
    sole = FinalModel(members[:1]).fit(X, y)

    each = [shap_importance(m, frame, binary_spec, seed=0).set_index("feature").importance for m in ensemble.members_]
    board = shap_importance(ensemble, frame, binary_spec, seed=0).set_index("feature").importance
    assert board.index[0] == "charges"
    assert (board <= 0.5 * each[0] + 0.5 * each[1] + 1e-12).all()  # |a + b| <= |a| + |b|, row by row
    assert shap_importance(sole, frame, binary_spec, seed=0).equals(
        shap_importance(sole.sole_pipeline, frame, binary_spec, seed=0)
    )


@pytest.mark.parametrize("family", ["knn", "mlp"])
def test_families_without_an_exact_explanation_have_no_shap_importance(family, mixed_frame, binary_spec):
    frame = conform(mixed_frame(60), binary_spec)

    assert (
        shap_importance(_fitted(family, SMALL_PARAMS[family], frame, binary_spec), frame, binary_spec, seed=0) is None
    )


def test_a_linear_model_has_shap_importance(mixed_frame, binary_spec):
    frame = conform(mixed_frame(200), binary_spec)
    board = shap_importance(_fitted("linear", SMALL_PARAMS["linear"], frame, binary_spec), frame, binary_spec, seed=0)
    assert board.feature[0] == "charges"
