import json
from dataclasses import asdict, replace
from pathlib import Path

import pandas as pd
import pytest

from mlgate.gating.evidence import Comparison, Evidence, Measurements, SliceScore
from mlgate.gating.policy import Check, CurrentBatchRule, FeatureDrift, GatePolicy, ScoredRows, SliceLimits, decide
from mlgate.gating.report import BatchComparison, ChampionVersion, GateReport, Plot
from mlgate.records import DriftSummary
from mlgate.reports.promotion import markdown as promotion_markdown
from tests.factories import ON_TEST, drift, gate_report
from tests.helpers import loaded_by_importing

NO_DRIFT = drift(drift_share=0.1, max_drift_share=0.3, drifted_columns=["tenure"])
ONLY_VALIDATION = GatePolicy(metric="roc_auc", require_validation=True, require_no_drift=False)
ONLY_DRIFT = GatePolicy(metric="roc_auc", require_validation=False, require_no_drift=True)


def _floor(value: float) -> GatePolicy:
    return GatePolicy(metric="roc_auc", require_validation=False, require_no_drift=False, metric_floor=value)


def _regression_limit(value: float) -> GatePolicy:
    return GatePolicy(metric="roc_auc", require_validation=False, require_no_drift=False, max_regression=value)


def _decide(
    policy: GatePolicy,
    *,
    metric: str = "roc_auc",
    candidate_score: float = 0.85,
    validation_passed: bool = True,
    drift: DriftSummary = NO_DRIFT,
    champion_score: float | None = None,
    champion_error: str | None = None,
    **evidence,
):
    return decide(
        policy,
        Evidence(
            metric=metric,
            validation_passed=validation_passed,
            drift=drift,
            candidate_score=candidate_score,
            champion_score=champion_score,
            champion_error=champion_error,
            **evidence,
        ),
    )


def _only_check(decision):
    [check] = decision.checks
    return check


@pytest.mark.parametrize("validation_passed", [True, False])
def test_validation_check_follows_the_contract(validation_passed):
    decision = _decide(ONLY_VALIDATION, validation_passed=validation_passed)

    assert _only_check(decision).name == "validation"
    assert decision.passed is validation_passed


@pytest.mark.parametrize("share, passed", [(0.1, True), (0.3, True), (0.31, False)])
def test_drift_check_fails_only_above_the_limit(share, passed):
    decision = _decide(ONLY_DRIFT, drift=replace(NO_DRIFT, drift_share=share))

    check = _only_check(decision)
    assert (check.name, check.passed, check.observed, check.limit) == ("drift", passed, share, 0.3)
    assert "tenure" in check.detail


@pytest.mark.parametrize(
    "metric, candidate_score, floor, passed",
    [
        ("roc_auc", 0.85, 0.80, True),
        ("roc_auc", 0.80, 0.80, True),
        ("roc_auc", 0.75, 0.80, False),
        ("rmse", 4.0, 5.0, True),
        ("rmse", 6.0, 5.0, False),
    ],
)
def test_metric_floor_respects_the_metric_direction(metric, candidate_score, floor, passed):
    decision = _decide(_floor(floor), metric=metric, candidate_score=candidate_score)

    check = _only_check(decision)
    assert (check.name, check.passed) == ("metric_floor", passed)
    assert decision.passed is passed


@pytest.mark.parametrize(
    "metric, candidate_score, champion_score, passed",
    [
        ("roc_auc", 0.86, 0.85, True),
        ("roc_auc", 0.848, 0.85, True),
        ("roc_auc", 0.84, 0.85, False),
        ("rmse", 4.9, 5.0, True),
        ("rmse", 5.004, 5.0, True),
        ("rmse", 5.1, 5.0, False),
    ],
)
def test_champion_check_allows_a_small_regression_only(metric, candidate_score, champion_score, passed):
    decision = _decide(
        _regression_limit(0.005), metric=metric, candidate_score=candidate_score, champion_score=champion_score
    )

    check = _only_check(decision)
    assert (check.name, check.passed) == ("champion", passed)
    assert check.observed == pytest.approx((candidate_score - champion_score) * (1 if metric == "roc_auc" else -1))


def test_champion_check_allows_a_regression_of_exactly_the_tolerance():
    decision = _decide(_regression_limit(0.005), candidate_score=0.845, champion_score=0.85)

    assert _only_check(decision).passed


def test_champion_check_passes_when_there_is_no_champion():
    check = _only_check(_decide(_regression_limit(0.005), champion_score=None))

    assert check.passed
    assert "no 'production' model yet" in check.detail


def test_champion_error_fails_the_check_with_its_message():
    error = "could not score production v3 on this test set: missing column"

    decision = _decide(_regression_limit(0.005), champion_score=0.9, champion_error=error)

    assert not decision.passed
    assert decision.reasons == [error]


def test_decision_lists_every_check_and_every_reason():
    policy = GatePolicy(
        metric="roc_auc", require_validation=True, require_no_drift=True, metric_floor=0.9, max_regression=0.005
    )

    decision = _decide(policy, validation_passed=False, candidate_score=0.85, champion_score=0.80)

    assert [c.name for c in decision.checks] == ["validation", "drift", "metric_floor", "champion"]
    assert [c.name for c in decision.checks if not c.passed] == ["validation", "metric_floor"]
    assert len(decision.reasons) == 2
    assert not decision.passed


