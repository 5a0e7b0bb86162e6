"""benchmarks/automl.py: suite parsing, the split, ranks and normalized scores, the record shape (the
harness's processes and a real run are in tests/integration/test_automl_harness.py)."""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest

from tests.helpers import (
    REPO,
    bench_binary_entry,
    bench_binary_frame,
    bench_suite,
    load_benchmark,
)

bench = load_benchmark("automl.py", "automl_bench")


RECORD_KEYS = {"system", "dataset", "task", "metric", "value", "wall_s", "peak_mb", "status"}
# what mlgate is reported on, so nothing may be tuned on it: the project's suite and the shared one
SHARED_SUITE = [bench.DEFAULT_SUITE] if bench.DEFAULT_SUITE.is_dir() else []
REPORTED_SUITES = [REPO / "benchmarks" / "automl_suite", *SHARED_SUITE]


# ---------------------------------------------------------------- suite


def test_load_suite_reads_entries_and_extra_keys(tmp_path):
    bench_binary_frame(20).to_csv(tmp_path / "tiny.csv.gz", index=False)
    suite = bench_suite(tmp_path, [bench_binary_entry(rows=20, positive_class="yes")])
    [dataset] = bench.load_suite(suite)
    assert dataset == bench.Dataset("tiny", tmp_path / "tiny.csv.gz", "churn", "binary", "yes")


@pytest.mark.parametrize("field", ["name", "file", "target", "task"])
def test_load_suite_names_a_missing_field(tmp_path, field):
    bench_binary_frame(20).to_csv(tmp_path / "tiny.csv.gz", index=False)
    entry = bench_binary_entry()
    del entry[field]
    with pytest.raises(bench.SuiteError, match=rf"datasets\[0\]: missing field `{field}`"):
        bench.load_suite(bench_suite(tmp_path, [entry]))


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ("datasets: {}\n", r"field `datasets` must be a non-empty list"),
        ("- just a list\n", r"field `datasets` must be a non-empty list"),
        ("datasets: [oops]\n", r"datasets\[0\] must be a mapping"),
        ("datasets: [{name: a, file: tiny.csv.gz, target: churn, task: ranking}]\n", r"field `task` must be one of"),
        ("datasets: [{name: a, file: nowhere.csv.gz, target: churn, task: binary}]\n", r"field `file` names .*nowhere"),
        ("datasets: [unclosed\n", r"not valid YAML"),
    ],
)
def test_load_suite_rejects_malformed_manifests(tmp_path, entries, message):
    bench_binary_frame(20).to_csv(tmp_path / "tiny.csv.gz", index=False)
    with pytest.raises(bench.SuiteError, match=message):
        bench.load_suite(bench_suite(tmp_path, entries))


def test_load_suite_rejects_repeated_names_and_a_missing_manifest(tmp_path):
    with pytest.raises(bench.SuiteError, match="no such file"):
        bench.load_suite(tmp_path)
    bench_binary_frame(20).to_csv(tmp_path / "tiny.csv.gz", index=False)
    with pytest.raises(bench.SuiteError, match="field `name` repeats tiny"):
        bench.load_suite(bench_suite(tmp_path, [bench_binary_entry(), bench_binary_entry()]))


def test_shared_suite_parses():
    if not bench.DEFAULT_SUITE.is_dir():
        pytest.skip(f"{bench.DEFAULT_SUITE} is not on this machine")
    datasets = bench.load_suite(bench.DEFAULT_SUITE)
    assert {d.task for d in datasets} <= set(bench.TASKS) and all(d.path.is_file() for d in datasets)


def test_select_keeps_suite_order_and_names_unknown_datasets(tmp_path):
    datasets = [bench.Dataset(n, tmp_path / n, "y", "binary") for n in ("a", "b", "c")]
    assert [d.name for d in bench.select(datasets, ["c", "a"])] == ["a", "c"]
    assert bench.select(datasets, None) == datasets
    with pytest.raises(bench.SuiteError, match="unknown dataset.*zz"):
        bench.select(datasets, ["a", "zz"])


