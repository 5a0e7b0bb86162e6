"""The serving prediction log: sampled requests and their predictions, as Parquet files or in a SQL table.

`submit` only samples and enqueues, so logging never blocks or fails a request: when the queue is
full (by rows or by bytes) the rows are dropped and counted. The last eighth of the queue is kept for
requests of at most SMALL_REQUEST_ROWS rows, so a flood of large requests (or a long outage) sheds
the large ones first and ordinary clients keep their rows. A writer thread drains the queue into one
of two sinks:

- a directory: files named `predictions-<UTC time>-<pid>-<sequence>.parquet`, each written under a
  temporary name and renamed, so a reader (`mlgate monitor`) never sees half a file, and server
  worker processes never write the same name;
- a SQLAlchemy URL (`sqlite:///path.db`, `postgresql+psycopg://user@host/db`): rows appended to a
  table (`schema.table` allowed), created when absent, with the columns `request_id`,
  `client_request_id`, `timestamp`, `model_version`, `row`, `extra_inputs`, and the inputs and outputs
  as JSON objects (`inputs->>'tenure'` works in PostgreSQL and SQLite).

A write that fails (a locked or unreachable database, a full disk) is retried with backoff, holding
its rows, while new requests wait in the bounded queue; only what is still unwritten when the log
closes, or what the full queue refuses, is dropped, and every dropped row is logged and counted.
What waits is kept compact, for the garbage collector as much as for memory: a queued request as its
column arrays (not pandas frames, whose objects every full collection walks, pausing the event loop
with it), a SQL batch as its rows' JSON texts, rendered once however many attempts its write takes.

One row per predicted row. The log's own fields (`LOG_COLUMNS`) never meet a client's names: the
inputs the model takes are logged as ``input_<column>``, the outputs as ``output_<column>``, and the
columns a request sent beyond the model's as one JSON text per row (`extra_inputs`, cut at
EXTRA_CHARS). So what one request sends costs the log at most the model's columns, however many
columns it names. `read` gives back that frame from either sink, for a time window only.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import math
import os
import queue
import re
import sys
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlgate.errors import StageError

log = logging.getLogger("mlgate.services.prediction_log")

QUEUE_ROWS = 200_000  # rows waiting for the writer at most (more: dropped and counted)
QUEUE_BYTES = 32 * 1024 * 1024  # and their estimated size at most
ROTATE_BYTES = 16 * 1024 * 1024  # a flush once this much is pending, whatever the rows
SMALL_REQUEST_ROWS = 1_000  # requests this small may use the queue's last eighth
RETRY_FIRST_S, RETRY_MAX_S = 0.5, 10.0  # backoff between attempts at a failed write
WRITE_SLICE_ROWS = 20_000  # rows converted for a Parquet file at a time
SQL_SLICE_ROWS = 2_000  # rows rendered, and inserted, at a time
EXTRA_CHARS = 1_000  # an extra_inputs text at most
DEFAULT_TABLE = "mlgate_predictions"
LOG_COLUMNS = ("request_id", "client_request_id", "timestamp", "model_version", "row", "extra_inputs", "role")
SERVED, SHADOW = "served", "shadow"  # a row's role: the answer the client got, or a shadow version's output
INPUT_PREFIX, OUTPUT_PREFIX = "input_", "output_"
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_json_text = json.encoder.encode_basestring_ascii  # what json.dumps makes of a str


class Item:
    """One queued request, its frames reduced to their column arrays: a pandas frame held in the queue
    costs a few hundred objects the garbage collector walks on every full collection (with the log
    down, a backlog of them made each collection, and the event loop behind it, stall for 0.5 s)."""

    __slots__ = (
        "request_id",
        "client_request_id",
        "version",
        "at",
        "rows",
        "inputs",
        "extras",
        "outputs",
        "size",
        "role",
    )

    def __init__(
        self,
        request_id: str,
        client_request_id: str | None,
        version: str,
        at: float,
        inputs: pd.DataFrame,
        extras: pd.DataFrame | None,
        outputs: pd.DataFrame,
        size: int,
        role: str = SERVED,
    ):
        self.request_id, self.client_request_id, self.version, self.at = request_id, client_request_id, version, at
        self.role = role
        self.rows = len(inputs)
        self.inputs, self.outputs = _arrays(inputs), _arrays(outputs)
        self.extras = None if extras is None or extras.shape[1] == 0 else _arrays(extras)
        self.size = size


def _arrays(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """A frame's columns by name, as the arrays it already holds (no copy)."""
    return {str(name): frame.iloc[:, j].to_numpy() for j, name in enumerate(frame.columns)}


