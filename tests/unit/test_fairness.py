"""The gate's fairness rule: group rates and disparities as Fairlearn defines them, their bootstrap
intervals, the verdicts, the policy's refusals and the reports' tables."""

import json
from dataclasses import asdict, replace

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import (
    demographic_parity_difference,
    demographic_parity_ratio,
    equalized_odds_difference,
    equalized_odds_ratio,
)

from mlgate import config
from mlgate.errors import StageError
from mlgate.gating import fairness
from mlgate.gating.fairness import FairnessRule
from mlgate.gating.policy import GatePolicy, check_fits
from mlgate.gating.report import GateReport
from mlgate.modelling.data import DataSpec, conform
from mlgate.reports.model_card import render as render_card
from mlgate.reports.promotion import markdown as promotion_markdown
from tests.factories import POLICY, gate_report


def _decisions(rows: int = 3000, bias: float = 0.3, seed: int = 0):
    """Groups a (half), b (30%), c (20%); a is chosen ``bias`` more often than the others."""
    rng = np.random.default_rng(seed)
    groups = rng.choice(["a", "b", "c"], rows, p=[0.5, 0.3, 0.2]).astype(object)
    y = rng.integers(0, 2, rows)
    decided = (rng.random(rows) < np.where(groups == "a", 0.3 + bias, 0.3)).astype(int)
    return y, decided, groups


def test_disparities_are_fairlearns_with_an_interval_around_them():
    y, decided, groups = _decisions()

    found = fairness.disparities(y, decided, groups, ["a", "b", "c"], resamples=500, seed=0)

    expected = {
        "demographic_parity_difference": demographic_parity_difference,
        "demographic_parity_ratio": demographic_parity_ratio,
        "equalized_odds_difference": equalized_odds_difference,
        "equalized_odds_ratio": equalized_odds_ratio,
    }
    for name, function in expected.items():
        estimate, (low, high) = found[name]
        assert estimate == pytest.approx(function(y, decided, sensitive_features=groups), abs=1e-6)
        assert low < estimate < high and high - low < 0.15


def test_the_interval_covers_the_true_difference_at_about_the_stated_rate():
    """Groups chosen at 0.5 and 0.4: the demographic parity difference is 0.1 in truth."""
    covered = 0
    for seed in range(60):
        rng = np.random.default_rng(seed)
        groups = rng.choice(["a", "b"], 800).astype(object)
        decided = (rng.random(800) < np.where(groups == "a", 0.5, 0.4)).astype(int)
        _, (low, high) = fairness.disparities(
            rng.integers(0, 2, 800), decided, groups, ["a", "b"], resamples=400, seed=seed
        )["demographic_parity_difference"]
        covered += low <= 0.1 <= high
    assert 51 <= covered <= 60  # 95% of 60 is 57


def test_small_groups_are_reported_not_judged_and_one_judged_group_measures_nothing():
    y, decided, groups = _decisions(rows=400)
    table = fairness.group_rates("roc_auc", y, decided, decided.astype(float), groups, min_rows=100)

    assert [(g.group, g.judged) for g in table] == [("a", True), ("b", True), ("c", False)]
    assert table[0].selection_rate == pytest.approx(decided[groups == "a"].mean(), abs=1e-6)
    alone = fairness.disparities(y, decided, groups, ["a"], resamples=100, seed=0)
    assert alone["demographic_parity_difference"] == (None, None)


def test_numeric_groups_are_binned_by_their_edges():
    groups = fairness.groups_of(pd.Series([18, 25, 30.0, 35, 70, None]), [25, 35])

    assert groups.tolist() == ["<25", "25–35", "25–35", "≥35", "≥35", "(missing)"]
    assert fairness.groups_of(pd.Series([0.0, 1.0, None]), None).tolist() == ["0", "1", "(missing)"]


def _evidence(bias: float, champion_bias: float | None = None):
    y, decided, groups = _decisions(bias=bias)
    frame = pd.DataFrame({"group": groups})
    champion = None
    if champion_bias is not None:
        champion = (_decisions(bias=champion_bias)[1], None)
    rule = FairnessRule(sensitive={"group": None}, max_demographic_parity_difference=0.1)
    return rule, fairness.evidence(rule, "accuracy", frame, y, (decided, None), champion, resamples=300, seed=0)