def test_empty_policy_passes():
    policy = GatePolicy(metric="roc_auc", require_validation=False, require_no_drift=False)

    assert _decide(policy, validation_passed=False).passed


PRODUCTION_V3 = ChampionVersion(3, "def", {"roc_auc": 0.84, "f1": 0.65}, None, "http://ui/models/telco_churn/3")


def test_promotion_markdown_states_a_passed_verdict_and_each_check():
    markdown = promotion_markdown(gate_report())

    assert "# Model promotion: `telco_churn` version 4" in markdown
    assert "✅ **PASSED**: granted `staging`" in markdown
    assert "Reasons:" not in markdown
    for name in ("validation", "drift", "metric_floor", "champion"):
        assert f"| {name} | " in markdown
    assert "sha256 `feedfacecafe`" in markdown
    assert "`mlgate promote --alias production --version 4`" in markdown


def test_promotion_markdown_compares_with_the_champion():
    markdown = promotion_markdown(gate_report(gain_interval=None))

    assert "| metric | candidate v4 | production v3 | difference | 95% CI of the gain |" in markdown
    assert "| roc_auc | 0.8500 | 0.8400 | +0.0100 |  |" in markdown
    assert "| f1 | 0.6000 | 0.6500 | -0.0500 |  |" in markdown
    assert "- Production version: http://ui/models/telco_churn/3" in markdown


def test_promotion_markdown_without_a_champion_has_no_difference_column():
    markdown = promotion_markdown(
        gate_report(champion=False, passed=False, reasons=("test roc_auc 0.7500 < floor 0.8",))
    )

    assert "❌ **REJECTED**: not granted `staging`" in markdown
    assert "- test roc_auc 0.7500 < floor 0.8" in markdown
    assert "| metric | candidate v4 |\n" in markdown
    assert "difference" not in markdown.split("## Current batch")[0]
    assert "No production model to compare with." in markdown


def test_promotion_markdown_shows_a_champion_that_could_not_be_scored():
    champion = replace(PRODUCTION_V3, metrics=None, error="could not score production v3")

    markdown = promotion_markdown(replace(gate_report(champion=False, passed=False), champion=champion))

    assert "Production: could not score production v3" in markdown
    assert "difference" not in markdown


def test_promotion_markdown_lists_the_most_drifted_columns_first():
    markdown = promotion_markdown(gate_report())

    assert "2 of 19 columns drifted (share 0.11, limit 0.30)" in markdown
    assert markdown.index("| area | K-S p_value") < markdown.index("| tenure | Wasserstein")
    assert markdown.index("| tenure | Wasserstein") < markdown.index("| plan | Jensen-Shannon")


def test_promotion_markdown_shows_the_interval_on_the_gate_metric():
    markdown = promotion_markdown(gate_report())

    assert "| roc_auc | 0.8500 | 0.8400 | +0.0100 | [-0.0020, +0.0210] |" in markdown
    assert "paired bootstrap over test rows of the roc_auc gain" in markdown


@pytest.mark.parametrize("interval, passed", [((0.001, 0.02), True), ((-0.001, 0.02), False), (None, False)])
def test_significant_gain_needs_the_interval_above_zero(interval, passed):
    policy = GatePolicy(
        metric="roc_auc", require_validation=False, require_no_drift=False, require_significant_gain=True
    )

    check = _only_check(
        _decide(policy, candidate_score=0.86, champion_score=0.85, test=Comparison(gain_interval=interval))
    )

    assert (check.name, check.passed) == ("significant_gain", passed)


def test_significant_gain_is_not_required_without_a_champion():
    policy = GatePolicy(
        metric="roc_auc", require_validation=False, require_no_drift=False, require_significant_gain=True
    )

    assert _decide(policy).checks == ()


def test_champion_detail_carries_the_interval():
    check = _only_check(
        _decide(
            _regression_limit(0.01),
            candidate_score=0.86,
            champion_score=0.85,
            test=Comparison(gain_interval=(-0.004, 0.023)),
        )
    )

    assert "gain +0.0100, 95% CI [-0.0040, +0.0230]" in check.detail


# --- the optional rules ------------------------------------------------------------------------

COLUMNS = {
    "tenure": {"method": "Wasserstein distance (normed)", "score": 0.05, "threshold": 0.1, "drifted": False},
    "monthly_charges": {"method": "Wasserstein distance (normed)", "score": 0.3, "threshold": 0.1, "drifted": True},
    "area": {"method": "K-S p_value", "score": 0.0004, "threshold": 0.05, "drifted": True},
}
DRIFT_COLUMNS = drift(drift_share=0.1, max_drift_share=0.3, drifted_columns=["tenure"], columns=COLUMNS)


def _policy(**rules) -> GatePolicy:
    return GatePolicy(metric="roc_auc", require_validation=False, require_no_drift=False, **rules)


