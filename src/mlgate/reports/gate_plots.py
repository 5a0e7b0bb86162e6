"""The gate's PNG plots, drawn from its report (and the test-set outputs of both models): what
reports/promotion.md embeds so a reviewer sees the comparison, the drift and the slices at a glance."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlgate.gating.evidence import Output
from mlgate.gating.fairness import FairnessEvidence
from mlgate.gating.report import GateReport
from mlgate.modelling import metrics
from mlgate.modelling.task import Task
from mlgate.records import DriftSummary

PLOT_DPI = 90
SEVERITY_CAP = 1e6


def _figure(panels: int = 1, width: float = 5.0, height: float = 3.2):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt.subplots(1, panels, figsize=(width * panels, height), dpi=PLOT_DPI, squeeze=False)


def _save(fig, path: Path) -> None:
    from matplotlib import pyplot as plt

    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})  # no version stamp: a rerun with the same numbers is the same file
    plt.close(fig)


def _metric_plot(report: GateReport, path: Path) -> str:
    """The gate metric of each model with its 95% bootstrap interval, on test and on the labelled
    current rows; beside it, the paired interval of the gain against the allowed loss."""
    metric, policy = report.metric, report.policy
    batches = {"test": report.comparison.test, "current": report.comparison.current}
    scored = {name: block for name, block in batches.items() if block.candidate}
    compared = {name: block for name, block in scored.items() if block.champion}
    fig, axes = _figure(2 if compared else 1)
    ax = axes[0][0]
    versions = {
        "candidate": f"candidate v{report.candidate.version}",
        "champion": f"production v{report.champion and report.champion.version}",
    }
    shift = 0.2 if compared else 0.0
    for offset, side, color in ((-shift, "champion", "tab:grey"), (shift, "candidate", "tab:blue")):
        shown = [(x, getattr(block, side)) for x, block in enumerate(scored.values()) if getattr(block, side)]
        if shown:
            value = np.array([model.metrics[metric] for _, model in shown])
            low, high = (np.array([getattr(model.interval, end) for _, model in shown]) for end in ("low", "high"))
            ax.bar(
                [x + offset for x, _ in shown],
                value,
                0.38,
                yerr=[value - low, high - value],
                capsize=4,
                color=color,
                label=versions[side],
            )
    sides = [model for block in scored.values() for model in (block.candidate, block.champion) if model]
    lows, highs = [model.interval.low for model in sides], [model.interval.high for model in sides]
    pad = max(max(highs) - min(lows), 1e-3) * 0.6
    ax.set_ylim(min(lows) - pad, max(highs) + pad)
    ax.set_xticks(range(len(scored)), [f"{name} ({b.rows:,} rows)" for name, b in scored.items()])
    ax.set(ylabel=metric, title=f"{metric}, 95% bootstrap CI")
    ax.legend(fontsize=8)
    if compared:
        ax = axes[0][1]
        limits = {"test": policy.max_regression, "current": policy.current_batch.max_regression}
        label = "allowed loss"
        for x, (name, block) in enumerate(compared.items()):
            gain, interval = block.gain, block.gain_interval
            ax.errorbar(
                [x],
                [gain],
                yerr=[[gain - interval.low], [interval.high - gain]],
                fmt="o",
                capsize=5,
                color="tab:green" if interval.low > 0 else "tab:blue",
            )
            if limits.get(name) is not None:
                ax.hlines(-limits[name], x - 0.3, x + 0.3, colors="tab:red", linestyles="dashed", label=label)
                label = None
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xlim(-0.6, len(compared) - 0.4)
        ax.set_xticks(range(len(compared)), list(compared))
        ax.set(ylabel=f"{metric} gain over production", title="Paired 95% CI of the gain")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    _save(fig, path)
    return f"{metric}: candidate vs production, 95% CI"


def _class_recall(ax, task: Task, y: np.ndarray, outputs: dict[str, Output]) -> str:
    """Each model's recall per class on test."""
    classes = np.unique(y)
    width = 0.8 / len(outputs)
    for i, (label, (prediction, _)) in enumerate(outputs.items()):
        recall = [float(np.mean(prediction[y == k] == k)) for k in classes]
        ax.bar(
            classes + (i - (len(outputs) - 1) / 2) * width,
            recall,
            width,
            label=f"{label} (accuracy {np.mean(prediction == y):.3f})",
        )
    ax.set_xticks(classes, [str(k) for k in classes])
    ax.set(xlabel="class (position in data.classes)", ylabel="recall", ylim=(0, 1.05), title="Recall per class (test)")
    return "Recall per class on test"


