"""The Task classes: one per task type, owning what differs between binary, multiclass, regression and
clustering (a task without a target)."""

import numpy as np
import pandas as pd
import pytest

from mlgate import config
from mlgate.modelling import ensemble, metrics, models
from mlgate.modelling.data import DataSpec, target_vector
from mlgate.modelling.task import TASKS, Binary, Clustering, Multiclass, Regression, for_features, for_spec, named

TASK_NAMES = ("binary", "multiclass", "regression")  # the supervised ones, which learn a target
LABELS = {"binary": ["No", "Yes"], "multiclass": ["high", "low", "mid"]}


def _spec(task: str) -> DataSpec:
    head = {
        "binary": {"target": "y", "positive_class": "Yes", "metric": "roc_auc"},
        "multiclass": {"target": "y", "classes": LABELS["multiclass"], "metric": "log_loss"},
        "regression": {"target": "y", "metric": "rmse"},
    }[task]
    target_type = "float" if task == "regression" else "string"
    section = {
        "name": "tiny",
        "task": task,
        **head,
        "source": {"kind": "file", "path": "tiny.csv", "format": "csv"},
        "contract": {"columns": {"x": {"type": "float"}, "g": {"type": "string"}, "y": {"type": target_type}}},
    }
    return config.build(DataSpec, section, "data")


