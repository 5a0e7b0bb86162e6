"""Tiny DataSpecs and frames shared by the unit tests (no files, no tracking store, no network)."""

import copy
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlgate import config
from mlgate.modelling.data import DataSpec

PROJECT_ROOT = Path(__file__).resolve().parents[2]

BINARY_DATA_SECTION = {
    "name": "tiny",
    "task": "binary",
    "target": "churn",
    "positive_class": "Yes",
    "metric": "roc_auc",
    "source": {"kind": "file", "path": "data/source/tiny.csv", "format": "csv"},
    "current_path": None,
    "contract": {
        "min_rows": 3,
        "min_class_count": 1,
        "max_missing_share": 0.0,
        "columns": {
            "tenure": {"type": "integer"},
            "charges": {"type": "float", "max_missing_share": 0.5},
            "plan": {"type": "string", "max_missing_share": 0.5},
            "churn": {"type": "string"},
        },
    },
}


@pytest.fixture(scope="session")
def project_root() -> Path:
    return PROJECT_ROOT


@pytest.fixture
def data_section() -> dict:
    """A fresh copy of a binary `data:` section, shaped like conf/data/telco_churn.yaml."""
    return copy.deepcopy(BINARY_DATA_SECTION)


@pytest.fixture
def binary_spec(data_section) -> DataSpec:
    return config.build(DataSpec, data_section, "data")


@pytest.fixture
def regression_spec(data_section) -> DataSpec:
    columns = data_section["contract"]["columns"]
    del columns["churn"]
    columns["spend"] = {"type": "float"}
    data_section.update(task="regression", target="spend", positive_class=None, metric="rmse")
    return config.build(DataSpec, data_section, "data")


@pytest.fixture
def clean_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "tenure": [1, 5, 12, 24, 36, 60],
            "charges": [20.5, 35.0, 50.25, 70.0, 89.9, 110.0],
            "plan": ["basic", "plus", "pro", "basic", "plus", "pro"],
            "churn": ["Yes", "No", "No", "Yes", "No", "No"],
        }
    )


def _mixed_frame(rows: int = 40, task: str = "binary", *, seed: int = 0, with_missing: bool = False) -> pd.DataFrame:
    """Unique rows; a third of them churn (the most expensive), or `spend` grows with charges."""
    rng = np.random.default_rng(seed)
    charges = rng.uniform(20, 120, rows).round(2)
    frame = pd.DataFrame(
        {
            "tenure": rng.integers(0, 72, rows),
            "charges": charges,
            "plan": rng.choice(["basic", "plus", "pro"], rows).astype(object),
        }
    )
    if task == "binary":
        frame["churn"] = np.where(charges > np.quantile(charges, 2 / 3), "Yes", "No")
    else:
        frame["spend"] = 3.0 * charges + rng.normal(0, 5, rows)
    if with_missing:
        frame.loc[[1, 7], "charges"] = np.nan
        frame.loc[[2, 9], "plan"] = np.nan
    return frame


@pytest.fixture
def mixed_frame() -> Callable[..., pd.DataFrame]:
    """``mixed_frame(rows, task, seed=, with_missing=)``: a frame matching binary_spec or regression_spec."""
    return _mixed_frame


@pytest.fixture
def early_stopping_from_1000_rows(monkeypatch):
    """CatBoost stops early from 1,000 rows on, so its tests fit in well under a second."""
    from mlgate.modelling import models

    monkeypatch.setattr(models, "EARLY_STOPPING_MIN_ROWS", 1_000)
