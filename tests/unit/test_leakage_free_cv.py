"""Preprocessing is fitted inside each CV fold on that fold's training rows only, and the contract's
leakage check catches target copies without flagging id-like columns."""

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import StratifiedKFold

from mlgate.modelling import models
from mlgate.modelling.data import DataSpec, check_contract, leakage_scores, target_vector
from mlgate.modelling.features import ColumnFilter, FeatureSettings
from mlgate.stages import tune
from mlgate.stages.tune import CrossValidation
from tests.helpers import spec_over

CLIP = [0.1, 0.9]
PARAMS = {"alpha": 1.0, "selection": "mutual_info", "keep_share": 0.5}


def _spec(columns: dict, *, task: str = "binary") -> DataSpec:
    return spec_over(columns, task=task)


@pytest.fixture
def built(monkeypatch) -> list:
    """Every pipeline models.build returns while the test runs, in order (one per fold)."""
    pipelines = []
    original = models.build

    def recording(*args, **kwargs):
        pipeline = original(*args, **kwargs)
        pipelines.append(pipeline)
        return pipeline

    monkeypatch.setattr(tune.models, "build", recording)
    return pipelines


@pytest.fixture
def filter_fits(monkeypatch) -> list:
    """(X, y) of every ColumnFilter.fit call while the test runs."""
    calls = []
    original = ColumnFilter.fit

    def recording(self, X, y=None):
        calls.append((X.copy(), None if y is None else np.asarray(y).copy()))
        return original(self, X, y)

    monkeypatch.setattr(ColumnFilter, "fit", recording)
    return calls


def _numeric_frame(rows: int = 60, seed: int = 0) -> pd.DataFrame:
    """Skewed numerics (so quantiles differ between subsets) and a target that follows `signal`."""
    rng = np.random.default_rng(seed)
    signal = rng.lognormal(0, 1, rows)
    return pd.DataFrame(
        {
            "signal": signal,
            "noise_a": rng.exponential(5, rows),
            "noise_b": rng.normal(0, 10, rows),
            "churn": np.where(signal + rng.normal(0, 0.3, rows) > np.median(signal), "Yes", "No"),
        }
    )


NUMERIC_COLUMNS = {"signal": {"type": "float"}, "noise_a": {"type": "float"}, "noise_b": {"type": "float"}}


def _objective(frame: pd.DataFrame, spec: DataSpec, folds: int = 3) -> CrossValidation:
    return CrossValidation(
        frame, spec, folds, parallel_trials=1, seed=0, cores=1, settings=FeatureSettings(clip_quantiles=CLIP)
    )


def test_each_fold_builds_and_fits_its_own_pipeline(built, filter_fits):
    spec = _spec(NUMERIC_COLUMNS)
    frame = _numeric_frame()
    objective = _objective(frame, spec)

    score, fold_scores = objective("linear", PARAMS, report=lambda step, score: None)

    assert len(built) == len(objective.folds) == len(fold_scores) == 3
    assert len({id(p) for p in built}) == 3
    assert np.isfinite(score)
    y = target_vector(frame, spec)
    for (X_seen, y_seen), (fit_rows, score_rows) in zip(filter_fits, objective.folds, strict=True):
        assert len(X_seen) == len(fit_rows)
        assert list(X_seen.index) == list(frame.index[fit_rows])
        assert not set(X_seen.index) & set(frame.index[score_rows])
        np.testing.assert_array_equal(y_seen, y[fit_rows])


def test_clip_bounds_are_the_quantiles_of_each_folds_training_rows(built):
    spec = _spec(NUMERIC_COLUMNS)
    frame = _numeric_frame()
    objective = _objective(frame, spec)

    objective("linear", PARAMS, report=lambda step, score: None)

    full_lower = frame[list(NUMERIC_COLUMNS)].quantile(CLIP[0])
    full_upper = frame[list(NUMERIC_COLUMNS)].quantile(CLIP[1])
    per_fold = []
    for pipeline, (fit_rows, _) in zip(built, objective.folds, strict=True):
        clip = pipeline.named_steps["clip"]
        kept = pipeline.named_steps["filter"].kept_
        assert len(kept) == 2  # ceil(0.5 * 3)
        assert sorted(clip.lower_) == sorted(kept)
        training = frame.iloc[fit_rows]
        for column in kept:
            assert clip.lower_[column] == pytest.approx(training[column].quantile(CLIP[0]), rel=1e-12)
            assert clip.upper_[column] == pytest.approx(training[column].quantile(CLIP[1]), rel=1e-12)
        bounds = [clip.lower_[c] for c in kept] + [clip.upper_[c] for c in kept]
        full = [full_lower[c] for c in kept] + [full_upper[c] for c in kept]
        assert bounds != pytest.approx(full, rel=1e-9), "bounds learned on rows the fold scores on"
        per_fold.append((clip.lower_["signal"], clip.upper_["signal"]))
    assert len(set(per_fold)) == len(per_fold), "each fold's bounds come from different rows"


