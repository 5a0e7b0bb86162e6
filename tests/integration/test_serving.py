"""`mlgate serve` end to end: a real uvicorn server over versions the pipeline registered.

One temporary project (own SQLite MLflow store), a copy of the session's `dvc repro` of every stage,
promotes the gated version to `production`, then trains a second version (another seed) that the
gate stages. Servers run in a background thread on a free port and are queried with `requests`;
tests that need exact metric counts or a one-off setting use a fresh app under Starlette's
TestClient (which runs the lifespan).
"""

from __future__ import annotations

import copy
import datetime as dt
import io
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests

from tests.helpers import (
    BIN,
    POSTGRES,
    Live,
    clone_project,
    labelled,
    logged_columns,
    metric,
    parse_metrics,
    running,
    scratch_table,
)

pytestmark = pytest.mark.slow

POLL_S = 0.2
BODY_LIMIT = 32_000  # the shared server's max_body_bytes
SWAP_DEADLINE_S = 30.0  # generous: a model load, a retry after a passing failure (5 s), polls, on a busy CI box
SHADOW_START_S = 60.0  # a shadow process's start: a Python that imports mlgate and MLflow, then the load


@dataclass
class Project:
    root: Path
    params: dict[str, Any]
    name: str
    v1: int  # promoted to production by the fixture
    v2: int  # a second real version (another seed), holding 'staging'
    v1_run_id: str
    features: list[str]  # the model's input columns, in order
    test_rows: pd.DataFrame  # held-out rows without the target


@pytest.fixture(scope="module")
def project(built_project, tmp_path_factory) -> Iterator[Project]:
    from mlgate import config
    from mlgate.adapters import tracking
    from mlgate.services import promote
    from mlgate.stages import drift, evaluate, gate, train

    root = clone_project(built_project.root, tmp_path_factory.mktemp("serving") / "project")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        patch.delenv("MLFLOW_REGISTRY_URI", raising=False)
        params = config.read_params()
        first = {
            "gate": json.loads((root / "reports/gate.json").read_text()),
            "train": json.loads((root / "models/train_run.json").read_text()),
        }
        assert first["gate"]["passed"], first["gate"]["reasons"]
        name = params["tracking"]["registered_model"]
        v1 = int(first["gate"]["candidate"]["version"])
        assert tracking.version_by_alias(name, "staging").version == v1
        promote.promote(name, v1, "production", "serving tests")

        # A second version: the same configuration refit with another seed, gated against v1. Its
        # quality is not the subject here, so the gate may not refuse it for a small loss.
        again = copy.deepcopy(params)
        again["seed"] = int(params["seed"]) + 1
        again["gate"]["max_regression"] = 1.0
        second = {stage.STAGE: stage.run(again) for stage in (train, evaluate, drift, gate)}
        assert second["gate"].passed, second["gate"].reasons
        v2 = second["gate"].candidate.version
        assert v2 != v1
        assert tracking.version_by_alias(name, "production").version == v1
        assert tracking.version_by_alias(name, "staging").version == v2

        target = params["data"]["target"]
        test_rows = pd.read_parquet(root / "data/split/test.parquet").drop(columns=[target]).reset_index(drop=True)
        features = json.loads((root / "models/model/artifacts/features.json").read_text())["order"]
        yield Project(root, params, name, v1, v2, first["train"]["run_id"], features, test_rows)


