"""Reading a declared source (file, SQL, HTTP JSON API) into a DataFrame, and fingerprinting it.

The fingerprint is a cheap summary that changes when the source's data does (a file hash, a
count/max query, an ETag); the `fingerprint` stage writes it so DVC reruns `ingest` only then.
Secrets come from environment variables named in the config and never appear in a location string.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlgate.errors import StageError
from mlgate.modelling.source import SourceSpec

if TYPE_CHECKING:  # the readers import them: `mlgate fingerprint`, which DVC runs every time, needs neither
    import pandas as pd
    import pyarrow as pa

_CHUNK_ROWS = 50_000
_RETRY_STATUSES = (429, 500, 502, 503, 504)
_READ_BYTES = 1 << 16  # urllib3 decompresses at most this much per read, so a gzip bomb cannot balloon
# Query keys whose values are secrets: masked wherever a location is shown or written (meta.json,
# the fingerprint, the gate's lineage, error messages). `sslkey` and the like are masked too: harmless.
_SECRET_KEY = re.compile(r"(?i)pass|pwd|secret|token|key|auth|credential|signature|^sig$|session")
_PASSWORD_KEY = re.compile(r"(?i)password|passwd|^pwd$")  # not `passfile`, a path
MASK = "***"


def read(source: SourceSpec, what: str = "data.source") -> pd.DataFrame:
    import pandas as pd

    data = read_snapshot(source, what)
    return data if isinstance(data, pd.DataFrame) else data.to_pandas()


def read_snapshot(source: SourceSpec, what: str = "data.source") -> pd.DataFrame | pa.Table:
    """The source's rows: a DataFrame, or for SQL an Arrow table built chunk by chunk, so the whole
    result never sits in pandas' Python objects (about 4× smaller for text columns)."""
    import pyarrow as pa

    reader = {"file": _read_file, "sql": _read_sql, "http": _read_http}[source.kind]
    data = reader(source, what)
    if len(data) == 0:
        names = ", ".join(map(str, data.column_names if isinstance(data, pa.Table) else data.columns)) or "none"
        raise StageError(f"{location(source)}: no data rows (columns: {names})")
    return data


def location(source: SourceSpec) -> str:
    """Where the data comes from, safe to print and log: passwords masked, no credentials."""
    if source.kind == "file":
        return masked(str(source.path))
    if source.kind == "sql":
        target = f"table {source.table}" if source.table else "query"
        return f"{_engine_url(source, with_secrets=False)} ({target})"
    return masked(str(source.url))


def masked(url: str) -> str:
    """``url`` with a password in ``user:password@`` and the values of secret-like query keys
    (token, api_key, password, ...) replaced by ***; anything that is not a URL is returned as is."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    if not _is_url(url):
        return url
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, has_password, _ = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{host}" if has_password else netloc
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(_SECRET_KEY.search(key) for key, _ in query):
        shown = urlencode([(key, MASK if _SECRET_KEY.search(key) else value) for key, value in query], safe="*")
    else:
        shown = parts.query
    return urlunsplit((parts.scheme, netloc, parts.path, shown, parts.fragment))


def _url_secrets(url: str) -> list[str]:
    """The password and the secret query values in ``url``: what masked() hides."""
    from urllib.parse import parse_qsl, urlsplit

    if not _is_url(url):
        return []
    parts = urlsplit(url)
    found = [value for key, value in parse_qsl(parts.query, keep_blank_values=True) if _SECRET_KEY.search(key)]
    return [*found, *([parts.password] if parts.password else [])]


def _hide(text: str, secrets: list[str]) -> str:
    """``text`` (a library's error, which may repeat a URL in any form) with each secret masked."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def fingerprint(source: SourceSpec) -> dict[str, Any]:
    base = {"kind": source.kind, "location": location(source)}
    if source.kind == "file":
        return base | _file_fingerprint(source)
    if source.kind == "sql":
        return base | {"value": _sql_fingerprint(source)}
    return base | _http_fingerprint(source)


# --- file -------------------------------------------------------------------------------------


def _is_url(path: str) -> bool:
    return "://" in path


def _read_file(source: SourceSpec, what: str) -> pd.DataFrame:
    import pandas as pd

    path, shown = str(source.path), location(source)
    if not _is_url(path):
        local = Path(path)
        if not local.is_file():
            raise StageError(f"{path}: source file not found ({what}.path in params.yaml)")
        if local.stat().st_size == 0:
            raise StageError(f"{path}: the file is empty (0 bytes)")
    options = dict(source.options)
    try:
        if source.format == "parquet":
            return pd.read_parquet(path, storage_options=options.get("storage_options"))
        frame = pd.read_csv(path, **options)
    except pd.errors.EmptyDataError:
        raise StageError(f"{shown}: the file is empty (no header row)") from None
    except UnicodeDecodeError as error:
        raise StageError(
            f"{shown}: not valid {options.get('encoding', 'utf-8')} text ({error.reason} at byte "
            f"{error.start}); set {what}.options.encoding (e.g. latin-1)"
        ) from None
    except (pd.errors.ParserError, OSError, ValueError) as error:
        detail = _hide(str(error).strip(), _url_secrets(path))  # fsspec's errors repeat the URL
        raise StageError(f"{shown}: cannot be read as {source.format}: {detail}") from None
    _check_header(frame, path, shown, options)
    if len(frame.columns) > 1 and frame.iloc[:, -1].isna().any():
        _check_short_rows(path, shown, len(frame.columns), options)
    return frame


def _check_header(frame: pd.DataFrame, path: str, shown: str, options: dict[str, Any]) -> None:
    """pandas silently renames duplicate columns (x, x.1) and reads a wrong delimiter as one column."""
    import pandas as pd

    header_options = {k: v for k, v in options.items() if k in ("sep", "encoding", "storage_options", "skiprows")}
    first_row = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False, **header_options)
    names = [str(c) for c in first_row.iloc[0]]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise StageError(f"{shown}: duplicate column name(s) {duplicated} in the header row")
    if len(names) == 1:
        for separator in (";", "\t", "|"):
            if separator in names[0]:
                raise StageError(
                    f"{shown}: one column named {names[0][:60]!r}: the file seems to use "
                    f"{separator!r} as separator; set data.source.options.sep"
                )


