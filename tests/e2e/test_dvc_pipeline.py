"""`dvc repro` of the real pipeline in a temporary git repo, on a small budget.

The first `dvc repro` is the session's shared build (``built_project``); tests that run DVC or move
an alias again do so in their own clone of it."""

from __future__ import annotations

import json
import sqlite3

import pytest

from tests.helpers import (
    clone_project,
    git_commit_all,
    run_cli,
    run_mlgate,
    tracking_env,
)

pytestmark = pytest.mark.slow

STAGES = ("ingest", "validate", "split", "tune", "train", "evaluate", "drift", "gate")


def query(root, sql):
    with sqlite3.connect(root / "mlflow.db") as db:
        return db.execute(sql).fetchall()


@pytest.fixture
def repro(built_project):
    return built_project.root, built_project.env, built_project.first


@pytest.fixture
def own_repro(built_project, tmp_path):
    """The project after its first `dvc repro`, in this test's own copy."""
    root = clone_project(built_project.root, tmp_path / "project")
    return root, tracking_env(root)


def test_repro_prints_one_line_per_stage_and_the_verdict(repro):
    _, _, first = repro
    lines = first.stdout.splitlines()
    for stage in STAGES:
        assert any(line.startswith(stage + " ") for line in lines), f"no summary line for {stage}"
    assert "PASSED → alias 'staging'" in first.stdout
    assert "reports/promotion.md" in first.stdout
    assert "Warning" not in first.stderr and "Traceback" not in first.stderr


def test_study_is_one_parent_with_a_nested_run_per_trial(repro):
    root, _, _ = repro
    params = json.loads((root / "reports/best_params.json").read_text())
    n_trials = sum(params["trials"].values())
    parents = query(root, "select run_uuid from runs where name = 'tune'")
    assert len(parents) == 1
    children = query(root, f"select count(*) from tags where key = 'mlflow.parentRunId' and value = '{parents[0][0]}'")
    assert children[0][0] == n_trials == 5


def test_registered_version_holds_staging_and_reports_parse(repro):
    root, _, _ = repro
    assert query(root, "select alias, version from registered_model_aliases") == [("staging", 1)]
    gate = json.loads((root / "reports/gate.json").read_text())
    assert gate["passed"] and gate["candidate"]["version"] == 1
    assert json.loads((root / "reports/validation.json").read_text())["passed"]
    assert json.loads((root / "reports/drift.json").read_text())["columns_checked"] == 19
    assert "# Model promotion" in (root / "reports/promotion.md").read_text()


def test_second_repro_changes_nothing(own_repro):
    root, env = own_repro
    runs_before = query(root, "select count(*) from runs")
    second = run_cli(["dvc", "repro"], root, env)
    assert "data/source/telco_churn.csv.gz: unchanged" in second.stdout
    for stage in STAGES:
        assert f"Stage '{stage}' didn't change, skipping" in second.stdout
    assert query(root, "select count(*) from runs") == runs_before


def test_promote_then_next_run_is_compared_with_production(own_repro):
    root, env = own_repro
    refused = run_mlgate(["promote", "--version", "7"], root, env)
    assert refused.returncode == 1 and "no version 7" in refused.stderr
    assert run_mlgate(["promote", "--version", "1", "--reason", "e2e"], root, env).returncode == 0
    assert ("production", 1) in query(root, "select alias, version from registered_model_aliases")
    tags = dict(query(root, "select key, value from model_version_tags where version = 1"))
    assert tags["mlgate.production.reason"] == "e2e" and tags["mlgate.production.from_version"] == "none"

    # the next run: a retraining of the same recipe (a new run, so a new version), evaluated and gated
    third = run_cli(["dvc", "repro", "--force", "--downstream", "train"], root, env)
    gate = json.loads((root / "reports/gate.json").read_text())
    assert gate["champion"]["version"] == 1 and gate["candidate"]["version"] == 2
    assert set(gate["champion"]["metrics"]) == set(gate["candidate"]["metrics"])
    interval = gate["gain_interval"]
    assert interval["metric"] == "roc_auc" and interval["low"] <= interval["high"]
    assert f"[{interval['low']:+.4f}, {interval['high']:+.4f}]" in (root / "reports/promotion.md").read_text()
    assert "champion" in third.stdout
    history = run_mlgate(["history"], root, env)
    assert "promote  production  none → v1  by" in history.stdout and "e2e" in history.stdout
    assert len((root / "registry/ledger.jsonl").read_text().splitlines()) == 1


def changed_stages(root, env) -> dict:
    """`dvc status` as {stage: what changed}, without the fingerprint stage (it always runs)."""
    status = json.loads(run_cli(["dvc", "status", "--json"], root, env).stdout)
    status.pop("data/dvc.yaml:fingerprint", None)
    return status