@pytest.fixture
def tracked(project: Project, monkeypatch) -> Project:
    """The project's store and folder for this test (the module fixture set them already; this makes
    each test independent of fixture order), with 'production' back on v1 afterwards."""
    from mlgate.adapters import tracking

    monkeypatch.chdir(project.root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{project.root / 'mlflow.db'}")
    yield project
    if tracking.version_by_alias(project.name, "production").version != project.v1:
        tracking.set_alias(project.name, "production", project.v1)


# --- helpers ----------------------------------------------------------------------------------


def settings(project: Project, **overrides):
    from mlgate.services.serving import ServeSettings

    return ServeSettings(**{"model": project.name, "alias": "production", "poll_s": POLL_S, **overrides})


def wait_for(condition, timeout: float = SWAP_DEADLINE_S, what: str = "condition", log: Path | None = None):
    """``condition()``'s first truthy value; on timeout, an error naming ``what`` with ``log``'s tail."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        tail = f"; the server's log ends:\n{log.read_text(errors='replace')[-4000:]}" if log is not None else ""
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}{tail}"
        time.sleep(0.05)


def json_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Records as a client would send them: JSON numbers and strings, NaN as null."""
    return json.loads(frame.to_json(orient="records", double_precision=15))


def bodies(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """The same rows in each JSON body MLflow's scoring server takes (CSV separately)."""
    records = json_rows(frame)
    columns = {c: json.loads(frame[c].to_json(orient="values", double_precision=15)) for c in frame.columns}
    split = json.loads(frame.to_json(orient="split", index=False, double_precision=15))
    return {
        "dataframe_split": {"dataframe_split": {"columns": split["columns"], "data": split["data"]}},
        "dataframe_records": {"dataframe_records": records},
        "inputs_records": {"inputs": records},
        "inputs_columns": {"inputs": columns},
    }


def predictions(response: requests.Response) -> pd.DataFrame:
    assert response.status_code == 200, response.text
    return pd.DataFrame(response.json()["predictions"])


def sample(project: Project, rows: int, start: int = 0) -> pd.DataFrame:
    """``rows`` held-out rows; the second (when there is one) has a missing total_charges (allowed)."""
    frame = project.test_rows.iloc[start : start + rows].reset_index(drop=True).copy()
    if rows > 1:
        frame.loc[1, "total_charges"] = np.nan
    return frame


@pytest.fixture(scope="module")
def live(project: Project, tmp_path_factory) -> Iterator[Live]:
    """The shared server, following 'production' (v1 while these tests run)."""
    with running(
        settings(project, max_body_bytes=BODY_LIMIT, log_dir=str(tmp_path_factory.mktemp("plog-shared")))
    ) as server:
        yield server


# --- 1. body formats ---------------------------------------------------------------------------


def test_every_body_format_predicts_as_the_registered_model(tracked, live):
    import mlflow

    from mlgate.adapters import tracking

    rows = sample(tracked, 6)
    tracking.client()  # points mlflow at the project's store and registry
    expected = mlflow.pyfunc.load_model(f"models:/{tracked.name}@production").predict(rows)
    assert list(expected.columns) == ["prediction", "probability"]

    answers = {kind: live.post(body, headers={"X-Request-Id": f"req-{kind}"}) for kind, body in bodies(rows).items()}
    answers["csv"] = live.post(
        data=rows.to_csv(index=False).encode(), headers={"Content-Type": "text/csv", "X-Request-Id": "req-csv"}
    )
    for kind, response in answers.items():
        got = predictions(response)
        assert list(got.columns) == ["prediction", "probability"], kind
        assert got["prediction"].tolist() == expected["prediction"].tolist(), kind
        np.testing.assert_allclose(
            got["probability"].to_numpy(), expected["probability"].to_numpy(), rtol=0, atol=1e-9, err_msg=kind
        )
        assert response.headers["X-Model-Version"] == str(tracked.v1), kind
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-Id"]), kind  # the server's, not the client's
        assert response.headers["content-type"].startswith("application/json"), kind

    anonymous = live.post(bodies(rows.head(1))["dataframe_records"])
    assert anonymous.status_code == 200
    ids = [response.headers["X-Request-Id"] for response in [*answers.values(), anonymous]]
    assert len(set(ids)) == len(ids)


def test_charset_parameter_and_column_order_do_not_matter(tracked, live):
    rows = sample(tracked, 3)
    plain = predictions(live.post(bodies(rows)["dataframe_records"]))
    shuffled = rows[list(reversed(rows.columns))]
    body = json.dumps(
        {"dataframe_split": json.loads(shuffled.to_json(orient="split", index=False, double_precision=15))}
    )
    response = live.post(data=body.encode(), headers={"Content-Type": "application/json; charset=utf-8"})
    pd.testing.assert_frame_equal(predictions(response), plain, check_exact=False, atol=1e-12, rtol=0)


def test_explanations_are_opt_in_and_add_up_to_the_models_raw_output(tracked, live):
    """?explain=k or params.explain (how an MLflow client sends per-request params) adds each row's k
    largest contributions; a request without it gets the answer MLflow clients expect."""
    from mlgate.adapters import tracking
    from mlgate.modelling.task import logit

    rows = sample(tracked, 5)
    plain = live.post(bodies(rows)["dataframe_split"])
    assert set(plain.json()) == {"predictions"}

    in_url = live.post(bodies(rows)["dataframe_split"], params={"explain": 3})
    in_body = live.post({**bodies(rows)["dataframe_records"], "params": {"explain": 3}})
    for answer in (in_url, in_body):
        pd.testing.assert_frame_equal(predictions(answer), predictions(plain), check_exact=False, atol=1e-12, rtol=0)
        explanations = answer.json()["explanations"]
        assert len(explanations) == 5
        for row in explanations:
            sizes = [abs(c["contribution"]) for c in row["contributions"]]
            assert len(sizes) == 3 and sizes == sorted(sizes, reverse=True)
            assert {c["feature"] for c in row["contributions"]} <= set(tracked.features)
    assert in_url.json()["explanations"] == in_body.json()["explanations"]

    every = live.post(bodies(rows)["dataframe_split"], params={"explain": 1000}).json()["explanations"]
    assert {len(row["contributions"]) for row in every} == {len(tracked.features)}
    model = tracking.load(f"models:/{tracked.name}/{tracked.v1}").pipeline
    combined = model._combined(rows)  # the members' combined output, before the calibration map
    scale = every[0]["scale"]
    expected = logit(combined) if scale == "log-odds" else combined
    added = [row["base_value"] + sum(c["contribution"] for c in row["contributions"]) for row in every]
    np.testing.assert_allclose(added, expected, atol=1e-9)


@pytest.mark.parametrize(
    "query, params, words",
    [
        ({"explain": "three"}, None, "?explain= must be a whole number of contributions per row, got 'three'"),
        (None, {"explain": -1}, "params.explain must be a whole number of contributions per row, got '-1'"),
        (None, {"explain": True}, "params.explain must be a whole number"),
        ({"explain": "2"}, {"explain": 3}, "?explain=2 and params.explain=3 disagree"),
    ],
)
def test_a_bad_explain_parameter_is_400_naming_it(tracked, live, query, params, words):
    body = bodies(sample(tracked, 2))["dataframe_records"] | ({"params": params} if params else {})
    assert words in error_of(live.post(body, params=query), 400)


# --- 2. bad payloads ---------------------------------------------------------------------------


def error_of(response: requests.Response, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error_code", "message"}, body
    return body["message"]


def test_missing_required_column_is_422_naming_it(tracked, live):
    rows = sample(tracked, 3).drop(columns=["tenure"])
    response = live.post(bodies(rows)["dataframe_records"], headers={"X-Request-Id": "bad-1"})
    message = error_of(response, 422)
    assert "tenure" in message and "monthly_charges" not in message
    assert response.json()["error_code"] == "INVALID_INPUT"
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-Id"])  # errors carry the server's id too
    assert response.headers["X-Model-Version"] == str(tracked.v1)


@pytest.mark.parametrize("kind", ["dataframe_records", "dataframe_split", "inputs_columns", "csv"])
def test_word_in_numeric_column_is_422_naming_column_value_and_row(tracked, live, kind):
    rows = sample(tracked, 3).astype({"monthly_charges": object})
    rows.loc[2, "monthly_charges"] = "lots"
    if kind == "csv":
        response = live.post(data=rows.to_csv(index=False).encode(), headers={"Content-Type": "text/csv"})
    else:
        response = live.post(bodies(rows)[kind])
    message = error_of(response, 422)
    assert "monthly_charges" in message and "lots" in message and "row 2" in message, message


def test_missing_value_in_not_null_column_is_422_naming_column_and_row(tracked, live):
    rows = sample(tracked, 4)
    rows["tenure"] = rows["tenure"].astype(float)
    rows.loc[3, "tenure"] = np.nan
    message = error_of(live.post(bodies(rows)["dataframe_records"]), 422)
    assert "tenure" in message and "row 3" in message, message
    assert "total_charges" not in message  # row 1's gap there is allowed (max_missing_share 0.01)


def test_unknown_column_is_ignored_by_default(tracked, live):
    rows = sample(tracked, 2)
    extra = rows.assign(favourite_colour=["blue", "green"])
    baseline = predictions(live.post(bodies(rows)["dataframe_records"]))
    pd.testing.assert_frame_equal(predictions(live.post(bodies(extra)["dataframe_records"])), baseline)


def test_unknown_column_is_422_when_the_server_rejects_them(tracked):
    from starlette.testclient import TestClient

    from mlgate.services.serving import create_app

    extra = sample(tracked, 2).assign(favourite_colour=["blue", "green"])
    with TestClient(create_app(settings(tracked, unknown_columns="reject", poll_s=60))) as client:
        response = client.post("/invocations", json=bodies(extra)["dataframe_records"])
        assert response.status_code == 422, response.text
        assert response.json()["error_code"] == "INVALID_INPUT"
        assert "unknown column(s) ['favourite_colour']" in response.json()["message"]


def test_value_outside_a_fail_category_is_422(tracked, live):
    rows = sample(tracked, 3)
    rows.loc[0, "contract"] = "Three year"  # contract: new_categories: fail
    message = error_of(live.post(bodies(rows)["dataframe_records"]), 422)
    assert "contract" in message and "Three year" in message, message


def test_body_over_the_limit_is_413(tracked, live):
    rows = pd.concat([tracked.test_rows] * 2, ignore_index=True).head(400)
    body = json.dumps({"dataframe_records": json_rows(rows)}).encode()
    assert len(body) > BODY_LIMIT
    message = error_of(live.post(data=body, headers={"Content-Type": "application/json"}), 413)
    assert f"{BODY_LIMIT:,}" in message

    def chunks():  # no Content-Length: the limit must hold for a chunked body too
        for start in range(0, len(body), 4096):
            yield body[start : start + 4096]

    response = live.post(data=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413, response.text


def raw_request(live: Live, head: bytes, body: bytes, wait_s: float = 3.0) -> bytes | None:
    """Send ``head`` and ``body`` on a socket without finishing the request; the response's first
    bytes, or None when the server waits for the rest of the body instead of answering."""
    host, port = live.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(head + body)
        connection.settimeout(wait_s)
        try:
            return connection.recv(256)
        except TimeoutError:
            return None


def test_declared_length_over_the_limit_is_413_before_the_body_arrives(live):
    head = (
        b"POST /invocations HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % (100 * BODY_LIMIT)
    )
    answer = raw_request(live, head, b'{"dataframe_records": [')
    assert answer is not None and answer.startswith(b"HTTP/1.1 413"), answer


def test_chunked_body_is_cut_off_at_the_limit(live):
    head = (
        b"POST /invocations HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"x" * 4096
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(2 * BODY_LIMIT // len(chunk) + 1))
    answer = raw_request(live, head, body)  # no last chunk: the body has not ended
    assert answer is not None and answer.startswith(b"HTTP/1.1 413"), answer


def test_empty_batch_is_not_a_server_error(tracked, live):
    empty = {"dataframe_split": {"columns": tracked.features, "data": []}}
    response = live.post(empty)
    assert response.status_code < 500, response.text
    if response.status_code == 200:
        assert response.json() == {"predictions": []}


@pytest.mark.parametrize(
    ("content_type", "body", "status", "words"),
    [
        ("text/plain", b"tenure=3", 415, ["text/plain"]),
        (None, b'{"dataframe_records": []}', 415, ["none"]),
        ("application/json", b'{"dataframe_records": [{"tenure": 1,', 400, ["invalid JSON"]),
        (
            "application/json",
            b'{"rows": [{"tenure": 1}]}',
            400,
            ["dataframe_split", "dataframe_records", "inputs", "rows"],
        ),
        ("application/json", b'{"inputs": [], "dataframe_records": []}', 400, ["exactly one"]),
        ("application/json", b'[{"tenure": 1}]', 400, ["object"]),
        ("application/json", b'{"dataframe_split": {"data": [[1]]}}', 400, ["columns"]),
        ("application/json", b'{"dataframe_records": [1, 2]}', 400, ["records"]),
        (
            "application/json",
            b'{"dataframe_split": {"columns": ["tenure", "tenure"], "data": [[1, 2]]}}',
            422,
            ["duplicate", "tenure"],
        ),
    ],
)
def test_unreadable_bodies_are_4xx_saying_why(tracked, live, content_type, body, status, words):
    headers = {"Content-Type": content_type} if content_type else {}
    response = requests.post(f"{live.url}/invocations", data=body, headers=headers, timeout=30)
    if content_type is None:
        assert "content-type" not in {k.lower() for k in response.request.headers}
    message = error_of(response, status)
    for word in words:
        assert word in message, message


def test_csv_with_bad_quoting_is_400(tracked, live):
    body = io.BytesIO()
    body.write(b'tenure,contract\n1,"Two year\n')
    response = live.post(data=body.getvalue(), headers={"Content-Type": "text/csv"})
    assert "invalid CSV" in error_of(response, 400)


# --- 3. health, readiness, version -------------------------------------------------------------


def test_health_ready_and_version(tracked, live):
    health = live.get("/health")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert live.get("/ping").status_code == 200
    ready = live.get("/ready")
    assert ready.status_code == 200 and ready.json() == {"ready": True, "version": str(tracked.v1)}
    version = live.get("/version")
    assert version.status_code == 200
    assert version.json() == {
        "model": tracked.name,
        "alias": "production",
        "version": str(tracked.v1),
        "uri": f"models:/{tracked.name}/{tracked.v1}",
        "run_id": tracked.v1_run_id,
        "gate_passed": "true",
        "shadow": None,  # no --shadow
    }


def test_not_ready_until_the_alias_names_a_version(tracked):
    from mlgate.adapters import tracking

    with running(settings(tracked, alias="canary")) as server:
        ready = server.get("/ready")
        assert ready.status_code == 503 and ready.json()["ready"] is False
        assert server.get("/health").status_code == 200
        assert error_of(server.get("/version"), 503)
        response = server.post(bodies(sample(tracked, 1))["dataframe_records"])
        assert error_of(response, 503) and response.json()["error_code"] == "NOT_READY"
        tracking.set_alias(tracked.name, "canary", tracked.v2)
        try:
            wait_for(lambda: server.get("/ready").status_code == 200, what="/ready after the alias was set")
            assert server.get("/ready").json() == {"ready": True, "version": str(tracked.v2)}
            assert server.post(bodies(sample(tracked, 1))["dataframe_records"]).headers["X-Model-Version"] == str(
                tracked.v2
            )
            samples = server.metrics()
            assert metric(samples, "mlgate_model_swaps_total") == 0  # a first load is not a swap
        finally:
            tracking.delete_alias(tracked.name, "canary")


def test_model_uri_is_served_as_is_without_following(tracked):
    from starlette.testclient import TestClient

    from mlgate.adapters import tracking
    from mlgate.services.serving import ServeSettings, create_app

    rows = sample(tracked, 3)
    uri = f"models:/{tracked.name}/{tracked.v2}"
    with TestClient(create_app(ServeSettings(model_uri=uri, poll_s=POLL_S))) as client:
        version = client.get("/version").json()
        assert (
            version["uri"] == uri and version["version"] == "" and version["model"] is None and version["alias"] is None
        )
        response = client.post("/invocations", json=bodies(rows)["dataframe_split"])
        assert response.status_code == 200, response.text
        assert response.headers["X-Model-Version"] == ""
        expected = tracking.load(uri).predict(rows)
        got = pd.DataFrame(response.json()["predictions"])
        np.testing.assert_allclose(got["probability"], expected["probability"], rtol=0, atol=1e-9)


# --- 4. alias swap under load ------------------------------------------------------------------


def test_alias_swap_under_load_drops_no_request(tracked):
    from mlgate.services import promote

    row = bodies(sample(tracked, 1, start=10))["dataframe_records"]
    old, new = str(tracked.v1), str(tracked.v2)
    stop = threading.Event()
    seen: dict[int, list[tuple[float, int, str | None]]] = {0: [], 1: []}
    failures: list[str] = []

    def client(worker: int, server: Live) -> None:
        with requests.Session() as session:
            while not stop.is_set():
                try:
                    response = server.post(row, session=session)
                    seen[worker].append(
                        (time.monotonic(), response.status_code, response.headers.get("X-Model-Version"))
                    )
                except requests.RequestException as error:  # a refused or dropped connection is a failure too
                    failures.append(repr(error))

    with running(settings(tracked)) as server:
        workers = [threading.Thread(target=client, args=(i, server), daemon=True) for i in seen]
        for worker in workers:
            worker.start()
        try:
            wait_for(lambda: all(len(s) >= 20 for s in seen.values()), what="traffic on the old version")
            promoted_at = time.monotonic()
            promote.promote(tracked.name, tracked.v2, "production", "swap under load")
            first_new = wait_for(
                lambda: next((t for s in seen.values() for t, _, v in s if v == new), None),
                what="a response from the new version",
            )
            count = sum(len(s) for s in seen.values())
            wait_for(lambda: sum(len(s) for s in seen.values()) >= count + 40, what="traffic on the new version")
        finally:
            stop.set()
            for worker in workers:
                worker.join(30)
        samples = server.metrics()
        ready = server.get("/ready").json()

    assert not failures, failures[:3]
    responses = [r for s in seen.values() for r in s]
    assert Counter(status for _, status, _ in responses) == Counter({200: len(responses)})
    assert {version for _, _, version in responses} == {old, new}
    for stream in seen.values():  # per client, the version only ever moves forward
        versions = [version for _, _, version in stream]
        switch = versions.index(new)
        assert set(versions[:switch]) == {old} and set(versions[switch:]) == {new}
    assert first_new - promoted_at < SWAP_DEADLINE_S
    assert ready == {"ready": True, "version": new}
    assert metric(samples, "mlgate_model_swaps_total") == 1
    assert metric(samples, "mlgate_model_load_failures_total") == 0
    assert metric(samples, "mlgate_requests_total", endpoint="invocations", status="200") == len(responses)
    info = [dict(labels) for labels in labelled(samples, "mlgate_model_info")]
    assert len(info) == 1 and info[0]["version"] == new and info[0]["model"] == tracked.name


# --- 5. a version that fails to load -----------------------------------------------------------


def registered_copy(project: Project, tmp_path: Path, name: str, *, without: str | None = None) -> int:
    """The project's model (less its artifact ``without``) registered anew by real MLflow calls, without
    the digest the gate records, so that it does not load until someone seals it."""
    from mlgate.adapters import tracking

    copy_dir = tmp_path / name
    shutil.copytree(project.root / "models/model", copy_dir)
    if without is not None:
        (copy_dir / "artifacts" / without).unlink()
    run_id = tracking.create_run(project.params["tracking"]["experiment"], name, {"mlgate.stage": "test"})
    tracking.log_artifact(run_id, copy_dir)  # -> artifact path ``name``
    tracking.finish_run(run_id)
    version = tracking.register(project.name, f"runs:/{run_id}/{name}", run_id).version
    with pytest.raises(Exception):  # noqa: B017 - whatever MLflow raises, it must not load
        tracking.load(f"models:/{project.name}/{version}")
    return version


def broken_version(project: Project, tmp_path: Path) -> int:
    """A registered version whose model lacks its fitted pipeline: unloadable."""
    return registered_copy(project, tmp_path, "broken_model", without="pipeline.joblib")


def test_version_that_fails_to_load_keeps_the_old_one_serving(tracked, tmp_path):
    from mlgate.adapters import tracking

    broken = broken_version(tracked, tmp_path)
    row = bodies(sample(tracked, 2))["dataframe_records"]
    with running(settings(tracked)) as server:
        assert server.post(row).headers["X-Model-Version"] == str(tracked.v1)
        tracking.set_alias(tracked.name, "production", broken)
        wait_for(lambda: metric(server.metrics(), "mlgate_model_load_failures_total") >= 1, what="the failed load")

        response = server.post(row)
        assert response.status_code == 200 and response.headers["X-Model-Version"] == str(tracked.v1)
        ready = server.get("/ready")
        assert ready.status_code == 200 and ready.json() == {"ready": True, "version": str(tracked.v1)}
        assert server.get("/version").json()["version"] == str(tracked.v1)
        time.sleep(6 * POLL_S)  # the broken version is not reloaded on every poll
        samples = server.metrics()
        assert metric(samples, "mlgate_model_load_failures_total") == 1
        assert metric(samples, "mlgate_model_swaps_total") == 0
        assert [dict(labels)["version"] for labels in labelled(samples, "mlgate_model_info")] == [str(tracked.v1)]

        # a good version promoted next is picked up: the failure does not wedge the follower
        tracking.set_alias(tracked.name, "production", tracked.v2)
        wait_for(lambda: server.post(row).headers["X-Model-Version"] == str(tracked.v2), what="the next good version")
        assert metric(server.metrics(), "mlgate_model_swaps_total") == 1


def test_a_version_refused_at_first_is_served_once_sealed_without_a_restart(tracked, tmp_path):
    """A failed load is tried again at doubling intervals (here from 0.5 s), not skipped until the alias
    moves: a version refused for want of a recorded digest is served once someone seals it, as its
    error tells them to, and a passing failure (a store briefly unreachable) does not pin the old one."""
    from mlgate.adapters import tracking
    from mlgate.services import promote

    unsealed = registered_copy(tracked, tmp_path, "unsealed_model")
    row = bodies(sample(tracked, 2))["dataframe_records"]
    with running(settings(tracked, load_retry_s=0.5)) as server:
        assert server.post(row).headers["X-Model-Version"] == str(tracked.v1)
        tracking.set_alias(tracked.name, "production", unsealed)
        wait_for(lambda: metric(server.metrics(), "mlgate_model_load_failures_total") >= 1, what="the refused load")
        assert server.post(row).headers["X-Model-Version"] == str(tracked.v1)

        promote.seal(tracked.name, unsealed, "the serving test copied these files from the trained model")
        wait_for(lambda: server.post(row).headers["X-Model-Version"] == str(unsealed), what="the sealed version")
        samples = server.metrics()
        assert metric(samples, "mlgate_model_swaps_total") == 1
        assert [dict(labels)["version"] for labels in labelled(samples, "mlgate_model_info")] == [str(unsealed)]


# --- 6. prediction log -------------------------------------------------------------------------


@pytest.fixture(params=["parquet", "sqlite", "postgresql"])
def log_target(request, tmp_path) -> Iterator[tuple[str, str]]:
    """(where the server logs: a directory or a database URL, the table); a table is dropped afterwards."""
    if request.param == "parquet":
        yield str(tmp_path / "plog"), ""
        return
    url = f"sqlite:///{tmp_path / 'plog.db'}" if request.param == "sqlite" else POSTGRES
    with scratch_table(url, "served") as (_, table):
        yield url, table


def test_prediction_log_holds_exactly_the_rows_sent(tracked, log_target):
    from mlgate.services.monitor import read_window

    target, table = log_target
    sent: dict[str, tuple[pd.DataFrame, pd.DataFrame]] = {}
    started = pd.Timestamp.now(tz="UTC")
    with running(settings(tracked, log_dir=target, **({"log_table": table} if table else {}))) as server:
        for number, size in enumerate((1, 2, 3), start=1):
            rows = sample(tracked, size, start=20 * number)
            response = server.post(bodies(rows)["dataframe_records"], headers={"X-Request-Id": "theirs"})
            sent[response.headers["X-Request-Id"]] = (rows, predictions(response))
        bad = sample(tracked, 2).drop(columns=["tenure"])  # refused requests are not logged
        assert server.post(bodies(bad)["dataframe_records"], headers={"X-Request-Id": "log-bad"}).status_code == 422
    finished = pd.Timestamp.now(tz="UTC")

    if not table:
        assert list(Path(target).glob("*.parquet")) and not list(Path(target).glob("*.tmp"))
    logged = read_window(target, started, *([table] if table else []))
    assert list(logged.columns) == logged_columns(list(tracked.features))
    first, second, third = sent
    assert logged.groupby("request_id")["row"].apply(list).to_dict() == {first: [0], second: [0, 1], third: [0, 1, 2]}
    assert Counter(logged["request_id"]) == Counter({first: 1, second: 2, third: 3})
    assert (logged["client_request_id"] == "theirs").all() and logged["extra_inputs"].isna().all()
    assert (logged["model_version"] == str(tracked.v1)).all() and (logged["role"] == "served").all()
    assert str(logged["timestamp"].dt.tz) == "UTC"
    assert logged["timestamp"].between(started, finished).all()
    for request_id, (rows, output) in sent.items():
        mine = logged[logged["request_id"] == request_id].reset_index(drop=True)
        pd.testing.assert_frame_equal(mine[tracked.features], rows[tracked.features], check_dtype=False)
        assert mine["output_prediction"].tolist() == output["prediction"].tolist()
        np.testing.assert_allclose(mine["output_probability"], output["probability"], rtol=0, atol=0)


# --- 7. a challenger in shadow ------------------------------------------------------------------


def shadow_version(project: Project, tmp_path: Path, extra_column: str) -> int:
    """A registered, sealed version whose contract also requires ``extra_column``: it loads, and refuses
    every request the served model takes (a candidate that needs a feature clients do not send yet)."""
    from mlgate.adapters import tracking
    from mlgate.services import promote

    copy_dir = tmp_path / "wider_model"
    shutil.copytree(project.root / "models/model", copy_dir)
    features_file = copy_dir / "artifacts" / "features.json"
    features = json.loads(features_file.read_text())
    features["order"] = [*features["order"], extra_column]
    features_file.write_text(json.dumps(features))
    run_id = tracking.create_run(project.params["tracking"]["experiment"], "wider", {"mlgate.stage": "test"})
    tracking.log_artifact(run_id, copy_dir)  # -> artifact path "wider_model"
    tracking.finish_run(run_id)
    version = tracking.register(project.name, f"runs:/{run_id}/wider_model", run_id).version
    promote.seal(project.name, version, "test: a candidate that needs a new column")
    return version


def shadow_ready(server: Live, version: int) -> None:
    """Until the shadow process has loaded ``version`` (the server starts without waiting for it)."""
    wait_for(
        lambda: server.get("/version").json()["shadow"]["version"] == str(version),
        SHADOW_START_S,
        what=f"shadow v{version}",
    )


def answers(server: Live, frames: list[pd.DataFrame]) -> list[tuple[str, list[dict[str, Any]]]]:
    """(X-Request-Id, predictions) of each frame sent as one request."""
    found = []
    for frame in frames:
        response = server.post(bodies(frame)["dataframe_records"])
        assert response.status_code == 200, response.text
        found.append((response.headers["X-Request-Id"], response.json()["predictions"]))
    return found


def test_a_shadow_scores_every_request_apart_and_logs_beside_it(tracked, tmp_path):
    from mlgate.adapters import tracking
    from mlgate.services.monitor import read_window

    frames = [sample(tracked, size, start=7 * size) for size in (1, 3, 8, 2)]
    with running(settings(tracked)) as plain:
        unshadowed = [predictions for _, predictions in answers(plain, frames)]
    started = pd.Timestamp.now(tz="UTC")
    directory = tmp_path / "plog"
    with running(settings(tracked, shadow="staging", log_dir=str(directory))) as server:
        shadow_ready(server, tracked.v2)
        shadowed = answers(server, frames)
        rows = sum(len(frame) for frame in frames)
        wait_for(lambda: metric(server.metrics(), "mlgate_shadow_rows_total") == rows, what="the shadow's rows")
        samples = server.metrics()
        described = server.get("/version").json()

    assert [predictions for _, predictions in shadowed] == unshadowed  # the answers are the served model's alone
    assert described["version"] == str(tracked.v1)
    assert described["shadow"] == {"alias": "staging", "version": str(tracked.v2)}
    [info] = [dict(labels) for labels in labelled(samples, "mlgate_shadow_model_info")]
    assert (info["version"], info["alias"]) == (str(tracked.v2), "staging")
    assert metric(samples, "mlgate_shadow_latency_seconds_count") == len(frames)
    assert metric(samples, "mlgate_shadow_skipped_rows_total") == 0
    assert not labelled(samples, "mlgate_shadow_errors_total")

    logged = read_window(directory, started)
    served, shadow = (
        logged[logged["role"] == role].sort_values(["request_id", "row"]) for role in ("served", "shadow")
    )
    assert (served["model_version"] == str(tracked.v1)).all() and (shadow["model_version"] == str(tracked.v2)).all()
    assert served[["request_id", "row"]].values.tolist() == shadow[["request_id", "row"]].values.tolist()
    assert len(shadow) == rows and shadow[tracked.features].isna().all().all()  # the served rows hold the inputs
    staged = tracking.load(f"models:/{tracked.name}/{tracked.v2}")
    for request_id, frame in zip((rid for rid, _ in shadowed), frames, strict=True):
        expected = staged.predict(frame)
        mine = shadow[shadow["request_id"] == request_id].reset_index(drop=True)
        assert mine["output_prediction"].tolist() == expected["prediction"].tolist()
        np.testing.assert_allclose(mine["output_probability"], expected["probability"], rtol=1e-9)
    apart = int((served["output_prediction"].to_numpy() != shadow["output_prediction"].to_numpy()).sum())
    assert metric(samples, "mlgate_shadow_disagreements_total") == apart


def test_a_failing_shadow_is_counted_and_never_reaches_a_client(tracked, tmp_path):
    """A shadow that refuses requests under its own contract, then one that does not load: each kind
    counted, and the answers are the served model's as without a shadow."""
    from mlgate.adapters import tracking

    frames = [sample(tracked, size, start=3 * size) for size in (1, 4)]
    with running(settings(tracked)) as plain:
        unshadowed = [predictions for _, predictions in answers(plain, frames)]
    wider = shadow_version(tracked, tmp_path, "loyalty_points")
    broken = broken_version(tracked, tmp_path)
    try:
        tracking.set_alias(tracked.name, "staging", wider)
        with running(settings(tracked, shadow="staging")) as server:
            shadow_ready(server, wider)
            assert [predictions for _, predictions in answers(server, frames)] == unshadowed
            wait_for(
                lambda: metric(server.metrics(), "mlgate_shadow_errors_total", kind="contract") == 2, what="refusals"
            )
            tracking.set_alias(tracked.name, "staging", broken)
            wait_for(lambda: metric(server.metrics(), "mlgate_shadow_errors_total", kind="load") >= 1, what="load")
            assert [predictions for _, predictions in answers(server, frames)] == unshadowed
            samples = server.metrics()
    finally:
        tracking.set_alias(tracked.name, "staging", tracked.v2)
    assert metric(samples, "mlgate_shadow_rows_total") == 0
    assert metric(samples, "mlgate_requests_total", endpoint="invocations", status="200") == 4
    assert metric(samples, "mlgate_model_load_failures_total") == 0  # the served model's own count is apart


def test_a_stalled_shadow_delays_no_answer_and_its_backlog_is_bounded(tracked, monkeypatch):
    """With the shadow's process stopped (SIGSTOP), every answer still arrives; past the backlog's rows,
    requests are skipped and counted rather than held; resumed, the shadow scores what it kept."""
    from mlgate.services import shadow as shadowing

    monkeypatch.setattr(shadowing, "BACKLOG_ROWS", 10)
    frames = [sample(tracked, 4, start=4 * i) for i in range(6)]
    with running(settings(tracked, shadow="staging")) as server:
        shadow_ready(server, tracked.v2)
        pid = server.app.state.shadow_process.pid()
        os.kill(pid, signal.SIGSTOP)
        try:
            answered = answers(server, frames)
            stalled = metric(server.metrics(), "mlgate_shadow_rows_total")
        finally:
            os.kill(pid, signal.SIGCONT)
        wait_for(lambda: metric(server.metrics(), "mlgate_shadow_rows_total") == 8, what="the kept rows scored")
        samples = server.metrics()
    assert len(answered) == len(frames) and stalled == 0
    assert metric(samples, "mlgate_requests_total", endpoint="invocations", status="200") == len(frames)
    # 10 rows fit: the first two requests (8 rows) wait; the other four (16 rows) are skipped
    assert metric(samples, "mlgate_shadow_skipped_rows_total") == 16


def test_a_shadow_process_that_dies_is_replaced(tracked):
    frames = [sample(tracked, 2, start=2 * i) for i in range(3)]
    with running(settings(tracked, shadow="staging")) as server:
        shadow_ready(server, tracked.v2)
        os.kill(server.app.state.shadow_process.pid(), signal.SIGKILL)
        answers(server, frames[:1])  # meets the dead process: counted
        wait_for(lambda: metric(server.metrics(), "mlgate_shadow_errors_total", kind="prediction") == 1, what="death")
        answers(server, frames[1:])  # a new process, the version loaded again
        wait_for(
            lambda: metric(server.metrics(), "mlgate_shadow_rows_total") == 4, SHADOW_START_S, what="the new one's rows"
        )


def test_a_shadow_follows_its_alias_and_skips_the_served_version(tracked, tmp_path):
    from mlgate.adapters import tracking

    directory = tmp_path / "plog"
    try:
        with running(settings(tracked, shadow="staging", log_dir=str(directory))) as server:
            tracking.set_alias(tracked.name, "staging", tracked.v1)  # the served version: nothing to compare
            shadow_ready(server, tracked.v1)
            answers(server, [sample(tracked, 2)])
            tracking.delete_alias(tracked.name, "staging")
            wait_for(lambda: server.get("/version").json()["shadow"]["version"] is None, what="the shadow off")
            answers(server, [sample(tracked, 2)])
            samples = server.metrics()
    finally:
        tracking.set_alias(tracked.name, "staging", tracked.v2)
    assert metric(samples, "mlgate_shadow_rows_total") == 0
    assert not labelled(samples, "mlgate_shadow_model_info")
    assert set(read_window_roles(directory)) == {"served"}


def read_window_roles(directory: Path) -> list[str]:
    from mlgate.services.monitor import read_window

    return read_window(directory, dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))["role"].tolist()


def test_prediction_log_off_at_sample_rate_zero(tracked, tmp_path):
    directory = tmp_path / "plog0"
    with running(settings(tracked, log_dir=str(directory), log_sample_rate=0.0)) as server:
        for _ in range(3):
            assert server.post(bodies(sample(tracked, 2))["dataframe_records"]).status_code == 200
    assert list(directory.iterdir()) == []


def test_prediction_log_rotates_by_time_under_steady_traffic(tmp_path):
    from mlgate.services.prediction_log import PredictionLog

    log = PredictionLog(tmp_path, rotate_s=0.2)
    inputs, outputs = pd.DataFrame({"tenure": [1.0]}), pd.DataFrame({"prediction": ["No"]})
    try:
        started = time.monotonic()
        while time.monotonic() - started < 1.5:  # one request every ~5 ms, for 7 rotation periods
            log.submit("steady", "1", inputs, outputs)
            time.sleep(0.005)
        written = list(tmp_path.glob("*.parquet"))
    finally:
        log.close()
    assert written, "no prediction-log file after 7 rotation periods of steady traffic"


# --- 7. /metrics -------------------------------------------------------------------------------


def test_metrics_count_requests_rows_and_input_problems(tracked):
    from starlette.testclient import TestClient

    from mlgate.services.serving import create_app

    first = sample(tracked, 3)  # row 1: total_charges missing (allowed)
    second = sample(tracked, 4, start=30)  # row 1: total_charges missing
    second.loc[2, "monthly_charges"] = -5.0  # the contract's min is 0
    with TestClient(create_app(settings(tracked, poll_s=60))) as client:
        assert client.post("/invocations", json=bodies(first)["dataframe_split"]).status_code == 200
        assert client.post("/invocations", json=bodies(second)["dataframe_records"]).status_code == 200
        assert (
            client.post("/invocations", json=bodies(first.drop(columns=["tenure"]))["dataframe_records"]).status_code
            == 422
        )
        assert client.post("/invocations", content=b"x", headers={"Content-Type": "text/plain"}).status_code == 415
        assert client.get("/health").status_code == 200
        text = client.get("/metrics")
        assert text.headers["content-type"].startswith("text/plain")
        samples = parse_metrics(text.text)

    requests_by = labelled(samples, "mlgate_requests_total")
    assert {tuple(sorted(k)): v for k, v in requests_by.items()} == {
        (("endpoint", "invocations"), ("status", "200")): 2.0,
        (("endpoint", "invocations"), ("status", "422")): 1.0,
        (("endpoint", "invocations"), ("status", "415")): 1.0,
    }
    assert metric(samples, "mlgate_request_latency_seconds_count", endpoint="invocations") == 4
    assert metric(samples, "mlgate_rows_predicted_total") == 7
    assert {dict(k)["feature"]: v for k, v in labelled(samples, "mlgate_input_missing_values_total").items()} == {
        "total_charges": 2
    }
    assert {dict(k)["feature"]: v for k, v in labelled(samples, "mlgate_input_out_of_range_total").items()} == {
        "monthly_charges": 1
    }
    classes = {dict(k)["label"]: v for k, v in labelled(samples, "mlgate_predicted_class_total").items()}
    assert set(classes) <= {"Yes", "No"} and sum(classes.values()) == 7
    assert metric(samples, "mlgate_model_swaps_total") == 0
    assert metric(samples, "mlgate_model_load_failures_total") == 0
    info = [dict(labels) for labels in labelled(samples, "mlgate_model_info")]
    assert info == [
        {
            "model": tracked.name,
            "alias": "production",
            "version": str(tracked.v1),
            "uri": f"models:/{tracked.name}/{tracked.v1}",
            "run_id": tracked.v1_run_id,
        }
    ]
    assert not any(math.isnan(v) for v in samples.values())


# --- 8. several worker processes -----------------------------------------------------------------


def test_workers_share_the_port_sum_their_metrics_and_each_follow_the_alias(tracked, tmp_path):
    """`mlgate serve --workers 2` as a real process: /metrics counts every worker's requests whichever
    worker answers the scrape, each worker picks up a promotion, and SIGTERM flushes both logs."""
    from mlgate.services import promote
    from mlgate.services.monitor import read_window

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url, log = f"http://127.0.0.1:{port}", f"sqlite:///{tmp_path / 'plog.db'}"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_REGISTRY_URI"}
    started = pd.Timestamp.now(tz="UTC")
    with open(tmp_path / "serve.log", "wb") as output:
        server = subprocess.Popen(
            [
                str(BIN / "mlgate"),
                "serve",
                "--model",
                tracked.name,
                "--port",
                str(port),
                "--workers",
                "2",
                "--poll-s",
                str(POLL_S),
                "--prediction-log",
                log,
            ],
            cwd=tracked.root,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def scrape() -> dict[tuple[str, frozenset], float]:
        return parse_metrics(requests.get(f"{url}/metrics", timeout=30).text)

    def answered_by(version: int) -> bool:
        return all(
            requests.post(f"{url}/invocations", json=row, timeout=30).headers["X-Model-Version"] == str(version)
            for _ in range(10)
        )

    try:

        def both_loaded() -> bool:
            """Both workers serve a model: /ready answers for whichever worker took the connection (a
            worker accepts only once it has loaded), so the log must show each worker's first load."""
            text = (tmp_path / "serve.log").read_text()
            assert server.poll() is None, text
            return len(set(re.findall(r"^\S+ \S+ (\d+) mlgate\.serve INFO serving .* \(was none\)$", text, re.M))) == 2

        wait_for(both_loaded, timeout=120, what="two workers ready", log=tmp_path / "serve.log")
        assert requests.get(f"{url}/ready", timeout=5).status_code == 200
        row = bodies(sample(tracked, 2))["dataframe_records"]
        for _ in range(20):  # a fresh connection each: the kernel hands them to either worker
            response = requests.post(f"{url}/invocations", json=row, timeout=30)
            assert response.status_code == 200 and response.headers["X-Model-Version"] == str(tracked.v1)
        for _ in range(6):
            samples = scrape()
            assert metric(samples, "mlgate_requests_total", endpoint="invocations", status="200") == 20
            assert metric(samples, "mlgate_rows_predicted_total") == 40
            assert [dict(labels)["version"] for labels in labelled(samples, "mlgate_model_info")] == [str(tracked.v1)]

        promote.promote(tracked.name, tracked.v2, "production", "workers follow the alias")
        wait_for(
            lambda: metric(scrape(), "mlgate_model_swaps_total") == 2,
            what="both workers swapping",
            log=tmp_path / "serve.log",
        )
        assert answered_by(tracked.v2)
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(60) == 0, (tmp_path / "serve.log").read_text()[-3000:]

    logged = read_window(log, started)
    assert len(logged) == 2 * (20 + 10)
    assert Counter(logged["model_version"]) == Counter({str(tracked.v1): 40, str(tracked.v2): 20})


# --- 9. the CLI --------------------------------------------------------------------------------


@pytest.fixture
def captured(monkeypatch) -> list[tuple]:
    """`mlgate serve` with the server replaced by a recorder (no socket, no model load)."""
    from mlgate.services import serving

    calls: list[tuple] = []
    monkeypatch.setattr(serving, "serve", lambda settings, host, port: calls.append((settings, host, port)))
    return calls


def test_cli_serve_maps_options_to_settings(captured, tmp_path):
    from click.testing import CliRunner

    from mlgate.cli import main

    assert "--model-uri" in CliRunner().invoke(main, ["serve", "--help"]).output
    result = CliRunner().invoke(
        main,
        [
            "serve",
            "--model",
            "churn",
            "--alias",
            "staging",
            "--port",
            "9100",
            "--poll-s",
            "1.5",
            "--max-body-mb",
            "0.5",
            "--unknown-columns",
            "reject",
            "--log-dir",
            str(tmp_path),
            "--log-sample-rate",
            "0.25",
            "--shadow",
            "canary",
            "--shadow-sample-rate",
            "0.5",
        ],
    )
    assert result.exit_code == 0, result.output
    [(settings, host, port)] = captured
    assert (host, port) == ("127.0.0.1", 9100)
    assert (
        settings.model,
        settings.alias,
        settings.model_uri,
        settings.poll_s,
        settings.max_body_bytes,
        settings.unknown_columns,
        settings.log_dir,
        settings.log_sample_rate,
        settings.workers,
        settings.shadow,
        settings.shadow_sample_rate,
    ) == ("churn", "staging", None, 1.5, 524_288, "reject", str(tmp_path), 0.25, 1, "canary", 0.5)

    url = f"sqlite:///{tmp_path / 'log.db'}"
    result = CliRunner().invoke(
        main, ["serve", "--model", "churn", "--prediction-log", url, "--log-table", "ops.served", "--workers", "3"]
    )
    assert result.exit_code == 0, result.output
    settings = captured[-1][0]
    assert (settings.log_dir, settings.log_table, settings.workers) == (url, "ops.served", 3)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--model", "churn", "--log-sample-rate", "2"], ["log_sample_rate"]),
        (["--model", "churn", "--unknown-columns", "maybe"], ["maybe"]),
        (["--model", "churn", "--workers", "0"], ["workers"]),
        (["--model", "churn", "--shadow", "production"], ["shadow", "production"]),
        (["--model-uri", "runs:/x/model", "--shadow", "staging"], ["shadow", "--model"]),
        (["--model", "churn", "--shadow", "staging", "--shadow-sample-rate", "0"], ["shadow_sample_rate"]),
    ],
)
def test_cli_serve_refuses_bad_options(captured, args, words):
    from click.testing import CliRunner

    from mlgate.cli import main

    result = CliRunner().invoke(main, ["serve", *args])
    assert result.exit_code != 0 and not captured
    assert isinstance(result.exception, SystemExit), result.exception
    for word in words:
        assert word in result.output
