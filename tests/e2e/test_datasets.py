"""The pipeline on the other bundled datasets: credit_data (missing values, binary) and ames (79 features,
many categoricals, raw missing values, regression). Its stages run as `dvc repro` runs them, in this process
(test_dvc_pipeline.py tests DVC's side on the default dataset)."""

from __future__ import annotations

import json
import subprocess

import mlflow
import numpy as np
import pandas as pd
import pytest

from mlgate.modelling.features import UnseenCategoryWarning
from tests.helpers import copy_project, git_commit_all, run_stages

pytestmark = pytest.mark.slow

DATASETS = {
    # name: (overrides, source file, metric, a limit the test score must beat)
    "credit_data": (["data=credit_data", "gate=credit_data"], "credit_data.csv.gz", "roc_auc", 0.75),
    "ames": (["data=ames", "gate=ames", "gate.metric_floor=60000"], "ames.csv.gz", "rmse", 60000),
}


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_pipeline_runs_end_to_end_and_the_model_takes_raw_rows(name, tmp_path):
    overrides, source, metric, limit = DATASETS[name]
    root = copy_project(tmp_path, overrides)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    git_commit_all(root, name)
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"

    result = run_stages(root, {"MLFLOW_TRACKING_URI": tracking_uri})

    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stdout + result.stderr
    assert json.loads((root / "reports/validation.json").read_text())["passed"]
    assert (root / "reports/data_summary.html").stat().st_size > 100_000
    score = json.loads((root / "metrics/test.json").read_text())[metric]
    assert score > limit if metric == "roc_auc" else score < limit
    raw = pd.read_csv(root / "data/source" / source)
    assert raw.isna().any().any()  # the model gets the source's own gaps
    rows = raw.drop(columns=[c for c in raw.columns if c in ("Status", "price")]).head(50)
    first_categorical = rows.select_dtypes("object").columns[0]
    rows.loc[0, first_categorical] = "a level never seen"
    mlflow.set_tracking_uri(tracking_uri)
    with pytest.warns(UnseenCategoryWarning, match=rf"column '{first_categorical}'.*'a level never seen'"):
        output = mlflow.pyfunc.load_model(str(root / "models/model")).predict(rows)
    assert len(output) == 50 and np.isfinite(output.get("probability", output["prediction"]).astype(float)).all()