def _check_short_rows(path: str, shown: str, width: int, options: dict[str, Any]) -> None:
    """pandas pads a row with too few fields with missing values, silently: a truncated file or a
    shifted row then looks like gaps in the last columns. A short row always leaves the last column
    empty, so this second pass runs only when the last column has missing values."""
    import csv

    import fsspec

    with fsspec.open(
        path,
        "rt",
        compression="infer",
        encoding=options.get("encoding", "utf-8"),
        newline="",
        **(options.get("storage_options") or {}),
    ) as handle:
        reader = csv.reader(handle, delimiter=options.get("sep", ","))
        for fields in reader:
            if fields and len(fields) < width:
                raise StageError(
                    f"{shown}: line {reader.line_num} has {len(fields)} field(s), the header has "
                    f"{width}; is the file truncated or the row shifted?"
                )


def _file_fingerprint(source: SourceSpec) -> dict[str, Any]:
    path = str(source.path)
    if _is_url(path):
        import fsspec

        info = fsspec.core.url_to_fs(path, **source.options.get("storage_options", {}) or {})[0].info(path)
        return {key: str(info[key]) for key in ("size", "ETag", "etag", "mtime", "LastModified", "md5") if key in info}
    local = Path(path)
    if not local.is_file():
        return {"missing": True}
    digest = hashlib.sha256()
    with local.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"size": local.stat().st_size, "sha256": digest.hexdigest()}


# --- sql --------------------------------------------------------------------------------------


def _env(name: str, field: str) -> str:
    value = os.environ.get(name)
    if value is None:
        raise StageError(f"environment variable {name} ({field} in params.yaml) is not set")
    return value


def _engine_url(source: SourceSpec, *, with_secrets: bool):
    """The engine's URL with credentials from the environment, or (``with_secrets=False``) the URL as
    safe to show: secret-like query values masked. A password in the URL, in ``user:password@`` or
    in the query string (psycopg and others read ``?password=``), is refused: it would be written."""
    import sqlalchemy as sa

    try:
        url = sa.make_url(str(source.url))
    except sa.exc.ArgumentError as error:
        raise StageError(f"data.source.url is not a SQLAlchemy URL: {error}") from None
    in_query = sorted(key for key in url.query if _PASSWORD_KEY.search(key))
    if url.password is not None or in_query:
        where = f"query key(s) {in_query}" if in_query else "user:password@"
        raise StageError(
            f"data.source.url must not contain a password ({where}); name an environment variable in "
            f"data.source.password_env instead"
        )
    if not with_secrets:
        shown = url.set(query={key: MASK if _SECRET_KEY.search(key) else value for key, value in url.query.items()})
        return shown.render_as_string(hide_password=True).replace("%2A%2A%2A", MASK)
    if source.username_env:
        url = url.set(username=_env(source.username_env, "data.source.username_env"))
    if source.password_env:
        url = url.set(password=_env(source.password_env, "data.source.password_env"))
    return url


