import numpy as np
import pytest

from mlgate import metrics


def test_improvement_is_positive_for_a_higher_roc_auc():
    assert metrics.improvement("roc_auc", 0.90, 0.85) == pytest.approx(0.05)


def test_improvement_is_positive_for_a_lower_rmse():
    assert metrics.improvement("rmse", 1.5, 2.0) == pytest.approx(0.5)
    assert metrics.improvement("rmse", 2.0, 1.5) == pytest.approx(-0.5)


@pytest.mark.parametrize("name, task, greater_is_better", [
    ("roc_auc", "binary", True),
    ("log_loss", "binary", False),
    ("rmse", "regression", False),
    ("r2", "regression", True),
])
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