def _judge(policy: GatePolicy, *, metric: str = "roc_auc", drift: DriftSummary = DRIFT_COLUMNS, slices=(), **measured):
    return _decide(
        policy, metric=metric, drift=drift, test=Comparison(slices=slices), measured=Measurements(**measured)
    )


def test_critical_features_fail_naming_only_the_column_beyond_its_limit():
    decision = _judge(_policy(critical_features={"tenure": 0.1, "monthly_charges": 0.1}))

    check = _only_check(decision)
    assert (check.name, check.passed) == ("critical_features", False)
    assert check.observed == {"tenure": 0.05, "monthly_charges": 0.3}
    assert check.limit == {"tenure": 0.1, "monthly_charges": 0.1}
    assert check.detail == "critical feature drifted: monthly_charges 0.3000 > 0.1 (Wasserstein distance (normed))"
    assert check.evidence["tenure"] == FeatureDrift("Wasserstein distance (normed)", 0.05, 0.1, drifted=False)


def test_critical_features_pass_within_their_own_limits_even_when_evidently_flags_the_column():
    check = _only_check(_judge(_policy(critical_features={"tenure": 0.1, "monthly_charges": 0.5})))

    assert check.passed
    assert check.detail.startswith("no critical feature drifted: tenure 0.0500 (limit 0.1), monthly_charges")


def test_a_critical_feature_without_a_limit_takes_the_drift_stage_threshold():
    check = _only_check(_judge(_policy(critical_features={"monthly_charges": None})))

    assert not check.passed and check.limit == {"monthly_charges": 0.1}


@pytest.mark.parametrize("limit, passed", [(0.001, False), (0.0001, True)])
def test_a_p_value_critical_feature_drifts_below_its_limit(limit, passed):
    check = _only_check(_judge(_policy(critical_features={"area": limit})))

    assert check.passed is passed


def test_a_critical_feature_missing_from_the_drift_report_fails():
    check = _only_check(_judge(_policy(critical_features={"tenure": 0.1, "zip_code": 0.1})))

    assert not check.passed and "zip_code: not in the drift report" in check.detail


def test_critical_features_fail_while_the_drift_share_passes():
    policy = GatePolicy(
        metric="roc_auc", require_validation=False, require_no_drift=True, critical_features={"monthly_charges": 0.1}
    )

    decision = _judge(policy)

    assert [(c.name, c.passed) for c in decision.checks] == [("drift", True), ("critical_features", False)]


# Each ceiling rule: (policy field, limit, check name, measurement, values within the limit, values above it).
CEILINGS = [
    ("max_prediction_drift", 0.2, "prediction_drift", "prediction_drift", (0.05, 0.2), (0.31,)),
    ("max_target_drift", 0.1, "target_drift", "target_drift", (0.02,), (0.15,)),
    ("max_calibration_error", 0.1, "calibration", "calibration_error", (0.04,), (0.12,)),
    ("max_brier", 0.18, "brier", "brier", (0.13,), (0.2,)),
    ("max_model_size_mb", 200.0, "model_size", "model_size_mb", (12.5,), (250.0,)),
    ("max_latency_ms", 100.0, "latency", "latency_ms", (8.0,), (150.0,)),
]


@pytest.mark.parametrize(
    "rule, limit, name, measurement, value, passed",
    [
        (rule, limit, name, measurement, value, passed)
        for rule, limit, name, measurement, within, above in CEILINGS
        for values, passed in ((within, True), (above, False))
        for value in values
    ],
)
def test_each_ceiling_rule_passes_up_to_its_limit(rule, limit, name, measurement, value, passed):
    decision = _judge(_policy(**{rule: limit}), **{measurement: value})

    check = _only_check(decision)
    assert (check.name, check.passed, check.observed, check.limit) == (name, passed, value, limit)
    assert decision.passed is passed
    assert ("≤" if passed else ">") in check.detail


@pytest.mark.parametrize(
    "rule, name",
    [
        ("max_prediction_drift", "prediction_drift"),
        ("max_calibration_error", "calibration"),
        ("max_brier", "brier"),
        ("max_model_size_mb", "model_size"),
        ("max_latency_ms", "latency"),
    ],
)
def test_a_ceiling_rule_without_its_measurement_fails(rule, name):
    check = _only_check(_judge(_policy(**{rule: 1.0})))

    assert (check.name, check.passed) == (name, False)
    assert check.detail.endswith("not measured")


def test_target_drift_is_not_judged_when_the_current_batch_has_no_labels():
    check = _only_check(_judge(_policy(max_target_drift=0.1)))

    assert (check.name, check.passed, check.observed) == ("target_drift", True, None)
    assert "no labels" in check.detail


def test_a_policy_without_the_optional_rules_ignores_their_measurements():
    decision = _judge(
        GatePolicy(metric="roc_auc"),
        prediction_drift=9.0,
        calibration_error=0.9,
        latency_ms=1e6,
        slices=(SliceScore("contract", "One year", 300, 0.1),),
    )

    assert [c.name for c in decision.checks] == ["validation", "drift"]
    assert decision.passed


