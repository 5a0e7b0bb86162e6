"""The benchmarks run in the venv `make run` installs: no test extras (pytest, hypothesis, filelock)."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.helpers import load_benchmark

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = sorted((REPO / "benchmarks").glob("*.py"))
TEST_ONLY = {"tests", "pytest", "hypothesis", "filelock", "xdist"}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_benchmark_imports_nothing_from_the_test_extras(script):
    assert imported_roots(script) & TEST_ONLY == set()


def test_the_benchmarks_copy_the_project_without_pytest(tmp_path):
    # sys.modules["pytest"] = None makes any `import pytest` fail, as in a venv without the test extras
    script = (
        "import sys; from pathlib import Path; sys.modules['pytest'] = None; sys.path.insert(0, sys.argv[1]); "
        "import tiny_model; tiny_model.copy_project(Path(sys.argv[2]), dict(__import__('os').environ))"
    )
    subprocess.run(
        [sys.executable, "-c", script, str(REPO / "benchmarks"), str(tmp_path)],
        check=True,
        capture_output=True,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"},
    )

    assert (tmp_path / "dvc.yaml").is_file() and not (tmp_path / "tests").exists()
    assert "n_trials: 5" in (tmp_path / "params.yaml").read_text()


scale_out = load_benchmark("scale_out.py", "scale_out_bench")


def test_scale_out_counts_completed_trials_over_the_first_start_to_the_last_end():
    Trial = scale_out.Trial
    trials = [
        Trial(10.0, 40.0, True, "a", 29.0),
        Trial(12.0, 42.0, True, "b", 29.0),
        Trial(41.0, 70.0, False, "a", 1.0),
    ]

    tpm, span = scale_out.trials_per_minute(trials)

    assert span == 60.0 and tpm == 2.0  # the failed trial spans the search but is not counted
    assert scale_out.trials_per_minute([]) == (0.0, 0.0)


def test_scale_out_timeline_measures_each_workers_own_gaps_between_trials():
    Trial = scale_out.Trial
    trials = [Trial(0.0, 2.0, True, "a", 1.5), Trial(2.5, 4.5, True, "a", 1.5), Trial(1.0, 3.0, True, "b", 1.0)]
    trials.append(Trial(4.5, 6.5, True, "b", 1.0))  # b's gap (1.5 s) overlaps a's trials: gaps are per worker

    assert scale_out.timeline(trials) == {"trial_s": 2.0, "evaluate_s": 1.25, "between_trials_s": 1.0}


def test_scale_out_reads_a_sampled_series_at_a_moment():
    samples = [(1.0, 5.0), (2.0, 7.0), (3.0, 11.0)]

    assert [scale_out.value_at(samples, t) for t in (0.5, 2.0, 2.9, 9.0)] == [5.0, 7.0, 7.0, 11.0]


def test_scale_out_projection_scales_connections_and_server_cpu_with_the_workers():
    projected = scale_out.projection(
        10,
        2,
        tpm_per_worker=6.0,
        connections_per_worker=3,
        coordinator_connections=2,
        tracking_connections=12,
        server_cpu_s_per_trial=0.5,
    )

    assert projected == {
        "machines": 10,
        "workers": 20,
        "trials_per_minute": 120.0,
        "study_connections": 62,
        "postgres_connections": 74,
        "server_cores_busy": 1.0,
    }


def test_scale_out_overrides_compose_into_a_fixed_cost_catboost_search():
    from mlgate import config
    from mlgate.adapters import optuna_study

    overrides = scale_out.search_overrides(16, 3, 150, 2, "postgresql+psycopg://u@127.0.0.1:5432/s", "scale-out")
    params = yaml.safe_load(config.compose(REPO / "conf", overrides))
    search = config.load(optuna_study.SearchSettings, "search", params)
    (space,) = optuna_study.parse_spaces(params["model"])

    assert (search.workers, search.n_trials, search.cv_folds, search.n_jobs, search.pruner) == (2, 16, 3, 1, "none")
    assert space.family == "catboost"
    assert params["model"]["catboost"]["fixed"] == {"iterations": 150, "depth": 6}  # no early stopping
    assert sorted(params["model"]["catboost"]["space"]) == ["class_weight", "l2_leaf_reg", "learning_rate"]
    assert params["paths"]["study"].endswith("/s") and params["tracking"]["experiment"] == "scale-out"


warm_start = load_benchmark("warm_start.py", "warm_start_bench")


def test_warm_start_reach_is_the_first_complete_trial_at_the_target_in_the_metrics_direction():
    from types import SimpleNamespace as Outcome

    outcomes = [
        Outcome(state="COMPLETE", score=0.80, end=105.0),
        Outcome(state="PRUNED", score=0.90, end=106.0),  # pruned: not a result
        Outcome(state="COMPLETE", score=0.85, end=110.0),
        Outcome(state="COMPLETE", score=0.86, end=108.0),  # ended earlier (parallel trials)
    ]
    search = {"outcomes": outcomes, "started": 100.0}

    assert warm_start.reach(search, 0.85, maximize=True) == 8.0
    assert warm_start.reach(search, 0.95, maximize=True) is None
    assert warm_start.reach(search, 0.82, maximize=False) == 5.0  # a loss: at most the target


def test_warm_start_summary_leaves_out_runs_that_never_reached_and_compares_in_the_metrics_direction():
    def run(metric, cold, queue, warm, going_on=None):
        """cold: (best cv, test); the variants: (best cv, reach ratio, test, test when stopped at a third);
        ``going_on`` None: no continuation was searched (version 1 held no CatBoost model)."""
        variants = {"queue": queue, "warm": warm, "continue": going_on}
        return (
            {"metric": metric, "cold": {"best_cv": cold[0], "test": cold[1]}}
            | {
                name: None if v is None else {"best_cv": v[0], "test": v[2], "third": {"test": v[3]}}
                for name, v in variants.items()
            }
            | {f"{name}_reach_ratio": None if v is None else v[1] for name, v in variants.items()}
        )

    runs = [
        run("roc_auc", (0.84, 0.86), (0.83, None, 0.86, 0.85), (0.85, 0.2, 0.85, 0.86), (0.86, 0.1, 0.87, 0.87)),
        # a loss: lower is better
        run("rmse", (100.0, 90.0), (99.0, 0.5, 89.0, 89.0), (101.0, 0.6, 91.0, 92.0), (98.0, 0.4, 92.0, 93.0)),
        run("rmse", (100.0, 90.0), (100.0, 1.5, 90.0, None), (100.0, 0.1, 90.0, 90.0)),  # None: none ended by then
    ]

    summary = warm_start.summarize(runs)

    assert summary["queue"] == {
        "runs": 3,
        "median_reach_ratio": 1.0,
        "reached": "2/3",
        "better_or_equal_cv": 2,
        "third_test_at_least_cold": 1,
        "test_at_least_cold": 3,
    }
    assert summary["warm"] == {
        "runs": 3,
        "median_reach_ratio": 0.2,
        "reached": "3/3",
        "better_or_equal_cv": 2,
        "third_test_at_least_cold": 2,
        "test_at_least_cold": 1,
    }
    assert summary["continue"] == {
        "runs": 2,
        "median_reach_ratio": 0.25,
        "reached": "2/2",
        "better_or_equal_cv": 2,
        "third_test_at_least_cold": 1,
        "test_at_least_cold": 1,
    }
    cold = runs[2]["cold"] | {"search_s": 9.0, "reach_s": 3.0}
    line = warm_start.row(runs[2] | {"dataset": "ames", "seed": 0, "rows": 10, "cold": cold})
    assert line.split()[-1] == "-"  # no continuation in this run


def test_warm_start_fresh_reach_scores_the_incumbents_in_the_order_they_ended_until_one_reaches_the_target():
    from types import SimpleNamespace

    def trial(number, score, end, state="COMPLETE", subsample=None):
        return SimpleNamespace(
            number=number, family="f", params={"n": number}, score=score, end=end, state=state, subsample=subsample
        )

    outcomes = [
        trial(0, 0.80, 105.0),
        trial(1, 0.95, 104.0, subsample=0.25),  # screened: not a final candidate while full trials exist
        trial(2, 0.90, 106.0, state="PRUNED"),
        trial(3, 0.79, 107.0),  # worse than the best so far: never held
        trial(4, 0.84, 110.0),
        trial(5, 0.86, 108.0),  # ended before trial 4: it held the best first, so trial 4 never did
    ]
    search = {"outcomes": outcomes, "started": 100.0}
    fresh_scores = {0: 0.81, 5: 0.83}
    scored = []

    def fresh(family, params):
        scored.append(params["n"])
        return fresh_scores[params["n"]]

    assert [o.number for o in warm_start.incumbents(search, maximize=True)] == [0, 5]
    assert warm_start.fresh_reach(search, 0.81, True, fresh) == {"seconds": 5.0, "trial": 0, "score": 0.81}
    assert scored == [0]  # it stops at the first that reaches the target
    assert warm_start.fresh_reach(search, 0.82, True, fresh) == {"seconds": 8.0, "trial": 5, "score": 0.83}
    assert warm_start.fresh_reach(search, 0.90, True, fresh) is None
    # a loss: the incumbents are the lowest so far, and reaching is scoring at most the target
    assert [o.number for o in warm_start.incumbents(search, maximize=False)] == [0, 3]


def test_warm_start_summary_counts_fresh_reach_and_paired_test_intervals_in_runs_that_measured_them():
    def run(fresh_ratio, test_ci, third_ci):
        variant = {"best_cv": 1.0, "test": 1.0, "third": {"test": 1.0, "test_ci": third_ci}, "test_ci": test_ci}
        return (
            {"metric": "rmse", "cold": {"best_cv": 1.0, "test": 1.0}}
            | {name: variant | {"fresh_reach": None} for name in ("queue", "warm", "continue")}
            | {f"{n}_reach_ratio": 1.0 for n in ("queue", "warm", "continue")}
            | {f"{n}_fresh_reach_ratio": fresh_ratio for n in ("queue", "warm", "continue")}
        )

    runs = [run(0.1, [-5.0, 2.0], [-9.0, -1.0]), run(0.5, [-5.0, -0.5], None), run(None, [0.0, 3.0], [0.0, 1.0])]

    summary = warm_start.summarize(runs)["warm"]

    assert summary["median_fresh_reach_ratio"] == 0.3 and summary["fresh_reached"] == "2/3"
    assert summary["test_not_worse"] == 2  # an interval reaching 0 or above: the test rows do not show it worse
    assert summary["third_test_not_worse"] == 1  # no model at a third (None) is not "not worse"
    assert (
        "median_fresh_reach_ratio"
        not in warm_start.summarize([{k: v for k, v in runs[0].items() if "fresh" not in k}])["warm"]
    )  # a run recorded before the fresh folds


def test_warm_start_summary_counts_the_cold_third_control_in_runs_that_measured_it():
    def run(cold_third_ci, against_cold_third):
        third = {"test": 1.0, "test_ci": [0.0, 1.0]}
        if against_cold_third is not None:
            third["test_ci_against_cold_third"] = against_cold_third
        return (
            {"metric": "rmse", "cold": {"best_cv": 1.0, "test": 1.0, "third": {"test": 1.0, "test_ci": cold_third_ci}}}
            | {n: {"best_cv": 1.0, "test": 1.0, "third": dict(third)} for n in ("queue", "warm", "continue")}
            | {f"{n}_reach_ratio": 1.0 for n in ("queue", "warm", "continue")}
        )

    runs = [run([-3.0, 1.0], [0.5, 4.0]), run([-3.0, -1.0], [-0.5, 4.0]), run([-1.0, 1.0], None)]

    summary = warm_start.summarize(runs)["queue"]

    assert summary["controlled_runs"] == 2  # the third run was recorded before the control
    assert summary["cold_third_not_worse"] == 1
    assert summary["third_better_than_cold_third"] == 1  # an interval above 0; one reaching below 0 is not better
    line = warm_start.control_row(runs[0] | {"dataset": "ames", "seed": 0})
    assert line.split()[:5] == ["ames", "0", "1.0000", "[-3,", "+1]"]
    assert line.count("[+0.5, +4]") == 3  # each warm variant against the cold third


def test_warm_start_rows_arrive_in_time_order_or_shuffled_by_the_seed():
    train = pd.DataFrame({"year": [2010, 2006, 2008, 2006, 2009, 2007], "row": range(6)})

    ordered = warm_start.arrival_order(train, seed=0, order_by=["year"])
    shuffled = warm_start.arrival_order(train, seed=0, order_by=None)

    assert ordered["year"].tolist() == [2006, 2006, 2007, 2008, 2009, 2010]
    assert sorted(shuffled["row"]) == list(range(6)) and shuffled["row"].tolist() != list(range(6))
    with pytest.raises(SystemExit, match="--order-by: \\['month'\\] not among"):
        warm_start.arrival_order(train, seed=0, order_by=["month"])


def test_warm_start_excludes_the_rows_a_condition_holds_for_and_names_a_condition_it_cannot_read():
    frame = pd.DataFrame({"area": [1200, 4500, 3900, 5600], "price": [1, 2, 3, 4]})

    kept, dropped = warm_start.excluding(frame, "area > 4000", "test")

    assert kept["price"].tolist() == [1, 3] and dropped == 2
    assert warm_start.excluding(frame, None, "test") == (frame, 0)
    with pytest.raises(SystemExit, match="--exclude 'rooms > 3' cannot be read on the train rows"):
        warm_start.excluding(frame, "rooms > 3", "train")
    with pytest.raises(SystemExit, match="must be a true/false condition"):
        warm_start.excluding(frame, "area * 2", "train")


def test_catboost_categoricals_starts_from_mlgates_first_trial_without_its_own_options():
    bench = load_benchmark("catboost_categoricals.py", "catboost_categoricals")
    family = yaml.safe_load((REPO / "conf" / "model" / "catboost.yaml").read_text())["catboost"]
    arguments = bench.first_trial()
    assert arguments["depth"] == family["first_trial"]["depth"]
    assert arguments["iterations"] == family["fixed"]["iterations"]
    assert not {"early_stopping_rounds", "class_weight", "selection"} & set(arguments)


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_catboost_categoricals_scores_each_setting_on_folds_with_text_and_missing_categories(task):
    bench = load_benchmark("catboost_categoricals.py", "catboost_categoricals")
    rng = np.random.default_rng(0)
    rows = 120
    colour = rng.choice(["red", "green", "blue", None], rows)
    size = rng.normal(size=rows)
    target = {
        "binary": np.where(colour == "red", "yes", "no"),
        "multiclass": np.where(colour == "red", "a", np.where(size > 0, "b", "c")),
        "regression": size * 3 + (colour == "red"),
    }[task]
    frame = pd.DataFrame({"colour": colour, "size": size, "y": target})
    measured = bench.measure(frame, "y", task, "onehot10", folds=2)
    assert measured["categorical"] == 1
    assert np.isfinite(measured["score"]) and measured["fit_s"] > 0 and measured["added_mb"] >= 0
    if task == "binary":  # the colour decides the class: a model that learned it ranks perfectly
        assert measured["score"] > 0.95


def test_catboost_categoricals_table_has_a_row_per_dataset_and_a_column_per_setting_measured():
    bench = load_benchmark("catboost_categoricals.py", "catboost_categoricals")
    common = {"task": "binary", "rows": 1470, "categorical": 14}
    results = [
        {"dataset": "a", "setting": "default", "score": 0.8301, "fit_s": 1.234, "added_mb": 110.4} | common,
        {"dataset": "a", "setting": "ctr1", "score": 0.8207, "fit_s": 0.5, "added_mb": 40.0} | common,
    ]
    lines = bench.table(results).splitlines()
    assert lines[0] == "| dataset (rows, categorical columns) | metric | default | ctr1 |"
    assert lines[2] == "| a (1,470, 14) | roc_auc ↑ | 0.8301 / 1.23 s / 110 MB | 0.8207 / 0.50 s / 40 MB |"
    assert len(lines) == 3
