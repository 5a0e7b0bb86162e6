"""Which RUNNING runs a killed process left behind: the decision, on fake process tables."""

import math
import os

import pytest

from mlgate.adapters import tracking

HOST = "laptop"
NOW = 1_800_000_000.0
STARTED = 1_799_990_000.0  # when process 4242 started


def _tags(host=HOST, pid="4242", started=f"{STARTED:.3f}", heartbeat=None) -> dict[str, str]:
    tags = {"mlgate.host": host, "mlgate.pid": pid, "mlgate.pid_started": started}
    if heartbeat is not None:
        tags["mlgate.heartbeat"] = f"{heartbeat:.0f}"
    return {k: v for k, v in tags.items() if v is not None}


def _state(tags, table, grace_s=900.0):
    return tracking.liveness(tags, host=HOST, now=NOW, started=table.get, grace_s=grace_s)


@pytest.mark.parametrize(
    "tags, table, state",
    [
        (_tags(), {}, "dead"),  # killed: its pid is gone
        (_tags(), {4242: STARTED}, "alive"),  # still running (another user's dvc repro)
        (_tags(), {4242: STARTED + 0.4}, "alive"),  # the start time as another reading rounds it
        (_tags(), {4242: STARTED + 3600}, "dead"),  # the pid was reused by a later process
        (_tags(), {4242: math.nan}, "alive"),  # the pid exists, its start hidden from us
        (_tags(heartbeat=NOW - 5), {}, "dead"),  # kill -9 a moment ago: the pid decides
        (_tags(started=None), {4242: STARTED + 3600}, "alive"),  # no start time recorded: a live pid may be it
        (_tags(host="gpu-box"), {}, "unknown"),  # elsewhere, no heartbeat: cannot tell
        (_tags(host="gpu-box", heartbeat=NOW - 60), {}, "alive"),
        (_tags(host="gpu-box", heartbeat=NOW - 901), {}, "dead"),  # silent past the grace period
        (_tags(host=None, pid=None, started=None, heartbeat=NOW - 5000), {}, "dead"),  # a heartbeat-only worker
        ({}, {}, "unknown"),  # an older mlgate, or another tool
        (_tags(pid="not-a-pid"), {}, "unknown"),
        (_tags(pid="0"), {}, "unknown"),
    ],
)
def test_a_run_is_dead_only_when_its_process_provably_is(tags, table, state):
    assert _state(tags, table)[0] == state


def test_the_reason_names_the_process_and_what_proved_it_dead():
    assert _state(_tags(), {})[1] == "process 4242 on laptop is gone"
    assert "now belongs to a process started 2027-01-15T08:00:00+00:00" in _state(_tags(), {4242: NOW})[1]
    assert (
        _state(_tags(host="gpu-box", heartbeat=NOW - 1000), {})[1] == "no heartbeat from gpu-box for 1000s (grace 900s)"
    )


def test_this_process_as_recorded_is_alive_in_the_real_process_table():
    tags = tracking.owner_tags()

    assert tags["mlgate.pid"] == str(os.getpid())
    assert tracking.liveness(tags, host=tags["mlgate.host"], now=NOW, started=tracking.process_started)[0] == "alive"


def test_a_reaped_process_has_no_start_time():
    import subprocess
    import sys

    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True, timeout=60
    )

    assert tracking.process_started(int(ended.stdout)) is None


def test_the_summary_says_what_was_closed_and_why():
    closed = [tracking.ClosedRun("0123456789abcdef", "tune", "process 4242 on laptop is gone", nested=3)]

    assert tracking.closed_summary(closed) == (
        "closed 1 run left RUNNING by a killed process: "
        "tune 01234567 (process 4242 on laptop is gone), with 3 nested runs"
    )
