"""The MLflow pyfunc model, logged as "models from code": raw contract columns in, predictions out.

MLflow copies this file into the model; ``load_context`` loads the fitted pipeline and the
feature spec from the model's artifacts.
"""

from __future__ import annotations

import json

import joblib
import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

from mlgate.modelling.task import for_features


class PipelineModel(PythonModel):
    def load_context(self, context) -> None:
        self.pipeline = joblib.load(context.artifacts["pipeline"])
        with open(context.artifacts["features"]) as handle:
            self.features = json.load(handle)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        """The pipeline's input guard applies the contract: missing columns, types, new categories."""
        task = for_features(self.features)
        return task.output_frame(*task.outputs(self.pipeline, model_input))


mlflow.models.set_model(PipelineModel())
