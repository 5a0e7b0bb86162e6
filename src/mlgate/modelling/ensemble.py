"""Finishing a study: an ensemble over the trials' validation predictions, probability calibration
and the decision threshold, each chosen on held-out predictions; and ``FinalModel``, the one
estimator ``train`` fits from that choice and logs as one MLflow model.

Everything here is chosen on out-of-fold predictions (each row predicted by models that never saw
it), and each choice is itself scored cross-fitted over the same folds: a combiner or calibrator
fitted on the other folds' rows predicts the held-out fold's. So "the ensemble beats the best single
model" compares like with like, the trial's CV score being its per-fold mean on the same folds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from sklearn.base import BaseEstimator, clone
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from mlgate.modelling import compiled, metrics
from mlgate.modelling.task import logit, named, sigmoid

ENSEMBLES = ("auto", "caruana", "stacking", "none")
CALIBRATIONS = ("auto", "isotonic", "sigmoid", "temperature", "none")
# What each task's probabilities can be calibrated with (auto tries them all): one probability, or a matrix.
CALIBRATIONS_FOR = {False: ("sigmoid", "isotonic"), True: ("temperature",)}
# The range a temperature is searched in: beyond it, the probabilities say nearly nothing or nearly everything.
_TEMPERATURES = (0.05, 20.0)
THRESHOLDS = ("f1", "balanced_accuracy", "cost", "none")
# What `train` does with each member: refit it on all rows, or keep the model the search fitted on the
# holdout's training rows when its refit would not fit refit_budget_s, or keep every such model.
REFITS = ("always", "within_budget", "never")
# A calibration may cost the ranking this much of the primary metric (isotonic steps tie scores).
_CALIBRATION_SLACK = 1e-3


@dataclass(frozen=True)
class FinishSettings:
    ensemble: str = "auto"  # auto: caruana or stacking, whichever scores better; none: the best trial
    ensemble_rounds: int = 25  # greedy selection rounds (with replacement)
    ensemble_candidates: int = 20  # the best complete trials considered
    max_members: int = 4  # trials in an ensemble: a served row pays for each
    calibration: str = (
        "auto"  # by cross-fitted log loss: binary isotonic, sigmoid or none; multiclass temperature or none
    )
    threshold: str = "f1"  # binary: what the decision threshold maximises; none keeps 0.5
    false_positive_cost: float = 1.0  # threshold: cost
    false_negative_cost: float = 1.0
    refit_budget_s: float | None = None  # cap on the estimated time train spends refitting members
    refit: str = "always"  # REFITS; keeping a model needs holdout validation (one model per trial)

    def __post_init__(self) -> None:
        for name, allowed in (
            ("ensemble", ENSEMBLES),
            ("calibration", CALIBRATIONS),
            ("threshold", THRESHOLDS),
            ("refit", REFITS),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"finish.{name} must be one of {allowed}, got '{getattr(self, name)}'")
        if self.ensemble_rounds < 1 or self.ensemble_candidates < 1 or self.max_members < 2:
            raise ValueError(
                "finish: ensemble_rounds and ensemble_candidates must be at least 1, max_members at least 2"
            )
        if self.false_positive_cost <= 0 or self.false_negative_cost <= 0:
            raise ValueError("finish: false_positive_cost and false_negative_cost must be positive")
        if self.refit == "within_budget" and self.refit_budget_s is None:
            raise ValueError("finish.refit within_budget needs finish.refit_budget_s (seconds)")


@dataclass(frozen=True)
class Candidate:
    """A complete trial with its out-of-fold predictions (NaN on rows it did not validate)."""

    trial: int
    family: str
    params: dict[str, Any]
    score: float
    predictions: np.ndarray
    refit_s: float = 0.0  # its refit on every row, estimated: the trial's mean fold fit scaled by the rows


def fold_score(name: str, y: np.ndarray, predicted: np.ndarray, folds: np.ndarray) -> float:
    """The metric per fold, averaged: how a trial's CV score is computed."""
    return float(np.mean([metrics.METRICS[name].score(y[folds == k], predicted[folds == k]) for k in np.unique(folds)]))


