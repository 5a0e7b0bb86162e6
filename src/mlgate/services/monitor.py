"""`mlgate monitor`: live traffic against what the served model was trained and tested on.

Reads a window of the serving prediction log (`mlgate serve --prediction-log`: Parquet files or a
SQL table), compares its inputs with
the training sample logged beside the served version (the same drift module and JSON contract as
the `drift` stage), and, where labels have arrived, the live metric with the version's test metric.
Writes paths.monitor (JSON), paths.monitor_report (Evidently HTML) and paths.monitor_metrics
(Prometheus textfile gauges), and logs a `monitor` run. When the policy (`monitor:` in params.yaml)
is breached it opens a retraining branch: the window becomes the pipeline's `current` batch (and,
with labels, extends the training data), `dvc repro` runs there, and the branch is left with its
reports/promotion.md for a pull request. It never moves `production`: that stays the reviewed path.

With `mlgate serve --shadow staging`, the log also holds the `staging` version's outputs for the same
requests (role "shadow"). Every analysis above reads the served rows only; the shadow rows are paired
with production's (gating.shadow.compare): the evidence goes to monitor.json (`shadow`), the gauges,
the run, a version tag on the staging version (gating.shadow.EVIDENCE_TAG, which `mlgate promote`
reads) and shadow.md beside paths.monitor, for the promotion pull request.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from mlgate import console, files, project
from mlgate.adapters import tracking
from mlgate.errors import StageError
from mlgate.gating import shadow as shadowing
from mlgate.modelling import metrics
from mlgate.modelling.data import DataSpec, conform_features
from mlgate.registry import CANDIDATE_ALIAS, CHAMPION_ALIAS, REFERENCE_DIR, REFERENCE_FILE
from mlgate.services import prediction_log as plog
from mlgate.services import promote
from mlgate.services.prediction_log import LOG_COLUMNS

STAGE = "monitor"
ROLE = "role"  # of a logged row: plog.SERVED (the client's answer) or plog.SHADOW (a shadow version's)
SHADOW_REPORT = "shadow.md"  # beside paths.monitor


@dataclass(frozen=True)
class MonitorPolicy:
    """params.yaml `monitor:` (conf/monitor/)."""

    prediction_log: str = "data/predictions"  # a directory of Parquet files, or a SQLAlchemy URL
    prediction_log_table: str = plog.DEFAULT_TABLE  # with a URL: the table ([schema.]name)
    alias: str = CHAMPION_ALIAS
    window_hours: float = 24.0
    min_rows: int = 200  # fewer rows: reported, not judged
    max_drift_share: float = 0.3
    column_threshold: float | None = None
    max_decay: float = 0.05  # the live metric may be this much worse than the test metric
    # clustering: the population stability index of the clusters' shares, window vs training sample
    max_assignment_drift: float = 0.2
    labels: str | None = None  # CSV/Parquet with request_id, row and the target
    # How often a schedule runs monitor: exported with each run's finishing time, so an alert can tell
    # a schedule that stopped (or keeps failing) from one that is merely quiet.
    every_hours: float = 24.0
    retrain: bool = True
    # Overrides for the retraining run, as `key: value` (e.g. search.n_trials: 20).
    retrain_overrides: dict[str, Any] = field(default_factory=dict)


def read_window(source: str | Path, since: dt.datetime, table: str = plog.DEFAULT_TABLE) -> pd.DataFrame:
    """Logged rows with a timestamp at or after ``since``, from the log's Parquet files or SQL table:
    the log's fields, the inputs under their own names and the outputs as ``output_*``. An input
    named like one of the log's fields or an output keeps its ``input_`` prefix."""
    window = plog.read(source, since, table)
    taken = set(window.columns)
    names = {}
    for column in window.columns:
        if column.startswith(plog.INPUT_PREFIX):
            name = column[len(plog.INPUT_PREFIX) :]
            if name not in taken and not name.startswith(plog.OUTPUT_PREFIX):
                names[column] = name
    return window.rename(columns=names)


