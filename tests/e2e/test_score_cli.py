"""`mlgate score` (in the test's process) with the model the session's `dvc repro` registered: bad batches
stop with a clear message, before the model sees them, and leave nothing behind."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.helpers import REPO, run_mlgate

pytestmark = pytest.mark.slow


@pytest.fixture
def batch(tmp_path):
    return pd.read_csv(REPO / "data/source/telco_churn.csv.gz").head(50).drop(columns=["churn"])


def score(built_project, tmp_path, output: str):
    args = ["score", "--input", str(tmp_path / "batch.csv"), "--output", str(tmp_path / output), "--alias", "staging"]
    return run_mlgate(args, built_project.root, built_project.env)


def test_an_infinity_stops_the_batch_naming_column_and_rows(built_project, tmp_path, batch):
    batch = batch.astype({"monthly_charges": object})
    batch.loc[[2, 30], "monthly_charges"] = ["inf", "-Infinity"]  # read_csv: float infinities
    batch.to_csv(tmp_path / "batch.csv", index=False)

    result = score(built_project, tmp_path, "scores.parquet")

    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert (
        f"{tmp_path / 'batch.csv'}: column 'monthly_charges': 2 infinite or too large value(s) (beyond ±3.4e+38) "
        f"at row(s) 3, 31; the model takes finite numbers only"
    ) in result.stderr
    assert list(tmp_path.glob("*scores*")) == []


def test_an_output_directory_is_refused_and_kept(built_project, tmp_path, batch):
    batch.to_csv(tmp_path / "batch.csv", index=False)
    (tmp_path / "scores.parquet").mkdir()
    (tmp_path / "scores.parquet" / "mine.txt").write_text("kept")

    refused = score(built_project, tmp_path, "scores.parquet")

    assert refused.returncode == 1 and "--output is a directory" in refused.stderr, refused.stderr
    assert (tmp_path / "scores.parquet" / "mine.txt").read_text() == "kept"
    scored = score(built_project, tmp_path, "scores.csv")
    assert scored.returncode == 0, scored.stderr
    assert len(pd.read_csv(tmp_path / "scores.csv")) == 50


def test_explain_writes_each_rows_largest_contributions_that_add_up(built_project, tmp_path, batch):
    import numpy as np

    from mlgate.adapters import tracking
    from mlgate.modelling import explain
    from mlgate.modelling.task import logit

    batch.to_csv(tmp_path / "batch.csv", index=False)
    args = ["score", "--input", str(tmp_path / "batch.csv"), "--alias", "staging", "--keep-columns", "tenure"]
    root, env = built_project.root, built_project.env
    top = run_mlgate([*args, "--output", str(tmp_path / "top.parquet"), "--explain", "3"], root, env)
    every = run_mlgate([*args, "--output", str(tmp_path / "all.csv"), "--explain", "100"], root, env)
    assert top.returncode == 0 and every.returncode == 0, top.stderr + every.stderr

    scored = pd.read_parquet(tmp_path / "top.parquet")
    assert scored.columns.tolist() == [
        "tenure",
        "prediction",
        "probability",
        *[f"{kind}_{i}" for i in (1, 2, 3) for kind in ("feature", "contribution")],
        "base_value",
        "explanation_scale",
    ]
    sizes = scored[["contribution_1", "contribution_2", "contribution_3"]].abs().to_numpy()
    assert (np.diff(sizes, axis=1) <= 0).all()  # largest first

    written = pd.read_csv(tmp_path / "all.csv")
    model = tracking.load(str(root / "models/model")).pipeline  # the version `staging` names
    combined = model._combined(batch)  # the members' combined output, before the calibration map
    expected = logit(combined) if written["explanation_scale"].iloc[0] == explain.LOG_ODDS else combined
    added = written["base_value"] + written.filter(like="contribution_").sum(axis=1)
    np.testing.assert_allclose(added, expected, atol=1e-9)
    pd.testing.assert_frame_equal(written[["prediction", "probability"]], scored[["prediction", "probability"]])