def test_read_dataset_names_a_target_that_is_not_a_column(tmp_path):
    bench_binary_frame(20).to_csv(tmp_path / "tiny.csv.gz", index=False)
    dataset = bench.Dataset("tiny", tmp_path / "tiny.csv.gz", "label", "binary")
    with pytest.raises(bench.SuiteError, match="field `target` names 'label'"):
        bench.read_dataset(dataset)


def test_main_stops_on_a_malformed_suite_before_any_run(tmp_path, capsys):
    bench_binary_frame(20).to_csv(tmp_path / "tiny.csv.gz", index=False)
    bench_suite(tmp_path, [bench_binary_entry(target="label")])
    assert bench.main(["--suite", str(tmp_path), "--systems", "catboost", "--scratch", str(tmp_path / "s")]) == 2
    assert "field `target` names 'label'" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


# ---------------------------------------------------------------- split


def test_split_is_seeded_75_25_and_stratified():
    frame = bench_binary_frame(400)
    dataset = bench.Dataset("tiny", Path("tiny.csv"), "churn", "binary")
    train, test = bench.split(frame, dataset, seed=3)
    again, _ = bench.split(frame, dataset, seed=3)
    other, _ = bench.split(frame, dataset, seed=4)
    assert (len(train), len(test)) == (300, 100)
    pd.testing.assert_frame_equal(train, again)
    assert not train.equals(other)
    share = (frame["churn"] == "yes").mean()
    for part in (train, test):
        assert abs((part["churn"] == "yes").mean() - share) <= 1 / len(part)


def test_positive_class_is_the_given_label_or_the_minority():
    target = pd.Series(["no"] * 7 + ["yes"] * 3)
    assert bench.positive_class(target) == "yes"
    assert bench.positive_class(target, "no") == "no"
    assert bench.positive_class(pd.Series([0, 1, 1, 0])) == "0"
    with pytest.raises(bench.SuiteError, match="positive_class 'maybe'"):
        bench.positive_class(target, "maybe")


def test_baselines_are_the_constant_predictors():
    y_train, y_test = pd.Series([1.0, 2.0, 3.0]), pd.Series([2.0, 4.0])
    assert bench.baseline_score("regression", y_train, y_test) == pytest.approx(np.sqrt((0 + 4) / 2))
    assert bench.baseline_score("binary", y_train, y_test) == 0.5
    labels = pd.Series(["a", "a", "b", "c"])
    priors = np.array([0.5, 0.25, 0.25])
    expected = -np.mean(np.log(priors[[0, 1]]))
    assert bench.baseline_score("multiclass", labels, pd.Series(["a", "b"])) == pytest.approx(expected)


# ---------------------------------------------------------------- scoring, ranks, report


def _record(system, value, status="ok", dataset="d1", seed=0, metric="roc_auc", baseline=0.5) -> dict:
    return {
        "system": system,
        "dataset": dataset,
        "task": "binary",
        "metric": metric,
        "value": value,
        "wall_s": 10.0,
        "peak_mb": 100.0,
        "status": status,
        "seed": seed,
        "budget_s": 5.0,
        "fit_s": 6.0,
        "baseline": baseline,
    }


def test_compare_ranks_and_normalizes_with_a_failed_system():
    records = [
        _record("a", 0.9),
        _record("b", 0.7),
        _record("c", None, "failed: boom"),
        _record("a", 100.0, dataset="d2", metric="rmse", baseline=200.0),
        _record("b", 150.0, dataset="d2", metric="rmse", baseline=200.0),
        _record("c", 250.0, dataset="d2", metric="rmse", baseline=200.0),
    ]
    scores = bench.compare(records).set_index(["dataset", "system"])
    assert scores.loc[("d1", "a"), "rank"] == 1 and scores.loc[("d1", "b"), "rank"] == 2
    assert scores.loc[("d1", "c"), "rank"] == 3 and scores.loc[("d1", "c"), "normalized"] == 0
    assert scores.loc[("d1", "a"), "normalized"] == pytest.approx(1)
    assert scores.loc[("d1", "b"), "normalized"] == pytest.approx(0.5)
    assert scores.loc[("d2", "b"), "normalized"] == pytest.approx(0.5)
    assert scores.loc[("d2", "c"), "normalized"] == pytest.approx(-0.5)  # worse than predicting the mean
    assert list(scores.loc["d2", "rank"]) == [1, 2, 3]


