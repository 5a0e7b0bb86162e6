from dataclasses import asdict

import pytest

from mlgate.stages.gate import GatePolicy, decide, promotion_markdown

NO_DRIFT = {"drift_share": 0.1, "max_drift_share": 0.3, "drifted_columns": ["tenure"]}
ONLY_VALIDATION = GatePolicy(metric="roc_auc", require_validation=True, require_no_drift=False)
ONLY_DRIFT = GatePolicy(metric="roc_auc", require_validation=False, require_no_drift=True)


def _floor(value: float) -> GatePolicy:
    return GatePolicy(metric="roc_auc", require_validation=False, require_no_drift=False, metric_floor=value)


def _regression_limit(value: float) -> GatePolicy:
    return GatePolicy(metric="roc_auc", require_validation=False, require_no_drift=False, max_regression=value)


def _decide(policy: GatePolicy, *, metric: str = "roc_auc", candidate_score: float = 0.85, validation_passed: bool = True,
            drift: dict = NO_DRIFT, champion_score: float | None = None, champion_error: str | None = None):
    return decide(policy, validation_passed=validation_passed, drift=drift, metric=metric,
                  candidate_score=candidate_score, champion_score=champion_score, champion_error=champion_error)


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
    decision = _decide(ONLY_DRIFT, drift=NO_DRIFT | {"drift_share": share})

    check = _only_check(decision)
    assert (check.name, check.passed, check.observed, check.limit) == ("drift", passed, share, 0.3)
    assert "tenure" in check.detail


@pytest.mark.parametrize("metric, candidate_score, floor, passed", [
    ("roc_auc", 0.85, 0.80, True),
    ("roc_auc", 0.80, 0.80, True),
    ("roc_auc", 0.75, 0.80, False),
    ("rmse", 4.0, 5.0, True),
    ("rmse", 6.0, 5.0, False),
])
def test_metric_floor_respects_the_metric_direction(metric, candidate_score, floor, passed):
    decision = _decide(_floor(floor), metric=metric, candidate_score=candidate_score)

    check = _only_check(decision)
    assert (check.name, check.passed) == ("metric_floor", passed)
    assert decision.passed is passed


@pytest.mark.parametrize("metric, candidate_score, champion_score, passed", [
    ("roc_auc", 0.86, 0.85, True),
    ("roc_auc", 0.848, 0.85, True),
    ("roc_auc", 0.84, 0.85, False),
    ("rmse", 4.9, 5.0, True),
    ("rmse", 5.004, 5.0, True),
    ("rmse", 5.1, 5.0, False),
])
def test_champion_check_allows_a_small_regression_only(metric, candidate_score, champion_score, passed):
    decision = _decide(_regression_limit(0.005), metric=metric, candidate_score=candidate_score,
                       champion_score=champion_score)

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
    policy = GatePolicy(metric="roc_auc", require_validation=True, require_no_drift=True, metric_floor=0.9, max_regression=0.005)

    decision = _decide(policy, validation_passed=False, candidate_score=0.85, champion_score=0.80)

    assert [c.name for c in decision.checks] == ["validation", "drift", "metric_floor", "champion"]
    assert [c.name for c in decision.checks if not c.passed] == ["validation", "metric_floor"]
    assert len(decision.reasons) == 2
    assert not decision.passed


def test_empty_policy_passes():
    policy = GatePolicy(metric="roc_auc", require_validation=False, require_no_drift=False)

    assert _decide(policy, validation_passed=False).passed


def _gate_result(*, passed: bool, champion: dict | None) -> dict:
    policy = GatePolicy(metric="roc_auc", require_validation=True, require_no_drift=True, metric_floor=0.8, max_regression=0.005)
    decision = _decide(policy, candidate_score=0.85, champion_score=None if champion is None else 0.84)
    return {
        "passed": passed, "reasons": [] if passed else ["test roc_auc 0.7500 < floor 0.8"],
        "generated_at": "2026-01-02T03:04:05+00:00", "git_commit": "0123456789abcdef0123",
        "checks": [asdict(c) for c in decision.checks],
        "test_rows": 1234, "test_hash": "feedfacecafebeef" * 4,
        "drift": {"drifted_count": 1, "columns_checked": 2, "drift_share": 0.5, "max_drift_share": 0.3,
                  "current_rows": 100, "reference_rows": 400, "drifted_columns": ["tenure"],
                  "columns": {"tenure": {"method": "Wasserstein distance (normed)", "score": 0.25, "threshold": 0.1,
                                         "drifted": True},
                              "plan": {"method": "Jensen-Shannon distance", "score": 0.01, "threshold": 0.1,
                                       "drifted": False}}},
        "paths": {"drift_report": "reports/drift.html"},
        "candidate": {"name": "tiny", "version": 4, "family": "catboost", "metrics": {"roc_auc": 0.85, "f1": 0.6},
                      "run_link": "http://ui/runs/abc", "version_link": "http://ui/models/tiny/4",
                      "tune_run_link": "http://ui/runs/tune"},
        "champion": champion,
    }