def is_url(target: str | Path) -> bool:
    """A SQLAlchemy database URL (``dialect[+driver]://...``) rather than a directory."""
    return isinstance(target, str) and bool(_URL.match(target))


class PredictionLog:
    """Sampled requests written in the background to ``target``: a directory or a database URL.

    Rows are flushed every ``rotate_rows`` rows, ROTATE_BYTES or ``rotate_s`` seconds (a new Parquet
    file, or one INSERT of many rows), and on ``close``.
    """

    def __init__(
        self,
        target: str | Path,
        sample_rate: float = 1.0,
        rotate_rows: int = 50_000,
        rotate_s: float = 60.0,
        on_drop: Callable[[int], None] | None = None,
        table: str = DEFAULT_TABLE,
    ):
        self.sink = SqlSink(str(target), table) if is_url(target) else ParquetSink(Path(target), create=True)
        self.sample_rate = sample_rate
        self.rotate_rows = rotate_rows
        self.rotate_s = rotate_s
        self.on_drop = on_drop or (lambda rows: None)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._queued = [0, 0]  # rows and bytes in the queue, under _lock
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._give_up_at = math.inf
        self._writer = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._writer.start()

    def submit(
        self,
        request_id: str,
        version: str,
        inputs: pd.DataFrame,
        outputs: pd.DataFrame,
        *,
        client_request_id: str | None = None,
        logged_columns: list[str] | None = None,
        size: int = 0,
        role: str = SERVED,
    ) -> None:
        """Queue a request's rows: ``logged_columns`` of ``inputs`` (all when None) as its inputs, the
        rest as extra_inputs; ``size``, what the inputs cost beyond their frame (the body's bytes),
        counts toward QUEUE_BYTES. ``role``: SERVED, or SHADOW for a shadow version's outputs of the
        same request (``inputs`` then has no columns: the served row holds them)."""
        if not self.sampled(request_id):
            return
        extras = None
        if logged_columns is not None and len(logged_columns) < inputs.shape[1]:
            logged = set(logged_columns)
            extras = inputs[[c for c in inputs.columns if c not in logged]]
            inputs = inputs[logged_columns]
        rows = len(inputs)
        size += _frame_bytes(inputs) + _frame_bytes(outputs) + (0 if extras is None else _frame_bytes(extras))
        share = 1.0 if rows <= SMALL_REQUEST_ROWS else 7 / 8
        with self._lock:
            full = self._queued[0] + rows > QUEUE_ROWS * share or self._queued[1] + size > QUEUE_BYTES * share
            if not full:
                self._queued[0] += rows
                self._queued[1] += size
        if full:
            self.on_drop(rows)
            return
        self._queue.put(Item(request_id, client_request_id, version, time.time(), inputs, extras, outputs, size, role))

    def sampled(self, request_id: str) -> bool:
        """Whether ``request_id``'s rows are logged: decided by the id (its CRC-32 against the rate), so
        a request's served rows and its shadow's rows are logged together or not at all."""
        return self.sample_rate >= 1 or zlib.crc32(request_id.encode()) < self.sample_rate * 2**32

    def close(self, timeout: float = 60.0) -> None:
        """Write what is queued and stop the writer, waiting for it at most ``timeout`` seconds (a hung
        database must not hang the server's shutdown)."""
        self._give_up_at = time.monotonic() + timeout / 2  # failed writes may retry for half of it
        self._closing.set()
        self._queue.put(None)
        self._writer.join(timeout)
        if self._writer.is_alive():
            log.error(
                "prediction log: writing to %s did not finish within %g s; what was queued is lost", self.sink, timeout
            )
            return
        self.sink.close()

    def _run(self) -> None:
        pending: list[Any] = []
        rows = size = 0
        opened = time.monotonic()
        while True:
            try:
                item = self._queue.get(timeout=max(0.05, self.rotate_s - (time.monotonic() - opened)))
            except queue.Empty:
                item = ...
            if item is None or item is ...:
                if pending and (item is None or time.monotonic() - opened >= self.rotate_s):
                    self._flush(pending, rows)
                    pending, rows, size, opened = [], 0, 0, time.monotonic()
                if item is None:
                    return
                continue
            with self._lock:
                self._queued[0] -= item.rows
                self._queued[1] -= item.size
            try:
                pending.append(self.sink.shape(item))
            except Exception as error:  # noqa: BLE001 - a request the log cannot shape is skipped, not fatal
                log.warning("prediction log: skipped a request: %s", str(error)[:500])
                self.on_drop(item.rows)
                continue
            rows += item.rows
            size += item.size
            if rows >= self.rotate_rows or size >= ROTATE_BYTES or time.monotonic() - opened >= self.rotate_s:
                self._flush(pending, rows)
                pending, rows, size, opened = [], 0, 0, time.monotonic()

    def _flush(self, shaped: list[Any], rows: int) -> None:
        """Write ``shaped``, retrying with backoff until it succeeds (a locked or restarting database
        is usually back within seconds); once the log is closing, for half of close's timeout at most,
        then the rows are dropped and counted."""
        wait, failures = RETRY_FIRST_S, 0
        while True:
            try:
                self.sink.write(shaped)
            except Exception as error:  # noqa: BLE001 - a full disk or a database outage must not take the server down
                failures += 1
                # the first line only: a database error goes on to quote the statement and every row
                reason = str(error).split("\n")[0][:500]
                left = self._give_up_at - time.monotonic()
                if left <= 0:
                    log.error(
                        "prediction log: cannot write %s rows to %s, dropped at shutdown: %s",
                        f"{rows:,}",
                        self.sink,
                        reason,
                    )
                    self.on_drop(rows)
                    return
                if failures == 1:
                    log.error(
                        "prediction log: cannot write %s rows to %s, retrying until it works: %s",
                        f"{rows:,}",
                        self.sink,
                        reason,
                    )
                if self._closing.is_set():
                    time.sleep(min(wait, left))
                else:
                    self._closing.wait(wait)  # woken early by close, which bounds what is left
                wait = min(2 * wait, RETRY_MAX_S)
                continue
            if failures:
                log.warning(
                    "prediction log: wrote %s rows to %s after %d failed attempts", f"{rows:,}", self.sink, failures
                )
            return


