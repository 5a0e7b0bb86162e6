import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlgate.errors import StageError
from mlgate.services import monitor, prediction_log

POLICY = monitor.MonitorPolicy(min_rows=100, max_drift_share=0.3, max_decay=0.05)
CALM = {"drift_share": 0.1, "drifted_columns": ["tenure"], "max_drift_share": 0.3}
STORM = {"drift_share": 0.5, "drifted_columns": ["tenure", "charges"], "max_drift_share": 0.3}


def _live(value: float, rows: int = 500) -> dict:
    return {"rows": rows, "value": value, "low": value - 0.02, "high": value + 0.02}


@pytest.mark.parametrize(
    "rows, drift, live, breached",
    [
        (500, CALM, _live(0.84), []),
        (500, STORM, _live(0.84), ["drift share"]),
        (50, STORM, _live(0.70, rows=40), []),  # too few rows: reported, never judged
        (500, CALM, _live(0.78), ["live roc_auc"]),  # 0.07 worse than the test 0.85
        (500, CALM, _live(0.78, rows=40), []),  # too few labelled rows
    ],
)
def test_verdict_breaches_only_on_enough_rows(rows, drift, live, breached):
    breaches, decay = monitor.verdict(POLICY, rows, drift, live, "roc_auc", 0.85)

    assert [b.split(" ")[0] + " " + b.split(" ")[1] for b in breaches] == breached
    assert decay["change"] == pytest.approx(live["value"] - 0.85)


def test_decay_direction_follows_the_metric():
    _, decay = monitor.verdict(POLICY, 500, CALM, _live(1200.0), "rmse", 1000.0)
    assert decay["change"] == pytest.approx(-200.0)


def test_live_score_joins_labels_on_request_and_row(binary_spec):
    window = pd.DataFrame(
        {
            "request_id": ["a", "a", "b", "c"],
            "row": [0, 1, 0, 0],
            "output_prediction": ["Yes", "No", "No", "Yes"],
            "output_probability": [0.9, 0.2, 0.4, 0.7],
        }
    )
    labels = pd.DataFrame({"request_id": ["a", "a", "b"], "row": [0, 1, 0], "churn": ["Yes", "No", "Yes"]})

    live = monitor.live_score(window, labels, binary_spec, resamples=50)

    assert live["rows"] == 3
    assert live["value"] == pytest.approx(1.0)  # AUC of [0.9, 0.2, 0.4] against [1, 0, 1]


def test_live_accuracy_keeps_one_class_resamples_as_the_gates_bootstrap_does(binary_spec):
    """Accuracy is defined on rows of one class: only a probability metric skips those resamples."""
    window = pd.DataFrame({"request_id": "a", "row": [0, 1], "output_prediction": "No", "output_probability": 0.2})
    labels = pd.DataFrame({"request_id": "a", "row": [0, 1], "churn": ["No", "No"]})
    spec = dataclasses.replace(binary_spec, metric="accuracy")

    assert monitor.live_score(window, labels, spec, resamples=20) == {"rows": 2, "value": 1.0, "low": 1.0, "high": 1.0}


def test_read_window_keeps_the_window_and_names_a_missing_log(tmp_path):
    stamps = pd.to_datetime(["2026-01-01T00:00", "2026-01-02T00:00"], utc=True)
    pd.DataFrame({"timestamp": stamps, "x": [1, 2]}).to_parquet(tmp_path / "predictions-1-000001.parquet")

    window = monitor.read_window(tmp_path, dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC))

    assert window["x"].tolist() == [2]
    with pytest.raises(StageError, match="no prediction log files"):
        monitor.read_window(tmp_path / "absent", dt.datetime(2026, 1, 1, tzinfo=dt.UTC))


def test_labels_must_carry_request_row_and_target(tmp_path):
    pd.DataFrame({"request_id": ["a"], "churn": ["Yes"]}).to_csv(tmp_path / "labels.csv", index=False)

    with pytest.raises(StageError, match=r"missing \['row'\]"):
        monitor.read_labels(tmp_path / "labels.csv", "churn")


def test_nested_overrides():
    assert monitor._nested({"search.n_trials": 5, "seed": 1}) == {"search": {"n_trials": 5}, "seed": 1}