def _scorer(name: str) -> Callable[[np.ndarray, np.ndarray], float]:
    return metrics._rank_auc if name == "roc_auc" else metrics.METRICS[name].score


def caruana_weights(
    predictions: np.ndarray, y: np.ndarray, name: str, rounds: int, max_members: int | None = None
) -> np.ndarray:
    """Greedy ensemble selection with replacement (Caruana et al., 2004): start from the best
    column, then add, ``rounds`` times, the column whose addition scores best; the weights are
    how often each column was added. Once ``max_members`` columns are in, only they are added again.

    ``predictions`` is (rows, candidates), or (rows, candidates, classes) for multiclass probability
    matrices: a weighted mean of probability matrices is one again."""
    score = _scorer(name)
    sign = 1.0 if metrics.METRICS[name].greater_is_better else -1.0
    counts = np.zeros(predictions.shape[1])
    total = np.zeros((len(y), *predictions.shape[2:]))
    for step in range(rounds):
        trial_sums = total[:, None] + predictions
        full = max_members is not None and np.count_nonzero(counts) >= max_members
        gains = [
            sign * score(y, trial_sums[:, j] / (step + 1)) if not full or counts[j] else -np.inf
            for j in range(predictions.shape[1])
        ]
        chosen = int(np.argmax(gains))
        counts[chosen] += 1
        total = trial_sums[:, chosen]
    return counts / counts.sum()


def _weighted(predictions: np.ndarray, weights) -> np.ndarray:
    """The members' outputs weighted: (rows, members) -> rows, (rows, members, classes) -> (rows, classes)."""
    weights = np.asarray(weights, dtype=float)
    return predictions @ weights if predictions.ndim == 2 else np.einsum("nmk,m->nk", predictions, weights)


def stacking_fit(predictions: np.ndarray, y: np.ndarray, task: str) -> dict[str, Any]:
    """The task's stacking combiner (``Task.stacking_fit``): plain data, so it is reviewable in JSON."""
    combiner = named(task).stacking_fit(predictions, y)
    return combiner | {"coef": _settled_all(combiner["coef"]), "intercept": _settled_all(combiner["intercept"])}


def _settled_all(values: Any) -> Any:
    """``settled`` through nested lists: a multiclass combiner's coefficients are a matrix, its intercept a list."""
    return [_settled_all(v) for v in values] if isinstance(values, list) else settled(values)


def settled(value: float) -> float:
    """A fitted weight, threshold or loss to 8 significant digits. They come from BLAS, whose kernel
    OpenBLAS picks by CPU model (Sandybridge, Haswell, SkylakeX sum in other orders), and the solver's
    tolerance carries a last-bit difference in the members' outputs to about 1e-14 of the combiner's
    weights; rounded well above that, the recipe is the same bytes on any machine."""
    return float(f"{value:.8g}")


def combine(combiner: dict[str, Any], predictions: np.ndarray, task: str) -> np.ndarray:
    """Apply a combiner (``caruana`` weights or ``stacking`` coefficients) to member predictions."""
    if combiner["method"] == "caruana":
        return _weighted(predictions, combiner["weights"])
    return named(task).stacked(combiner, predictions)


def _fit_combiner(
    method: str, predictions: np.ndarray, y: np.ndarray, task: str, name: str, settings: FinishSettings
) -> dict[str, Any]:
    if method == "caruana":
        weights = caruana_weights(predictions, y, name, settings.ensemble_rounds, max_members=settings.max_members)
        return {"method": "caruana", "weights": weights.tolist()}
    return stacking_fit(predictions, y, task)


def cross_fitted(
    fit: Callable[[np.ndarray], Any], apply: Callable[[Any, np.ndarray], np.ndarray], folds: np.ndarray
) -> np.ndarray:
    """Each fold's rows as predicted by what ``fit`` learnt from the other folds' rows."""
    out = None
    for k in np.unique(folds):
        held = folds == k
        predicted = apply(fit(~held), held)
        if out is None:
            out = np.empty((len(folds), *np.shape(predicted)[1:]))
        out[held] = predicted
    return out


