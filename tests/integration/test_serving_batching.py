"""Micro-batching in a real `mlgate serve`: concurrent clients share model calls, and each gets exactly
its own rows' predictions, as `mlflow.pyfunc.load_model(uri).predict` gives them.

The model is a real MLflow model (a scikit-learn pipeline on telco churn's numeric columns, logged to
a temporary SQLite store) served by URI, so this runs in seconds without the pipeline."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
import requests

from tests.helpers import REPO
from tests.serving_model import uvicorn_thread

pytestmark = pytest.mark.slow

COLUMNS = ["tenure", "monthly_charges", "total_charges", "senior_citizen"]


@pytest.fixture(scope="module")
def served_uri(tmp_path_factory) -> Iterator[tuple[str, pd.DataFrame]]:
    import mlflow
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    root = tmp_path_factory.mktemp("batching")
    frame = pd.read_csv(REPO / "data/source/telco_churn.csv.gz")
    frame = frame[[*COLUMNS, "churn"]].dropna().reset_index(drop=True)
    rows = frame[COLUMNS].astype(float)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression()).fit(rows, frame["churn"])
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        # MLflow's global URI, once an earlier test in this process set it, wins over the environment: point
        # it here too, or the model is logged to that other store while serving looks it up in this one
        mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
        # an experiment of its own, never the process's active one: other tests run in this process
        experiment = mlflow.MlflowClient().create_experiment("batching")
        with mlflow.start_run(experiment_id=experiment):
            info = mlflow.sklearn.log_model(
                pipeline, name="model", input_example=rows.head(3), pyfunc_predict_fn="predict_proba"
            )
        yield info.model_uri, rows


@contextlib.contextmanager
def running(uri: str, **overrides) -> Iterator[str]:
    import uvicorn

    from mlgate.services.serving import ServeSettings, create_app

    app = create_app(ServeSettings(model_uri=uri, **overrides))
    with uvicorn_thread(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False)) as url:
        yield url


def call_rows(url: str) -> tuple[float, float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(f"{url}/metrics", timeout=10).text
    [family] = [f for f in text_string_to_metric_families(text) if f.name == "mlgate_model_call_rows"]
    values = {s.name: s.value for s in family.samples}
    return values["mlgate_model_call_rows_count"], values["mlgate_model_call_rows_sum"]


def test_concurrent_clients_share_calls_and_each_gets_its_own_rows(monkeypatch, served_uri):
    import mlflow

    uri, rows = served_uri
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri.split("models:/")[0] or mlflow.get_tracking_uri())
    expected = np.asarray(mlflow.pyfunc.load_model(uri).predict(rows))  # (rows, 2) probabilities
    clients, per_client = 6, 40
    answers: dict[int, list[tuple[list[int], list]]] = {c: [] for c in range(clients)}
    failures: list[str] = []

    with running(uri, batch_wait_ms=5) as url:

        def client(c: int) -> None:
            with requests.Session() as session:
                for i in range(per_client):
                    start = (c * per_client + i) * 3 % (len(rows) - 3)
                    picked = list(range(start, start + 1 + i % 3))  # 1 to 3 rows per request
                    body = {"dataframe_split": rows.iloc[picked].to_dict(orient="split", index=False)}
                    response = session.post(f"{url}/invocations", json=body, timeout=30)
                    if response.status_code != 200:
                        failures.append(response.text)
                        continue
                    answers[c].append((picked, response.json()["predictions"]))

        threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        calls, predicted = call_rows(url)

    assert not failures, failures[:2]
    sent = sum(len(picked) for per in answers.values() for picked, _ in per)
    assert predicted == sent  # every row went through a model call once
    assert calls < clients * per_client  # and some calls served several requests
    for per in answers.values():
        assert len(per) == per_client
        for picked, predictions in per:
            got = np.array([[row["0"], row["1"]] for row in predictions])
            # a row's numbers may differ in the last bit with the rows it shares a call with (BLAS)
            np.testing.assert_allclose(got, expected[picked], rtol=1e-12, atol=0)


def test_one_bad_request_in_a_shared_call_gets_its_own_error(monkeypatch, served_uri):
    uri, rows = served_uri
    good = {"dataframe_split": rows.iloc[:2].to_dict(orient="split", index=False)}
    bad = {"dataframe_split": {"columns": COLUMNS, "data": [["many", 1.0, 2.0, 0.0]]}}
    results: list[tuple[str, int]] = []

    with running(uri, batch_wait_ms=20) as url:

        def client(kind: str, body: dict) -> None:
            with requests.Session() as session:
                for _ in range(15):
                    results.append((kind, session.post(f"{url}/invocations", json=body, timeout=30).status_code))

        threads = [
            threading.Thread(target=client, args=args)
            for args in (("good", good), ("good", good), ("bad", bad), ("good", good))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)

    assert {status for kind, status in results if kind == "good"} == {200}
    assert {status for kind, status in results if kind == "bad"} <= {400, 422, 500}
    assert sum(kind == "good" for kind, _ in results) == 45
