"""gating.shadow: the shadow version against production on paired live rows (compare), the rule's
reasons to wait (judge), the rule in params.yaml and in the promotion report. Pure: no tracking."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest

from mlgate import config
from mlgate.config import ConfigError
from mlgate.errors import StageError
from mlgate.gating import shadow
from mlgate.gating.policy import GatePolicy
from mlgate.gating.shadow import ShadowEvidence, ShadowRule
from mlgate.modelling.task import Binary, Clustering, Multiclass, Regression
from mlgate.reports.promotion import markdown as promotion_markdown
from tests.factories import POLICY, SHADOW_EVIDENCE, gate_report

NOW = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
BINARY = Binary(positive_class="Yes")


def _log(outputs: dict, request_ids=None, rows=None) -> pd.DataFrame:
    n = len(next(iter(outputs.values())))
    return pd.DataFrame(
        {
            "request_id": request_ids if request_ids is not None else [f"r{i // 10}" for i in range(n)],
            "row": rows if rows is not None else [i % 10 for i in range(n)],
            "timestamp": pd.date_range("2026-03-01", periods=n, freq="min", tz="UTC"),
            **{f"output_{name}": values for name, values in outputs.items()},
        }
    )


def _compare(served, shadowed, labels=None, task=BINARY, metric="roc_auc", target="churn", **kwargs):
    return shadow.compare(
        served, shadowed, labels, task, metric, target, served_version=3, shadow_version=4, now=NOW, **kwargs
    )


# --- compare ---------------------------------------------------------------------------------------


def test_classification_agreement_is_the_share_of_paired_rows_with_the_same_label():
    served = _log({"prediction": ["Yes", "No", "No", "Yes", "No"], "probability": [0.9, 0.1, 0.2, 0.8, 0.3]})
    shadowed = _log({"prediction": ["Yes", "No", "Yes", "Yes"], "probability": [0.7, 0.2, 0.6, 0.9]})

    evidence = _compare(served, shadowed)

    assert evidence.paired_rows == 4  # the fifth served row has no shadow row
    assert evidence.agreement == 0.75
    assert (evidence.shadow_version, evidence.served_version) == (4, 3)
    assert evidence.labelled_rows == 0 and evidence.change is None and evidence.interval is None
    assert evidence.window_from.startswith("2026-03-01T00:00") and evidence.generated_at == NOW.isoformat()


def test_rows_pair_on_request_and_row_whatever_their_order():
    served = _log({"prediction": ["Yes", "No"], "probability": [0.9, 0.1]}, ["a", "b"], [0, 0])
    shadowed = _log({"prediction": ["No", "Yes"], "probability": [0.1, 0.9]}, ["b", "a"], [0, 0])

    assert _compare(served, shadowed).agreement == 1.0


def test_multiclass_agreement_compares_classes():
    task = Multiclass(classes=("a", "b", "c"))
    probabilities = {f"probability_{c}": [1 / 3] * 3 for c in "abc"}
    served = _log({"prediction": ["a", "b", "c"], **probabilities})
    shadowed = _log({"prediction": ["a", "c", "c"], **probabilities})

    assert _compare(served, shadowed, task=task, metric="accuracy").agreement == pytest.approx(2 / 3, abs=1e-6)


def test_regression_predictions_agree_within_five_percent_of_the_served_one():
    assert shadow.REGRESSION_AGREEMENT_TOLERANCE == 0.05
    served = _log({"prediction": [100.0, 100.0, -200.0, 0.0]})
    shadowed = _log({"prediction": [104.0, 106.0, -195.0, 0.0]})

    evidence = _compare(served, shadowed, task=Regression(), metric="rmse", target="spend")

    assert evidence.agreement == 0.75  # 106 is 6% off


def test_clustering_has_no_agreement_and_no_metric():
    served = _log({"cluster": [0, 1, 1], "membership": [0.9, 0.8, 0.7]})
    shadowed = _log({"cluster": [1, 0, 0], "membership": [0.9, 0.8, 0.7]})  # the same groups, other numbers

    evidence = _compare(served, shadowed, task=Clustering(), metric="silhouette", target=None)

    assert evidence.paired_rows == 3 and evidence.agreement is None and evidence.labelled_rows == 0


def test_no_paired_rows_is_no_evidence():
    served = _log({"prediction": ["Yes"], "probability": [0.9]}, ["a"], [0])
    shadowed = _log({"prediction": ["Yes"], "probability": [0.9]}, ["b"], [0])

    assert _compare(served, shadowed) is None
    assert _compare(served, shadowed.iloc[0:0]) is None


def _labelled_pair(rows: int = 400, seed: int = 1):
    """Served and shadow probabilities of the same rows: the shadow is far less noisy."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, rows)
    sharp = np.clip(0.5 + (y - 0.5) * 0.6 + rng.normal(0, 0.15, rows), 0, 1)
    noisy = np.clip(0.5 + (y - 0.5) * 0.2 + rng.normal(0, 0.3, rows), 0, 1)

    def log(p):
        return _log({"prediction": np.where(p >= 0.5, "Yes", "No"), "probability": p})

    labels = log(sharp)[["request_id", "row"]].assign(churn=np.where(y == 1, "Yes", "No"))
    return log(noisy), log(sharp), labels