CONTRACT_SLICES = (
    SliceScore("contract", "Month-to-month", 700, 0.78, 0.80),
    SliceScore("contract", "One year", 300, 0.60, 0.62),
    SliceScore("contract", "Two year", 50, 0.40, 0.90),
)


def test_a_slice_below_its_floor_fails_and_a_small_slice_is_only_reported():
    policy = _policy(slices={"contract": SliceLimits(min_metric=0.65, min_rows=100)})

    check = _only_check(_judge(policy, slices=CONTRACT_SLICES))

    assert (check.name, check.passed, check.observed, check.limit) == ("slices", False, 1, 0)
    assert check.detail == "slice(s) out of limits: contract=One year: roc_auc 0.6000 < floor 0.65"
    assert [row.verdict for row in check.evidence] == ["pass", "fail", "not judged (< 100 rows)"]


def test_a_slice_that_regresses_against_production_beyond_its_tolerance_fails():
    policy = _policy(slices={"contract": SliceLimits(max_regression=0.01, min_rows=100)})

    check = _only_check(_judge(policy, slices=CONTRACT_SLICES))

    assert not check.passed
    assert "contract=Month-to-month: gain -0.0200 over production (allowed loss 0.01)" in check.detail
    assert check.evidence[0].gain == pytest.approx(-0.02)


def test_slices_pass_within_floor_and_tolerance_and_without_a_champion():
    policy = _policy(slices={"contract": SliceLimits(min_metric=0.55, max_regression=0.05, min_rows=100)})
    no_champion = tuple(SliceScore(s.column, s.value, s.rows, s.candidate) for s in CONTRACT_SLICES)

    for scores in (CONTRACT_SLICES, no_champion):
        check = _only_check(_judge(policy, slices=scores))
        assert check.passed and check.detail == "2 of 3 slices judged, all within limits"


def test_a_slice_floor_on_rmse_is_a_ceiling():
    policy = GatePolicy(
        metric="rmse",
        require_validation=False,
        require_no_drift=False,
        slices={"cut": SliceLimits(min_metric=1000.0, min_rows=10)},
    )
    scores = (SliceScore("cut", "Ideal", 400, 900.0), SliceScore("cut", "Fair", 40, 1200.0))

    check = _only_check(_judge(policy, metric="rmse", slices=scores))

    assert not check.passed and check.detail.endswith("cut=Fair: rmse 1200.0000 > floor 1000.0")


def test_a_slice_with_one_class_and_a_slice_column_never_measured():
    policy = _policy(slices={"contract": SliceLimits(min_rows=1), "plan": SliceLimits(min_rows=1)})

    check = _only_check(_judge(policy, slices=(SliceScore("contract", "Two year", 200, None),)))

    assert check.evidence[0].verdict == "not judged (one class only)"
    assert not check.passed and check.detail == "slice(s) out of limits: plan: not measured"


def test_every_check_reports_its_verdict():
    decision = _judge(_policy(max_model_size_mb=1.0, max_latency_ms=100.0), model_size_mb=3.0, latency_ms=5.0)

    assert [c.verdict for c in decision.checks] == ["fail", "pass"]


def _full_report() -> GateReport:
    policy = GatePolicy(
        metric="roc_auc",
        require_validation=True,
        require_no_drift=True,
        critical_features={"tenure": 0.1, "monthly_charges": 0.1},
        slices={"contract": SliceLimits(min_metric=0.65, max_regression=0.05, min_rows=100)},
    )
    return gate_report(
        policy=policy,
        drift=drift(columns=COLUMNS),
        on_test=replace(ON_TEST, slices=CONTRACT_SLICES),
    )


def test_promotion_markdown_shows_the_slice_table():
    markdown = promotion_markdown(_full_report())

    assert "## Slices" in markdown
    assert "| column | value | rows | candidate v4 | production v3 | gain | verdict |" in markdown
    assert "| contract | Month-to-month | 700 | 0.7800 | 0.8000 | -0.0200 | pass |" in markdown
    assert "| contract | One year | 300 | 0.6000 | 0.6200 | -0.0200 | **FAIL** |" in markdown
    assert "| contract | Two year | 50 | 0.4000 | 0.9000 | -0.5000 | not judged (< 100 rows) |" in markdown


def test_promotion_markdown_shows_per_column_limits_in_one_cell():
    markdown = promotion_markdown(_full_report())

    assert (
        "| critical_features | **FAIL** | tenure 0.05, monthly_charges 0.3 | tenure 0.1, monthly_charges 0.1 |"
        in markdown
    )


def test_promotion_markdown_links_the_model_card():
    markdown = promotion_markdown(gate_report(champion=False, policy=GatePolicy(metric="roc_auc")))

    assert "## Slices" not in markdown
    assert "[`reports/model_card.md`](model_card.md)" in markdown
    assert "as `runs:/abc/model_card/model_card.md` (tag `mlgate.model_card`)" in markdown


