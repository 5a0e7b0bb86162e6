"""The compiled few-row path gives every family's pipeline the very numbers scikit-learn gives, on
real rows (telco churn: numerics, 11 text columns and booleans, rare categories) with missing values,
unseen categories and nulls; calls it cannot answer go to the pipeline."""

from functools import cache

import numpy as np
import pandas as pd
import pytest
import yaml

from mlgate import config
from mlgate.modelling import compiled, models, schema
from mlgate.modelling.data import DataSpec, conform, target_vector
from mlgate.modelling.ensemble import FinalModel
from mlgate.modelling.features import FeatureSettings
from tests.helpers import REPO, SMALL_PARAMS

PARAMS = {
    **SMALL_PARAMS,
    "random_forest": {"n_estimators": 30, "min_samples_leaf": 3},
    "extra_trees": {"n_estimators": 30, "min_samples_leaf": 3},
}
COMPILED_ESTIMATOR = {"linear", "random_forest", "extra_trees", "knn", "mlp"}  # after a compiled ColumnTransformer
FRAME_ESTIMATOR = {"catboost", "hist_gradient_boosting"}  # compiled steps, then a frame


@cache
def telco(task: str) -> tuple[pd.DataFrame, DataSpec]:
    """600 telco customers: churn (binary), monthly charges (regression) or contract type (multiclass)."""
    frame = pd.read_csv(REPO / "data/source/telco_churn.csv.gz").sample(600, random_state=0)
    target = {"binary": "churn", "regression": "monthly_charges", "multiclass": "contract"}[task]
    rng = np.random.default_rng(0)
    for column in frame.columns.drop(target):  # missing values in training too: a category of their own
        frame.loc[rng.random(len(frame)) < 0.05, column] = np.nan
    drafted = schema.draft(
        frame, "telco", {"kind": "file", "path": "data/source/telco.csv", "format": "csv"}, target, origin="test"
    )
    section = yaml.safe_load(drafted.text)
    if task == "binary":
        section["positive_class"] = "Yes"
    return frame.reset_index(drop=True), config.build(DataSpec, section, "data")


def fitted(family: str, task: str = "binary"):
    frame, spec = telco(task)
    settings = FeatureSettings(clip_quantiles=[0.01, 0.99])
    pipeline = models.build(family, PARAMS[family], spec, settings, seed=0)
    return models.serial_predictions(
        pipeline.fit(conform(frame, spec)[spec.features], target_vector(frame, spec))
    ), spec


def awkward_rows(spec: DataSpec, rows: int = 60) -> pd.DataFrame:
    """Real rows with a tenth of the cells missing (NaN or None), unseen categories and rare ones."""
    frame, _ = telco(spec.task)
    X = frame[spec.features].iloc[:rows].copy().astype({c: object for c in spec.categorical_features})
    rng = np.random.default_rng(1)
    for column in spec.features:
        gone = rng.random(rows) < 0.1
        X.loc[gone, column] = None if column in spec.categorical_features and rng.random() < 0.5 else np.nan
    for column in spec.categorical_features[:3]:
        X.loc[rng.random(rows) < 0.15, column] = "never seen"
    return X


def outputs(pipeline, X: pd.DataFrame, task: str) -> np.ndarray:
    return pipeline.predict(X) if task == "regression" else pipeline.predict_proba(X)


@pytest.mark.filterwarnings("ignore::mlgate.modelling.features.UnseenCategoryWarning")
@pytest.mark.parametrize("task", ["binary", "regression", "multiclass"])
@pytest.mark.parametrize("family", sorted(SMALL_PARAMS))
def test_every_family_gives_the_pipelines_numbers_bit_for_bit(family, task):
    pipeline, spec = fitted(family, task)
    fast = compiled.compile_pipeline(pipeline)

    assert [type(step).__name__ for step in fast.leading] == ["InputGuard"]  # the rest is compiled
    assert (fast.encode is not None) == (family in COMPILED_ESTIMATOR)
    X = awkward_rows(spec)
    for rows in (X.iloc[:1], X.iloc[7:8], X.iloc[:4], X):
        assert np.array_equal(outputs(fast, rows, task), outputs(pipeline, rows, task))


@pytest.mark.filterwarnings("ignore::mlgate.modelling.features.UnseenCategoryWarning")
def test_an_ensemble_predicts_the_same_compiled_or_not(monkeypatch):
    frame, spec = telco("binary")
    X, y = conform(frame, spec)[spec.features], target_vector(frame, spec)
    members = [models.build(f, PARAMS[f], spec, seed=0) for f in ("linear", "random_forest", "catboost")]
    model = FinalModel(members, {"method": "caruana", "weights": [0.5, 0.3, 0.2]}, task="binary").fit(X, y)
    model.members_ = [models.serial_predictions(m) for m in model.members_]
    rows = awkward_rows(spec).iloc[:5]

    model.prepare()  # what a server does while loading a version
    assert all(isinstance(m, compiled.CompiledPipeline) for m in model.__dict__["_guarded"][1])
    fast = model.predict_proba(rows)
    monkeypatch.setattr(compiled, "compile_pipeline", lambda pipeline: None)
    model.__dict__.pop("_guarded")
    assert np.array_equal(fast, model.predict_proba(rows))


def test_values_of_other_types_go_to_the_pipeline(monkeypatch):
    pipeline, spec = fitted("linear")
    after_guard = pipeline[1:]
    fast = compiled.compile_pipeline(after_guard)
    X = pipeline[0].transform(awkward_rows(spec))
    calls = []
    transform = type(after_guard).transform
    monkeypatch.setattr(
        type(after_guard), "transform", lambda self, frame: calls.append(len(frame)) or transform(self, frame)
    )

    fast.predict_proba(X.iloc[:3])
    assert calls == []  # the compiled steps alone
    odd = [
        X.iloc[:2].assign(**{spec.categorical_features[0]: 3}),  # a number among strings
        X.iloc[:4].assign(**{spec.numeric_features[0]: "3"}),  # a string among numbers
    ]
    for rows in odd:
        calls.clear()
        answer = fast.predict_proba(rows)
        assert calls[:1] == [len(rows)]  # the pipeline's own steps
        np.testing.assert_array_equal(answer, after_guard.predict_proba(rows))


def test_a_pipeline_of_steps_it_does_not_know_is_not_compiled():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    assert compiled.compile_pipeline(Pipeline([("scale", StandardScaler()), ("model", LogisticRegression())])) is None
    assert compiled.compile_pipeline(LogisticRegression()) is None


def test_a_step_it_cannot_read_leaves_the_pipeline_as_it_is(caplog):
    pipeline, _ = fitted("linear")
    encoder = pipeline.named_steps["encode"].named_transformers_["categorical"].named_steps["encode"]
    del encoder._n_features_outs  # as a scikit-learn release without it would be

    assert compiled.compile_pipeline(pipeline) is None
    assert "compiling it failed" in caplog.text