def _frame(task: str, rows: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    x = rng.normal(size=rows)
    if task == "regression":
        y = 3 * x + rng.normal(scale=0.1, size=rows)
    else:
        labels = LABELS[task]
        y = np.asarray(labels, dtype=object)[np.arange(rows) % len(labels)]
        x = x + np.arange(rows) % len(labels) * 3
    return pd.DataFrame({"x": x, "g": np.where(x > 0, "a", "b"), "y": y})


def _features(task: str) -> dict:
    """What train writes to features.json, as far as the Task reads it."""
    return {
        "binary": {"task": "binary", "positive_class": "Yes", "negative_class": "No", "threshold": 0.5},
        "multiclass": {"task": "multiclass", "classes": LABELS["multiclass"]},
        "regression": {"task": "regression"},
    }[task]


@pytest.fixture(params=TASK_NAMES)
def fitted(request):
    task = request.param
    spec, frame = _spec(task), _frame(task)
    pipeline = models.build("linear", {}, spec).fit(frame[spec.features], target_vector(frame, spec))
    return task, spec, frame, pipeline


def test_every_task_type_is_registered_under_its_name():
    assert tuple(TASKS) == (*TASK_NAMES, "clustering")
    assert [type(named(name)) for name in TASKS] == [Binary, Multiclass, Regression, Clustering]
    assert [named(name).supervised for name in TASKS] == [True, True, True, False]
    with pytest.raises(ValueError, match="data.task must be one of"):
        named("ranking")


def _clustering_spec(**changes) -> DataSpec:
    section = {
        "name": "segments",
        "task": "clustering",
        "target": None,
        "metric": "silhouette",
        "source": {"kind": "file", "path": "tiny.csv", "format": "csv"},
        "contract": {"columns": {"x": {"type": "float"}, "z": {"type": "float"}, "g": {"type": "string"}}},
    } | changes
    return config.build(DataSpec, section, "data")


def test_a_clustering_declaration_has_no_target_and_every_column_is_a_feature():
    spec = _clustering_spec()
    assert spec.target is None and spec.features == ["x", "z", "g"]
    assert spec.numeric_features == ["x", "z"] and spec.categorical_features == ["g"]
    with pytest.raises(config.ConfigError, match="a clustering task has no target; set it to null"):
        _clustering_spec(target="x")
    with pytest.raises(config.ConfigError, match="'rmse' is not a clustering metric"):
        _clustering_spec(metric="rmse")
    with pytest.raises(config.ConfigError, match=r"\['when'\] are datetime or text columns"):
        _clustering_spec(
            contract={"columns": {"x": {"type": "float"}, "when": {"type": "datetime"}}},
        )
    with pytest.raises(config.ConfigError, match="data.target is required for a binary task"):
        _clustering_spec(task="binary", metric="roc_auc")


def test_a_clustering_model_answers_its_cluster_and_membership_and_the_frame_reads_back():
    from mlgate.modelling import clustering
    from mlgate.modelling.features import InputGuard
    from tests.helpers import blobs

    frame, _ = blobs()
    columns = {"x": {"type": "float"}, "y": {"type": "float"}, "kind": {"type": "string"}}
    spec = _clustering_spec(contract={"columns": columns})
    segmenter = clustering.Segmenter(
        "kmeans", {"n_clusters": 3, "n_init": 2}, spec.numeric_features, spec.categorical_features
    )
    model = clustering.GuardedSegmenter(InputGuard.from_spec(spec), segmenter).fit(frame)
    task = for_features({"task": "clustering"})
    served = task.output_frame(*task.outputs(model, frame))
    assert list(served.columns) == task.output_columns() == ["cluster", "membership"]
    assert served["cluster"].dtype == np.int64 and set(served["cluster"]) == {0, 1, 2}
    cluster, membership = task.read_outputs(served)
    np.testing.assert_array_equal(cluster, model.predict(frame))
    assert (membership <= 0).all()  # k-means: minus the distance to the centre
    with pytest.raises(ValueError, match="a clustering task has no target"):
        task.encode(pd.Series([1, 2]))


@pytest.mark.parametrize("task", TASK_NAMES)
def test_encoding_then_decoding_gives_the_target_back(task):
    frame = _frame(task)
    learning = for_features(_features(task))
    encoded = learning.encode(frame["y"])
    assert encoded.dtype == (np.float64 if task == "regression" else np.int64)
    np.testing.assert_array_equal(learning.decode(encoded), frame["y"].to_numpy())
    np.testing.assert_array_equal(for_spec(_spec(task)).encode(frame["y"]), encoded)


def test_encoding_refuses_a_class_the_declaration_does_not_list():
    with pytest.raises(ValueError, match=r"holds classes not in data.classes: \['top'\]"):
        Multiclass(classes=("low", "mid", "high")).encode(pd.Series(["low", "top"], name="y"))


def test_the_positive_class_is_one_and_every_other_label_zero():
    np.testing.assert_array_equal(Binary("Yes").encode(pd.Series(["Yes", "No", "no", "YES"])), [1, 0, 0, 0])


@pytest.mark.parametrize("task", TASK_NAMES)
def test_the_metrics_that_apply_are_defined_and_others_are_refused(task):
    learning = named(task)
    assert set(learning.metrics) <= set(metrics.METRICS)
    assert metrics.TASK_METRICS[task] == learning.metrics
    learning.check_metric(learning.default_metric)
    foreign = next(name for name in metrics.METRICS if name not in learning.metrics)
    with pytest.raises(ValueError, match=f"is not a {task} metric"):
        metrics.get(foreign, task)


def test_all_scores_lists_the_tasks_metrics_in_order(fitted):
    task, spec, frame, pipeline = fitted
    prediction, probability = models.predict(pipeline, frame[spec.features], task)
    scores = metrics.all_scores(task, target_vector(frame, spec), prediction, probability)
    assert tuple(scores) == named(task).metrics


def test_the_served_frame_has_the_tasks_columns_and_reads_back_to_the_outputs(fitted):
    task, spec, frame, pipeline = fitted
    learning = for_features(_features(task))
    prediction, probability = learning.outputs(pipeline, frame[spec.features])
    served = learning.output_frame(prediction, probability)
    expected = {
        "binary": ["prediction", "probability"],
        "multiclass": ["prediction", "probability_high", "probability_low", "probability_mid"],
        "regression": ["prediction"],
    }[task]
    assert list(served.columns) == learning.output_columns() == expected
    read_prediction, read_probability = for_spec(spec).read_outputs(served)
    np.testing.assert_array_equal(read_prediction, prediction)
    if probability is None:
        assert read_probability is None
    else:
        np.testing.assert_array_equal(read_probability, probability)
    logged = served.add_prefix("output_")  # as the prediction log keeps them
    np.testing.assert_array_equal(for_spec(spec).read_outputs(logged, prefix="output_")[0], prediction)


def test_the_served_labels_are_the_declared_ones(fitted):
    task, spec, frame, pipeline = fitted
    served = for_features(_features(task)).output_frame(*named(task).outputs(pipeline, frame[spec.features]))
    if task == "regression":
        assert served["prediction"].dtype == np.float64
    else:
        assert set(served["prediction"]) <= set(LABELS[task])
        assert served["prediction"].dtype == object


def test_a_served_binary_model_decides_at_its_own_threshold():
    probability = np.array([[0.7, 0.3], [0.4, 0.6], [0.1, 0.9]])

    class Fixed:
        threshold = 0.95

        def predict_proba(self, X):
            return probability

    served = Binary("Yes", "No", threshold=0.5)
    assert list(served.output_frame(*served.outputs(Fixed(), None))["prediction"]) == ["No", "Yes", "Yes"]
    prediction, _ = named("binary").outputs(Fixed(), None)  # without one: the model's own
    np.testing.assert_array_equal(prediction, [0, 0, 0])


@pytest.mark.parametrize("task", TASK_NAMES)
def test_classification_stratifies_on_labels_and_regression_on_target_deciles(task):
    target = _frame(task, rows=200)["y"]
    learning = named(task)
    strata = learning.strata(target)
    assert learning.stratified == learning.is_classification == (task != "regression")
    if learning.is_classification:
        pd.testing.assert_series_equal(strata, target.astype(str))
    else:
        assert sorted(strata.unique()) == list(range(4))  # 200 rows: one stratum per 50
        assert target[strata == 0].max() < target[strata == 3].min()


@pytest.mark.parametrize("task", TASK_NAMES)
def test_a_family_uses_the_classifier_or_the_regressor(task):
    chosen = named(task).variant("classifier", "regressor")
    assert chosen == ("regressor" if task == "regression" else "classifier")


@pytest.mark.parametrize("task", TASK_NAMES)
def test_split_summarises_the_tasks_target_shares(task):
    frame = _frame(task)
    shares = for_spec(_spec(task)).split_shares({"train": frame["y"], "test": frame["y"].head(6)})
    if task == "binary":
        assert shares == {"positive_share": {"train": 0.5, "test": 0.5}}
    elif task == "multiclass":
        assert shares["class_share"]["test"] == {"high": 1 / 3, "low": 1 / 3, "mid": 1 / 3}
    else:
        assert shares == {}


def test_contract_problems_of_the_target_by_task():
    one_class = pd.Series(["No", "No"], name="y")
    assert [rule for rule, _ in Binary("Yes").target_problems(one_class, 1, labelled=True)] == [
        "min_classes",
        "positive_class",
    ]
    batch = pd.Series(["low", "top"], name="y")
    labels = Multiclass(classes=("low", "mid", "high"))
    assert [rule for rule, _ in labels.target_problems(batch, 1, labelled=False)] == ["classes"]
    assert [rule for rule, _ in labels.target_problems(batch, 1, labelled=True)] == ["classes", "min_classes"]
    assert Regression().target_problems(pd.Series([1.0], name="y"), 1, labelled=True) == []


@pytest.mark.parametrize(
    ("task", "positive_class", "classes", "message"),
    [
        ("binary", None, None, "data.positive_class is required"),
        ("binary", "Yes", ["a", "b", "c"], "applies to a multiclass task, not 'binary'"),
        ("multiclass", None, ["a", "b"], "at least three"),
        ("multiclass", None, ["a", "b", "a"], "lists a class twice"),
        ("regression", None, ["a", "b", "c"], "applies to a multiclass task, not 'regression'"),
    ],
)
def test_the_declaration_must_give_the_labels_the_task_needs(task, positive_class, classes, message):
    with pytest.raises(ValueError, match=message):
        TASKS[task].declared_classes(positive_class, classes)


def test_declared_classes_are_text():
    assert Multiclass.declared_classes(None, [1, 2, 3]) == ["1", "2", "3"]


def test_a_final_model_of_one_member_predicts_as_its_pipeline(fitted):
    task, spec, frame, pipeline = fitted
    X = frame[spec.features]
    final = ensemble.FinalModel([pipeline], task=task).fit(X, target_vector(frame, spec))
    expected_prediction, expected_probability = named(task).outputs(pipeline, X)
    prediction, probability = named(task).outputs(final, X)
    np.testing.assert_array_equal(prediction, expected_prediction)
    np.testing.assert_array_equal(final.predict(X), expected_prediction)
    if expected_probability is not None:
        np.testing.assert_allclose(probability, expected_probability)
    else:
        with pytest.raises(AttributeError, match="no class probabilities"):
            final.predict_proba(X)


@pytest.mark.parametrize("task", ("binary", "regression"))
def test_a_stacking_combiner_applies_to_the_outputs_it_was_fitted_on(task):
    rng = np.random.default_rng(0)
    y = (np.arange(100) % 2).astype(float) if task == "binary" else rng.normal(size=100)
    if task == "binary":
        members = np.clip(np.column_stack([y * 0.6 + 0.2, rng.uniform(size=100)]), 0.01, 0.99)
    else:
        members = np.column_stack([y + rng.normal(scale=0.1, size=100), rng.normal(size=100)])
    combiner = named(task).stacking_fit(members, y)
    combined = ensemble.combine(combiner, members, task)
    assert combiner["coef"][0] > combiner["coef"][1] >= 0
    assert combined.shape == (100,)
    if task == "binary":
        assert ((combined > 0) & (combined < 1)).all()


def test_every_supervised_task_stacks_and_clustering_does_not():
    assert [named(t).can_stack for t in TASK_NAMES] == [True, True, True]
    assert not named("clustering").can_stack


@pytest.mark.parametrize("task", TASK_NAMES)
def test_curves_are_the_tasks_tables(task):
    y = np.array([0, 1, 0, 1]) if task == "binary" else np.array([0, 1, 2, 1])
    probability = np.array([0.2, 0.8, 0.4, 0.6]) if task == "binary" else None
    tables = named(task).curves(y, y, probability)
    assert (
        set(tables)
        == {
            "binary": {"roc", "precision_recall", "confusion"},
            "multiclass": {"confusion"},
            "regression": {"residuals"},
        }[task]
    )


@pytest.mark.parametrize("task", TASK_NAMES)
def test_the_labels_train_records_give_the_served_task_back(task):
    spec, frame = _spec(task), _frame(task)
    recorded = {"task": task, **for_spec(spec).label_features(frame["y"])}
    assert recorded == {k: v for k, v in _features(task).items() if k != "threshold"}
    assert for_features(recorded).output_columns() == for_features(_features(task)).output_columns()


def test_only_binary_tunes_a_threshold_and_only_multiclass_skips_it_saying_why():
    assert [named(t).decides_by_threshold for t in TASK_NAMES] == [True, False, False]
    assert named("binary").finish_skipped is None and named("regression").finish_skipped is None
    assert set(named("multiclass").finish_skipped) == {"threshold"}
    assert [named(t).calibrates for t in TASK_NAMES] == [True, True, False]


def test_only_classifiers_give_probabilities_and_only_binary_has_one_to_calibrate():
    assert [named(t).has_probabilities for t in TASK_NAMES] == [True, True, False]
    assert [named(t).calibration_applies for t in TASK_NAMES] == [True, False, False]


def test_each_tasks_comparison_plot_is_one_the_gate_draws():
    from mlgate.reports.gate_plots import OUTPUT_PLOTS

    assert {t: named(t).comparison_plot for t in TASK_NAMES} == {
        "binary": "roc",
        "multiclass": "class_recall",
        "regression": "residuals",
    }
    assert {named(t).comparison_plot for t in TASK_NAMES} <= set(OUTPUT_PLOTS)


def test_only_multiclass_adds_a_limitation_to_the_model_card():
    assert named("binary").limitation is None and named("regression").limitation is None
    assert "calibrated at most by one temperature" in named("multiclass").limitation


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        ("binary", "the probability that `y` is `Yes` (and the label, `Yes` from a probability of 0.35)"),
        (
            "multiclass",
            "the class of `y` (one of `high`, `low`, `mid`: the most probable) and each class's probability",
        ),
        ("regression", "`y` (a number)"),
    ],
)
def test_the_served_output_in_words_names_the_target_and_its_labels(task, expected):
    assert for_spec(_spec(task)).describe_output("y", 0.35) == expected


