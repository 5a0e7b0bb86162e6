"""metrics.bootstrap_scores: each model's score on paired_bootstrap's resamples."""

import numpy as np
import pytest

from mlgate.modelling import metrics


def _data(rows=300, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, rows)
    return y, np.clip(0.6 * y + rng.normal(0.2, 0.25, rows), 0, 1), np.clip(0.3 * y + rng.normal(0.35, 0.3, rows), 0, 1)


@pytest.mark.parametrize("name", ["roc_auc", "log_loss"])
def test_the_gain_between_columns_has_paired_bootstraps_interval(name):
    y, strong, weak = _data()

    draws = metrics.bootstrap_scores(name, y, strong, weak, resamples=200, seed=4)

    assert draws.shape == (200, 2)
    gain = metrics.improvement(name, draws[:, 0], draws[:, 1])
    assert metrics.percentile_interval(gain) == metrics.paired_bootstrap(name, y, strong, weak, resamples=200, seed=4)


def test_each_models_interval_covers_its_score():
    y, strong, weak = _data()

    draws = metrics.bootstrap_scores("roc_auc", y, strong, weak, resamples=300, seed=0)

    for column, scored in enumerate((strong, weak)):
        low, high = metrics.percentile_interval(draws[:, column])
        assert low < metrics.METRICS["roc_auc"].score(y, scored) < high


def test_one_class_resamples_of_a_probability_metric_are_skipped():
    y = np.array([1] * 19 + [0])

    draws = metrics.bootstrap_scores("roc_auc", y, np.linspace(0, 1, 20), resamples=100, seed=0)

    assert 0 < len(draws) < 100 and draws.shape[1] == 1


def test_percentile_interval_is_the_central_share():
    assert metrics.percentile_interval(np.arange(101.0), confidence=0.9) == pytest.approx((5.0, 95.0))
