"""The prediction log in a SQL table, against a real SQLite file and the machine's PostgreSQL: the
same rows as the Parquet log, read back by `mlgate monitor`, and never a blocked or failed request
when the database is slow or gone."""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import json
import threading
import time
import uuid

import numpy as np
import pandas as pd
import pytest

from mlgate.services import monitor, prediction_log
from mlgate.services.prediction_log import PredictionLog
from tests.helpers import POSTGRES, logged_columns, scratch_table

INPUTS = pd.DataFrame(
    {
        "tenure": [1.0, np.nan, 30.5],
        "contract": ["One year", None, "Two year"],
        "senior_citizen": np.array([0, 1, 0]),
        "paperless_billing": [True, False, True],
    }
)
OUTPUTS = pd.DataFrame({"prediction": ["No", "Yes", "No"], "probability": [0.1234567890123456789, 0.9, 1 / 3]})


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    """(URL, a fresh table name); the table is dropped afterwards."""
    url = f"sqlite:///{tmp_path / 'predictions.db'}" if request.param == "sqlite" else POSTGRES
    with scratch_table(url, "plog") as (_, table):
        yield url, table


def since_a_minute_ago() -> dt.datetime:
    return dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)


def submit_three(log: PredictionLog) -> None:
    log.submit("r1", "3", INPUTS, OUTPUTS)
    log.submit("r2", "3", INPUTS.head(1), OUTPUTS.head(1))
    log.submit("r3", "4", INPUTS.tail(2).reset_index(drop=True), OUTPUTS.tail(2).reset_index(drop=True))


def test_a_table_holds_the_same_rows_as_the_parquet_files(database, tmp_path):
    url, table = database
    started = pd.Timestamp.now(tz="UTC")
    for target in (url, tmp_path / "parquet"):
        log = PredictionLog(target, table=table)
        submit_three(log)
        log.close()

    from_table = monitor.read_window(url, since_a_minute_ago(), table)
    from_files = monitor.read_window(tmp_path / "parquet", since_a_minute_ago())

    assert list(from_table.columns) == logged_columns(list(INPUTS.columns))
    assert list(from_table.columns) == list(from_files.columns)
    assert from_table[["request_id", "row"]].values.tolist() == [
        ["r1", 0],
        ["r1", 1],
        ["r1", 2],
        ["r2", 0],
        ["r3", 0],
        ["r3", 1],
    ]
    assert from_table["model_version"].tolist() == ["3"] * 4 + ["4"] * 2
    assert str(from_table["timestamp"].dt.tz) == "UTC"
    assert from_table["timestamp"].between(started, pd.Timestamp.now(tz="UTC")).all()
    pd.testing.assert_frame_equal(
        from_table.drop(columns="timestamp"), from_files.drop(columns="timestamp"), check_dtype=False
    )
    sent = pd.concat([OUTPUTS, OUTPUTS.head(1), OUTPUTS.tail(2)])["probability"].tolist()
    assert from_table["output_probability"].tolist() == sent  # exactly: no rounding on the way through JSON


def test_the_window_excludes_older_rows_and_an_empty_window_is_empty(database):
    url, table = database
    log = PredictionLog(url, table=table)
    log.submit("old", "1", INPUTS, OUTPUTS)
    log.close()
    cut = dt.datetime.now(dt.UTC)
    time.sleep(0.01)
    log = PredictionLog(url, table=table)
    log.submit("new", "1", INPUTS.head(1), OUTPUTS.head(1))
    log.close()

    assert monitor.read_window(url, cut, table)["request_id"].tolist() == ["new"]
    assert monitor.read_window(url, dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1), table).empty


def test_rows_are_flushed_while_the_server_runs(database):
    url, table = database
    log = PredictionLog(url, table=table, rotate_s=0.2)
    try:
        log.submit("r1", "1", INPUTS, OUTPUTS)
        wait_for_rows(url, table, 3)
    finally:
        log.close()