def test_usable_labels_are_present_and_declared_or_numbers():
    values = pd.Series(["Yes", None, "No", "maybe", "3.5"], name="y")
    np.testing.assert_array_equal(Binary("Yes").labelled(values, None), [True, False, True, True, True])
    np.testing.assert_array_equal(Binary("Yes").labelled(values, ["No", "Yes"]), [True, False, True, False, False])
    classes = Multiclass(classes=("No", "Yes", "3.5"))
    np.testing.assert_array_equal(classes.labelled(values, ["No"]), [True, False, True, False, True])
    np.testing.assert_array_equal(Regression().labelled(values, None), [False, False, False, False, True])


def test_labelled_rows_are_unscorable_when_a_metric_lacks_a_class():
    assert (
        Binary("Yes").unscorable(pd.Series(["Yes", "Yes"], name="y")) == "its labelled rows hold one class of `y` only"
    )
    assert Binary("Yes").unscorable(pd.Series(["Yes", "No"], name="y")) is None
    labels = Multiclass(classes=("low", "mid", "high"))
    assert labels.unscorable(pd.Series(["low", "mid"], name="y")) == "its labelled rows hold 2 of the 3 classes of `y`"
    assert labels.unscorable(pd.Series(["low", "mid", "high"], name="y")) is None
    assert Regression().unscorable(pd.Series([1.0], name="y")) is None


def test_prediction_drift_watches_the_probability_of_binary_and_the_prediction_otherwise():
    output = (np.array([0, 1]), np.array([0.2, 0.9]))
    np.testing.assert_array_equal(named("binary").drift_output(output), [0.2, 0.9])
    np.testing.assert_array_equal(named("multiclass").drift_output(output), [0, 1])
    np.testing.assert_array_equal(named("regression").drift_output((np.array([1.5]), None)), [1.5])


def test_drift_bins_give_each_class_a_bin():
    assert named("binary").drift_bins == 10 and named("regression").drift_bins == 10
    assert Multiclass(classes=("a", "b", "c")).drift_bins == 10
    assert Multiclass(classes=tuple("abcdefghijkl")).drift_bins == 12
