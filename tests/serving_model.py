"""A tiny served model for the serving tests that need no MLflow: mlgate's own input guard in front of
a logistic score, behind the same interface `RegistrySource` gives the server."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlgate.modelling.features import InputGuard
from mlgate.services.serving import Served, ServeSettings

NUMERIC = ["tenure", "charges"]
FEATURES = {
    "task": "binary",
    "numeric": NUMERIC,
    "categorical": ["contract"],
    "datetime": [],
    "text": [],
    "order": [*NUMERIC, "contract"],
    "missing_columns": "fail",
    "ranges": {"tenure": [0, 100]},
    "not_null": ["tenure"],
    "positive_class": "Yes",
    "negative_class": "No",
}
GUARD = InputGuard(
    numeric=tuple(NUMERIC),
    categorical=("contract",),
    categories={"contract": ("One year", "Two year", "Month-to-month")},
    policies={"contract": "fail"},
).fit(pd.DataFrame({"tenure": [1.0], "charges": [2.0], "contract": ["One year"]}))


def predict(frame: pd.DataFrame) -> pd.DataFrame:
    x = GUARD.transform(frame)
    probability = 1 / (1 + np.exp(-(0.05 * x["tenure"].fillna(0) - 0.01 * x["charges"].fillna(0)).to_numpy()))
    return pd.DataFrame({"prediction": np.where(probability > 0.5, "Yes", "No"), "probability": probability})


def rows(count: int, start: int = 0) -> pd.DataFrame:
    """``count`` valid input rows."""
    tenure = np.arange(start, start + count) % 90 + 0.5
    return pd.DataFrame(
        {
            "tenure": tenure,
            "charges": tenure * 3.25,
            "contract": np.array(["One year", "Two year", "Month-to-month"])[np.arange(count) % 3],
        }
    )


@dataclass(frozen=True)
class TinyModel:
    """What `tracking.LoadedModel` gives the server (without importing MLflow)."""

    predict: Callable
    features: dict | None
    pipeline: None = None
    input_columns: tuple[str, ...] = ()

    @property
    def predict_unchecked(self) -> Callable:
        return self.predict


class TinySource:
    """Version "1" of the tiny model (or of ``predict_fn``), loaded at once."""

    def __init__(self, predict_fn=predict, features=FEATURES):
        self.model = TinyModel(predict_fn, features)

    def current(self) -> str:
        return "1"

    def load(self, version: str) -> Served:
        return Served(self.model, "tiny:/1", version, None, None)


def tiny_settings(**overrides) -> ServeSettings:
    return ServeSettings(model_uri="tiny:/1", **overrides)


@contextlib.contextmanager
def uvicorn_thread(config, start_timeout_s: float = 60) -> Iterator[str]:
    """The URL of a real uvicorn server for ``config`` (a ``uvicorn.Config`` on port 0) running in a
    thread of this process; stopped when the block ends."""
    import uvicorn

    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
