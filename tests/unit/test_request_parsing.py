"""Hostile request bodies against `mlgate serve`'s parser, request contract and input guard, in process.

Property tests: any JSON body or CSV bytes end in a frame or a 4xx naming the problem, never another
exception (a 5xx with a traceback). Then one test per finding of issue 14 that is about what a body
holds: column counts refused before a frame is built, nesting, echoed values, non-finite numbers,
server-made request ids, and /metrics labels a client cannot multiply.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlgate.modelling.features import InputValidationError
from mlgate.services.request_body import BadRequest, parse_body
from mlgate.services.serving import CLASS_LABELS, RequestContract, create_app
from tests.serving_model import FEATURES, GUARD, TinySource, rows, tiny_settings

CONTRACT = RequestContract(FEATURES, ())
NAMES = st.sampled_from(["tenure", "charges", "contract", "row", "request_id", "x", ""]) | st.text(max_size=5)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
    | st.sampled_from(["inf", "-Infinity", "One year", "1e400", "nan"])
)
JSON_VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(NAMES, inner, max_size=4), max_leaves=12
)
RECORDS = st.lists(st.dictionaries(NAMES, JSON_VALUES, max_size=5), max_size=4)
BODIES = st.one_of(
    st.builds(lambda r: {"dataframe_records": r}, RECORDS),
    st.builds(lambda r: {"inputs": r}, RECORDS | st.dictionaries(NAMES, st.lists(SCALARS, max_size=3), max_size=4)),
    st.builds(
        lambda c, d: {"dataframe_split": {"columns": c, "data": d}},
        st.lists(NAMES, max_size=4) | JSON_VALUES,
        st.lists(st.lists(SCALARS, max_size=4), max_size=3) | JSON_VALUES,
    ),
    JSON_VALUES,
)
EXAMPLES = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def answer_of(body: bytes, content_type: str) -> int:
    """The status the server's reading of ``body`` leads to (200 when the model gets the frame)."""
    try:
        frame = parse_body(body, content_type, CONTRACT.max_columns)
        CONTRACT.check(frame, "ignore")
        if not frame.empty:
            GUARD.transform(frame[CONTRACT.known(frame)])
    except BadRequest as bad:
        assert 400 <= bad.status < 500 and len(bad.message) <= 1_000
        return bad.status
    except InputValidationError as bad:
        assert len(str(bad)) <= 1_000
        return 422
    return 200


@EXAMPLES
@given(BODIES)
def test_any_json_body_is_read_or_refused_with_a_4xx(payload):
    answer_of(json.dumps(payload, allow_nan=True).encode(), "application/json")


@EXAMPLES
@given(
    st.binary(max_size=200)
    | st.lists(st.lists(st.text(max_size=6), min_size=1, max_size=5), min_size=1, max_size=4).map(
        lambda lines: "\n".join(",".join(line) for line in lines).encode()
    )
)
def test_any_csv_bytes_are_read_or_refused_with_a_4xx(body):
    answer_of(body, "text/csv")


class NothingBuilt:
    """Stands in for pandas in `mlgate.services.serving`: building any frame fails the test."""

    class DataFrame:
        def __init__(self, *args, **kwargs):
            raise AssertionError("a frame was built")

        from_records = __init__

    read_csv = DataFrame


def test_a_body_naming_thousands_of_columns_is_refused_before_a_frame_is_built(monkeypatch):
    """Finding 2: 71 KB of records with 6,000 distinct keys built a rows x keys frame (540 MB)."""
    from mlgate.services import serving

    records = [{f"k{i}": 1 for i in range(j * 100, (j + 1) * 100)} | {"tenure": 1} for j in range(60)]
    body = json.dumps({"dataframe_records": records}).encode()
    monkeypatch.setattr(serving, "pd", NothingBuilt)
    with pytest.raises(BadRequest) as refused:
        parse_body(body, "application/json", CONTRACT.max_columns)
    assert refused.value.status == 422
    assert f"at most {CONTRACT.max_columns} are accepted" in refused.value.message


