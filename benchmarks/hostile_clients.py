"""Hostile clients against a real `mlgate serve`: what abuse costs the server and its well-behaved clients.

Builds a registered model in a temporary copy of the project (the stages on the tests' tiny budget, then
`promote` to 'production'), or takes one (--tracking-uri with --model [--alias]). Each case starts a fresh
`mlgate serve` on 127.0.0.1 at a free port, logging predictions to Parquet files (case `sql_locked`: to a
SQLite table), its address space capped at its start-up size plus --memory-cap-mb. While
--clients well-behaved clients (keep-alive, a few rows each, a steady rate, a unique X-Request-Id each)
and a /health poller (every 20 ms) run, one case sends its abuse. Per case: the abusive requests' status
codes, the server's RSS before/peak/after (its process tree, every 50 ms, shutdown included), /health
latency during the abuse, and the well-behaved requests sent/answered/failed. The server is then stopped
with SIGTERM (so it flushes its log), and every answered well-behaved request's rows are looked up in the
prediction log by `request_id` and `row`, the request id being the one the server answered with.
Goal per case: RSS growth <= 200 MB, /health max <= 100 ms, no well-behaved request or logged row lost.
Run: `.venv/bin/python benchmarks/hostile_clients.py [--cases a,b] [--seconds 10] [--clients 4] [--hold-seconds 40]
[--json out.json]`.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import http.client
import json
import os
import resource
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
from tiny_model import BIN, REPO, build_model, environment

GOAL_GROWTH_MB = 200
GOAL_HEALTH_MS = 100
CHECK = {True: "ok", False: "FAILED", None: "-"}  # the finding's own check, beside the goal's verdict
MAX_BODY_BYTES = 5 * 1024 * 1024  # `mlgate serve --max-body-mb`'s default: abusive bodies stay under it
LOG_ROTATE_ROWS = 50_000  # the prediction log's flush size: case log_columns sends more than this
ECHO_LIMIT = 64 * 1024  # an error body larger than this echoes the request back

# Runs against the tracking store: the model's input columns, from its signature.
RESOLVE = """
import json, sys
from mlflow.models import get_model_info
signature = get_model_info(f"models:/{sys.argv[1]}@{sys.argv[2]}").signature
print(json.dumps(signature.inputs.input_names() if signature is not None and signature.inputs is not None else []))
"""

# Runs in its own capped process (a log the abuse made huge must not take the benchmark down): which
# (request_id, row) pairs the log holds for the ids asked about, and those rows in full for the probed ids.
READ_LOG = """
import datetime as dt, json, sys
from mlgate.services import prediction_log
asked = json.load(open(sys.argv[2]))
frame = prediction_log.read(sys.argv[1], dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc))
ids = frame["request_id"].astype(str)
mine = frame[ids.isin(set(asked["ids"]))]
found = {}
for request_id, row in zip(mine["request_id"].astype(str), mine["row"].astype(int)):
    found.setdefault(request_id, []).append(int(row))
probes = frame[ids.isin(set(asked["probes"]))].astype(str).to_dict(orient="records")
print(json.dumps({"rows": len(frame), "columns": len(frame.columns), "found": found, "probes": probes}))
"""


# The /health poller's process: CLOCK_MONOTONIC is system-wide on Linux, so its times compare with ours.
POLL_HEALTH = """
import http.client, json, signal, sys, time
port, out = int(sys.argv[1]), sys.argv[2]
stopped = []
signal.signal(signal.SIGTERM, lambda *_: stopped.append(True))
samples = []
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
while not stopped:
    sent = time.monotonic()
    try:
        conn.request("GET", "/health")
        response = conn.getresponse()
        response.read()
        ok = response.status == 200
    except (OSError, http.client.HTTPException):
        ok = False
        conn.close()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    samples.append((sent, (time.monotonic() - sent) * 1000, ok))
    time.sleep(max(0.0, 0.02 - (time.monotonic() - sent)))
