import pytest

from mlgate import files


def test_a_file_never_replaces_a_directory(tmp_path):
    folder = tmp_path / "report.json"
    folder.mkdir()
    (folder / "keep.txt").write_text("kept")

    with pytest.raises(IsADirectoryError, match="report.json is a directory; not replacing it with a file"):
        files.write_json(folder, {"a": 1})

    assert (folder / "keep.txt").read_text() == "kept"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no staging folder left behind


def test_a_directory_replaces_a_directory(tmp_path):
    (tmp_path / "split").mkdir()
    (tmp_path / "split" / "old.parquet").write_text("old")

    with files.atomic_path(tmp_path / "split") as staged:
        staged.mkdir()
        (staged / "train.parquet").write_text("new")

    assert [p.name for p in (tmp_path / "split").iterdir()] == ["train.parquet"]
