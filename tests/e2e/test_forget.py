"""`mlgate forget` end to end: credit_data with a hashed applicant id runs the whole pipeline (v1);
forget finds the versions that were trained or tested on an applicant's rows; `--retrain` opens a
branch whose source lacks them, where `dvc repro` trains v2, found clean of that applicant while still
holding the others; the prediction log is purged and the source edited in place. The ledger records
each request without the id, clear or hashed."""

from __future__ import annotations

import gzip
import io
import json
import re
import subprocess

import pandas as pd
import pytest
import yaml

from mlgate import config
from mlgate.modelling.data import DataSpec
from mlgate.modelling.personal import keyed_hash
from mlgate.services.prediction_log import PredictionLog
from mlgate.stages.split import SplitParams, split
from tests.helpers import TINY_BUDGET, copy_project, git_commit_all, run_mlgate, run_stages, tracking_env

pytestmark = pytest.mark.slow

KEY = "forget-test-key-0123456789abcdef"
ID_COLUMN = {"applicant_id": {"type": "string", "role": "id", "pii": "direct", "handling": "hash"}}
BUDGET = [*TINY_BUDGET, "search.n_trials=2"]


def _hashed(value: str) -> str:
    return keyed_hash(pd.Series([value], dtype=object), KEY.encode()).iloc[0]


def _versions(found: subprocess.CompletedProcess) -> set[str]:
    assert found.returncode == 0, found.stdout + found.stderr
    return set(re.findall(r"^  (v\d+)", found.stdout, flags=re.MULTILINE))


def _project(tmp_path):
    """credit_data with an applicant id, declared hashed; its budget in conf/ (a retraining branch
    recomposes params.yaml from conf/); a git repository."""
    root = copy_project(tmp_path / "project", ["experiment=credit_data"])
    source = root / "data/source/credit_data.csv.gz"
    frame = pd.read_csv(source)
    frame.insert(0, "applicant_id", [f"A{i:05d}" for i in range(len(frame))])
    frame.to_csv(source, index=False)
    conf = root / "conf/data/credit_data.yaml"
    declared = "".join(f"    {name}: {json.dumps(spec)}\n" for name, spec in ID_COLUMN.items())
    conf.write_text(conf.read_text().replace("  columns:\n", "  columns:\n" + declared, 1))
    main = root / "conf/config.yaml"
    budget: dict = {}
    for item in BUDGET:
        dotted, value = item.split("=", 1)
        *parents, leaf = dotted.split(".")
        node = budget
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    text = main.read_text().replace("  - experiment: telco_churn", "  - experiment: credit_data")
    main.write_text(text + "\n" + yaml.safe_dump(budget))
    run_mlgate(["params"], root)
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=root, check=True)
    git_commit_all(root, "credit_data with applicant ids")
    return root, source, frame