def _roc(ax, task: Task, y: np.ndarray, outputs: dict[str, Output]) -> str:
    """Both models' ROC curves on test."""
    for label, (prediction, probability) in outputs.items():
        roc = task.curves(y, prediction, probability)["roc"]
        ax.plot(roc.fpr, roc.tpr, label=f"{label} (AUC {metrics.score('roc_auc', y, prediction, probability):.3f})")
    ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC curve (test)")
    return "ROC curves on test"


def _residuals(ax, task: Task, y: np.ndarray, outputs: dict[str, Output]) -> str:
    """Both models' residuals on test."""
    residuals = {label: y - prediction for label, (prediction, _) in outputs.items()}
    edges = np.histogram_bin_edges(
        np.clip(
            np.concatenate(list(residuals.values())),
            *np.percentile(np.concatenate(list(residuals.values())), [1, 99]),
        ),
        40,
    )
    for label, values in residuals.items():
        ax.hist(
            np.clip(values, edges[0], edges[-1]),
            edges,
            histtype="step",
            linewidth=1.5,
            label=f"{label} (RMSE {np.sqrt(np.mean(values**2)):.4g})",
        )
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.set(
        xlabel="residual (actual - predicted), clipped to 1st-99th percentile",
        ylabel="test rows",
        title="Residuals (test)",
    )
    return "Residuals on test"


def _cluster_sizes(ax, task: Task, y: np.ndarray | None, outputs: dict[str, Output]) -> str:
    """Each model's share of the test rows per cluster (noise: -1)."""
    clusters = np.unique(np.concatenate([cluster for cluster, _ in outputs.values()]))
    width = 0.8 / len(outputs)
    for i, (label, (cluster, _)) in enumerate(outputs.items()):
        shares = [float(np.mean(cluster == c)) for c in clusters]
        ax.bar(np.arange(len(clusters)) + (i - (len(outputs) - 1) / 2) * width, shares, width, label=label)
    ax.set_xticks(np.arange(len(clusters)), ["noise" if c == -1 else str(c) for c in clusters])
    ax.set(xlabel="cluster", ylabel="share of test rows", title="Cluster sizes (test)")
    return "Cluster sizes on test"


OUTPUT_PLOTS = {  # by Task.comparison_plot
    "class_recall": _class_recall,
    "roc": _roc,
    "residuals": _residuals,
    "cluster_sizes": _cluster_sizes,
}


def _outputs_plot(task: Task, y: np.ndarray | None, outputs: dict[str, Output], path: Path) -> str:
    """Both models' test outputs as the task's ``comparison_plot`` shows them."""
    fig, axes = _figure()
    ax = axes[0][0]
    title = OUTPUT_PLOTS[task.comparison_plot](ax, task, y, outputs)
    ax.legend(fontsize=8)
    _save(fig, path)
    return title


def _drift_plot(drift: DriftSummary, path: Path, top: int = 10) -> str:
    """The most drifted columns, each score against its own threshold (1: the threshold)."""
    columns = drift.most_drifted(top)[::-1]
    fig, axes = _figure(height=1.6 + 0.22 * len(columns))
    ax = axes[0][0]
    # a p-value of ~0 gives an astronomic ratio: bars stop at SEVERITY_CAP (the label keeps the score)
    severity = [min(entry.severity, SEVERITY_CAP) for _, entry in columns]
    ax.barh(
        [name for name, _ in columns],
        severity,
        color=["tab:red" if entry.drifted else "tab:grey" for _, entry in columns],
    )
    for y, ((_, entry), value) in enumerate(zip(columns, severity, strict=True)):
        ax.annotate(f" {entry.score:.3g}", (value, y), va="center", fontsize=7)
    ax.axvline(1, color="black", linestyle="dashed", linewidth=0.8)
    if max(severity) > 30:
        ax.set_xscale("log")
        ax.set_xlim(right=max(severity) * 20)  # room for the labels
    else:
        ax.set_xlim(0, max(max(severity), 1.0) * 1.15)
    p_values = any(entry.is_p_value for _, entry in columns)
    ax.set(
        xlabel="score ÷ threshold (≥ 1 drifted); label: score" + ("\np-values: threshold ÷ p" if p_values else ""),
        title=f"Drift: {drift.drifted_count} of {drift.columns_checked} columns (red: drifted)",
    )
    _save(fig, path)
    return "Most drifted columns, current batch vs training"