def test_a_better_shadow_has_a_paired_interval_above_zero_and_a_worse_one_below():
    noisy, sharp, labels = _labelled_pair()

    better = _compare(noisy, sharp, labels, resamples=200)
    worse = _compare(sharp, noisy, labels, resamples=200)

    assert better.labelled_rows == 400 and better.shadow_metric > better.served_metric
    assert better.change == pytest.approx(better.shadow_metric - better.served_metric, abs=1e-6)
    assert better.interval[0] > 0 and worse.interval[1] < 0
    assert worse.change == pytest.approx(-better.change, abs=1e-6)


def test_the_change_follows_the_metric_direction():
    served = _log({"prediction": [10.0, 20.0, 30.0, 40.0] * 10})
    shadowed = _log({"prediction": [11.0, 21.0, 31.0, 41.0] * 10})
    labels = served[["request_id", "row"]].assign(spend=[11.0, 21.0, 31.0, 41.0] * 10)

    evidence = _compare(served, shadowed, labels, task=Regression(), metric="rmse", target="spend", resamples=50)

    assert evidence.served_metric == pytest.approx(1.0) and evidence.shadow_metric == 0.0
    assert evidence.change == pytest.approx(1.0) and evidence.interval[0] > 0  # a lower rmse is better


def test_a_metric_undefined_on_the_labelled_rows_is_not_measured():
    served = _log({"prediction": ["Yes", "No"], "probability": [0.9, 0.2]})
    labels = served[["request_id", "row"]].assign(churn=["Yes", "Yes"])  # one class: AUC is undefined

    evidence = _compare(served, served, labels)

    assert evidence.labelled_rows == 2 and evidence.served_metric is None and evidence.interval is None


def test_evidence_round_trips_through_its_tag_and_a_malformed_tag_names_it():
    noisy, sharp, labels = _labelled_pair(rows=100)
    evidence = _compare(noisy, sharp, labels, resamples=50)

    assert ShadowEvidence.from_tag(evidence.to_tag()) == evidence
    assert " " not in evidence.to_tag()
    for bad in ("{not json", "[1]", '{"shadow_version": 4}'):
        with pytest.raises(StageError, match=shadow.EVIDENCE_TAG):
            ShadowEvidence.from_tag(bad)


# --- judge -----------------------------------------------------------------------------------------

GOOD = SHADOW_EVIDENCE
RULE = ShadowRule(required=True, min_rows=500, min_labelled_rows=200, min_agreement=0.9, max_metric_drop=0.005)


def test_good_evidence_against_the_current_champion_passes():
    assert shadow.judge(RULE, GOOD, 3, NOW, candidate_version=4) == []


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"paired_rows": 120}, "120 paired shadow rows < 500 required (gate.shadow.min_rows)"),
        ({"labelled_rows": 50}, "50 labelled paired rows < 200 required (gate.shadow.min_labelled_rows)"),
        ({"agreement": 0.85}, "agrees with production on 85.0% of paired rows < 90.0% required"),
        ({"interval": (-0.02, 0.01)}, "the CI starts below -0.005 (gate.shadow.max_metric_drop 0.005)"),
        ({"served_version": 2}, "compares v4 with v2, but production now holds v3"),
        ({"shadow_version": 5}, "is about v5, not v4"),
        (
            {"generated_at": "2026-02-25T12:00:00+00:00"},
            "is 96.0 h old (measured 2026-02-25T12:00:00+00:00) > 72 h allowed",
        ),
        ({"interval": None, "change": None}, "could not be measured"),
    ],
)
def test_each_shortfall_is_a_reason_with_its_value_and_limit(changes, expected):
    reasons = shadow.judge(RULE, dataclasses.replace(GOOD, **changes), 3, NOW, candidate_version=4)

    assert len(reasons) == 1 and expected in reasons[0], reasons