def test_a_table_in_a_postgresql_schema():
    import sqlalchemy as sa

    schema = f"plog_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(POSTGRES)
    with engine.begin() as connection:
        connection.execute(sa.text(f'create schema "{schema}"'))
    try:
        log = PredictionLog(POSTGRES, table=f"{schema}.predictions")
        submit_three(log)
        log.close()
        window = monitor.read_window(POSTGRES, since_a_minute_ago(), f"{schema}.predictions")
        assert len(window) == 6
        with engine.connect() as connection:  # the inputs are queryable JSON
            tenures = connection.execute(
                sa.text(
                    f"""select inputs->>'contract' from "{schema}".predictions where request_id =
                    'r1' order by "row" """
                )
            ).scalars()
            assert list(tenures) == ["One year", None, "Two year"]
    finally:
        with engine.begin() as connection:
            connection.execute(sa.text(f'drop schema "{schema}" cascade'))
        engine.dispose()


def test_a_missing_table_is_named_with_the_password_hidden():
    url = POSTGRES.replace("postgres@", "postgres:s3cret@")
    with pytest.raises(monitor.StageError, match=r"no such table") as raised:
        monitor.read_window(url, since_a_minute_ago(), f"absent_{uuid.uuid4().hex[:8]}")
    assert "s3cret" not in str(raised.value) and "***" in str(raised.value)


def test_an_unreachable_database_drops_and_counts_never_raises():
    dropped: list[int] = []
    log = PredictionLog(
        "postgresql+psycopg://postgres@127.0.0.1:1/test", table="predictions", rotate_s=0.1, on_drop=dropped.append
    )
    for _ in range(20):
        log.submit("r", "1", INPUTS, OUTPUTS)  # queues: only the writer thread meets the database
    log.close(timeout=1)  # retries for half a second, then drops and counts
    assert sum(dropped) == 60


def test_a_locked_table_blocks_the_writer_not_the_requests(monkeypatch):
    """PostgreSQL holds the writer's INSERT behind a lock: every submit returns while the lock is still
    held and, once the queue is full, drops and counts; after the lock goes, what was queued is written."""
    import sqlalchemy as sa

    monkeypatch.setattr(prediction_log, "QUEUE_ROWS", 5)
    with scratch_table(POSTGRES, "plog") as (engine, table):
        log = PredictionLog(POSTGRES, table=table, rotate_rows=1, on_drop=(dropped := []).append)
        log.submit("first", "1", INPUTS, OUTPUTS)  # creates the table
        wait_for_rows(POSTGRES, table, 3)
        locker = engine.connect()
        transaction = locker.begin()
        locker.execute(sa.text(f'lock table "{table}" in access exclusive mode'))
        try:
            submitter = threading.Thread(
                target=lambda: [log.submit(f"r{n}", "1", INPUTS.head(1), OUTPUTS.head(1)) for n in range(40)]
            )
            submitter.start()
            submitter.join(timeout=60)  # a submit that waited for the writer would wait for the lock: forever
            assert not submitter.is_alive(), "a submit waited for the writer behind a locked table"
            assert sum(dropped) >= 40 - 5 - 1  # the queue, and the one request the writer holds
        finally:
            threading.Timer(0.2, transaction.rollback).start()
            log.close()
            time.sleep(0.3)
            locker.close()
        written = monitor.read_window(POSTGRES, since_a_minute_ago(), table)
        assert len(written) - 3 + sum(dropped) == 40


def wait_for_rows(url: str, table: str, rows: int) -> None:
    """Until the table holds ``rows`` rows, while the log is still open."""
    deadline = time.monotonic() + 10
    while True:
        try:
            if len(monitor.read_window(url, since_a_minute_ago(), table)) >= rows:
                return
        except monitor.StageError:  # the first flush makes the table
            pass
        assert time.monotonic() < deadline, f"fewer than {rows} rows after 10 s"
        time.sleep(0.05)


def test_close_gives_up_on_a_writer_that_hangs(tmp_path, caplog):
    release = threading.Event()
    log = PredictionLog(tmp_path)
    log.sink.write = lambda shaped: release.wait(30)  # a database that never answers
    log.submit("r1", "1", INPUTS, OUTPUTS)
    try:
        log.close(timeout=0.3)
        # it returned while the writer still waits for the database (it would not log this otherwise)
        assert "did not finish within 0.3 s" in caplog.text
    finally:
        release.set()


# --- hostile requests (issue 14) ----------------------------------------------------------------


def blocked(log: PredictionLog) -> threading.Event:
    """Holds the log's writer in its first write until the returned event is set."""
    release = threading.Event()
    write = log.sink.write
    log.sink.write = lambda shaped: (release.wait(30), write(shaped))
    return release


