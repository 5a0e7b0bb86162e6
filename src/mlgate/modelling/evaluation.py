"""What a fitted model's outputs mean for the task: predictions as model targets, the curves drawn
from them; shared by the evaluate and gate stages and the gate's plots."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from mlgate.modelling.data import DataSpec

SHAP_IMPORTANCE = "shap_importance"  # the plot (and CSV) name of the TreeSHAP importance


class Predictor(Protocol):
    """A loaded pyfunc model, as the tracking adapter returns it."""

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame: ...


def predictions(model: Predictor, frame: pd.DataFrame, spec: DataSpec) -> tuple[np.ndarray, np.ndarray | None]:
    """(prediction as model targets, probability or None) from the pyfunc output: binary, the
    positive class's probability; multiclass, class numbers (positions in data.classes) and the
    (rows, classes) matrix. ``frame`` may lack the target (an unlabelled batch)."""
    output = model.predict(frame.drop(columns=[spec.target], errors="ignore"))
    if spec.task == "binary":
        return (output["prediction"].astype(str) == str(spec.positive_class)).to_numpy(np.int64), output[
            "probability"
        ].to_numpy()
    if spec.task == "multiclass":
        codes = pd.Categorical(output["prediction"].astype(str), categories=spec.classes).codes.astype(np.int64)
        return codes, output[[f"probability_{c}" for c in spec.classes]].to_numpy(np.float64)
    return output["prediction"].to_numpy(np.float64), None


def curves(y: np.ndarray, prediction: np.ndarray, probability: np.ndarray | None, task: str) -> dict[str, pd.DataFrame]:
    if task == "binary":
        fpr, tpr, _ = skm.roc_curve(y, probability)
        precision, recall, _ = skm.precision_recall_curve(y, probability)
        return {
            "roc": pd.DataFrame({"fpr": fpr, "tpr": tpr}),
            "precision_recall": pd.DataFrame({"recall": recall, "precision": precision}),
            "confusion": pd.DataFrame({"actual": y, "predicted": prediction}),
        }
    if task == "multiclass":  # class numbers: positions in data.classes
        return {"confusion": pd.DataFrame({"actual": y, "predicted": prediction})}
    return {"residuals": pd.DataFrame({"actual": y, "predicted": prediction, "residual": y - prediction})}