def by_role(window: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the served rows, the shadow rows) of a window; a log without roles was all served."""
    if ROLE not in window.columns:
        return window, window.iloc[0:0]
    role = window[ROLE].fillna(plog.SERVED).astype(str)
    return window[role == plog.SERVED], window[role == plog.SHADOW]


def read_labels(path: str | Path, target: str) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise StageError(f"{path}: labels file not found (monitor.labels)")
    labels = pd.read_parquet(path) if path.suffix in (".parquet", ".pq") else pd.read_csv(path)
    missing = [c for c in ("request_id", "row", target) if c not in labels.columns]
    if missing:
        raise StageError(f"{path}: labels need the columns request_id, row and '{target}'; missing {missing}")
    return labels[["request_id", "row", target]]


def live_score(
    window: pd.DataFrame, labels: pd.DataFrame, spec: DataSpec, *, seed: int = 0, resamples: int = 1000
) -> dict[str, Any] | None:
    """The metric on the logged predictions that have a label, with a 95% bootstrap interval (resamples
    where the metric is undefined, as AUC on one class, left out: ``metrics.undefined``, as the gate's)."""
    joined = window.merge(labels, on=["request_id", "row"], how="inner")
    if joined.empty:
        return None
    task = spec.learning_task
    joined = joined[task.scorable(joined[spec.target])]  # a label the model was never taught is not scored
    if joined.empty:
        return None
    y = task.encode(joined[spec.target])
    prediction, probability = task.read_outputs(joined, prefix=plog.OUTPUT_PREFIX)
    scored = probability if metrics.METRICS[spec.metric].uses_probability else prediction
    value = metrics.score(spec.metric, y, prediction, probability)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(resamples):
        rows = rng.integers(0, len(y), len(y))
        if metrics.undefined(spec.metric, y[rows], scored[rows]):
            continue
        draws.append(metrics.METRICS[spec.metric].score(y[rows], scored[rows]))
    low, high = np.percentile(draws, [2.5, 97.5]) if draws else (np.nan, np.nan)
    return {"rows": len(joined), "value": value, "low": float(low), "high": float(high)}


def live_segmentation(
    window: pd.DataFrame,
    reference: pd.DataFrame,
    model: tracking.LoadedModel,
    spec: DataSpec,
    *,
    seed: int = 0,
    resamples: int = 1000,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A clustering model's window: (the live silhouette of the logged clusters in the model's encoding,
    with a 95% bootstrap interval over its sampled rows; the assignment's drift: each cluster's share of
    the window and of the training sample as the model assigns it, and their population stability index)."""
    from mlgate.modelling import clustering

    task = spec.learning_task
    logged = task.read_outputs(window, prefix=plog.OUTPUT_PREFIX)[0]
    trained = task.read_outputs(model.predict(reference[spec.features]))[0]
    present = [c for c in spec.features if c in window.columns]  # the model's guard handles an absent one
    per_row = clustering.row_silhouettes(model.pipeline.embed(window[present]), logged, seed=seed)
    draws = per_row[np.random.default_rng(seed).integers(0, len(per_row), (resamples, len(per_row)))].mean(axis=1)
    low, high = np.percentile(draws, [2.5, 97.5])
    live = {"rows": len(per_row), "value": float(per_row.mean()), "low": float(low), "high": float(high)}
    clusters = sorted(set(logged.tolist()) | set(trained.tolist()))
    assignments = {
        "psi": metrics.population_stability(trained, logged, task.drift_bins),
        "window_share": {str(c): float(np.mean(logged == c)) for c in clusters},
        "training_share": {str(c): float(np.mean(trained == c)) for c in clusters},
    }
    return live, assignments


def verdict(
    policy: MonitorPolicy,
    rows: int,
    drift: dict[str, Any],
    live: dict[str, Any] | None,
    metric: str,
    test_score: float | None,
) -> tuple[list[str], dict[str, Any]]:
    """Pure: (breaches, decay summary). Too few rows is reported, never a breach."""
    breaches = []
    decay = None
    if rows >= policy.min_rows and drift["drift_share"] > policy.max_drift_share:
        top = ", ".join(drift["drifted_columns"][:5])
        breaches.append(f"drift share {drift['drift_share']:.2f} > {policy.max_drift_share:.2f} (drifted: {top})")
    if live is not None and test_score is not None:
        change = metrics.improvement(metric, live["value"], test_score)
        decay = {
            "metric": metric,
            "test": test_score,
            "live": live["value"],
            "change": change,
            "live_interval": [live["low"], live["high"]],
            "labelled_rows": live["rows"],
        }
        if live["rows"] >= policy.min_rows and change < -policy.max_decay:
            breaches.append(
                f"live {metric} {live['value']:.4f} is {-change:.4f} worse than the test {metric} "
                f"{test_score:.4f} (allowed {policy.max_decay}; 95% CI of live "
                f"[{live['low']:.4f}, {live['high']:.4f}], {live['rows']:,} labelled rows)"
            )
    return breaches, decay


def gauges(summary: dict[str, Any]) -> Any:
    """The figures as Prometheus gauges (a registry of their own), with the time this run finished and
    the schedule's period, which the lateness alert compares."""
    from prometheus_client import CollectorRegistry, Gauge

    registry = CollectorRegistry()
    labels = {"model": summary["model"], "version": str(summary["version"])}
    names = list(labels)

    def gauge(name: str, doc: str, value: float) -> None:
        Gauge(name, doc, names, registry=registry).labels(**labels).set(value)

    gauge(
        "mlgate_monitor_last_success_timestamp_seconds",
        "When the last monitor run that completed finished (Unix time)",
        dt.datetime.fromisoformat(summary["generated_at"]).timestamp(),
    )
    gauge(
        "mlgate_monitor_interval_seconds",
        "How often the schedule runs monitor (monitor.every_hours)",
        summary["policy"]["every_hours"] * 3600,
    )
    gauge("mlgate_monitor_rows", "Logged rows in the monitoring window", summary["rows"])
    gauge(
        "mlgate_monitor_drift_share", "Share of feature columns drifted in the window", summary["drift"]["drift_share"]
    )
    gauge(
        "mlgate_monitor_drift_share_limit",
        "The policy's limit on the drift share",
        summary["policy"]["max_drift_share"],
    )
    gauge("mlgate_monitor_breached", "1 when the monitoring policy is breached", float(bool(summary["breaches"])))
    if summary["decay"] is not None:
        gauge("mlgate_monitor_live_metric", "The primary metric on labelled live rows", summary["decay"]["live"])
        gauge("mlgate_monitor_metric_change", "Live minus test metric (positive: better)", summary["decay"]["change"])
    if summary.get("assignments") is not None:
        gauge(
            "mlgate_monitor_assignment_drift",
            "Population stability index of the clusters' shares, window vs training (clustering)",
            summary["assignments"]["psi"],
        )
    shadow = summary.get("shadow")
    if shadow is not None:
        shadow_labels = {**labels, "shadow_version": str(shadow["shadow_version"])}
        for name, doc, value in (
            ("mlgate_monitor_shadow_rows", "Served rows the shadow version also scored", shadow["paired_rows"]),
            ("mlgate_monitor_shadow_agreement", "Share of paired rows whose predictions agree", shadow["agreement"]),
            (
                "mlgate_monitor_shadow_metric_change",
                "Live metric of the shadow minus production's (positive: the shadow is better)",
                shadow["change"],
            ),
        ):
            if value is not None:
                Gauge(name, doc, list(shadow_labels), registry=registry).labels(**shadow_labels).set(value)
    return registry


def write_gauges(path: str | Path, summary: dict[str, Any]) -> None:
    """The gauges as a Prometheus textfile (node_exporter's textfile collector, or any scraper), replaced
    whole (prometheus_client writes a temporary file and renames it)."""
    from prometheus_client import write_to_textfile

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), gauges(summary))