@pytest.mark.parametrize("sink", ["parquet", "sqlite"])
def test_inputs_are_namespaced_and_unknown_columns_kept_as_one_bounded_text(sink, tmp_path):
    """Findings 1 and 6: a flush held the union of every column any request sent (50,000 unknown
    columns asked for a 9.3 GiB array), and an input named like a log field was silently dropped."""
    target = str(tmp_path / "plog") if sink == "parquet" else f"sqlite:///{tmp_path / 'plog.db'}"
    named_like_the_log = pd.DataFrame({"row": [7.0, 8.0], "request_id": ["a", "b"], "timestamp": [1.0, 2.0]})
    extras = pd.DataFrame({f"unknown_{i}": ["v" * 40] for i in range(60)})
    log = PredictionLog(target)
    log.submit("server-1", "1", named_like_the_log, OUTPUTS.head(2), client_request_id="same")
    log.submit(
        "server-2",
        "1",
        pd.concat([INPUTS.head(1), extras], axis=1),
        OUTPUTS.head(1),
        client_request_id="same",
        logged_columns=list(INPUTS.columns),
    )
    log.submit(
        "server-3", "1", INPUTS.head(1).assign(note="short"), OUTPUTS.head(1), logged_columns=list(INPUTS.columns)
    )
    log.close()

    stored = prediction_log.read(target, since_a_minute_ago())
    assert set(stored.columns) == {
        *prediction_log.LOG_COLUMNS,
        "input_row",
        "input_request_id",
        "input_timestamp",
        *(f"input_{c}" for c in INPUTS.columns),
        "output_prediction",
        "output_probability",
    }
    assert stored[["request_id", "row"]].values.tolist() == [
        ["server-1", 0],
        ["server-1", 1],
        ["server-2", 0],
        ["server-3", 0],
    ]
    assert stored["client_request_id"].tolist() == ["same", "same", "same", None]
    assert stored["input_row"].tolist()[:2] == [7.0, 8.0] and stored["input_request_id"].tolist()[:2] == ["a", "b"]
    extra = stored["extra_inputs"].tolist()
    assert extra[0] is None and extra[3] == '{"note":"short"}'
    assert extra[2].startswith('{"unknown_0":"' + "v" * 40) and len(extra[2]) <= prediction_log.EXTRA_CHARS + 10

    window = monitor.read_window(target, since_a_minute_ago())  # the monitor's view: inputs by name, unless taken
    assert {"input_row", "input_request_id", "input_timestamp", *INPUTS.columns} <= set(window.columns)
    assert window["row"].tolist() == [0, 1, 0, 0]


def test_the_queue_is_bounded_by_rows_and_by_bytes(tmp_path, monkeypatch):
    """Finding 5: with the writer stuck, 16 requests of 25,000 rows all queued (350 to 810 MB)."""
    dropped: list[int] = []
    log = PredictionLog(tmp_path, rotate_rows=1, on_drop=dropped.append)  # each request its own (blocked) write
    release = blocked(log)
    big = pd.DataFrame({"tenure": np.arange(25_000, dtype=float)})
    out = pd.DataFrame({"prediction": np.zeros(25_000)})
    try:
        log.submit("first", "1", big, out)  # the writer takes it, and blocks on it
        deadline = time.monotonic() + 10
        while log._queued[0]:
            assert time.monotonic() < deadline, "the writer never took the first request"
            time.sleep(0.01)
        for number in range(16):
            log.submit(f"r{number}", "1", big, out)
        # large requests fill seven eighths of the queue; the rest is kept for small ones
        queued_large = int(prediction_log.QUEUE_ROWS * 7 / 8) // 25_000
        assert log._queued[0] == queued_large * 25_000
        assert sum(dropped) == (16 - queued_large) * 25_000
        small = pd.DataFrame({"tenure": np.arange(prediction_log.SMALL_REQUEST_ROWS, dtype=float)})
        for number in range(3):
            log.submit(f"small{number}", "1", small, out.head(len(small)))
        assert sum(dropped) == (16 - queued_large) * 25_000, "a small request lost its rows to the large ones"

        monkeypatch.setattr(prediction_log, "QUEUE_BYTES", log._queued[1] + 1_000_000)
        text = pd.DataFrame({"tenure": [1.0]})
        log.submit("text", "1", text, out.head(1), size=2_000_000)  # a 2 MB body behind one row
        assert sum(dropped) == (16 - queued_large) * 25_000 + 1
    finally:
        release.set()
        log.close()


