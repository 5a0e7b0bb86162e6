"""Sources against real services: SQLite, PostgreSQL on 127.0.0.1:5432, and a local HTTP server."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pandas as pd
import pytest
import sqlalchemy as sa

from mlgate import sources
from mlgate.data import SourceSpec
from mlgate.project import StageError
from tests.conftest import POSTGRES, REPO, scratch_table

@pytest.fixture(scope="module")
def telco():
    return pd.read_csv(REPO / "data/source/telco_churn.csv.gz").head(500)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path, telco):
    """(SQLAlchemy URL, table name) holding 500 telco rows, in SQLite or the real PostgreSQL."""
    url = f"sqlite:///{tmp_path / 'source.db'}" if request.param == "sqlite" else POSTGRES
    with scratch_table(url, "churn") as (engine, table):
        telco.to_sql(table, engine, index=False)
        yield url, table


def test_sql_table_reads_every_row(database, telco):
    url, table = database
    frame = sources.read(SourceSpec(kind="sql", url=url, table=table))
    assert frame.shape == telco.shape
    assert list(frame.columns) == list(telco.columns)
    assert frame["monthly_charges"].sum() == pytest.approx(telco["monthly_charges"].sum())


def test_sql_query_binds_parameters(database, telco):
    url, table = database
    spec = SourceSpec(kind="sql", url=url, query=f'select * from "{table}" where tenure >= :min_tenure',
                      params={"min_tenure": 24})
    assert len(sources.read(spec)) == int((telco.tenure >= 24).sum())


def test_sql_fingerprint_changes_only_when_rows_change(database, telco):
    url, table = database
    spec = SourceSpec(kind="sql", url=url, table=table)
    first = sources.fingerprint(spec)
    assert sources.fingerprint(spec) == first and first["value"] == ["500"]
    telco.head(3).to_sql(table, sa.create_engine(url), index=False, if_exists="append")
    assert sources.fingerprint(spec)["value"] == ["503"]


def test_sql_fingerprint_query_sees_updates(database):
    url, table = database
    spec = SourceSpec(kind="sql", url=url, table=table,
                      fingerprint_query=f'select count(*), sum(monthly_charges) from "{table}"')
    before = sources.fingerprint(spec)
    with sa.create_engine(url).begin() as connection:
        connection.execute(sa.text(f'update "{table}" set monthly_charges = monthly_charges + 1 where tenure = 1'))
    assert sources.fingerprint(spec) != before


def test_sql_error_names_the_location_without_secrets(database, monkeypatch):
    url, _ = database
    monkeypatch.setenv("MLGATE_TEST_PASSWORD", "s3cret")
    secret = {"password_env": "MLGATE_TEST_PASSWORD"} if url.startswith("postgresql") else {}
    spec = SourceSpec(kind="sql", url=url, query="select * from no_such_table", **secret)
    with pytest.raises(StageError) as raised:
        sources.read(spec)
    message = str(raised.value)
    assert "no_such_table" in message and "s3cret" not in message
    assert "s3cret" not in sources.location(spec)


def test_empty_table_is_a_clear_error(database):
    url, table = database
    with sa.create_engine(url).begin() as connection:
        connection.execute(sa.text(f'delete from "{table}"'))
    with pytest.raises(StageError, match="no data rows"):
        sources.read(SourceSpec(kind="sql", url=url, table=table))


def test_sql_credentials_come_only_from_the_environment(monkeypatch):
    with pytest.raises(StageError, match="data.source.url must not contain a password"):
        sources.read(SourceSpec(kind="sql", url="postgresql+psycopg://u:pw@127.0.0.1/test", table="t"))
    monkeypatch.delenv("MLGATE_TEST_MISSING", raising=False)
    with pytest.raises(StageError, match="environment variable MLGATE_TEST_MISSING .*password_env"):
        sources.read(SourceSpec(kind="sql", url=POSTGRES, table="t", password_env="MLGATE_TEST_MISSING"))


RECORDS = [{"id": i, "plan": "basic" if i % 3 else "pro", "usage": {"minutes": i * 1.5}} for i in range(25)]


class Api(BaseHTTPRequestHandler):
    """A small JSON API: paged and cursor listings, a flaky route, a 404, bad JSON, auth and ETag."""

    calls: dict[str, int] = {}

    def log_message(self, *args) -> None:
        pass

    def reply(self, status: int, body: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body.encode())

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        Api.calls[url.path] = Api.calls.get(url.path, 0) + 1
        if url.path == "/paged":
            page, size = int(query.get("page", 1)), int(query.get("per_page", 10))
            items = RECORDS[(page - 1) * size: page * size]
            self.reply(200, json.dumps({"data": {"items": items}}), {"ETag": '"v1"'})
        elif url.path == "/cursor":
            start = int(query.get("cursor", 0))
            following = start + 10 if start + 10 < len(RECORDS) else None
            self.reply(200, json.dumps({"results": RECORDS[start:start + 10], "next": following}))
        elif url.path == "/flaky":
            if Api.calls[url.path] % 2:
                self.reply(500, '{"error": "try again"}')
            else:
                self.reply(200, json.dumps(RECORDS[:5]))
        elif url.path == "/private":
            if self.headers.get("Authorization") != "Bearer t0ken":
                self.reply(401, '{"error": "unauthorised"}')
            else:
                self.reply(200, json.dumps(RECORDS[:2]))
        elif url.path == "/badjson":
            self.reply(200, "<html>not json</html>")
        else:
            self.reply(404, '{"error": "no such route"}')


@pytest.fixture(scope="module")
def api():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def http(url: str, **fields) -> SourceSpec:
    return SourceSpec(kind="http", url=url, timeout_s=5, backoff_s=0.01, **fields)


def test_page_pagination_reads_every_record_and_flattens_nested_keys(api):
    frame = sources.read(http(f"{api}/paged", records_key="data.items",
                              pagination={"type": "page", "size": 10, "size_param": "per_page"}))
    assert len(frame) == 25 and list(frame["id"]) == list(range(25))
    assert "usage.minutes" in frame.columns


def test_cursor_pagination_reads_every_record(api):
    frame = sources.read(http(f"{api}/cursor", records_key="results",
                              pagination={"type": "cursor", "cursor_key": "next", "param": "cursor"}))
    assert list(frame["id"]) == list(range(25))


def test_a_server_error_is_retried_then_succeeds(api):
    assert len(sources.read(http(f"{api}/flaky"))) == 5


def test_http_errors_are_clear(api, monkeypatch):
    with pytest.raises(StageError, match=r"GET .*/missing: HTTP 404 Not Found"):
        sources.read(http(f"{api}/missing"))
    with pytest.raises(StageError, match=r"/badjson: the response is not valid JSON \(starts with '<html>"):
        sources.read(http(f"{api}/badjson"))
    with pytest.raises(StageError, match=r"no key 'data.rows' in the JSON response \('rows' missing under 'data'; found: \['items'\]\)"):
        sources.read(http(f"{api}/paged", records_key="data.rows"))
    monkeypatch.delenv("MLGATE_TEST_TOKEN", raising=False)
    with pytest.raises(StageError, match="environment variable MLGATE_TEST_TOKEN"):
        sources.read(http(f"{api}/private", headers_env={"Authorization": "MLGATE_TEST_TOKEN"}))


def test_headers_come_from_the_environment(api, monkeypatch):
    monkeypatch.setenv("MLGATE_TEST_TOKEN", "Bearer t0ken")
    assert len(sources.read(http(f"{api}/private", headers_env={"Authorization": "MLGATE_TEST_TOKEN"}))) == 2


def test_http_fingerprint_prefers_the_etag(api):
    assert sources.fingerprint(http(f"{api}/paged"))["etag"] == '"v1"'
    assert "first_page_sha256" in sources.fingerprint(http(f"{api}/cursor"))
