"""monitoring/: Prometheus config, alert rules (and their promtool unit tests), and the Grafana dashboard.

promtool comes with Debian's `prometheus` package. The metric-name tests need only Python: every metric an
alert or a dashboard query reads must be one `mlgate serve` exports (or one of `mlgate monitor`'s gauges).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "monitoring"
DASHBOARD = MONITORING / "grafana" / "mlgate.json"

# Exported by `mlgate monitor` (not by `mlgate serve`); alerts.yml and the dashboard read them.
MONITOR_GAUGES = {
    "mlgate_monitor_drift_share",
    "mlgate_monitor_drift_share_limit",
    "mlgate_monitor_last_success_timestamp_seconds",
    "mlgate_monitor_interval_seconds",
}
# Written by Prometheus itself for every target.
PROMETHEUS_SERIES = {"up"}

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not on PATH (Debian: apt-get install -y --no-install-recommends prometheus)"
)

KEYWORDS = {
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
    "atan2",
}
STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
MODIFIER = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (Grafana's $variables allowed)."""
    text = re.sub(r"\$\{\w+(?::\w+)?\}|\$\w+", "1", expr)  # Grafana variables
    text = STRING.sub('""', text)  # string literals (label values)
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = MODIFIER.sub("", text)  # by (...), on (...), group_left (...)
    text = re.sub(r"\[[^\]]*\]", "", text)  # range and subquery selectors
    names = set()
    for match in IDENTIFIER.finditer(text):
        before = text[match.start() - 1] if match.start() else " "
        if before.isdigit() or before == ".":  # 5m, 1e3
            continue
        if text[match.end() :].lstrip().startswith("("):  # a function or an aggregation
            continue
        if match.group().lower() not in KEYWORDS:
            names.add(match.group())
    return names


def exported_by_serve() -> set[str]:
    """Every sample name `mlgate serve`'s /metrics can expose, read from its exposition text.

    Labelled metrics show no sample until a label value is used, so each gets one first.
    """
    from prometheus_client import generate_latest
    from prometheus_client.metrics import MetricWrapperBase

    from mlgate.services import serving

    metrics = serving.Metrics()
    for collector in vars(metrics).values():
        labels = getattr(collector, "_labelnames", ())
        if isinstance(collector, MetricWrapperBase) and labels:
            collector.labels(*["x"] * len(labels))
    exposition = generate_latest(metrics.registry).decode()
    return {
        re.split(r"[{ ]", line, maxsplit=1)[0] for line in exposition.splitlines() if line and not line.startswith("#")
    }


def alert_rules() -> list[dict]:
    groups = yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def dashboard_exprs(node: object) -> list[str]:
    """Every PromQL query in ``node`` (the dashboard): panel targets, annotations and template variables."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                found.append(value)
            elif key == "templating":
                for variable in value["list"]:
                    if variable["type"] == "query":
                        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
                        selector = re.fullmatch(r"label_values\((.+),\s*\w+\)", query)
                        found.append(selector.group(1) if selector else query)
            else:
                found.extend(dashboard_exprs(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(dashboard_exprs(item))
    return found


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_metric_name_parser_finds_metrics_not_functions_labels_or_keywords():
    expr = (
        'histogram_quantile(0.99, sum by (job, le) (rate(a_bucket{endpoint="x", le=~"0.1"}[5m]))) > 1e3 '
        'and on (job) up{job="m"} == 1 unless ignoring (label) group_left sum(rate(b_total[$__rate_interval])) '
        "or (time() - c_created offset 5m) > 900"
    )

    assert metric_names(expr) == {"a_bucket", "up", "b_total", "c_created"}


def test_serve_exports_the_documented_families():
    exported = exported_by_serve()

    assert {
        "mlgate_requests_total",
        "mlgate_request_latency_seconds_bucket",
        "mlgate_rows_predicted_total",
        "mlgate_predicted_class_total",
        "mlgate_input_missing_values_total",
        "mlgate_model_info",
        "mlgate_model_load_failures_total",
        "mlgate_model_swaps_total",
    } <= exported


def test_alerts_read_only_metrics_that_are_exported():
    allowed = exported_by_serve() | MONITOR_GAUGES | PROMETHEUS_SERIES
    unknown = {}
    for rule in alert_rules():
        names = metric_names(rule["expr"])
        assert names, f"{rule['alert']}: no metric found in {rule['expr']!r}"
        if names - allowed:
            unknown[rule["alert"]] = sorted(names - allowed)

    assert unknown == {}


def test_alerts_have_for_severity_and_annotations():
    rules = alert_rules()

    assert {r["alert"] for r in rules} == {
        "MlgateHighErrorRate",
        "MlgateHighLatencyP99",
        "MlgateNoPredictions",
        "MlgateModelLoadFailure",
        "MlgateShadowFailing",
        "MlgateShadowFallingBehind",
        "MlgateDriftOverPolicy",
        "MlgateMonitorLate",
    }
    for rule in rules:
        assert "for" in rule and rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_drift_alert_compares_the_monitor_gauges():
    drift = next(r for r in alert_rules() if r["alert"] == "MlgateDriftOverPolicy")

    assert metric_names(drift["expr"]) == {"mlgate_monitor_drift_share", "mlgate_monitor_drift_share_limit"}


def test_lateness_alert_compares_the_last_success_with_the_schedules_period():
    late = next(r for r in alert_rules() if r["alert"] == "MlgateMonitorLate")

    assert metric_names(late["expr"]) == {
        "mlgate_monitor_last_success_timestamp_seconds",
        "mlgate_monitor_interval_seconds",
    }


def test_alert_jobs_are_scraped():
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    scraped = {job["job_name"] for job in config["scrape_configs"]}
    named = {job for rule in alert_rules() for job in re.findall(r'\bjob\s*=\s*"([^"]+)"', rule["expr"])}

    assert named <= scraped
    assert config["rule_files"] == ["alerts.yml"]


def test_dashboard_queries_read_only_metrics_that_are_exported():
    allowed = exported_by_serve() | MONITOR_GAUGES | PROMETHEUS_SERIES
    exprs = dashboard_exprs(dashboard())
    unknown = {expr: sorted(metric_names(expr) - allowed) for expr in exprs if metric_names(expr) - allowed}

    assert len(exprs) > 10 and all(metric_names(e) for e in exprs)
    assert unknown == {}


def test_dashboard_panels_use_the_datasource_variable():
    board = dashboard()
    panels = [p for p in board["panels"] if p["type"] != "row"]
    variables = {v["name"]: v for v in board["templating"]["list"]}

    assert 36 <= board["schemaVersion"] <= 41
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
    for panel in panels:
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"]), panel["title"]


@needs_promtool
def test_promtool_check_rules():
    result = promtool("check", "rules", "monitoring/alerts.yml")

    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_check_config():
    result = promtool("check", "config", "monitoring/prometheus.yml")

    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_alert_unit_tests():
    result = promtool("test", "rules", "monitoring/alerts_test.yml")

    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_dashboard_queries_are_valid_promql(tmp_path):
    """Each dashboard query, with Grafana's variables filled in, as a recording rule promtool must accept."""

    def concrete(expr: str) -> str:
        return expr.replace("$__rate_interval", "5m").replace("$job", ".*").replace("$instance", ".*")

    rules = [
        {"record": f"dashboard:query_{i}", "expr": concrete(e)} for i, e in enumerate(dashboard_exprs(dashboard()))
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = promtool("check", "rules", str(path))

    assert result.returncode == 0, result.stdout + result.stderr