def test_forget_finds_the_versions_that_saw_an_id_retrains_without_it_and_purges_it(tmp_path):
    root, source, frame = _project(tmp_path)
    env = tracking_env(root) | {"MLGATE_PII_KEY": KEY}
    first = run_stages(root, env)
    assert first.returncode == 0, first.stdout + first.stderr

    ids = pd.read_parquet(root / "data/split/ids.parquet")
    assert set(ids["part"]) == {"train", "test", "current"} and len(ids) == len(frame)  # every applicant, once
    assert ids["id"].str.fullmatch(r"[0-9a-f]{32}").all()
    part_of = dict(zip(ids["id"], ids["part"], strict=True))
    applicants = frame["applicant_id"]
    trained, tested, held = (
        next(a for a in applicants if part_of[_hashed(a)] == p) for p in ("train", "test", "current")
    )

    found = run_mlgate(["forget", "--id", trained], root, env)
    assert _versions(found) == {"v1"} and "v1: train rows" in found.stdout
    assert "data/source/credit_data.csv.gz: 1 row(s) hold this id" in found.stdout
    assert "v1: test rows" in run_mlgate(["forget", "--id", tested], root, env).stdout
    untouched = run_mlgate(["forget", "--id", held], root, env)  # drift's batch: neither trained nor tested on
    assert _versions(untouched) == set() and "no version was trained or tested" in untouched.stdout
    unknown = run_mlgate(["forget", "--id", "NOBODY"], root, env)
    assert _versions(unknown) == set() and "0 row(s) hold this id" in unknown.stdout

    # what `mlgate serve` logs for requests that carried the id beside the model's columns (hashed by then)
    served = frame.drop(columns=["Status"]).head(4).assign(applicant_id=[_hashed(trained), "x", _hashed(trained), "y"])
    log = PredictionLog(root / "data/predictions")
    log.submit("r1", "1", served, pd.DataFrame({"prediction": ["good"] * 4}), logged_columns=list(served.columns[:-1]))
    log.close()

    branched = run_mlgate(
        ["forget", "--id", trained, "--retrain", "--prediction-log", "data/predictions", "--reason", "ticket 42"],
        root,
        env,
    )
    assert branched.returncode == 0, branched.stdout + branched.stderr
    branch = re.search(r"branch (erasure/\d{8}T\d{6}): ", branched.stdout).group(1)
    assert "gate PASSED (v2)" in branched.stdout and "2 logged row(s) purged" in branched.stdout
    assert pd.read_parquet(next((root / "data/predictions").glob("*.parquet")))["row"].tolist() == [1, 3]
    shown = subprocess.run(["git", "show", f"{branch}:{source.relative_to(root)}"], cwd=root, capture_output=True)
    in_branch = pd.read_csv(io.BytesIO(gzip.decompress(shown.stdout)))
    pd.testing.assert_frame_equal(in_branch, frame[applicants != trained].reset_index(drop=True))
    pd.testing.assert_frame_equal(pd.read_csv(source), frame)  # this checkout's source waits for the merge
    log_lines = subprocess.run(["git", "log", "--format=%s", branch], cwd=root, capture_output=True, text=True).stdout
    assert "Gate verdict for the retraining" in log_lines and trained not in log_lines

    # v2, trained on the branch, never saw the applicant; an applicant in both versions' splits is found in both
    assert _versions(run_mlgate(["forget", "--id", trained], root, env)) == {"v1"}
    spec = config.build(DataSpec, yaml.safe_load((root / "params.yaml").read_text())["data"], "data")
    raw = spec.contract.personal.apply(in_branch, KEY.encode())
    second = split(raw, spec, SplitParams(0.2, 0.2), seed=42).ids
    in_second = dict(zip(second["id"], second["part"], strict=True))
    learnt = {"train", "test"}
    kept = next(a for a in applicants if part_of[_hashed(a)] in learnt and in_second.get(_hashed(a)) in learnt)
    assert _versions(run_mlgate(["forget", "--id", kept], root, env)) == {"v1", "v2"}

    removed = run_mlgate(["forget", "--id", trained, "--remove-from-source"], root, env)
    assert removed.returncode == 0 and "1 row(s) removed" in removed.stdout, removed.stdout + removed.stderr
    pd.testing.assert_frame_equal(pd.read_csv(source), in_branch)

    ledger = (root / "registry/ledger.jsonl").read_text()
    assert trained not in ledger and _hashed(trained) not in ledger  # only a digest of the hash
    erasures = [json.loads(line) for line in ledger.splitlines() if '"erasure"' in line]
    assert len(erasures) == 8  # every request, whatever it found
    asked = next(e for e in erasures if e["reason"] == "ticket 42")
    assert asked["versions"] == [{"version": 1, "parts": ["train"]}] and asked["retraining_branch"] == branch
    assert asked["source_rows_removed"] == 1 and asked["prediction_log_rows_purged"] == 2
    history = run_mlgate(["history"], root, env)
    assert history.returncode == 0, history.stdout + history.stderr
    assert history.stdout.count("erasure  applicant_id") == 8
