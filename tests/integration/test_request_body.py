"""Large request bodies are parsed in a parser process of their own (`BodyParser`): the same frame or
the same refusal as in the server's own thread, and a parser process that dies costs one request."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from mlgate.services.request_body import BadRequest, BodyParser, parse_body


@pytest.fixture
def parser():
    isolating = BodyParser(isolate_bytes=0)  # every body, however small, goes to the parser process
    isolating.start()
    yield isolating
    isolating.close()


def _split(frame: pd.DataFrame) -> bytes:
    return json.dumps({"dataframe_split": json.loads(frame.to_json(orient="split", index=False))}).encode()


def test_a_body_parsed_in_the_parser_process_gives_the_frame_the_thread_gives(parser):
    frame = pd.DataFrame(
        {
            "tenure": [1, 72, None, 3],
            "contract": ["Two year", None, "Two year", "Month-to-month"],
            "mixed": [1, "1", True, None],  # equal as keys, not as values: left as they came
            "x": 0.5,
        }
    )
    body = _split(frame)

    parsed = parser.parse(body, "application/json")
    pd.testing.assert_frame_equal(parsed, parse_body(body, "application/json"))
    assert parsed["contract"][0] is parsed["contract"][2]  # one object per distinct text
    assert [type(v) for v in parsed["mixed"][:3]] == [int, str, bool]
    csv = frame.to_csv(index=False).encode()
    pd.testing.assert_frame_equal(parser.parse(csv, "text/csv"), parse_body(csv, "text/csv"))


def test_a_refusal_in_the_parser_process_reaches_the_server_as_itself(parser):
    wide = json.dumps({"dataframe_split": {"columns": [f"c{j}" for j in range(50)], "data": []}}).encode()
    with pytest.raises(BadRequest, match="50 columns") as refused:
        parser.parse(wide, "application/json", max_columns=10)
    assert (refused.value.status, refused.value.code) == (422, "INVALID_INPUT")
    with pytest.raises(BadRequest) as nested:
        parser.parse(b"[" * 100_000, "application/json")
    assert (nested.value.status, nested.value.message) == (400, "invalid JSON: nested too deeply")


def test_a_killed_parser_process_costs_its_request_a_503_and_the_next_is_parsed():
    body = _split(pd.DataFrame({"a": [1, 2]}))
    others = set(multiprocessing.active_children())
    parser = BodyParser(isolate_bytes=0)
    try:
        parser.start()
        (child,) = set(multiprocessing.active_children()) - others
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)

        with pytest.raises(BadRequest) as died:
            parser.parse(body, "application/json")
        assert (died.value.status, died.value.code) == (503, "PARSER_DIED")
        assert parser.parse(body, "application/json")["a"].tolist() == [1, 2]
    finally:
        parser.close()


# A server holding a started BodyParser, killed as the OOM killer kills: its parser processes' pids first.
SERVER_KILLED = """
import multiprocessing, os, signal
from mlgate.services.request_body import BodyParser
parser = BodyParser(processes=2)
parser.start()
parser.parse(b"x\\n" + b"1\\n" * 10, "text/csv")  # both processes spawned (the pool starts one per task)
print(" ".join(str(child.pid) for child in multiprocessing.active_children()), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_parser_processes_end_when_their_server_is_killed():
    server = subprocess.run([sys.executable, "-c", SERVER_KILLED], capture_output=True, text=True, timeout=120)
    assert server.returncode == -signal.SIGKILL, server.stderr
    children = [int(pid) for pid in server.stdout.split()]
    assert children, server.stdout + server.stderr

    deadline = time.monotonic() + 30
    while (alive := [pid for pid in children if _running(pid)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert alive == [], f"parser processes {alive} outlived their server"


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False
