"""Multiclass pieces on tiny real data (the iris flowers): contract, metrics, every family, the
cross-validation's probability matrices, ensemble selection, the final model and the pyfunc output."""

import pickle

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn import metrics as skm
from sklearn.datasets import load_iris

from mlgate import config
from mlgate.errors import StageError
from mlgate.modelling import ensemble, metrics, models, schema
from mlgate.modelling.data import DataSpec, check_contract, target_vector
from mlgate.modelling.ensemble import Candidate, FinalModel, FinishSettings
from mlgate.modelling.task import STACKING_CS
from tests.helpers import SMALL_PARAMS

CLASSES = ["setosa", "versicolor", "virginica"]


def iris_frame() -> pd.DataFrame:
    """Iris with a string class column and a categorical feature (petal size, in three bands)."""
    data = load_iris(as_frame=True)
    frame = data.data.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    frame["petal_band"] = pd.cut(frame.sepal_width, [0, 2.9, 3.3, 9], labels=["narrow", "mid", "wide"]).astype(str)
    frame["species"] = np.asarray(CLASSES)[data.target]
    return frame


def iris_spec(frame: pd.DataFrame | None = None, **changes) -> DataSpec:
    frame = iris_frame() if frame is None else frame
    drafted = schema.draft(
        frame, "iris", {"kind": "file", "path": "data/source/iris.csv", "format": "csv"}, "species", origin="test"
    )
    section = yaml.safe_load(drafted.text) | changes
    return config.build(DataSpec, section, "data")


@pytest.fixture(scope="module")
def iris():
    frame = iris_frame()
    return frame, iris_spec(frame)


# --- contract ------------------------------------------------------------------------------------


def test_a_string_target_with_three_classes_is_inferred_multiclass_with_its_classes_recorded(iris):
    frame, spec = iris
    assert schema.infer_task(frame.species) == "multiclass"
    assert spec.task == "multiclass" and spec.metric == "log_loss" and spec.positive_class is None
    assert spec.classes == CLASSES
    assert spec.contract.min_class_count == 25
    assert check_contract(frame, spec).passed


def test_target_vector_is_the_class_position():
    frame, spec = iris_frame(), iris_spec()
    y = target_vector(frame, spec)
    assert y.dtype == np.int64 and set(y) == {0, 1, 2}
    assert (np.asarray(CLASSES)[y] == frame.species).all()


def test_a_class_too_small_for_stratified_folds_is_refused_naming_class_and_column():
    frame = iris_frame()
    frame.loc[frame.index[:3], "species"] = "hybrid"
    with pytest.raises(ValueError, match=r"target 'species': class\(es\) 'hybrid' \(3 rows\) have fewer than 10 rows"):
        schema.infer_contract(frame, "species", "multiclass")


def test_a_multiclass_spec_needs_its_classes(iris):
    frame, _ = iris
    section = yaml.safe_load(schema.draft(frame, "iris", {"kind": "file", "path": "x.csv"}, "species", origin="t").text)
    with pytest.raises(ValueError, match="data.classes must list"):
        config.build(DataSpec, section | {"classes": None}, "data")


def test_the_contract_flags_an_undeclared_class_and_a_missing_one(iris):
    frame, spec = iris
    unknown = frame.assign(species=frame.species.replace({"setosa": "hybrid"}))
    rules = {v.rule for v in check_contract(unknown, spec).violations if v.column == "species"}
    assert {"classes", "min_classes"} <= rules
    # a new batch may hold a few classes only, but never an undeclared one
    few = frame[frame.species != "setosa"]
    assert check_contract(few, spec, labelled=False).passed
    assert not check_contract(unknown, spec, labelled=False).passed


# --- metrics -------------------------------------------------------------------------------------


