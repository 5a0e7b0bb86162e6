import numpy as np
import pytest

from mlgate.modelling import metrics


def test_improvement_is_positive_for_a_higher_roc_auc():
    assert metrics.improvement("roc_auc", 0.90, 0.85) == pytest.approx(0.05)


def test_improvement_is_positive_for_a_lower_rmse():
    assert metrics.improvement("rmse", 1.5, 2.0) == pytest.approx(0.5)
    assert metrics.improvement("rmse", 2.0, 1.5) == pytest.approx(-0.5)


@pytest.mark.parametrize(
    "name, task, greater_is_better",
    [
        ("roc_auc", "binary", True),
        ("log_loss", "binary", False),
        ("rmse", "regression", False),
        ("r2", "regression", True),
    ],
)
def test_get_returns_the_metric_with_its_direction(name, task, greater_is_better):
    assert metrics.get(name, task).greater_is_better is greater_is_better


@pytest.mark.parametrize("name, task", [("rmse", "binary"), ("roc_auc", "regression"), ("auc", "binary")])
def test_get_rejects_a_metric_of_another_task(name, task):
    with pytest.raises(ValueError, match=f"data.metric '{name}' is not a {task} metric"):
        metrics.get(name, task)


def test_every_task_metric_is_defined():
    assert {name for names in metrics.TASK_METRICS.values() for name in names} <= set(metrics.METRICS)


def test_score_uses_probability_or_prediction_as_the_metric_needs():
    y_true = np.array([0, 0, 1, 1])
    prediction = np.array([1, 0, 0, 1])
    probability = np.array([0.1, 0.2, 0.8, 0.9])

    assert metrics.score("roc_auc", y_true, prediction, probability) == 1.0
    assert metrics.score("accuracy", y_true, prediction, probability) == 0.5


def test_all_scores_covers_the_task_metrics():
    y_true = np.array([1.0, 2.0, 3.0])

    scores = metrics.all_scores("regression", y_true, np.array([1.0, 2.0, 5.0]), None)

    assert set(scores) == {"rmse", "mae", "r2"}
    assert scores["mae"] == pytest.approx(2 / 3)


def _noisy_scores(rows: int, separation: float, seed: int):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, rows)
    return y, y * separation + rng.normal(0, 1, rows)


def test_paired_bootstrap_finds_a_clear_gain_and_no_gain_between_equal_models():
    y, strong = _noisy_scores(2000, 2.0, 0)
    _, weak = _noisy_scores(2000, 0.0, 1)  # pure noise: AUC about 0.5

    low, high = metrics.paired_bootstrap("roc_auc", y, strong, weak, resamples=300, seed=0)
    assert 0.3 < low < high < 0.5

    low, high = metrics.paired_bootstrap("roc_auc", y, strong, strong, resamples=300, seed=0)
    assert low == high == 0.0


def test_paired_bootstrap_is_oriented_by_the_metric_direction():
    rng = np.random.default_rng(0)
    y = rng.normal(0, 1, 1000)
    close, far = y + rng.normal(0, 0.1, 1000), y + rng.normal(0, 1.0, 1000)

    low, high = metrics.paired_bootstrap("rmse", y, close, far, resamples=300, seed=0)

    assert 0 < low < high  # a lower RMSE is a positive gain
    assert metrics.paired_bootstrap("rmse", y, far, close, resamples=300, seed=0)[1] < 0


def test_paired_bootstrap_covers_the_true_gain_at_about_the_stated_rate():
    """Known answer: two models whose true AUC gap is fixed; the 95% interval should cover it in
    roughly 95% of fresh samples (a coarse check: at least 48 of 60)."""
    big_y, big_a = _noisy_scores(200_000, 1.0, 10)
    big_b = big_y * 0.5 + np.random.default_rng(11).normal(0, 1, 200_000)
    truth = metrics.METRICS["roc_auc"].score(big_y, big_a) - metrics.METRICS["roc_auc"].score(big_y, big_b)
    covered = 0
    for trial in range(60):
        rows = np.random.default_rng(100 + trial).integers(0, 200_000, 500)
        low, high = metrics.paired_bootstrap(
            "roc_auc", big_y[rows], big_a[rows], big_b[rows], resamples=200, seed=trial
        )
        covered += low <= truth <= high
    assert covered >= 48


def test_rank_auc_equals_sklearn_with_ties():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    score = rng.integers(0, 5, 300).astype(float)  # many ties

    assert metrics._rank_auc(y, score) == pytest.approx(metrics.METRICS["roc_auc"].score(y, score), abs=1e-12)


