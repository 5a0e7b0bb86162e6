"""The evaluate stage's plots as PNG images (the model card and the MLflow run show them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from mlgate.modelling.data import DataSpec
from mlgate.modelling.evaluation import SHAP_IMPORTANCE


def png(name: str, table: pd.DataFrame, spec: DataSpec, folder: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    if name == "roc":
        ax.plot(table.fpr, table.tpr)
        ax.plot([0, 1], [0, 1], "--", color="grey")
        ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC curve (test)")
    elif name == "precision_recall":
        ax.plot(table.recall, table.precision)
        ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (test)")
    elif name == "confusion" and spec.classes:  # the declaration names the classes: show them on the axes
        labels = list(range(len(spec.classes)))
        matrix = skm.confusion_matrix(table.actual, table.predicted, labels=labels)
        ax.imshow(matrix, cmap="Blues")
        for (i, j), v in np.ndenumerate(matrix):
            ax.text(j, i, f"{v:,}", ha="center", va="center", fontsize=8)
        ax.set_xticks(labels, spec.classes, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(labels, spec.classes, fontsize=8)
        ax.set(xlabel="predicted", ylabel="actual", title="Confusion (test)")
    elif name == "confusion":
        matrix = skm.confusion_matrix(table.actual, table.predicted, labels=[0, 1])
        ax.imshow(matrix, cmap="Blues")
        for (i, j), v in np.ndenumerate(matrix):
            ax.text(j, i, f"{v:,}", ha="center", va="center")
        ax.set(
            xticks=[0, 1],
            yticks=[0, 1],
            xlabel="predicted",
            ylabel="actual",
            title=f"Confusion (1 = {spec.positive_class})",
        )
    elif name == "residuals":
        ax.scatter(table.predicted, table.residual, s=4, alpha=0.5)
        ax.axhline(0, color="grey")
        ax.set(xlabel="predicted", ylabel="residual", title="Residuals (test)")
    elif name == "importance":
        top = table.head(15).iloc[::-1]
        ax.barh(top.feature, top.importance, xerr=top["std"])
        ax.set(xlabel=f"drop in {spec.metric}", title="Permutation importance")
    elif name == SHAP_IMPORTANCE:
        top = table.head(15).iloc[::-1]
        ax.barh(top.feature, top.importance)
        ax.set(xlabel="mean |SHAP value|", title="SHAP importance (TreeSHAP)")
    elif name == "cluster_profile":
        sizes = table[table.cluster != "all"].iloc[::-1]
        ax.barh(sizes.cluster.astype(str), sizes.share)
        ax.set(xlabel="share of test rows", ylabel="cluster", title="Cluster sizes (test)")
    elif name == "projection":
        for cluster, points in table.groupby("cluster"):
            label = "noise" if cluster == -1 else str(cluster)
            ax.scatter(points.pc1, points.pc2, s=4, alpha=0.6, label=label, color="grey" if cluster == -1 else None)
        ax.legend(title="cluster", fontsize=7, markerscale=3)
        ax.set(xlabel="first principal component", ylabel="second", title="Clusters, 2-D projection (test)")
    elif name == "silhouette":
        ax.barh(table.row, table.silhouette, height=1.0, color=[f"C{c % 10}" for c in table.cluster])
        ax.axvline(table.silhouette.mean() if len(table) else 0, color="red", linestyle="--")
        ax.set(xlabel="silhouette", ylabel="rows, by cluster", yticks=[], title="Silhouette (test; dashed: mean)")
    fig.tight_layout()
    path = folder / f"{name}.png"
    fig.savefig(path)
    plt.close(fig)
    return path
