"""A PostgreSQL table as the pipeline's source: ingest reruns when the table changes, not otherwise.

The pipeline runs up to `split`, the last stage that reads what ingest took from the table: the
stages after it read the same snapshot whatever the source (tests/e2e/test_dvc_pipeline.py)."""

from __future__ import annotations

import json
import subprocess

import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from tests.helpers import POSTGRES, copy_project, git_commit_all, run_cli, scratch_table

pytestmark = pytest.mark.slow


@pytest.fixture
def postgres_table():
    with scratch_table(POSTGRES, "telco") as handle:
        yield handle


def test_pipeline_from_a_postgres_table_reruns_only_when_the_table_changes(tmp_path, postgres_table):
    engine, table = postgres_table
    root = copy_project(tmp_path)
    pd.read_csv(root / "data/source/telco_churn.csv.gz").to_sql(table, engine, index=False)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["data"]["source"] = {"kind": "sql", "url": POSTGRES, "table": table}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    git_commit_all(root, "postgres source")
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}

    first = run_cli(["dvc", "repro", "split"], root, env)
    assert (
        f"7,043 rows × 20 columns from postgresql+psycopg://postgres@127.0.0.1:5432/test (table {table})"
        in first.stdout
    )
    meta = json.loads((root / "data/raw/meta.json").read_text())
    assert meta["data"]["kind"] == "sql" and meta["data"]["rows"] == 7043
    assert json.loads((root / "data/split/summary.json").read_text())["rows_in"] == 7043

    unchanged = run_cli(["dvc", "repro", "split"], root, env)
    assert "unchanged" in unchanged.stdout and "Stage 'ingest' didn't change, skipping" in unchanged.stdout

    with engine.begin() as connection:
        connection.execute(sa.text(f'delete from "{table}" where tenure = 1'))
    changed = run_cli(["dvc", "repro", "ingest"], root, env)  # the stages after it would rerun too: not the subject
    assert "CHANGED: ingest reruns" in changed.stdout
    assert "Running stage 'ingest'" in changed.stdout
    assert json.loads((root / "data/raw/meta.json").read_text())["data"]["rows"] < 7043