PUSH_JOB = "mlgate_monitor"  # the Pushgateway job; grouped by model, so each push replaces that model's last


def push_gauges(gateway: str, summary: dict[str, Any], timeout_s: float = 10.0) -> None:
    """The gauges to a Prometheus Pushgateway, for schedulers whose runs no scraper can reach (a CI job,
    a CronJob's pod)."""
    from prometheus_client import push_to_gateway

    try:
        push_to_gateway(
            gateway, job=PUSH_JOB, registry=gauges(summary), grouping_key={"model": summary["model"]}, timeout=timeout_s
        )
    except OSError as error:  # URLError, refused connections, timeouts, HTTP errors
        raise StageError(f"cannot push the monitor's gauges to the Pushgateway {gateway}: {error}") from None


def run(
    params: dict[str, Any],
    policy: MonitorPolicy,
    *,
    retrain: bool,
    now: dt.datetime | None = None,
    textfile: str | None = None,
    push_gateway: str | None = None,
) -> dict[str, Any]:
    """Monitor the window. The gauges (paths.monitor_metrics, and ``textfile`` and ``push_gateway`` when
    given) are written last, so their last-success time only moves when everything before succeeded."""
    from mlgate.adapters import evidently_drift  # Evidently takes ~3 s to import

    spec = project.data_spec(params)
    paths = project.paths(params)
    names = project.tracking(params)
    now = now or dt.datetime.now(dt.UTC)
    served = tracking.version_by_alias(names.registered_model, policy.alias)
    if served is None:
        raise StageError(f"registered model '{names.registered_model}' has no version with alias '{policy.alias}'")
    window, shadows = by_role(
        read_window(policy.prediction_log, now - dt.timedelta(hours=policy.window_hours), policy.prediction_log_table)
    )
    if window.empty:
        raise StageError(
            f"{plog.describe(policy.prediction_log, policy.prediction_log_table)}: no logged rows "
            f"in the last {policy.window_hours:g} h"
        )
    with tempfile.TemporaryDirectory() as scratch:
        reference = pd.read_parquet(
            tracking.download_artifact(served.run_id, f"{REFERENCE_DIR}/{REFERENCE_FILE}", scratch)
        )
    numeric = [c for c in spec.numeric_features if c in window.columns]
    categorical = [c for c in spec.categorical_features if c in window.columns]
    current = conform_features(window, numeric, categorical)
    drift = evidently_drift.data_drift(
        conform_features(reference, numeric, categorical),
        current,
        numeric,
        categorical,
        max_drift_share=policy.max_drift_share,
        column_threshold=policy.column_threshold,
    )
    assignments = None
    labels = (
        None if policy.labels is None or not spec.learning_task.supervised else read_labels(policy.labels, spec.target)
    )
    if spec.learning_task.supervised:
        live = None if labels is None else live_score(window, labels, spec)
    else:  # no labels to wait for: the live silhouette and the clusters' shares
        live, assignments = live_segmentation(window, reference, tracking.load(served.uri), spec)
    test_score = tracking.run_metrics(served.run_id).get(f"test/{spec.metric}")
    breaches, decay = verdict(policy, len(window), drift.summary, live, spec.metric, test_score)
    if assignments is not None and len(window) >= policy.min_rows and assignments["psi"] > policy.max_assignment_drift:
        breaches.append(
            f"assignment drift (PSI of the clusters' shares, window vs training) {assignments['psi']:.4f} "
            f"> {policy.max_assignment_drift}"
        )
    summary = {
        "model": names.registered_model,
        "alias": policy.alias,
        "version": served.version,
        "window": {
            "hours": policy.window_hours,
            "from": str(window["timestamp"].min()),
            "to": str(window["timestamp"].max()),
        },
        "rows": len(window),
        "judged": len(window) >= policy.min_rows,
        "served_versions": sorted(window["model_version"].astype(str).unique().tolist()),
        "drift": drift.summary,
        "decay": decay,
        "assignments": assignments,
        "shadow": None,
        "shadow_review": None,  # where shadow.md went for review (``share_evidence``)
        "breaches": breaches,
        "policy": asdict(policy),
        "generated_at": now.isoformat(timespec="seconds"),
    }
    evidence = shadow_evidence(names.registered_model, served, window, shadows, labels, spec, now)
    if evidence is not None:
        summary["shadow"] = evidence.to_json()
        tracking.set_version_tags(
            names.registered_model, evidence.shadow_version, {shadowing.EVIDENCE_TAG: evidence.to_tag()}
        )
        rule = promote.shadow_rule(params)
        reasons = shadowing.judge(rule, evidence, served.version, now, candidate_version=evidence.shadow_version)
        files.write_text(shadow_report_path(paths), shadow_markdown(names.registered_model, evidence, rule, reasons))
        summary["shadow_review"] = share_evidence(evidence.shadow_version, paths)
    files.write_text(paths.monitor_report, drift.html)
    summary["retraining"] = open_retraining(params, window, policy, breaches, now) if breaches and retrain else None
    files.write_json(paths.monitor, summary)
    _log_run(names.experiment, served, summary, paths)
    for path in (paths.monitor_metrics, textfile):
        if path:
            write_gauges(path, summary)
    if push_gateway:
        push_gauges(push_gateway, summary)
    _say(summary, paths)
    return summary