def _frame_bytes(frame: pd.DataFrame, sample: int = 64) -> int:
    """A frame's size as held: numeric columns exactly, object columns (each cell a Python object) from
    the size of a few of their cells, so a bound in bytes holds without touching every cell."""
    size = int(frame.memory_usage(index=False, deep=False).sum())
    rows = len(frame)
    if rows == 0:
        return size
    for position in np.flatnonzero((frame.dtypes == np.dtype(object)).to_numpy()):
        cells = frame.iloc[:sample, position].tolist()
        size += rows * sum(sys.getsizeof(cell) for cell in cells) // len(cells)
    return size


def _extra_texts(extras: dict[str, np.ndarray] | None, start: int, stop: int) -> list[str | None]:
    """Rows ``start:stop``'s extra columns, each row's as one JSON object text cut at EXTRA_CHARS; None
    for a request that sent none."""
    if extras is None:
        return [None] * (stop - start)
    frame = pd.DataFrame({name: values[start:stop] for name, values in extras.items()})
    texts = frame.to_json(orient="records", lines=True, date_format="iso", default_handler=str).split("\n")
    return [t if len(t) <= EXTRA_CHARS else t[:EXTRA_CHARS] + "...(cut)" for t in texts[: stop - start]]


def describe(target: str | Path, table: str = DEFAULT_TABLE) -> str:
    """The log's location for messages (a database password hidden)."""
    return str(SqlSink(str(target), table) if is_url(target) else target)