def test_single_row_latency_is_the_median_of_one_row_calls_after_warm_up():
    from mlgate.gating.evidence import single_row_latency_ms

    now = [0.0]
    seen = []
    costs = iter([0.5] * 3 + [0.004, 0.001, 0.009, 0.002, 0.003])  # seconds; the warm-up calls are not counted

    def predict(rows):
        seen.append(rows["x"].tolist())
        now[0] += next(costs)

    latency = single_row_latency_ms(predict, pd.DataFrame({"x": range(4)}), calls=5, warmup=3, clock=lambda: now[0])

    assert seen == [[0], [1], [2], [3], [0], [1], [2], [3]]
    assert latency == pytest.approx(3.0)


@pytest.mark.parametrize(
    "rules, message",
    [
        ({"max_calibration_error": 0.1}, "judge probabilities; dataset 'tiny' is a regression task"),
        ({"critical_features": {"zip": 0.1}}, r"gate.critical_features names \['zip'\]"),
        ({"slices": {"region": SliceLimits()}}, r"gate.slices names \['region'\]"),
    ],
)
def test_a_policy_the_dataset_cannot_be_judged_by_is_refused(regression_spec, rules, message):
    from mlgate.errors import StageError
    from mlgate.gating.policy import check_fits

    with pytest.raises(StageError, match=message):
        check_fits(GatePolicy(metric="rmse", **rules), regression_spec)


GATE_POLICIES = sorted(p.stem for p in (Path(__file__).resolve().parents[2] / "conf/gate").glob("*.yaml"))


@pytest.mark.parametrize("policy", GATE_POLICIES)
def test_each_bundled_policy_fits_its_dataset(project_root, policy):
    """`default` is telco_churn's policy; the others are named after their dataset."""
    import yaml

    from mlgate import config, project
    from mlgate.gating.policy import check_fits

    dataset = "telco_churn" if policy == "default" else policy
    params = yaml.safe_load(config.compose(project_root / "conf", [f"data={dataset}", f"gate={policy}"]))

    check_fits(config.load(GatePolicy, "gate", params), project.data_spec(params))


# --- production vs candidate on the current batch ----------------------------------------------


def _batch(candidate: float | None = 0.80, champion: float | None = 0.81, skipped: str | None = None, rows: int = 500):
    return Comparison(
        rows=rows,
        content_hash="ab" * 32,
        candidate=None if candidate is None else {"roc_auc": candidate},
        champion=None if champion is None else {"roc_auc": champion},
        gain_interval=None if champion is None or candidate is None else (-0.03, 0.01),
        skipped=skipped,
    )


def _current_rule(**rule):
    return _policy(current_batch=CurrentBatchRule(**rule))


def _judge_current(policy: GatePolicy, batch, metric: str = "roc_auc"):
    return _only_check(_decide(policy, metric=metric, current=batch))


@pytest.mark.parametrize(
    "candidate, champion, passed", [(0.80, 0.81, True), (0.80, 0.82, True), (0.80, 0.83, False), (0.85, 0.80, True)]
)
def test_current_batch_rule_allows_a_small_loss_against_production_only(candidate, champion, passed):
    check = _judge_current(_current_rule(max_regression=0.02), _batch(candidate, champion))

    assert (check.name, check.passed, check.limit) == ("current_batch", passed, -0.02)
    assert check.observed == pytest.approx(candidate - champion)
    assert check.verdict == ("pass" if passed else "fail")
    assert check.detail.startswith(
        f"current batch (500 labelled rows) roc_auc {candidate:.4f} vs production {champion:.4f}"
    )
    assert "95% CI [-0.0300, +0.0100], allowed loss 0.02" in check.detail
    assert check.evidence == ScoredRows(500, "ab" * 32)


def test_current_batch_rule_follows_the_metric_direction():
    batch = Comparison(rows=300, candidate={"rmse": 5.3}, champion={"rmse": 5.0})

    assert not _judge_current(_current_rule(max_regression=0.2), batch, metric="rmse").passed
    assert _judge_current(_current_rule(max_regression=0.5), batch, metric="rmse").passed


def test_current_batch_rule_is_skipped_without_a_production_model_even_when_labels_are_required():
    check = _judge_current(
        _current_rule(max_regression=0.02, require=True), _batch(champion=None, skipped="no 'production' model yet")
    )

    assert check.passed and check.skipped and check.verdict == "skipped"
    assert check.observed is None
    assert check.detail == "current batch not compared: no 'production' model yet"


@pytest.mark.parametrize("require, passed", [(False, True), (True, False)])
def test_current_batch_without_labels_is_skipped_or_fails_when_labels_are_required(require, passed):
    batch = _batch(candidate=None, champion=None, skipped="it has no `churn` column", rows=0)

    check = _judge_current(_current_rule(max_regression=0.02, require=require), batch)

    assert check.passed is passed and check.skipped is passed
    assert check.detail.startswith("current batch not scored: it has no `churn` column")
    assert check.detail.endswith("(gate.current_batch.require)") is require


def test_current_batch_required_without_a_loss_limit_reports_the_gain():
    check = _judge_current(_current_rule(require=True), _batch(0.70, 0.80))

    assert check.passed and check.limit is None and check.detail.endswith("loss not limited)")


def test_current_batch_rule_is_off_by_default_and_fails_when_not_measured():
    off = _decide(_policy(), current=_batch())
    assert off.checks == ()

    check = _judge_current(_current_rule(max_regression=0.02), None)

    assert not check.passed and check.detail == "current batch comparison: not measured"