def shadow_evidence(
    model: str,
    served: tracking.ModelVersion,
    window: pd.DataFrame,
    shadows: pd.DataFrame,
    labels: pd.DataFrame | None,
    spec: DataSpec,
    now: dt.datetime,
) -> shadowing.ShadowEvidence | None:
    """The `staging` version's shadow rows against the served rows of ``served`` (production) in the
    window; None when the window has no shadow rows of the staging version (or none pair)."""
    if shadows.empty:
        return None
    staging = tracking.version_by_alias(model, CANDIDATE_ALIAS)
    if staging is None or staging.version == served.version:
        console.say(
            STAGE,
            f"shadow rows in the window, but no other version than v{served.version} holds "
            f"'{CANDIDATE_ALIAS}': not compared",
        )
        return None
    return shadowing.compare(
        window[window["model_version"].astype(str) == str(served.version)],
        shadows[shadows["model_version"].astype(str) == str(staging.version)],
        labels,
        spec.learning_task,
        spec.metric,
        spec.target,
        served_version=served.version,
        shadow_version=staging.version,
        now=now,
        prefix=plog.OUTPUT_PREFIX,
    )


def shadow_report_path(paths) -> Path:
    return Path(paths.monitor).parent / SHADOW_REPORT


def shadow_markdown(
    model: str, evidence: shadowing.ShadowEvidence, rule: shadowing.ShadowRule, reasons: list[str]
) -> str:
    """shadow.md: the live evidence and the verdict of params.yaml's `gate.shadow`, for the promotion
    pull request."""
    e = evidence

    def value(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.4f}"

    if e.agreement is None:
        agreement = "not measured (cluster numbers are not comparable across models)"
    else:
        agreement = f"{e.agreement:.1%} of paired rows"
    interval = "" if e.interval is None else f", 95% paired-bootstrap CI [{e.interval[0]:+.4f}, {e.interval[1]:+.4f}]"
    change = (
        "not measured (no labelled paired rows, or the metric is undefined on them)"
        if e.change is None
        else (f"{e.change:+.4f}{interval}")
    )
    lines = [
        f"## Live shadow evidence: {model} v{e.shadow_version} vs production v{e.served_version}",
        "",
        f"Measured by `mlgate monitor` at {e.generated_at} on the prediction log from {e.window_from} to "
        f"{e.window_to}: v{e.shadow_version} (`{CANDIDATE_ALIAS}`) scored the requests v{e.served_version} "
        f"(`production`) answered, off the request path.",
        "",
        f"| | production v{e.served_version} | shadow v{e.shadow_version} |",
        "| --- | ---: | ---: |",
        f"| live {e.metric} | {value(e.served_metric)} | {value(e.shadow_metric)} |",
        "",
        f"- Paired rows (same request and row): {e.paired_rows:,}; with a label: {e.labelled_rows:,}",
        f"- Agreement: {agreement}",
        f"- Change in {e.metric} (shadow over production, positive is better): {change}",
        "",
        f"Rule `gate.shadow` ({'required by' if rule.required else 'not required by'} `mlgate promote`): "
        f"{rule.describe()}.",
        "",
        *shadowing.verdict_lines(reasons),
        "",
    ]
    return "\n".join(lines)


