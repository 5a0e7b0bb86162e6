"""Malformed inputs: each stops at the right stage with a clear message.

Every case asserts a non-zero exit, `<stage> error:` naming file/column/rule/observed value, no
traceback, and no partial output (data/split, models/, mlflow.db; data/raw too when the source
stage stops). Each runs the stages' commands as `dvc repro` would, in order (`mlgate fingerprint`,
`ingest`, `validate`), in this process; one case per stopping stage also runs through a real
`dvc repro`, which adds a process start per stage and nothing else to check. A local HTTP server
on 127.0.0.1 stands in for a JSON API; SQLite files for SQL.
"""

from __future__ import annotations

import csv
import gzip
import json
import sqlite3
import subprocess
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

import pandas as pd
import pytest

from tests.helpers import REPO, copy_project, git_commit_all, run_cli, run_stages

pytestmark = pytest.mark.slow

SOURCE = "data/source/telco_churn.csv.gz"
SQLITE = "data/source/source.db"
SOURCE_STAGES = ("fingerprint", "ingest")


class Api(BaseHTTPRequestHandler):
    """Telco rows as a JSON list on /rows; /flaky answers 500 on every odd call; bad JSON; 404 else."""

    rows = b"[]"
    calls: Counter = Counter()

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        path = urlparse(self.path).path
        Api.calls[path] += 1
        flaky = (500, b'{"error": "try again"}') if Api.calls[path] % 2 else (200, Api.rows)
        routes = {"/rows": (200, Api.rows), "/badjson": (200, b"<html>not json</html>"), "/flaky": flaky}
        status, body = routes.get(path, (404, b'{"error": "no such route"}'))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def telco():
    return pd.read_csv(REPO / SOURCE)


@pytest.fixture(scope="module")
def api(telco):
    Api.rows = telco.head(1000).to_json(orient="records").encode()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


# --- how each bad input is built: (root, telco frame) -> None --------------------------------


def put(frame: pd.DataFrame, rows, column: str, value) -> pd.DataFrame:
    frame = frame.astype({column: object}) if isinstance(value, str) else frame.copy()
    frame.loc[rows, column] = value
    return frame


def table(transform, **options):
    """Write ``transform(telco)`` as the (gzipped) source CSV."""
    return lambda root, frame: transform(frame.copy()).to_csv(root / SOURCE, index=False, **options)


def text(transform, **options):
    """Write ``transform(the CSV text)`` (str, or bytes as they are) gzipped as the source."""

    def build(root, frame):
        out = transform(frame.to_csv(index=False, lineterminator="\n", **options))
        (root / SOURCE).write_bytes(gzip.compress(out if isinstance(out, bytes) else out.encode()))

    return build


def sqlite_table(rows: int):
    """The first ``rows`` telco rows as table `churn` in a SQLite file (0: the table has no rows)."""

    def build(root, frame):
        with sqlite3.connect(root / SQLITE) as db:
            frame.head(rows).to_sql("churn", db, index=False)

    return build


def missing_file(root, frame):
    (root / SOURCE).unlink()
    (root / "data/source/.keep").write_text("")


def garbage(path: str):
    return lambda root, frame: (root / path).write_bytes(b"PAR1 not a parquet file \x00\x01\x02")


def several(frame: pd.DataFrame) -> pd.DataFrame:
    frame = put(put(frame, 17, "tenure", "twelve"), slice(0, 499), "monthly_charges", None)
    return frame.drop(columns=["partner"]).assign(churn="No")


def sql(table_name: str) -> list[str]:
    return [
        "data.source.kind=sql",
        f"++data.source.url=sqlite:///{SQLITE}",
        f"++data.source.table={table_name}",
        "~data.source.path",
        "~data.source.format",
    ]


def http(route: str) -> list[str]:
    return [
        "data.source.kind=http",
        f"++data.source.url={{api}}{route}",
        "++data.source.backoff_s=0.01",
        "~data.source.path",
        "~data.source.format",
    ]


HEADER = "female, senior_citizen, partner, dependents, tenure"
TWO_CATEGORIES = [
    "++data.contract.columns.contract.categories=[Month-to-month,'One year']",
    "++data.contract.columns.contract.new_categories=fail",
]