def test_compare_averages_ties_and_gives_every_failure_the_worst_rank():
    records = [
        _record("a", 0.8),
        _record("b", 0.8),
        _record("c", None, "timeout"),
        _record("d", None, "install failed: x"),
    ]
    scores = bench.compare(records).set_index("system")
    assert list(scores["rank"]) == [1.5, 1.5, 4, 4]
    assert list(scores["normalized"]) == [1, 1, 0, 0]


def test_normalized_is_zero_when_no_system_beats_the_constant():
    assert bench.normalized(0.5, 0.5, 0.5, higher_is_better=True) == 0
    assert bench.normalized(3.0, 2.0, 3.0, higher_is_better=False) == 0


def test_score_predictions_scores_each_task_and_checks_the_file():
    dataset = bench.Dataset("t", Path("t.csv"), "y", "binary")
    instance = bench.Instance(
        dataset, 0, Path("a"), Path("b"), pd.Series(["no", "yes", "yes", "no"]), 0.5, "yes", ("no", "yes")
    )
    assert bench.score_predictions(instance, pd.DataFrame({"proba": [0.1, 0.8, 0.7, 0.2]})) == 1.0
    with pytest.raises(ValueError, match="3 rows"):
        bench.score_predictions(instance, pd.DataFrame({"proba": [0.1, 0.8, 0.7]}))
    with pytest.raises(ValueError, match="missing or infinite"):
        bench.score_predictions(instance, pd.DataFrame({"proba": [0.1, np.nan, 0.7, 0.2]}))
    multi = bench.Instance(
        bench.Dataset("m", Path("m.csv"), "y", "multiclass"),
        0,
        Path("a"),
        Path("b"),
        pd.Series(["a", "b"]),
        1.0,
        None,
        ("a", "b", "c"),
    )
    loss = bench.score_predictions(multi, pd.DataFrame({"a": [1.0, 0.0], "b": [0.0, 1.0]}))  # no `c` column
    assert loss == pytest.approx(0, abs=1e-9)
    with pytest.raises(ValueError, match="unknown classes"):
        bench.score_predictions(multi, pd.DataFrame({"z": [1.0, 1.0]}))


def test_record_has_the_json_shape_and_keeps_extras(tmp_path):
    dataset = bench.Dataset("tiny", Path("tiny.csv"), "churn", "binary")
    instance = bench.Instance(dataset, 2, Path("a"), Path("b"), pd.Series(["no"]), 0.5, "yes", ("no", "yes"))
    fields = {"value": 0.9, "wall_s": 70.0, "peak_mb": 300.0, "fit_s": 63.0, "trials": 16, "system": "ignored"}
    result = bench.record("flaml", instance, 60.0, "ok", fields)
    assert set(result) >= RECORD_KEYS
    assert result["system"] == "flaml" and result["metric"] == "roc_auc" and result["seed"] == 2
    assert result["trials"] == 16 and result["budget_s"] == 60.0
    failed = bench.record("h2o", instance, 60.0, "install failed: no java")
    assert failed["value"] is None and failed["wall_s"] is None and failed["status"].startswith("install failed")
    bench.write_json([result, {**failed, "value": float("nan")}], tmp_path / "out.json")
    rows = json.loads((tmp_path / "out.json").read_text())
    assert [r["system"] for r in rows] == ["flaml", "h2o"] and rows[1]["value"] is None