def test_the_champion_rule_is_marked_skipped_without_a_production_model():
    check = _only_check(_decide(_regression_limit(0.005), champion_score=None))

    assert check.verdict == "skipped"


@pytest.mark.parametrize(
    "target, values, reason",
    [
        (None, None, "it has no `churn` column"),
        ("churn", [None] * 6, "no row has a usable `churn` value"),
        (
            "churn",
            ["Maybe", "?", None, "Yes", "No", "Yes"],
            "only 3 rows have a `churn` value (gate.current_batch.min_rows 4)",
        ),
        ("churn", ["No"] * 6, "its labelled rows hold one class of `churn` only"),
        ("churn", ["Yes", "No", "No", "Yes", None, "No"], None),
    ],
)
def test_usable_labels_says_why_a_current_batch_cannot_be_scored(data_section, clean_frame, target, values, reason):
    from mlgate import config
    from mlgate.gating.evidence import usable_labels
    from mlgate.modelling.data import DataSpec

    data_section["contract"]["columns"]["churn"]["categories"] = ["No", "Yes"]
    frame = clean_frame.drop(columns=["churn"]) if target is None else clean_frame.assign(churn=values)

    labelled, why = usable_labels(frame, config.build(DataSpec, data_section, "data"), min_rows=4)

    assert why == reason
    if reason is None:
        assert labelled.tolist() == [True, True, True, True, False, True]


def test_usable_labels_of_a_regression_batch_need_numbers(regression_spec, mixed_frame):
    from mlgate.gating.evidence import usable_labels

    frame = mixed_frame(10, "regression").astype({"spend": object})
    frame.loc[[0, 1], "spend"] = ["n/a", None]

    labelled, why = usable_labels(frame, regression_spec, min_rows=5)

    assert why is None and labelled.sum() == 8


def _outputs(y, seed, noise):
    import numpy as np

    rng = np.random.default_rng(seed)
    probability = np.clip(0.3 + 0.4 * y + rng.normal(0, noise, len(y)), 0, 1)
    return (probability > 0.5).astype(int), probability


def test_compare_scores_both_models_on_the_same_rows_with_paired_intervals(binary_spec, mixed_frame):
    import numpy as np

    from mlgate.files import content_hash
    from mlgate.gating.evidence import compare
    from mlgate.modelling import metrics
    from mlgate.modelling.data import target_vector

    rows = mixed_frame(200)
    y = target_vector(rows, binary_spec)
    strong, weak = _outputs(y, 0, 0.15), _outputs(y, 1, 0.35)

    result = compare(binary_spec, rows, strong, weak, slice_columns=["plan"], resamples=200, seed=3)

    assert result.rows == 200 and result.content_hash == content_hash(rows) and result.skipped is None
    assert set(result.candidate) == set(metrics.TASK_METRICS["binary"]) == set(result.champion)
    assert result.gain_interval == metrics.paired_bootstrap("roc_auc", y, strong[1], weak[1], resamples=200, seed=3)
    for scores, interval in (
        (result.candidate, result.candidate_interval),
        (result.champion, result.champion_interval),
    ):
        assert interval[0] <= scores["roc_auc"] <= interval[1]
    assert result.gain_interval[0] > 0
    assert {s.value for s in result.slices} == {"basic", "plus", "pro"}
    assert all(s.champion is not None for s in result.slices)
    block = BatchComparison.of(result, "roc_auc", "test split", 200)
    assert block.gain == pytest.approx(result.candidate["roc_auc"] - result.champion["roc_auc"], abs=1e-6)
    assert block.gain_interval.confidence == 0.95 and np.isclose(block.gain_interval.low, result.gain_interval[0])
    assert set(asdict(block.slices[0])) == {"column", "value", "rows", "candidate", "champion", "gain"}


def test_compare_without_production_scores_the_candidate_and_says_why(binary_spec, mixed_frame):
    from mlgate.gating.evidence import compare
    from mlgate.modelling.data import target_vector

    rows = mixed_frame(60)
    result = compare(
        binary_spec,
        rows,
        _outputs(target_vector(rows, binary_spec), 0, 0.2),
        None,
        skipped="no 'production' model yet",
        resamples=50,
    )

    assert result.champion is None and result.champion_interval is None and result.gain_interval is None
    assert result.candidate_interval is not None and result.skipped == "no 'production' model yet"
    block = BatchComparison.of(result, "roc_auc", "test split", 60)
    assert block.champion is None and block.gain is None


def test_promotion_markdown_compares_with_production_on_the_labelled_current_batch():
    markdown = promotion_markdown(gate_report())

    section = markdown.split("## Current batch")[1].split("\n## ")[0]
    assert "Current batch (held-out rows, 1,405 rows): 1,300 labelled rows, sha256 `c0ffeec0ffee`." in section
    assert "| roc_auc | 0.8300 | 0.8200 | +0.0100 | [-0.0040, +0.0250] |" in section
    assert "| f1 | 0.6100 | 0.6300 | -0.0200 |  |" in section
    assert markdown.index("## Test metrics") < markdown.index("## Current batch") < markdown.index("## Checks")