BAD_INPUTS = {
    # case: (build the input, Hydra overrides, stage that must stop, texts the message must contain)
    "missing_file": (
        missing_file,
        [],
        "ingest",
        [f"{SOURCE}: source file not found (data.source.path in params.yaml)"],
    ),
    "empty_file": (
        lambda root, frame: (root / SOURCE).write_bytes(b""),
        [],
        "ingest",
        [f"{SOURCE}: the file is empty (0 bytes)"],
    ),
    "empty_gzip": (text(lambda t: ""), [], "ingest", [f"{SOURCE}: the file is empty (no header row)"]),
    "header_only": (
        text(lambda t: t.split("\n", 1)[0] + "\n"),
        [],
        "ingest",
        [f"{SOURCE}: no data rows (columns: female, senior_citizen,", "churn)"],
    ),
    "too_few_rows": (
        table(lambda f: f.head(100)),
        [],
        "validate",
        [f"{SOURCE}: rule 'min_rows': 100 rows, the contract asks for at least 500"],
    ),
    "truncated_in_quoted_field": (
        text(lambda t: t[: t.index('"Two year"', len(t) // 2) + 4], quoting=csv.QUOTE_ALL),
        [],
        "ingest",
        [f"{SOURCE}: cannot be read as csv", "EOF inside string"],
    ),
    "truncated_mid_row": (
        text(lambda t: t[: t.rindex(",Two year,") + 5]),
        [],
        "ingest",
        [f"{SOURCE}: line 7044 has 15 field(s), the header has 20; is the file truncated"],
    ),
    "semicolon_delimiter": (
        table(lambda f: f, sep=";"),
        [],
        "ingest",
        [
            f"{SOURCE}: one column named 'female;senior_citizen;",
            "the file seems to use ';' as separator; set data.source.options.sep",
        ],
    ),
    "latin1_bytes": (
        text(lambda t: t.replace("Electronic check", "Électronique", 1).encode("latin-1")),
        [],
        "ingest",
        [
            f"{SOURCE}: not valid utf-8 text (invalid continuation byte at byte",
            "set data.source.options.encoding (e.g. latin-1)",
        ],
    ),
    "duplicate_column_names": (
        text(lambda t: t.replace("monthly_charges", "tenure", 1)),
        [],
        "ingest",
        [f"{SOURCE}: duplicate column name(s) ['tenure'] in the header row"],
    ),
    "ragged_row": (
        text(lambda t: t.replace(",Two year,", ",Two year,extra,", 1)),
        [],
        "ingest",
        [f"{SOURCE}: cannot be read as csv", "Expected 20 fields in line", "saw 21"],
    ),
    "short_row": (
        text(lambda t: t.replace(",Two year,", ",", 1)),
        [],
        "ingest",
        [f"{SOURCE}: line 13 has 19 field(s), the header has 20"],
    ),
    "corrupt_parquet": (
        garbage("data/source/telco_churn.parquet"),
        ["data.source.path=data/source/telco_churn.parquet", "data.source.format=parquet"],
        "ingest",
        ["data/source/telco_churn.parquet: cannot be read as parquet", "magic bytes not found"],
    ),
    "missing_target": (
        table(lambda f: f.drop(columns=["churn"])),
        [],
        "validate",
        [f"{SOURCE}: column 'churn', rule 'required': target column 'churn' is missing (found: {HEADER}"],
    ),
    "single_class": (
        table(lambda f: f.assign(churn="No")),
        [],
        "validate",
        ["column 'churn', rule 'min_classes': a binary target needs two classes, found 'No'"],
    ),
    "non_numeric": (
        table(lambda f: put(f, 17, "tenure", "twelve")),
        [],
        "validate",
        ["column 'tenure', rule 'type': declared integer but 1 value(s) are not numeric, first 'twelve' at row 18"],
    ),
    "missing_share": (
        table(lambda f: put(f, slice(0, 499), "monthly_charges", None)),
        [],
        "validate",
        ["column 'monthly_charges', rule 'max_missing_share': 7.10% missing (500 rows), limit 0.00%"],
    ),
    # read_csv reads Infinity as a float infinity and leaves 1e999 as text: both are named, never reach a library
    "infinite_values": (
        table(lambda f: put(put(f, 17, "monthly_charges", "Infinity"), 40, "monthly_charges", "1e999")),
        [],
        "validate",
        [
            "column 'monthly_charges', rule 'finite': 2 value(s) are infinite or beyond ±3.4e+38, first "
            "'Infinity', at row(s) 18, 41; the contract allows finite numbers only (non_finite: fail)"
        ],
    ),
    "out_of_range": (
        table(lambda f: put(f, 17, "tenure", -3)),
        ["++data.contract.columns.tenure.min=0"],
        "validate",
        ["column 'tenure', rule 'range': 1 value(s) below min 0 (observed min -3, first at row 18)"],
    ),
    "category_not_allowed": (
        table(lambda f: f),
        TWO_CATEGORIES,
        "validate",
        [
            "column 'contract', rule 'categories': 1,695 value(s) outside the 2 allowed categories: "
            "'Two year' (1,695); new_categories: fail"
        ],
    ),
    "duplicate_id": (
        table(lambda f: f.assign(row_id=[*range(5), 3, *range(6, len(f))])),
        ["++data.contract.columns.row_id={type: integer, role: id}"],
        "validate",
        ["column 'row_id', rule 'unique': 1 duplicate value(s) in an id column, first 3 at rows 4, 6"],
    ),
    "too_many_rows": (
        table(lambda f: f),
        ["++data.contract.max_rows=1000"],
        "validate",
        [f"{SOURCE}: rule 'max_rows': 7,043 rows, the contract allows at most 1,000"],
    ),
    "several_violations": (
        table(several),
        ["++data.contract.max_rows=1000"],
        "validate",
        [
            "6 contract violation(s) in dataset 'telco_churn' (details in reports/validation.json",
            "rule 'max_rows': 7,043 rows",
            "column 'partner', rule 'required'",
            "column 'tenure', rule 'type'",
            "column 'monthly_charges', rule 'max_missing_share'",
            "column 'churn', rule 'min_classes'",
            "column 'churn', rule 'positive_class'",
        ],
    ),
    "sql_missing_table": (
        sqlite_table(10),
        sql("no_such_table"),
        "fingerprint",
        [f"sqlite:///{SQLITE} (table no_such_table): OperationalError: no such table: no_such_table"],
    ),
    "sql_empty_table": (
        sqlite_table(0),
        sql("churn"),
        "ingest",
        [f"sqlite:///{SQLITE} (table churn): no data rows (columns: female, senior_citizen,"],
    ),
    "http_404": (lambda root, frame: None, http("/missing"), "fingerprint", ["GET {api}/missing: HTTP 404 Not Found"]),
    "http_invalid_json": (
        lambda root, frame: None,
        http("/badjson"),
        "ingest",
        ["{api}/badjson: the response is not valid JSON (starts with '<html>not json</html>')"],
    ),
}


THROUGH_DVC = ("http_404", "truncated_mid_row", "several_violations")  # one per stopping stage
STAGES = ("fingerprint", "ingest", "validate")  # dvc.yaml's order up to the first stage with a model


def init_repo(root):
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    git_commit_all(root, "project")
    return {"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}


def prepared(tmp_path, telco, build, overrides, api):
    root = copy_project(tmp_path, [o.replace("{api}", api) for o in overrides])
    build(root, telco)
    return root


def assert_stopped_cleanly(root, stage: str, texts: list[str], api: str, code: int, stdout: str, stderr: str) -> None:
    assert code != 0, stdout
    assert "Traceback" not in stderr
    partial = ["data/split", "models", "mlflow.db", *(["data/raw"] if stage in SOURCE_STAGES else [])]
    assert [p for p in partial if (root / p).exists()] == [], stderr
    assert f"{stage:<11} error:" in stderr, stderr
    for expected in texts:
        assert expected.replace("{api}", api) in stderr, stderr


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_stops_early_with_a_clear_message(case, tmp_path, telco, api):
    build, overrides, stage, texts = BAD_INPUTS[case]
    root = prepared(tmp_path, telco, build, overrides, api)
    result = run_stages(root, stages=STAGES)
    assert_stopped_cleanly(root, stage, texts, api, result.returncode, result.stdout, result.stderr)


@pytest.mark.parametrize("case", THROUGH_DVC)
def test_dvc_repro_stops_at_the_stage_with_its_message(case, tmp_path, telco, api):
    build, overrides, stage, texts = BAD_INPUTS[case]
    root = prepared(tmp_path, telco, build, overrides, api)
    result = run_cli(["dvc", "repro"], root, init_repo(root), check=False)
    assert_stopped_cleanly(root, stage, texts, api, result.returncode, result.stdout, result.stderr)


def test_http_500_is_retried_then_ingest_and_validate_pass(tmp_path, telco, api):
    before = Api.calls["/flaky"]
    root = prepared(tmp_path, telco, lambda root, frame: None, http("/flaky"), api)
    result = run_stages(root, stages=STAGES)
    assert result.returncode == 0, result.stderr
    assert f"1,000 rows × 20 columns from {api}/flaky" in result.stdout
    assert "validate    passed: 20 columns, 1,000 rows, 0 violations" in result.stdout
    assert Api.calls["/flaky"] - before == 4  # fingerprint and ingest: each a 500, then a 200 on retry
    assert json.loads((root / "reports/validation.json").read_text())["passed"]
    assert not (root / "data/split").exists() and "Traceback" not in result.stderr