def test_multiclass_metrics_match_scikit_learn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    p = rng.dirichlet([1, 1, 1], 300)
    p[np.arange(300), y] += 0.5
    p /= p.sum(axis=1, keepdims=True)
    label = p.argmax(axis=1)
    scores = metrics.all_scores("multiclass", y, label, p)
    assert scores["log_loss"] == pytest.approx(skm.log_loss(y, p))
    assert scores["roc_auc_ovr"] == pytest.approx(skm.roc_auc_score(y, p, multi_class="ovr"))
    assert scores["f1_macro"] == pytest.approx(skm.f1_score(y, label, average="macro"))
    assert scores["accuracy"] == pytest.approx(skm.accuracy_score(y, label))
    assert metrics.get("log_loss", "multiclass").greater_is_better is False
    with pytest.raises(ValueError, match="not a multiclass metric"):
        metrics.get("roc_auc", "multiclass")


def test_bootstrap_and_slices_skip_rows_without_every_class_for_one_vs_rest_auc():
    y = np.array([0, 0, 1, 1, 2, 2, 0, 1])
    p = np.eye(3)[y] * 0.7 + 0.1
    draws = metrics.bootstrap_scores("roc_auc_ovr", y, p, p[::-1], resamples=200, seed=0)
    assert draws.shape[1] == 2 and 0 < len(draws) < 200
    groups = np.array(["a", "a", "a", "a", "a", "a", "b", "b"])
    by_value = {value: score for value, _, score in metrics.slice_scores("roc_auc_ovr", y, p, groups)}
    assert by_value == {"a": 1.0, "b": None}
    assert all(s is not None for _, _, s in metrics.slice_scores("log_loss", y, p, groups))


# --- models and the search -------------------------------------------------------------------------


@pytest.mark.parametrize("family", sorted(models.FAMILIES))
def test_every_family_fits_multiclass_and_gives_class_probabilities(iris, family):
    frame, spec = iris
    params = dict(SMALL_PARAMS[family])
    if family in ("catboost", "linear", "random_forest", "extra_trees", "hist_gradient_boosting", "lightgbm"):
        params["class_weight"] = "balanced"
    model = models.build(family, params, spec).fit(frame[spec.features], target_vector(frame, spec))
    prediction, probability = models.predict(model, frame[spec.features], "multiclass")
    assert probability.shape == (len(frame), 3)
    np.testing.assert_allclose(probability.sum(axis=1), 1.0, atol=1e-6)
    assert metrics.score("accuracy", target_vector(frame, spec), prediction, probability) > 0.8


def test_catboost_uses_its_multiclass_loss(iris):
    frame, spec = iris
    model = models.build("catboost", SMALL_PARAMS["catboost"], spec).fit(
        frame[spec.features], target_vector(frame, spec)
    )
    assert model[-1].model_.get_all_params()["loss_function"] == "MultiClass"


def test_cross_validation_keeps_each_trials_probability_matrix(iris):
    from mlgate.stages.tune import CrossValidation

    frame, spec = iris
    objective = CrossValidation(frame, spec, folds=3, parallel_trials=1, seed=0)
    score, per_fold = objective("linear", {"alpha": 1.0}, lambda step, value: None)
    result = objective.result("linear", {"alpha": 1.0})
    assert result.predictions.shape == (len(frame), 3) and not np.isnan(result.predictions).any()
    assert score == pytest.approx(np.mean(per_fold)) and score < 0.5  # log loss
    # stratified: every fold holds every class
    assert all(np.unique(objective.y[rows]).size == 3 for _, rows in objective.folds)


def test_cross_validation_refuses_a_class_with_fewer_rows_than_folds(iris):
    from mlgate.stages.tune import CrossValidation

    frame, spec = iris
    thin = pd.concat([frame[frame.species != "setosa"], frame[frame.species == "setosa"].head(2)], ignore_index=True)
    with pytest.raises(StageError, match=r"target 'species': class\(es\) 'setosa' \(2 rows\) .* 3 stratified folds"):
        CrossValidation(thin, spec, folds=3, parallel_trials=1, seed=0)


