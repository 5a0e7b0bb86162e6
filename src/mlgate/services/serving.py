"""`mlgate serve`: a registered model behind an HTTP API that follows its registry alias.

`create_app(settings, source)` builds a Starlette app. `POST /invocations` takes MLflow scoring-server
bodies (`dataframe_split`, `dataframe_records`, `inputs`, or CSV), so MLflow clients work unchanged;
`/health`, `/ready`, `/version` and `/metrics` (Prometheus) come beside it. A background task polls
the alias and swaps in a newly promoted (or rolled back) version once it has loaded; requests in
flight finish on the model they started with. Request bodies are only ever parsed as JSON or CSV.

What one client can cost is bounded: columns are counted before any frame is built, parsing and
answering run in a small thread pool (never on the event loop; a large body's parse in a process of
its own, `request_body.BodyParser`), the bytes of bodies in flight are budgeted, headers and bodies
have deadlines, and every request gets an id of the server's own, the key its logged rows are joined
to labels by.

`serve(settings)` runs it under uvicorn; with ``workers > 1``, as that many processes sharing the
port, each loading and following the model on its own, with /metrics summed over all of them
(Prometheus' multiprocess mode).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import dataclasses
import gc
import json
import logging
import math
import os
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import InfoMetricFamily
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mlgate.modelling import explain
from mlgate.modelling.features import InputValidationError
from mlgate.modelling.personal import PersonalData
from mlgate.modelling.task import TASKS
from mlgate.registry import CHAMPION_ALIAS
from mlgate.services import shadow as shadowing
from mlgate.services.batching import MicroBatcher, model_thread
from mlgate.services.prediction_log import DEFAULT_TABLE, PredictionLog
from mlgate.services.request_body import (
    COLUMNS_WITHOUT_CONTRACT,
    EXPLAIN_PARAM,
    MESSAGE_CHARS,
    NAME_CHARS,
    BadRequest,
    BodyParser,
    listed,
    quoted,
    too_many_columns,
)
from mlgate.services.shadow import Shadow, ShadowProcess, ShadowSource, is_classification

log = logging.getLogger("mlgate.serve")

UNKNOWN_COLUMN_POLICIES = ("ignore", "reject")
SETTINGS_ENV = "MLGATE_SERVE_SETTINGS"  # how `serve --workers N` hands the settings to its workers
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


@dataclass(frozen=True)
class ServeSettings:
    model: str | None = None  # registered model name (follows `alias`)
    alias: str = CHAMPION_ALIAS
    model_uri: str | None = None  # or any MLflow model URI, served as is
    poll_s: float = 10.0
    load_retry_s: float = 5.0  # a version that failed to load is tried again after this, doubling to 5 min
    max_body_bytes: int = 5 * 1024 * 1024
    unknown_columns: str = "ignore"
    log_dir: str | None = None  # prediction log: a directory (Parquet files) or a SQLAlchemy URL; None: off
    log_table: str = DEFAULT_TABLE  # the table, when log_dir is a database URL
    log_sample_rate: float = 1.0
    log_rotate_rows: int = 50_000
    log_rotate_s: float = 60.0
    workers: int = 1  # server processes (see `serve`)
    max_batch_rows: int = 512  # requests waiting together are predicted in one call up to this; 1: never
    batch_wait_ms: float = 2.0  # under concurrent load, how long a call waits for more requests; 0: never
    max_extra_columns: int = 64  # unknown columns a request may carry beyond the model's (more: 422)
    header_timeout_s: float = 10.0  # a connection must send a request's headers within this
    body_timeout_s: float = 30.0  # and its body within this after the headers (else 408)
    max_connections: int = 1024  # open connections at most; beyond them uvicorn answers 503
    max_inflight_bytes: int = 32 * 1024 * 1024  # bodies being read, parsed and answered at once (more wait)
    shadow: str | None = None  # an alias whose version also scores every request, off the request path
    shadow_sample_rate: float = 1.0  # the share of requests the shadow scores

    def __post_init__(self) -> None:
        if (self.model is None) == (self.model_uri is None):
            raise ValueError("serve: give exactly one of a registered model name or a model URI")
        if self.unknown_columns not in UNKNOWN_COLUMN_POLICIES:
            raise ValueError(f"serve: unknown_columns must be one of {UNKNOWN_COLUMN_POLICIES}")
        if not 0 <= self.log_sample_rate <= 1:
            raise ValueError("serve: log_sample_rate must be in [0, 1]")
        if self.workers < 1:
            raise ValueError("serve: workers must be at least 1")
        if self.max_batch_rows < 1:
            raise ValueError("serve: max_batch_rows must be at least 1")
        if not 0 <= self.batch_wait_ms <= 1000:
            raise ValueError("serve: batch_wait_ms must be in [0, 1000]")
        if self.max_extra_columns < 0:
            raise ValueError("serve: max_extra_columns must be at least 0")
        if self.header_timeout_s <= 0 or self.body_timeout_s <= 0:
            raise ValueError("serve: header_timeout_s and body_timeout_s must be positive")
        if self.load_retry_s <= 0:
            raise ValueError("serve: load_retry_s must be positive")
        if self.max_connections < 1:
            raise ValueError("serve: max_connections must be at least 1")
        if self.max_inflight_bytes < 1:
            raise ValueError("serve: max_inflight_bytes must be positive")
        if self.shadow is not None and self.model is None:
            raise ValueError("serve: a shadow follows an alias of a registered model; give --model, not --model-uri")
        if self.shadow is not None and self.shadow == self.alias:
            raise ValueError(f"serve: the shadow alias must differ from the served one ('{self.alias}')")
        if not 0 < self.shadow_sample_rate <= 1:
            raise ValueError("serve: shadow_sample_rate must be in (0, 1]")


@dataclass(frozen=True)
class Served:
    """One loaded model and where it came from."""

    model: Any  # tracking.LoadedModel
    uri: str
    version: str  # the registry version, or "" for a plain URI
    run_id: str | None
    gate: str | None  # the gate's verdict tag on that version

    def contract(self, max_extra_columns: int) -> RequestContract:
        """This model's request contract (built once per loaded model)."""
        if "_contract" not in self.__dict__:
            self.__dict__["_contract"] = RequestContract(
                self.model.features, self.model.input_columns, max_extra_columns
            )
        return self.__dict__["_contract"]

    def explainer(self) -> Any:
        """This model's ``explain.explainer`` (built on the first request that asks; NoExplanation if it has none)."""
        if "_explainer" not in self.__dict__:
            self.__dict__["_explainer"] = explain.explainer(self.model.pipeline, self.model.features)
        return self.__dict__["_explainer"]

    def explained(self, frame: pd.DataFrame, k: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(outputs, explanation columns) of ``frame``, in the model's thread like every model call."""
        return self.model.predict_unchecked(frame), self.explainer()(frame, k)

    def batcher(self, max_rows: int, wait_s: float, on_call: Any = None, thread: Any = None) -> MicroBatcher:
        """This model's batcher (one per loaded model, so requests never mix versions); its calls run
        on ``thread`` (an executor; default: the model thread)."""
        if "_batcher" not in self.__dict__:
            self.__dict__["_batcher"] = MicroBatcher(self.model.predict_unchecked, max_rows, wait_s, on_call, thread)
        return self.__dict__["_batcher"]


class RegistrySource:
    """Resolves the alias (or URI) to a version and loads it; tests may pass their own."""

    def __init__(self, settings: ServeSettings):
        self.settings = settings

    def current(self) -> str | None:
        """The version the alias names now ("" for a plain URI), or None when it names none."""
        from mlgate.adapters import tracking

        if self.settings.model_uri is not None:
            return ""
        held = tracking.version_by_alias(self.settings.model, self.settings.alias)
        return None if held is None else str(held.version)

    def load(self, version: str) -> Served:
        from mlgate.adapters import tracking

        if self.settings.model_uri is not None:
            served = Served(_prepared(tracking.load(self.settings.model_uri)), self.settings.model_uri, "", None, None)
            served.contract(self.settings.max_extra_columns)
            return served
        held = tracking.get_version(self.settings.model, int(version))
        served = Served(
            _prepared(tracking.load(held.uri)),
            held.uri,
            str(held.version),
            held.run_id,
            held.tags.get("mlgate.gate.passed"),
        )
        served.contract(self.settings.max_extra_columns)  # now: a missing hashing key fails the load, not a request
        return served


def _prepared(model: Any) -> Any:
    """The model with what its first prediction would build built now (mlgate's FinalModel), off the request path."""
    prepare = getattr(model.pipeline, "prepare", None)
    if prepare is not None:
        prepare()
    return model


class Metrics:
    """Everything /metrics exports, in the app's own registry (so tests and apps do not collide)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "mlgate_requests", "HTTP requests by endpoint and status", ["endpoint", "status"], registry=r
        )
        self.latency = Histogram(
            "mlgate_request_latency_seconds",
            "Request latency by endpoint",
            ["endpoint"],
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.rows = Counter("mlgate_rows_predicted", "Rows predicted", registry=r)
        self.classes = Counter("mlgate_predicted_class", "Predicted labels (classification)", ["label"], registry=r)
        self.class_labels: set[str] = set()  # the labels counted so far (at most CLASS_LABELS)
        # a clustering model's clusters: as many as the model has (its numbers, not the client's, label them)
        self.clusters = Counter(
            "mlgate_assigned_cluster", "Rows assigned to each cluster (clustering; -1: noise)", ["cluster"], registry=r
        )
        self.values = Histogram(
            "mlgate_predicted_value",
            "Predicted values (regression)",
            registry=r,
            buckets=(-math.inf, 0, 1, 10, 100, 1e3, 1e4, 1e5, 1e6, math.inf),
        )
        self.missing = Counter(
            "mlgate_input_missing_values", "Missing input values by feature", ["feature"], registry=r
        )
        self.out_of_range = Counter(
            "mlgate_input_out_of_range", "Input values outside the contract's range", ["feature"], registry=r
        )
        self.load_failures = Counter(
            "mlgate_model_load_failures", "Failed attempts to load a model version", registry=r
        )
        self.swaps = Counter("mlgate_model_swaps", "Times a newly resolved version replaced the served one", registry=r)
        self.call_rows = Histogram(
            "mlgate_model_call_rows",
            "Rows per model call (waiting requests share one call)",
            registry=r,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384),
        )
        self.log_dropped = Counter(
            "mlgate_prediction_log_dropped_rows",
            "Prediction-log rows dropped (queue full, or the write failed)",
            registry=r,
        )
        # the shadow (`serve --shadow ALIAS`): what it scored, how fast, how often it answered otherwise
        self.shadow_rows = Counter("mlgate_shadow_rows", "Rows the shadow version scored", registry=r)
        self.shadow_latency = Histogram(
            "mlgate_shadow_latency_seconds",
            "Shadow scoring time per request, from leaving the shadow's backlog to its outputs",
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.shadow_disagreements = Counter(
            "mlgate_shadow_disagreements",
            "Rows where the shadow's prediction differs from the served one (another label; regression: "
            "more than 5% apart; clustering: not counted)",
            registry=r,
        )
        self.shadow_errors = Counter(
            "mlgate_shadow_errors",
            "Shadow failures by kind (load, contract, prediction); never seen by clients",
            ["kind"],
            registry=r,
        )
        self.shadow_skipped = Counter(
            "mlgate_shadow_skipped_rows", "Rows not shadowed because the shadow's backlog was full", registry=r
        )
        self.model_info: dict[str, str] = {}  # mlgate_model_info's labels (none until a model is served)
        self.shadow_info: dict[str, str] = {}  # mlgate_shadow_model_info's (none while nothing is shadowed)
        self._info = _ModelInfo(self)
        r.register(self._info)

    def predicted_class(self, label: str) -> Any:
        """The counter of one predicted label; past CLASS_LABELS distinct ones, a model whose output
        echoes its input must not let clients grow /metrics without bound, so the rest share OTHER_LABEL."""
        if label not in self.class_labels:
            if len(self.class_labels) >= CLASS_LABELS:
                label = OTHER_LABEL
            else:
                self.class_labels.add(label)
        return self.classes.labels(label)

    def exposition(self) -> bytes:
        """The text /metrics returns: this process's metrics, or with several workers, all of theirs
        summed (each worker's counters live in files under $PROMETHEUS_MULTIPROC_DIR) plus the model
        this worker serves."""
        if MULTIPROCESS_ENV not in os.environ:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(self._info)
        return generate_latest(registry)


class _ModelInfo:
    """mlgate_model_info: the served model's name, alias, version, URI and run as labels."""

    def __init__(self, metrics: Metrics):
        self.metrics = metrics

    def collect(self) -> Iterator[InfoMetricFamily]:
        yield InfoMetricFamily("mlgate_model", "The served model", value=self.metrics.model_info)
        if self.metrics.shadow_info:
            yield InfoMetricFamily("mlgate_shadow_model", "The shadow version", value=self.metrics.shadow_info)


class BodyBudget:
    """The bytes of request bodies being read, parsed, predicted and answered at once, at most
    ``limit``: a request that would pass it waits for others to finish (never refused, and a request
    alone always goes). Each such request costs a few times its body in frames and its answer, so
    this, not the connection count, bounds what concurrent large requests can take."""

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0
        self.freed = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def hold(self, size: int) -> AsyncIterator[None]:
        async with self.freed:
            await self.freed.wait_for(lambda: self.used == 0 or self.used + size <= self.limit)
            self.used += size
        try:
            yield
        finally:
            async with self.freed:
                self.used -= size
                self.freed.notify_all()


CLIENT_ID_CHARS = 128  # a client's own X-Request-Id, as logged
CLASS_LABELS = 100  # distinct predicted-class labels /metrics counts; later ones count as OTHER_LABEL
OTHER_LABEL = "__other__"
ANSWER_SLICE_ROWS = 2_000  # rows rendered to JSON in one call
PARSE_THREADS = 2  # requests parsed, checked or answered at once
SWITCH_INTERVAL_S = 0.001  # a thread holds the interpreter lock this long before another may have it
DISCONNECTED = "499"  # the status counted for a client that left before its answer (nginx's code)


async def _read_capped(request: Request, limit: int, timeout_s: float) -> bytes:
    """The body, refused as soon as it passes ``limit`` (a chunked upload declares no length) or
    takes longer than ``timeout_s`` to arrive (a slow client must not hold a connection and its
    buffer for ever)."""
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise BadRequest(413, "PAYLOAD_TOO_LARGE", f"body over {limit:,} bytes (the limit)")
                chunks.append(chunk)
    except TimeoutError:
        raise BadRequest(
            408, "REQUEST_TIMEOUT", f"the body did not arrive within {timeout_s:g} s ({size:,} bytes came)"
        ) from None
    return b"".join(chunks)


class RequestContract:
    """The input contract at the request level, prepared once per model: 422 naming the column (and
    row) that breaks it, and the missing and out-of-range counts for /metrics. One ``isna`` over the
    whole frame serves both; selecting columns first would cost more than the check itself."""

    def __init__(self, features: dict[str, Any] | None, input_columns: tuple[str, ...], max_extra_columns: int = 64):
        self.features = features
        self.expected = list(features["order"]) if features else list(input_columns)
        self.fail_missing = not features or features.get("missing_columns", "fail") == "fail"
        self.not_null = list((features or {}).get("not_null", []))
        self.ranges = dict((features or {}).get("ranges", {}))
        # the columns that must hold finite numbers: the contract's numeric ones; a model without
        # one gets every float column it takes checked
        self.numeric = list(features.get("numeric", [])) if features else None
        self.max_columns = len(self.expected) + max_extra_columns if self.expected else COLUMNS_WITHOUT_CONTRACT
        # dropped and hashed before anything else sees the rows: the model, /metrics, the prediction log
        self.personal = PersonalData.from_dict((features or {}).get("personal"))
        self.key = self.personal.key()  # raises naming the variable: the model does not load without it

    def protect(self, frame: pd.DataFrame) -> pd.DataFrame:
        return self.personal.apply(frame, self.key) if self.personal.drop or self.personal.hash else frame

    def known(self, frame: pd.DataFrame) -> list[str]:
        """The frame's columns the model takes (all of them for a model that declares none)."""
        if not self.expected:
            return list(frame.columns)
        expected = set(self.expected)
        return [c for c in frame.columns if c in expected]

    def check(self, frame: pd.DataFrame, unknown_columns: str) -> np.ndarray:
        """Raises BadRequest for a broken contract; returns the frame's missing-value mask."""
        if not frame.columns.is_unique:
            duplicated = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
            raise BadRequest(422, "INVALID_INPUT", f"duplicate column(s) {listed(duplicated)}")
        if len(frame.columns) > self.max_columns:
            raise too_many_columns(f"{len(frame.columns):,}", self.max_columns)
        named = next((str(c) for c in frame.columns if len(str(c)) > NAME_CHARS), None)
        if named is not None:  # a name is logged with every row it has a value in
            raise BadRequest(
                422, "INVALID_INPUT", f"column name {quoted(named)} is longer than {NAME_CHARS} characters"
            )
        gaps = frame.isna().to_numpy()
        self._refuse_non_finite(frame)
        if not self.expected:
            return gaps
        missing = [c for c in self.expected if c not in frame.columns]
        if missing and self.fail_missing:
            raise BadRequest(422, "INVALID_INPUT", f"missing required column(s) {listed(missing)}")
        if unknown_columns == "reject":
            unknown = [str(c) for c in frame.columns if c not in self.expected]
            if unknown:
                raise BadRequest(
                    422,
                    "INVALID_INPUT",
                    f"unknown column(s) {listed(unknown)}; the model takes {listed(self.expected)}",
                )
        for column in self.not_null:
            if column in frame.columns:
                column_gaps = gaps[:, frame.columns.get_loc(column)]
                if column_gaps.any():
                    raise BadRequest(
                        422,
                        "INVALID_INPUT",
                        f"column '{column}' has a missing value at row "
                        f"{int(np.argmax(column_gaps))}; the contract allows none",
                    )
        return gaps

    def _refuse_non_finite(self, frame: pd.DataFrame) -> None:
        """inf and -inf never reach the model: 422 naming column and row. (Text such as "inf" in a
        numeric column is refused by the model's input guard, which reads it as a number.)"""
        names = self.numeric if self.numeric is not None else self.known(frame)
        for column in names:
            if column not in frame.columns or frame[column].dtype.kind != "f":
                continue
            infinite = np.isinf(frame[column].to_numpy())
            if infinite.any():
                row = int(np.argmax(infinite))
                raise BadRequest(
                    422,
                    "INVALID_INPUT",
                    f"column {quoted(str(column))} has a non-finite value "
                    f"({frame[column].iloc[row]}) at row {row}; numbers must be finite",
                )

    def record(self, metrics: Metrics, frame: pd.DataFrame, gaps: np.ndarray) -> None:
        if not self.features:
            return
        present = [c for c in self.expected if c in frame.columns]
        counts = gaps[:, frame.columns.get_indexer(present)].sum(axis=0)
        for column, count in zip(present, counts, strict=True):
            if count:
                metrics.missing.labels(column).inc(int(count))
        for column, (low, high) in self.ranges.items():
            if column in frame.columns:
                values = _as_numbers(frame[column])
                outside = int((values < low).sum() if low is not None else 0) + int(
                    (values > high).sum() if high is not None else 0
                )
                if outside:
                    metrics.out_of_range.labels(column).inc(outside)


def _as_numbers(values: pd.Series) -> np.ndarray:
    if isinstance(values.dtype, np.dtype) and values.dtype.kind in "fiub":
        return values.to_numpy(dtype=float)
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _record_outputs(metrics: Metrics, output: pd.DataFrame, features: dict[str, Any] | None) -> None:
    metrics.rows.inc(len(output))
    if "cluster" in output:
        for cluster, count in output["cluster"].value_counts().items():
            metrics.clusters.labels(str(cluster)).inc(int(count))
        return
    if "prediction" not in output:
        return
    predictions = output["prediction"]
    task = TASKS.get(features.get("task")) if features else None
    if task and task.is_classification or predictions.dtype == object:  # labels: counted per class
        counts: collections.Counter = collections.Counter()
        for start in range(0, len(predictions), ANSWER_SLICE_ROWS):  # in slices: one count over all rows held the GIL
            counts.update(predictions.iloc[start : start + ANSWER_SLICE_ROWS].value_counts(dropna=False).to_dict())
        for label, count in counts.items():
            metrics.predicted_class(str(label)).inc(int(count))
    else:
        values = predictions.to_numpy(dtype=float)
        for value in values[np.isfinite(values)]:  # one NaN or inf would make the histogram's sum so for good
            metrics.values.observe(value)


def _records(output: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows as JSON-ready dicts; a non-finite number (which JSON cannot hold) as null."""
    columns = {c: _json_ready(output[c]) for c in output.columns}
    return [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]


def _json_ready(values: pd.Series) -> list[Any]:
    if values.dtype.kind == "f":
        array = values.to_numpy()
        finite = np.isfinite(array)
        return array.tolist() if finite.all() else np.where(finite, array, None).tolist()
    cells = values.tolist()
    return (
        [None if isinstance(v, float) and not math.isfinite(v) else v for v in cells]
        if values.dtype == object
        else cells
    )


def _read_request(
    parser: BodyParser, body: bytes, content_type: str, contract: RequestContract, unknown_columns: str
) -> tuple[pd.DataFrame, np.ndarray, list[str], Any]:
    """The body as a checked frame, its missing-value mask, the columns the model takes and the
    body's ``params.explain`` (None when it has none)."""
    parsed = parser.parse(body, content_type, contract.max_columns)
    frame = contract.protect(parsed)
    return frame, contract.check(frame, unknown_columns), contract.known(frame), parsed.attrs.get(EXPLAIN_PARAM)


def _explain_count(in_url: str | None, in_body: Any) -> int:
    """How many contributions per row the request asks for (0: none), from ``?explain=k`` or the
    body's ``params.explain``; more than the model has columns means all of them."""
    wanted = "must be a whole number of contributions per row"
    asked = []
    if in_url is not None:
        if not in_url.strip().isdigit():
            raise BadRequest(400, "BAD_REQUEST", f"?{EXPLAIN_PARAM}= {wanted}, got {quoted(in_url)}")
        asked.append(int(in_url))
    if in_body is not None:
        if isinstance(in_body, bool) or not isinstance(in_body, int) or in_body < 0:
            raise BadRequest(400, "BAD_REQUEST", f"params.{EXPLAIN_PARAM} {wanted}, got {quoted(json.dumps(in_body))}")
        asked.append(in_body)
    if len(set(asked)) > 1:
        raise BadRequest(
            400, "BAD_REQUEST", f"?{EXPLAIN_PARAM}={asked[0]} and params.{EXPLAIN_PARAM}={asked[1]} disagree; send one"
        )
    return asked[0] if asked else 0


def _answer(
    metrics: Metrics,
    contract: RequestContract,
    features: dict[str, Any] | None,
    frame: pd.DataFrame,
    gaps: np.ndarray,
    output: pd.DataFrame,
    explained: pd.DataFrame | None = None,
) -> bytes:
    """Counts the request in /metrics and renders its JSON answer (as Starlette's JSONResponse would):
    ``predictions``, and ``explanations`` (one per row, in the same order) when the request asked."""
    contract.record(metrics, frame, gaps)
    _record_outputs(metrics, output, features)
    # JSON in slices, so that the list of row dicts for a 400,000-row answer never exists all at once
    slices = [
        json.dumps(
            _records(output.iloc[start : start + ANSWER_SLICE_ROWS]),
            ensure_ascii=False,
            allow_nan=False,
            separators=(",", ":"),
        )[1:-1]
        for start in range(0, len(output), ANSWER_SLICE_ROWS)
    ]
    answer = '{"predictions":[' + ",".join(slices) + "]"
    if explained is not None:
        answer += ',"explanations":' + json.dumps(_explanations(explained), separators=(",", ":"))
    return (answer + "}").encode("utf-8")


def _explanations(explained: pd.DataFrame) -> list[dict[str, Any]]:
    """``explain.top_frame`` columns as one object per row: its contributions, largest first, the
    base value they add to, their scale and (multiclass) the class explained."""
    k = sum(1 for c in explained.columns if c.startswith("feature_"))
    features = [explained[f"feature_{i + 1}"].tolist() for i in range(k)]
    contributions = [explained[f"contribution_{i + 1}"].tolist() for i in range(k)]
    bases, scales = explained["base_value"].tolist(), explained["explanation_scale"].tolist()
    classes = explained["explained_class"].tolist() if "explained_class" in explained else None
    rows = []
    for row in range(len(explained)):
        item = {
            "contributions": [{"feature": features[i][row], "contribution": contributions[i][row]} for i in range(k)],
            "base_value": bases[row],
            "scale": scales[row],
        }
        if classes is not None:
            item["class"] = classes[row]
        rows.append(item)
    return rows


def _settle_heap(released: bool) -> None:
    """Freeze what is alive (the imports, the model: some 350,000 objects) out of the collector's sight:
    each full collection walked them all, a 150-700 ms pause of the event loop, and /health with it,
    every few seconds under load. When a model that was frozen has been ``released`` (swapped out, or
    a shadow turned off), thaw and collect first, so its reference cycles are freed (at the next swap
    if a request still held it). At a first load nothing frozen was let go, so nothing is collected: on
    telco's ensemble a collection there found some 100 unreachable objects and no memory (349 MB before
    and after) for a 0.15 s walk of 355,000 objects, paid again by each app a test process starts."""
    if released:
        gc.unfreeze()
        gc.collect()
    gc.freeze()


LOAD_RETRY_MAX_S = 300.0


@dataclass
class LoadRetry:
    """When to try again a version that failed to load. A failure may pass (the artifact store or the
    database briefly unreachable), so the version is retried rather than skipped until the alias moves;
    at doubling intervals, so a version that is truly broken costs a load now and then, not one per poll."""

    first_s: float
    version: str | None = None
    failures: int = 0
    due_at: float = 0.0

    def failed(self, version: str, now: float) -> float:
        """Count a failed load of ``version`` at ``now``; the seconds until it is due again."""
        self.failures = self.failures + 1 if version == self.version else 1
        self.version = version
        wait = min(LOAD_RETRY_MAX_S, self.first_s * 2 ** (self.failures - 1))
        self.due_at = now + wait
        return wait

    def waiting(self, version: str, now: float) -> bool:
        """Whether ``version`` failed to load and is not due again yet."""
        return version == self.version and now < self.due_at

    def loaded(self) -> None:
        self.version, self.failures = None, 0


class ServingState:
    """The served model (or, with ``shadow``, the shadow) and its registry follower; ``served`` is
    swapped in one assignment. A shadow whose alias names no version stops: nothing to compare."""

    def __init__(self, settings: ServeSettings, source: RegistrySource, metrics: Metrics, *, shadow: bool = False):
        self.settings = settings
        self.source = source
        self.metrics = metrics
        self.shadow = shadow
        self.served: Served | None = None
        self.released = False  # a served version was let go since the heap was last settled
        self.retry = LoadRetry(settings.load_retry_s)

    async def refresh(self) -> None:
        """Load the version the alias names if it is not the one served (never raises)."""
        try:
            version = await asyncio.to_thread(self.source.current)
        except Exception as error:  # noqa: BLE001 - a registry hiccup must not stop serving
            log.warning("cannot resolve %s: %s", self._target(), error)
            return
        if version is None and self.shadow and self.served is not None:
            log.info("%s names no version: shadow off (was version %s)", self._target(), self.served.version)
            self.served, self.metrics.shadow_info, self.released = None, {}, True
            return
        if version is None or (self.served is not None and version == self.served.version):
            return
        if self.served is not None and self.retry.waiting(version, time.monotonic()):
            return  # keep serving the old one; with nothing served, retry the failed load every poll
        try:
            fresh = await asyncio.to_thread(self.source.load, version)
        except Exception as error:  # noqa: BLE001 - keep serving the old version
            wait_s = self.retry.failed(version, time.monotonic())
            (self.metrics.shadow_errors.labels("load") if self.shadow else self.metrics.load_failures).inc()
            log.error(
                "version %s of %s failed to load (attempt %d), still %s %s; next try in %g s: %s",
                version,
                self._target(),
                self.retry.failures,
                "shadowing with" if self.shadow else "serving",
                self.served.version if self.served else "nothing",
                wait_s if self.served else self.settings.poll_s,
                error,
            )
            return
        previous = self.served
        self.served = fresh
        self.retry.loaded()
        info = {
            "model": self.settings.model or "",
            "alias": self.settings.alias if self.settings.model else "",
            "version": fresh.version,
            "uri": fresh.uri,
            "run_id": fresh.run_id or "",
        }
        if self.shadow:
            self.metrics.shadow_info = info
        else:
            self.metrics.model_info = info
            if previous is not None:
                self.metrics.swaps.inc()
        log.info(
            "%s %s version %s (was %s)",
            "shadowing with" if self.shadow else "serving",
            self._target(),
            fresh.version,
            previous.version if previous else "none",
        )
        released, self.released = self.released or previous is not None, False
        del previous, fresh
        _settle_heap(released)

    def _target(self) -> str:
        return self.settings.model_uri or f"models:/{self.settings.model}@{self.settings.alias}"

    async def follow(self) -> None:
        while True:
            await asyncio.sleep(self.settings.poll_s)
            await self.refresh()


def create_app(settings: ServeSettings, source: RegistrySource | None = None) -> Starlette:
    metrics = Metrics()
    state = ServingState(settings, source or RegistrySource(settings), metrics)
    prediction_log = (
        PredictionLog(
            settings.log_dir,
            settings.log_sample_rate,
            settings.log_rotate_rows,
            settings.log_rotate_s,
            on_drop=metrics.log_dropped.inc,
            table=settings.log_table,
        )
        if settings.log_dir
        else None
    )
    shadow_state = shadow = shadow_process = None
    if settings.shadow is not None:  # its model in a process of its own (services.shadow)
        shadow_settings = dataclasses.replace(settings, alias=settings.shadow, shadow=None)
        shadow_process = ShadowProcess(shadowing.settings_for(settings))
        shadow_state = ServingState(
            shadow_settings, ShadowSource(RegistrySource(shadow_settings), shadow_process), metrics, shadow=True
        )
        shadow = Shadow(
            shadow_state,
            metrics,
            prediction_log,
            sample_rate=settings.shadow_sample_rate,
            max_batch_rows=settings.max_batch_rows,
            batch_wait_s=settings.batch_wait_ms / 1000,
        )
    # parsing, checking and answering run here, never on the event loop (a large body must not stall
    # /health or other clients); its threads bound how many requests do so at once
    parse_pool = concurrent.futures.ThreadPoolExecutor(max_workers=PARSE_THREADS, thread_name_prefix="mlgate-parse")
    budget = BodyBudget(settings.max_inflight_bytes)
    parser = BodyParser()

    def finish(endpoint: str, started: float, response: Response) -> Response:
        metrics.requests.labels(endpoint, str(response.status_code)).inc()
        metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
        return response

    def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        if len(message) > MESSAGE_CHARS:
            message = f"{message[:MESSAGE_CHARS]}...(cut)"
        return JSONResponse({"error_code": code, "message": message}, status_code=status, headers=headers)

    async def invocations(request: Request) -> Response:
        started = time.perf_counter()
        served = state.served
        # the server's own id: the label join key must be unique, whatever a client sends
        request_id = uuid.uuid4().hex
        client_request_id = request.headers.get("x-request-id", "")[:CLIENT_ID_CHARS] or None
        headers = {"X-Request-Id": request_id}
        if served is None:
            return finish("invocations", started, error(503, "NOT_READY", "no model is loaded yet", headers))
        headers["X-Model-Version"] = served.version
        contract = served.contract(settings.max_extra_columns)
        loop = asyncio.get_running_loop()
        try:
            declared = int(request.headers.get("content-length") or 0)
            if declared > settings.max_body_bytes:
                raise BadRequest(
                    413, "PAYLOAD_TOO_LARGE", f"body of {declared:,} bytes; the limit is {settings.max_body_bytes:,}"
                )
            chunked = "chunked" in request.headers.get("transfer-encoding", "").lower()
            async with budget.hold(settings.max_body_bytes if chunked else declared):
                body = await _read_capped(request, settings.max_body_bytes, settings.body_timeout_s)
                frame, gaps, known, explain_in_body = await loop.run_in_executor(
                    parse_pool,
                    _read_request,
                    parser,
                    body,
                    request.headers.get("content-type", ""),
                    contract,
                    settings.unknown_columns,
                )
                if frame.empty:
                    return finish("invocations", started, JSONResponse({"predictions": []}, headers=headers))
                model_input = frame if len(known) == frame.shape[1] else frame[known]
                top = _explain_count(request.query_params.get(EXPLAIN_PARAM), explain_in_body)
                explained = None
                if top:  # not batched: an explanation is computed per request
                    output, explained = await loop.run_in_executor(model_thread(), served.explained, model_input, top)
                else:
                    output = await served.batcher(
                        settings.max_batch_rows, settings.batch_wait_ms / 1000, metrics.call_rows.observe
                    ).predict(model_input)
                content = await loop.run_in_executor(
                    parse_pool, _answer, metrics, contract, served.model.features, frame, gaps, output, explained
                )
        except ClientDisconnect:
            log.debug("request %s: the client left before its body arrived", request_id)
            return finish("invocations", started, Response(status_code=int(DISCONNECTED), headers=headers))
        except BadRequest as bad:
            if bad.status in (408, 413):  # the rest of the body is never read: do not wait for it
                headers["Connection"] = "close"
            return finish("invocations", started, error(bad.status, bad.code, bad.message, headers))
        except InputValidationError as bad:
            return finish("invocations", started, error(422, "INVALID_INPUT", str(bad), headers))
        except explain.NoExplanation as missing:
            return finish("invocations", started, error(501, "EXPLANATION_UNAVAILABLE", str(missing), headers))
        except Exception as failure:  # noqa: BLE001 - a model error is a 500 with its message, never a crash
            log.exception("request %s: prediction failed", request_id)
            return finish(
                "invocations", started, error(500, "INTERNAL_ERROR", f"{type(failure).__name__}: {failure}", headers)
            )
        if prediction_log is not None:
            prediction_log.submit(
                request_id,
                served.version,
                frame,
                output,
                client_request_id=client_request_id,
                logged_columns=known,
                size=len(body),
            )
        if shadow is not None and shadow_state.served is not None and shadow_state.served.version != served.version:
            shadow.offer(request_id, frame, output, is_classification(served.model.features, output))
        return finish("invocations", started, Response(content, media_type="application/json", headers=headers))

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(request: Request) -> Response:
        served = state.served
        if served is None:
            return JSONResponse({"ready": False, "reason": "no model loaded"}, status_code=503)
        return JSONResponse({"ready": True, "version": served.version})

    async def version(request: Request) -> Response:
        served = state.served
        if served is None:
            return error(503, "NOT_READY", "no model is loaded yet")
        return JSONResponse(
            {
                "model": settings.model,
                "alias": settings.alias if settings.model else None,
                "version": served.version,
                "uri": served.uri,
                "run_id": served.run_id,
                "gate_passed": served.gate,
                "shadow": None
                if shadow_state is None
                else {
                    "alias": settings.shadow,
                    "version": None if shadow_state.served is None else shadow_state.served.version,
                },
            }
        )

    async def prometheus(request: Request) -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # the event loop waits for the interpreter lock behind the model, parse, answer and log threads:
        # Python's 5 ms turns, each, before /health gets its turn (SWITCH_INTERVAL_S)
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        parser_ready = asyncio.create_task(asyncio.to_thread(parser.start))  # while the model loads
        await state.refresh()
        await parser_ready
        followers = [state.follow()] if settings.model is not None else []
        if shadow_state is not None:  # loads in the background: the served model does not wait for it
            followers.append(_refreshed_then_followed(shadow_state))
        following = [asyncio.create_task(follower) for follower in followers]
        try:
            yield
        finally:
            for task in following:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if shadow is not None:
                await shadow.close()
                shadow_process.close()
            if prediction_log is not None:
                prediction_log.close()
            parse_pool.shutdown(wait=False, cancel_futures=True)
            parser.close()
            gc.unfreeze()  # the app is done with what it froze

    app = Starlette(
        routes=[
            Route("/invocations", invocations, methods=["POST"]),
            Route("/health", health),
            Route("/ping", health),
            Route("/ready", ready),
            Route("/version", version),
            Route("/metrics", prometheus),
        ],
        lifespan=lifespan,
    )
    app.state.serving = state
    app.state.shadow_process = shadow_process  # for operators' tools and tests: its pid
    return app


async def _refreshed_then_followed(state: ServingState) -> None:
    await state.refresh()
    await state.follow()


def serve(settings: ServeSettings, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Run the app under uvicorn; with ``settings.workers > 1``, as that many processes on one port."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    _log_to_stderr()
    if settings.workers == 1:
        uvicorn.Server(uvicorn_config(create_app(settings), settings, host, port)).run()
        return
    with tempfile.TemporaryDirectory(prefix="mlgate-metrics-") as shared:
        # set before the workers start, so their prometheus_client keeps its values in shared files
        os.environ.setdefault(MULTIPROCESS_ENV, shared)
        os.environ[SETTINGS_ENV] = json.dumps(dataclasses.asdict(settings))
        config = uvicorn_config(
            "mlgate.services.serving:app_from_environment", settings, host, port, factory=True, workers=settings.workers
        )
        Multiprocess(config, sockets=[config.bind_socket()]).run()


# how long uvicorn's supervisor waits for a worker to answer its health ping (uvicorn's 5 s: a worker
# that imports MLflow and loads a model on a loaded 2-core machine took longer, and was killed and respawned for ever)
WORKER_START_S = 60


def uvicorn_config(app: Any, settings: ServeSettings, host: str, port: int, **options: Any) -> Any:
    """uvicorn's configuration with the server's limits: at most ``max_connections`` connections and
    requests (more get a 503 from uvicorn), headers due within ``header_timeout_s``
    (``HeaderDeadlineProtocol``), an idle keep-alive connection closed after 5 s."""
    import uvicorn

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        http=HeaderDeadlineProtocol,
        limit_concurrency=settings.max_connections,
        timeout_keep_alive=5,
        timeout_worker_healthcheck=WORKER_START_S,
        **options,
    )
    config.header_timeout_s = (
        settings.header_timeout_s
    )  # read by HeaderDeadlineProtocol; travels to workers with the config
    return config


try:  # uvicorn's faster protocol when httptools is installed, as its "auto" choice does
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _UvicornProtocol
except ImportError:
    from uvicorn.protocols.http.h11_impl import H11Protocol as _UvicornProtocol


class HeaderDeadlineProtocol(_UvicornProtocol):
    """uvicorn's HTTP protocol, closing a connection whose request headers do not all arrive within
    ``config.header_timeout_s`` (uvicorn waits for ever: 300 half-sent requests held their connections
    until the clients gave up). Armed when a connection opens and after each response; a new request
    cycle (headers complete) disarms it."""

    def __init__(self, config: Any, *args: Any, **kwargs: Any):
        super().__init__(config, *args, **kwargs)
        self.header_timeout_s = getattr(config, "header_timeout_s", None)
        self.header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        cycle = self.cycle
        super().data_received(data)
        if self.cycle is not cycle:
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        if self.header_timeout_s:
            self.header_deadline = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _disarm(self) -> None:
        if self.header_deadline is not None:
            self.header_deadline.cancel()
            self.header_deadline = None

    def _headers_late(self) -> None:
        self.header_deadline = None
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being served: its headers came
        if not self.transport.is_closing():
            self.transport.close()


def app_from_environment() -> Starlette:
    """One worker's app under `serve --workers N`: the settings come from the parent's environment."""
    _log_to_stderr()
    return create_app(ServeSettings(**json.loads(os.environ[SETTINGS_ENV])))


def _log_to_stderr() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