def _fold_swapped_frame(rows: int = 80) -> tuple[pd.DataFrame, DataSpec]:
    """Two folds; `a` predicts the target only on fold 0's training rows, `b` only on fold 1's.

    StratifiedKFold splits on the target alone, so the folds are known before the features are made.
    """
    rng = np.random.default_rng(3)
    churn = np.array(["Yes", "No"] * (rows // 2))
    y = (churn == "Yes").astype(float)
    spec = _spec({"a": {"type": "float"}, "b": {"type": "float"}})
    (train0, train1), _ = zip(*StratifiedKFold(2, shuffle=True, random_state=0).split(np.zeros(rows), y), strict=True)
    informative = y + rng.normal(0, 0.05, rows)
    a, b = rng.uniform(0, 1, rows), rng.uniform(0, 1, rows)
    a[train0], b[train1] = informative[train0], informative[train1]
    return pd.DataFrame({"a": a, "b": b, "churn": churn}), spec


def test_the_target_driven_selection_is_made_per_fold(built, filter_fits):
    frame, spec = _fold_swapped_frame()
    objective = _objective(frame, spec, folds=2)

    objective("linear", PARAMS, report=lambda step, score: None)

    expected = list(
        StratifiedKFold(2, shuffle=True, random_state=0).split(np.zeros(len(frame)), target_vector(frame, spec))
    )
    for (fit, score), (fit_expected, score_expected) in zip(objective.folds, expected, strict=True):
        np.testing.assert_array_equal(fit, fit_expected)
        np.testing.assert_array_equal(score, score_expected)
    filters = [pipeline.named_steps["filter"] for pipeline in built]
    assert [f.kept_ for f in filters] == [["a"], ["b"]]
    assert [f.dropped_["unselected"] for f in filters] == [["b"], ["a"]]
    assert [len(X) for X, _ in filter_fits] == [len(fit) for fit, _ in objective.folds]
    # fitted on all rows the selection would not split the folds this way
    whole = ColumnFilter("binary", "mutual_info", 0.5).fit(frame[["a", "b"]], target_vector(frame, spec))
    assert len(whole.kept_) == 1


def test_the_datetime_start_is_the_minimum_of_each_folds_training_rows(built):
    rng = np.random.default_rng(4)
    stamps = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(rng.permutation(30) * 3, "D")
    frame = pd.DataFrame(
        {
            "signed_up": stamps.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "x": rng.normal(size=30),
            "churn": ["Yes", "No", "No"] * 10,
        }
    )
    spec = _spec({"signed_up": {"type": "datetime"}, "x": {"type": "float"}})
    objective = _objective(frame, spec)

    objective("linear", {"alpha": 1.0}, report=lambda step, score: None)

    starts = [pipeline.named_steps["datetime"].start_["signed_up"] for pipeline in built]
    assert starts == [stamps[fit_rows].min() for fit_rows, _ in objective.folds]
    assert min(starts) == stamps.min() and len(set(starts)) > 1


# --- data.leakage_scores and the contract warning -------------------------------------------------


def _binary_leaky_frame(rows: int = 200) -> pd.DataFrame:
    # not seed 0: leakage_scores splits its halves with default_rng(0).random, which would then track the target
    rng = np.random.default_rng(11)
    churn = np.where(rng.random(rows) < 0.3, "Yes", "No")
    return pd.DataFrame(
        {
            "charges": rng.uniform(20, 120, rows),
            "churned_flag": (churn == "Yes").astype(float),
            "churn_label": churn.copy(),
            "customer_code": [f"C{i:05d}" for i in range(rows)],
            "churn": churn,
        }
    )


BINARY_LEAKY = {
    "charges": {"type": "float"},
    "churned_flag": {"type": "float"},
    "churn_label": {"type": "string"},
    "customer_code": {"type": "string"},
}


def test_a_copy_of_a_binary_target_is_flagged_and_noise_and_ids_are_not():
    scores = leakage_scores(_binary_leaky_frame(), _spec(BINARY_LEAKY))

    assert scores["churned_flag"] >= 0.98
    assert scores["churn_label"] >= 0.98
    assert scores["charges"] < 0.7
    assert scores.get("customer_code", 0.5) < 0.7  # unique per row: cross-fitted means are the prior


def test_an_inverted_binary_copy_is_flagged_in_either_direction():
    frame = _binary_leaky_frame().assign(churned_flag=lambda f: 1.0 - f["churned_flag"])

    assert leakage_scores(frame, _spec(BINARY_LEAKY))["churned_flag"] >= 0.98


def _regression_leaky_frame(rows: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    spend = rng.lognormal(3, 1, rows)
    return pd.DataFrame(
        {
            "charges": rng.uniform(20, 120, rows),
            "spend_rescaled": 3.0 * spend + 7.0,
            "spend_log": np.log(spend),
            "customer_code": [f"C{i:05d}" for i in range(rows)],
            "spend": spend,
        }
    )


REGRESSION_LEAKY = {
    "charges": {"type": "float"},
    "spend_rescaled": {"type": "float"},
    "spend_log": {"type": "float"},
    "customer_code": {"type": "string"},
}


def test_a_rescaled_or_monotone_copy_of_a_regression_target_is_flagged():
    frame = _regression_leaky_frame()

    scores = leakage_scores(frame, _spec(REGRESSION_LEAKY, task="regression"))

    assert scores["spend_rescaled"] >= 0.98
    assert scores["spend_log"] >= 0.98
    assert np.corrcoef(frame["spend_log"], frame["spend"])[0, 1] ** 2 < 0.98  # caught by rank, not by Pearson
    assert scores["charges"] < 0.2
    assert scores.get("customer_code", 0.0) < 0.2


def test_an_id_like_column_is_not_flagged_even_when_it_sorts_with_the_target():
    frame = _regression_leaky_frame().sort_values("spend").reset_index(drop=True)
    frame["customer_code"] = [f"C{i:05d}" for i in range(len(frame))]  # unique, ordered like the target

    scores = leakage_scores(frame, _spec(REGRESSION_LEAKY, task="regression"))

    assert scores.get("customer_code", 0.0) < 0.2


@pytest.mark.parametrize(
    "task, columns, make, leaks",
    [
        ("binary", BINARY_LEAKY, _binary_leaky_frame, {"churned_flag", "churn_label"}),
        ("regression", REGRESSION_LEAKY, _regression_leaky_frame, {"spend_rescaled", "spend_log"}),
    ],
)
def test_check_contract_warns_with_rule_leakage_naming_the_column(task, columns, make, leaks):
    result = check_contract(make(), _spec(columns, task=task))

    assert result.passed  # a suspected leak is a warning, not a violation
    flagged = {w.column: w.message for w in result.warnings if w.rule == "leakage"}
    assert set(flagged) == leaks
    target = "churn" if task == "binary" else "spend"
    measure = "ROC AUC" if task == "binary" else "R²"
    for message in flagged.values():
        assert f"alone predicts '{target}' with {measure}" in message


def test_an_id_role_column_is_never_scored():
    frame = _binary_leaky_frame()
    spec = _spec({**BINARY_LEAKY, "customer_code": {"type": "string", "role": "id"}})

    assert "customer_code" not in leakage_scores(frame, spec)


def test_a_continuation_goes_on_from_production_refit_on_each_folds_rows_production_trained_on(filter_fits):
    """Production's own model saw rows of every validation fold: a continuation trial instead refits its
    recipe per fold on the fold's training rows production trained on (once for every trial), and goes on
    from there on the fold's other training rows."""
    frame = _numeric_frame(90)
    trained = np.arange(90) < 60  # production trained on the first 60 rows; 30 are new
    going_on = tune.Continuation(1, 0, {"iterations": 10, "depth": 2, "learning_rate": 0.3}, trained)
    objective = CrossValidation(
        frame, _spec(NUMERIC_COLUMNS), 3, parallel_trials=1, cores=1, seed=0, continuation=going_on
    )

    first, _ = objective(models.CONTINUED, {"iterations": 5, "learning_rate": 0.1}, lambda *_: None)
    second, _ = objective(models.CONTINUED, {"iterations": 40, "learning_rate": 0.3}, lambda *_: None)

    fitted_on = [sorted(X.index) for X, _ in filter_fits]  # the bases' fits: no trial refits one
    assert fitted_on == [sorted(fit_rows[trained[fit_rows]]) for fit_rows, _ in objective.folds]
    assert np.isfinite([first, second]).all() and first != second
    assert [models.trees(base) for base in objective._continued_from.values()] == [10, 10, 10]


def test_a_continuation_outside_a_retraining_fails_its_trial_with_a_reason():
    objective = _objective(_numeric_frame(), _spec(NUMERIC_COLUMNS))

    with pytest.raises(ValueError, match="searched only by a retraining that continues production's model"):
        objective(models.CONTINUED, {"iterations": 5, "learning_rate": 0.1}, lambda *_: None)