# --- finishing ---------------------------------------------------------------------------------------


def noisy_probability_views(n=1500, k=3, seed=0):
    """A k-class target and three probability matrices: two independent noisy views, one noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)

    def view(scale):
        logits = np.eye(k)[y] * 1.5 + rng.normal(scale=scale, size=(n, k))
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)

    noise = rng.dirichlet(np.ones(k), n)
    return y, np.arange(n) % 5, {"a": view(1.2), "b": view(1.2), "noise": noise}


def test_caruana_selection_over_probability_matrices_beats_the_best_view():
    y, folds, views = noisy_probability_views()
    weights = ensemble.caruana_weights(np.stack(list(views.values()), axis=1), y, "log_loss", rounds=20)
    assert weights.sum() == pytest.approx(1.0) and weights[2] < 0.2 and weights[0] > 0 and weights[1] > 0
    candidates = [
        Candidate(i, name, {}, ensemble.fold_score("log_loss", y, p, folds), p)
        for i, (name, p) in enumerate(views.items())
    ]
    choice = ensemble.choose_ensemble(
        candidates, y, folds, task="multiclass", metric="log_loss", settings=FinishSettings()
    )
    assert choice.method in ("caruana", "stacking") and choice.score < choice.scores["single"]
    assert {"caruana", "stacking"} <= set(choice.scores)  # both tried, by cross-fitted log loss
    assert choice.predictions.shape == (len(y), 3)
    np.testing.assert_allclose(choice.predictions.sum(axis=1), 1.0)


def test_stacking_is_a_regularised_logistic_regression_on_every_members_log_class_probabilities():
    """Two independent views of the class: a regression on their log probabilities (their product, in
    effect) is sharper than their mean, which Caruana selection is limited to; the noise gets little."""
    y, folds, views = noisy_probability_views()
    candidates = [
        Candidate(i, name, {}, ensemble.fold_score("log_loss", y, p, folds), p)
        for i, (name, p) in enumerate(views.items())
    ]
    stacked = ensemble.choose_ensemble(
        candidates, y, folds, task="multiclass", metric="log_loss", settings=FinishSettings(ensemble="stacking")
    )
    caruana = ensemble.choose_ensemble(
        candidates, y, folds, task="multiclass", metric="log_loss", settings=FinishSettings(ensemble="caruana")
    )

    coef = np.asarray(stacked.combiner["coef"])  # (classes, members x classes)
    own_class = {m.family: np.trace(coef[:, 3 * i : 3 * i + 3]) for i, m in enumerate(stacked.members)}
    assert stacked.method == "stacking" and coef.shape == (3, 9) and len(stacked.combiner["intercept"]) == 3
    assert own_class["a"] > 1 and own_class["b"] > 1 and abs(own_class["noise"]) < 0.2
    assert stacked.combiner["C"] in STACKING_CS
    assert stacked.score < caruana.score < stacked.scores["single"]
    pooled = np.stack([views[m.family] for m in stacked.members], axis=1)
    np.testing.assert_allclose(ensemble.combine(stacked.combiner, pooled, "multiclass").sum(axis=1), 1.0)


def test_finish_records_why_the_threshold_is_skipped_and_chooses_a_calibration(iris):
    from mlgate.adapters import optuna_study
    from mlgate.stages.tune import CrossValidation, finish

    frame, spec = iris
    objective = CrossValidation(frame, spec, folds=3, parallel_trials=1, seed=0)
    outcomes = []
    for number, (family, params) in enumerate(
        [
            ("linear", {"alpha": 1.0}),
            ("knn", {"n_neighbors": 15}),
            ("random_forest", {"n_estimators": 10, "max_depth": 3}),
        ]
    ):
        score, per_fold = objective(family, params, lambda step, value: None)
        outcomes.append(
            optuna_study.TrialOutcome(
                number=number,
                family=family,
                params=params,
                state="COMPLETE",
                score=score,
                fold_scores=per_fold,
                start=0.0,
                end=1.0,
            )
        )
    finished = finish(outcomes, objective, spec, FinishSettings())
    assert set(finished.skipped) == {"threshold"}
    assert set(finished.calibration_log_loss) == {"none", "temperature"}
    chosen = finished.calibration_method
    assert finished.calibration_log_loss[chosen] == min(finished.calibration_log_loss.values())
    assert finished.threshold["objective"] == "none"
    assert finished.cv_score <= min(o.score for o in outcomes) + 1e-12
    stacked = finish(outcomes, objective, spec, FinishSettings(ensemble="stacking"))
    if stacked.method == "stacking":  # it beat the best trial: each member weighs its block of coefficients
        assert all(isinstance(m.weight, float) and m.weight > 0 for m in stacked.members)
    assert stacked.scores.keys() >= {"single", "stacking"}


@pytest.mark.parametrize("sharpness, softens", [(3.0, True), (0.4, False)])
def test_a_temperature_repairs_over_and_underconfident_class_probabilities_keeping_the_most_probable_class(
    sharpness, softens
):
    y, folds, views = noisy_probability_views(n=3000, seed=7)
    tilted = views["a"] ** sharpness
    tilted /= tilted.sum(axis=1, keepdims=True)  # the same most probable class, too sure (or too unsure)

    choice = ensemble.choose_calibration(tilted, y, folds, metric="log_loss", setting="auto")

    assert choice.calibrator["method"] == "temperature"
    assert (choice.calibrator["temperature"] > 1) is softens
    assert choice.log_loss["temperature"] < choice.log_loss["none"] - 0.01
    calibrated = ensemble.calibrate(choice.calibrator, tilted)
    np.testing.assert_allclose(calibrated.sum(axis=1), 1.0)
    np.testing.assert_array_equal(calibrated.argmax(axis=1), tilted.argmax(axis=1))


def test_no_temperature_is_kept_for_probabilities_that_are_already_calibrated():
    rng = np.random.default_rng(8)
    p = rng.dirichlet(np.ones(4), 3000)
    y = np.array([rng.choice(4, p=row) for row in p])

    choice = ensemble.choose_calibration(p, y, np.arange(3000) % 5, metric="log_loss", setting="auto")

    assert choice.log_loss["none"] <= choice.log_loss["temperature"] + 0.002


@pytest.mark.parametrize("method", ["sigmoid", "isotonic"])
def test_a_one_probability_calibration_asked_for_by_name_is_refused_for_multiclass(method):
    from mlgate.modelling.task import named
    from mlgate.stages.tune import _check_finish

    with pytest.raises(ValueError, match=f"finish.calibration: {method} does not apply to multiclass .*temperature"):
        _check_finish(FinishSettings(calibration=method), named("multiclass"))
    with pytest.raises(ValueError, match="finish.calibration: temperature does not apply to binary .*sigmoid"):
        _check_finish(FinishSettings(calibration="temperature"), named("binary"))
    with pytest.raises(ValueError, match=f"finish.calibration: {method} does not apply to regression"):
        _check_finish(FinishSettings(calibration=method), named("regression"))


def test_final_model_returns_class_probabilities_and_the_most_probable_class(iris):
    frame, spec = iris
    members = [models.build(f, SMALL_PARAMS[f], spec) for f in ("linear", "knn")]
    model = FinalModel(members, combiner={"method": "caruana", "weights": [0.75, 0.25]}, task="multiclass")
    model.fit(frame[spec.features], target_vector(frame, spec))
    X = frame[spec.features].iloc[::10]
    probability = model.predict_proba(X)
    expected = 0.75 * model.members_[0].predict_proba(X) + 0.25 * model.members_[1].predict_proba(X)
    np.testing.assert_allclose(probability, expected)
    assert probability.shape == (len(X), 3)
    np.testing.assert_array_equal(model.predict(X), probability.argmax(axis=1))
    np.testing.assert_allclose(pickle.loads(pickle.dumps(model)).predict_proba(X), probability)


def test_a_stacked_final_model_combines_its_members_log_probabilities_and_is_not_explained_row_by_row(iris):
    from mlgate.modelling import explain

    frame, spec = iris
    members = [models.build(f, SMALL_PARAMS[f], spec) for f in ("linear", "knn")]
    coef = np.arange(18, dtype=float).reshape(3, 6) / 20  # (classes, 2 members x 3 classes)
    combiner = {"method": "stacking", "coef": coef.tolist(), "intercept": [0.0, 0.2, -0.1], "C": 0.01}
    model = FinalModel(members, combiner=combiner, task="multiclass")
    model.fit(frame[spec.features], target_vector(frame, spec))
    X = frame[spec.features].iloc[::10]

    probability = model.predict_proba(X)

    logs = np.hstack([np.log(np.clip(m.predict_proba(X), 1e-15, 1.0)) for m in model.members_])
    expected = np.exp(logs @ coef.T + [0.0, 0.2, -0.1])
    np.testing.assert_allclose(probability, expected / expected.sum(axis=1, keepdims=True))
    np.testing.assert_allclose(pickle.loads(pickle.dumps(model)).predict_proba(X), probability)
    with pytest.raises(explain.NoExplanation, match="multiclass stacking ensemble"):
        explain.explain(model, X, spec.learning_task)


def test_a_multiclass_stacking_keeps_the_coefficient_blocks_of_the_members_it_uses():
    both = {"method": "stacking", "coef": [[1.0, 0.0, 0.0, 0.0, 2.0, 0.0]] * 3, "intercept": [0.0] * 3}
    first_only = {**both, "coef": [[1.0, 0.5, 0.0, 0.0, 0.0, 0.0]] * 3}  # 3 classes x (2 members x 3 classes)

    assert ensemble._members_used(both) == [0, 1]
    assert ensemble._members_used(first_only) == [0]
    assert ensemble._restrict(first_only, [0])["coef"] == [[1.0, 0.5, 0.0]] * 3
    assert ensemble.member_weights(both) == [3.0, 6.0]  # the summed size of each member's block


def test_final_model_applies_its_temperature_to_the_combined_class_probabilities(iris):
    frame, spec = iris
    members = [models.build(f, SMALL_PARAMS[f], spec) for f in ("linear", "knn")]
    combiner = {"method": "caruana", "weights": [0.75, 0.25]}
    plain = FinalModel(members, combiner=combiner, task="multiclass")
    tempered = FinalModel(
        members, combiner=combiner, calibrator={"method": "temperature", "temperature": 2.0}, task="multiclass"
    )
    X, y = frame[spec.features], target_vector(frame, spec)

    combined, softened = plain.fit(X, y).predict_proba(X), tempered.fit(X, y).predict_proba(X)

    expected = np.sqrt(combined) / np.sqrt(combined).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(softened, expected, rtol=1e-9)
    np.testing.assert_array_equal(tempered.predict(X), plain.predict(X))


# --- what train logs and the pyfunc model returns -------------------------------------------------------


def test_pyfunc_output_has_the_label_and_one_probability_column_per_class(iris):
    """What train records for serving and the output the pyfunc model gives (``output_example``: its
    signature sample); the logged model's own output is checked in tests/integration/test_multiclass.py."""
    from mlgate.modelling.task import for_features
    from mlgate.stages.train import feature_info, output_example

    frame, spec = iris
    model = FinalModel([models.build("linear", SMALL_PARAMS["linear"], spec)], task="multiclass")
    model.fit(frame[spec.features], target_vector(frame, spec))
    info = feature_info(frame, spec)
    assert info["classes"] == CLASSES and "positive_class" not in info
    output = output_example(model, frame[spec.features], info)
    assert (
        list(output.columns)
        == for_features(info).output_columns()
        == ["prediction", *(f"probability_{c}" for c in CLASSES)]
    )
    assert set(output.prediction) <= set(CLASSES)
    np.testing.assert_allclose(output.iloc[:, 1:].sum(axis=1), 1.0)
    assert (output.prediction == output.iloc[:, 1:].idxmax(axis=1).str.removeprefix("probability_")).all()
    np.testing.assert_allclose(output.iloc[:, 1:].to_numpy(), model.predict_proba(frame[spec.features]))


