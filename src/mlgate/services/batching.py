"""Micro-batching: the requests that wait together for a model share one call of it (`mlgate serve`'s
served model and its shadow alike)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from typing import Any

import numpy as np
import pandas as pd


class MicroBatcher:
    """Predicts the requests that wait together in one model call.

    A few-row prediction costs almost nothing per row: per-call overhead is the bill (on telco churn's
    four-member ensemble, compiled: 4.2 ms for 1 row, 4.3 for 4, 7.5 for 100). So while the model is busy in
    its worker thread, arriving requests queue, and the next call takes all of them. A request that
    finds the model idle goes at once, so a quiet server answers as fast as an unbatched one. Under
    concurrent load (the last call served several requests, or more queued while it ran), the batcher
    waits after each call, at most ``wait_s``, for as many new requests as it just answered, so
    concurrent clients keep sharing calls instead of splitting into groups that alternate.

    Only frames with the same columns and dtypes share a call, so one request's types never change how
    another's values are read; when a shared call fails, each request is retried alone and gets its
    own answer or error. A row's numbers can differ in the last bit (BLAS) with the rows it shares a
    call with, as they already do between a 1-row and a 100-row request.
    """

    def __init__(self, predict: Any, max_rows: int, wait_s: float = 0.0, on_call: Any = None, thread: Any = None):
        self.predict_frame = predict
        self.thread = thread
        self.max_rows = max_rows
        self.wait_s = wait_s
        self.on_call = on_call or (lambda rows: None)
        self.pending: list[tuple[pd.DataFrame, asyncio.Future]] = []
        self.arrived = asyncio.Event()
        self.draining: asyncio.Task | None = None

    async def predict(self, frame: pd.DataFrame) -> Any:
        future = asyncio.get_running_loop().create_future()
        self.pending.append((frame, future))
        self.arrived.set()
        if self.draining is None:
            self.draining = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        answered = 0  # requests in the last call (0: none yet)
        try:
            while True:
                # concurrent clients: the last call served several, or others queued while it ran
                if answered and (answered > 1 or self.pending) and self.wait_s:
                    await self._fill(answered)
                await asyncio.sleep(0)  # requests parsed in this turn of the loop join the call
                if not self.pending:
                    return
                batch = self._take()
                answered = len(batch)
                if answered == 1:
                    await self._alone(*batch[0])
                    continue
                frames = [frame for frame, _ in batch]
                try:
                    output = await self._in_model_thread(pd.concat(frames, ignore_index=True))
                except Exception:  # noqa: BLE001 - find whose request it was: each retried alone
                    for frame, future in batch:
                        await self._alone(frame, future)
                    continue
                start = 0
                for frame, future in batch:
                    part = output.iloc[start : start + len(frame)].reset_index(drop=True)
                    start += len(frame)
                    if not future.done():
                        future.set_result(part)
        finally:
            self.draining = None

    async def _fill(self, answered: int) -> None:
        """Wait, at most ``wait_s``, until as many new requests as the last call ``answered`` have
        arrived (its clients are back) or ``max_rows`` rows are queued."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_s
        expected = len(self.pending) + answered
        while len(self.pending) < expected and sum(len(frame) for frame, _ in self.pending) < self.max_rows:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), remaining)
            except TimeoutError:
                return

    def _take(self) -> list[tuple[pd.DataFrame, asyncio.Future]]:
        """The oldest request and those after it that can share its call, up to max_rows rows."""
        first, _ = self.pending[0]
        signature = _signature(first)
        batch, rows, rest = [], 0, []
        for frame, future in self.pending:
            fits = not batch or (rows + len(frame) <= self.max_rows and _signature(frame) == signature)
            if fits:
                batch.append((frame, future))
                rows += len(frame)
            else:
                rest.append((frame, future))
        self.pending = rest
        return batch

    async def _alone(self, frame: pd.DataFrame, future: asyncio.Future) -> None:
        try:
            output = await self._in_model_thread(frame)
        except Exception as error:  # noqa: BLE001 - the request's own error goes back to it
            if not future.done():
                future.set_exception(error)
            return
        if not future.done():
            future.set_result(output)

    async def _in_model_thread(self, frame: pd.DataFrame) -> pd.DataFrame:
        return await asyncio.get_running_loop().run_in_executor(self.thread or model_thread(), self._call, frame)

    def _call(self, frame: pd.DataFrame) -> pd.DataFrame:
        self.on_call(len(frame))
        output = self.predict_frame(frame)
        if isinstance(output, pd.DataFrame):
            return output
        values = np.asarray(output)
        if values.ndim == 2:  # another flavor's (n, k) output, e.g. probabilities: one column each
            return pd.DataFrame(values, columns=[str(j) for j in range(values.shape[1])])
        return pd.DataFrame({"prediction": values.ravel()})


@functools.cache
def model_thread() -> concurrent.futures.ThreadPoolExecutor:
    """The one thread every model call runs on. Calls never overlap anyway (the batcher runs one at a
    time), and native thread pools (OpenMP, CatBoost's) are per calling thread: calls hopping between
    the threads of asyncio's default pool each woke a pool of their own, which spun for ~8 ms of CPU."""
    return concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlgate-model")


def _signature(frame: pd.DataFrame) -> tuple:
    return tuple(zip(frame.columns, frame.dtypes, strict=True))
