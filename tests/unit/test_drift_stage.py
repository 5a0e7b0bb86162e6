from mlgate.records import DriftSummary
from mlgate.stages.drift import SCORE_DIGITS


def _summary(score: float) -> DriftSummary:
    return DriftSummary.from_json(
        {
            "reference_rows": 100,
            "current_rows": 50,
            "columns_checked": 1,
            "drifted_count": 0,
            "drift_share": 0.0,
            "max_drift_share": 0.3,
            "passed": True,
            "drifted_columns": [],
            "columns": {
                "contract": {"method": "Jensen-Shannon distance", "score": score, "threshold": 0.1, "drifted": False}
            },
            "engine": "evidently 0.7.23",
        }
    )


def test_scores_that_differ_only_in_the_summation_order_write_the_same_bytes():
    """0.00266570207885697 and ...698: two runs of Evidently on the same splits (string hashing orders its sums)."""
    first = _summary(0.00266570207885697).rounded(SCORE_DIGITS)
    second = _summary(0.00266570207885698).rounded(SCORE_DIGITS)

    assert first.to_json() == second.to_json()
    assert first.columns["contract"].score == 0.002665702079


def test_rounding_keeps_every_other_field():
    summary = _summary(0.5)

    assert summary.rounded(SCORE_DIGITS) == summary