def _select(source: SourceSpec):
    import sqlalchemy as sa

    if source.query is not None:
        return sa.text(source.query).bindparams(**source.params)
    schema, _, name = str(source.table).rpartition(".")
    return sa.select(sa.text("*")).select_from(sa.table(name, schema=schema or None))


def _sql(source: SourceSpec, run):
    """``run(connection)``, with every SQLAlchemy error (building the statement included) reported
    as a StageError naming the masked location."""
    import sqlalchemy as sa

    engine = None
    try:
        engine = sa.create_engine(_engine_url(source, with_secrets=True))
        with engine.connect() as connection:
            return run(connection)
    except (sa.exc.SQLAlchemyError, ImportError) as error:
        detail = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise StageError(f"{location(source)}: {type(error).__name__}: {_scrub(detail, source)}") from None
    finally:
        if engine is not None:
            engine.dispose()


def _scrub(text: str, source: SourceSpec) -> str:
    """``text`` without the password from the environment or a secret query value, should a driver
    repeat them in an error."""
    import sqlalchemy as sa

    secrets = [
        value
        for key, value in sa.make_url(str(source.url)).query.items()
        if _SECRET_KEY.search(key) and isinstance(value, str)
    ]
    if source.password_env:
        secrets.append(os.environ.get(source.password_env, ""))
    return _hide(text, secrets)


def _read_sql(source: SourceSpec, what: str) -> pa.Table:
    import pandas as pd
    import pyarrow as pa

    def run(connection):
        streaming = connection.execution_options(stream_results=True, max_row_buffer=_CHUNK_ROWS)
        tables = [
            pa.Table.from_pandas(chunk, preserve_index=False)
            for chunk in pd.read_sql(_select(source), streaming, chunksize=_CHUNK_ROWS)
        ]
        if not tables:
            return pa.table({})
        # a chunk whose column is all NULL, or has no NULL in an integer column, types it differently
        return pa.concat_tables(tables, promote_options="permissive")

    return _sql(source, run)


def bind_names(query: str) -> set[str]:
    """The bind parameters ``query`` names, as SQLAlchemy parses them: whole names (``:id`` is not
    part of ``:identifier``), and not casts (``x::text``)."""
    import sqlalchemy as sa

    return set(sa.text(query).compile().params)


def _sql_fingerprint(source: SourceSpec) -> list[str]:
    import sqlalchemy as sa

    def run(connection):
        if source.fingerprint_query:
            names = bind_names(source.fingerprint_query)
            statement = sa.text(source.fingerprint_query).bindparams(
                **{key: value for key, value in source.params.items() if key in names}
            )
        else:
            statement = sa.select(sa.func.count()).select_from(_select(source).subquery())
        return [str(v) for v in connection.execute(statement).one()]

    return _sql(source, run)


# --- http -------------------------------------------------------------------------------------


def _origin(url: str) -> tuple[str, str, int | None]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or {"http": 80, "https": 443}.get(scheme)


def _session(source: SourceSpec):
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    secret_headers = {
        header: _env(var, f"data.source.headers_env.{header}") for header, var in source.headers_env.items()
    }
    origin = _origin(str(source.url))

    class Session(requests.Session):
        """requests strips only `Authorization` on a redirect to another host; the headers from
        headers_env (an X-Api-Key, say) are as secret, so they go only to the configured origin
        (scheme, host and port)."""

        def rebuild_auth(self, prepared_request, response):
            super().rebuild_auth(prepared_request, response)
            if _origin(prepared_request.url) != origin:
                for header in secret_headers:
                    prepared_request.headers.pop(header, None)

    session = Session()
    retry = Retry(
        total=source.retries,
        backoff_factor=source.backoff_s,
        status_forcelist=_RETRY_STATUSES,
        allowed_methods=("GET", "HEAD"),
        raise_on_status=False,
    )
    session.mount("http://", HTTPAdapter(max_retries=retry))
    session.mount("https://", HTTPAdapter(max_retries=retry))
    session.headers.update(secret_headers)
    return session


@dataclass(frozen=True)
class _Page:
    url: str  # the final one, after redirects, with the query string; masked() before showing it
    headers: Any
    body: bytes  # decompressed