def read(target: str | Path, since: dt.datetime, table: str = DEFAULT_TABLE) -> pd.DataFrame:
    """Logged rows with a timestamp at or after ``since``: LOG_COLUMNS, ``input_*`` and ``output_*``."""
    if is_url(target):
        return SqlSink(str(target), table).read(since)
    return ParquetSink(Path(target)).read(since)


def purge(target: str | Path, column: str, value: str, table: str = DEFAULT_TABLE) -> int:
    """Delete every logged row whose request carried ``value`` in ``column`` (an input the model takes,
    or one of the request's other columns); the rows deleted. Run it against a log a server is
    writing: Parquet files are only ever rewritten whole (under a temporary name, then renamed over)
    and a server never appends to one; a table's rows go in one transaction."""
    if is_url(target):
        return SqlSink(str(target), table).purge(column, value)
    return ParquetSink(Path(target)).purge(column, value)


def _carrying(inputs: pd.Series | None, extras: pd.Series, column: str, value: str) -> np.ndarray:
    """Rows whose input ``column`` is ``value``, or whose extra_inputs text holds that pair (as pandas
    writes it; found even in a text cut at EXTRA_CHARS, unless the cut falls inside the pair)."""
    pair = f"{json.dumps(column)}:{json.dumps(value)}"
    held = extras.astype(object).map(lambda text: isinstance(text, str) and pair in text).to_numpy(bool)
    if inputs is not None:
        held |= (inputs.astype(object) == value).to_numpy(bool)
    return held


# --- Parquet files ------------------------------------------------------------------------------

_FILE_STAMP = re.compile(r"^predictions-(\d{8}T\d{6})-")
# one count per process, not per sink: two logs a process opens in the same second never share a name
_FILE_SEQUENCE = itertools.count(1)


class ParquetSink:
    def __init__(self, directory: Path, create: bool = False):
        self.directory = directory
        if create:
            directory.mkdir(parents=True, exist_ok=True)

    def __str__(self) -> str:
        return str(self.directory)

    def shape(self, item: Item) -> Item:
        """The item as it is: its frame is built when written, so a held batch stays in its arrays."""
        return item

    def write(self, items: list[Item]) -> None:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
        final = self.directory / f"predictions-{stamp}-{os.getpid()}-{next(_FILE_SEQUENCE):06d}.parquet"
        partial = final.with_suffix(".parquet.tmp")
        try:
            frame = pd.concat([_log_frame(item) for item in items], ignore_index=True)
            _write_parquet(_text_if_mixed(frame), partial)
            partial.replace(final)
        finally:
            partial.unlink(missing_ok=True)

    def read(self, since: dt.datetime) -> pd.DataFrame:
        """Only the files that can hold rows of the window (a file is named when it was written, after
        all its rows), and of those only the window's rows."""
        found = sorted(self.directory.glob("predictions-*.parquet")) if self.directory.is_dir() else []
        if not found:
            raise StageError(
                f"{self.directory}: no prediction log files (start `mlgate serve --prediction-log {self.directory}`)"
            )
        start = pd.Timestamp(since)
        start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")
        frames = []
        for path in found:
            written = _written_at(path.name)
            # the name's time is cut to the second: the file may hold rows up to a second after it
            if written is not None and written + dt.timedelta(seconds=1) < start:
                continue
            frame = pd.read_parquet(path, filters=[("timestamp", ">=", start)])
            frames.append(_current_layout(frame))
        if not frames:
            return pd.DataFrame({c: pd.Series(dtype=object) for c in LOG_COLUMNS})
        return pd.concat(frames, ignore_index=True)

    def close(self) -> None:
        pass

    def purge(self, column: str, value: str) -> int:
        removed = 0
        for path in sorted(self.directory.glob("predictions-*.parquet")) if self.directory.is_dir() else []:
            frame = pd.read_parquet(path)
            inputs = frame.get(f"{INPUT_PREFIX}{column}")
            extras = frame["extra_inputs"] if "extra_inputs" in frame.columns else pd.Series([None] * len(frame))
            held = _carrying(inputs, extras, column, value)
            if not held.any():
                continue
            removed += int(held.sum())
            if held.all():
                path.unlink()
                continue
            partial = path.with_suffix(".parquet.tmp")
            try:
                _write_parquet(frame[~held].reset_index(drop=True), partial)
                partial.replace(path)
            finally:
                partial.unlink(missing_ok=True)
        return removed