conn.close()
json.dump(samples, open(out, "w"))
"""


# --- the server ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One `mlgate serve` in its own process group, its address space capped once it is ready."""

    def __init__(self, args: list[str], port: int, env: dict[str, str], cwd: Path, log: Path):
        self.args, self.port, self.env, self.cwd, self.log = args, port, env, cwd, log
        self.proc: subprocess.Popen | None = None
        self.stopped_by_us = False

    def start(self, cap_mb: int, timeout_s: float = 300) -> None:
        started = time.monotonic()
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                self.args, cwd=self.cwd, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        while time.monotonic() - started < timeout_s:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlgate serve exited {self.proc.returncode} before it was ready:\n{self.tail()}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                if request(self.port, "GET", "/ready")[0] == 200:
                    # capped now, not at exec: imports and the model load reserve address space unevenly
                    process = psutil.Process(self.proc.pid)
                    limit = process.memory_info().vms + cap_mb * 1024 * 1024
                    process.rlimit(psutil.RLIMIT_AS, (limit, limit))
                    return
            time.sleep(0.2)
        raise RuntimeError(f"mlgate serve was not ready after {timeout_s:.0f} s:\n{self.tail()}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace_s: float = 90) -> None:
        """SIGTERM (the server flushes its prediction log), then SIGKILL after ``grace_s``."""
        if not self.alive():
            return
        self.stopped_by_us = True
        for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)  # the group we created: the server and its children only
            try:
                self.proc.wait(wait_s)
                return
            except subprocess.TimeoutExpired:
                continue

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30,
) -> tuple[int, bytes, dict[str, str]]:
    """One request on a fresh connection: (status, body, headers)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body, headers or {})
        response = conn.getresponse()
        return response.status, response.read(), {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()


class RssSampler(threading.Thread):
    """RSS of the server's process tree every 50 ms until it exits; kills it past the cap (its own
    address-space limit should stop it first, but children are not covered by it)."""

    def __init__(self, server: Server, cap_mb: int):
        super().__init__(daemon=True)
        self.server, self.cap_mb = server, cap_mb
        self.samples: list[tuple[float, float]] = []
        self.start_mb: float | None = None
        self.killed_over_cap = False

    def run(self) -> None:
        root = psutil.Process(self.server.proc.pid)
        while self.server.alive():
            total = 0
            with contextlib.suppress(psutil.NoSuchProcess):
                for process in (root, *root.children(recursive=True)):
                    with contextlib.suppress(psutil.NoSuchProcess):
                        total += process.memory_info().rss
            mb = total / 2**20
            if mb:
                self.samples.append((time.monotonic(), mb))
                self.start_mb = self.start_mb or mb
                if mb - self.start_mb > self.cap_mb and not self.killed_over_cap:
                    self.killed_over_cap = True
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.server.proc.pid, signal.SIGKILL)
            time.sleep(0.05)

    def now_mb(self) -> float:
        return self.samples[-1][1] if self.samples else float("nan")

    def peak_mb(self, since: float) -> float:
        return max((mb for at, mb in self.samples if at >= since), default=float("nan"))


class HealthPoller:
    """GET /health every 20 ms on one keep-alive connection, from a process of its own: in this one, the
    threads building abusive bodies would hold the GIL and add their time to its latencies."""

    def __init__(self, port: int, folder: Path):
        self.port, self.out = port, folder / "health.json"
        self.proc: subprocess.Popen | None = None
        self.samples: list[tuple[float, float, bool]] = []  # (monotonic time sent, latency ms, ok)

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", POLL_HEALTH, str(self.port), str(self.out)])

    def stop(self) -> None:
        """Ends the poller (it finishes the request in flight, at most its 10 s timeout) and reads its samples."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            return
        self.samples = [tuple(sample) for sample in json.loads(self.out.read_text())]

    def between(self, start: float, end: float) -> list[tuple[float, bool]]:
        return [(ms, ok) for at, ms, ok in self.samples if start <= at <= end]


class WellBehaved(threading.Thread):
    """One keep-alive client POSTing a few rows every ``interval_s`` with a unique X-Request-Id; keeps the
    id the server answered with (a server may make its own) and the rows it sent under it."""

    def __init__(self, port: int, bodies: list[bytes], rows: int, name: str, interval_s: float = 0.1):
        super().__init__(daemon=True)
        self.port, self.bodies, self.rows, self.label, self.interval_s = port, bodies, rows, name, interval_s
        self.sent = 0
        self.answered: dict[str, int] = {}  # request id -> rows
        self.failures: collections.Counter = collections.Counter()
        self.done = threading.Event()

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            while not self.done.is_set():
                sent = time.monotonic()
                ours = f"{self.label}-{self.sent}-{uuid.uuid4().hex[:8]}"
                body = self.bodies[self.sent % len(self.bodies)]
                self.sent += 1
                try:
                    conn.request(
                        "POST", "/invocations", body, {"Content-Type": "application/json", "X-Request-Id": ours}
                    )
                    response = conn.getresponse()
                    response.read()
                    if response.status == 200:
                        self.answered[response.getheader("X-Request-Id") or ours] = self.rows
                    else:
                        self.failures[str(response.status)] += 1
                except (OSError, http.client.HTTPException) as error:
                    self.failures[type(error).__name__] += 1
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                self.done.wait(max(0.0, self.interval_s - (time.monotonic() - sent)))
        finally:
            conn.close()


# --- bodies -------------------------------------------------------------------------------------


