"""`mlgate forget` end to end: credit_data with a hashed applicant id runs the whole pipeline (v1);
forget finds the versions that were trained or tested on an applicant's rows, removes them from the
source, and the next run (v2) is found clean of that applicant while still holding the others. The
ledger records each request without the id, clear or hashed."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from mlgate.modelling.personal import keyed_hash
from mlgate.services.prediction_log import PredictionLog
from tests.helpers import copy_project, run_mlgate, run_stages, seed_store, tracking_env

pytestmark = pytest.mark.slow

KEY = "forget-test-key-0123456789abcdef"
ID_COLUMN = {"applicant_id": {"type": "string", "role": "id", "pii": "direct", "handling": "hash"}}


def _hashed(value: str) -> str:
    return keyed_hash(pd.Series([value], dtype=object), KEY.encode()).iloc[0]


def test_forget_finds_exactly_the_versions_that_saw_an_id_and_removes_it_from_the_source(tmp_path, empty_store):
    root = seed_store(copy_project(tmp_path / "project", ["experiment=credit_data"]), empty_store)
    source = root / "data/source/credit_data.csv.gz"
    frame = pd.read_csv(source)
    frame.insert(0, "applicant_id", [f"A{i:05d}" for i in range(len(frame))])
    frame.to_csv(source, index=False)
    conf = root / "conf/data/credit_data.yaml"
    declared = "".join(f"    {name}: {json.dumps(spec)}\n" for name, spec in ID_COLUMN.items())
    conf.write_text(conf.read_text().replace("  columns:\n", "  columns:\n" + declared, 1))
    run_mlgate(["params", "experiment=credit_data", "search.n_trials=2", "search.cv_folds=2"], root)
    env = tracking_env(root) | {"MLGATE_PII_KEY": KEY}
    first = run_stages(root, env)
    assert first.returncode == 0, first.stdout + first.stderr

    ids = pd.read_parquet(root / "data/split/ids.parquet")
    part_of = dict(zip(ids["id"], ids["part"], strict=True))
    assert set(ids["part"]) == {"train", "test", "current"} and len(ids) == len(frame)  # every applicant, once
    assert ids["id"].str.fullmatch(r"[0-9a-f]{32}").all()
    trained = next(f"A{i:05d}" for i in range(len(frame)) if part_of[_hashed(f"A{i:05d}")] == "train")
    tested = next(f"A{i:05d}" for i in range(len(frame)) if part_of[_hashed(f"A{i:05d}")] == "test")
    held = next(f"A{i:05d}" for i in range(len(frame)) if part_of[_hashed(f"A{i:05d}")] == "current")

    found = run_mlgate(["forget", "--id", trained], root, env)
    assert found.returncode == 0, found.stdout + found.stderr
    assert "v1" in found.stdout and "train rows" in found.stdout
    assert f"{source.relative_to(root)}: 1 row(s) hold this id" in found.stdout
    assert "v1" in run_mlgate(["forget", "--id", tested], root, env).stdout.split("version(s)")[1]
    assert "test rows" in run_mlgate(["forget", "--id", tested], root, env).stdout
    untouched = run_mlgate(["forget", "--id", held], root, env)  # drift's batch: neither trained nor tested on
    assert "no version was trained or tested on this id's rows" in untouched.stdout, untouched.stdout
    unknown = run_mlgate(["forget", "--id", "NOBODY"], root, env)
    assert "no version was trained or tested" in unknown.stdout and "0 row(s) hold this id" in unknown.stdout

    # what `mlgate serve` logs for requests that carried the id beside the model's columns (hashed by then)
    served = frame.drop(columns=["Status"]).head(4).assign(applicant_id=[_hashed(trained), "x", _hashed(trained), "y"])
    log = PredictionLog(root / "data/predictions")
    log.submit("r1", "1", served, pd.DataFrame({"prediction": ["good"] * 4}), logged_columns=list(served.columns[:-1]))
    log.close()

    removed = run_mlgate(
        [
            "forget",
            "--id",
            trained,
            "--remove-from-source",
            "--prediction-log",
            "data/predictions",
            "--reason",
            "ticket 42",
        ],
        root,
        env,
    )
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert "1 row(s) removed" in removed.stdout and "2 logged row(s) purged" in removed.stdout
    logged = pd.read_parquet(next((root / "data/predictions").glob("*.parquet")))
    assert logged["row"].tolist() == [1, 3]
    after = pd.read_csv(source)
    assert trained not in set(after["applicant_id"]) and len(after) == len(frame) - 1
    pd.testing.assert_frame_equal(after, frame[frame["applicant_id"] != trained].reset_index(drop=True))

    again = run_stages(root, env)
    assert again.returncode == 0 and "v2" in again.stdout, again.stdout + again.stderr
    gone = run_mlgate(["forget", "--id", trained], root, env)
    assert "v1" in gone.stdout and "v2" not in gone.stdout.split("version(s)")[1], gone.stdout
    second = pd.read_parquet(root / "data/split/ids.parquet")
    assert _hashed(trained) not in set(second["id"]) and len(second) == len(frame) - 1
    learnt = {"train", "test"}
    in_second = dict(zip(second["id"], second["part"], strict=True))
    kept = next(
        a for a in frame["applicant_id"] if part_of[_hashed(a)] in learnt and in_second.get(_hashed(a)) in learnt
    )
    both = run_mlgate(["forget", "--id", kept], root, env).stdout.split("version(s)")[1]
    assert "v1" in both and "v2" in both, both

    ledger = (root / "registry/ledger.jsonl").read_text()
    assert trained not in ledger and _hashed(trained) not in ledger  # only a digest of the hash
    erasures = [json.loads(line) for line in ledger.splitlines() if '"erasure"' in line]
    assert len(erasures) == 8  # every request, whatever it found
    assert [e["source_rows_removed"] for e in erasures].count(1) == 1
    assert [e["prediction_log_rows_purged"] for e in erasures].count(2) == 1
    assert any(e["reason"] == "ticket 42" and e["versions"] == [{"version": 1, "parts": ["train"]}] for e in erasures)
    history = run_mlgate(["history"], root, env)
    assert history.returncode == 0, history.stdout + history.stderr
    assert "erasure  applicant_id" in history.stdout
