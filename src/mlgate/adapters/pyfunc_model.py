"""The MLflow pyfunc model, logged as "models from code": raw contract columns in, predictions out.

MLflow copies this file into the model; ``load_context`` loads the fitted pipeline and the
feature spec from the model's artifacts.
"""

from __future__ import annotations

import json

import joblib
import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel


class PipelineModel(PythonModel):
    def load_context(self, context) -> None:
        self.pipeline = joblib.load(context.artifacts["pipeline"])
        with open(context.artifacts["features"]) as handle:
            self.features = json.load(handle)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        """The pipeline's input guard applies the contract: missing columns, types, new categories."""
        features = self.features
        if features["task"] == "binary":
            probability = self.pipeline.predict_proba(model_input)[:, 1]
            labels = np.where(
                probability >= features.get("threshold", 0.5), features["positive_class"], features["negative_class"]
            )
            return pd.DataFrame({"prediction": labels, "probability": probability})
        if features["task"] == "multiclass":  # the most probable class, and every class's probability
            probabilities = self.pipeline.predict_proba(model_input)
            classes = features["classes"]
            labels = np.asarray(classes, dtype=object)[probabilities.argmax(axis=1)]
            return pd.DataFrame(
                {"prediction": labels, **{f"probability_{c}": probabilities[:, k] for k, c in enumerate(classes)}}
            )
        return pd.DataFrame({"prediction": self.pipeline.predict(model_input)})


mlflow.models.set_model(PipelineModel())