@dataclass(frozen=True)
class EnsembleChoice:
    method: str  # single | caruana | stacking
    members: list[Candidate]
    combiner: dict[str, Any] | None
    score: float  # cross-fitted per-fold mean, comparable with the trials' CV scores
    scores: dict[str, float]  # every method tried, same basis
    predictions: np.ndarray  # cross-fitted predictions of the chosen method on the validated rows


def choose_ensemble(
    candidates: list[Candidate],
    y: np.ndarray,
    folds: np.ndarray,
    *,
    task: str,
    metric: str,
    settings: FinishSettings,
    models_kept: bool = False,
) -> EnsembleChoice:
    """The best of: the best trial alone, Caruana selection over the top candidates (the best
    ``ensemble_candidates`` trials and every family's best) and stacking over each family's best, by
    cross-fitted score on the validated rows (``folds`` >= 0).

    Stacking sees one trial per family: a linear combiner of near-copies fits noise. Either ensemble
    holds at most ``max_members`` trials, since a served row pays for every member. ``refit_budget_s``
    drops the candidates whose refits do not fit it, unless the search kept its fitted models
    (``models_kept``) and ``finish.refit`` lets train keep them instead of refitting (``refits``)."""
    greater = metrics.METRICS[metric].greater_is_better
    ranked = _distinct(sorted(candidates, key=lambda c: c.score, reverse=greater))
    # the top trials, plus each other family's best: one family's near-copies can fill the top
    top, rest = ranked[: settings.ensemble_candidates], ranked[settings.ensemble_candidates :]
    in_top = {c.family for c in top}
    top += [c for c in _family_bests(rest) if c.family not in in_top]
    ranked = (
        top
        if models_kept and settings.refit != "always"
        else _within_refit_budget(top, settings.refit_budget_s, settings.max_members)
    )
    rows = folds >= 0
    y, folds = y[rows], folds[rows]
    best = ranked[0].predictions[rows]
    scores = {"single": fold_score(metric, y, best, folds)}
    choice = EnsembleChoice("single", [ranked[0]], None, scores["single"], scores, best)
    methods = {"auto": ("caruana", "stacking"), "none": ()}.get(settings.ensemble, (settings.ensemble,))
    if not named(task).can_stack:
        if settings.ensemble == "stacking":
            raise ValueError(
                f"finish.ensemble: stacking is not done for {task} ({named(task).finish_skipped['stacking']}); "
                f"choose auto, caruana or none"
            )
        methods = tuple(m for m in methods if m != "stacking")
    pools = {"caruana": ranked, "stacking": _family_bests(ranked)[: settings.max_members]}
    for method in methods:
        pool = pools[method]
        if len(pool) < 2:
            continue
        matrix = np.stack([c.predictions[rows] for c in pool], axis=1)  # (rows, members[, classes])

        def fit(train, m=method, matrix=matrix):
            return _fit_combiner(m, matrix[train], y[train], task, metric, settings)

        predicted = cross_fitted(
            fit, lambda combiner, held, matrix=matrix: combine(combiner, matrix[held], task), folds
        )
        scores[method] = fold_score(metric, y, predicted, folds)
        if (scores[method] > choice.score) == greater and scores[method] != choice.score:
            combiner = fit(np.ones(len(y), dtype=bool))
            keep = _members_used(combiner)
            if len(keep) < 2:  # on all rows it picks one trial alone: that is the single model
                continue
            choice = EnsembleChoice(
                method, [pool[i] for i in keep], _restrict(combiner, keep), scores[method], scores, predicted
            )
    return EnsembleChoice(choice.method, choice.members, choice.combiner, choice.score, scores, choice.predictions)


def _family_bests(ranked: list[Candidate]) -> list[Candidate]:
    seen: set[str] = set()
    return [c for c in ranked if not (c.family in seen or seen.add(c.family))]


def _distinct(ranked: list[Candidate]) -> list[Candidate]:
    """Drop trials whose predictions repeat a better one's (a re-run of the same configuration)."""
    seen, out = set(), []
    for candidate in ranked:
        key = np.round(np.nan_to_num(candidate.predictions), 10).tobytes()
        if key not in seen:
            seen.add(key)
            out.append(candidate)
    return out


