"""mlgate: a tracked AutoML pipeline on MLflow and DVC, gated by the model registry."""

__version__ = "0.1.0"
