"""What the MLflow UI shows of a run: the tables it read, named by DVC's md5 of their file, and the
link that opens the experiment on its training runs."""

from __future__ import annotations

import hashlib

import pandas as pd
import pytest


@pytest.fixture
def tracking(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    from mlgate.adapters import tracking

    return tracking


def test_a_run_lists_its_splits_with_their_file_md5_target_and_context(tracking, tmp_path):
    from mlgate import files

    frame = pd.DataFrame({"tenure": [1, 5, 9], "plan": ["a", "b", None], "churn": ["Yes", "No", "No"]})
    (tmp_path / "data").mkdir()
    frame.to_parquet(tmp_path / "data" / "train.parquet")
    md5 = files.md5(tmp_path / "data" / "train.parquet")
    assert md5 == hashlib.md5((tmp_path / "data" / "train.parquet").read_bytes()).hexdigest()
    run_id = tracking.create_run("exp", "train", {})

    tracking.log_data_inputs(
        run_id,
        [
            tracking.DataInput("train", frame, "data/train.parquet", md5, "churn", "training"),
            tracking.DataInput("test", frame.head(2), "data/test.parquet", "0" * 32, "churn", "testing"),
        ],
    )

    inputs = tracking.client().get_run(run_id).inputs.dataset_inputs
    seen = {i.dataset.name: (i.dataset.digest, i.dataset.source, {t.key: t.value for t in i.tags}) for i in inputs}
    assert seen["train"][0] == md5
    assert '"data/train.parquet"' in seen["train"][1]
    assert seen["train"][2] == {"mlflow.data.context": "training"}
    assert seen["test"][2] == {"mlflow.data.context": "testing"}
    profile = {i.dataset.name: i.dataset.profile for i in inputs}
    assert '"num_rows": 3' in profile["train"] and '"num_rows": 2' in profile["test"]


@pytest.mark.parametrize("rows", [0, 1, 300])
def test_a_logged_split_has_the_schema_mlflow_infers_from_every_value(tracking, tmp_path, rows):
    import json
    import warnings

    import mlflow
    import numpy as np

    frame = pd.DataFrame(
        {
            "tenure": np.arange(rows, dtype=float),
            "plan": pd.Series(["a", "b", "c"] * (rows // 3) + ["a"] * (rows % 3), dtype=object),
            "seats": pd.Series([2] * rows, dtype=object),
            "region": pd.Categorical(["n", "s"] * (rows // 2) + ["n"] * (rows % 2)),
            "paid": [True] * rows,
        }
    )
    if rows > 1:  # missing values only late, and a Python type appearing only late
        frame.loc[rows - 1, ["tenure", "plan", "region"]] = [np.nan, None, None]
        frame.loc[rows - 2, "seats"] = 2.5
    frame.to_parquet(tmp_path / "split.parquet")
    run_id = tracking.create_run("exp", "train", {})

    tracking.log_split(run_id, "train", frame, tmp_path / "split.parquet", None, "training")

    [logged] = tracking.client().get_run(run_id).inputs.dataset_inputs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        inferred = mlflow.data.from_pandas(frame).schema
    expected = inferred and {"mlflow_colspec": inferred.to_dict()}  # none for an empty frame
    assert (logged.dataset.schema and json.loads(logged.dataset.schema)) == expected
    assert json.loads(logged.dataset.profile)["num_rows"] == rows


def test_the_experiment_link_opens_the_model_training_view(tracking):
    link = tracking.experiment_link("http://127.0.0.1:5000/", "telco-churn")

    experiment = tracking.client().get_experiment_by_name("telco-churn").experiment_id
    assert link == f"http://127.0.0.1:5000/#/experiments/{experiment}?workflowType=machine_learning"
