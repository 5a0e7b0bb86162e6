"""A version that failed to load is tried again at doubling intervals, not skipped until the alias moves."""

from __future__ import annotations

import asyncio
import time

import pytest

from mlgate.services.serving import LOAD_RETRY_MAX_S, LoadRetry, Metrics, ServeSettings, ServingState
from tests.serving_model import TinySource, tiny_settings


def test_each_failure_of_one_version_doubles_the_wait_up_to_five_minutes():
    retry = LoadRetry(first_s=5.0)
    waits = [retry.failed("2", now=0.0) for _ in range(9)]
    assert waits == [5, 10, 20, 40, 80, 160, 300, 300, 300]
    assert LOAD_RETRY_MAX_S == 300
    assert retry.waiting("2", now=299.9) and not retry.waiting("2", now=300.0)
    assert not retry.waiting("3", now=0.0)  # another version is tried at once


def test_another_version_starts_over_and_a_load_clears_the_count():
    retry = LoadRetry(first_s=5.0)
    retry.failed("2", now=0.0)
    retry.failed("2", now=5.0)
    assert retry.failed("3", now=6.0) == 5
    assert not retry.waiting("2", now=6.0)
    retry.loaded()
    assert not retry.waiting("3", now=6.0)
    assert retry.failed("3", now=7.0) == 5


@pytest.mark.parametrize("seconds", [0.0, -1.0])
def test_a_retry_interval_that_is_not_positive_is_refused_naming_the_field(seconds):
    with pytest.raises(ValueError, match="load_retry_s"):
        ServeSettings(model="churn", load_retry_s=seconds)


class FlakySource(TinySource):
    """Serves version "1"; version "2" fails to load its first ``failures`` times."""

    def __init__(self, failures: int):
        super().__init__()
        self.version, self.failures, self.attempts = "1", failures, 0

    def current(self) -> str:
        return self.version

    def load(self, version: str):
        if version == "2":
            self.attempts += 1
            if self.attempts <= self.failures:
                raise OSError("the artifact store did not answer")
        return super().load(version)


def refreshed(state: ServingState, times: int) -> None:
    for _ in range(times):
        asyncio.run(state.refresh())


def test_a_failed_version_is_not_loaded_again_on_every_poll_while_the_old_one_serves():
    source, metrics = FlakySource(failures=1), Metrics()
    state = ServingState(tiny_settings(load_retry_s=3600), source, metrics)
    refreshed(state, 1)
    source.version = "2"
    refreshed(state, 5)
    assert source.attempts == 1 and state.served.version == "1"
    assert metrics.load_failures._value.get() == 1


def test_a_passing_failure_is_served_at_the_next_try():
    source, metrics = FlakySource(failures=2), Metrics()
    state = ServingState(tiny_settings(load_retry_s=0.01), source, metrics)
    refreshed(state, 1)
    source.version = "2"
    for _ in range(3):  # fails, fails (after 0.01 s), loads (after 0.02 s)
        refreshed(state, 1)
        time.sleep(0.05)
    assert state.served.version == "2" and source.attempts == 3
    assert metrics.load_failures._value.get() == 2 and metrics.swaps._value.get() == 1


def test_with_nothing_served_a_failed_load_is_tried_on_every_poll():
    source = FlakySource(failures=2)
    source.version = "2"
    state = ServingState(tiny_settings(load_retry_s=3600), source, Metrics())
    refreshed(state, 3)
    assert state.served.version == "2" and source.attempts == 3