def test_promotion_markdown_says_why_the_current_batch_was_not_compared():
    unscored = Comparison(skipped="it has no `churn` column")

    assert "Current batch (held-out rows, 1,405 rows): not scored, it has no `churn` column." in promotion_markdown(
        gate_report(champion=False, on_current=unscored)
    )
    markdown = promotion_markdown(gate_report(champion=False))
    assert "| metric | candidate v4 |\n| --- | ---: |\n| roc_auc | 0.8300 |" in markdown
    assert "Production not compared: no 'production' model yet." in markdown


def test_promotion_markdown_marks_skipped_checks_and_shows_current_slices():
    report = _full_report()
    skipped = Check(
        "current_batch", True, None, -0.02, "current batch not compared: no 'production' model yet", skipped=True
    )
    report = replace(report, checks=(*report.checks, skipped))

    markdown = promotion_markdown(report)

    assert (
        "| current_batch | skipped | None | -0.02 | current batch not compared: no 'production' model yet |" in markdown
    )
    assert "The same on the current batch's 1,300 labelled rows (reported, not judged)." in markdown
    assert "| contract | Month-to-month | 700 | 0.7800 | 0.8000 | -0.0200 |\n" in markdown


def test_promotion_markdown_embeds_the_plots_relative_to_itself():
    plots = (
        Plot("metric", "roc_auc: candidate vs production, 95% CI", "reports/plots/metric.png"),
        Plot("drift", "Most drifted columns", "reports/plots/drift.png"),
    )

    markdown = promotion_markdown(gate_report(champion=False, plots=plots))

    plots = markdown.split("## Plots")[1].split("\n## ")[0]
    assert "![roc_auc: candidate vs production, 95% CI](plots/metric.png)" in plots
    assert "![Most drifted columns](plots/drift.png)" in plots
    assert markdown.index("## Drift") < markdown.index("## Plots") < markdown.index("## Links")


def test_promotion_markdown_ranks_p_value_drift_by_how_far_below_its_threshold():
    columns = {
        "calm": {"method": "K-S p_value", "score": 0.6, "threshold": 0.05, "drifted": False},
        "shifted": {"method": "K-S p_value", "score": 1e-9, "threshold": 0.05, "drifted": True},
        "plan": {"method": "Jensen-Shannon distance", "score": 0.05, "threshold": 0.1, "drifted": False},
    }

    markdown = promotion_markdown(gate_report(drift=drift(columns=columns)))

    assert markdown.index("| shifted |") < markdown.index("| plan |") < markdown.index("| calm |")


# --- the report as gate.json holds it ----------------------------------------------------------


def test_a_clustering_report_reads_back_and_renders_its_clusters():
    from mlgate.gating.report import ClusterProfile
    from mlgate.reports import model_card

    profile = ClusterProfile(
        "plots/cluster_profile.csv",
        (
            {"cluster": "0", "rows": 30, "share": 0.75, "mean_age": 41.5, "top_plan": "basic 60%, pro 40%"},
            {"cluster": "1", "rows": 10, "share": 0.25, "mean_age": 23.25, "top_plan": "pro 100%"},
            {"cluster": "all", "rows": 40, "share": 1.0, "mean_age": 36.94, "top_plan": "pro 55%, basic 45%"},
        ),
        {"mean": 0.91, "std": 0.02, "min": 0.88, "resamples": 10},
        (Plot("projection", "Clusters, 2-D", "reports/plots/projection.png"),),
    )
    report = gate_report(clusters=profile)

    assert GateReport.from_json(json.loads(json.dumps(report.to_json()))) == report
    card, pull_request = model_card.render(report), promotion_markdown(report)
    for text in (card, pull_request):
        assert "mean adjusted Rand index 0.910 ± 0.020 (lowest 0.880) between the clusters and 10 refits" in text
        assert "| cluster | rows | share | age | plan |" in text
        assert "| 1 | 10 | 25.0% | 23.25 | pro 100% |" in text
        assert "![Clusters, 2-D](plots/projection.png)" in text
    assert "## Feature importance" not in card


def test_the_report_reads_back_from_its_json():
    report = gate_report(plots=(Plot("metric", "roc_auc", "reports/plots/metric.png"),))

    payload = json.loads(json.dumps(report.to_json()))

    assert GateReport.from_json(payload) == report
    assert list(payload)[:7] == ["passed", "reasons", "metric", "generated_at", "git_commit", "policy", "checks"]
    assert list(payload)[-4:] == ["candidate", "champion", "plots", "clusters"]
    assert list(payload["checks"][0]) == [
        "name",
        "passed",
        "observed",
        "limit",
        "detail",
        "evidence",
        "skipped",
        "verdict",
    ]
    assert list(payload["comparison"]["current"])[-3:] == ["source", "batch_rows", "champion_trained_rows"]


