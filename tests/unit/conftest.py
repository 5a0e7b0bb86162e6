"""Tiny DataSpecs and frames shared by the unit tests (no files, no tracking store, no network), and
the guard that keeps this tier pure: no unit test imports MLflow or Evidently."""

import copy
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlgate import config
from mlgate.modelling.data import DataSpec

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# Each takes seconds to import, and a test that needs a tracking store or a drift report is an
# integration test (tests/integration): the unit tier stays fast by never importing them.
HEAVY_PACKAGES = ("mlflow", "evidently")

# Issue 15: unit test modules that still import MLflow through the code they test (its layers are being
# split so that the pure parts stop importing it); empty this once they no longer do.
HEAVY_IMPORTS_ALLOWED_IN = frozenset(
    {
        "test_bootstrap_scores.py",
        "test_compiled.py",
        "test_data.py",
        "test_drift_stage.py",
        "test_ensemble.py",
        "test_features.py",
        "test_gate.py",
        "test_gate_plots.py",
        "test_leakage_free_cv.py",
        "test_metrics.py",
        "test_model_card.py",
        "test_models.py",
        "test_monitor.py",
        "test_multiclass.py",
        "test_schema.py",
        "test_scoring.py",
        "test_split.py",
        "test_tune.py",
        "test_tuning.py",
    }
)


def _heavy_loaded() -> set[str]:
    return {name for name in HEAVY_PACKAGES if name in sys.modules}


def _pulled_in_message(node, pulled: set[str]) -> str:
    return (
        f"{node.nodeid} imported {', '.join(sorted(pulled))}: unit tests stay pure (tests/unit/conftest.py); "
        "move a test that needs a tracking store or Evidently to tests/integration, or import less"
    )


def _allowed(node) -> bool:
    return node.path.name in HEAVY_IMPORTS_ALLOWED_IN


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    """A unit test module whose imports pull in MLflow or Evidently fails to collect, naming them."""
    loaded = _heavy_loaded()
    report = yield
    pulled = _heavy_loaded() - loaded
    if pulled and isinstance(collector, pytest.Module) and not _allowed(collector) and report.passed:
        report.outcome = "failed"
        report.longrepr = _pulled_in_message(collector, pulled)
    return report


def _fail_if_it_pulls_in_heavy(item) -> Iterator[None]:
    loaded = _heavy_loaded()
    result = yield
    pulled = _heavy_loaded() - loaded
    if pulled and not _allowed(item):
        pytest.fail(_pulled_in_message(item, pulled), pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    """A unit test (or its fixtures) that imports MLflow or Evidently while it runs fails, naming them."""
    return (yield from _fail_if_it_pulls_in_heavy(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    return (yield from _fail_if_it_pulls_in_heavy(item))


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
