"""The model card of a registered version, and the Markdown tables it shares with the promotion report.

Rendered from the gate's report (what reports/gate.json holds) alone, so it is pure: what the model
is for, what it was trained on, how it scored overall and per slice, how it explains itself, where it
is weak, and the gate's verdict.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from mlgate.gating.evidence import SliceRow
from mlgate.gating.policy import Check
from mlgate.gating.report import BatchComparison, DataSummary, GainInterval, GateReport, Importance, Interval
from mlgate.registry import CANDIDATE_ALIAS

MODEL_CARD_TAG = "mlgate.model_card"  # the version tag that points at the card


def number(value: float | None, signed: bool = False) -> str:
    if value is None:
        return ""
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def verdict_mark(check: Check) -> str:
    """A check's verdict as the tables show it."""
    return "**FAIL**" if check.verdict == "fail" else check.verdict


def _versus_table(
    candidate: str,
    production: str | None,
    scores: dict[str, float],
    theirs: dict[str, float] | None,
    interval: Interval | GainInterval | None,
    metric: str | None,
) -> list[str]:
    """Metrics of the candidate; beside production's, with the difference and, on ``metric``, the
    95% interval of the gain."""
    if theirs is None:
        return [
            f"| metric | {candidate} |",
            "| --- | ---: |",
            *[f"| {name} | {value:.4f} |" for name, value in scores.items()],
        ]
    lines = [
        f"| metric | {candidate} | {production} | difference | 95% CI of the gain |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, value in scores.items():
        ci = f"[{interval.low:+.4f}, {interval.high:+.4f}]" if interval and name == metric else ""
        lines.append(f"| {name} | {value:.4f} | {theirs[name]:.4f} | {value - theirs[name]:+.4f} | {ci} |")
    return lines


def left_out_note(block: BatchComparison, production: str) -> list[str]:
    """Why the batch's rows compared are fewer than its rows: those ``production`` trained on (a retraining
    splits grown data anew) are left out, or cannot be told apart; nothing when none was."""
    if block.champion is None or block.champion_trained_rows == 0:
        return []
    if block.champion_trained_rows is None:
        return [
            "",
            f"{production}'s training rows cannot be told apart here (its train run predates mlgate logging them, "
            "or these rows lack a column it trained on): some of them may be rows it trained on, which favours it.",
        ]
    return [
        "",
        f"{production} trained on {block.champion_trained_rows:,} of these rows (a new split of grown data mixes "
        f"them in): both are compared on the other {block.rows:,}.",
    ]


def metrics_table(report: GateReport) -> list[str]:
    """Test metrics of the candidate, beside production's with the difference and the gain's 95%
    interval when there is a production model that could be scored (both on the test rows production
    did not train on)."""
    cand, champ = report.candidate, report.champion
    if not (champ and champ.metrics):
        return _versus_table(f"candidate v{cand.version}", None, cand.metrics, None, None, None) + [
            "",
            "No production model to compare with." if not champ else f"Production: {champ.error}",
        ]
    interval, block = report.gain_interval, report.comparison.test
    left_out = bool(block.champion_trained_rows) and block.candidate is not None
    lines = _versus_table(
        f"candidate v{cand.version}",
        f"production v{champ.version}",
        block.candidate.metrics if left_out else cand.metrics,
        champ.metrics,
        interval,
        interval and interval.metric,
    )
    lines += left_out_note(block, f"Production v{champ.version}")
    if interval:
        lines += [
            "",
            f"The interval is a paired bootstrap over test rows of the {interval.metric} gain "
            f"(positive: the candidate is better).",
        ]
    return lines


def current_batch_table(report: GateReport) -> list[str]:
    """The candidate, and production, on the labelled rows of the current batch, or why they were
    not scored there."""
    block = report.comparison.current
    where = f"Current batch ({block.source}, {block.batch_rows:,} rows)"
    if block.candidate is None:
        return [f"{where}: not scored, {block.skipped}."]
    lines = [f"{where}: {block.rows:,} labelled rows, sha256 `{block.content_hash[:12]}`.", ""]
    champ = block.champion
    lines += _versus_table(
        f"candidate v{report.candidate.version}",
        champ and f"production v{report.champion.version}",
        block.candidate.metrics,
        champ and champ.metrics,
        block.gain_interval,
        block.metric,
    )
    if champ is None:
        return lines + ["", f"Production not compared: {block.skipped}."]
    return lines + [
        *left_out_note(block, f"Production v{report.champion.version}"),
        "",
        f"The interval is a paired bootstrap over these rows of the {block.metric} gain "
        f"(positive: the candidate is better).",
    ]


def _slice_rows(rows: Sequence[SliceRow], report: GateReport, verdicts: bool) -> list[str]:
    champ = report.champion
    production = f"production v{champ.version}" if champ else "production"
    header = f"| column | value | rows | candidate v{report.candidate.version} | {production} | gain |"
    lines = [
        header + (" verdict |" if verdicts else ""),
        "| --- | --- | ---: | ---: | ---: | ---: |" + (" --- |" if verdicts else ""),
    ]
    for row in rows:
        line = (
            f"| {row.column} | {row.value} | {row.rows:,} | {number(row.candidate)} | "
            f"{number(row.champion)} | {number(row.gain, signed=True)} |"
        )
        if verdicts:
            line += f" {'**FAIL**' if row.verdict == 'fail' else row.verdict} |"
        lines.append(line)
    return lines


def slices_table(report: GateReport) -> list[str]:
    """The slice rule's table (test metric per value of each segment column), then the same values
    on the current batch's labelled rows (reported, not judged); empty without a slice rule."""
    judged = report.judged_slices()
    if judged is None:
        return []
    lines = [
        f"Test {report.metric} per value of each segment column (gain: positive is better than production).",
        "",
        *_slice_rows(judged, report, verdicts=True),
    ]
    block = report.comparison.current
    if block.slices:
        lines += [
            "",
            f"The same on the current batch's {block.rows:,} labelled rows (reported, not judged).",
            "",
            *_slice_rows(block.slices, report, verdicts=False),
        ]
    return lines


def fairness_section(report: GateReport, document: str, with_plots: bool = True) -> list[str]:
    """Per sensitive column: the candidate's rates per group, then each disparity with its 95% interval,
    production's on the same rows and the verdict; empty without a fairness rule."""
    found = report.judged_fairness()
    if found is None:
        return []
    lines = [
        "Decisions per group of each sensitive column on test (selection rate: share predicted "
        f"positive; TPR, FPR: true and false positive rates; {report.metric} within the group). Groups "
        "with too few rows are reported, not judged.",
        "",
    ]
    for column in found:
        lines += [
            f"**{column.column}**" + ("" if column.judged else " (reported, not judged)"),
            "",
            f"| group | rows | judged | selection rate | TPR | FPR | {report.metric} |",
            "| --- | ---: | --- | ---: | ---: | ---: | ---: |",
        ]
        lines += [
            f"| {g.group} | {g.rows:,} | {'yes' if g.judged else 'no'} | {g.selection_rate:.4f} | "
            f"{number(g.true_positive_rate)} | {number(g.false_positive_rate)} | {number(g.metric)} |"
            for g in column.groups
        ]
        lines += [
            "",
            "| disparity | candidate | 95% CI | production | limit | verdict |",
            "| --- | ---: | --- | ---: | ---: | --- |",
        ]
        lines += [
            f"| {d.name.replace('_', ' ')} | {number(d.candidate)} | "
            f"{'' if d.interval is None else f'[{d.interval[0]:.4f}, {d.interval[1]:.4f}]'} | "
            f"{number(d.champion)} | {'' if d.limit is None else d.limit} | {d.verdict} |"
            for d in column.disparities
        ]
        lines.append("")
    drawn = tuple(f"fairness_{c.column}.png" for c in found) if with_plots else ()
    plots = [plot for plot in report.plots if plot.path.endswith(drawn)] if drawn else []
    lines += [image(plot.path, plot.title, document) for plot in plots]
    return lines


def link(path: str, document: str) -> str:
    """``path`` (relative to the project) as a relative link from ``document``."""
    return Path(os.path.relpath(path, Path(document).parent)).as_posix()


def image(path: str, title: str, document: str) -> str:
    return f"![{title}]({link(path, document)})"


def _intended_use(data: DataSummary, name: str) -> str:
    output = data.learning_task.describe_output(data.target, data.threshold)
    return (
        f"Predicts {output} for one row of the `{data.name}` data contract ({data.features} feature "
        f"columns). Chosen and judged on test {data.metric}. Once promoted it is served as "
        f"`models:/{name}@production` (`mlgate serve`, `mlgate score`)."
    )


def _limitations(report: GateReport) -> list[str]:
    lineage, drift, measured = report.lineage, report.drift, report.measurements
    current = report.comparison.current
    scored = (
        f" and on the {current.rows:,} labelled rows of the current batch ({lineage.current_source}); beyond those,"
        if current.candidate
        else ";"
    )
    notes = [
        f"Scored on one held-out test set of {report.test_rows:,} rows from the same snapshot as the "
        f"training rows{scored} how it does on later data is estimated only by the drift checks.",
        "Rows outside the data contract (missing columns, out-of-range values, unseen categories) are "
        "refused or flagged by the model's input guard; it was not evaluated on them.",
        "Feature importance is association with the model's output, not a causal effect.",
    ]
    if drift.drifted_columns:
        notes.append(
            f"The current batch ({lineage.current_source}) already differs from training data in: "
            f"{', '.join(drift.drifted_columns[:10])}."
        )
    if measured.calibration_error is not None:
        notes.append(
            f"Predicted probabilities differ from the observed rates by {measured.calibration_error:.3f} on "
            f"average (expected calibration error on test, 10 bins)."
        )
    unjudged = [
        f"{r.column}={r.value} ({r.rows} rows)"
        for r in report.judged_slices() or ()
        if r.verdict.startswith("not judged")
    ]
    if unjudged:
        notes.append(f"Slices reported but not judged (too few test rows, or one class only): {', '.join(unjudged)}.")
    if report.data.learning_task.limitation:
        notes.append(report.data.learning_task.limitation)
    if not report.champion:
        notes.append("Not compared with a production model (there was none).")
    return [f"- {note}" for note in notes]


def _importance(importance: Importance, card: str) -> list[str]:
    """What evaluate found: its table in paths.plots, its plot on the train run and beside the card."""
    table = importance.table
    if importance.method is None:
        return [f"Not available: evaluate wrote no importance table (`{table}`).", ""]
    where = f"; table: [`{table}`]({link(table, card)})" if table else ""
    lines = [f"Global importance: {importance.method}; plot on the train run: `{importance.plot}`{where}.", ""]
    if importance.image:
        lines += [image(importance.image, "Feature importance", card), ""]
    return lines + [
        "| feature | importance |",
        "| --- | ---: |",
        *[f"| {row.feature} | {row.importance:.4f} |" for row in importance.top],
    ]


PROFILE_COLUMNS = 8  # numeric means shown per cluster; the CSV keeps them all


def clusters_section(report: GateReport, document: str) -> list[str]:
    """A clustering model's clusters: its stability, the profile table and the projection and
    silhouette plots (links relative to ``document``); nothing for another task."""
    clusters = report.clusters
    if clusters is None:
        return []
    stable = clusters.stability
    lines = [
        "Stability: "
        + (
            "not measured."
            if stable is None
            else f"mean adjusted Rand index {stable['mean']:.3f} ± {stable['std']:.3f} (lowest {stable['min']:.3f}) "
            f"between the clusters and {stable['resamples']} refits on bootstrap resamples of the training rows."
        ),
        "",
        f"Profile on test (`{clusters.table}`; the last row is all test rows):",
        "",
    ]
    header = list(clusters.rows[0]) if clusters.rows else []
    means = [c for c in header if c.startswith("mean_")][:PROFILE_COLUMNS]
    tops = [c for c in header if c.startswith("top_")]
    shown = ["cluster", "rows", "share", *means, *tops]
    lines += [
        "| " + " | ".join(c.removeprefix("mean_").removeprefix("top_") for c in shown) + " |",
        "| " + " | ".join("---" if c in ("cluster", *tops) else "---:" for c in shown) + " |",
    ]
    for row in clusters.rows:
        cells = [str(row["cluster"]), f"{int(row['rows']):,}", f"{row['share']:.1%}"]
        cells += [f"{row[c]:.4g}" for c in means] + [str(row[c]) for c in tops]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if clusters.images:
        lines += ["\n\n".join(image(plot.path, plot.title, document) for plot in clusters.images), ""]
    return lines


def outcome(report: GateReport) -> tuple[str, str]:
    """The gate's verdict in a word, and what it means for the candidate alias."""
    if report.passed:
        return "PASSED", f"granted `{CANDIDATE_ALIAS}`"
    return "REJECTED", f"not granted `{CANDIDATE_ALIAS}`"


def verdict_header(report: GateReport, title: str, verdict: str) -> list[str]:
    """How the card and the promotion report open: the title naming the candidate version, the
    ``verdict`` sentence, and a rejection's reasons."""
    cand = report.candidate
    lines = [f"# {title}: `{cand.name}` version {cand.version}", "", verdict, ""]
    if not report.passed:
        lines += ["Reasons:", *[f"- {r}" for r in report.reasons], ""]
    return lines


HANDLED = {
    "drop": "dropped where rows enter (ingest, serving, scoring): not a feature, never written",
    "hash": "replaced by its keyed hash (HMAC-SHA256) where rows enter; used and logged hashed only",
    "keep": "kept in the clear",
}


def personal_data_section(data: DataSummary) -> list[str]:
    """Each declared personal column and what was done with it (data.contract.columns `pii`)."""
    if not data.personal:
        return [
            "No column is declared as personal data (`pii` in data.contract.columns); `validate` names "
            "columns that look personal and are not declared."
        ]
    rows = [
        f"| {c.column} | {c.kind} | {c.handling}: {HANDLED[c.handling]}{f' ({c.reason})' if c.reason else ''} |"
        for c in data.personal
    ]
    key = [f"The hashing key is read from `${data.pii_key_env}` and is written nowhere."] if data.pii_key_env else []
    return ["| column | kind | handling |", "| --- | --- | --- |", *rows, *([""] + key if key else [])]


def render(report: GateReport) -> str:
    """The card as Markdown."""
    cand, data, lineage, training = report.candidate, report.data, report.lineage, report.training
    measured, drift = report.measurements, report.drift
    word, grant = outcome(report)
    lines = verdict_header(
        report,
        "Model card",
        f"Gate verdict: **{word}: {grant}** ({report.generated_at}, commit `{report.git_commit[:12]}`).",
    )
    lines += ["## Intended use", "", _intended_use(data, cand.name), ""]
    lines += [
        "## Data lineage",
        "",
        "| | |",
        "| --- | --- |",
        f"| source | `{lineage.source}` ({lineage.kind}) |",
        f"| snapshot | {lineage.rows:,} rows × {lineage.columns} columns, sha256 `{lineage.content_hash}` |",
        f"| DVC md5 of the snapshot | `{lineage.dvc_md5 or 'not recorded'}` |",
        f"| rows used | train {lineage.train_rows:,} · test {report.test_rows:,} (sha256 "
        f"`{report.test_hash[:12]}`) · current {lineage.current_rows:,} ({lineage.current_source}) |",
        f"| trained | {lineage.trained_at} (MLflow run {cand.run_link}) |",
        "",
    ]
    lines += ["## Personal data", "", *personal_data_section(data), ""]
    lines += [
        "## Training",
        "",
        f"Family `{training.family}`, seed {training.seed}, fitted in "
        f"{training.fit_seconds:.1f} s; model size {training.model_size_bytes / 1e6:.2f} MB. "
        f"Tuning run: {cand.tune_run_link}.",
        "",
        "| parameter | value |",
        "| --- | --- |",
    ]
    lines += [f"| {name} | {value} |" for name, value in training.params.items()]
    lines += ["", "## Test metrics", "", *metrics_table(report), ""]
    serving = [f"median single-row latency {measured.latency_ms:.1f} ms"] if measured.latency_ms is not None else []
    if measured.calibration_error is not None:
        serving = [
            f"expected calibration error {measured.calibration_error:.4f}",
            f"Brier score {measured.brier:.4f}",
            *serving,
        ]
    if serving:
        lines += [f"Also on test: {'; '.join(serving)}.", ""]
    lines += ["## Current batch", "", *current_batch_table(report), ""]
    if slices := slices_table(report):
        lines += ["## Slices", "", *slices, ""]
    if fair := fairness_section(report, report.model_card.path):
        lines += ["## Fairness", "", *fair, ""]
    if report.clusters is not None:
        lines += ["## Clusters", "", *clusters_section(report, report.model_card.path)]
    else:
        lines += ["## Feature importance", "", *_importance(report.importance, report.model_card.path)]
    psi = [f"predictions PSI {measured.prediction_drift:.4f}"] if measured.prediction_drift is not None else []
    psi += [f"target PSI {measured.target_drift:.4f}"] if measured.target_drift is not None else []
    lines += [
        "",
        "## Drift at training time",
        "",
        f"Current batch ({lineage.current_source}, {drift.current_rows:,} rows) vs training rows: "
        f"{drift.drifted_count} of {drift.columns_checked} columns drifted (share {drift.drift_share:.2f}, "
        f"limit {drift.max_drift_share:.2f}; drifted: {', '.join(drift.drifted_columns[:10]) or 'none'})"
        + (f"; {', '.join(psi)}." if psi else "."),
        "",
    ]
    lines += ["## Limitations", "", *_limitations(report), ""]
    lines += ["## Gate checks", "", "| check | verdict | detail |", "| --- | --- | --- |"]
    lines += [f"| {c.name} | {verdict_mark(c)} | {c.detail} |" for c in report.checks]
    lines += ["", f"Registered version: {cand.version_link}", ""]
    return "\n".join(lines)