def test_rerunning_ingest_on_the_same_source_leaves_every_later_stage_up_to_date(own_repro):
    root, env = own_repro
    run_cli(["dvc", "repro", "--force", "--single-item", "ingest"], root, env)

    assert changed_stages(root, env) == {}


def test_retraining_the_same_recipe_reruns_evaluate_only_to_record_on_the_new_run(own_repro):
    """The same recipe and data give the same model bytes and train.json; only the run record is new, and
    evaluate writes its test metrics there too, with the same bytes, so drift and gate stay up to date."""
    root, env = own_repro
    run_before = json.loads((root / "models/train_run.json").read_text())
    metrics_before = (root / "metrics/test.json").read_bytes()
    run_cli(["dvc", "repro", "--force", "--single-item", "train"], root, env)

    assert list(changed_stages(root, env)) == ["evaluate"]
    run_after = json.loads((root / "models/train_run.json").read_text())
    assert run_after["run_id"] != run_before["run_id"]
    assert run_after["model_sha256"] == run_before["model_sha256"]
    rerun = run_cli(["dvc", "repro"], root, env)
    assert "Running stage 'evaluate'" in rerun.stdout and "Running stage 'gate'" not in rerun.stdout
    assert (root / "metrics/test.json").read_bytes() == metrics_before
    logged = query(root, f"select key from metrics where run_uuid = '{run_after['run_id']}'")
    assert ("test/roc_auc",) in logged
    assert changed_stages(root, env) == {}


def test_gate_reruns_where_the_store_has_not_seen_its_verdict(own_repro):
    """models/registered.json is the registry's side of the verdict, outside git: a fresh clone, whose
    reports are the committed ones and whose store is empty, has none, so `dvc repro` registers again."""
    root, env = own_repro
    registered = json.loads((root / "models/registered.json").read_text())
    assert registered["model"] == "telco_churn" and registered["staging"] is True
    assert ("staging", registered["version"]) in query(root, "select alias, version from registered_model_aliases")
    (root / "models/registered.json").unlink()

    assert list(changed_stages(root, env)) == ["gate"]


def test_a_change_to_how_metrics_are_computed_reruns_the_stages_that_compute_them(own_repro):
    root, env = own_repro
    metrics_code = root / "src/mlgate/modelling/metrics.py"
    metrics_code.write_text(metrics_code.read_text() + "\n# a changed metric\n")

    changed = changed_stages(root, env)

    assert set(changed) == {"tune", "train", "evaluate", "gate"}
    assert {"changed deps": {"src/mlgate/modelling/metrics.py": "modified"}} in changed["evaluate"]


def test_metrics_and_plots_are_committed_so_a_pull_request_can_diff_them(own_repro, tmp_path):
    root, env = own_repro
    git_commit_all(root, "first run")
    tracked = run_cli(["git", "ls-files", "metrics", "plots", "reports/leaderboard.csv"], root).stdout.split()
    metrics = json.loads((root / "metrics/test.json").read_text())
    (root / "metrics/test.json").write_text(json.dumps(metrics | {"roc_auc": metrics["roc_auc"] - 0.01}))
    git_commit_all(root, "a worse model")

    diff = json.loads(run_cli(["dvc", "metrics", "diff", "HEAD~1", "--json"], root, env).stdout)
    plots = run_cli(["dvc", "plots", "diff", "HEAD~1", "-o", str(tmp_path / "plots")], root, env)

    assert {"metrics/test.json", "plots/roc.csv", "reports/leaderboard.csv"} <= set(tracked)
    assert diff["metrics/test.json"]["roc_auc"]["diff"] == pytest.approx(-0.01)
    assert "roc_auc" in diff["metrics/test.json"] and "accuracy" not in diff["metrics/test.json"]
    assert plots.returncode == 0 and (tmp_path / "plots/index.html").is_file()


def test_the_model_is_a_dvc_artifact_a_version_tag_fetches(own_repro, tmp_path):
    root, env = own_repro
    git_commit_all(root, "first run")
    run_cli(
        [
            "git",
            "-c",
            "user.name=mlgate-test",
            "-c",
            "user.email=t@example.invalid",
            "tag",
            "-a",
            "model@v1.0.0",
            "-m",
            "first model",
        ],
        root,
    )

    run_cli(["dvc", "artifacts", "get", ".", "model", "--rev", "v1.0.0", "-o", str(tmp_path / "model")], root, env)

    assert (tmp_path / "model/MLmodel").read_bytes() == (root / "models/model/MLmodel").read_bytes()
