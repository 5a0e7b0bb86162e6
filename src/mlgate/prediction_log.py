"""The serving prediction log: sampled requests and their predictions as rotated Parquet files.

`submit` only samples and enqueues, so logging never blocks or fails a request: when the queue is
full the rows are dropped and counted. A writer thread turns the queue into files named
`predictions-<UTC time>-<sequence>.parquet`, each written under a temporary name and renamed, so a
reader (`mlgate monitor`) never sees half a file.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

log = logging.getLogger("mlgate.prediction_log")

QUEUE_REQUESTS = 10_000


class PredictionLog:
    def __init__(self, directory: str | Path, sample_rate: float = 1.0, rotate_rows: int = 50_000,
                 rotate_s: float = 60.0, on_drop: Callable[[int], None] | None = None, seed: int | None = None):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.sample_rate = sample_rate
        self.rotate_rows = rotate_rows
        self.rotate_s = rotate_s
        self.on_drop = on_drop or (lambda rows: None)
        self._random = random.Random(seed)
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUE_REQUESTS)
        self._sequence = 0
        self._writer = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._writer.start()

    def submit(self, request_id: str, version: str, inputs: pd.DataFrame, outputs: pd.DataFrame) -> None:
        if self.sample_rate < 1 and self._random.random() >= self.sample_rate:
            return
        try:
            self._queue.put_nowait((request_id, version, time.time(), inputs, outputs))
        except queue.Full:
            self.on_drop(len(inputs))

    def close(self) -> None:
        """Write what is queued and stop the writer."""
        self._queue.put(None)
        self._writer.join()

    def _run(self) -> None:
        pending: list[pd.DataFrame] = []
        rows = 0
        opened = time.monotonic()
        while True:
            try:
                item = self._queue.get(timeout=max(0.05, self.rotate_s - (time.monotonic() - opened)))
            except queue.Empty:
                item = ...
            if item is None or item is ...:
                if pending and (item is None or time.monotonic() - opened >= self.rotate_s):
                    self._write(pending)
                    pending, rows, opened = [], 0, time.monotonic()
                if item is None:
                    return
                continue
            try:
                pending.append(_rows(*item))
            except Exception as error:  # noqa: BLE001 - a request the log cannot shape is skipped, not fatal
                log.warning("prediction log: skipped a request: %s", error)
                continue
            rows += len(pending[-1])
            if rows >= self.rotate_rows or time.monotonic() - opened >= self.rotate_s:
                self._write(pending)
                pending, rows, opened = [], 0, time.monotonic()

    def _write(self, frames: list[pd.DataFrame]) -> None:
        self._sequence += 1
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
        final = self.directory / f"predictions-{stamp}-{self._sequence:06d}.parquet"
        partial = final.with_suffix(".parquet.tmp")
        try:
            _text_if_mixed(pd.concat(frames, ignore_index=True)).to_parquet(partial, index=False)
            partial.replace(final)
        except Exception as error:  # noqa: BLE001 - a full disk must not take the server down
            log.error("prediction log: cannot write %s: %s", final, error)
            self.on_drop(sum(len(f) for f in frames))
            partial.unlink(missing_ok=True)


def _rows(request_id: str, version: str, at: float, inputs: pd.DataFrame, outputs: pd.DataFrame) -> pd.DataFrame:
    """One row per predicted row: request id, time, model version, row in the request, the inputs as
    sent, the outputs (``output_<column>``)."""
    frame = inputs.reset_index(drop=True).copy()
    frame.columns = [str(c) for c in frame.columns]
    for column in outputs.columns:
        frame[f"output_{column}"] = outputs[column].to_numpy()
    frame.insert(0, "row", range(len(frame)))   # position in the request: labels join on (request_id, row)
    frame.insert(0, "model_version", version)
    frame.insert(0, "timestamp", pd.Timestamp(at, unit="s", tz="UTC"))
    frame.insert(0, "request_id", request_id)
    return frame


def _text_if_mixed(frame: pd.DataFrame) -> pd.DataFrame:
    """Object columns (mixed JSON values across requests) as text, so the Parquet schema holds."""
    for column in frame.columns:
        if frame[column].dtype == object:
            frame[column] = frame[column].map(lambda v: v if v is None or isinstance(v, str) or v != v else str(v))
    return frame