def test_a_failed_write_is_retried_until_the_database_is_back_and_loses_no_row(tmp_path, monkeypatch):
    """A locked or restarting database: the rows wait and are written once it answers again."""
    monkeypatch.setattr(prediction_log, "RETRY_FIRST_S", 0.01)
    log = PredictionLog(tmp_path, rotate_rows=1, on_drop=(dropped := []).append)
    write, attempts = log.sink.write, []

    def down_three_times(frames):
        attempts.append(len(frames))
        if len(attempts) <= 3:
            raise OSError("database is locked")
        write(frames)

    log.sink.write = down_three_times
    for number in range(5):
        log.submit(f"r{number}", "1", INPUTS, OUTPUTS)
    log.close()
    assert dropped == [] and len(attempts) >= 4
    assert len(monitor.read_window(tmp_path, since_a_minute_ago())) == 5 * len(INPUTS)


def test_rows_still_unwritten_at_shutdown_are_dropped_and_counted(tmp_path):
    log = PredictionLog(tmp_path, rotate_rows=1, on_drop=(dropped := []).append)

    def down(frames):
        raise OSError("disk full")

    log.sink.write = down
    log.submit("r", "1", INPUTS, OUTPUTS)
    log.close(timeout=2)  # retries for 1 s, then gives up
    assert sum(dropped) == len(INPUTS)


def test_a_flush_happens_by_size_before_rows_or_time(tmp_path, monkeypatch):
    monkeypatch.setattr(prediction_log, "ROTATE_BYTES", 1_000)
    log = PredictionLog(tmp_path, rotate_rows=10**9, rotate_s=3600)
    try:
        log.submit("r1", "1", INPUTS, OUTPUTS, size=2_000)
        deadline = time.monotonic() + 10
        while not list(tmp_path.glob("*.parquet")):
            assert time.monotonic() < deadline, "no flush of a request over ROTATE_BYTES"
            time.sleep(0.02)
    finally:
        log.close()


def test_a_window_reads_only_the_files_that_can_hold_it(tmp_path):
    """Finding 17: every file was read, and the union of their columns built, before the time filter."""
    (tmp_path / "predictions-20200101T000000-1-000001.parquet").write_bytes(b"not parquet: never opened")
    log = PredictionLog(tmp_path)
    log.submit("new", "1", INPUTS.head(2), OUTPUTS.head(2))
    log.close()
    assert prediction_log.read(tmp_path, since_a_minute_ago())["request_id"].tolist() == ["new", "new"]


def test_files_written_before_namespacing_read_in_the_current_layout(tmp_path):
    legacy = pd.DataFrame(
        {
            "request_id": ["old"],
            "timestamp": [pd.Timestamp.now(tz="UTC")],
            "model_version": ["1"],
            "row": [0],
            "tenure": [3.0],
            "output_prediction": ["No"],
        }
    )
    legacy.to_parquet(tmp_path / "predictions-29990101T000000-1-000001.parquet", index=False)
    window = monitor.read_window(tmp_path, since_a_minute_ago())
    assert window[["request_id", "tenure", "output_prediction"]].values.tolist() == [["old", 3.0, "No"]]
    assert window["client_request_id"].isna().all()
    assert window["role"].tolist() == ["served"]


def test_a_table_made_by_an_earlier_version_gains_the_new_columns(tmp_path):
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "create table mlgate_predictions (request_id varchar not null, timestamp datetime "
                "not null, model_version varchar not null, row integer not null, inputs json "
                "not null, outputs json not null)"
            )
        )
    engine.dispose()
    log = PredictionLog(url)
    log.submit("r1", "1", INPUTS.head(1), OUTPUTS.head(1), client_request_id="theirs")
    log.close()
    window = monitor.read_window(url, since_a_minute_ago())
    assert window["client_request_id"].tolist() == ["theirs"]
    assert window["role"].tolist() == ["served"]