def test_each_rules_evidence_reads_back_as_its_record():
    full = _full_report()
    policy = replace(full.policy, current_batch=CurrentBatchRule(max_regression=0.02))
    report = gate_report(policy=policy, drift=full.drift, on_test=replace(ON_TEST, slices=CONTRACT_SLICES))

    back = GateReport.from_json(json.loads(json.dumps(report.to_json())))

    assert back == report
    kinds = {c.name: type(c.evidence) for c in back.checks if c.evidence is not None}
    assert kinds == {"critical_features": dict, "current_batch": ScoredRows, "slices": tuple}
    assert isinstance(back.check("critical_features").evidence["tenure"], FeatureDrift)
    assert [row.verdict for row in back.judged_slices()] == [row.verdict for row in full.judged_slices()]


def test_the_committed_gate_json_reads_back_byte_for_byte(project_root):
    text = (project_root / "reports/gate.json").read_text()

    report = GateReport.from_json(json.loads(text))

    assert json.dumps(report.to_json(), indent=2) + "\n" == text


def test_policy_and_evidence_import_neither_mlflow_nor_evidently():
    modules = ["mlgate.gating.policy", "mlgate.gating.evidence", "mlgate.gating.report"]

    assert loaded_by_importing(modules, ("mlflow", "evidently", "optuna")) == []


# --- clustering ---------------------------------------------------------------------------------


def _segmentation_policy(**rules) -> GatePolicy:
    return GatePolicy(metric="silhouette", require_validation=False, require_no_drift=False, **rules)


@pytest.mark.parametrize(
    ("rule", "measured", "limit", "passed"),
    [
        ("min_stability", {"stability_ari": 0.42}, 0.6, False),
        ("min_stability", {"stability_ari": 0.6}, 0.6, True),
        ("min_cluster_share", {"smallest_cluster_share": 0.01}, 0.03, False),
        ("min_cluster_share", {"smallest_cluster_share": 0.2}, 0.03, True),
        ("min_stability", {}, 0.6, False),  # not measured: fails, it does not pass unseen
    ],
)
def test_a_segmentation_is_judged_on_its_stability_and_its_smallest_cluster(rule, measured, limit, passed):
    check = _only_check(
        _decide(
            _segmentation_policy(**{rule: limit}),
            metric="silhouette",
            candidate_score=0.3,
            measured=Measurements(**measured),
            task="clustering",
        )
    )
    assert check.name == {"min_stability": "stability", "min_cluster_share": "cluster_share"}[rule]
    assert check.passed is passed and check.limit == limit
    assert ("not measured" in check.detail) is (not measured)


def test_rules_that_need_a_target_are_skipped_for_a_segmentation_with_their_reason():
    policy = _segmentation_policy(
        max_target_drift=0.1,
        max_calibration_error=0.1,
        slices={"g": SliceLimits(min_metric=0.1)},
        current_batch=CurrentBatchRule(require=True),
    )
    decision = _decide(policy, metric="silhouette", candidate_score=0.3, task="clustering")
    assert decision.passed
    assert {c.name: c.verdict for c in decision.checks} == dict.fromkeys(
        ("target_drift", "current_batch", "calibration", "slices"), "skipped"
    )
    assert all("needs a target; a clustering task has none" in c.detail for c in decision.checks)


def test_the_champion_check_of_a_segmentation_states_how_far_the_two_agree():
    check = _only_check(
        _decide(
            _segmentation_policy(max_regression=0.02),
            metric="silhouette",
            candidate_score=0.30,
            champion_score=0.31,
            measured=Measurements(assignment_agreement=0.8123),
            task="clustering",
        )
    )
    assert check.passed and "gain -0.0100" in check.detail
    assert "agree on the test rows' clusters with ARI 0.812" in check.detail


def test_the_segmentation_comparison_scores_both_in_one_space_with_paired_intervals():
    import numpy as np

    from mlgate.gating import segments
    from tests.helpers import blobs

    frame, truth = blobs()
    embedded = frame[["x", "y"]].to_numpy()
    coarse = np.where(truth == 2, 1, truth)  # two of the three groups merged

    found, agreement = segments.compare("silhouette", frame, embedded, truth, coarse, resamples=200, seed=0)

    assert found.candidate["n_clusters"] == 3 and found.champion["n_clusters"] == 2
    low, high = found.gain_interval
    assert found.candidate["silhouette"] - found.champion["silhouette"] == pytest.approx((low + high) / 2, abs=0.05)
    assert found.candidate_interval[0] <= found.candidate["silhouette"] <= found.candidate_interval[1]
    assert 0.3 < agreement < 1.0
    alone, none = segments.compare("davies_bouldin", frame, embedded, truth, None, resamples=50, seed=0)
    assert none is None and alone.champion is None and alone.gain_interval is None
    assert alone.candidate_interval[0] <= alone.candidate["davies_bouldin"] <= alone.candidate_interval[1]


def test_champion_check_compares_the_candidate_on_the_rows_production_was_scored_on():
    # production trained on some test rows, left out: the candidate's paired score, not its score on all rows
    paired = Comparison(rows=900, candidate={"roc_auc": 0.83}, champion={"roc_auc": 0.84}, champion_trained_rows=500)

    check = _only_check(_decide(_regression_limit(0.005), candidate_score=0.86, champion_score=0.84, test=paired))

    assert not check.passed and check.observed == pytest.approx(-0.01)