# --- the gate ------------------------------------------------------------------------------------------


def test_binary_only_gate_rules_are_skipped_with_a_reason_for_multiclass():
    from dataclasses import replace

    from mlgate.gating.evidence import Evidence
    from mlgate.gating.policy import GatePolicy, decide
    from tests.factories import DRIFT

    policy = GatePolicy(
        metric="log_loss",
        require_validation=False,
        require_no_drift=False,
        metric_floor=0.5,
        max_calibration_error=0.1,
        max_brier=0.2,
    )
    evidence = Evidence(metric="log_loss", validation_passed=True, drift=DRIFT, candidate_score=0.3, task="multiclass")
    decision = decide(policy, evidence)
    verdicts = {c.name: c.verdict for c in decision.checks}
    assert verdicts == {"metric_floor": "pass", "calibration": "skipped", "brier": "skipped"}
    assert decision.passed
    assert "one class's probability" in next(c.detail for c in decision.checks if c.name == "calibration")
    # the same policy on a binary task cannot judge what was not measured
    assert not decide(policy, replace(evidence, task="binary")).passed


def test_usable_labels_need_every_class_of_the_declared_ones(iris):
    from mlgate.gating.evidence import usable_labels

    frame, spec = iris
    usable, why = usable_labels(frame, spec, min_rows=10)
    assert usable.all() and why is None
    usable, why = usable_labels(
        frame[frame.species != "setosa"].assign(species=lambda f: f.species.replace({"versicolor": "unknown"})),
        spec,
        min_rows=10,
    )
    assert why == "its labelled rows hold 1 of the 3 classes of `species`"