def _get(session, source: SourceSpec, url: str, params: dict[str, Any], budget: int, what: str) -> _Page:
    """GET ``url``, its body read (decompressed) chunk by chunk up to ``budget`` bytes: a larger
    body, a gzip bomb say, stops the read there with a clear error instead of filling memory."""
    import requests

    # requests' errors repeat the URL with its query string
    secrets = [*_url_secrets(url), *(str(v) for k, v in params.items() if _SECRET_KEY.search(str(k)))]
    try:
        response = session.get(url, params=params, timeout=source.timeout_s, stream=True)
    except requests.RequestException as error:
        raise StageError(
            f"GET {masked(url)}: {type(error).__name__} after {source.retries} retries: {_hide(str(error), secrets)}"
        ) from None
    with response:
        shown = masked(response.url)
        if response.status_code >= 400:
            raise StageError(
                f"GET {shown}: HTTP {response.status_code} {response.reason}"
                + (f" after {source.retries} retries" if response.status_code in _RETRY_STATUSES else "")
            )
        body = bytearray()
        try:
            for block in response.iter_content(_READ_BYTES):
                body += block
                if len(body) > budget:
                    raise StageError(
                        f"GET {shown}: the response exceeds {what}.max_download_mb "
                        f"({source.max_download_mb:g} MB, decompressed, over all pages); raise it if "
                        f"the data really is that large"
                    )
        except requests.RequestException as error:
            raise StageError(
                f"GET {shown}: {type(error).__name__} while reading the body: {_hide(str(error), secrets)}"
            ) from None
    return _Page(response.url, response.headers, bytes(body))


def _dig(payload: Any, dotted: str | None, url: str) -> Any:
    walked: list[str] = []
    for key in dotted.split(".") if dotted else ():
        if not isinstance(payload, dict) or key not in payload:
            found = list(payload)[:10] if isinstance(payload, dict) else type(payload).__name__
            where = f"under '{'.'.join(walked)}'" if walked else "at the top level"
            raise StageError(f"{url}: no key '{dotted}' in the JSON response ('{key}' missing {where}; found: {found})")
        payload = payload[key]
        walked.append(key)
    return payload


def _json(page: _Page) -> Any:
    try:
        return json.loads(page.body)
    except ValueError:
        raise StageError(
            f"{masked(page.url)}: the response is not valid JSON "
            f"(starts with {page.body[:40].decode('utf-8', 'replace')!r})"
        ) from None


def _read_http(source: SourceSpec, what: str) -> pd.DataFrame:
    import pandas as pd

    paging = dict(source.pagination)
    style = paging.get("type")
    if style not in (None, "page", "cursor"):
        raise StageError(f"{what}.pagination.type must be page or cursor, got '{style}'")
    max_pages = int(paging.get("max_pages", 10_000))
    params: dict[str, Any] = dict(source.params)
    page = int(paging.get("start", 1))
    records: list[dict[str, Any]] = []
    budget = int(source.max_download_mb * 1e6)
    seen_cursors: set[str] = set()
    with _session(source) as session:
        for _ in range(max_pages):
            if style == "page":
                params[paging.get("param", "page")] = page
                if "size" in paging:
                    params[paging.get("size_param", "per_page")] = paging["size"]
            fetched = _get(session, source, str(source.url), params, budget, what)
            budget -= len(fetched.body)
            shown = masked(fetched.url)
            payload = _json(fetched)
            batch = _dig(payload, source.records_key, shown)
            if not isinstance(batch, list):
                raise StageError(f"{shown}: '{source.records_key or 'the response'}' is not a list of records")
            records.extend(batch)
            if style == "page":
                if not batch or ("size" in paging and len(batch) < int(paging["size"])):
                    break
                page += 1
            elif style == "cursor":
                cursor = _dig(payload, paging.get("cursor_key", "next_cursor"), shown) if batch else None
                if not cursor:
                    break
                if str(cursor) in seen_cursors:  # the API loops: it would fill memory until max_pages
                    raise StageError(
                        f"{shown}: the API returned cursor {str(cursor)[:40]!r} a second time; "
                        f"stopping instead of reading the same pages again"
                    )
                seen_cursors.add(str(cursor))
                params[paging.get("param", "cursor")] = cursor
            else:
                break
        else:
            raise StageError(f"{location(source)}: more than {max_pages} pages ({what}.pagination.max_pages)")
    return pd.json_normalize(records) if records else pd.DataFrame()


def _http_fingerprint(source: SourceSpec) -> dict[str, Any]:
    with _session(source) as session:
        fetched = _get(
            session, source, str(source.url), dict(source.params), int(source.max_download_mb * 1e6), "data.source"
        )
    for header in ("ETag", "Last-Modified"):
        if header in fetched.headers:
            return {header.lower(): fetched.headers[header]}
    return {"first_page_sha256": hashlib.sha256(fetched.body).hexdigest()}


def current_source(path: str) -> SourceSpec:
    """The spec of ``data.current_path``: a local CSV or Parquet file of new rows."""
    return SourceSpec(kind="file", path=path, format="parquet" if Path(path).suffix == ".parquet" else "csv")
