"""benchmarks/hostile_clients.py: finding a request's rows in a real prediction log by `request_id` and
`row`, and the verdict of the request-id case."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from mlgate.services.prediction_log import PredictionLog
from tests.helpers import load_benchmark

REPO = Path(__file__).resolve().parents[2]


bench = load_benchmark("hostile_clients.py", "hostile_bench")


def test_read_log_finds_each_request_rows_and_probes_in_full(tmp_path):
    log = PredictionLog(tmp_path / "log")
    log.submit("a", "1", pd.DataFrame({"tenure": [1, 2, 3]}), pd.DataFrame({"prediction": ["No", "No", "Yes"]}))
    log.submit("b", "1", pd.DataFrame({"tenure": [4, 5]}), pd.DataFrame({"prediction": ["No", "Yes"]}))
    log.close()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH")) if p),
    }

    logged = bench.read_log(str(tmp_path / "log"), ["a", "b", "never-sent"], ["b"], tmp_path, env)

    assert {rid: sorted(rows) for rid, rows in logged["found"].items()} == {"a": [0, 1, 2], "b": [0, 1]}
    assert logged["rows"] == 5
    assert sorted(r["row"] for r in logged["probes"]) == ["0", "1"]


def test_read_log_reports_a_log_it_cannot_read(tmp_path):
    logged = bench.read_log(str(tmp_path / "nothing"), ["a"], [], tmp_path, dict(os.environ))

    assert "no prediction log files" in logged["error"]


def test_request_ids_check_fails_on_a_shared_id_and_on_values_not_logged():
    abuse = bench.Abuse(probes={"same": "same-id:4", "mine": "named"})
    rows = [
        {"request_id": "mine", "row": "0", "input_tenure": "1"},
        {"request_id": "mine", "row": "1", "input_tenure": "2"},
    ]

    bench.settle_request_ids(abuse, {"probes": rows})

    assert abuse.check_ok is False
    assert "two requests answered under one id" in abuse.check
    assert "'987654'" in abuse.check


def test_request_ids_check_passes_with_own_ids_and_sent_values_in_extra_inputs():
    abuse = bench.Abuse(probes={"x": "same-id:2", "y": "same-id:2", "z": "named"})
    extra = (
        '{"row": 987654, "request_id": "client-request-id", "timestamp": "client-timestamp", '
        '"model_version": "client-model-version"}'
    )
    rows = [
        {"request_id": rid, "row": str(row), "extra_inputs": extra if rid == "z" else ""}
        for rid in ("x", "y", "z")
        for row in (0, 1)
    ]

    bench.settle_request_ids(abuse, {"probes": rows})

    assert abuse.check_ok is True, abuse.check
