"""What differs by task type (binary, multiclass, regression, clustering), in one class per task.

A ``Task`` turns the target into what the models learn (``encode``) and back (``decode``), names the
metrics that apply, shapes a fitted model's outputs (``outputs``), the served frame (``output_frame``)
and reads that frame back (``read_outputs``), and says whether splits stratify, which estimator class
a family uses and how ensembles combine members. Adding a task type means adding one class here.

Built from the dataset declaration (``for_spec``), from a served model's ``features.json``
(``for_features``), or from the task string alone (``named``: everything that needs no class labels,
which is what pickled estimators keep). Imports nothing of mlgate's: the served pyfunc model uses it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
import pandas as pd

_EPS = 1e-6  # probabilities are clipped this far from 0 and 1 before a logit


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


class Labelled(Protocol):
    """What the dataset declaration (``DataSpec``) tells a Task."""

    task: str
    positive_class: str | None
    classes: list[str] | None


@dataclass(frozen=True)
class Task(ABC):
    """What every task type answers; the defaults hold for most of them."""

    name: ClassVar[str]
    is_classification: ClassVar[bool]
    # learns a declared target; False (clustering): no target, and tune, train, evaluate and gate run
    # the unsupervised stages (mlgate.stages.clustering)
    supervised: ClassVar[bool] = True
    metrics: ClassVar[tuple[str, ...]]  # the metrics that apply, in the order metrics/test.json lists them
    default_metric: ClassVar[str]  # what `mlgate infer-schema` proposes
    leakage_measure: ClassVar[str]  # how leakage_score measures a feature alone, in words
    can_stack: ClassVar[bool] = True  # whether finish's stacking combiner applies
    label_fields: ClassVar[tuple[str, ...]] = ()  # the class labels its declaration (conf/data/*.yaml) gives
    scores_per_class: ClassVar[bool] = False  # a model gives one score per class (a matrix), not one per row
    decides_by_threshold: ClassVar[bool] = False  # finish calibrates one probability and tunes a threshold
    calibrates: ClassVar[bool] = False  # finish may calibrate the probabilities (ensemble.CALIBRATIONS_FOR)
    # finishing steps left out for this task, each with why (recorded in best_params.json as `skipped`)
    finish_skipped: ClassVar[dict[str, str] | None] = None
    has_probabilities: ClassVar[bool]  # a policy may judge probabilities (gate.max_calibration_error, max_brier)
    calibration_applies: ClassVar[bool] = False  # the gate measures calibration and Brier score on one probability
    comparison_plot: ClassVar[str]  # the gate's plot of both models' test outputs (reports.gate_plots draws it)
    limitation: ClassVar[str | None] = None  # what the model card's limitations add for this task

    @classmethod
    def from_spec(cls, spec: Labelled) -> Task:
        return cls()

    @classmethod
    def from_features(cls, features: dict[str, Any]) -> Task:
        return cls()

    def label_features(self, target: pd.Series) -> dict[str, Any]:
        """What ``from_features`` reads back from a model's features.json, from the training target."""
        return {}

    @classmethod
    def declared_classes(cls, positive_class: str | None, classes: list[Any] | None) -> list[str] | None:
        """``data.classes`` as text, after checking the declaration gives the labels the task needs."""
        if classes is not None:
            raise ValueError(f"data.classes applies to a multiclass task, not '{cls.name}'; set it to null")
        return None

    @property
    def stratified(self) -> bool:
        """Whether splits and CV folds keep each class's share."""
        return self.is_classification

    def check_metric(self, metric: str) -> None:
        if metric not in self.metrics:
            raise ValueError(f"data.metric '{metric}' is not a {self.name} metric; choose one of {self.metrics}")

    def variant(self, classifier: Any, regressor: Any) -> Any:
        """The classifier's or the regressor's version of something: an estimator class, a score function."""
        return classifier if self.is_classification else regressor

    # --- the target ---------------------------------------------------------------------------------

    @abstractmethod
    def encode(self, target: pd.Series) -> np.ndarray:
        """The target as the models see it."""

    @abstractmethod
    def decode(self, prediction: np.ndarray) -> np.ndarray:
        """Model targets back to the target's labels (or values)."""

    def scorable(self, target: pd.Series) -> pd.Series:
        """Rows whose label the model can be scored on (a label it was never taught cannot)."""
        return pd.Series(True, index=target.index)

    @abstractmethod
    def labelled(self, target: pd.Series, categories: list[Any] | None) -> np.ndarray:
        """Which rows of a new batch carry a usable label: present, and one of the declared classes
        (``categories``: the contract's, for a task that declares no classes of its own) or a number."""

    def unscorable(self, labels: pd.Series) -> str | None:
        """Why these labelled rows cannot be scored on every metric of the task (an AUC needs the
        classes present), or None."""
        return None

    def target_problems(self, target: pd.Series, min_class_count: int, *, labelled: bool) -> list[tuple[str, str]]:
        """(rule, message) for each way the target column breaks the task's contract."""
        return []

    @abstractmethod
    def strata(self, target: pd.Series) -> pd.Series:
        """What a stratified split keeps the shares of."""

    def split_shares(self, parts: dict[str, pd.Series]) -> dict[str, Any]:
        """split's summary of the target in each part (train, test)."""
        return {}

    @abstractmethod
    def leakage_score(self, y: np.ndarray, encoded: Callable[[np.ndarray], np.ndarray]) -> float | None:
        """How well one feature alone predicts ``y`` (the encoded target, as floats); ``encoded(t)``
        is the feature as a number fitted to predict ``t`` (a numeric feature: itself). None: not scored."""

    # --- a model's outputs ----------------------------------------------------------------------------

    @abstractmethod
    def member_output(self, model: Any, X: pd.DataFrame) -> np.ndarray:
        """What the metric and the ensembles work on: probabilities, or predicted values."""

    @abstractmethod
    def outputs(self, model: Any, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
        """(prediction as model targets, probability or None) from a fitted model."""

    @abstractmethod
    def describe_output(self, target: str, threshold: float) -> str:
        """What the served model answers for a row, in words (the model card's intended use)."""

    @abstractmethod
    def output_columns(self) -> list[str]:
        """The served frame's columns."""

    @abstractmethod
    def output_frame(self, prediction: np.ndarray, probability: np.ndarray | None) -> pd.DataFrame:
        """The served frame from ``outputs``: labels, and probabilities where the task has them."""

    @abstractmethod
    def read_outputs(self, frame: pd.DataFrame, prefix: str = "") -> tuple[np.ndarray, np.ndarray | None]:
        """``outputs`` back from a served frame (its columns under ``prefix``, as the prediction log keeps them)."""

    @abstractmethod
    def curves(self, y: np.ndarray, prediction: np.ndarray, probability: np.ndarray | None) -> dict[str, pd.DataFrame]:
        """The tables evaluate plots."""

    def drift_output(self, output: tuple[np.ndarray, np.ndarray | None]) -> np.ndarray:
        """What the gate's prediction drift watches of ``outputs``: the prediction, unless a single
        probability says more."""
        return output[0]

    @property
    def drift_bins(self) -> int:
        """How many bins the gate's population stability index (output and target) uses."""
        return 10

    # --- the final model ------------------------------------------------------------------------------

    def fitted_classes(self, y: np.ndarray) -> np.ndarray | None:
        """A classifier's ``classes_`` after fitting on ``y``; None for a regressor."""
        return None

    def finished(self, combined: np.ndarray, calibrate: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """The combined members' output after the finish's calibration (where the task calibrates)."""
        return combined

    def probability_matrix(self, scores: np.ndarray) -> np.ndarray:
        """scikit-learn's ``predict_proba`` from ``finished`` outputs."""
        raise AttributeError(f"a {self.name} model has no class probabilities")

    @abstractmethod
    def decide(self, scores: np.ndarray, threshold: float, classes: np.ndarray | None) -> np.ndarray:
        """scikit-learn's ``predict`` from ``finished`` outputs."""

    @abstractmethod
    def stacking_fit(self, predictions: np.ndarray, y: np.ndarray) -> dict[str, Any]:
        """A linear combiner with non-negative weights over (rows, members) outputs, as plain data.
        Correlated members otherwise get large weights of opposite signs that fit noise."""

    @abstractmethod
    def stacked(self, combiner: dict[str, Any], predictions: np.ndarray) -> np.ndarray:
        """A ``stacking_fit`` combiner applied to member outputs."""


class _Classification(Task):
    is_classification: ClassVar[bool] = True
    has_probabilities: ClassVar[bool] = True
    calibrates: ClassVar[bool] = True

    def strata(self, target: pd.Series) -> pd.Series:
        return target.astype(str)

    def labelled(self, target: pd.Series, categories: list[Any] | None) -> np.ndarray:
        usable = target.notna().to_numpy()
        if categories:
            usable &= target.astype(str).isin([str(c) for c in categories]).to_numpy()
        return usable

    def member_output(self, model: Any, X: pd.DataFrame) -> np.ndarray:
        return self.probability(model.predict_proba(X))

    def probability(self, matrix: np.ndarray) -> np.ndarray:
        """What the metrics score, from scikit-learn's (rows, classes) ``predict_proba``."""
        return matrix

    def outputs(self, model: Any, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        probability = self.member_output(model, X)
        return self.decide(probability, self.decision_threshold(model), None), probability

    def decision_threshold(self, model: Any) -> float:
        """The probability at which ``decide`` calls the positive class: a finished model's tuned one, else 0.5."""
        return getattr(model, "threshold", 0.5)

    def finished(self, combined: np.ndarray, calibrate: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        return calibrate(combined)


@dataclass(frozen=True)
class Binary(_Classification):
    """Models learn 0/1 (1: ``positive_class``) and give the positive class's probability;
    ``threshold`` (the served model's) turns it into a label, else the model's own."""

    name: ClassVar[str] = "binary"
    metrics: ClassVar[tuple[str, ...]] = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
    default_metric: ClassVar[str] = "roc_auc"
    leakage_measure: ClassVar[str] = "ROC AUC"
    label_fields: ClassVar[tuple[str, ...]] = ("positive_class",)

    positive_class: str | None = None
    negative_class: str | None = None
    threshold: float | None = None

    decides_by_threshold: ClassVar[bool] = True
    calibration_applies: ClassVar[bool] = True
    comparison_plot: ClassVar[str] = "roc"

    @classmethod
    def from_spec(cls, spec: Labelled) -> Binary:
        return cls(positive_class=spec.positive_class)

    @classmethod
    def from_features(cls, features: dict[str, Any]) -> Binary:
        return cls(features["positive_class"], features["negative_class"], features.get("threshold", 0.5))

    def label_features(self, target: pd.Series) -> dict[str, Any]:
        classes = sorted(target.astype(str).unique())
        positive = str(self.positive_class)
        return {"positive_class": positive, "negative_class": next(c for c in classes if c != positive)}

    @classmethod
    def declared_classes(cls, positive_class: str | None, classes: list[Any] | None) -> list[str] | None:
        if positive_class is None:
            raise ValueError("data.positive_class is required for a binary task")
        return super().declared_classes(positive_class, classes)

    def encode(self, target: pd.Series) -> np.ndarray:
        return (target.astype(str) == str(self.positive_class)).to_numpy(dtype=np.int64)

    def decode(self, prediction: np.ndarray) -> np.ndarray:
        return np.where(np.asarray(prediction) == 1, self.positive_class, self.negative_class)

    def target_problems(self, target: pd.Series, min_class_count: int, *, labelled: bool) -> list[tuple[str, str]]:
        counts = target.dropna().astype(str).value_counts()
        problems = []
        if len(counts) < 2:
            found = ", ".join(f"'{k}'" for k in counts.index) or "none"
            problems.append(("min_classes", f"a binary target needs two classes, found {found}"))
        elif len(counts) > 2:
            problems.append(
                ("max_classes", f"a binary target has two classes, found {len(counts)}: {list(counts.index[:5])}")
            )
        if self.positive_class is not None and str(self.positive_class) not in counts.index:
            problems.append(
                (
                    "positive_class",
                    f"positive class '{self.positive_class}' does not occur (classes: {list(counts.index)})",
                )
            )
        problems += _rare_classes(counts, min_class_count)
        return problems

    def unscorable(self, labels: pd.Series) -> str | None:
        if np.unique(self.encode(labels)).size < 2:
            return f"its labelled rows hold one class of `{labels.name}` only"
        return None

    def split_shares(self, parts: dict[str, pd.Series]) -> dict[str, Any]:
        return {
            "positive_share": {
                name: float(np.mean(target.astype(str) == str(self.positive_class))) for name, target in parts.items()
            }
        }

    def leakage_score(self, y: np.ndarray, encoded: Callable[[np.ndarray], np.ndarray]) -> float:
        from sklearn import metrics as skm

        auc = skm.roc_auc_score(y, encoded(y))
        return float(max(auc, 1.0 - auc))

    def probability(self, matrix: np.ndarray) -> np.ndarray:
        return matrix[:, 1]

    def decision_threshold(self, model: Any) -> float:
        return self.threshold if self.threshold is not None else super().decision_threshold(model)

    def describe_output(self, target: str, threshold: float) -> str:
        return (
            f"the probability that `{target}` is `{self.positive_class}` (and the label, "
            f"`{self.positive_class}` from a probability of {threshold:.3g})"
        )

    def output_columns(self) -> list[str]:
        return ["prediction", "probability"]

    def output_frame(self, prediction: np.ndarray, probability: np.ndarray | None) -> pd.DataFrame:
        return pd.DataFrame({"prediction": self.decode(prediction), "probability": probability})

    def read_outputs(self, frame: pd.DataFrame, prefix: str = "") -> tuple[np.ndarray, np.ndarray]:
        return self.encode(frame[f"{prefix}prediction"]), frame[f"{prefix}probability"].to_numpy(np.float64)

    def drift_output(self, output: tuple[np.ndarray, np.ndarray | None]) -> np.ndarray:
        """The positive class's probability, which moves before the labels it decides do."""
        return output[1]

    def curves(self, y: np.ndarray, prediction: np.ndarray, probability: np.ndarray | None) -> dict[str, pd.DataFrame]:
        from sklearn import metrics as skm

        fpr, tpr, _ = skm.roc_curve(y, probability)
        precision, recall, _ = skm.precision_recall_curve(y, probability)
        return {
            "roc": pd.DataFrame({"fpr": fpr, "tpr": tpr}),
            "precision_recall": pd.DataFrame({"recall": recall, "precision": precision}),
            "confusion": pd.DataFrame({"actual": y, "predicted": prediction}),
        }

    def fitted_classes(self, y: np.ndarray) -> np.ndarray:
        return np.array([0, 1])

    def probability_matrix(self, scores: np.ndarray) -> np.ndarray:
        return np.column_stack([1 - scores, scores])

    def decide(self, scores: np.ndarray, threshold: float, classes: np.ndarray | None) -> np.ndarray:
        return (scores >= threshold).astype(np.int64)

    def stacking_fit(self, predictions: np.ndarray, y: np.ndarray) -> dict[str, Any]:
        """Logistic regression on the members' logits; members with a weight <= 0 are dropped and
        the rest refit, until all are positive."""
        from sklearn.linear_model import LogisticRegression

        active = np.arange(predictions.shape[1])
        while True:
            model = LogisticRegression(C=1.0, max_iter=1000).fit(logit(predictions[:, active]), y)
            positive = model.coef_[0] > 0
            if positive.all() or not positive.any():
                break
            active = active[positive]
        coef = np.zeros(predictions.shape[1])
        coef[active] = np.maximum(model.coef_[0], 0)
        return {"method": "stacking", "coef": coef.tolist(), "intercept": float(model.intercept_[0])}

    def stacked(self, combiner: dict[str, Any], predictions: np.ndarray) -> np.ndarray:
        return sigmoid(logit(predictions) @ np.asarray(combiner["coef"]) + combiner["intercept"])


STACKING_CS = (0.003, 0.01, 0.03)  # multiclass stacking's L2 strengths (C); 0.1 and 1 overfit on every dataset tried


def _log_probabilities(predictions: np.ndarray) -> np.ndarray:
    """(rows, members, classes) probabilities as (rows, members x classes) log probabilities."""
    return np.log(np.clip(predictions, 1e-15, 1.0)).reshape(len(predictions), -1)


@dataclass(frozen=True)
class Multiclass(_Classification):
    """Models learn class numbers (positions in ``classes``) and give a (rows, classes) probability
    matrix; the prediction is the most probable class. Calibrated by a temperature, stacked by a
    multinomial logistic regression on the members' log class probabilities; no threshold."""

    name: ClassVar[str] = "multiclass"
    metrics: ClassVar[tuple[str, ...]] = ("accuracy", "f1_macro", "log_loss", "roc_auc_ovr")
    default_metric: ClassVar[str] = "log_loss"
    leakage_measure: ClassVar[str] = "macro one-vs-rest ROC AUC"
    label_fields: ClassVar[tuple[str, ...]] = ("classes",)
    scores_per_class: ClassVar[bool] = True
    finish_skipped: ClassVar[dict[str, str] | None] = {
        "threshold": "a decision threshold applies to one class's probability; a multiclass prediction is "
        "the most probable class",
    }

    comparison_plot: ClassVar[str] = "class_recall"
    limitation: ClassVar[str | None] = (
        "Multiclass: the class probabilities are the (ensembled) models' own, calibrated at most by one "
        "temperature, and the prediction is the most probable class (no tuned decision threshold); the gate's "
        "calibration and Brier-score rules are skipped. Feature importance is permutation importance over all "
        "classes at once (no per-class SHAP values)."
    )

    classes: tuple[str, ...] = ()

    @classmethod
    def from_spec(cls, spec: Labelled) -> Multiclass:
        return cls(classes=tuple(spec.classes or ()))

    @classmethod
    def from_features(cls, features: dict[str, Any]) -> Multiclass:
        return cls(classes=tuple(features["classes"]))

    def label_features(self, target: pd.Series) -> dict[str, Any]:
        return {"classes": list(self.classes)}  # the order of predict_proba's columns

    @classmethod
    def declared_classes(cls, positive_class: str | None, classes: list[Any] | None) -> list[str]:
        if not classes or len(classes) < 3:
            raise ValueError("data.classes must list the target's classes (at least three) for a multiclass task")
        labels = [str(c) for c in classes]
        if len(set(labels)) != len(labels):
            raise ValueError(f"data.classes lists a class twice: {labels}")
        return labels

    def stacking_fit(self, predictions: np.ndarray, y: np.ndarray) -> dict[str, Any]:
        """A multinomial logistic regression on every member's log class probabilities ((rows, members,
        classes) in; per class one coefficient for each member's each class), its L2 strength chosen among
        ``STACKING_CS`` by 3-fold log loss on these rows. What H2O's stacked ensemble does (a GLM over all
        its models' class probabilities), and why it led on hpc_jobs: on four multiclass datasets its
        cross-fitted log loss beat Caruana's by 1.8% and 0.6% on two, lost by 0.5-0.9% on the other two
        (where Caruana is kept). The regularisation matters: C 1 overfits on every one of them."""
        from sklearn.linear_model import LogisticRegressionCV

        model = LogisticRegressionCV(
            Cs=STACKING_CS,
            cv=3,
            scoring="neg_log_loss",
            l1_ratios=(0.0,),
            use_legacy_attributes=False,
            tol=1e-3,  # 2.4x faster than 1e-4 (0.13 s against 0.32 s a fit on hpc_jobs); it runs 4 times per finish
            max_iter=1000,
        ).fit(_log_probabilities(predictions), y)
        return {
            "method": "stacking",
            "coef": model.coef_.tolist(),  # (classes, members x classes), member by member
            "intercept": model.intercept_.tolist(),
            "C": float(np.ravel(model.C_)[0]),
        }

    def stacked(self, combiner: dict[str, Any], predictions: np.ndarray) -> np.ndarray:
        z = _log_probabilities(predictions) @ np.asarray(combiner["coef"]).T + np.asarray(combiner["intercept"])
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def encode(self, target: pd.Series) -> np.ndarray:
        codes = pd.Categorical(target.astype(str), categories=self.classes).codes.astype(np.int64)
        if (codes < 0).any():
            unknown = sorted(set(target.astype(str)[codes < 0]))[:5]
            raise ValueError(
                f"target '{target.name}' holds classes not in data.classes: {unknown} (declared: {list(self.classes)})"
            )
        return codes

    def decode(self, prediction: np.ndarray) -> np.ndarray:
        return np.asarray(self.classes, dtype=object)[prediction]

    def scorable(self, target: pd.Series) -> pd.Series:
        return target.astype(str).isin(self.classes)

    def labelled(self, target: pd.Series, categories: list[Any] | None) -> np.ndarray:
        """The declared classes, whatever the contract's categories say."""
        return super().labelled(target, list(self.classes))

    def unscorable(self, labels: pd.Series) -> str | None:
        """The one-vs-rest AUC, among the metrics scored, needs every class."""
        found = np.unique(self.encode(labels)).size
        if found < len(self.classes):
            return f"its labelled rows hold {found} of the {len(self.classes)} classes of `{labels.name}`"
        return None

    def target_problems(self, target: pd.Series, min_class_count: int, *, labelled: bool) -> list[tuple[str, str]]:
        """Every value one of the classes; on labelled training data every class present, with at
        least min_class_count rows (a new batch may hold a few classes only)."""
        counts = target.dropna().astype(str).value_counts()
        declared = list(self.classes)
        problems = []
        unknown = [label for label in counts.index if label not in declared]
        if unknown:
            problems.append(
                (
                    "classes",
                    f"{int(counts[unknown].sum()):,} row(s) hold classes not in "
                    f"data.classes: {unknown[:5]} (declared: {declared})",
                )
            )
        if labelled:
            absent = [label for label in declared if label not in counts.index]
            if absent:
                problems.append(("min_classes", f"declared class(es) {absent} do not occur in '{target.name}'"))
            problems += _rare_classes(counts, min_class_count)
        return problems

    def split_shares(self, parts: dict[str, pd.Series]) -> dict[str, Any]:
        return {
            "class_share": {
                name: {
                    str(k): float(v) for k, v in target.astype(str).value_counts(normalize=True).sort_index().items()
                }
                for name, target in parts.items()
            }
        }

    def leakage_score(self, y: np.ndarray, encoded: Callable[[np.ndarray], np.ndarray]) -> float:
        """The mean over the classes present of the one-vs-rest ROC AUC (either direction)."""
        from sklearn import metrics as skm

        aucs = []
        for label in np.unique(y):
            is_class = (y == label).astype(float)
            if is_class.all():
                continue
            auc = skm.roc_auc_score(is_class, encoded(is_class))
            aucs.append(max(auc, 1.0 - auc))
        return float(np.mean(aucs)) if aucs else 0.5

    def describe_output(self, target: str, threshold: float) -> str:
        return (
            f"the class of `{target}` (one of {', '.join(f'`{c}`' for c in self.classes)}: the most probable) "
            f"and each class's probability"
        )

    def output_columns(self) -> list[str]:
        return ["prediction", *(f"probability_{c}" for c in self.classes)]

    def output_frame(self, prediction: np.ndarray, probability: np.ndarray | None) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "prediction": self.decode(prediction),
                **{f"probability_{c}": probability[:, k] for k, c in enumerate(self.classes)},
            }
        )

    def read_outputs(self, frame: pd.DataFrame, prefix: str = "") -> tuple[np.ndarray, np.ndarray]:
        codes = pd.Categorical(frame[f"{prefix}prediction"].astype(str), categories=self.classes).codes
        probability = frame[[f"{prefix}probability_{c}" for c in self.classes]].to_numpy(np.float64)
        return codes.astype(np.int64), probability

    def curves(self, y: np.ndarray, prediction: np.ndarray, probability: np.ndarray | None) -> dict[str, pd.DataFrame]:
        return {"confusion": pd.DataFrame({"actual": y, "predicted": prediction})}

    @property
    def drift_bins(self) -> int:
        """A bin per class where the classes outnumber the default bins."""
        return max(10, len(self.classes))

    def fitted_classes(self, y: np.ndarray) -> np.ndarray:
        return np.unique(y)

    def probability_matrix(self, scores: np.ndarray) -> np.ndarray:
        return scores

    def decide(self, scores: np.ndarray, threshold: float, classes: np.ndarray | None) -> np.ndarray:
        codes = scores.argmax(axis=1).astype(np.int64)
        return codes if classes is None else classes[codes]


@dataclass(frozen=True)
class Regression(Task):
    """Models learn the target's values and predict them."""

    name: ClassVar[str] = "regression"
    is_classification: ClassVar[bool] = False
    metrics: ClassVar[tuple[str, ...]] = ("rmse", "mae", "r2")
    default_metric: ClassVar[str] = "rmse"
    leakage_measure: ClassVar[str] = "R²"
    has_probabilities: ClassVar[bool] = False
    comparison_plot: ClassVar[str] = "residuals"

    def encode(self, target: pd.Series) -> np.ndarray:
        return target.to_numpy(dtype=np.float64)

    def decode(self, prediction: np.ndarray) -> np.ndarray:
        return prediction

    def labelled(self, target: pd.Series, categories: list[Any] | None) -> np.ndarray:
        return pd.to_numeric(target, errors="coerce").notna().to_numpy()

    def strata(self, target: pd.Series) -> pd.Series:
        """Deciles of the target (fewer on a small frame), so each part spans its range."""
        return pd.qcut(target.rank(method="first"), q=min(10, max(2, len(target) // 50)), labels=False)

    def leakage_score(self, y: np.ndarray, encoded: Callable[[np.ndarray], np.ndarray]) -> float | None:
        """The larger of Pearson² and Spearman², so a rescaled or monotone copy of the target is caught."""
        x = encoded(y)
        if not np.std(x) > 0:
            return None
        pearson = np.corrcoef(x, y)[0, 1]
        spearman = np.corrcoef(pd.Series(x).rank(), pd.Series(y).rank())[0, 1]
        return float(max(pearson**2, spearman**2))

    def member_output(self, model: Any, X: pd.DataFrame) -> np.ndarray:
        return model.predict(X)

    def outputs(self, model: Any, X: pd.DataFrame) -> tuple[np.ndarray, None]:
        return model.predict(X), None

    def describe_output(self, target: str, threshold: float) -> str:
        return f"`{target}` (a number)"

    def output_columns(self) -> list[str]:
        return ["prediction"]

    def output_frame(self, prediction: np.ndarray, probability: np.ndarray | None) -> pd.DataFrame:
        return pd.DataFrame({"prediction": prediction})

    def read_outputs(self, frame: pd.DataFrame, prefix: str = "") -> tuple[np.ndarray, None]:
        return frame[f"{prefix}prediction"].to_numpy(np.float64), None

    def curves(self, y: np.ndarray, prediction: np.ndarray, probability: np.ndarray | None) -> dict[str, pd.DataFrame]:
        return {"residuals": pd.DataFrame({"actual": y, "predicted": prediction, "residual": y - prediction})}

    def decide(self, scores: np.ndarray, threshold: float, classes: np.ndarray | None) -> np.ndarray:
        return scores

    def stacking_fit(self, predictions: np.ndarray, y: np.ndarray) -> dict[str, Any]:
        """A non-negative linear regression."""
        from sklearn.linear_model import LinearRegression

        model = LinearRegression(positive=True).fit(predictions, y)
        return {"method": "stacking", "coef": model.coef_.tolist(), "intercept": float(model.intercept_)}

    def stacked(self, combiner: dict[str, Any], predictions: np.ndarray) -> np.ndarray:
        return predictions @ np.asarray(combiner["coef"]) + combiner["intercept"]


@dataclass(frozen=True)
class Clustering(Task):
    """No target: a model assigns each row a cluster (``NOISE``, -1: none, for a density-based family)
    and a membership (larger: more firmly in it). What needs a target (encoding labels, stratifying,
    stacking, leakage) does not apply; ``outputs`` is the fitted model's ``assign``."""

    name: ClassVar[str] = "clustering"
    is_classification: ClassVar[bool] = False
    supervised: ClassVar[bool] = False
    metrics: ClassVar[tuple[str, ...]] = ("silhouette", "davies_bouldin", "calinski_harabasz")
    default_metric: ClassVar[str] = "silhouette"
    leakage_measure: ClassVar[str] = "(no target)"
    can_stack: ClassVar[bool] = False
    has_probabilities: ClassVar[bool] = False
    comparison_plot: ClassVar[str] = "cluster_sizes"
    limitation: ClassVar[str | None] = (
        "Clustering: clusters are found, not taught; their numbers (largest first) name groups of similar "
        "rows, not classes, and what a cluster means is for a reviewer to read from its profile."
    )

    @property
    def stratified(self) -> bool:
        return False

    def _no_target(self, *_: Any) -> Any:
        raise ValueError("a clustering task has no target")

    encode = decode = strata = stacking_fit = stacked = _no_target

    def labelled(self, target: pd.Series, categories: list[Any] | None) -> np.ndarray:
        return np.zeros(len(target), dtype=bool)

    def leakage_score(self, y: np.ndarray, encoded: Callable[[np.ndarray], np.ndarray]) -> None:
        return None

    def member_output(self, model: Any, X: pd.DataFrame) -> np.ndarray:
        return model.assign(X)[0]

    def outputs(self, model: Any, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return model.assign(X)

    def describe_output(self, target: str | None, threshold: float) -> str:
        return "the row's cluster (-1: none, for a density-based family) and its membership (larger: more firmly in it)"

    def output_columns(self) -> list[str]:
        return ["cluster", "membership"]

    def output_frame(self, prediction: np.ndarray, probability: np.ndarray | None) -> pd.DataFrame:
        return pd.DataFrame({"cluster": np.asarray(prediction, dtype=np.int64), "membership": probability})

    def read_outputs(self, frame: pd.DataFrame, prefix: str = "") -> tuple[np.ndarray, np.ndarray]:
        return frame[f"{prefix}cluster"].to_numpy(np.int64), frame[f"{prefix}membership"].to_numpy(np.float64)

    def curves(self, y: np.ndarray, prediction: np.ndarray, probability: np.ndarray | None) -> dict[str, pd.DataFrame]:
        return {}

    def decide(self, scores: np.ndarray, threshold: float, classes: np.ndarray | None) -> np.ndarray:
        return scores

    @property
    def drift_bins(self) -> int:
        """A bin per cluster: the assignment's drift is the shift of the clusters' shares."""
        return 1000


def _rare_classes(counts: pd.Series, min_class_count: int) -> list[tuple[str, str]]:
    return [
        (
            "min_class_count",
            f"class '{label}' has {count:,} rows, the contract asks for at least {min_class_count:,}",
        )
        for label, count in counts[counts < min_class_count].items()
    ]


TASKS: dict[str, type[Task]] = {task.name: task for task in (Binary, Multiclass, Regression, Clustering)}


def named(name: str) -> Task:
    """The Task of a task string, without class labels: enough for everything but encoding labels."""
    if name not in TASKS:
        raise ValueError(f"data.task must be one of {tuple(TASKS)}, got '{name}'")
    return TASKS[name]()


def for_spec(spec: Labelled) -> Task:
    """The Task of a dataset declaration (``DataSpec``)."""
    named(spec.task)
    return TASKS[spec.task].from_spec(spec)


def for_features(features: dict[str, Any]) -> Task:
    """The Task of a served model, from its ``features.json``."""
    named(features["task"])
    return TASKS[features["task"]].from_features(features)