def test_gauges_are_a_valid_prometheus_textfile(tmp_path):
    summary = {
        "model": "churn",
        "version": 3,
        "rows": 400,
        "drift": STORM,
        "policy": {"max_drift_share": 0.3, "every_hours": 6.0},
        "breaches": ["drift share 0.50 > 0.30"],
        "decay": {"live": 0.8, "change": -0.05},
        "generated_at": "2026-12-04T05:17:00+00:00",
    }

    monitor.write_gauges(tmp_path / "monitor.prom", summary)

    samples = {
        s.name: s.value
        for f in text_string_to_metric_families((tmp_path / "monitor.prom").read_text())
        for s in f.samples
    }
    assert samples == {
        "mlgate_monitor_last_success_timestamp_seconds": 1796361420.0,  # 2026-12-04T05:17:00Z
        "mlgate_monitor_interval_seconds": 6 * 3600,
        "mlgate_monitor_rows": 400,
        "mlgate_monitor_drift_share": 0.5,
        "mlgate_monitor_drift_share_limit": 0.3,
        "mlgate_monitor_breached": 1.0,
        "mlgate_monitor_live_metric": 0.8,
        "mlgate_monitor_metric_change": -0.05,
    }
    assert np.isfinite(list(samples.values())).all()


@pytest.mark.parametrize(
    "target, url",
    [
        ("data/predictions", False),
        ("/var/log/mlgate", False),
        ("sqlite:///predictions.db", True),
        ("postgresql+psycopg://mlgate@db:5432/ops", True),
    ],
)
def test_a_prediction_log_is_a_directory_or_a_database_url(target, url):
    assert prediction_log.is_url(target) is url


def test_log_cells_become_json_values():
    values = [
        np.float64(0.1),
        float("nan"),
        np.int64(3),
        np.bool_(True),
        None,
        pd.NaT,
        float("inf"),
        pd.Timestamp("2026-01-02T03:04:05Z"),
        "Two year",
    ]

    assert [prediction_log._json_value(v) for v in values] == [
        0.1,
        None,
        3,
        True,
        None,
        None,
        "inf",
        "2026-01-02T03:04:05+00:00",
        "Two year",
    ]


def test_monitor_cli_reads_the_log_named_on_the_command_line(monkeypatch, project_root):
    from click.testing import CliRunner

    from mlgate.cli import main

    seen = []
    monkeypatch.setattr(
        monitor, "run", lambda params, policy, **given: seen.append((policy, given)) or {"breaches": []}
    )
    monkeypatch.setenv("MLGATE_PUSHGATEWAY", "http://pushgateway:9091")
    monkeypatch.delenv("MLGATE_TEXTFILE", raising=False)
    url = "postgresql+psycopg://mlgate:secret@db/ops"

    result = CliRunner().invoke(
        main, ["monitor", "--prediction-log", url, "--no-retrain", "--params", str(project_root / "params.yaml")]
    )

    assert result.exit_code == 0, result.output
    ((policy, given),) = seen
    assert (policy.prediction_log, policy.prediction_log_table) == (url, "mlgate_predictions")
    assert given == {"retrain": False, "textfile": None, "push_gateway": "http://pushgateway:9091"}
    assert prediction_log.describe(url) == "postgresql+psycopg://mlgate:***@db/ops table mlgate_predictions"


# --- the retraining pull request: branch names and titles are data, never shell code ---------------

HOSTILE = ["retrain/x$(touch marker)", "retrain/x`touch marker`", "retrain/x$(touch${IFS}marker)"]