@pytest.mark.parametrize("kind", ["csv", "dataframe_split", "inputs_columns"])
def test_every_format_counts_its_columns_before_building(kind, monkeypatch):
    """Finding 3's 0.9 MB CSV of 100,000 columns (1.8 s on the event loop), and the same in the JSON formats."""
    from mlgate.services import serving

    names = [f"c{i}" for i in range(20_000)]
    body, content_type = {
        "csv": ((",".join(names) + "\n" + ",".join("1" * len(names))).encode(), "text/csv"),
        "dataframe_split": (
            json.dumps({"dataframe_split": {"columns": names, "data": [[1] * len(names)]}}).encode(),
            "application/json",
        ),
        "inputs_columns": (json.dumps({"inputs": {n: [1] for n in names}}).encode(), "application/json"),
    }[kind]
    monkeypatch.setattr(serving, "pd", NothingBuilt)
    with pytest.raises(BadRequest, match="20,000 columns") as refused:
        parse_body(body, content_type, CONTRACT.max_columns)
    assert refused.value.status == 422


def test_a_few_unknown_columns_are_still_accepted():
    frame = rows(2).assign(note="hi", extra=1)
    body = json.dumps({"dataframe_records": frame.to_dict("records")}).encode()
    assert list(parse_body(body, "application/json", CONTRACT.max_columns).columns) == list(frame.columns)


@pytest.mark.parametrize(
    "body, words",
    [
        (b'{"dataframe_records": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
        (
            b'{"dataframe_records": [{"tenure": [1, [2]], "charges": 1, "contract": "One year"}]}',
            "column 'tenure' has a list at row 0",
        ),
        (
            b'{"dataframe_split": {"columns": ["tenure", "charges"], "data": [[1, 2], [3, {"a": 1}]]}}',
            "column 'charges' has a JSON object at row 1",
        ),
        (b'{"dataframe_split": {"columns": [["tenure"]], "data": [[1]]}}', "list of column names"),
    ],
)
def test_nesting_is_a_4xx_naming_where(body, words):
    """Finding 7: deep nesting was a 500 with a RecursionError traceback."""
    with pytest.raises(BadRequest, match=re.escape(words)) as refused:
        parse_body(body, "application/json")
    assert refused.value.status in (400, 422)


@pytest.mark.parametrize("rejected", ["charges", "contract", "column name"])
def test_a_refusal_quotes_at_most_a_little_of_the_value(rejected):
    """Finding 7: a 422 echoed a 4 MB rejected value back in full."""
    huge = "x" * 4_000_000
    frame = rows(1)
    if rejected == "column name":
        frame = frame.assign(**{huge: 1})
    else:
        frame[rejected] = huge
    body = json.dumps({"dataframe_records": frame.to_dict("records")}).encode()
    status = answer_of(body, "application/json")
    assert status == 422
    with pytest.raises((BadRequest, InputValidationError)) as refused:
        checked = parse_body(body, "application/json")
        CONTRACT.check(checked, "reject")
        GUARD.transform(checked)
    message = str(refused.value)
    assert len(message) < 400 and "4,000,002 chars" in message


@pytest.mark.parametrize(
    "body, content_type",
    [
        (
            b'{"dataframe_records": [{"tenure": 1, "charges": 2, "contract": "One year"}, '
            b'{"tenure": 3, "charges": -Infinity, "contract": "One year"}]}',
            "application/json",
        ),
        (b"tenure,charges,contract\n1,2,One year\n2,inf,Two year\n", "text/csv"),
        (
            b'{"dataframe_records": [{"tenure": 1, "charges": 2, "contract": "One year"}, '
            b'{"tenure": 3, "charges": "-inf", "contract": "One year"}]}',
            "application/json",
        ),
    ],
)
def test_a_non_finite_number_never_reaches_the_model(body, content_type):
    """Finding 19: inf in a numeric column is a 422 naming the column and the row."""
    with pytest.raises((BadRequest, InputValidationError), match=r"column 'charges'.*\binf\b.* at row 1") as refused:
        frame = parse_body(body, content_type)
        CONTRACT.check(frame, "ignore")
        GUARD.transform(frame)
    assert "finite" in str(refused.value)


def test_a_model_without_a_contract_gets_its_float_columns_checked():
    contract = RequestContract(None, ("a", "b"))
    with pytest.raises(BadRequest, match=r"column 'b' has a non-finite value \(inf\) at row 2"):
        contract.check(pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [0.0, 1.0, np.inf]}), "ignore")


