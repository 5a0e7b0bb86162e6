"""recid (released prisoners: did they return?) through the pipeline with its fairness rule: the bundled
data passes on `black` (a sensitive column, never a feature) with age reported; then the same data
made unfair (the label follows race, and a new feature carries race) is rejected naming the rule."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.helpers import copy_project, run_mlgate, run_stages

pytestmark = pytest.mark.slow

BUDGET = ["experiment=recid", "search.n_trials=4", "search.cv_folds=2", "gate.metric_floor=0.55"]


def _fairness(root) -> dict:
    (check,) = [c for c in json.loads((root / "reports/gate.json").read_text())["checks"] if c["name"] == "fairness"]
    return check


def test_recid_passes_its_fairness_rule_and_a_proxy_for_race_is_rejected_naming_it(tmp_path):
    root = copy_project(tmp_path / "project", BUDGET)

    fair = run_stages(root)

    assert fair.returncode == 0, fair.stdout + fair.stderr
    assert "PASSED → alias 'staging'" in fair.stdout and "pass  fairness" in fair.stdout
    check = _fairness(root)
    assert [(c["column"], c["judged"]) for c in check["evidence"]] == [("black", True), ("age", False)]
    black = {d["name"]: d for d in check["evidence"][0]["disparities"]}
    assert black["demographic_parity_difference"]["verdict"] == "pass"
    low, high = black["demographic_parity_difference"]["interval"]
    assert low <= black["demographic_parity_difference"]["candidate"] <= high
    features = json.loads((root / "models/model/artifacts/features.json").read_text())
    assert "black" not in features["order"] and "age" in features["order"]
    assert "## Fairness" in (root / "reports/promotion.md").read_text()
    assert "plots/fairness_black.png" in (root / "reports/model_card.md").read_text()
    assert (root / "reports/plots/fairness_age.png").stat().st_size > 1000

    # the same people, with a label that follows race and a district that carries it (95% agreement)
    source = root / "data/source/recid.csv.gz"
    rows = pd.read_csv(source)
    rng = np.random.default_rng(0)
    black = rows["black"].to_numpy()
    district = np.where(rng.random(len(rows)) < 0.95, black, 1 - black)
    returned = np.where(rng.random(len(rows)) < np.where(black == 1, 0.75, 0.2), "yes", "no")
    rows.assign(district=district, returned=returned).to_csv(source, index=False)
    conf = root / "conf/data/recid.yaml"
    conf.write_text(conf.read_text().replace("  columns:\n", "  columns:\n    district: {type: integer}\n", 1))
    assert run_mlgate(["params", *BUDGET], root).returncode == 0

    unfair = run_stages(root)

    assert unfair.returncode == 0, unfair.stdout + unfair.stderr
    assert "REJECTED, no alias" in unfair.stdout and "FAIL  fairness" in unfair.stdout
    check = _fairness(root)
    assert check["verdict"] == "fail" and "black: demographic parity difference" in check["detail"]
    black = {d["name"]: d for d in check["evidence"][0]["disparities"]}
    assert black["demographic_parity_difference"]["candidate"] > 0.3
    assert "| fail |" in (root / "reports/promotion.md").read_text()