def test_a_biased_candidate_fails_naming_column_disparity_and_limit():
    rule, found = _evidence(bias=0.3, champion_bias=0.0)

    marked, failures = fairness.judged(rule, found)

    (dp,) = [d for d in marked[0].disparities if d.name == "demographic_parity_difference"]
    assert dp.verdict == "fail" and dp.limit == 0.1 and dp.champion < 0.1 < dp.candidate
    assert failures == [f"group: demographic parity difference (selection rates) {dp.candidate:.4f} (limit 0.1)"]
    assert {d.verdict for d in marked[0].disparities if d.name != "demographic_parity_difference"} == {"reported"}


def test_under_judge_on_interval_an_estimate_within_the_limit_can_still_fail():
    rule, found = _evidence(bias=0.07)

    on_estimate = fairness.judged(rule, found)[1]
    on_interval = fairness.judged(replace(rule, judge_on="interval"), found)[1]

    assert on_estimate == [] and len(on_interval) == 1 and "95% CI [" in on_interval[0]


def test_a_reported_column_is_shown_and_never_fails():
    y, decided, groups = _decisions(bias=0.4)
    rule = FairnessRule(reported={"group": None}, max_demographic_parity_difference=0.01)
    found = fairness.evidence(
        rule, "accuracy", pd.DataFrame({"group": groups}), y, (decided, None), None, resamples=100, seed=0
    )

    marked, failures = fairness.judged(rule, found)

    assert failures == [] and not marked[0].judged
    assert {d.verdict for d in marked[0].disparities} == {"reported"}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"judge_on": "vibes"}, "judge_on must be one of"),
        ({"sensitive": {"age": [40, 25]}}, "bin edges must be increasing"),
        ({"sensitive": {"sex": None}, "reported": {"sex": None}}, "both judged"),
    ],
)
def test_a_rule_that_cannot_be_applied_is_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        FairnessRule(**changes)


def _spec(data_section, task: str = "binary") -> DataSpec:
    data_section["contract"]["columns"].update(
        sex={"type": "string", "role": "sensitive"},
        email={"type": "string", "pii": "direct", "handling": "drop"},
    )
    if task == "regression":
        del data_section["contract"]["columns"]["churn"]
        data_section["contract"]["columns"]["spend"] = {"type": "float"}
        data_section.update(task="regression", target="spend", positive_class=None, metric="rmse")
    return config.build(DataSpec, data_section, "data")


def test_a_sensitive_column_is_kept_in_the_data_and_is_no_feature(data_section, mixed_frame):
    spec = _spec(data_section)
    frame = mixed_frame(40).assign(sex=["f", "m"] * 20)

    assert "sex" not in spec.features and spec.sensitive == ["sex"]
    assert conform(frame, spec)["sex"].tolist() == frame["sex"].tolist()


@pytest.mark.parametrize(
    ("rule", "task", "message"),
    [
        (FairnessRule(sensitive={"sex": None}), "regression", "compares a binary classifier's decisions"),
        (FairnessRule(sensitive={"religion": None}), "binary", r"names \['religion'\]"),
        (FairnessRule(reported={"email": None}), "binary", r"names \['email'\].*dropped as personal data"),
        (FairnessRule(sensitive={"plan": [1, 2]}), "binary", r"bin edges for \['plan'\], which are not numeric"),
    ],
)
def test_a_fairness_rule_the_dataset_cannot_answer_is_refused_before_registering(data_section, rule, task, message):
    spec = _spec(data_section, task)
    policy = replace(POLICY, metric=spec.metric, fairness=rule)

    with pytest.raises(StageError, match=message):
        check_fits(policy, spec)


def test_the_reports_carry_the_group_tables_and_the_verdict_and_read_back():
    rule, found = _evidence(bias=0.3, champion_bias=0.0)
    policy = replace(POLICY, fairness=rule)

    report = gate_report(policy=policy, fairness=found)

    check = report.check("fairness")
    assert not report.passed and check.verdict == "fail" and "group: demographic parity difference" in check.detail
    card, summary = render_card(report), promotion_markdown(report)
    for text in (card, summary):
        assert "## Fairness" in text and "| group | rows | judged | selection rate | TPR | FPR | roc_auc |" in text
        assert "| demographic parity difference |" in text and "| fail |" in text
    assert GateReport.from_json(json.loads(json.dumps(report.to_json()))) == report
    assert asdict(GatePolicy(metric="roc_auc"))["fairness"]["sensitive"] == {}
