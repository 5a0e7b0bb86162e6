"""The promotion report (paths.promotion): the gate's verdict as Markdown for a pull request, rendered
from the gate's report alone."""

from __future__ import annotations

from typing import Any

from mlgate.gating.report import GateReport
from mlgate.reports.model_card import (
    MODEL_CARD_TAG,
    clusters_section,
    current_batch_table,
    fairness_section,
    image,
    metrics_table,
    outcome,
    slices_table,
    verdict_header,
    verdict_mark,
)


def _cell(value: Any) -> str:
    """A checks-table cell: a per-column mapping reads `column value, ...`."""
    if isinstance(value, dict):
        return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in value.items())
    return str(value)


def markdown(report: GateReport) -> str:
    """The pull-request summary: verdict, test metrics, current batch, checks, slices, drift, plots,
    model card, links."""
    cand, champ = report.candidate, report.champion
    word, grant = outcome(report)
    mark = "✅" if report.passed else "❌"
    lines = verdict_header(
        report,
        "Model promotion",
        f"{mark} **{word}**: {grant}. Generated {report.generated_at} at commit `{report.git_commit[:12]}`.",
    )
    lines += [
        "## Test metrics",
        "",
        f"Same test set for both ({report.test_rows:,} rows, sha256 `{report.test_hash[:12]}`).",
        "",
        *metrics_table(report),
    ]
    lines += ["", "## Current batch", "", *current_batch_table(report)]
    lines += ["", "## Checks", "", "| check | verdict | observed | limit | detail |", "| --- | --- | --- | --- | --- |"]
    lines += [
        f"| {c.name} | {verdict_mark(c)} | {_cell(c.observed)} | {_cell(c.limit)} | {c.detail} |" for c in report.checks
    ]
    if slices := slices_table(report):
        lines += ["", "## Slices", "", *slices]
    if fair := fairness_section(report, report.paths.promotion, with_plots=False):
        lines += ["", "## Fairness", "", *fair]
    if clusters := clusters_section(report, report.paths.promotion):
        lines += ["", "## Clusters", "", *clusters]
    drift = report.drift
    lines += [
        "",
        "## Drift (current batch vs training data)",
        "",
        f"{drift.drifted_count} of {drift.columns_checked} columns drifted (share {drift.drift_share:.2f}, "
        f"limit {drift.max_drift_share:.2f}); {drift.current_rows:,} current vs "
        f"{drift.reference_rows:,} reference rows. "
        f"Full report: `{report.paths.drift_report}`.",
        "",
    ]
    lines += ["| column | method | score | threshold | drifted |", "| --- | --- | ---: | ---: | --- |"]
    lines += [
        f"| {c} | {v.method} | {v.score:.4f} | {v.threshold} | {'yes' if v.drifted else 'no'} |"
        for c, v in drift.most_drifted(5)
    ]
    if report.plots:
        images = [image(plot.path, plot.title, report.paths.promotion) for plot in report.plots]
        lines += ["", "## Plots", "", "\n\n".join(images)]
    card = report.model_card
    lines += [
        "",
        "## Model card",
        "",
        f"[`{card.path}`]({card.link}): intended use, data lineage, training configuration, test and slice "
        f"metrics, feature importance, drift, limitations. Attached to version {cand.version} as `{card.uri}` "
        f"(tag `{MODEL_CARD_TAG}`).",
    ]
    lines += [
        "",
        "## Links",
        "",
        f"- Candidate run: {cand.run_link}",
        f"- Candidate version: {cand.version_link}",
    ]
    if champ:
        lines.append(f"- Production version: {champ.version_link}")
    lines += [
        f"- Model family: `{cand.family}`; tuning run: {cand.tune_run_link}",
        "",
        f"Promote after review: `mlgate promote --alias production --version {cand.version}`",
        "",
    ]
    if report.policy.shadow.required:
        lines[-1:-1] = [
            f"Live shadow evidence required (`gate.shadow`): `production` moves to v{cand.version} only after it "
            f"has scored production's traffic in shadow (`mlgate serve --shadow staging`, then `mlgate monitor`) "
            f"with {report.policy.shadow.describe()}.",
            "",
        ]
    return "\n".join(lines)