def refits(estimates_s: list[float | None], weights: list[float], settings: FinishSettings) -> list[bool]:
    """Which members ``train`` refits on all rows, in the members' order. ``estimates_s``: each member's
    estimated refit time, or None where the search kept no fitted model of it (it is refit whatever it
    costs). ``within_budget`` spends ``refit_budget_s`` on the members by weight, heaviest first, and
    keeps the ones it cannot afford as the search fitted them; ``never`` keeps every model it can."""
    if settings.refit == "always":
        return [True] * len(estimates_s)
    if settings.refit == "never":
        return [estimate is None for estimate in estimates_s]
    assert settings.refit_budget_s is not None
    spent, chosen = 0.0, [True] * len(estimates_s)
    for i in sorted(range(len(estimates_s)), key=lambda i: -weights[i]):
        estimate = estimates_s[i]
        if estimate is None:
            continue
        chosen[i] = spent + estimate <= settings.refit_budget_s
        spent += estimate if chosen[i] else 0.0
    return chosen


def _within_refit_budget(ranked: list[Candidate], budget_s: float | None, max_members: int) -> list[Candidate]:
    """The best candidates such that any ensemble of them refits within the budget: the ``max_members``
    slowest refits of the pool fit it together (``tune.RefitReserve`` lends the search the rest on the
    same bound). The best candidate always stays."""
    if budget_s is None:
        return ranked
    kept = [ranked[0]]
    for candidate in ranked[1:]:
        if sum(sorted((c.refit_s for c in (*kept, candidate)), reverse=True)[:max_members]) <= budget_s:
            kept.append(candidate)
    return kept


def member_weights(combiner: dict[str, Any] | None) -> list[float]:
    """Each member's weight in the combined output: Caruana's share, stacking's coefficient, or for a
    multiclass stacking the summed size of the member's block of coefficients (one member alone: 1)."""
    if combiner is None:
        return [1.0]
    if combiner["method"] == "caruana":
        return [float(w) for w in combiner["weights"]]
    coef = np.asarray(combiner["coef"], dtype=float)
    if coef.ndim == 2:
        return [settled(w) for w in np.abs(coef.reshape(len(coef), -1, len(coef))).sum(axis=(0, 2))]
    return [float(w) for w in coef]


def _members_used(combiner: dict[str, Any]) -> list[int]:
    if combiner["method"] == "caruana":
        return [i for i, w in enumerate(combiner["weights"]) if w != 0]
    coef = np.asarray(combiner["coef"])
    if coef.ndim == 2:  # multiclass: (classes, members x classes), a block of columns per member
        blocks = coef.reshape(len(coef), -1, len(coef))
        return [i for i in range(blocks.shape[1]) if np.any(blocks[:, i] != 0)]
    return [i for i, w in enumerate(coef) if w != 0]


def _restrict(combiner: dict[str, Any], keep: list[int]) -> dict[str, Any]:
    if combiner["method"] == "caruana":
        return {**combiner, "weights": [combiner["weights"][i] for i in keep]}
    coef = np.asarray(combiner["coef"])
    if coef.ndim == 2:
        blocks = coef.reshape(len(coef), -1, len(coef))[:, keep]
        return {**combiner, "coef": blocks.reshape(len(coef), -1).tolist()}
    return {**combiner, "coef": [combiner["coef"][i] for i in keep]}


# --- calibration (binary and multiclass) and threshold (binary) -------------------------------------