def _log_frame(item: Item) -> pd.DataFrame:
    """One row per predicted row: the log's fields, ``input_*``, ``output_*``, extra_inputs."""
    rows = item.rows
    # numpy fills, not lists of Python objects: converting those holds the GIL (0.5 s for 400,000 rows)
    columns: dict[str, Any] = {
        "request_id": np.full(rows, item.request_id, dtype=object),
        "client_request_id": np.full(rows, item.client_request_id, dtype=object),
        "timestamp": pd.DatetimeIndex(np.full(rows, np.datetime64(round(item.at * 1e6), "us"))).tz_localize("UTC"),
        "model_version": np.full(rows, item.version, dtype=object),
        "row": np.arange(rows, dtype=np.int64),  # position in the request: labels join on (request_id, row)
        "role": np.full(rows, item.role, dtype=object),
    }
    columns.update({f"{INPUT_PREFIX}{name}": values for name, values in item.inputs.items()})
    columns.update({f"{OUTPUT_PREFIX}{name}": values for name, values in item.outputs.items()})
    columns["extra_inputs"] = _extra_texts(item.extras, 0, rows)
    return pd.DataFrame(columns)


def _written_at(name: str) -> dt.datetime | None:
    """When a log file was written, from its name (None for a name mlgate did not make)."""
    named = _FILE_STAMP.match(name)
    try:
        return dt.datetime.strptime(named.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=dt.UTC) if named else None
    except ValueError:
        return None


