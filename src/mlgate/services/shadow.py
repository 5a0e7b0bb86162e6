"""A challenger in shadow (`mlgate serve --shadow staging`): the version holding another alias scores
the served model's requests off the request path, so it meets live traffic before it serves any.

A client's answer never waits for the shadow, fails with it or changes because of it: the request path
only offers the checked frame and its answer to a bounded backlog and returns. The shadow's model lives
in a process of its own (``ShadowProcess``), niced below the server, so its calls contend with the served
model's neither for Python's interpreter lock nor, when both want a core, for the scheduler's favour; it
applies its own request contract there (a candidate may take other columns). The server micro-batches
what waits for it like the served model's calls. Its failures, slowness and disagreements stay in
/metrics (`mlgate_shadow_*`) and the log. When the shadow cannot keep up, the backlog's row bound
skips requests (counted), so memory is bounded whatever the traffic; a shadow process that dies (the
out-of-memory killer) is replaced and its version loaded again. Its outputs go to the prediction log
beside the served rows (role `shadow`, the same request id and rows, its own version), where `mlgate
monitor` compares the two on the window.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import functools
import json
import logging
import multiprocessing
import os
import random
import threading
import time
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlgate.modelling.task import TASKS
from mlgate.services.batching import MicroBatcher
from mlgate.services.prediction_log import SHADOW, PredictionLog
from mlgate.services.request_body import exit_with_parent

log = logging.getLogger("mlgate.serve.shadow")

BACKLOG_ROWS = 20_000  # rows offered to the shadow and not yet scored, at most (more: skipped and counted)
REGRESSION_TOLERANCE = 0.05  # a regression shadow disagrees on a row more than this share of the served value away
NICENESS = 10  # the shadow process's scheduling priority below the server's


class ShadowFailure(Exception):
    """The shadow could not score a request: ``kind`` is load, contract or prediction."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class ShadowProcess:
    """The one process that holds the shadow's model and scores with it, spawned on first use (a fork
    would copy the server's threads' locks). Calls wait for its answer in the calling thread."""

    def __init__(self, settings: dict[str, Any]):
        self.settings = settings  # ServeSettings as a dict, the shadow's alias as its alias
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def load(self, version: str) -> dict[str, Any]:
        """Load ``version`` in the process (the one it scores with from now on); raises ShadowFailure."""
        return self._call(_load, self.settings, version)

    def score(self, version: str, frame: pd.DataFrame) -> pd.DataFrame:
        return self._call(_score, self.settings, version, frame)

    def pid(self) -> int | None:
        """The shadow process's id, once it runs."""
        with self._lock:
            processes = list(getattr(self._pool, "_processes", None) or {})
        return processes[0] if processes else None

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None

    def _call(self, function: Any, *args: Any) -> Any:
        pool = self._processes()
        try:
            status, value = pool.submit(function, *args).result()
        except BrokenProcessPool:
            with self._lock:
                if self._pool is pool:
                    self._pool = None  # the next call spawns a new one, which loads the version again
            raise ShadowFailure(
                "prediction", "the shadow process died (out of memory?); a new one takes over"
            ) from None
        if status != "ok":
            raise ShadowFailure(status, value)
        return value

    def _processes(self) -> concurrent.futures.ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = concurrent.futures.ProcessPoolExecutor(
                    1, mp_context=multiprocessing.get_context("spawn"), initializer=_shadow_process_setup
                )
            return self._pool


@dataclass(frozen=True)
class ShadowModel:
    """A shadow version loaded in its process: what the server's shadow state holds in place of a model."""

    version: str
    uri: str
    run_id: str | None
    gate: str | None
    process: ShadowProcess

    def batcher(self, max_rows: int, wait_s: float) -> MicroBatcher:
        """This version's batcher (one per loaded version, so requests never mix versions)."""
        if "_batcher" not in self.__dict__:
            self.__dict__["_batcher"] = MicroBatcher(
                functools.partial(self.process.score, self.version), max_rows, wait_s, thread=_shadow_thread()
            )
        return self.__dict__["_batcher"]


