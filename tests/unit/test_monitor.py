import datetime as dt

import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlgate import monitor, prediction_log
from mlgate.project import StageError

POLICY = monitor.MonitorPolicy(min_rows=100, max_drift_share=0.3, max_decay=0.05)
CALM = {"drift_share": 0.1, "drifted_columns": ["tenure"], "max_drift_share": 0.3}
STORM = {"drift_share": 0.5, "drifted_columns": ["tenure", "charges"], "max_drift_share": 0.3}


def _live(value: float, rows: int = 500) -> dict:
    return {"rows": rows, "value": value, "low": value - 0.02, "high": value + 0.02}


@pytest.mark.parametrize("rows, drift, live, breached", [
    (500, CALM, _live(0.84), []),
    (500, STORM, _live(0.84), ["drift share"]),
    (50, STORM, _live(0.70, rows=40), []),             # too few rows: reported, never judged
    (500, CALM, _live(0.78), ["live roc_auc"]),        # 0.07 worse than the test 0.85
    (500, CALM, _live(0.78, rows=40), []),             # too few labelled rows
])
def test_verdict_breaches_only_on_enough_rows(rows, drift, live, breached):
    breaches, decay = monitor.verdict(POLICY, rows, drift, live, "roc_auc", 0.85)

    assert [b.split(" ")[0] + " " + b.split(" ")[1] for b in breaches] == breached
    assert decay["change"] == pytest.approx(live["value"] - 0.85)


def test_decay_direction_follows_the_metric():
    _, decay = monitor.verdict(POLICY, 500, CALM, _live(1200.0), "rmse", 1000.0)
    assert decay["change"] == pytest.approx(-200.0)


def test_live_score_joins_labels_on_request_and_row(binary_spec):
    window = pd.DataFrame({"request_id": ["a", "a", "b", "c"], "row": [0, 1, 0, 0],
                           "output_prediction": ["Yes", "No", "No", "Yes"], "output_probability": [0.9, 0.2, 0.4, 0.7]})
    labels = pd.DataFrame({"request_id": ["a", "a", "b"], "row": [0, 1, 0], "churn": ["Yes", "No", "Yes"]})

    live = monitor.live_score(window, labels, binary_spec, resamples=50)

    assert live["rows"] == 3
    assert live["value"] == pytest.approx(1.0)   # AUC of [0.9, 0.2, 0.4] against [1, 0, 1]


def test_read_window_keeps_the_window_and_names_a_missing_log(tmp_path):
    stamps = pd.to_datetime(["2026-01-01T00:00", "2026-01-02T00:00"], utc=True)
    pd.DataFrame({"timestamp": stamps, "x": [1, 2]}).to_parquet(tmp_path / "predictions-1-000001.parquet")

    window = monitor.read_window(tmp_path, dt.datetime(2026, 1, 1, 12, tzinfo=dt.timezone.utc))

    assert window["x"].tolist() == [2]
    with pytest.raises(StageError, match="no prediction log files"):
        monitor.read_window(tmp_path / "absent", dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))


def test_labels_must_carry_request_row_and_target(tmp_path):
    pd.DataFrame({"request_id": ["a"], "churn": ["Yes"]}).to_csv(tmp_path / "labels.csv", index=False)

    with pytest.raises(StageError, match=r"missing \['row'\]"):
        monitor.read_labels(tmp_path / "labels.csv", "churn")


def test_nested_overrides():
    assert monitor._nested({"search.n_trials": 5, "seed": 1}) == {"search": {"n_trials": 5}, "seed": 1}


def test_gauges_are_a_valid_prometheus_textfile(tmp_path):
    summary = {"model": "churn", "version": 3, "rows": 400, "drift": STORM, "policy": {"max_drift_share": 0.3},
               "breaches": ["drift share 0.50 > 0.30"], "decay": {"live": 0.8, "change": -0.05}}

    monitor.write_gauges(tmp_path / "monitor.prom", summary)

    samples = {s.name: s.value for f in text_string_to_metric_families((tmp_path / "monitor.prom").read_text())
               for s in f.samples}
    assert samples == {"mlgate_monitor_rows": 400, "mlgate_monitor_drift_share": 0.5,
                       "mlgate_monitor_drift_share_limit": 0.3, "mlgate_monitor_breached": 1.0,
                       "mlgate_monitor_live_metric": 0.8, "mlgate_monitor_metric_change": -0.05}
    assert np.isfinite(list(samples.values())).all()


@pytest.mark.parametrize("target, url", [
    ("data/predictions", False), ("/var/log/mlgate", False), ("sqlite:///predictions.db", True),
    ("postgresql+psycopg://mlgate@db:5432/ops", True),
])
def test_a_prediction_log_is_a_directory_or_a_database_url(target, url):
    assert prediction_log.is_url(target) is url


def test_log_cells_become_json_values():
    values = [np.float64(0.1), float("nan"), np.int64(3), np.bool_(True), None, pd.NaT, float("inf"),
              pd.Timestamp("2026-01-02T03:04:05Z"), "Two year"]

    assert [prediction_log._json_value(v) for v in values] == [
        0.1, None, 3, True, None, None, "inf", "2026-01-02T03:04:05+00:00", "Two year"]


def test_monitor_cli_reads_the_log_named_on_the_command_line(monkeypatch, project_root):
    from click.testing import CliRunner

    from mlgate.cli import main

    seen = []
    monkeypatch.setattr(monitor, "run", lambda params, policy, retrain: seen.append(policy) or {"breaches": []})
    url = "postgresql+psycopg://mlgate:secret@db/ops"

    result = CliRunner().invoke(main, ["monitor", "--prediction-log", url, "--no-retrain",
                                       "--params", str(project_root / "params.yaml")])

    assert result.exit_code == 0, result.output
    assert (seen[0].prediction_log, seen[0].prediction_log_table) == (url, "mlgate_predictions")
    assert prediction_log.describe(url) == "postgresql+psycopg://mlgate:***@db/ops table mlgate_predictions"