def _current_layout(frame: pd.DataFrame) -> pd.DataFrame:
    """A file written before inputs were namespaced (no client_request_id): its inputs renamed ``input_*``;
    before shadows (no role): every row served."""
    if "role" not in frame.columns:
        frame = frame.assign(role=SERVED)
    if "client_request_id" in frame.columns:
        return frame
    own = {"request_id", "timestamp", "model_version", "row", "role"}
    frame = frame.rename(
        columns={
            c: f"{INPUT_PREFIX}{c}" for c in frame.columns if c not in own and not str(c).startswith(OUTPUT_PREFIX)
        }
    )
    frame.insert(1, "client_request_id", None)
    frame["extra_inputs"] = None
    return frame


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """``frame`` as one Parquet file, converted WRITE_SLICE_ROWS rows at a time: converting Python
    strings for Arrow holds the GIL, so one conversion of a large flush stalled the event loop."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.Schema.from_pandas(frame.head(WRITE_SLICE_ROWS), preserve_index=False)
    for j, column in enumerate(frame.columns):  # object columns hold text or None (_text_if_mixed), in any slice
        if frame[column].dtype == object:
            schema = schema.set(j, pa.field(str(column), pa.string()))
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, len(frame), WRITE_SLICE_ROWS):
            part = frame.iloc[start : start + WRITE_SLICE_ROWS]
            writer.write_table(pa.Table.from_pandas(part, schema=schema, preserve_index=False))


def _text_if_mixed(frame: pd.DataFrame) -> pd.DataFrame:
    """Object columns (mixed JSON values across requests) as text, so the Parquet schema holds."""
    for column in frame.columns:
        if frame[column].dtype == object:
            frame[column] = frame[column].map(lambda v: v if v is None or isinstance(v, str) or v != v else str(v))
    return frame


# --- a SQL table --------------------------------------------------------------------------------


class SqlSink:
    """A table in any database SQLAlchemy reaches; the engine is made on first use."""

    def __init__(self, url: str, table: str = DEFAULT_TABLE):
        import sqlalchemy as sa

        self.url = sa.engine.make_url(url)
        schema, _, name = table.rpartition(".")
        self.table = _table(name, schema or None)
        self._engine = None
        self._ready = False

    def __str__(self) -> str:
        return f"{self.url.render_as_string(hide_password=True)} table {_qualified(self.table)}"

    @property
    def engine(self):
        import sqlalchemy as sa

        if self._engine is None:
            # SQLite: wait for another worker's write instead of failing with "database is locked";
            # PostgreSQL: give up on an unreachable server in seconds, not after the TCP retries
            backend = self.url.get_backend_name()
            connect = {"sqlite": {"timeout": 30}, "postgresql": {"connect_timeout": 10}}.get(backend, {})
            self._engine = sa.create_engine(
                self.url, pool_pre_ping=True, connect_args=connect, json_serializer=_rendered_json
            )
        return self._engine

    def shape(self, item: Item) -> Rows:
        """The item's rows as JSON texts, made once: a batch held through failed writes is not
        converted again for each attempt, and holds its texts rather than its arrays."""
        return Rows(item)

    def write(self, batches: list[Rows]) -> None:
        self._ensure_table()
        with self.engine.begin() as connection:  # one transaction: a batch is written whole or not at all
            for rows in _parameters_in_slices(batches, SQL_SLICE_ROWS):
                connection.execute(self.table.insert(), rows)

    def read(self, since: dt.datetime) -> pd.DataFrame:
        import sqlalchemy as sa

        try:
            with self.engine.connect() as connection:
                if not sa.inspect(connection).has_table(self.table.name, schema=self.table.schema):
                    raise StageError(f"{self}: no such table (start `mlgate serve --prediction-log URL`)")
                query = (
                    sa.select(self.table)
                    .where(self.table.c.timestamp >= _utc(since))
                    .order_by(self.table.c.timestamp, self.table.c.request_id, self.table.c.row)
                )
                rows = connection.execute(query).mappings().all()
        except sa.exc.SQLAlchemyError as error:
            raise StageError(f"{self}: cannot read the prediction log: {error}") from None
        finally:
            self.close()
        head = pd.DataFrame(
            {
                "request_id": [r["request_id"] for r in rows],
                "client_request_id": [r["client_request_id"] for r in rows],
                "timestamp": pd.to_datetime([_utc(r["timestamp"]) for r in rows], utc=True),
                "model_version": [r["model_version"] for r in rows],
                "row": np.array([r["row"] for r in rows], dtype=np.int64),
                "role": [r["role"] or SERVED for r in rows],  # a table from before shadows: NULL
            }
        )
        inputs = pd.DataFrame([r["inputs"] for r in rows]).add_prefix(INPUT_PREFIX)
        outputs = pd.DataFrame([r["outputs"] for r in rows]).add_prefix(OUTPUT_PREFIX)
        extras = pd.DataFrame({"extra_inputs": [r["extra_inputs"] for r in rows]})
        return pd.concat([head, inputs, outputs, extras], axis=1)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def purge(self, column: str, value: str) -> int:
        import sqlalchemy as sa

        t = self.table
        try:
            with self.engine.begin() as connection:
                if not sa.inspect(connection).has_table(t.name, schema=t.schema):
                    return 0
                texts = (sa.cast(t.c.inputs, sa.Text), sa.cast(t.c.extra_inputs, sa.Text))
                near = sa.or_(*(text.contains(value, autoescape=True) for text in texts))
                found = connection.execute(sa.select(t.c.request_id, t.c.row, t.c.inputs, t.c.extra_inputs).where(near))
                rows = found.mappings().all()
                inputs = pd.Series([(r["inputs"] or {}).get(column) for r in rows], dtype=object)
                extras = pd.Series([r["extra_inputs"] for r in rows], dtype=object)
                held = [r for r, hit in zip(rows, _carrying(inputs, extras, column, value), strict=True) if hit]
                for r in held:
                    connection.execute(sa.delete(t).where(t.c.request_id == r["request_id"], t.c.row == r["row"]))
        except sa.exc.SQLAlchemyError as error:
            raise StageError(f"{self}: cannot purge the prediction log: {error}") from None
        finally:
            self.close()
        return len(held)

    def _ensure_table(self) -> None:
        """CREATE TABLE IF NOT EXISTS (and its index), once; several workers may race to do it."""
        import sqlalchemy as sa
        from sqlalchemy.schema import CreateIndex, CreateTable

        if self._ready:
            return
        try:
            with self.engine.begin() as connection:
                connection.execute(CreateTable(self.table, if_not_exists=True))
                for index in self.table.indexes:
                    connection.execute(CreateIndex(index, if_not_exists=True))
        except sa.exc.SQLAlchemyError:
            with self.engine.connect() as connection:  # lost a race with another worker: fine if it is there now
                if not sa.inspect(connection).has_table(self.table.name, schema=self.table.schema):
                    raise
        self._add_new_columns()
        self._ready = True

    def _add_new_columns(self) -> None:
        """A table an earlier mlgate created lacks the nullable columns added since: add them."""
        import sqlalchemy as sa

        with self.engine.connect() as connection:
            present = {c["name"] for c in sa.inspect(connection).get_columns(self.table.name, schema=self.table.schema)}
        preparer = self.engine.dialect.identifier_preparer
        for column in self.table.columns:
            if column.name in present:
                continue
            kind = column.type.compile(dialect=self.engine.dialect)
            try:
                with self.engine.begin() as connection:
                    connection.execute(
                        sa.text(
                            f"ALTER TABLE {preparer.format_table(self.table)} "
                            f"ADD COLUMN {preparer.quote(column.name)} {kind}"
                        )
                    )
            except sa.exc.SQLAlchemyError:
                with self.engine.connect() as connection:  # another worker added it first
                    names = {
                        c["name"] for c in sa.inspect(connection).get_columns(self.table.name, schema=self.table.schema)
                    }
                if column.name not in names:
                    raise


class Rows:
    """One request's SQL rows, shaped: its fields, and per row the inputs and outputs as JSON object
    texts and the extra inputs' text (strings, which the garbage collector does not walk)."""

    __slots__ = ("request_id", "client_request_id", "version", "stamp", "inputs", "outputs", "extras", "role")

    def __init__(self, item: Item):
        self.request_id, self.client_request_id, self.version = item.request_id, item.client_request_id, item.version
        self.role = item.role
        self.stamp = dt.datetime.fromtimestamp(item.at, dt.UTC)
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        self.extras: list[str | None] = []
        for start in range(0, item.rows, SQL_SLICE_ROWS):  # a slice at a time: no long hold of the GIL
            stop = min(start + SQL_SLICE_ROWS, item.rows)
            self.inputs += _json_objects(item.inputs, start, stop)
            self.outputs += _json_objects(item.outputs, start, stop)
            self.extras += _extra_texts(item.extras, start, stop)