def _log_run(experiment: str, served, summary: dict[str, Any], paths) -> None:
    closed = tracking.close_dead_runs(experiment)
    if closed:
        console.say(STAGE, tracking.closed_summary(closed))
    values = {
        "monitor/rows": summary["rows"],
        "monitor/drift_share": summary["drift"]["drift_share"],
        "monitor/breached": float(bool(summary["breaches"])),
    }
    if summary["decay"] is not None:
        values |= {"monitor/live_metric": summary["decay"]["live"], "monitor/metric_change": summary["decay"]["change"]}
    shadow = summary.get("shadow")
    if shadow is not None:
        values |= {
            f"monitor/shadow_{name}": shadow[key]
            for name, key in (("rows", "paired_rows"), ("agreement", "agreement"), ("metric_change", "change"))
            if shadow[key] is not None
        }
    with tracking.stage_run(
        experiment,
        STAGE,
        {
            "mlgate.stage": STAGE,
            "mlgate.served_version": str(served.version),
            "mlgate.served_run_id": served.run_id or "",
        },
    ) as run_id:
        tracking.log(run_id, metrics=values)
        for path in (paths.monitor, paths.monitor_report):
            tracking.log_artifact(run_id, path, STAGE)
        if shadow is not None:
            tracking.log_artifact(run_id, shadow_report_path(paths), STAGE)