def test_an_interval_exactly_at_the_allowed_drop_passes():
    assert shadow.judge(RULE, dataclasses.replace(GOOD, interval=(-0.005, 0.01)), 3, NOW) == []


def test_no_evidence_waits_unless_nothing_holds_production():
    assert "no live shadow evidence" in shadow.judge(RULE, None, 3, NOW)[0]
    assert shadow.judge(RULE, None, None, NOW) == []  # the first promotion: no traffic to shadow yet


def test_stale_evidence_waits():
    rule = dataclasses.replace(RULE, max_age_hours=0.25)

    assert shadow.judge(rule, GOOD, 3, NOW) == [
        "the shadow evidence is 0.5 h old (measured 2026-03-01T11:30:00+00:00) > 0.25 h allowed "
        "(gate.shadow.max_age_hours): run `mlgate monitor` again"
    ]


def test_without_labels_required_the_metric_is_judged_only_when_measured():
    rule = dataclasses.replace(RULE, min_labelled_rows=0)
    unlabelled = dataclasses.replace(GOOD, labelled_rows=0, served_metric=None, shadow_metric=None, change=None)

    assert shadow.judge(rule, dataclasses.replace(unlabelled, interval=None), 3, NOW) == []


def test_clustering_evidence_is_judged_on_rows_and_age_only():
    clusters = dataclasses.replace(
        GOOD, metric="silhouette", agreement=None, labelled_rows=0, change=None, interval=None
    )

    assert shadow.judge(dataclasses.replace(RULE, min_agreement=None), clusters, 3, NOW) == []
    assert "set gate.shadow.min_agreement to null" in shadow.judge(RULE, clusters, 3, NOW)[0]


# --- the rule in params.yaml and in the promotion report -------------------------------------------


def test_the_gate_section_parses_a_shadow_mapping():
    policy = config.load(
        GatePolicy, "gate", {"gate": {"metric": "roc_auc", "shadow": {"required": True, "min_rows": 50}}}
    )

    assert policy.shadow == ShadowRule(required=True, min_rows=50)
    assert config.load(GatePolicy, "gate", {"gate": {"metric": "roc_auc"}}).shadow == ShadowRule()


@pytest.mark.parametrize(
    "shadow_section, named",
    [
        ({"min_rows": 0}, "gate.shadow.min_rows"),
        ({"min_labelled_rows": -1}, "gate.shadow.min_labelled_rows"),
        ({"min_agreement": 1.5}, "gate.shadow.min_agreement"),
        ({"max_metric_drop": -0.1}, "gate.shadow.max_metric_drop"),
        ({"max_age_hours": 0}, "gate.shadow.max_age_hours"),
        ({"min_row": 5}, "gate.shadow"),
    ],
)
def test_a_bad_shadow_rule_names_its_key(shadow_section, named):
    with pytest.raises(ConfigError, match=named):
        config.load(GatePolicy, "gate", {"gate": {"metric": "roc_auc", "shadow": shadow_section}})


def test_the_promotion_report_states_a_required_shadow_rule_and_is_unchanged_without_one():
    plain = promotion_markdown(gate_report())
    required = promotion_markdown(gate_report(policy=dataclasses.replace(POLICY, shadow=RULE)))

    assert "shadow" not in plain
    extra = [line for line in required.splitlines() if line not in plain.splitlines()]
    assert len(extra) == 1 and extra[0].startswith("Live shadow evidence required (`gate.shadow`)")
    assert "at least 500 paired rows (at least 200 of them labelled), agreement at least 0.9" in extra[0]
    assert required.replace(extra[0] + "\n\n", "") == plain


def test_gate_json_holds_the_shadow_rule_only_when_it_is_set():
    from mlgate.gating.report import GateReport

    plain = gate_report()
    required = gate_report(policy=dataclasses.replace(POLICY, shadow=RULE))

    assert "shadow" not in plain.to_json()["policy"]
    assert GateReport.from_json(json.loads(json.dumps(required.to_json()))).policy.shadow == RULE