def _parameters_in_slices(batches: list[Rows], slice_rows: int):
    """The INSERT parameters of ``batches``, at most ``slice_rows`` rows at a time (small requests share one)."""
    rows: list[dict[str, Any]] = []
    for batch in batches:
        for row, (given, made, extra) in enumerate(zip(batch.inputs, batch.outputs, batch.extras, strict=True)):
            rows.append(
                {
                    "request_id": batch.request_id,
                    "client_request_id": batch.client_request_id,
                    "timestamp": batch.stamp,
                    "model_version": batch.version,
                    "row": row,
                    "inputs": given,
                    "outputs": made,
                    "extra_inputs": extra,
                    "role": batch.role,
                }
            )
            if len(rows) == slice_rows:
                yield rows
                rows = []
    if rows:
        yield rows


def _rendered_json(value: Any) -> str:
    """The engine's JSON serializer: the log's documents arrive rendered (`Rows`), anything else is dumped."""
    return value if isinstance(value, str) else json.dumps(value)


def _json_objects(columns: dict[str, np.ndarray], start: int, stop: int) -> list[str]:
    """Rows ``start:stop`` of ``columns`` as JSON object texts, as ``json.dumps`` of the row's dict of
    `_json_value` cells renders them, built a column at a time."""
    if not columns:
        return ["{}"] * (stop - start)
    fields = [
        list(map(f"{json.dumps(name)}: ".__add__, _json_cells(values[start:stop]))) for name, values in columns.items()
    ]
    return ["{" + ", ".join(row) + "}" for row in zip(*fields, strict=True)]


