"""How mlgate.services.automl.fit splits a wall budget between the search, the refit and its fixed costs."""

from __future__ import annotations

import pandas as pd
import pytest

from mlgate import project
from mlgate.services import automl


@pytest.mark.parametrize("budget_s", [10, 30, 60, 120, 600])
def test_the_search_gets_what_the_fixed_costs_the_refit_and_the_margin_leave(budget_s):
    tail = automl.FIXED_S + (automl.REFIT_SHARE + automl.MARGIN_SHARE) * budget_s
    assert automl.search_seconds(budget_s) == pytest.approx(budget_s - tail)


def test_a_long_budget_goes_to_the_search_and_a_tiny_one_still_searches():
    assert automl.search_seconds(120) > 0.75 * 120  # a fixed 65% left a quarter of it unused
    assert automl.search_seconds(3) == 1.0


def test_the_scratch_project_searches_for_that_long_with_the_refit_capped(tmp_path):
    frame = pd.DataFrame({"x": [0.1, 0.4, 0.3, 0.9] * 5, "y": [1.0, 2.0, 3.0, 4.0] * 5})
    params = automl.project_params(frame, "y", "regression", budget_s=120, seed=3, source=tmp_path / "train.parquet")
    assert params["search"]["timeout_s"] == pytest.approx(automl.search_seconds(120), abs=0.05)
    assert params["finish"]["refit_budget_s"] == pytest.approx(14.4)
    assert (params["search"]["budget"], params["seed"]) == ("time", 3)


@pytest.mark.parametrize(("budget_s", "folds", "writer", "process"), [(30, 3, "thread", False), (600, 5, "auto", True)])
def test_a_short_search_scores_on_three_folds_and_writes_trial_runs_from_a_thread(
    tmp_path, budget_s, folds, writer, process
):
    frame = pd.DataFrame({"x": [0.1, 0.4, 0.3, 0.9] * 5, "y": [1.0, 2.0, 3.0, 4.0] * 5})
    params = automl.project_params(frame, "y", "regression", budget_s=budget_s, seed=0, source=tmp_path / "t.parquet")
    assert (params["search"]["cv_folds"], params["tracking"]["trial_writer"]) == (folds, writer)
    assert project.tracking(params).writes_trials_from_process(params["search"]["budget"], 10_000) is process


@pytest.mark.parametrize(
    ("writer", "budget", "n_trials", "process"),
    [
        ("auto", "trials", 5, False),  # the tiny searches of a first try: the start-up costs more than it saves
        ("auto", "trials", 10, False),
        ("auto", "trials", 11, True),
        ("auto", "time", 5, True),  # a clock: however many trials it runs
        ("process", "trials", 5, True),
        ("thread", "trials", 1_000, False),
    ],
)
def test_auto_writes_a_few_trials_from_a_thread_and_any_longer_search_from_a_process(writer, budget, n_trials, process):
    tracking = project.TrackingParams("e", "m", "http://127.0.0.1:5000", trial_writer=writer)
    assert tracking.writes_trials_from_process(budget, n_trials) is process


def test_an_unknown_trial_writer_is_refused_naming_the_field(tmp_path):
    frame = pd.DataFrame({"x": [0.1, 0.4, 0.3, 0.9] * 5, "y": [1.0, 2.0, 3.0, 4.0] * 5})
    params = automl.project_params(frame, "y", "regression", budget_s=30, seed=0, source=tmp_path / "t.parquet")
    params["tracking"]["trial_writer"] = "fork"
    with pytest.raises(ValueError, match="tracking.trial_writer must be auto, process or thread, got 'fork'"):
        project.tracking(params)
