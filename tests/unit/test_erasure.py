"""`mlgate forget`'s choices before it touches anything: which id column, the key, the source."""

import copy

import pandas as pd
import pytest

from mlgate import config
from mlgate.errors import StageError
from mlgate.modelling.data import DataSpec
from mlgate.services import erasure

KEY = "erasure-unit-key-0123456789"


def _spec(data_section, source=None, **columns) -> DataSpec:
    section = copy.deepcopy(data_section)
    section["contract"]["columns"].update(columns)
    if source is not None:
        section["source"] = source
    return config.build(DataSpec, section, "data")


HASHED_ID = {"type": "string", "role": "id", "pii": "direct", "handling": "hash"}


def test_without_a_hashed_id_column_forget_says_what_to_declare(data_section):
    spec = _spec(data_section, visit={"type": "string", "role": "id"})
    with pytest.raises(StageError, match=r"declares no id column with `role: id, pii: direct, handling: hash`"):
        erasure.id_column(spec, None)
    with pytest.raises(StageError, match=r"--column 'visit': not an id column declared"):
        erasure.id_column(spec, "visit")


def test_several_hashed_id_columns_need_a_choice(data_section):
    spec = _spec(data_section, applicant=HASHED_ID, account=HASHED_ID)
    with pytest.raises(StageError, match="several id columns \\(applicant, account\\): choose one with --column"):
        erasure.id_column(spec, None)
    assert erasure.id_column(spec, "account") == "account"


def test_the_id_is_hashed_as_ingest_hashes_it_and_needs_the_key(data_section, monkeypatch):
    spec = _spec(data_section, applicant=HASHED_ID)
    monkeypatch.delenv("MLGATE_PII_KEY", raising=False)
    with pytest.raises(StageError, match="environment variable MLGATE_PII_KEY is not set"):
        erasure.hashed(spec, "A1")
    monkeypatch.setenv("MLGATE_PII_KEY", KEY)
    as_ingest = spec.contract.personal.apply(pd.DataFrame({"applicant": ["A1", 12345]}), KEY.encode())["applicant"]
    assert erasure.hashed(spec, "A1") == as_ingest[0]
    assert erasure.hashed(spec, "12345") == as_ingest[1]  # a number in the source, text on the command line


def test_a_sql_source_is_left_to_its_owner_with_the_statement_to_run(data_section, monkeypatch):
    sql = {"kind": "sql", "url": "postgresql+psycopg://db/x", "table": "applicants"}
    spec = _spec(data_section, sql, applicant=HASHED_ID)
    found = erasure.source_rows(spec, "applicant", "0" * 32)
    assert found.rows is None and "DELETE FROM applicants WHERE applicant = :id" in found.advice


def test_a_file_source_is_counted_and_rewritten_without_the_ids_rows_only(data_section, monkeypatch, tmp_path):
    monkeypatch.setenv("MLGATE_PII_KEY", KEY)
    source = tmp_path / "people.csv"
    source.write_text("applicant,tenure,note\nA1,1,\nA2,02,x\nA1,3,y\n")
    spec = _spec(data_section, {"kind": "file", "path": str(source), "format": "csv"}, applicant=HASHED_ID)
    hashed = erasure.hashed(spec, "A1")

    assert erasure.source_rows(spec, "applicant", hashed).rows == 2
    assert erasure.remove_from_source(spec, "applicant", hashed) == 2
    assert source.read_text() == "applicant,tenure,note\nA2,02,x\n"  # the rest as written: 02 stays 02
    assert erasure.remove_from_source(spec, "applicant", hashed) == 0
