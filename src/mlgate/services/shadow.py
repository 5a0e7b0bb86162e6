"""A challenger in shadow (`mlgate serve --shadow staging`): the version holding another alias scores
the served model's requests off the request path, so it meets live traffic before it serves any.

A client's answer never waits for the shadow, fails with it or changes because of it: the request
path only offers the checked frame and its answer to a bounded backlog and returns. The shadow
scores on a thread of its own, at a lower scheduling priority than the served model's, in micro-batches
like the served model; it applies its own request contract (a candidate may take other columns), and
its failures and slowness stay in /metrics (`mlgate_shadow_*`) and the log. When the shadow cannot keep
up, the backlog's row bound skips requests (counted), so its memory is bounded whatever the traffic.
Its outputs go to the prediction log beside the served rows (role `shadow`, the same request id and
rows, its own version), where `mlgate monitor` compares the two on the window.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import os
import random
import threading
import time
from typing import Any

import numpy as np
import pandas as pd

from mlgate.modelling.task import TASKS
from mlgate.services.prediction_log import SHADOW, PredictionLog

log = logging.getLogger("mlgate.serve.shadow")

BACKLOG_ROWS = 20_000  # rows offered to the shadow and not yet scored, at most (more: skipped and counted)
REGRESSION_TOLERANCE = 0.05  # a regression shadow disagrees on a row more than this share of the served value away
NICENESS = 10  # the shadow thread's scheduling priority below the served model's (Linux: per thread)


class Shadow:
    """Scores what ``offer`` is given with the version ``state`` follows (a shadow `ServingState`)."""

    def __init__(
        self,
        state: Any,
        metrics: Any,
        prediction_log: PredictionLog | None,
        *,
        sample_rate: float = 1.0,
        max_extra_columns: int = 64,
        max_batch_rows: int = 512,
        batch_wait_s: float = 0.002,
        backlog_rows: int | None = None,
    ):
        self.state = state
        self.metrics = metrics
        self.prediction_log = prediction_log
        self.sample_rate = sample_rate
        self.max_extra_columns = max_extra_columns
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
        self, shadow: Any, request_id: str, frame: pd.DataFrame, answer: pd.DataFrame, classification: bool
    ) -> None:
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        try:
            model_input = await loop.run_in_executor(_shadow_thread(), self._model_input, shadow, frame)
            output = await shadow.batcher(self.max_batch_rows, self.batch_wait_s, thread=_shadow_thread()).predict(
                model_input
            )
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

    def _model_input(self, shadow: Any, frame: pd.DataFrame) -> pd.DataFrame:
        """The frame as the shadow's own contract takes it (422 there is a `contract` error here)."""
        contract = shadow.contract(self.max_extra_columns)
        contract.check(frame, "ignore")
        known = contract.known(frame)
        return frame if len(known) == frame.shape[1] else frame[known]

    def _failed(self, shadow: Any, error: Exception) -> None:
        from mlgate.modelling.features import InputValidationError
        from mlgate.services.request_body import BadRequest

        kind = "contract" if isinstance(error, BadRequest | InputValidationError) else "prediction"
        self.metrics.shadow_errors.labels(kind).inc()
        message = error.message if isinstance(error, BadRequest) else f"{type(error).__name__}: {error}"
        if shadow.version not in self.failed_versions:  # once per version: a broken shadow must not flood it
            self.failed_versions.add(shadow.version)
            log.warning("shadow v%s failed (%s; counted in mlgate_shadow_errors): %s", shadow.version, kind, message)

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
    """The shadow's one thread, apart from the served model's, so a shadow call never holds a request;
    niced, so the served model's thread wins the cores when both want them."""
    return concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlgate-shadow", initializer=_nice)


def _nice() -> None:
    try:  # on Linux a thread id names one thread: the served model's threads keep their priority
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, 0) + NICENESS)
    except (AttributeError, OSError) as error:  # not Linux, or not permitted: the shadow still runs, at par
        log.info("shadow thread keeps its priority: %s", error)