def _say(summary: dict[str, Any], paths) -> None:
    drift = summary["drift"]
    console.say(
        STAGE,
        f"{summary['model']} v{summary['version']} ({summary['alias']}): {summary['rows']:,} logged rows; "
        f"drift share {drift['drift_share']:.2f} (limit {drift['max_drift_share']:.2f})"
        + (
            ""
            if summary["decay"] is None
            else f"; live {summary['decay']['metric']} {summary['decay']['live']:.4f}"
            f" vs test {summary['decay']['test']:.4f}"
        )
        + f" → {paths.monitor}",
    )
    if not summary["judged"]:
        console.say("", f"  fewer than {summary['policy']['min_rows']} rows: reported, not judged")
    shadow = summary.get("shadow")
    if shadow is not None:
        agreement = "n/a" if shadow["agreement"] is None else f"{shadow['agreement']:.1%}"
        change = "" if shadow["change"] is None else f"; live {shadow['metric']} change {shadow['change']:+.4f}"
        interval = (
            ""
            if shadow["interval"] is None
            else (f" (95% CI [{shadow['interval'][0]:+.4f}, {shadow['interval'][1]:+.4f}])")
        )
        console.say(
            "",
            f"  shadow v{shadow['shadow_version']} vs v{shadow['served_version']}: {shadow['paired_rows']:,} paired "
            f"rows ({shadow['labelled_rows']:,} labelled), agreement {agreement}{change}{interval} "
            f"→ {shadow_report_path(paths)}",
        )
    review = summary.get("shadow_review")
    if review is not None:
        where = "" if review["branch"] is None else f"branch {review['branch']}: "
        console.say("", f"  shadow evidence for review: {where}{review['next']}")
    for breach in summary["breaches"]:
        console.say("", f"  BREACH  {breach}")
    retraining = summary.get("retraining")
    if retraining:
        console.say("", f"  retraining branch {retraining['branch']}: gate {retraining['gate']}; {retraining['next']}")


# --- retraining ---------------------------------------------------------------------------------


def _git(args: list[str], cwd: Path) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise StageError(f"{shlex.join(['git', *args])}: {result.stderr.strip()}")
    return result.stdout.strip()


@dataclass(frozen=True)
class PullRequest:
    """The retraining branch's pull request, as argument lists: branch names and titles are data,
    never shell code (a branch may be named `x$(cmd)`, a project `it's`)."""

    branch: str
    base: str | None  # None (a detached HEAD): gh's default, the repository's default branch
    title: str
    body_path: str  # the file in ``branch`` that becomes the body

    def push(self) -> list[str]:
        return ["git", "push", "-u", "origin", self.branch]

    def body(self) -> list[str]:
        return ["git", "show", f"{self.branch}:{self.body_path}"]

    def create(self) -> list[str]:
        base = ["--base", self.base] if self.base is not None else []
        return ["gh", "pr", "create", *base, "--head", self.branch, "--title", self.title, "--body-file", "-"]

    def command(self) -> str:
        """The same steps as one line for a person to paste into a POSIX shell, every word quoted."""
        return f"{shlex.join(self.push())} && {shlex.join(self.body())} | {shlex.join(self.create())}"


@dataclass(frozen=True)
class EvidenceComment:
    """shadow.md as a comment on the pull request that promotes the version it judges, edited in place
    on each later run (one comment that stays current, not one per run). Arguments, never shell code."""

    branch: str
    body_path: str

    def post(self) -> list[str]:
        return ["gh", "pr", "comment", self.branch, "--edit-last", "--create-if-none", "--body-file", self.body_path]

    def command(self) -> str:
        return shlex.join(self.post())