def _json_cells(values: np.ndarray) -> list[str]:
    """Each cell of a column as JSON text (`_json_value`'s rules); numbers, flags and plain text by
    their types' own renderers, anything else a cell at a time."""
    kind = values.dtype.kind
    if kind == "f":
        texts = list(map(float.__repr__, values.tolist()))
        for i in np.flatnonzero(~np.isfinite(values)):
            texts[i] = json.dumps(_json_value(values[i]))
        return texts
    if kind in "iu":
        return list(map(int.__repr__, values.tolist()))
    if kind == "b":
        return ["true" if v else "false" for v in values.tolist()]
    if kind in "mM":
        values = pd.Series(values, copy=False).astype(object).to_numpy()  # Timestamps: ISO text
    elif kind == "O" and pd.api.types.infer_dtype(values, skipna=False) == "string":
        return list(map(_json_text, values.tolist()))
    return [json.dumps(_json_value(v)) for v in values.tolist()]


def _table(name: str, schema: str | None):
    import sqlalchemy as sa

    document = sa.JSON()  # PostgreSQL's json (not jsonb) keeps the keys in the order the client sent them
    table = sa.Table(
        name,
        sa.MetaData(),
        sa.Column("request_id", sa.String, nullable=False),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_version", sa.String, nullable=False),
        sa.Column("row", sa.Integer, nullable=False),
        sa.Column("inputs", document, nullable=False),
        sa.Column("outputs", document, nullable=False),
        sa.Column("client_request_id", sa.String, nullable=True),
        sa.Column("extra_inputs", sa.Text, nullable=True),
        sa.Column("role", sa.String, nullable=True),
        schema=schema,
    )
    sa.Index(f"ix_{name}_timestamp", table.c.timestamp)
    return table


def _qualified(table) -> str:
    return f"{table.schema}.{table.name}" if table.schema else table.name


def _utc(stamp: dt.datetime) -> dt.datetime:
    """Aware UTC; a naive value (SQLite keeps no zone) was written as UTC."""
    return stamp.replace(tzinfo=dt.UTC) if stamp.tzinfo is None else stamp.astimezone(dt.UTC)


def _json_value(value: Any) -> Any:
    """A cell as JSON: missing as null, numpy scalars as numbers, timestamps as ISO text."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, float):
        return None if math.isnan(value) else value if math.isfinite(value) else str(value)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, (str, int, list, dict)):
        return value
    return None if pd.isna(value) is True else str(value)
