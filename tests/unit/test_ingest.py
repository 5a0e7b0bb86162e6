import re

import pandas as pd
import pytest

from mlgate.adapters.sources import read
from mlgate.errors import StageError
from mlgate.files import content_hash
from mlgate.modelling.data import SourceSpec


def read_file(path, fmt, what):
    return read(SourceSpec(kind="file", path=str(path), format=fmt), what)


def test_content_hash_ignores_the_row_index(clean_frame):
    reindexed = clean_frame.set_axis([10, 20, 30, 40, 50, 60])

    assert content_hash(reindexed) == content_hash(clean_frame)


def test_content_hash_changes_with_one_value(clean_frame):
    changed = clean_frame.copy()
    changed.loc[4, "plan"] = "basic"

    assert content_hash(changed) != content_hash(clean_frame)


def test_content_hash_changes_with_a_dtype(clean_frame):
    assert content_hash(clean_frame.astype({"tenure": "float64"})) != content_hash(clean_frame)


def test_content_hash_changes_with_a_column_name(clean_frame):
    assert content_hash(clean_frame.rename(columns={"plan": "tier"})) != content_hash(clean_frame)


def test_read_file_reads_a_csv(tmp_path, clean_frame):
    path = tmp_path / "tiny.csv"
    clean_frame.to_csv(path, index=False)

    pd.testing.assert_frame_equal(read_file(path, "csv", "data.source"), clean_frame)


def test_read_file_reads_parquet(tmp_path, clean_frame):
    path = tmp_path / "tiny.parquet"
    clean_frame.to_parquet(path, index=False)

    assert content_hash(read_file(path, "parquet", "data.source")) == content_hash(clean_frame)


@pytest.mark.parametrize(
    "name, content, fmt, detail",
    [
        ("empty.csv", "", "csv", "the file is empty"),
        ("blank_line.csv", "\n", "csv", "the file is empty"),
        ("header_only.csv", "tenure,plan\n", "csv", "no data rows (columns: tenure, plan)"),
        ("ragged.csv", "a,b\n1,2\n3,4,5,6\n", "csv", "cannot be read as csv"),
        ("text.parquet", "not parquet at all", "parquet", "cannot be read as parquet"),
        ("empty.parquet", "", "parquet", "the file is empty"),
    ],
)
def test_unreadable_file_error_names_the_path(tmp_path, name, content, fmt, detail):
    path = tmp_path / name
    path.write_text(content)

    with pytest.raises(StageError) as raised:
        read_file(path, fmt, "data.source")

    assert str(path) in str(raised.value)
    assert detail in str(raised.value)


def test_missing_file_error_names_the_path_and_the_param(tmp_path):
    path = tmp_path / "absent.csv"

    with pytest.raises(StageError, match=re.escape(f"{path}: source file not found (data.current_path")):
        read_file(path, "csv", "data.current_path")


def test_unsupported_format_names_the_param():
    with pytest.raises(ValueError, match=re.escape("data.source.format must be csv or parquet, got 'xlsx'")):
        SourceSpec(kind="file", path="tiny.xlsx", format="xlsx")


def test_an_unsupported_kind_names_the_param():
    with pytest.raises(
        ValueError, match=re.escape("data.source.kind must be one of ('file', 'sql', 'http'), got 'url'")
    ):
        SourceSpec(kind="url", path="https://example.invalid/data.csv")