def test_render_lists_every_system_with_its_status():
    records = [
        _record("a", 0.9),
        _record("b", None, "failed: ValueError: x | y"),
        _record("a", 0.8, seed=1),
        _record("b", 0.85, seed=1),
    ]
    text = bench.render(records, ["a", "b"], budget_s=5.0)
    assert "| d1 | binary | roc_auc ↑ | 0.8500 ±0.0707 (1.5) | 0.8500 (1.5), 1/2 not ok |" in text
    assert "| **mean rank** | | | 1.50 | 1.50 |" in text
    assert "| **mean normalized score** | | | 0.929 | 0.500 |" in text  # a: (1 + 0.3/0.35) / 2; b: (0 + 1) / 2
    assert "b on d1 (seed 0): failed: ValueError: x | y" in text
    assert "| a | 2 | 2 | 10.0 | 10.0 | 6.0 | 1.0 | 100 |" in text


def test_the_tracking_table_shows_the_wait_its_share_the_cpu_behind_and_the_model_save_apart():
    tracked = _record("mlgate", 0.9) | {
        "wall_s": 32.0,
        "tracking_s": 0.48,
        "tracking_behind_cpu_s": 3.2,
        "cpu_s": 64.0,
        "save_s": 0.512,
        "trials": 17,
    }
    text = bench.render([tracked, _record("flaml", 0.8)], ["mlgate", "flaml"], budget_s=30.0)
    assert "| mlgate | d1 | 0 | 0.5 | 1.5% | 3.2 | 5.0% | 0.51 | 17 |" in text
    assert "| flaml | d1 |" not in text.split("Tracking overhead")[1]  # a peer records no tracking


def test_an_earlier_out_file_gives_the_other_systems_runs_on_these_splits_at_this_budget(tmp_path):
    earlier = tmp_path / "earlier.json"
    runs = [
        _record("mlgate", 0.80),  # the system run now: its fresh run counts, not this one
        _record("flaml", 0.82),
        _record("h2o", 0.83, seed=1),  # another split
        _record("autogluon", 0.84, dataset="d2"),
        {**_record("catboost", 0.81), "budget_s": 60.0},  # another budget
        _record("catboost", None, "timed out"),
        {**_record("autogluon", 0.86), "busy": 1},  # on loaded cores
    ]
    bench.write_json(runs, earlier)
    kept = bench.earlier_records(earlier, 5.0, {("d1", 0)}, ["mlgate"])
    assert [(r["system"], r["value"], r["status"]) for r in kept] == [
        ("flaml", 0.82, "ok"),
        ("catboost", None, "timed out"),
    ]
    loaded = bench.earlier_records(earlier, 5.0, {("d1", 0)}, ["mlgate"], busy=1)
    assert [(r["system"], r["value"]) for r in loaded] == [("autogluon", 0.86)]
    assert "(5 s; 1 busy process on the same cores)" in bench.render(loaded, ["autogluon"], budget_s=5.0)
    text = bench.render([_record("mlgate", 0.85), *kept], ["mlgate", "flaml", "catboost"], budget_s=5.0)
    assert "| **mean rank** | | | 1.00 | 2.00 | 3.00 |" in text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, r"--compare .*earlier.json: .*No such file"),
        ("{not json", r"--compare .*earlier.json: Expecting"),
        ('{"system": "flaml"}', r"not the records an --out file holds"),
        ('[{"system": "flaml"}]', r"not the records an --out file holds"),
        ("[]", r"no run of another system on these datasets and seeds at 5 s"),
    ],
)
def test_an_earlier_file_that_is_not_an_out_file_or_has_nothing_to_compare_is_named(tmp_path, content, message):
    earlier = tmp_path / "earlier.json"
    if content is not None:
        earlier.write_text(content)
    with pytest.raises(bench.SuiteError, match=message):
        bench.earlier_records(earlier, 5.0, {("d1", 0)}, ["mlgate"])


