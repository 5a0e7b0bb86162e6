"""A dataset with an id, a datetime and a free-text column through ingest → evaluate, and the logged
model scoring raw rows (date strings, text) the way a client would send them."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.helpers import copy_project

pytestmark = pytest.mark.slow

EXTRA_COLUMNS = [
    "++data.contract.columns.account_id={type: string, role: id}",
    "++data.contract.columns.signed_at={type: datetime}",
    "++data.contract.columns.notes={type: text, max_missing_share: 0.2}",
]


def with_extra_columns(frame: pd.DataFrame) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    signed = pd.Timestamp("2024-06-30") - pd.to_timedelta(
        frame["tenure"] * 30 + rng.integers(0, 30, len(frame)), unit="D"
    )
    words = np.array(["asked", "about", "price", "upgrade", "fiber", "speed", "support", "call", "bill", "late"])
    notes = [f"{contract} customer {' '.join(rng.choice(words, 3))}" for contract in frame["contract"]]
    frame = frame.assign(
        account_id=[f"A{i:06d}" for i in range(len(frame))],
        signed_at=(signed + pd.to_timedelta(rng.integers(0, 24, len(frame)), unit="h")).dt.strftime(
            "%Y-%m-%dT%H:00:00"
        ),
        notes=notes,
    )
    frame.loc[frame.sample(frac=0.1, random_state=1).index, "notes"] = None
    return frame


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    from mlgate import config
    from mlgate.stages import evaluate, ingest, split, train, tune, validate

    root = copy_project(tmp_path_factory.mktemp("project"), EXTRA_COLUMNS)
    source = root / "data/source/telco_churn.csv.gz"
    with_extra_columns(pd.read_csv(source)).to_csv(source, index=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        params = config.read_params()
        results = {stage.STAGE: stage.run(params) for stage in (ingest, validate, split, tune, train, evaluate)}
        yield root, results


def test_id_datetime_and_text_columns_reach_the_model_and_the_id_does_not(pipeline):
    root, results = pipeline
    features = json.loads((root / "models/model/artifacts/features.json").read_text())
    assert features["datetime"] == ["signed_at"] and features["text"] == ["notes"]
    assert "account_id" not in features["order"]
    assert results["validate"]["passed"]
    importance = pd.read_csv(root / "plots/importance.csv")
    assert {"signed_at", "notes"} <= set(importance["feature"])


def test_logged_model_scores_raw_rows_with_date_strings_and_text(pipeline, monkeypatch):
    import mlflow

    root, _ = pipeline
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    rows = pd.read_csv(root / "data/source/telco_churn.csv.gz").drop(columns=["churn"]).head(20)
    rows.loc[0, "notes"] = "a sentence with words never seen in training"

    output = mlflow.pyfunc.load_model(str(root / "models/model")).predict(rows)

    assert len(output) == 20 and output["probability"].between(0, 1).all()
    with pytest.raises(Exception, match=r"signed_at.*not an ISO 8601 date"):
        mlflow.pyfunc.load_model(str(root / "models/model")).predict(rows.assign(signed_at="next tuesday"))


def test_compiled_members_run_the_datetime_and_text_steps_as_themselves_and_match_the_pipelines(pipeline, monkeypatch):
    import mlflow

    from mlgate.modelling.compiled import CompiledPipeline

    root, _ = pipeline
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model(str(root / "models/model")).unwrap_python_model().pipeline
    rows = pd.read_csv(root / "data/source/telco_churn.csv.gz").drop(columns=["churn"]).head(20)
    rows.loc[0, "notes"] = "a sentence with words never seen in training"

    guard, members = model.prepare()._guarded_members
    guarded = rows if guard is None else guard.transform(rows)
    for member in members:
        assert isinstance(member, CompiledPipeline)
        assert [type(step).__name__ for step in member.leading][-2:] == ["DatetimeFeatures", "TextFeatures"]
        assert np.array_equal(member.predict_proba(guarded), member.pipeline.predict_proba(guarded))