def calibrator_fit(method: str, probability: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """A calibration map as plain data: Platt scaling on the logit, an isotonic step function, or (a
    multiclass probability matrix) one temperature that divides the log probabilities."""
    if method == "sigmoid":
        model = LogisticRegression(C=1e6, max_iter=1000).fit(logit(probability)[:, None], y)
        return {"method": "sigmoid", "coef": settled(model.coef_[0, 0]), "intercept": settled(model.intercept_[0])}
    if method == "temperature":
        return {"method": "temperature", "temperature": settled(_temperature(probability, y))}
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(probability, y)
    return {"method": "isotonic", "x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()}


def _temperature(probability: np.ndarray, y: np.ndarray) -> float:
    """Temperature scaling (Guo et al., 2017): the T in ``_TEMPERATURES`` whose softmax(log p / T) has the
    least log loss on ``y`` (class numbers). Above 1 it softens an overconfident ensemble, below 1 it
    sharpens an underconfident one; the most probable class never changes."""
    log_p = np.log(np.clip(probability, 1e-15, 1.0))
    rows = np.arange(len(y))

    def loss(log_t: float) -> float:
        tempered = _log_softmax(log_p / np.exp(log_t))
        return -float(np.mean(tempered[rows, y]))

    found = minimize_scalar(loss, bounds=np.log(_TEMPERATURES), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(found.x))


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def calibrate(calibrator: dict[str, Any] | None, probability: np.ndarray) -> np.ndarray:
    if calibrator is None:
        return probability
    if calibrator["method"] == "sigmoid":
        return sigmoid(calibrator["coef"] * logit(probability) + calibrator["intercept"])
    if calibrator["method"] == "temperature":
        return np.exp(_log_softmax(np.log(np.clip(probability, 1e-15, 1.0)) / calibrator["temperature"]))
    return np.interp(probability, calibrator["x"], calibrator["y"])


@dataclass(frozen=True)
class CalibrationChoice:
    calibrator: dict[str, Any] | None
    log_loss: dict[str, float]  # cross-fitted, per method tried
    probabilities: np.ndarray  # cross-fitted calibrated probabilities of the chosen method


def choose_calibration(
    probability: np.ndarray, y: np.ndarray, folds: np.ndarray, *, metric: str, setting: str
) -> CalibrationChoice:
    """none or a calibration (``CALIBRATIONS_FOR`` the task's probabilities: sigmoid or isotonic for one,
    temperature for a matrix) by cross-fitted log loss, among those that keep the primary metric within
    ``_CALIBRATION_SLACK`` of the uncalibrated score."""
    tried = {"none": probability}
    for method in (
        CALIBRATIONS_FOR[probability.ndim == 2] if setting == "auto" else () if setting == "none" else (setting,)
    ):
        tried[method] = cross_fitted(
            lambda train, m=method: calibrator_fit(m, probability[train], y[train]),
            lambda calibrator, held: calibrate(calibrator, probability[held]),
            folds,
        )
    losses = {method: settled(fold_score("log_loss", y, p, folds)) for method, p in tried.items()}
    greater = metrics.METRICS[metric].greater_is_better
    base = fold_score(metric, y, probability, folds) if metrics.METRICS[metric].uses_probability else None
    allowed = [
        m
        for m in tried
        if base is None
        or m == "none"
        or (fold_score(metric, y, tried[m], folds) - base) * (1 if greater else -1) >= -_CALIBRATION_SLACK
    ]
    chosen = min(allowed, key=lambda m: losses[m])
    calibrator = None if chosen == "none" else calibrator_fit(chosen, probability, y)
    return CalibrationChoice(calibrator, losses, tried[chosen])


def _objective(setting: str, settings: FinishSettings) -> Callable[[np.ndarray, np.ndarray], float]:
    """Higher is better: F1, balanced accuracy, or minus the mean cost per row."""

    def f1(y, label):
        tp = np.sum(label & (y == 1))
        return 2 * tp / max(1, np.sum(label) + np.sum(y == 1))

    def balanced(y, label):
        return 0.5 * (np.mean(label[y == 1]) + np.mean(~label[y == 0]))

    def cost(y, label):
        return -(
            settings.false_positive_cost * np.sum(label & (y == 0))
            + settings.false_negative_cost * np.sum(~label & (y == 1))
        ) / len(y)

    return {"f1": f1, "balanced_accuracy": balanced, "cost": cost}[setting]


def choose_threshold(probability: np.ndarray, y: np.ndarray, settings: FinishSettings) -> dict[str, Any]:
    """The decision threshold that maximises ``settings.threshold`` on held-out probabilities,
    searched over their quantiles; with what the objective reads there and at 0.5."""
    if settings.threshold == "none":
        return {"objective": "none", "threshold": 0.5}
    objective = _objective(settings.threshold, settings)
    quantiles = np.quantile(probability, np.linspace(0.01, 0.99, 197))
    candidates = np.unique([settled(q) for q in quantiles] + [0.5])
    values = [objective(y, probability >= t) for t in candidates]
    best = int(np.argmax(values))
    return {
        "objective": settings.threshold,
        "threshold": float(candidates[best]),
        "value": float(values[best]),
        "value_at_0.5": float(objective(y, probability >= 0.5)),
    }


# --- the fitted result -----------------------------------------------------------------------------


class FinalModel(BaseEstimator):
    """What ``train`` fits and logs: one or more member pipelines, the combiner over their outputs,
    the calibration map and the decision threshold (binary). Multiclass: Caruana weights over the
    members' probability matrices, a temperature (if one was chosen), the most probable class."""

    def __init__(self, members=(), combiner=None, calibrator=None, threshold: float = 0.5, task: str = "binary"):
        self.members = members
        self.combiner = combiner
        self.calibrator = calibrator
        self.threshold = threshold
        self.task = task

    def fit(self, X, y, fitted=None):
        """Fit each member on ``X``, or take it from ``fitted`` (one entry per member; None: fit it)."""
        fitted = [None] * len(self.members) if fitted is None else fitted
        pairs = zip(self.members, fitted, strict=True)
        self.members_ = [clone(member).fit(X, y) if model is None else model for member, model in pairs]
        self.__dict__.pop("_guarded", None)
        classes = named(self.task).fitted_classes(y)  # multiclass: class numbers, positions in data.classes
        if classes is not None:
            self.classes_ = classes
        return self

    @property
    def sole_pipeline(self):
        """The fitted pipeline when the model is one member without a combiner, else None."""
        return self.members_[0] if len(self.members_) == 1 and self.combiner is None else None

    def member_outputs(self, X) -> np.ndarray:
        """Each member's output (``Task.member_output``), through the compiled members: (rows, members[, classes])."""
        guard, members = self._guarded_members
        if guard is not None:
            X = guard.transform(X)
        task = named(self.task)
        return np.stack([task.member_output(m, X) for m in members], axis=1)  # (rows, members[, classes])

    def member_inputs(self, X) -> list:
        """What each member's estimator is given for ``X`` (its encoded matrix, or its frame), through
        the compiled members: what their explanations start from."""
        guard, members = self._guarded_members
        if guard is not None:
            X = guard.transform(X)
        return [m.seen(X) if isinstance(m, compiled.CompiledPipeline) else m[:-1].transform(X) for m in members]

    @property
    def _guarded_members(self) -> tuple[Any, list]:
        """(the input guard the members share, the members after it), or (None, the members), each
        member compiled where it can be (``compiled``).

        Members fitted on one data spec start with the same input guard; running it once instead of
        per member saves a third of a single-row call. Found on first use, never pickled."""
        if "_guarded" not in self.__dict__:
            self.prepare()
        return self.__dict__["_guarded"]

    def prepare(self) -> FinalModel:
        """Build ``_guarded_members`` now rather than on the first prediction (~0.1 s): a server does
        it while loading a version, so no request pays for it."""
        guards = [m.steps[0][1] for m in self.members_ if isinstance(m, Pipeline) and m.steps[0][0] == "guard"]
        shared = (
            len(self.members_) > 1
            and len(guards) == len(self.members_)
            and all(_same_params(g, guards[0]) for g in guards[1:])
        )
        guard, members = (guards[0], [m[1:] for m in self.members_]) if shared else (None, self.members_)
        self.__dict__["_guarded"] = (guard, [compiled.compile_pipeline(m) or m for m in members])
        return self

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_guarded", None)
        return state

    def _combined(self, X) -> np.ndarray:
        outputs = self.member_outputs(X)
        return outputs[:, 0] if self.combiner is None else combine(self.combiner, outputs, self.task)

    def _finished(self, X) -> np.ndarray:
        return named(self.task).finished(self._combined(X), lambda combined: calibrate(self.calibrator, combined))

    def predict_proba(self, X) -> np.ndarray:
        """(rows, 2) for binary, (rows, classes) for multiclass."""
        return named(self.task).probability_matrix(self._finished(X))

    def predict(self, X) -> np.ndarray:
        return named(self.task).decide(self._finished(X), self.threshold, getattr(self, "classes_", None))


def _same_params(a: BaseEstimator, b: BaseEstimator) -> bool:
    return type(a) is type(b) and a.get_params() == b.get_params()