class ShadowSource:
    """Resolves the shadow's alias in the server, and loads its version in the shadow process."""

    def __init__(self, registry: Any, process: ShadowProcess):
        self.registry = registry  # serving.RegistrySource for the shadow's alias: its `current`
        self.process = process

    def current(self) -> str | None:
        return self.registry.current()

    def load(self, version: str) -> ShadowModel:
        loaded = self.process.load(version)
        return ShadowModel(version, loaded["uri"], loaded["run_id"], loaded["gate"], self.process)


class Shadow:
    """Scores what ``offer`` is given with the version ``state`` follows (a shadow `ServingState`)."""

    def __init__(
        self,
        state: Any,
        metrics: Any,
        prediction_log: PredictionLog | None,
        *,
        sample_rate: float = 1.0,
        max_batch_rows: int = 512,
        batch_wait_s: float = 0.002,
        backlog_rows: int | None = None,
    ):
        self.state = state
        self.metrics = metrics
        self.prediction_log = prediction_log
        self.sample_rate = sample_rate
        self.max_batch_rows = max_batch_rows
        self.batch_wait_s = batch_wait_s
        self.backlog_rows = BACKLOG_ROWS if backlog_rows is None else backlog_rows
        self.waiting_rows = 0  # offered and not yet scored
        self.scoring: set[asyncio.Task] = set()  # held: the event loop keeps only weak references to tasks
        self.failed_versions: set[str] = set()  # versions whose failure was logged (each is logged once)

    def offer(self, request_id: str, frame: pd.DataFrame, answer: pd.DataFrame, classification: bool) -> None:
        """Hand a served request (its checked, protected frame and the answer its client got) to the
        shadow, on the event loop, in microseconds: it never raises and never waits."""
        shadow = self.state.served
        if shadow is None or (self.sample_rate < 1 and random.random() >= self.sample_rate):
            return
        rows = len(frame)
        if self.waiting_rows + rows > self.backlog_rows:
            self.metrics.shadow_skipped.inc(rows)
            return
        self.waiting_rows += rows
        task = asyncio.get_running_loop().create_task(self._score(shadow, request_id, frame, answer, classification))
        self.scoring.add(task)
        task.add_done_callback(self.scoring.discard)

    async def _score(
        self, shadow: ShadowModel, request_id: str, frame: pd.DataFrame, answer: pd.DataFrame, classification: bool
    ) -> None:
        started = time.perf_counter()
        try:
            output = await shadow.batcher(self.max_batch_rows, self.batch_wait_s).predict(frame)
        except Exception as error:  # noqa: BLE001 - the shadow's failure is counted, never the client's
            self._failed(shadow, error)
            return
        finally:
            self.waiting_rows -= len(frame)
        self.metrics.shadow_latency.observe(time.perf_counter() - started)
        self.metrics.shadow_rows.inc(len(output))
        apart = disagreements(answer, output, classification)
        if apart:
            self.metrics.shadow_disagreements.inc(apart)
        if self.prediction_log is not None:
            self.prediction_log.submit(request_id, shadow.version, frame.iloc[:, :0], output, role=SHADOW)

    def _failed(self, shadow: ShadowModel, error: Exception) -> None:
        kind = error.kind if isinstance(error, ShadowFailure) else "prediction"
        self.metrics.shadow_errors.labels(kind).inc()
        if (shadow.version, kind) not in self.failed_versions:  # once per version and kind: no flood
            self.failed_versions.add((shadow.version, kind))
            log.warning("shadow v%s failed (%s; counted in mlgate_shadow_errors): %s", shadow.version, kind, error)

    async def close(self) -> None:
        for task in list(self.scoring):
            task.cancel()
        await asyncio.gather(*self.scoring, return_exceptions=True)