def _slices_plot(report: GateReport, path: Path) -> str:
    """The metric per slice value for both models: on test (judged) and on the current batch."""
    sets = {"test": report.judged_slices(), "current": report.comparison.current.slices}
    sets = {name: rows for name, rows in sets.items() if rows}
    floors = {column: limits.min_metric for column, limits in report.policy.slices.items()}
    fig, axes = _figure(len(sets), height=1.8 + 0.45 * max(len(rows) for rows in sets.values()))
    for ax, (name, rows) in zip(axes[0], sets.items(), strict=True):
        rows = rows[::-1]
        y = np.arange(len(rows))
        for offset, side, color in ((0.2, "champion", "tab:grey"), (-0.2, "candidate", "tab:blue")):
            values = [np.nan if getattr(row, side) is None else getattr(row, side) for row in rows]
            if not all(np.isnan(values)):
                ax.barh(
                    y + offset, values, 0.38, color=color, label="production" if side == "champion" else "candidate"
                )
        for i, row in enumerate(rows):
            if floors.get(row.column) is not None:
                ax.plot([floors[row.column]] * 2, [i - 0.45, i + 0.45], color="tab:red", linewidth=1.5)
        ax.set_yticks(y, [f"{row.column}={row.value} ({row.rows:,})" for row in rows], fontsize=8)
        ax.set(xlabel=report.metric, title=f"Slices, {name} (red: floor)")
        ax.legend(fontsize=7, ncol=2, loc="lower center", bbox_to_anchor=(0.5, 1.12), frameon=False)
    _save(fig, path)
    return f"{report.metric} per slice"


def _fairness_plot(column: FairnessEvidence, path: Path) -> str:
    """Selection rate, TPR and FPR of the candidate per group of one sensitive column (hatched: too
    few rows to judge)."""
    groups = column.groups
    fig, axes = _figure(width=max(5.0, 1.2 * len(groups) + 2))
    ax = axes[0][0]
    x = np.arange(len(groups))
    rates = (("selection_rate", "selection rate"), ("true_positive_rate", "TPR"), ("false_positive_rate", "FPR"))
    for k, (field, label) in enumerate(rates):
        values = [np.nan if getattr(g, field) is None else getattr(g, field) for g in groups]
        bars = ax.bar(x + (k - 1) * 0.27, values, 0.26, label=label)
        for bar, group in zip(bars, groups, strict=True):
            if not group.judged:
                bar.set_hatch("//")
    ax.set_xticks(x, [f"{g.group}\n({g.rows:,})" for g in groups], fontsize=8)
    ax.set(ylim=(0, 1), ylabel="rate on test", title=f"Decisions per group of {column.column}")
    ax.legend(fontsize=7, ncol=3, loc="lower center", bbox_to_anchor=(0.5, 1.1), frameon=False)
    _save(fig, path)
    return f"Decisions per group of {column.column}"


def draw_plots(
    folder: Path, report: GateReport, y_test: np.ndarray | None, test_outputs: dict[str, Output]
) -> dict[str, str]:
    """The promotion report's PNG plots, written into ``folder``: {file stem: title}."""
    drawn = {"metric": _metric_plot(report, folder / "metric.png")}
    task = report.data.learning_task
    drawn[task.comparison_plot] = _outputs_plot(task, y_test, test_outputs, folder / f"{task.comparison_plot}.png")
    if report.drift.columns:
        drawn["drift"] = _drift_plot(report.drift, folder / "drift.png")
    if report.judged_slices():
        drawn["slices"] = _slices_plot(report, folder / "slices.png")
    for column in report.judged_fairness() or ():
        drawn[f"fairness_{column.column}"] = _fairness_plot(column, folder / f"fairness_{column.column}.png")
    return drawn