def test_the_wall_of_a_run_that_reports_its_phases_is_split_into_them():
    phases = {"pre_search_s": 1.0, "tune_s": 22.5, "search_s": 21.5, "finish_s": 0.25, "train_s": 2.0}
    run = {**_record("mlgate", 0.8), **phases, "refit_s": 1.5, "save_s": 0.25, "fit_s": 27.0, "wall_s": 29.0}
    text = bench.render([run, _record("flaml", 0.7)], ["mlgate", "flaml"], budget_s=30.0)
    table = text.split("Where the wall went")[1]
    # rest: tune's 22.5 less search and finish, and train's 2.0 less refit and save
    assert "| mlgate | d1 | 0 | 1.0 | 21.5 | 0.25 | 1.5 | 0.25 | 1.0 | 2.0 | 29.0 |" in table
    assert "| flaml |" not in table


def test_a_child_not_yet_execed_is_not_counted_again_in_the_peak():
    usage = {
        10: (1, (500, 900)),  # the runner
        11: (10, (500, 900)),  # spawning git (vfork): the runner's own pages
        12: (10, (40, 300)),  # an H2O JVM, say
        13: (12, (38, 300)),  # ... and a fork of it before exec: copies of its pages, fewer touched yet
        14: (12, (40, 310)),  # a child with an address space of its own
    }
    assert sorted(bench.own_memories(usage)) == [10, 12, 14]


def test_busy_processes_spin_on_the_harness_cores_while_the_runs_go_and_are_gone_after():
    before = {p.pid for p in psutil.Process().children()}
    with bench.load_on_cores(2):
        spinners = [p for p in psutil.Process().children() if p.pid not in before]
        time.sleep(0.5)
        assert len(spinners) == 2 and all(p.cpu_times().user > 0.1 for p in spinners)
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in spinners)


def test_error_line_prefers_the_exception():
    log = "WARNING: something\nTraceback (most recent call last):\n  File x\nValueError: bad input\nH2O closed.\n"
    assert bench.error_line(log) == "ValueError: bad input"
    assert bench.error_line("ERROR: No matching distribution found for foo==9\n").startswith("ERROR: No matching")
    assert bench.error_line("") == "no output"


def load_runner_helper(name: str):
    """A module of automl_runners/_shared, imported beside the protocol it uses (as the runners do)."""
    shared = bench.RUNNERS / "_shared"
    sys.path.insert(0, str(shared))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(shared))


def test_the_neural_baselines_run_only_when_named_and_share_one_venv(monkeypatch, tmp_path):
    assert bench.parse_args([]).systems == list(bench.SYSTEMS)
    assert bench.parse_args(["--systems", "realmlp,tabm,catboost"]).systems == ["realmlp", "tabm", "catboost"]
    with pytest.raises(SystemExit):
        bench.parse_args(["--systems", "tabpfn"])
    made = []
    monkeypatch.setattr(bench, "ensure_venv", lambda name, requirements, venv: made.append((name, requirements, venv)))
    for system in ("realmlp", "tabm"):
        bench.python_for(system)
        assert (bench.RUNNERS / f"{system}.py").is_file()
    assert {(name, requirements.name, venv.name) for name, requirements, venv in made} == {
        ("pytabkit", "pytabkit.txt", "pytabkit")
    }
    assert (bench.PEERS / "pytabkit.txt").is_file()


def test_the_neural_runners_fill_numeric_gaps_with_the_training_median_and_keep_text_as_categories():
    neural = load_runner_helper("neural")
    X = pd.DataFrame({"size": [1.0, np.nan, 3.0, 10.0], "empty": [np.nan] * 4, "kind": ["a", None, "b", "a"]})
    test = pd.DataFrame({"size": [np.nan, 2.0], "empty": [np.nan, 1.0], "kind": ["c", "a"]})
    X_ready, test_ready, categorical = neural.prepared(X, test)
    assert categorical == ["kind"]
    assert X_ready["size"].tolist() == [1.0, 3.0, 3.0, 10.0] and test_ready["size"].tolist() == [3.0, 2.0]
    assert X_ready["empty"].tolist() == [0.0] * 4 and test_ready["empty"].tolist() == [0.0, 1.0]
    assert X_ready["kind"].dtype == "category" and test_ready["kind"].tolist() == ["c", "a"]
    assert X["size"].isna().sum() == 1  # the caller's frames are left as they were