@pytest.mark.parametrize("sink", ["parquet", "sqlite"])
def test_a_shadows_rows_sit_beside_the_served_ones_without_inputs(sink, tmp_path):
    target = str(tmp_path / "plog") if sink == "parquet" else f"sqlite:///{tmp_path / 'plog.db'}"
    log = PredictionLog(target)
    log.submit("r1", "3", INPUTS, OUTPUTS)
    shadow_outputs = OUTPUTS.assign(prediction=["Yes", "Yes", "No"])
    log.submit("r1", "4", INPUTS.iloc[:, :0], shadow_outputs, role=prediction_log.SHADOW)
    log.close()

    window = monitor.read_window(target, since_a_minute_ago()).sort_values(["role", "row"])
    assert window[["role", "model_version", "row", "output_prediction"]].values.tolist() == [
        ["served", "3", 0, "No"],
        ["served", "3", 1, "Yes"],
        ["served", "3", 2, "No"],
        ["shadow", "4", 0, "Yes"],
        ["shadow", "4", 1, "Yes"],
        ["shadow", "4", 2, "No"],
    ]
    shadow = window[window["role"] == "shadow"]
    assert shadow["tenure"].isna().all() and shadow["extra_inputs"].isna().all()


def test_sampling_keeps_or_drops_a_request_with_its_shadow(tmp_path):
    """The choice follows the request id, so the served and the shadow rows of a request are logged
    together or not at all (a pair with one side missing could not be compared)."""
    log = PredictionLog(tmp_path, sample_rate=0.5)
    ids = [uuid.uuid4().hex for _ in range(400)]
    for request_id in ids:
        log.submit(request_id, "3", INPUTS.head(1), OUTPUTS.head(1))
        log.submit(request_id, "4", INPUTS.head(1).iloc[:, :0], OUTPUTS.head(1), role=prediction_log.SHADOW)
    log.close()

    window = monitor.read_window(tmp_path, since_a_minute_ago())
    roles = window.groupby("request_id")["role"].agg(sorted)
    assert all(pair == ["served", "shadow"] for pair in roles)
    assert 120 <= len(roles) <= 280  # about half of 400


def test_sql_rows_are_inserted_a_slice_at_a_time_and_keep_their_positions():
    item = prediction_log.Item("r", None, "1", time.time(), INPUTS, None, OUTPUTS, 0)
    batch = prediction_log.Rows(item)
    slices = list(prediction_log._parameters_in_slices([batch, batch], 2))
    assert [len(rows) for rows in slices] == [2, 2, 2]
    assert [row["row"] for rows in slices for row in rows] == [0, 1, 2, 0, 1, 2]
    assert [json.loads(row["inputs"])["contract"] for row in slices[1]] == ["Two year", "One year"]


def test_sql_rows_render_as_json_dumps_renders_each_rows_cells():
    """The rows' JSON is rendered a column at a time: it must read as `json.dumps` of `_json_value`s."""
    cells = pd.DataFrame(
        {
            "text": ['é "quoted"', "", "Two year", "x"],
            "mixed": [1, "a", 2.5, None],
            "floats": np.array([0.1, -np.inf, np.nan, 1e30], dtype=np.float32),
            "unsigned": np.array([0, 1, 2, 255], dtype=np.uint8),
            "flags": [True, False, True, False],
            "when": pd.to_datetime(["2026-01-02", None, "2026-01-03T04:05:06", "2026-01-04"], format="ISO8601"),
            "aware": pd.to_datetime(["2026-01-02", None, "2026-01-03", "2026-01-04"]).tz_localize("UTC"),
        }
    )
    for frame in (cells, INPUTS, OUTPUTS):
        expected = [
            json.dumps({str(k): prediction_log._json_value(v) for k, v in r.items()})
            for r in frame.to_dict(orient="records")
        ]
        assert prediction_log._json_objects(prediction_log._arrays(frame), 0, len(frame)) == expected


def test_a_batch_held_through_failed_writes_is_rendered_once(tmp_path, monkeypatch):
    """A locked database: each attempt re-made every row of the held batch (the writer holding the GIL
    for it) before it failed again; the rows are rendered once, when the batch is taken."""
    import sqlalchemy as sa

    monkeypatch.setattr(prediction_log, "RETRY_FIRST_S", 0.01)
    rendered: list[int] = []
    cells = prediction_log._json_cells
    monkeypatch.setattr(prediction_log, "_json_cells", lambda values: rendered.append(len(values)) or cells(values))
    url = f"sqlite:///{tmp_path / 'plog.db'}"
    log = PredictionLog(url, rotate_rows=1, on_drop=(dropped := []).append)
    inserts: list[str] = []

    @sa.event.listens_for(log.sink.engine, "before_cursor_execute")
    def locked_three_times(connection, cursor, statement, *args):
        if statement.lstrip().upper().startswith("INSERT"):
            inserts.append(statement)
            if len(inserts) <= 3:
                raise sa.exc.OperationalError(statement, {}, Exception("database is locked"))

    log.submit("r1", "1", INPUTS, OUTPUTS)
    log.close()

    assert len(inserts) == 4 and dropped == []
    assert rendered == [len(INPUTS)] * (INPUTS.shape[1] + OUTPUTS.shape[1])  # each column once
    stored = prediction_log.read(url, since_a_minute_ago())
    assert stored["row"].tolist() == [0, 1, 2] and stored["input_contract"].tolist() == ["One year", None, "Two year"]


