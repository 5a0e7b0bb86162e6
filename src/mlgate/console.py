"""What the pipeline prints: one aligned line per stage, and nothing from the libraries."""

from __future__ import annotations

import logging
import os
import sys
import warnings

STAGE_WIDTH = 11


def quiet_libraries() -> None:
    """Silence known-noisy library output at its source, before those libraries are imported."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    for name in ("mlflow", "alembic", "optuna", "evidently", "hydra"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # MLflow hints about int columns in signatures: our models take floats for every numeric column.
    warnings.filterwarnings("ignore", message=r"Hint: Inferred schema contains integer column")


def say(stage: str, message: str) -> None:
    print(f"{stage:<{STAGE_WIDTH}} {message}", flush=True)


def fail(stage: str, message: str) -> None:
    print(f"{stage:<{STAGE_WIDTH}} error: {message}", file=sys.stderr, flush=True)


def number(value: int) -> str:
    return f"{value:,}"