def review_branch(root: Path, gate_path: str, version: int, newest: int = 50) -> str | None:
    """The branch under review for ``version``: of the ``newest`` most recently committed branches (local,
    then origin's) other than the one checked out, the first whose committed gate report names
    ``version`` as its candidate. None when no branch does (the pull request is merged, or the version
    was promoted another way)."""
    checked_out = _git(["rev-parse", "--abbrev-ref", "HEAD"], root)
    listed = (
        _git(
            ["for-each-ref", "--sort=-committerdate", f"--count={newest}", "--format=%(refname)", "refs/heads"], root
        ).splitlines()
        + _git(
            [
                "for-each-ref",
                "--sort=-committerdate",
                f"--count={newest}",
                "--format=%(refname)",
                "refs/remotes/origin",
            ],
            root,
        ).splitlines()
    )
    for ref in listed:
        name = ref.removeprefix("refs/heads/").removeprefix("refs/remotes/origin/")
        if name in (checked_out, "HEAD"):
            continue
        shown = subprocess.run(["git", "show", f"{ref}:{gate_path}"], cwd=root, capture_output=True, text=True)
        try:
            candidate = json.loads(shown.stdout)["candidate"]["version"] if shown.returncode == 0 else None
        except (ValueError, KeyError, TypeError):
            continue
        if candidate is not None and int(candidate) == int(version):
            return name
    return None


def share_evidence(version: int, paths) -> dict[str, Any]:
    """Put shadow.md on the promotion pull request of ``version``, where the promotion is reviewed:
    with GH_TOKEN and gh, as a comment kept current; otherwise the command that does it."""
    try:
        root = Path(_git(["rev-parse", "--show-toplevel"], Path.cwd()))
    except (StageError, OSError):  # not a checkout, or no git
        return {"branch": None, "commented": None, "next": "not a git checkout: no pull request to put it on"}
    branch = review_branch(root, str(paths.gate), version)
    if branch is None:
        return {"branch": None, "commented": None, "next": f"no branch under review names v{version} as its candidate"}
    comment = EvidenceComment(branch, str(shadow_report_path(paths)))
    commented = None
    if os.environ.get("GH_TOKEN") and shutil.which("gh"):
        quiet = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
        try:
            posted = subprocess.run(comment.post(), cwd=root, env=quiet, capture_output=True, text=True, timeout=120)
            commented = posted.returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            commented = False
    return {
        "branch": branch,
        "commented": commented,
        "next": "commented on its pull request" if commented else f"put it on the pull request: {comment.command()}",
    }


def open_pull_request(request: PullRequest, root: Path) -> bool:
    """Push the branch and open its pull request with gh; False (and nothing raised) if either fails,
    since the branch is made and the printed command lets a person finish."""
    quiet = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}  # a push that needs a password fails, never waits

    def run(args: list[str], body: str = "") -> subprocess.CompletedProcess:
        return subprocess.run(args, cwd=root, input=body, env=quiet, capture_output=True, text=True, timeout=300)

    try:
        if run(request.push()).returncode != 0:
            return False
        body = run(request.body())
        return body.returncode == 0 and run(request.create(), body.stdout).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _nested(overrides: dict[str, Any]) -> dict[str, Any]:
    """{"search.n_trials": 5} as {"search": {"n_trials": 5}}."""
    tree: dict[str, Any] = {}
    for dotted, value in overrides.items():
        node = tree
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def open_retraining(
    params: dict[str, Any], window: pd.DataFrame, policy: MonitorPolicy, breaches: list[str], now: dt.datetime
) -> dict[str, Any]:
    """A branch `retrain/<time>` where the window is the `current` batch (and, with labels, extends
    the training file), with `dvc repro` run and its verdict committed (``retraining_branch``)."""
    spec = project.data_spec(params)
    stamp = now.strftime("%Y%m%dT%H%M%S")

    def prepare(worktree: Path) -> str:
        overrides = dict(policy.retrain_overrides)
        batch = f"{project.paths(params).source_dir}/monitor_{stamp}.parquet"
        inputs = window.drop(columns=[c for c in window.columns if c in LOG_COLUMNS or c.startswith("output_")])
        if not spec.learning_task.supervised and spec.source.kind == "file":  # no labels needed: the rows extend it
            overrides |= _extend_training(worktree, spec, inputs, stamp)
        elif policy.labels is not None:
            labels = read_labels(policy.labels, spec.target)
            inputs[spec.target] = window.merge(labels, on=["request_id", "row"], how="left")[spec.target].to_numpy()
            labelled = inputs[inputs[spec.target].notna()]
            if spec.source.kind == "file" and len(labelled):
                overrides |= _extend_training(worktree, spec, labelled, stamp)
        (worktree / batch).parent.mkdir(parents=True, exist_ok=True)
        inputs.to_parquet(worktree / batch, index=False)
        overrides["data.current_path"] = batch
        with (worktree / "conf/config.yaml").open("a") as handle:
            handle.write(f"\n# Retraining on monitored traffic ({stamp}): {'; '.join(breaches)}\n")
            handle.write(yaml.safe_dump(_nested(overrides), sort_keys=False))
        return f"Retrain on monitored traffic {stamp}: {'; '.join(breaches)}"

    return retraining_branch(
        params, f"retrain/{stamp}", f"Retrain {spec.name} on monitored traffic ({stamp})", stamp, prepare
    )