@pytest.mark.parametrize("sink", ["parquet", "sqlite"])
def test_a_queued_request_holds_few_objects_for_the_garbage_collector(sink, tmp_path):
    """With the log locked, each queued request held its pandas frames, a few hundred objects each that
    every full collection walked: with 1,300 of them, collections paused the event loop for 0.5 s."""
    target = str(tmp_path / "plog") if sink == "parquet" else f"sqlite:///{tmp_path / 'plog.db'}"
    log = PredictionLog(target, rotate_rows=1)
    release = blocked(log)
    try:
        log.submit("first", "1", INPUTS, OUTPUTS)  # the writer takes it and blocks on it
        deadline = time.monotonic() + 10
        while log._queued[0]:
            assert time.monotonic() < deadline, "the writer never took the first request"
            time.sleep(0.01)
        gc.collect()
        before = len(gc.get_objects())
        for number in range(200):
            frame = pd.concat([INPUTS, pd.DataFrame({"note": ["x"] * len(INPUTS)})], axis=1)
            for column in frame.columns:  # as the server's checks do: each column's Series is cached
                frame[column].isna()
            log.submit(f"r{number}", "1", frame, OUTPUTS.copy(), logged_columns=list(INPUTS.columns))
        del frame
        gc.collect()
        held = (len(gc.get_objects()) - before) / 200
        assert log._queued[0] == 200 * len(INPUTS)
        assert held <= 8, f"{held:.0f} objects for the collector per queued request"
    finally:
        release.set()
        log.close()


@pytest.mark.parametrize("sink", ["parquet", "sqlite", "postgresql"])
def test_purge_deletes_exactly_the_rows_that_carried_an_id(sink, tmp_path):
    """An id sent beside the model's inputs (extra_inputs) or as one of them (input_<column>) is purged
    wherever it was logged; every other row stays, and a file left empty is removed."""
    url = {"sqlite": f"sqlite:///{tmp_path / 'predictions.db'}", "postgresql": POSTGRES}.get(sink)
    with contextlib.ExitStack() as stack:
        target, table = (
            (tmp_path / "parquet", prediction_log.DEFAULT_TABLE)
            if url is None
            else stack.enter_context(scratch_table(url, "plog"))
        )
        target = url or target
        ids = pd.DataFrame({"applicant_id": ["a" * 32, "b" * 32, "a" * 32]})
        first = PredictionLog(target, table=table)
        first.submit("r1", "3", pd.concat([INPUTS, ids], axis=1), OUTPUTS, logged_columns=list(INPUTS.columns))
        others = pd.concat([INPUTS, ids.replace("a" * 32, "c" * 32)], axis=1)
        first.submit("r3", "3", others, OUTPUTS, logged_columns=list(INPUTS.columns))
        first.close()
        second = PredictionLog(target, table=table)  # a file (or batch) of its own
        second.submit("r2", "3", INPUTS.head(1).assign(applicant_id="a" * 32), OUTPUTS.head(1))  # as an input
        second.close()

        assert prediction_log.purge(target, "applicant_id", "a" * 32, table) == 3
        assert prediction_log.purge(target, "applicant_id", "a" * 32, table) == 0

        left = monitor.read_window(target, since_a_minute_ago(), table).sort_values(["request_id", "row"])
        assert list(zip(left["request_id"], left["row"], strict=True)) == [("r1", 1), ("r3", 0), ("r3", 1), ("r3", 2)]
        assert not left["extra_inputs"].str.contains("a" * 32).any()
        if url is None:
            assert len(list((tmp_path / "parquet").glob("*.parquet"))) == 1  # r2's file held only its row