@pytest.mark.parametrize("classes", [2, 3, 5])
def test_log_loss_gives_sklearns_float_exactly_on_binary_and_multiclass_probabilities(classes):
    """Exact, not approximate: a Caruana selection compares these losses, so a last-bit change would move a
    multiclass ensemble that an earlier run chose."""
    from sklearn import metrics as skm

    rng = np.random.default_rng(classes)
    for rows in (1, 7, 300):
        y = rng.integers(0, classes, rows)
        if classes == 2:
            p = rng.uniform(size=rows) ** 3
            p[:1] = y[:1]  # a certain and right prediction, clipped as sklearn clips it
            expected = skm.log_loss(y, np.clip(p, 1e-15, 1 - 1e-15), labels=[0, 1])
        else:
            p = rng.dirichlet(np.full(classes, 0.3), size=rows)
            p[0] = np.eye(classes)[(y[0] + 1) % classes]  # a certain and wrong one
            clipped = np.clip(p, 1e-15, 1.0)
            expected = skm.log_loss(y, clipped / clipped.sum(axis=1, keepdims=True), labels=np.arange(classes))
        assert metrics.METRICS["log_loss"].score(y, p) == expected


@pytest.mark.parametrize(
    ("y", "p", "message"),
    [
        ([0, 3], np.full((2, 3), 1 / 3), r"labels must be class numbers 0-2, got \[0, 3\]"),
        (["a", "b"], [0.2, 0.8], r"labels must be class numbers 0-1"),
        ([0, 1, 1], [0.2, 0.8], r"3 labels for 2 rows"),
    ],
)
def test_log_loss_of_labels_that_are_not_the_probabilities_columns_is_refused(y, p, message):
    with pytest.raises(ValueError, match=message):
        metrics.METRICS["log_loss"].score(np.asarray(y), p)


def test_brier_of_known_probabilities():
    y = np.array([0, 1, 1, 0])

    assert metrics.brier(y, np.full(4, 0.5)) == pytest.approx(0.25)
    assert metrics.brier(y, y.astype(float)) == 0.0
    assert metrics.brier(y, np.array([0.2, 0.9, 0.6, 0.0])) == pytest.approx((0.04 + 0.01 + 0.16 + 0) / 4)


def test_calibration_error_is_zero_when_each_bin_matches_its_positive_rate():
    y = np.array([1] * 8 + [0] * 2 + [1] * 1 + [0] * 9)  # 80% positive at 0.8, 10% at 0.1
    probability = np.array([0.8] * 10 + [0.1] * 10)

    assert metrics.expected_calibration_error(y, probability) == pytest.approx(0.0, abs=1e-12)


def test_calibration_error_weights_each_bin_gap_by_its_rows():
    # 30 rows at 0.9 with half positive (gap 0.4), 10 rows at 0.25 with none positive (gap 0.25)
    y = np.array([1] * 15 + [0] * 15 + [0] * 10)
    probability = np.array([0.9] * 30 + [0.25] * 10)

    assert metrics.expected_calibration_error(y, probability) == pytest.approx(0.75 * 0.4 + 0.25 * 0.25)


def test_calibration_error_puts_a_probability_of_one_in_the_top_bin():
    assert metrics.expected_calibration_error(np.array([1, 0]), np.array([1.0, 0.9])) == pytest.approx(0.45)


def test_population_stability_of_a_label_share_shift_matches_the_formula():
    reference = np.array([0] * 50 + [1] * 50)
    current = np.array([0] * 20 + [1] * 80)
    expected = (0.2 - 0.5) * np.log(0.2 / 0.5) + (0.8 - 0.5) * np.log(0.8 / 0.5)

    assert metrics.population_stability(reference, current) == pytest.approx(expected)
    assert metrics.population_stability(reference, reference) == 0.0


def test_population_stability_counts_a_value_the_reference_never_took():
    reference = np.array([0] * 50 + [1] * 50)
    current = np.array([0] * 50 + [1] * 40 + [2] * 10)
    floor = metrics.PSI_FLOOR
    expected = (0.4 - 0.5) * np.log(0.4 / 0.5) + (0.1 - floor) * np.log(0.1 / floor)

    assert metrics.population_stability(reference, current) == pytest.approx(expected)


def test_population_stability_separates_a_shifted_distribution_from_a_fresh_sample():
    rng = np.random.default_rng(0)
    reference = rng.normal(0, 1, 20_000)

    same = metrics.population_stability(reference, rng.normal(0, 1, 5_000))
    shifted = metrics.population_stability(reference, rng.normal(1, 1, 5_000))

    assert same < 0.01
    assert shifted > 0.25
    assert metrics.population_stability(reference * 1000, rng.normal(0, 1, 5_000) * 1000) < 0.01  # scale-free


def test_slice_scores_score_each_group_and_leave_one_class_groups_undefined():
    y = np.array([0, 1, 0, 1, 0, 1, 1, 1])
    probability = np.array([0.1, 0.9, 0.2, 0.8, 0.9, 0.1, 0.7, 0.6])
    groups = np.array(["a", "a", "a", "a", "b", "b", np.nan, np.nan], dtype=object)

    scores = metrics.slice_scores("roc_auc", y, probability, groups)

    assert scores == [("a", 4, 1.0), ("b", 2, 0.0), ("(missing)", 2, None)]


def test_slice_scores_show_whole_number_groups_without_a_decimal_point():
    y = np.array([1.0, 2.0, 3.0, 4.0])

    scores = metrics.slice_scores("mae", y, np.array([1.0, 2.0, 4.0, 6.0]), np.array([0.0, 0.0, 1.0, 1.0]))

    assert scores == [("0", 2, 0.0), ("1", 2, 1.5)]
