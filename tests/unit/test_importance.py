"""SHAP importance of CatBoost models, from CatBoost's own TreeSHAP on the frame the estimator sees."""

import numpy as np
import pytest

from mlgate import models
from mlgate.data import conform, target_vector
from mlgate.stages.evaluate import shap_importance

SMALL_CATBOOST = {"iterations": 30, "depth": 3, "learning_rate": 0.3}


def _fitted(family, params, frame, spec):
    return models.build(family, params, spec, seed=0).fit(conform(frame, spec)[spec.features], target_vector(frame, spec))


@pytest.mark.parametrize("task", ["binary", "regression"])
def test_shap_ranks_the_column_that_drives_the_target_first(task, mixed_frame, binary_spec, regression_spec):
    spec = binary_spec if task == "binary" else regression_spec
    frame = conform(mixed_frame(200, task), spec)   # churn / spend follow `charges` only
    pipeline = _fitted("catboost", SMALL_CATBOOST, frame, spec)

    board = shap_importance(pipeline, frame, spec, seed=0)

    assert list(board.columns) == ["feature", "importance"]
    assert set(board.feature) == set(pipeline[:-1].transform(frame[spec.features]).columns)
    assert board.feature[0] == "charges"
    assert (board.importance >= 0).all() and board.importance.is_monotonic_decreasing


def test_shap_values_add_up_to_the_model_output(mixed_frame, binary_spec):
    """Known answer: TreeSHAP values plus the expected value are the raw prediction (log-odds) of each row."""
    import catboost

    frame = conform(mixed_frame(120, with_missing=True), binary_spec)
    pipeline = _fitted("catboost", SMALL_CATBOOST, frame, binary_spec)
    estimator = pipeline[-1]
    seen = estimator._prepare(pipeline[:-1].transform(frame[binary_spec.features]))
    values = estimator.model_.get_feature_importance(catboost.Pool(seen, cat_features=estimator.categorical_),
                                                     type="ShapValues")

    raw = estimator.model_.predict(seen, prediction_type="RawFormulaVal")
    assert np.allclose(values.sum(axis=1), raw)
    board = shap_importance(pipeline, frame, binary_spec, seed=0).set_index("feature")
    assert board.importance.to_dict() == pytest.approx(dict(zip(seen.columns, np.abs(values[:, :-1]).mean(axis=0), strict=True)))


@pytest.mark.parametrize("family, params", [("linear", {"alpha": 1.0}), ("random_forest", {"n_estimators": 5})])
def test_other_families_have_no_shap_importance(family, params, mixed_frame, binary_spec):
    frame = conform(mixed_frame(60), binary_spec)

    assert shap_importance(_fitted(family, params, frame, binary_spec), frame, binary_spec, seed=0) is None