PRODUCTION_V3 = {"version": 3, "metrics": {"roc_auc": 0.84, "f1": 0.65}, "error": None,
                 "version_link": "http://ui/models/tiny/3"}


def test_promotion_markdown_states_a_passed_verdict_and_each_check():
    markdown = promotion_markdown(_gate_result(passed=True, champion=PRODUCTION_V3))

    assert "# Model promotion: `tiny` version 4" in markdown
    assert "✅ **PASSED**: granted `staging`" in markdown
    assert "Reasons:" not in markdown
    for name in ("validation", "drift", "metric_floor", "champion"):
        assert f"| {name} | " in markdown
    assert "sha256 `feedfacecafe`" in markdown
    assert "`mlgate promote --alias production --version 4`" in markdown


def test_promotion_markdown_compares_with_the_champion():
    markdown = promotion_markdown(_gate_result(passed=True, champion=PRODUCTION_V3))

    assert "| metric | candidate v4 | production v3 | difference | 95% CI of the gain |" in markdown
    assert "| roc_auc | 0.8500 | 0.8400 | +0.0100 |  |" in markdown
    assert "| f1 | 0.6000 | 0.6500 | -0.0500 |  |" in markdown
    assert "- Production version: http://ui/models/tiny/3" in markdown


def test_promotion_markdown_without_a_champion_has_no_difference_column():
    markdown = promotion_markdown(_gate_result(passed=False, champion=None))

    assert "❌ **REJECTED**: not granted `staging`" in markdown
    assert "- test roc_auc 0.7500 < floor 0.8" in markdown
    assert "| metric | candidate v4 |\n" in markdown
    assert "difference" not in markdown
    assert "No production model to compare with." in markdown


def test_promotion_markdown_shows_a_champion_that_could_not_be_scored():
    champion = PRODUCTION_V3 | {"metrics": None, "error": "could not score production v3"}

    markdown = promotion_markdown(_gate_result(passed=False, champion=champion))

    assert "Production: could not score production v3" in markdown
    assert "difference" not in markdown


def test_promotion_markdown_lists_the_most_drifted_columns_first():
    markdown = promotion_markdown(_gate_result(passed=True, champion=None))

    assert "1 of 2 columns drifted (share 0.50, limit 0.30)" in markdown
    assert markdown.index("| tenure | Wasserstein") < markdown.index("| plan | Jensen-Shannon")


def test_promotion_markdown_shows_the_interval_on_the_gate_metric():
    result = _gate_result(passed=True, champion=PRODUCTION_V3)
    result["gain_interval"] = {"metric": "roc_auc", "confidence": 0.95, "low": -0.002, "high": 0.021}

    markdown = promotion_markdown(result)

    assert "| roc_auc | 0.8500 | 0.8400 | +0.0100 | [-0.0020, +0.0210] |" in markdown
    assert "paired bootstrap over test rows of the roc_auc gain" in markdown


@pytest.mark.parametrize("interval, passed", [((0.001, 0.02), True), ((-0.001, 0.02), False), (None, False)])
def test_significant_gain_needs_the_interval_above_zero(interval, passed):
    policy = GatePolicy(metric="roc_auc", require_validation=False, require_no_drift=False, require_significant_gain=True)

    check = _only_check(decide(policy, validation_passed=True, drift=NO_DRIFT, metric="roc_auc", candidate_score=0.86,
                               champion_score=0.85, gain_interval=interval))

    assert (check.name, check.passed) == ("significant_gain", passed)


def test_significant_gain_is_not_required_without_a_champion():
    policy = GatePolicy(metric="roc_auc", require_validation=False, require_no_drift=False, require_significant_gain=True)

    assert _decide(policy).checks == []


def test_champion_detail_carries_the_interval():
    check = _only_check(decide(_regression_limit(0.01), validation_passed=True, drift=NO_DRIFT, metric="roc_auc",
                               candidate_score=0.86, champion_score=0.85, gain_interval=(-0.004, 0.023)))

    assert "gain +0.0100, 95% CI [-0.0040, +0.0230]" in check.detail