def retraining_branch(
    params: dict[str, Any], branch: str, title: str, stamp: str, prepare: Callable[[Path], str]
) -> dict[str, Any]:
    """A branch for review, built in a temporary git worktree so the working tree is untouched:
    ``prepare(worktree)`` changes the project there and returns the commit message; then `mlgate
    params`, a commit, `dvc repro`, and the gate's verdict committed. A failure leaves no half-made
    branch. The pull request is opened when GH_TOKEN and gh are there, else its command is returned."""
    root = Path(_git(["rev-parse", "--show-toplevel"], Path.cwd()))
    current = _git(["rev-parse", "--abbrev-ref", "HEAD"], root)
    base = None if current == "HEAD" else current  # "HEAD": detached, no branch to merge into
    worktree = Path(tempfile.mkdtemp(prefix="mlgate-retrain-")) / "repo"
    _git(["worktree", "add", "-q", "-b", branch, str(worktree)], root)
    paths = project.paths(params)
    commit = ["-c", "user.name=mlgate", "-c", "user.email=mlgate@localhost", "commit", "-qm"]
    try:
        message = prepare(worktree)
        env = {**os.environ, "MLFLOW_TRACKING_URI": tracking.tracking_uri()}  # the project's store, not the worktree's
        mlgate = shutil.which("mlgate") or "mlgate"
        subprocess.run([mlgate, "params"], cwd=worktree, env=env, check=True, capture_output=True)
        _git(["add", "-A"], worktree)
        _git([*commit, message], worktree)
        repro = subprocess.run(
            [shutil.which("dvc") or "dvc", "repro"], cwd=worktree, env=env, capture_output=True, text=True
        )
        if repro.returncode != 0:
            raise StageError(f"dvc repro on {branch} failed:\n{repro.stdout[-2000:]}\n{repro.stderr[-2000:]}")
        gate = files.read_json(worktree / paths.gate)
        _git(["add", "dvc.lock", paths.gate, paths.promotion], worktree)
        _git([*commit, f"Gate verdict for the retraining on {stamp}"], worktree)
    except BaseException:
        subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=root, capture_output=True)
        subprocess.run(["git", "branch", "-D", branch], cwd=root, capture_output=True)  # no half-made branch
        raise
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=root, capture_output=True)
        shutil.rmtree(worktree.parent, ignore_errors=True)
    request = PullRequest(branch, base, title, paths.promotion)
    opened = open_pull_request(request, root) if os.environ.get("GH_TOKEN") and shutil.which("gh") else None
    return {
        "branch": branch,
        "base": base,
        "gate": "PASSED" if gate["passed"] else "REJECTED",
        "candidate_version": gate["candidate"]["version"],
        "pull_request_opened": opened,
        "next": "pull request opened" if opened else f"open the pull request: {request.command()}",
    }


def _extend_training(worktree: Path, spec: DataSpec, labelled: pd.DataFrame, stamp: str) -> dict[str, Any]:
    """The training file plus the labelled live rows, as a new source file in the worktree."""
    from mlgate.adapters import sources

    original = sources.read(spec.source)
    columns = [c for c in original.columns if c in labelled.columns]
    extended = pd.concat([original, labelled[columns]], ignore_index=True)
    path = f"{Path(spec.source.path).parent}/{Path(spec.source.path).name.split('.')[0]}_plus_{stamp}.parquet"
    extended.to_parquet(worktree / path, index=False)
    return {"data.source.path": path, "data.source.format": "parquet"}