def test_the_projects_automl_suite_loads_and_every_dataset_splits_for_its_task(tmp_path):
    """benchmarks/automl_suite: twelve real datasets, four per task, each read and split as a run would."""
    datasets = bench.load_suite(REPO / "benchmarks" / "automl_suite")
    assert len(datasets) == 12
    assert sorted(d.task for d in datasets) == ["binary"] * 4 + ["multiclass"] * 4 + ["regression"] * 4
    for dataset in datasets:
        frame = bench.read_dataset(dataset)
        assert 800 <= len(frame) <= 60_000, dataset.name
        instance = bench.prepare(frame, dataset, 0, tmp_path / dataset.name)
        if dataset.task == "multiclass":
            assert len(instance.classes) >= 3, dataset.name


def test_the_dev_suite_loads_and_shares_no_dataset_with_the_suite_mlgate_is_reported_on(tmp_path):
    """benchmarks/dev_suite: what defaults are tuned on. None of it is a reported dataset under another
    name (the same rows and columns)."""

    def shape(dataset) -> tuple[int, frozenset]:
        frame = bench.read_dataset(dataset)
        return len(frame), frozenset(frame.columns)

    reported = {shape(d) for suite in REPORTED_SUITES for d in bench.load_suite(suite)}
    datasets = bench.load_suite(REPO / "benchmarks" / "dev_suite")
    assert {d.task for d in datasets} == {"binary", "multiclass", "regression"} and len(datasets) >= 14
    for dataset in datasets:
        assert shape(dataset) not in reported, dataset.name
        frame = bench.read_dataset(dataset)
        assert 800 <= len(frame) <= 60_000, dataset.name
        bench.prepare(frame, dataset, 0, tmp_path / dataset.name)


# ---------------------------------------------------------------- benchmarks/portfolio.py

portfolio = load_benchmark("portfolio.py", "portfolio_bench")


def test_errors_are_rescaled_per_dataset_from_its_best_to_its_median_and_capped():
    scored = [
        {"maximize": True, "scores": [0.9, 0.8, 0.7, float("nan")]},  # AUC: 0.9 best, median 0.8
        {"maximize": False, "scores": [10.0, 12.0, 100.0, 11.0]},  # RMSE: 10 best, median 11.5
    ]

    errors = portfolio.rescaled_errors(scored, cap=3.0)

    np.testing.assert_allclose(errors[0], [0.0, 1.0, 2.0, 3.0])  # a failed fit counts as the cap
    np.testing.assert_allclose(errors[1], [0.0, 2 / 1.5, 3.0, 1 / 1.5])


def test_the_greedy_portfolio_adds_what_covers_the_datasets_the_chosen_ones_do_badly_on():
    errors = np.array(
        [
            [0.0, 2.0, 0.5, 1.0],  # dataset 0: candidate 0 is best
            [2.0, 0.0, 0.5, 1.0],  # dataset 1: candidate 1
            [2.0, 2.0, 0.5, 0.0],  # dataset 2: candidate 3
        ]
    )

    steps = portfolio.greedy(errors, size=10, min_gain=0.01)

    assert [index for index, _ in steps] == [2, 0, 1, 3]  # the all-rounder first, then each specialist
    np.testing.assert_allclose([mean for _, mean in steps], [0.5, 1 / 3, 1 / 6, 0.0])
    assert [i for i, _ in portfolio.greedy(errors, size=2, min_gain=0.01)] == [2, 0]
    assert [i for i, _ in portfolio.greedy(errors, size=10, min_gain=0.2)] == [2]  # later steps gain less
    # after what the first trials reach (dataset 2 covered already), the specialists for 0 and 1 come first
    after = portfolio.greedy(errors, size=10, min_gain=0.01, start=np.array([1.0, 1.0, 0.0]))
    assert [index for index, _ in after] == [0, 1]
    np.testing.assert_allclose([mean for _, mean in after], [1 / 3, 0.0])
