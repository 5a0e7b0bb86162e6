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


def test_the_experiment_link_opens_the_model_training_view(tracking):
    link = tracking.experiment_link("http://127.0.0.1:5000/", "telco-churn")

    experiment = tracking.client().get_experiment_by_name("telco-churn").experiment_id
    assert link == f"http://127.0.0.1:5000/#/experiments/{experiment}?workflowType=machine_learning"
