import json

from mlgate.stages.drift import stable_scores


def _summary(score: float) -> dict:
    return {
        "drift_share": 0.0,
        "passed": True,
        "drifted_columns": [],
        "columns": {
            "contract": {"method": "Jensen-Shannon distance", "score": score, "threshold": 0.1, "drifted": False}
        },
    }


def test_scores_that_differ_only_in_the_summation_order_write_the_same_bytes():
    """0.00266570207885697 and ...698: two runs of Evidently on the same splits (string hashing orders its sums)."""
    first, second = stable_scores(_summary(0.00266570207885697)), stable_scores(_summary(0.00266570207885698))

    assert json.dumps(first) == json.dumps(second)
    assert first["columns"]["contract"]["score"] == 0.002665702079


def test_stable_scores_keep_every_other_field():
    summary = _summary(0.5)

    assert stable_scores(summary) == summary
