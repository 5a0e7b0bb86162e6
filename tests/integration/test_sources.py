"""Sources against real services: SQLite, PostgreSQL on 127.0.0.1:5432, and a local HTTP server."""

from __future__ import annotations

import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pandas as pd
import pytest
import sqlalchemy as sa

from mlgate.adapters import sources
from mlgate.errors import StageError
from mlgate.modelling.data import SourceSpec, check_contract
from tests.helpers import POSTGRES, REPO, scratch_table


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
    spec = SourceSpec(
        kind="sql", url=url, query=f'select * from "{table}" where tenure >= :min_tenure', params={"min_tenure": 24}
    )
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
    spec = SourceSpec(
        kind="sql", url=url, table=table, fingerprint_query=f'select count(*), sum(monthly_charges) from "{table}"'
    )
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
            items = RECORDS[(page - 1) * size : page * size]
            self.reply(200, json.dumps({"data": {"items": items}}), {"ETag": '"v1"'})
        elif url.path == "/cursor":
            start = int(query.get("cursor", 0))
            following = start + 10 if start + 10 < len(RECORDS) else None
            self.reply(200, json.dumps({"results": RECORDS[start : start + 10], "next": following}))
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
        elif url.path == "/loop":  # a cursor API that hands back the first cursor again
            self.reply(200, json.dumps({"results": RECORDS[:2], "next": "a"}))
        elif url.path == "/infinite":  # JSON as Python's json module and many APIs write it
            charges = ["0", "1", "2", "3", "Infinity", "5", "6", "7", "8", "1e999", "10", "11"]
            self.reply(
                200,
                "["
                + ",".join(f'{{"charges": {c}, "churn": "{"Yes" if i % 2 else "No"}"}}' for i, c in enumerate(charges))
                + "]",
            )
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
    frame = sources.read(
        http(
            f"{api}/paged", records_key="data.items", pagination={"type": "page", "size": 10, "size_param": "per_page"}
        )
    )
    assert len(frame) == 25 and list(frame["id"]) == list(range(25))
    assert "usage.minutes" in frame.columns


def test_cursor_pagination_reads_every_record(api):
    frame = sources.read(
        http(
            f"{api}/cursor",
            records_key="results",
            pagination={"type": "cursor", "cursor_key": "next", "param": "cursor"},
        )
    )
    assert list(frame["id"]) == list(range(25))


def test_a_server_error_is_retried_then_succeeds(api):
    assert len(sources.read(http(f"{api}/flaky"))) == 5


def test_http_errors_are_clear(api, monkeypatch):
    with pytest.raises(StageError, match=r"GET .*/missing: HTTP 404 Not Found"):
        sources.read(http(f"{api}/missing"))
    with pytest.raises(StageError, match=r"/badjson: the response is not valid JSON \(starts with '<html>"):
        sources.read(http(f"{api}/badjson"))
    with pytest.raises(
        StageError, match=r"no key 'data.rows' in the JSON response \('rows' missing under 'data'; found: \['items'\]\)"
    ):
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


class Leaky(BaseHTTPRequestHandler):
    """Records the headers of every request; /redirect sends the client to ``target`` (another port)."""

    target = ""
    seen: list[dict[str, str]] = []

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        Leaky.seen.append({"path": self.path, **dict(self.headers)})
        if self.path.startswith("/redirect"):
            self.send_response(302)
            self.send_header("Location", f"{Leaky.target}/rows")
            self.end_headers()
            return
        body = json.dumps(RECORDS[:3]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def two_origins():
    """Two servers on 127.0.0.1, different ports: the first redirects to the second."""
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), Leaky) for _ in range(2)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    first, second = (f"http://127.0.0.1:{server.server_address[1]}" for server in servers)
    Leaky.target, Leaky.seen = second, []
    yield first, second
    for server in servers:
        server.shutdown()
        server.server_close()


def test_secret_headers_do_not_follow_a_redirect_to_another_origin(two_origins, monkeypatch):
    first, second = two_origins
    monkeypatch.setenv("MLGATE_TEST_KEY", "k3y")
    monkeypatch.setenv("MLGATE_TEST_TOKEN", "Bearer t0ken")
    spec = http(f"{first}/redirect", headers_env={"X-Api-Key": "MLGATE_TEST_KEY", "Authorization": "MLGATE_TEST_TOKEN"})

    assert len(sources.read(spec)) == 3

    origin_request, redirected = Leaky.seen
    assert origin_request["X-Api-Key"] == "k3y" and origin_request["Authorization"] == "Bearer t0ken"
    assert redirected["path"] == "/rows"
    assert "X-Api-Key" not in redirected and "Authorization" not in redirected


def test_secret_headers_still_reach_the_same_origin_after_a_redirect(two_origins, monkeypatch):
    first, _ = two_origins
    Leaky.target = first  # /redirect -> /rows on the same server
    monkeypatch.setenv("MLGATE_TEST_KEY", "k3y")

    sources.read(http(f"{first}/redirect", headers_env={"X-Api-Key": "MLGATE_TEST_KEY"}))

    assert [request.get("X-Api-Key") for request in Leaky.seen] == ["k3y", "k3y"]


class Bomb(BaseHTTPRequestHandler):
    """/bomb: 5 MB of JSON whitespace in a 5 KB gzip body, sent with Content-Encoding: gzip."""

    body = b""

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(Bomb.body)))
        self.end_headers()
        self.wfile.write(Bomb.body)