def is_classification(features: dict[str, Any] | None, answer: pd.DataFrame) -> bool:
    """Whether the served model's predictions are labels (compared exactly) or numbers (within a tolerance)."""
    task = TASKS.get(features.get("task")) if features else None
    return bool(task and task.is_classification) or ("prediction" in answer and answer["prediction"].dtype == object)


def disagreements(served: pd.DataFrame, shadow: pd.DataFrame, classification: bool) -> int:
    """Rows whose shadow prediction differs from the served one: another label, or a number more than
    REGRESSION_TOLERANCE of the served value away. Clusters are not compared (their numbers are each
    model's own)."""
    if "prediction" not in served or "prediction" not in shadow or len(served) != len(shadow):
        return 0
    if classification:
        return int((served["prediction"].astype(str).to_numpy() != shadow["prediction"].astype(str).to_numpy()).sum())
    mine = pd.to_numeric(served["prediction"], errors="coerce").to_numpy(dtype=float)
    theirs = pd.to_numeric(shadow["prediction"], errors="coerce").to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        return int((np.abs(theirs - mine) > REGRESSION_TOLERANCE * np.abs(mine)).sum())


@functools.cache
def _shadow_thread() -> concurrent.futures.ThreadPoolExecutor:
    """The thread that waits on the shadow process's answers (the process does the work)."""
    return concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlgate-shadow")


def _shadow_process_setup() -> None:
    """Below the server in priority, and gone with it."""
    exit_with_parent()
    try:
        os.nice(NICENESS)
    except OSError as error:  # not permitted: the shadow still runs, at par
        log.info("shadow process keeps its priority: %s", error)


# --- in the shadow process ----------------------------------------------------------------------

_HELD: dict[str, Any] = {}  # the version this process scores with: {"version": ..., "served": serving.Served}


def _load(settings: dict[str, Any], version: str) -> tuple[str, Any]:
    """Load ``version`` (replacing the one held): ("ok", where it came from) or ("load", why not)."""
    from mlgate.services import serving

    try:
        if _HELD.get("version") != version:
            _HELD.clear()
            source = serving.RegistrySource(serving.ServeSettings(**settings))
            _HELD.update(version=version, served=source.load(version))
    except Exception as error:  # noqa: BLE001 - reported to the server as a load failure
        return "load", f"{type(error).__name__}: {error}"
    served = _HELD["served"]
    return "ok", {"uri": served.uri, "run_id": served.run_id, "gate": served.gate}


def _score(settings: dict[str, Any], version: str, frame: pd.DataFrame) -> tuple[str, Any]:
    """The shadow's outputs for ``frame`` under its own contract: ("ok", outputs), or (kind, why not)."""
    from mlgate.modelling.features import InputValidationError
    from mlgate.services.request_body import BadRequest

    if _HELD.get("version") != version:  # a new process (the old one died): load the version again
        status, why = _load(settings, version)
        if status != "ok":
            return status, why
    served = _HELD["served"]
    contract = served.contract(settings["max_extra_columns"])
    try:
        contract.check(frame, "ignore")
        known = contract.known(frame)
        output = served.model.predict_unchecked(frame if len(known) == frame.shape[1] else frame[known])
    except BadRequest as bad:
        return "contract", bad.message
    except InputValidationError as bad:
        return "contract", str(bad)
    except Exception as error:  # noqa: BLE001 - the model's failure, reported to the server
        return "prediction", f"{type(error).__name__}: {error}"
    if not isinstance(output, pd.DataFrame):
        values = np.asarray(output)
        output = (
            pd.DataFrame(values, columns=[str(j) for j in range(values.shape[1])])
            if values.ndim == 2
            else pd.DataFrame({"prediction": values.ravel()})
        )
    return "ok", output.reset_index(drop=True)


def settings_for(settings: Any) -> dict[str, Any]:
    """The shadow process's settings: the server's, with the shadow's alias as the one it follows."""
    return json.loads(json.dumps(dataclasses.asdict(dataclasses.replace(settings, alias=settings.shadow, shadow=None))))