# --- through the app (Starlette's TestClient) ---------------------------------------------------


@pytest.fixture
def client_for():
    from starlette.testclient import TestClient

    opened = []

    def open_client(source=None, **overrides):
        client = TestClient(create_app(tiny_settings(**overrides), source or TinySource()))
        opened.append(client.__enter__())
        return opened[-1]

    yield open_client
    for client in opened:
        client.__exit__(None, None, None)


def counted(client, status: str) -> float:
    pattern = rf'^mlgate_requests_total{{endpoint="invocations",status="{status}"}} (\S+)$'
    found = re.search(pattern, client.get("/metrics").text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_a_non_finite_prediction_is_null_in_an_answer_that_carries_the_request_id(client_for):
    """Finding 7: an inf or NaN output crashed JSON rendering outside the handler: a plain-text 500,
    no request id, not counted."""

    def predict(frame):
        return pd.DataFrame({"prediction": ["Yes", "No", "Yes"], "probability": [np.inf, np.nan, 0.5]}).head(len(frame))

    client = client_for(TinySource(predict))
    response = client.post("/invocations", json={"dataframe_records": rows(3).to_dict("records")})
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == [
        {"prediction": "Yes", "probability": None},
        {"prediction": "No", "probability": None},
        {"prediction": "Yes", "probability": 0.5},
    ]
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-Id"])
    assert counted(client, "200") == 1


def test_the_server_makes_every_request_id(client_for):
    """Finding 6: two requests sending the same X-Request-Id were logged under one id."""
    client = client_for()
    body = {"dataframe_records": rows(1).to_dict("records")}
    answers = [client.post("/invocations", json=body, headers={"X-Request-Id": "same"}) for _ in range(2)]
    answers.append(client.post("/invocations", json={"inputs": "nonsense"}, headers={"X-Request-Id": "same"}))
    ids = [a.headers["X-Request-Id"] for a in answers]
    assert [a.status_code for a in answers] == [200, 200, 400]
    assert len(set(ids)) == 3 and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


def test_a_model_echoing_its_input_cannot_grow_the_metrics_without_bound(client_for):
    """Sibling: predicted labels become /metrics label values; a model that echoes a client's text
    must not let the client create unbounded series."""

    def echo(frame):
        return pd.DataFrame({"prediction": frame["contract"].astype(str).to_numpy()})

    client = client_for(TinySource(echo, features=None))
    labels = pd.DataFrame({"contract": [f"label-{i}" for i in range(3 * CLASS_LABELS)]})
    assert client.post("/invocations", json={"dataframe_records": labels.to_dict("records")}).status_code == 200
    series = re.findall(
        r'^mlgate_predicted_class_total\{label="([^"]*)"\} (\S+)$', client.get("/metrics").text, re.MULTILINE
    )
    assert len(series) == CLASS_LABELS + 1
    assert sum(float(v) for _, v in series) == 3 * CLASS_LABELS
    assert dict(series)["__other__"] == str(float(2 * CLASS_LABELS))


def test_cli_serve_passes_the_limits(monkeypatch):
    from click.testing import CliRunner

    from mlgate.cli import main
    from mlgate.services import serving

    started = []
    monkeypatch.setattr(serving, "serve", lambda settings, host, port: started.append(settings))
    result = CliRunner().invoke(
        main,
        [
            "serve",
            "--model",
            "churn",
            "--max-extra-columns",
            "3",
            "--header-timeout-s",
            "2",
            "--body-timeout-s",
            "4.5",
            "--max-connections",
            "50",
            "--max-inflight-mb",
            "8",
        ],
    )
    assert result.exit_code == 0, result.output
    [settings] = started
    assert (
        settings.max_extra_columns,
        settings.header_timeout_s,
        settings.body_timeout_s,
        settings.max_connections,
        settings.max_inflight_bytes,
    ) == (3, 2.0, 4.5, 50, 8 * 1024 * 1024)
    refused = CliRunner().invoke(main, ["serve", "--model", "churn", "--body-timeout-s", "0"])
    assert refused.exit_code != 0 and "body_timeout_s" in refused.output and len(started) == 1


def test_a_long_answer_is_rendered_in_slices_as_one_json_document():
    from mlgate.services.serving import ANSWER_SLICE_ROWS, Metrics, _answer

    output = pd.DataFrame(
        {"prediction": ["Yes", "No"] * ANSWER_SLICE_ROWS, "probability": np.linspace(0, 1, 2 * ANSWER_SLICE_ROWS)}
    )
    output.loc[3, "probability"] = np.inf
    frame = rows(len(output))
    content = _answer(Metrics(), CONTRACT, FEATURES, frame, frame.isna().to_numpy(), output)
    expected = output.astype(object).where(np.isfinite(output["probability"]).to_frame().assign(prediction=True), None)
    assert json.loads(content) == {"predictions": expected[["prediction", "probability"]].to_dict("records")}


def test_bodies_beyond_the_inflight_budget_wait_their_turn_and_a_lone_one_always_goes():
    """Sibling of finding 5: 1,024 connections each holding a 5 MB body and its frames was unbounded."""
    import asyncio

    from mlgate.services.serving import BodyBudget

    async def scenario() -> list[str]:
        budget, order = BodyBudget(100), []

        async def request(name: str, size: int, hold: asyncio.Event | None = None) -> None:
            async with budget.hold(size):
                order.append(f"{name} in")
                if hold is not None:
                    await hold.wait()
                order.append(f"{name} out")

        first_done = asyncio.Event()
        first = asyncio.create_task(request("big", 80, first_done))
        await asyncio.sleep(0)
        waiting = [asyncio.create_task(request("next", 30)), asyncio.create_task(request("small", 20))]
        await asyncio.sleep(0.01)
        order.append("release")
        first_done.set()
        await asyncio.gather(first, *waiting)
        await request("huge", 500)  # over the whole budget, but alone: it goes
        return order

    order = asyncio.run(scenario())
    assert order[:3] == ["big in", "small in", "small out"]  # 80 + 20 fit; 80 + 30 do not
    assert order.index("next in") > order.index("release") and order[-2:] == ["huge in", "huge out"]


def test_a_non_finite_regression_output_is_null_and_not_a_predicted_value(client_for):
    def predict(frame):
        return pd.DataFrame({"prediction": [np.nan, np.inf, 2.5]}).head(len(frame))

    client = client_for(TinySource(predict, features=None))
    response = client.post("/invocations", json={"dataframe_records": rows(3).to_dict("records")})
    assert response.json() == {"predictions": [{"prediction": None}, {"prediction": None}, {"prediction": 2.5}]}
    text = client.get("/metrics").text
    assert re.search(r"^mlgate_predicted_value_count 1\.0$", text, re.MULTILINE)
    assert re.search(r'^mlgate_predicted_value_bucket\{le="10\.0"\} 1\.0$', text, re.MULTILINE)


@pytest.mark.parametrize("value", [np.inf, -np.inf, "inf", "-Infinity"])
def test_the_input_guard_refuses_non_finite_numbers_wherever_the_model_is_called(value):
    """Finding 19 for callers without the request contract (`mlgate score`, MLflow's own pyfunc)."""
    frame = rows(3).astype({"charges": object})
    frame.loc[2, "charges"] = value
    with pytest.raises(InputValidationError, match=r"column 'charges': -?inf at row 2 is not a finite number"):
        GUARD.transform(frame)