def split_body(frame: pd.DataFrame) -> bytes:
    split = json.loads(frame.to_json(orient="split", index=False))
    return json.dumps({"dataframe_split": {"columns": split["columns"], "data": split["data"]}}).encode()


def rows_under_limit(frame: pd.DataFrame, wanted: int) -> int:
    """The most rows, up to ``wanted``, whose body stays under the server's default body limit."""
    per_row = len(split_body(frame.head(200))) / 200
    return min(wanted, int(MAX_BODY_BYTES * 0.95 / per_row))


def resample(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    return frame.sample(rows, replace=True, random_state=seed).reset_index(drop=True)


# --- the cases ----------------------------------------------------------------------------------


@dataclass
class Abuse:
    """What a case's abuse reports: the abusive requests' statuses, a check of the finding, notes."""

    statuses: collections.Counter = field(default_factory=collections.Counter)
    check: str = ""  # what the finding's own check found
    check_ok: bool | None = None  # None: no check beyond the goal (request_ids settles its own from `probes`)
    notes: list[str] = field(default_factory=list)
    probes: dict[str, str] = field(default_factory=dict)  # request id -> what to look for in its logged rows


@dataclass
class Context:
    port: int
    frame: pd.DataFrame  # complete telco rows, the model's input columns only
    deadline: float  # monotonic time the abuse must be over by
    hold_seconds: float
    sql_lock: Path | None = None  # case sql_locked: the SQLite log file to hold locked


def post(
    ctx: Context,
    body: bytes,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> tuple[str, bytes, dict[str, str]]:
    """One abusive POST; its status as text, or the error that stood for one."""
    try:
        status, reply, answer_headers = request(
            ctx.port,
            "POST",
            "/invocations",
            body,
            {"Content-Type": content_type, **(headers or {})},
            timeout=max(1.0, ctx.deadline - time.monotonic()),
        )
        return str(status), reply, answer_headers
    except (OSError, http.client.HTTPException) as error:
        return type(error).__name__, b"", {}


def case_baseline(ctx: Context) -> Abuse:
    """No abuse: the well-behaved clients alone, under the same machine load, for the other cases to compare with."""
    return Abuse()


def case_log_columns(ctx: Context) -> Abuse:
    """Finding 1: one 1-row request with 50,000 unknown columns (about 540 KB), then big requests past
    the log's flush size, so the flush concatenates the wide row with every other row."""
    abuse = Abuse()
    wide = resample(ctx.frame, 1, seed=1)
    extra = pd.DataFrame(0, index=wide.index, columns=[f"u{j:05d}" for j in range(50_000)])
    status, _, _ = post(ctx, split_body(pd.concat([wide, extra], axis=1)))
    abuse.statuses[status] += 1
    rows = rows_under_limit(ctx.frame, 25_000)
    for seed in range(-(-LOG_ROTATE_ROWS // rows)):
        if time.monotonic() > ctx.deadline:
            break
        status, _, _ = post(ctx, split_body(resample(ctx.frame, rows, seed=seed)))
        abuse.statuses[status] += 1
    abuse.notes.append(f"1 row x 50,000 unknown columns, then {sum(abuse.statuses.values()) - 1} x {rows:,} rows")
    return abuse


def case_records_keys(ctx: Context) -> Abuse:
    """Finding 2: `dataframe_records` of 6,000 records, each with its own key (a 71 KB body)."""
    body = json.dumps({"dataframe_records": [{f"k{j}": 0} for j in range(6_000)]}, separators=(",", ":")).encode()
    status, _, _ = post(ctx, body)
    return Abuse(statuses=collections.Counter([status]), notes=[f"{len(body) / 1024:.0f} KB"])


def case_csv_columns(ctx: Context) -> Abuse:
    """Finding 3: a CSV body with 100,000 columns and one row (0.9 MB)."""
    columns = 100_000
    body = (",".join(f"c{j}" for j in range(columns)) + "\n" + ",".join("0" for _ in range(columns)) + "\n").encode()
    status, _, _ = post(ctx, body, "text/csv")
    return Abuse(statuses=collections.Counter([status]), notes=[f"{len(body) / 2**20:.1f} MB"])


def case_slow_clients(ctx: Context) -> Abuse:
    """Finding 4: 300 half-sent requests (150 stop inside the headers, 150 inside the body), held until
    the server lets go of them or --hold-seconds pass; then 20 clients that disconnect in the middle of their
    body, whose requests a server should neither log as errors nor count as 500s."""
    abuse = Abuse()
    head = (
        f"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1:{ctx.port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: 1000\r\n"
    ).encode()
    half = [head[:40]] * 150 + [head + b"\r\n" + b"{" * 500] * 150
    sockets: list[tuple[socket.socket, float]] = []
    try:
        for data in half:
            try:  # a server with a connection limit may refuse or close some of them at once
                sock = socket.create_connection(("127.0.0.1", ctx.port), timeout=5)
            except OSError as error:
                abuse.statuses[f"connect {type(error).__name__}"] += 1
                continue
            sockets.append((sock, time.monotonic()))
            with contextlib.suppress(OSError):
                sock.sendall(data)
            sock.setblocking(False)
        held_s, open_ = [], dict(enumerate(sockets))
        hold_until = min(ctx.deadline, time.monotonic() + ctx.hold_seconds)
        while open_ and time.monotonic() < hold_until:
            for i, (sock, opened) in list(open_.items()):
                try:
                    data = sock.recv(4096)
                except BlockingIOError:
                    continue
                except OSError as error:
                    data, status = b"", type(error).__name__
                else:
                    status = data.split(b" ", 2)[1].decode(errors="replace") if data.startswith(b"HTTP/") else "closed"
                abuse.statuses[status] += 1
                held_s.append(time.monotonic() - opened)
                del open_[i]
            time.sleep(0.05)
        if open_:
            abuse.statuses["held"] += len(open_)
            held_s += [time.monotonic() - opened for _, opened in open_.values()]
        abuse.notes.append(
            f"300 half-sent held up to {max(held_s, default=0):.1f} s, "
            f"{len(open_)} still open after {ctx.hold_seconds:g} s"
        )
    finally:
        for sock, _ in sockets:
            sock.close()
    errors_before = count_500s(ctx.port)
    for _ in range(20):
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", ctx.port), timeout=5) as sock:
            sock.sendall(head + b"\r\n" + b"{" * 500)
            time.sleep(0.05)
    time.sleep(0.5)
    disconnect_500s = count_500s(ctx.port) - errors_before
    abuse.check_ok = not open_ and disconnect_500s == 0
    abuse.check = (
        f"{len(open_)}/300 still held after {ctx.hold_seconds:g} s; "
        f"{disconnect_500s:g} of 20 disconnects counted as 500"
    )
    return abuse


def count_500s(port: int) -> float:
    """`mlgate_requests{endpoint="invocations", status="500"}` from /metrics (0 when absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        status, text, _ = request(port, "GET", "/metrics", timeout=10)
    except (OSError, http.client.HTTPException):
        return float("nan")
    if status != 200:
        return float("nan")
    return sum(
        sample.value
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
        if sample.name == "mlgate_requests_total"
        and sample.labels.get("endpoint") == "invocations"
        and sample.labels.get("status") == "500"
    )


def case_sql_locked(ctx: Context) -> Abuse:
    """Finding 5: the SQLite prediction log held locked by another connection's write transaction while
    16 requests of 25,000 rows arrive; released once they are answered and --hold-seconds have passed
    (a fixed time, longer than the SQLite driver's 30 s busy timeout, so the outcome does not depend
    on how fast the machine answers the 16). The case lasts until the server has written what it held
    through the lock, so the measures cover that catching up too."""
    abuse = Abuse()
    rows = rows_under_limit(ctx.frame, 25_000)
    holder = sqlite3.connect(ctx.sql_lock, timeout=30, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        locked = time.monotonic()
        for seed in range(16):
            if time.monotonic() > ctx.deadline:
                break
            status, _, _ = post(ctx, split_body(resample(ctx.frame, rows, seed=seed)))
            abuse.statuses[status] += 1
        time.sleep(max(0.0, min(ctx.deadline, locked + ctx.hold_seconds) - time.monotonic()))
        abuse.notes.append(f"the log locked for {time.monotonic() - locked:.0f} s")
        holder.execute("ROLLBACK")
    finally:
        holder.close()
    abuse.notes.append(f"{sum(abuse.statuses.values())} x {rows:,} rows while the log was locked")
    caught_up = wait_for_sql_log(ctx.sql_lock, ctx.deadline)
    abuse.notes.append(
        "the log had not caught up by the case's deadline"
        if caught_up is None
        else f"the log caught up {caught_up:.1f} s after the lock was released"
    )
    return abuse


def wait_for_sql_log(path: Path, deadline: float, quiet_s: float = 2.0) -> float | None:
    """Seconds from now until the SQLite log's row count last changed, once it holds rows and has not
    changed for ``quiet_s`` (what the writer held is written); None if that is not so by ``deadline``."""
    started = time.monotonic()
    last, changed = None, started
    while time.monotonic() < deadline:
        try:
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
                count = db.execute("SELECT count(*) FROM mlgate_predictions").fetchone()[0]
        except sqlite3.Error:  # no table yet, or the writer holds the lock
            count = last or 0
        now = time.monotonic()
        if count != last:
            last, changed = count, now
        elif count and now - changed >= quiet_s:
            return changed - started
        time.sleep(0.25)
    return None


def case_request_ids(ctx: Context) -> Abuse:
    """Finding 6: two requests sent with the same X-Request-Id, and one whose input columns are named
    like the log's own (`row`, `request_id`, `timestamp`, `model_version`)."""
    abuse = Abuse()
    answered = []
    for seed in (1, 2):
        status, _, headers = post(
            ctx, split_body(resample(ctx.frame, 2, seed=seed)), headers={"X-Request-Id": "hostile-same-id"}
        )
        abuse.statuses[status] += 1
        if status == "200":
            answered.append(headers.get("x-request-id", "hostile-same-id"))
    if len(answered) == 2:
        if answered[0] == answered[1]:
            abuse.probes[answered[0]] = "same-id:4"  # both requests' rows under one id: 4 rows, not 2
        else:
            abuse.probes.update({answered[0]: "same-id:2", answered[1]: "same-id:2"})
    named = resample(ctx.frame, 2, seed=3).assign(
        row=987654, request_id="client-request-id", timestamp="client-timestamp", model_version="client-model-version"
    )
    status, _, headers = post(ctx, split_body(named), headers={"X-Request-Id": f"hostile-named-{uuid.uuid4().hex[:8]}"})
    abuse.statuses[status] += 1
    if status == "200":
        abuse.probes[headers.get("x-request-id", "")] = "named"
    else:
        abuse.notes.append(f"columns named like the log's own: {status}")
    return abuse


def settle_request_ids(abuse: Abuse, logged: dict) -> None:
    """The check of case request_ids, once the log is read: each request's rows under an id of its own,
    and the values sent in columns named like the log's own found in its logged rows."""
    problems = []
    for request_id, probe in abuse.probes.items():
        rows = [r for r in logged.get("probes", []) if r.get("request_id") == request_id]
        if probe.startswith("same-id"):
            if int(probe.split(":")[1]) != 2:
                problems.append("two requests answered under one id")
            elif len(rows) != 2:
                problems.append(f"id {request_id}: {len(rows)} logged rows, not 2")
        else:
            sent = {"987654", "client-request-id", "client-timestamp", "client-model-version"}
            # anywhere in the row: a column of its own, or inside a JSON text of the extra inputs
            text = " ".join(value for row in rows for value in row.values())
            lost = sorted(value for value in sent if value not in text)
            if len(rows) != 2 or lost:
                problems.append(f"columns named like the log's: {len(rows)} rows logged, values not logged {lost}")
    abuse.check_ok = not problems
    abuse.check = "; ".join(problems) or "distinct ids, every sent value logged"


def case_nested_json(ctx: Context) -> Abuse:
    """Finding 7: JSON nested 100,000 deep (Python's parser recurses)."""
    depth = 100_000
    body = b'{"inputs": ' + b"[" * depth + b"]" * depth + b"}"
    status, _, _ = post(ctx, body)
    return Abuse(
        statuses=collections.Counter([status]),
        check_ok=status != "500" and status.isdigit(),
        check=f"answered {status}",
        notes=[f"{len(body) / 1024:.0f} KB"],
    )


def case_echo_422(ctx: Context) -> Abuse:
    """Finding 7: a 4 MB text in a numeric column, which the 422 quoted back in full."""
    numeric = [c for c in ctx.frame.columns if pd.api.types.is_float_dtype(ctx.frame[c])]
    one = resample(ctx.frame, 1, seed=4).astype({numeric[0]: object})
    one.loc[0, numeric[0]] = "9" * (4 * 2**20)
    body = split_body(one)
    status, reply, _ = post(ctx, body)
    return Abuse(
        statuses=collections.Counter([status]),
        check_ok=len(reply) <= ECHO_LIMIT and status.startswith("4"),
        check=f"{status} of {len(reply):,} bytes to a {len(body) / 2**20:.1f} MB body",
    )


def case_inf_value(ctx: Context) -> Abuse:
    """`inf` in a numeric column, as JSON (Infinity, -Infinity, NaN literals) and as CSV."""
    abuse = Abuse()
    numeric = [c for c in ctx.frame.columns if pd.api.types.is_float_dtype(ctx.frame[c])]
    for literal in ("Infinity", "-Infinity", "1e999"):
        one = resample(ctx.frame, 1, seed=5)
        one[numeric[0]] = 0.0
        body = split_body(one).replace(b"0.0", literal.encode(), 1)
        status, reply, _ = post(ctx, body)
        abuse.statuses[status] += 1
        if literal == "Infinity":
            abuse.notes.append(f"Infinity answered {status} {reply[:100].decode(errors='replace')}")
    csv = resample(ctx.frame, 1, seed=6).assign(**{numeric[0]: float("inf")}).to_csv(index=False).encode()
    status, _, _ = post(ctx, csv, "text/csv")
    abuse.statuses[status] += 1
    # a non-finite number is no value the model was trained on: refused naming the column, never predicted
    refused = sum(count for status, count in abuse.statuses.items() if status in ("400", "422"))
    abuse.check_ok = refused == 4
    abuse.check = f"{refused} of 4 refused with 400/422, {abuse.statuses.get('200', 0)} predicted"
    abuse.notes.append(f"inf in '{numeric[0]}': JSON Infinity, -Infinity, 1e999, CSV inf")
    return abuse


CASES: dict[str, Callable[[Context], Abuse]] = {
    "baseline": case_baseline,
    "log_columns": case_log_columns,
    "records_keys": case_records_keys,
    "csv_columns": case_csv_columns,
    "slow_clients": case_slow_clients,
    "sql_locked": case_sql_locked,
    "request_ids": case_request_ids,
    "nested_json": case_nested_json,
    "echo_422": case_echo_422,
    "inf_value": case_inf_value,
}


# --- one case against a fresh server ------------------------------------------------------------


def run_case(
    name: str, target: dict, frame: pd.DataFrame, env: dict[str, str], scratch: Path, args: argparse.Namespace
) -> dict:
    folder = scratch / name
    folder.mkdir()
    sql_file = folder / "predictions.db" if name == "sql_locked" else None
    log_target = f"sqlite:///{sql_file}" if sql_file else str(folder / "predictions")
    port = free_port()
    server = Server(
        [
            str(BIN / "mlgate"),
            "serve",
            "--model",
            target["model"],
            "--alias",
            target["alias"],
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--prediction-log",
            log_target,
        ],
        port,
        env,
        target["cwd"],
        folder / "server.log",
    )
    small = [split_body(resample(frame, 3, seed=100 + i)) for i in range(50)]
    clients = [WellBehaved(port, small, 3, f"wb-{name}-{i}") for i in range(args.clients)]
    health = HealthPoller(port, folder)
    try:
        server.start(args.memory_cap_mb)
        sampler = RssSampler(server, args.memory_cap_mb)
        sampler.start()
        for worker in (health, *clients):
            worker.start()
        time.sleep(1.0)  # a baseline for /health and RSS before the abuse
        rss_before = sampler.now_mb()
        abuse_start = time.monotonic()
        ctx = Context(port, frame, abuse_start + args.case_timeout, args.hold_seconds, sql_file)
        outcome: list = []
        abuser = threading.Thread(target=lambda: outcome.append(_guarded(CASES[name], ctx)), daemon=True)
        abuser.start()
        abuser.join(args.case_timeout)
        timed_out = abuser.is_alive()
        if timed_out:
            server.stop(grace_s=5)  # frees whatever the abuse is blocked on
            abuser.join(10)
        # the well-behaved clients and /health poller run on for at least --seconds after the abuse starts
        time.sleep(max(1.0, abuse_start + args.seconds - time.monotonic()))
        abuse_end = time.monotonic()
        for client in clients:
            client.done.set()
        health.stop()
        for client in clients:
            client.join(35)
        rss_after = sampler.now_mb()
        died = server.proc.poll() if not server.stopped_by_us else None
        server.stop()
        sampler.join(5)
        abuse = outcome[0] if outcome else Abuse(notes=["the abuse did not finish"])
        if timed_out:
            abuse.notes.append(f"stopped at the {args.case_timeout:g} s case limit")
    finally:
        for client in clients:
            client.done.set()
        health.stop()
        server.stop(grace_s=5)

    answered = {rid: rows for client in clients for rid, rows in client.answered.items()}
    logged = read_log(log_target, sorted(answered), sorted(abuse.probes), folder, env)
    if name == "request_ids":
        settle_request_ids(abuse, logged)
    missing_rows = sum(rows - len(set(logged.get("found", {}).get(rid, []))) for rid, rows in answered.items())
    baseline_health = [ms for ms, ok in health.between(abuse_start - 1.0, abuse_start) if ok]
    during = health.between(abuse_start, abuse_end)
    health_ms = [ms for ms, _ in during]
    server_text = server.log.read_text(errors="replace")
    errors = [line for line in server_text.splitlines() if " ERROR " in line or line.startswith("Traceback")]
    # numpy's MemoryError reads "Unable to allocate 9.31 GiB for an array ..."; the log keeps only the message
    over_cap = sampler.killed_over_cap or any(
        sign in server_text for sign in ("MemoryError", "Unable to allocate", "Cannot allocate memory")
    )
    result = {
        "statuses": dict(abuse.statuses),
        "rss_before_mb": rss_before,
        "rss_peak_mb": sampler.peak_mb(abuse_start),
        "rss_after_mb": rss_after,
        "health_baseline_p50_ms": statistics.median(baseline_health) if baseline_health else float("nan"),
        "health_p50_ms": statistics.median(health_ms) if health_ms else float("nan"),
        "health_p99_ms": float(np.percentile(health_ms, 99)) if health_ms else float("nan"),
        "health_max_ms": max(health_ms, default=float("nan")),
        "health_failed": sum(not ok for _, ok in during),
        "clients_sent": sum(c.sent for c in clients),
        "clients_answered": len(answered),
        "clients_failed": sum(sum(c.failures.values()) for c in clients),
        "client_failures": dict(sum((c.failures for c in clients), collections.Counter())),
        "rows_expected": sum(answered.values()),
        "rows_missing": missing_rows,
        "log_error": logged.get("error"),
        "log_rows": logged.get("rows"),
        "log_columns": logged.get("columns"),
        "server": (
            "killed over cap"
            if sampler.killed_over_cap
            else "over cap (MemoryError)"
            if over_cap
            else f"died ({died})"
            if died is not None
            else "ok"
        ),
        "server_errors_logged": len(errors),
        "server_first_error": errors[0][:300] if errors else None,
        "abuse_s": abuse_end - abuse_start,
        "check": abuse.check,
        "check_ok": abuse.check_ok,
        "notes": abuse.notes,
    }
    result["rss_growth_mb"] = result["rss_peak_mb"] - rss_before
    result["goal"] = {
        f"growth <= {GOAL_GROWTH_MB} MB": result["rss_growth_mb"] <= GOAL_GROWTH_MB and not over_cap,
        f"/health max <= {GOAL_HEALTH_MS} ms": result["health_max_ms"] <= GOAL_HEALTH_MS
        and not result["health_failed"],
        "no well-behaved request or row lost": (
            result["clients_failed"] == 0
            and missing_rows == 0
            and not logged.get("error")
            and result["clients_answered"] > 0
        ),
    }
    result["passed"] = all(result["goal"].values())
    return result


def _guarded(case: Callable[[Context], Abuse], ctx: Context) -> Abuse:
    """The case's own failure (a refused connection, a dead server) as a note, not a crash of the run."""
    try:
        return case(ctx)
    except Exception as error:  # noqa: BLE001 - reported in the case's row
        return Abuse(notes=[f"the abuse failed: {type(error).__name__}: {error}"], check_ok=False, check="not run")


def read_log(target: str, ids: list[str], probes: list[str], folder: Path, env: dict[str, str]) -> dict:
    """The log's rows for ``ids`` (and ``probes`` in full), read by `mlgate.services.prediction_log.read` in a
    process of its own with its address space capped at 8 GB."""
    asked = folder / "asked.json"
    asked.write_text(json.dumps({"ids": ids, "probes": probes}))
    cap = 8 * 2**30

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    try:
        out = subprocess.run(
            [sys.executable, "-c", READ_LOG, target, str(asked)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            preexec_fn=limit,
        )
    except subprocess.TimeoutExpired:
        return {"error": "reading the log took over 300 s"}
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["?"])[-1][:300]}
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- the model ----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {', '.join(CASES)}")
    parser.add_argument(
        "--seconds",
        type=float,
        default=10,
        help="how long clients and /health run from the abuse's start (longer if the abuse takes longer)",
    )
    parser.add_argument(
        "--hold-seconds",
        type=float,
        default=40,
        help="case slow_clients: how long half-sent requests "
        "wait for the server to let go of them; case "
        "sql_locked: how long the log stays locked",
    )
    parser.add_argument("--clients", type=int, default=4, help="well-behaved clients, 10 requests/s of 3 rows each")
    parser.add_argument("--case-timeout", type=float, default=120, help="the abuse of one case is cut off after this")
    parser.add_argument(
        "--memory-cap-mb",
        type=int,
        default=2048,
        help="the server's address space beyond its size when ready; more RSS growth kills it",
    )
    parser.add_argument("--tracking-uri", help="use an existing model in this store (with --model)")
    parser.add_argument("--model", help="registered model name in --tracking-uri")
    parser.add_argument("--alias", default="production", help="alias of --model to serve")
    parser.add_argument(
        "--data", type=Path, default=REPO / "data/source/telco_churn.csv.gz", help="rows for request bodies"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s) {unknown}; the cases are {', '.join(CASES)}")
    if bool(args.model) != bool(args.tracking_uri):
        parser.error("give --tracking-uri and --model together (without both, the script builds its own model)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the finally blocks stop the servers

    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="mlgate-hostile-") as tmp:
        scratch = Path(tmp)
        if args.model:
            target = {"model": args.model, "alias": args.alias, "cwd": scratch, "env": environment(args.tracking_uri)}
        else:
            model, env, _ = build_model(scratch, "hostile-clients benchmark")
            target = {"model": model, "alias": "production", "cwd": scratch / "project", "env": env}
        out = subprocess.run(
            [sys.executable, "-c", RESOLVE, target["model"], target["alias"]],
            env=target["env"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if out.returncode != 0:
            raise SystemExit(f"cannot resolve the model:\n{out.stderr[-3000:]}")
        columns = json.loads(out.stdout.strip().splitlines()[-1])
        frame = pd.read_csv(args.data)
        frame = (
            (frame[columns] if columns else frame.drop(columns=["churn"], errors="ignore"))
            .dropna()
            .reset_index(drop=True)
        )
        for name in cases:
            print(f"case {name} ...", flush=True)
            try:
                results[name] = run_case(name, target, frame, target["env"], scratch, args)
            except RuntimeError as error:  # the server did not start: the other cases still run
                print(f"  not run: {error}", flush=True)
                continue
            print(f"  {'PASS' if results[name]['passed'] else 'FAIL'} in {results[name]['abuse_s']:.0f} s", flush=True)

    load = os.getloadavg()
    print(
        f"\nmodel models:/{target['model']}@{target['alias']}; {args.clients} well-behaved clients; "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print(
        f"{'case':<13}  {'abusive statuses':<24}  {'RSS MB before/peak/after':>24}  {'growth':>6}  "
        f"{'/health ms p50/p99/max':>24}  {'clients sent/ok/fail':>20}  {'rows lost':>9}  {'server':<22} "
        f" {'check':<6}  verdict"
    )
    for name, r in results.items():
        statuses = " ".join(f"{k}x{v}" for k, v in sorted(r["statuses"].items())) or "-"
        print(
            f"{name:<13}  {statuses:<24}  "
            f"{r['rss_before_mb']:>7.0f}/{r['rss_peak_mb']:>7.0f}/{r['rss_after_mb']:>7.0f}  "
            f"{r['rss_growth_mb']:>6.0f}  "
            f"{r['health_p50_ms']:>6.1f}/{r['health_p99_ms']:>8.1f}/{r['health_max_ms']:>8.1f}  "
            f"{r['clients_sent']:>6}/{r['clients_answered']:>6}/{r['clients_failed']:>6}  "
            f"{r['rows_missing']:>9}  {r['server']:<22}  {CHECK[r['check_ok']]:<6}  {'PASS' if r['passed'] else 'FAIL'}"
        )
    print()
    baseline = results.get("baseline")
    for name, r in results.items():
        misses = [goal for goal, ok in r["goal"].items() if not ok]
        extra = ([f"check {'ok' if r['check_ok'] else 'FAILED'}: {r['check']}"] if r["check"] else []) + r["notes"]
        if baseline and name != "baseline":  # the same run's machine with no abuse: what the load alone does
            extra.insert(
                0,
                f"/health max {r['health_max_ms'] / baseline['health_max_ms']:.1f}x the baseline's, "
                f"growth {r['rss_growth_mb']:.0f} MB against its {baseline['rss_growth_mb']:.0f}",
            )
        if r["log_error"]:
            extra.append(f"log unreadable: {r['log_error']}")
        if r["server_errors_logged"]:
            first = r["server_first_error"].split(" ERROR ", 1)[-1]
            extra.append(
                f"{r['server_errors_logged']} ERROR/Traceback lines in the server's log, the first: {first[:200]}"
            )
        print(f"{name}: " + "; ".join((["missed: " + ", ".join(misses)] if misses else []) + extra))
    if baseline and baseline["health_max_ms"] > GOAL_HEALTH_MS:
        print(
            f"note: with no abuse at all, /health max was {baseline['health_max_ms']:.0f} ms (p99 "
            f"{baseline['health_p99_ms']:.0f} ms): the machine's load alone misses that goal; compare with it"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "cases": results,
                    "goals": {"rss_growth_mb": GOAL_GROWTH_MB, "health_max_ms": GOAL_HEALTH_MS},
                    "settings": {
                        "model": target["model"],
                        "alias": target["alias"],
                        "clients": args.clients,
                        "seconds": args.seconds,
                        "hold_seconds": args.hold_seconds,
                        "case_timeout": args.case_timeout,
                        "memory_cap_mb": args.memory_cap_mb,
                        "loadavg": load,
                    },
                },
                indent=2,
                default=str,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
