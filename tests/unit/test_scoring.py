import numpy as np
import pandas as pd
import pytest

from mlgate.errors import StageError
from mlgate.modelling.features import InputValidationError
from mlgate.services import scoring


def doubled(chunk: pd.DataFrame) -> pd.DataFrame:
    if (chunk["x"] < 0).any():
        raise InputValidationError("column 'x': negative at row 0")
    return pd.DataFrame({"prediction": chunk["x"] * 2})


@pytest.fixture
def rows(tmp_path):
    frame = pd.DataFrame({"id": [f"r{i}" for i in range(25)], "x": range(25)})
    frame.to_csv(tmp_path / "in.csv", index=False)
    frame.to_parquet(tmp_path / "in.parquet", index=False)
    return frame


@pytest.mark.parametrize(
    "source, target", [("in.csv", "out.parquet"), ("in.parquet", "out.csv.gz"), ("in.csv", "out.csv")]
)
def test_scores_every_row_in_order_chunk_by_chunk(tmp_path, rows, source, target):
    seen = []

    count = scoring.score(
        doubled, tmp_path / source, tmp_path / target, chunk_rows=10, keep_columns=("id",), progress=seen.append
    )

    out = pd.read_parquet(tmp_path / target) if target.endswith(".parquet") else pd.read_csv(tmp_path / target)
    assert count == 25 and seen == [10, 10, 5]
    assert out["id"].tolist() == rows["id"].tolist()
    assert out["prediction"].tolist() == [2 * x for x in range(25)]


def test_a_bad_chunk_names_its_rows_and_leaves_no_output(tmp_path, rows):
    rows.assign(x=[*range(15), -1, *range(16, 25)]).to_csv(tmp_path / "bad.csv", index=False)

    with pytest.raises(StageError, match=r"bad\.csv: rows 11–20: column 'x': negative"):
        scoring.score(doubled, tmp_path / "bad.csv", tmp_path / "out.parquet", chunk_rows=10)

    assert list(tmp_path.glob("out*")) == [] and list(tmp_path.glob(".out*")) == []


@pytest.mark.parametrize("name, message", [("in.txt", "unknown file type"), ("absent.csv", "input file not found")])
def test_unusable_paths_are_named(tmp_path, rows, name, message):
    (tmp_path / "in.txt").write_text("x\n1\n")

    with pytest.raises(StageError, match=message):
        scoring.score(doubled, tmp_path / name, tmp_path / "out.csv")


def test_keep_columns_must_exist(tmp_path, rows):
    with pytest.raises(StageError, match=r"--keep-columns \['customer'\] not in the file"):
        scoring.score(doubled, tmp_path / "in.csv", tmp_path / "out.csv", keep_columns=("customer",))


def test_an_output_that_is_a_directory_is_refused_and_kept(tmp_path, rows):
    kept = tmp_path / "out.parquet"
    kept.mkdir()
    (kept / "part-0.parquet").write_bytes(b"someone's data")

    with pytest.raises(StageError, match=r"out\.parquet: --output is a directory"):
        scoring.score(doubled, tmp_path / "in.csv", kept)

    assert (kept / "part-0.parquet").read_bytes() == b"someone's data"


def test_the_input_file_is_not_replaced_by_its_scores(tmp_path, rows):
    before = (tmp_path / "in.csv").read_bytes()

    with pytest.raises(StageError, match=r"--output is the input file"):
        scoring.score(doubled, tmp_path / "in.csv", tmp_path / "." / "in.csv")

    assert (tmp_path / "in.csv").read_bytes() == before


@pytest.mark.parametrize("value", [np.inf, "-Infinity", "1e999", 1e39])
def test_an_infinity_stops_scoring_naming_column_and_rows_before_the_model(tmp_path, rows, value):
    seen = []

    def model(chunk):
        seen.append(len(chunk))
        return doubled(chunk)

    rows.astype({"x": object}).assign(x=[*range(13), value, *range(14, 25)]).to_csv(tmp_path / "inf.csv", index=False)

    with pytest.raises(
        StageError,
        match=r"inf\.csv: column 'x': 1 infinite or too large value\(s\) \(beyond ±3\.4e\+38\) "
        r"at row\(s\) 14; the model takes finite numbers only",
    ):
        scoring.score(model, tmp_path / "inf.csv", tmp_path / "out.csv", chunk_rows=10, finite_columns=("x",))

    assert seen == [10] and list(tmp_path.glob("out*")) == []
