"""Where a dataset comes from (params.yaml `data.source`), in a module of its own: the fingerprint stage,
which DVC runs on every `dvc repro`, reads it without loading pandas (0.8 s of a no-op run)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SOURCE_KINDS = ("file", "sql", "http")
FILE_OPTIONS = ("sep", "encoding", "na_values", "dtype", "decimal", "thousands", "skiprows", "storage_options")


@dataclass(frozen=True)
class SourceSpec:
    """Where the data comes from: one ``kind`` and the fields of that kind (see conf/data/*.yaml)."""

    kind: str
    # file: a local path or an fsspec URL (s3://, gs://, https://, ...), CSV or Parquet
    path: str | None = None
    format: str = "csv"
    options: dict[str, Any] = field(default_factory=dict)  # passed to pandas: FILE_OPTIONS
    # sql: a SQLAlchemy URL without credentials, and a table or a query with bound parameters
    url: str | None = None
    table: str | None = None
    query: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    username_env: str | None = None  # names of environment variables, never the secrets
    password_env: str | None = None
    fingerprint_query: str | None = None  # cheap query whose result changes when the data does
    # http: a JSON API (url above); records under a dotted key; optional pagination
    records_key: str | None = None
    pagination: dict[str, Any] = field(default_factory=dict)
    headers_env: dict[str, str] = field(default_factory=dict)  # header name -> environment variable
    timeout_s: float = 30.0
    retries: int = 3
    backoff_s: float = 0.5
    max_download_mb: float = 256.0  # all pages together, decompressed: a gzip bomb stops here

    def __post_init__(self) -> None:
        where = "data.source"
        if self.kind not in SOURCE_KINDS:
            raise ValueError(f"{where}.kind must be one of {SOURCE_KINDS}, got '{self.kind}'")
        if self.kind == "file":
            if not self.path:
                raise ValueError(f"{where}.path is required for a file source")
            if self.format not in ("csv", "parquet"):
                raise ValueError(f"{where}.format must be csv or parquet, got '{self.format}'")
            unknown = sorted(set(self.options) - set(FILE_OPTIONS))
            if unknown:
                raise ValueError(f"{where}.options: unknown option(s) {unknown}; allowed: {list(FILE_OPTIONS)}")
        if self.kind == "sql" and (not self.url or (self.table is None) == (self.query is None)):
            raise ValueError(f"{where}: a sql source needs url and exactly one of table or query")
        if self.kind == "http" and not self.url:
            raise ValueError(f"{where}.url is required for an http source")
        if not self.max_download_mb > 0:
            raise ValueError(f"{where}.max_download_mb must be positive, got {self.max_download_mb}")