# --- monitoring and serving -------------------------------------------------------------------------------


def test_live_score_reads_the_logged_label_and_class_probabilities(iris):
    from mlgate.services import monitor

    frame, spec = iris
    model = FinalModel([models.build("linear", SMALL_PARAMS["linear"], spec)], task="multiclass")
    model.fit(frame[spec.features], target_vector(frame, spec))
    probability = model.predict_proba(frame[spec.features])
    window = pd.DataFrame(
        {
            "request_id": "r1",
            "row": np.arange(len(frame)),
            "output_prediction": np.asarray(CLASSES, dtype=object)[probability.argmax(axis=1)],
            **{f"output_probability_{c}": probability[:, k] for k, c in enumerate(CLASSES)},
        }
    )
    labels = pd.DataFrame({"request_id": "r1", "row": np.arange(len(frame)), "species": frame.species})
    live = monitor.live_score(window, labels, spec, resamples=50)
    assert live["rows"] == len(frame)
    assert live["value"] == pytest.approx(metrics.score("log_loss", target_vector(frame, spec), None, probability))
    assert live["low"] <= live["value"] <= live["high"]


def test_served_multiclass_predictions_are_counted_per_class():
    import re

    from mlgate.services import serving

    metrics = serving.Metrics()
    output = pd.DataFrame({"prediction": ["setosa", "virginica", "setosa"], "probability_setosa": [0.8, 0.1, 0.7]})
    serving._record_outputs(metrics, output, {"task": "multiclass", "classes": CLASSES})
    exported = metrics.exposition().decode()
    counted = dict(re.findall(r'^mlgate_predicted_class_total\{label="([^"]*)"\} (\S+)$', exported, re.MULTILINE))
    assert counted == {"setosa": "2.0", "virginica": "1.0"}
    assert re.search(r"^mlgate_rows_predicted_total 3\.0$", exported, re.MULTILINE)
