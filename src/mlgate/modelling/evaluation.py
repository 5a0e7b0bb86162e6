"""What a fitted model's outputs mean for the task: predictions as model targets, the curves drawn
from them; shared by the evaluate and gate stages and the gate's plots."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import pandas as pd

from mlgate.modelling.data import DataSpec
from mlgate.modelling.task import named

SHAP_IMPORTANCE = "shap_importance"  # the plot (and CSV) name of the TreeSHAP importance


class Predictor(Protocol):
    """A loaded pyfunc model, as the tracking adapter returns it."""

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame: ...


def predictions(model: Predictor, frame: pd.DataFrame, spec: DataSpec) -> tuple[np.ndarray, np.ndarray | None]:
    """(prediction as model targets, probability or None) from the pyfunc output (``Task.read_outputs``).
    ``frame`` may lack the target (an unlabelled batch); its sensitive columns are not the model's."""
    inputs = frame.drop(columns=[spec.target, *spec.sensitive], errors="ignore")
    return spec.learning_task.read_outputs(model.predict(inputs))


def curves(y: np.ndarray, prediction: np.ndarray, probability: np.ndarray | None, task: str) -> dict[str, pd.DataFrame]:
    """The tables drawn from a model's outputs (``Task.curves``)."""
    return named(task).curves(y, prediction, probability)
