"""ingest's output is byte-stable: DVC hashes data/raw/, so different bytes for the same source would
rerun every later stage."""

from mlgate import config
from mlgate.stages import ingest


def snapshot(folder):
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_ingest_twice_on_the_same_source_writes_the_same_bytes(tmp_path, monkeypatch, project_root, clean_frame):
    params = config.read_params(project_root / "params.yaml")
    (tmp_path / "in").mkdir()
    clean_frame.to_csv(tmp_path / "in/tiny.csv", index=False)
    clean_frame.head(3).to_csv(tmp_path / "in/current.csv", index=False)
    params["data"]["source"] = {"kind": "file", "path": "in/tiny.csv", "format": "csv"}
    params["data"]["current_path"] = "in/current.csv"
    monkeypatch.chdir(tmp_path)

    ingest.run(params)
    first = snapshot(tmp_path / params["paths"]["raw"])
    ingest.run(params)

    assert set(first) == {"data.parquet", "current.parquet", "meta.json"}
    assert snapshot(tmp_path / params["paths"]["raw"]) == first