@pytest.fixture
def bomb():
    Bomb.body = gzip.compress(b"[" + b" " * 5_000_000 + b"]", compresslevel=9)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Bomb)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/bomb"
    server.shutdown()
    server.server_close()


def test_a_gzip_bomb_stops_at_the_download_cap(bomb):
    assert len(Bomb.body) < 10_000
    for read in (sources.read, sources.fingerprint):
        with pytest.raises(
            StageError,
            match=r"/bomb: the response exceeds data.source.max_download_mb \(1 MB, "
            r"decompressed, over all pages\)",
        ):
            read(http(bomb, max_download_mb=1))


def test_the_download_cap_counts_every_page(api):
    # 3 pages of about 0.5 KB each: the third goes over a 1 KB budget
    with pytest.raises(StageError, match="exceeds data.source.max_download_mb"):
        sources.read(
            http(
                f"{api}/paged",
                records_key="data.items",
                max_download_mb=0.001,
                pagination={"type": "page", "size": 10, "size_param": "per_page"},
            )
        )


def test_a_cursor_seen_twice_stops_the_loop(api):
    with pytest.raises(StageError, match=r"returned cursor 'a' a second time"):
        sources.read(
            http(
                f"{api}/loop",
                records_key="results",
                pagination={"type": "cursor", "cursor_key": "next", "param": "cursor"},
            )
        )


def test_secret_query_values_are_masked_in_the_location_and_in_errors(api):
    spec = http(f"{api}/missing?api_key=k3y&page_size=5", params={"token": "t0ken"})
    assert sources.location(spec) == f"{api}/missing?api_key=***&page_size=5"
    with pytest.raises(StageError) as raised:
        sources.read(spec)
    assert "k3y" not in str(raised.value) and "t0ken" not in str(raised.value)
    assert "api_key=***" in str(raised.value) and "token=***" in str(raised.value)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://postgres@127.0.0.1:5432/test?password=s3cret",
        "postgresql+psycopg://postgres@127.0.0.1:5432/test?sslmode=disable&PGPASSWORD=s3cret",
    ],
)
def test_a_password_in_the_sql_query_string_is_refused(url):
    spec = SourceSpec(kind="sql", url=url, table="t")
    for call in (sources.read, sources.fingerprint, sources.location):
        with pytest.raises(
            StageError,
            match=r"must not contain a password \(query key\(s\) \['(password|PGPASSWORD)'\]\); "
            r"name an environment variable in data.source.password_env",
        ):
            call(spec)


@pytest.mark.filterwarnings("ignore:Query string argument")  # pysqlite ignores auth_token: fine here
def test_other_secret_query_values_in_a_sql_url_are_masked(tmp_path):
    url = f"sqlite:///{tmp_path / 'source.db'}?auth_token=t0ken&timeout=5"
    with scratch_table(url, "churn") as (engine, table):
        pd.DataFrame({"x": [1, 2]}).to_sql(table, engine, index=False)
        fingerprint = sources.fingerprint(SourceSpec(kind="sql", url=url, table=table))
    assert fingerprint["location"] == f"sqlite:///{tmp_path / 'source.db'}?auth_token=***&timeout=5 (table {table})"
    assert "t0ken" not in json.dumps(fingerprint)


def test_fingerprint_query_binds_whole_parameter_names(database, telco):
    url, table = database
    spec = SourceSpec(
        kind="sql",
        url=url,
        query=f'select * from "{table}" where tenure >= :id',
        params={"id": 24, "identifier": 60},
        fingerprint_query=f'select count(*) from "{table}" where tenure >= :identifier',
    )

    assert sources.fingerprint(spec)["value"] == [str(int((telco.tenure >= 60).sum()))]


def test_a_parameter_the_query_does_not_name_is_a_clear_error_when_fingerprinting(database):
    url, table = database
    spec = SourceSpec(
        kind="sql",
        url=url,
        query=f'select * from "{table}" where tenure >= :min_tenure',
        params={"min_tenure": 1, "max_tenure": 9},
    )
    with pytest.raises(StageError, match=r"\(query\): ArgumentError: .*bound parameter named 'max_tenure'"):
        sources.fingerprint(spec)


@pytest.mark.parametrize("url", ["sqlite", POSTGRES])
def test_infinities_stored_in_a_database_fail_the_contract_by_name(url, tmp_path):
    from tests.helpers import spec_over

    url = f"sqlite:///{tmp_path / 'source.db'}" if url == "sqlite" else url
    with scratch_table(url, "inf") as (engine, table):
        frame = pd.DataFrame({"charges": [float(i) for i in range(12)], "churn": ["Yes", "No"] * 6})
        frame.loc[[4, 9], "charges"] = [float("inf"), float("-inf")]  # IEEE infinities, as the driver stores them
        frame.to_sql(table, engine, index=False)
        read = sources.read(SourceSpec(kind="sql", url=url, table=table))

    [violation] = check_contract(read, spec_over({"charges": {"type": "float"}})).violations

    assert (violation.column, violation.rule) == ("charges", "finite")
    assert "2 value(s) are infinite or beyond ±3.4e+38, first inf, at row(s) 5, 10" in violation.message


def test_infinities_in_a_json_api_fail_the_contract_by_name(api):
    from tests.helpers import spec_over

    read = sources.read(http(f"{api}/infinite"))

    [violation] = check_contract(read, spec_over({"charges": {"type": "float"}})).violations

    assert (violation.column, violation.rule) == ("charges", "finite")
    assert "2 value(s) are infinite or beyond ±3.4e+38, first inf, at row(s) 5, 10" in violation.message
