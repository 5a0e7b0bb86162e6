"""The serving micro-batcher: requests that wait together share one model call, each gets its own rows."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pandas as pd
import pytest

from mlgate.services.batching import MicroBatcher


class SlowModel:
    """Doubles column x; each call takes ``call_s`` and is recorded (rows, x values). Rows with x < 0 fail."""

    def __init__(self, call_s: float = 0.05):
        self.call_s = call_s
        self.calls: list[list[float]] = []
        self.lock = threading.Lock()

    def __call__(self, frame: pd.DataFrame) -> pd.DataFrame:
        with self.lock:
            self.calls.append(frame["x"].tolist())
        if (frame["x"] < 0).any():
            raise ValueError(f"negative x at row {int(np.argmax(frame['x'].to_numpy() < 0))}")
        threading.Event().wait(self.call_s)
        return pd.DataFrame({"prediction": frame["x"] * 2})


def frame(*xs: float) -> pd.DataFrame:
    return pd.DataFrame({"x": [float(x) for x in xs]})


def run(coroutine):
    return asyncio.run(coroutine)


def queued_behind_a_busy_call(model: SlowModel, frames: list[pd.DataFrame], max_rows: int = 100) -> list:
    """Predict x=0 alone, and while that call runs queue ``frames``; their outputs (or errors) in order."""

    async def scenario():
        batcher = MicroBatcher(model, max_rows=max_rows)
        busy = asyncio.create_task(batcher.predict(frame(0)))
        await asyncio.sleep(0.01)
        waiting = [asyncio.create_task(batcher.predict(f)) for f in frames]
        await busy
        return await asyncio.gather(*waiting, return_exceptions=True)

    return run(scenario())


def test_a_request_to_an_idle_model_is_predicted_alone_at_once():
    model = SlowModel(0.0)
    rows_per_call: list[int] = []

    async def scenario():
        batcher = MicroBatcher(model, max_rows=100, wait_s=5.0, on_call=rows_per_call.append)
        return await asyncio.wait_for(batcher.predict(frame(1, 2)), 2.0)  # no 5 s wait: nothing else was queued

    out = run(scenario())
    assert out["prediction"].tolist() == [2.0, 4.0]
    assert model.calls == [[1.0, 2.0]] and rows_per_call == [2]


def test_requests_that_arrive_while_the_model_is_busy_share_the_next_call_and_get_their_own_rows():
    model = SlowModel(0.1)

    async def scenario():
        batcher = MicroBatcher(model, max_rows=100)
        first = asyncio.create_task(batcher.predict(frame(1)))
        await asyncio.sleep(0.02)  # the first call is running
        rest = [asyncio.create_task(batcher.predict(frame(10 * i, 10 * i + 1))) for i in range(1, 5)]
        return await first, await asyncio.gather(*rest)

    first, rest = run(scenario())
    assert model.calls == [[1.0], [10.0, 11.0, 20.0, 21.0, 30.0, 31.0, 40.0, 41.0]]
    assert first["prediction"].tolist() == [2.0]
    for i, out in enumerate(rest, start=1):
        assert out["prediction"].tolist() == [20.0 * i, 20.0 * i + 2]
        assert out.index.tolist() == [0, 1]


def test_a_shared_call_holds_at_most_max_rows_and_keeps_arrival_order():
    model = SlowModel(0.05)
    outs = queued_behind_a_busy_call(model, [frame(i, i) for i in range(1, 6)], max_rows=4)
    assert model.calls == [[0.0], [1.0, 1.0, 2.0, 2.0], [3.0, 3.0, 4.0, 4.0], [5.0, 5.0]]
    assert [out["prediction"].tolist() for out in outs] == [[2.0 * i] * 2 for i in range(1, 6)]


def test_frames_with_other_columns_or_dtypes_never_share_a_call():
    model = SlowModel(0.05)
    outs = queued_behind_a_busy_call(
        model, [frame(1), pd.DataFrame({"x": [2]}), pd.DataFrame({"x": [3.0], "note": ["a"]}), frame(4)]
    )
    assert model.calls == [[0.0], [1.0, 4.0], [2], [3.0]]
    assert [out["prediction"].tolist() for out in outs] == [[2.0], [4], [6.0], [8.0]]


def test_a_failing_request_gets_its_own_error_and_its_neighbours_their_predictions():
    model = SlowModel(0.05)
    good, bad, other = queued_behind_a_busy_call(model, [frame(1), frame(-1), frame(2)])
    assert good["prediction"].tolist() == [2.0] and other["prediction"].tolist() == [4.0]
    assert isinstance(bad, ValueError) and "negative x at row 0" in str(bad)
    assert model.calls == [[0.0], [1.0, -1.0, 2.0], [1.0], [-1.0], [2.0]]  # the shared call, then each alone


def test_under_load_a_call_waits_for_the_clients_it_just_answered():
    """Four clients in a loop: without the wait they split into groups that alternate; with it, after
    the first calls, a call serves all four. Margins are wide (a 60 ms call, clients back 10 ms after
    their answer, a 40 ms wait) so a loaded machine does not change the pattern."""

    def calls_with(wait_s: float) -> list[int]:
        model = SlowModel(0.06)
        sizes: list[int] = []

        async def client(batcher: MicroBatcher, number: int) -> None:
            await asyncio.sleep(0.005 * number)  # all four arrive during the first call
            for i in range(6):
                await batcher.predict(frame(100 * number + i))
                await asyncio.sleep(0.01)  # the client's own turnaround before its next request

        async def scenario():
            batcher = MicroBatcher(model, max_rows=100, wait_s=wait_s, on_call=sizes.append)
            await asyncio.gather(*(client(batcher, c) for c in range(4)))

        run(scenario())
        return sizes

    alternating = calls_with(0.0)
    assert max(alternating) < 4 and sum(alternating) == 24
    waited = calls_with(0.04)
    assert waited[0] == 1 and waited.count(4) >= 4 and sum(waited) == 24


@pytest.mark.parametrize(("field", "value"), [("max_batch_rows", 0), ("batch_wait_ms", -1), ("batch_wait_ms", 5000)])
def test_bad_batching_settings_are_refused_naming_the_field(field, value):
    from mlgate.services.serving import ServeSettings

    with pytest.raises(ValueError, match=field):
        ServeSettings(model="churn", **{field: value})


def test_the_wait_ends_as_soon_as_the_answered_clients_are_back():
    """A wait_s far beyond the test's timeout: only ending the wait on the clients' return finishes."""
    model = SlowModel(0.01)
    sizes: list[int] = []

    async def client(batcher: MicroBatcher, start: float) -> None:
        for i in range(5):
            await batcher.predict(frame(start + i))

    async def scenario():
        batcher = MicroBatcher(model, max_rows=100, wait_s=60.0, on_call=sizes.append)
        await asyncio.wait_for(asyncio.gather(*(client(batcher, 100 * c) for c in range(3))), 10.0)

    run(scenario())
    assert sum(sizes) == 15 and sizes == [3] * 5


def test_cli_serve_passes_the_batching_options(monkeypatch):
    from click.testing import CliRunner

    from mlgate.cli import main
    from mlgate.services import serving

    started = []
    monkeypatch.setattr(serving, "serve", lambda settings, host, port: started.append(settings))
    result = CliRunner().invoke(main, ["serve", "--model", "churn", "--max-batch-rows", "64", "--batch-wait-ms", "0.5"])
    assert result.exit_code == 0, result.output
    assert (started[0].max_batch_rows, started[0].batch_wait_ms) == (64, 0.5)
    refused = CliRunner().invoke(main, ["serve", "--model", "churn", "--max-batch-rows", "0"])
    assert refused.exit_code != 0 and "max_batch_rows" in refused.output and len(started) == 1


def test_two_clients_that_alternate_are_brought_into_one_call():
    """Client B arrives while A's call runs: without the wait, calls alternate A, B, A, B, one each."""

    def calls_with(wait_s: float) -> list[int]:
        model = SlowModel(0.06)
        sizes: list[int] = []

        async def client(batcher: MicroBatcher, start: float) -> None:
            await asyncio.sleep(start)
            for i in range(6):
                await batcher.predict(frame(i))
                await asyncio.sleep(0.01)

        async def scenario():
            batcher = MicroBatcher(model, max_rows=100, wait_s=wait_s, on_call=sizes.append)
            await asyncio.gather(client(batcher, 0.0), client(batcher, 0.02))

        run(scenario())
        return sizes

    assert calls_with(0.0) == [1] * 12
    waited = calls_with(0.04)
    assert waited[0] == 1 and waited.count(2) >= 4 and sum(waited) == 12