@pytest.fixture
def fake_tools(tmp_path, monkeypatch):
    """`git` and `gh` on PATH that record their argv (and stdin) and touch nothing; `git show` prints
    a report, `gh` exits with FAKE_GH_EXIT. Returns the list of recorded calls, read lazily."""
    import json
    import os
    import sys

    bin_dir, calls = tmp_path / "bin", tmp_path / "calls.jsonl"
    bin_dir.mkdir()
    for tool in ("git", "gh"):
        (bin_dir / tool).write_text(
            f"#!{sys.executable}\n"
            "import json, os, sys\n"
            "stdin = '' if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read()\n"
            f"with open({str(calls)!r}, 'a') as log:\n"
            f"    log.write(json.dumps([{tool!r}, *sys.argv[1:], stdin]) + '\\n')\n"
            "if sys.argv[1:2] == ['show']:\n"
            "    print('# Promotion report')\n"
            f"sys.exit(int(os.environ.get('FAKE_GH_EXIT', '0')) if {tool!r} == 'gh' else 0)\n"
        )
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.chdir(tmp_path)
    return lambda: [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []


def _expected_calls(request):
    base = [] if request.base is None else ["--base", request.base]
    return [
        ["git", "push", "-u", "origin", request.branch, ""],
        ["git", "show", f"{request.branch}:reports/promotion.md", ""],
        [
            "gh",
            "pr",
            "create",
            *base,
            "--head",
            request.branch,
            "--title",
            request.title,
            "--body-file",
            "-",
            "# Promotion report\n",
        ],
    ]


@pytest.mark.parametrize("branch", HOSTILE)
def test_the_printed_pull_request_command_runs_nothing_a_name_holds(branch, fake_tools, tmp_path):
    import subprocess

    request = monitor.PullRequest(
        branch, "main$(touch marker)", "Retrain it's `touch marker` $(touch marker)", "reports/promotion.md"
    )

    pasted = subprocess.run(
        ["bash", "-c", request.command()],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert pasted.returncode == 0, pasted.stderr
    assert not (tmp_path / "marker").exists()
    assert fake_tools() == _expected_calls(request)


@pytest.mark.parametrize("branch", HOSTILE)
def test_opening_the_pull_request_passes_names_as_arguments(branch, fake_tools, tmp_path):
    request = monitor.PullRequest(branch, None, "Retrain it's $(touch marker)", "reports/promotion.md")

    assert monitor.open_pull_request(request, tmp_path) is True

    assert not (tmp_path / "marker").exists()
    assert fake_tools() == _expected_calls(request)  # a detached HEAD: no --base, gh picks the default branch


def test_a_refused_pull_request_is_reported_not_raised(fake_tools, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_GH_EXIT", "1")
    request = monitor.PullRequest("retrain/20260101T000000", "main", "Retrain tiny", "reports/promotion.md")

    assert monitor.open_pull_request(request, tmp_path) is False
    assert [call[0:3] for call in fake_tools()] == [
        ["git", "push", "-u"],
        ["git", "show", request.body()[2]],
        ["gh", "pr", "create"],
    ]


# --- shadow rows in the window --------------------------------------------------------------------


def _window_with_shadow() -> pd.DataFrame:
    """Production v1 answered requests a and b; the shadow v2 scored a's rows (and an unknown v9 b's)."""
    return pd.DataFrame(
        {
            "request_id": ["a", "a", "b", "a", "a", "b"],
            "row": [0, 1, 0, 0, 1, 0],
            "timestamp": pd.Timestamp("2026-03-01T10:00", tz="UTC"),
            "model_version": ["1", "1", "1", "2", "2", "9"],
            "role": ["served"] * 3 + ["shadow"] * 3,
            "tenure": [1.0, 5.0, 9.0, np.nan, np.nan, np.nan],
            "output_prediction": ["Yes", "No", "No", "Yes", "Yes", "No"],
            "output_probability": [0.9, 0.2, 0.3, 0.8, 0.6, 0.1],
        }
    )


def test_the_served_analyses_see_the_served_rows_and_a_log_without_roles_is_all_served():
    served, shadows = monitor.by_role(_window_with_shadow())

    assert served["model_version"].tolist() == ["1", "1", "1"] and served["tenure"].notna().all()
    assert shadows["model_version"].tolist() == ["2", "2", "9"]
    old = _window_with_shadow().drop(columns=["role"])
    assert monitor.by_role(old)[0].equals(old) and monitor.by_role(old)[1].empty


def test_the_shadow_is_compared_with_production_on_the_staging_versions_rows(binary_spec, monkeypatch):
    from mlgate.adapters import tracking

    def version(number: int, alias: str) -> tracking.ModelVersion:
        return tracking.ModelVersion("churn", number, f"run{number}", "", (alias,), {})

    monkeypatch.setattr(tracking, "version_by_alias", lambda model, alias: version(2, alias))
    served, shadows = monitor.by_role(_window_with_shadow())
    labels = pd.DataFrame({"request_id": ["a", "a"], "row": [0, 1], "churn": ["Yes", "No"]})
    now = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)

    evidence = monitor.shadow_evidence("churn", version(1, "production"), served, shadows, labels, binary_spec, now)

    assert (evidence.shadow_version, evidence.served_version) == (2, 1)
    assert evidence.paired_rows == 2 and evidence.agreement == 0.5 and evidence.labelled_rows == 2
    assert (
        monitor.shadow_evidence("churn", version(1, "production"), served, shadows.iloc[0:0], None, binary_spec, now)
        is None
    )


def test_shadow_gauges_carry_the_shadow_version(tmp_path):
    summary = {
        "model": "churn",
        "version": 3,
        "rows": 400,
        "drift": CALM,
        "policy": {"max_drift_share": 0.3, "every_hours": 24.0},
        "breaches": [],
        "decay": None,
        "generated_at": "2026-12-04T05:17:00+00:00",
        "shadow": {"shadow_version": 4, "paired_rows": 380, "agreement": 0.97, "change": None},
    }

    monitor.write_gauges(tmp_path / "monitor.prom", summary)

    samples = {
        s.name: s for f in text_string_to_metric_families((tmp_path / "monitor.prom").read_text()) for s in f.samples
    }
    assert samples["mlgate_monitor_shadow_rows"].value == 380
    assert samples["mlgate_monitor_shadow_agreement"].labels == {
        "model": "churn",
        "version": "3",
        "shadow_version": "4",
    }
    assert "mlgate_monitor_shadow_metric_change" not in samples  # no labels: no change measured


def test_shadow_md_shows_both_versions_the_change_and_the_verdict():
    from mlgate.gating.shadow import ShadowEvidence, ShadowRule

    evidence = ShadowEvidence(4, 3, 1200, 0.96, 400, "roc_auc", 0.84, 0.85, 0.01, (-0.01, 0.03), "f", "t", "g")
    rule = ShadowRule(required=True)

    text = monitor.shadow_markdown("churn", evidence, rule, ["the CI starts below +0"])

    assert "## Live shadow evidence: churn v4 vs production v3" in text
    assert "| live roc_auc | 0.8400 | 0.8500 |" in text
    assert "- Agreement: 96.0% of paired rows" in text
    assert "+0.0100, 95% paired-bootstrap CI [-0.0100, +0.0300]" in text
    assert "**Verdict: wait.**" in text and "- the CI starts below +0" in text


# --- shadow evidence on the promotion pull request ---------------------------------------------------


def _git(root, *args):
    import subprocess

    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def _commit_gate(root, branch, version):
    import json

    _git(root, "checkout", "-q", "-B", branch)
    (root / "reports").mkdir(exist_ok=True)
    (root / "reports/gate.json").write_text(json.dumps({"candidate": {"version": version}}))
    _git(root, "add", "-A")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", f"v{version} on {branch}")


@pytest.fixture
def review_repo(tmp_path):
    """main names v1 (merged); retrain/a names v2; a hostile-named branch names v3; main is checked out."""
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q", "-b", "main")
    _commit_gate(root, "main", 1)
    _commit_gate(root, "retrain/a", 2)
    _commit_gate(root, HOSTILE[2], 3)
    _git(root, "checkout", "-q", "main")
    return root


def test_the_review_branch_is_the_one_whose_committed_gate_report_names_the_version(review_repo, tmp_path):
    assert monitor.review_branch(review_repo, "reports/gate.json", 2) == "retrain/a"
    assert monitor.review_branch(review_repo, "reports/gate.json", 3) == HOSTILE[2]
    assert monitor.review_branch(review_repo, "reports/gate.json", 1) is None  # only the checked-out branch
    assert monitor.review_branch(review_repo, "reports/gate.json", 9) is None
    clone = tmp_path / "clone"  # a CI checkout: the branches are origin's
    _git(tmp_path, "clone", "-q", str(review_repo), str(clone))
    assert monitor.review_branch(clone, "reports/gate.json", 2) == "retrain/a"


def test_shadow_evidence_goes_to_the_review_branchs_pull_request_as_one_comment_kept_current(
    review_repo, tmp_path, monkeypatch
):
    import json
    import os
    import sys
    from types import SimpleNamespace

    calls = tmp_path / "gh.jsonl"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gh").write_text(
        f"#!{sys.executable}\nimport json, sys\nopen({str(calls)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
    )
    (bin_dir / "gh").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.chdir(review_repo)
    paths = SimpleNamespace(gate="reports/gate.json", monitor="reports/monitor.json")

    monkeypatch.delenv("GH_TOKEN", raising=False)
    unposted = monitor.share_evidence(3, paths)
    monkeypatch.setenv("GH_TOKEN", "t")
    posted = monitor.share_evidence(3, paths)

    comment = ["pr", "comment", HOSTILE[2], "--edit-last", "--create-if-none", "--body-file", "reports/shadow.md"]
    assert [json.loads(line) for line in calls.read_text().splitlines()] == [comment]  # only with a token
    assert posted == {"branch": HOSTILE[2], "commented": True, "next": "commented on its pull request"}
    assert unposted["commented"] is None and unposted["next"].endswith(
        monitor.EvidenceComment(HOSTILE[2], comment[-1]).command()
    )
    import subprocess

    pasted = subprocess.run(["bash", "-c", monitor.EvidenceComment(HOSTILE[2], comment[-1]).command()], cwd=tmp_path)
    assert pasted.returncode == 0 and not (tmp_path / "marker").exists()
    assert monitor.share_evidence(9, paths)["branch"] is None
    monkeypatch.chdir(tmp_path)  # not a checkout: said, not raised
    assert monitor.share_evidence(3, paths)["next"].startswith("not a git checkout")
