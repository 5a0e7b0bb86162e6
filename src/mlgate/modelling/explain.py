"""Per-prediction explanations: each input column's contribution to one row's output.

Contributions are SHAP values, summed over everything a raw input column becomes inside the model
(its one-hot columns, its missing-value indicator, a date's parts, a text's components), so that
``base + contributions.sum()`` is the model's raw output for the row, exactly:

- CatBoost: CatBoost's own TreeSHAP, on its raw formula value (binary: log-odds; multiclass: the
  class's logit; regression: the prediction).
- LightGBM: LightGBM's own TreeSHAP (``pred_contrib``), on the same raw scales as CatBoost.
- Random forest and extra trees: path-dependent TreeSHAP (the shap package) on the probability
  (classifiers) or the prediction.
- HistGradientBoosting: the same algorithm, written here over all its leaves at once, on the log-odds
  (binary), each class's logit (multiclass) or the prediction: shap reads its native category splits
  as numeric thresholds, which gives wrong values without an error.
- Linear models: coefficient x the value the model sees (standardised numerics, one-hot
  categoricals), on the log-odds (logistic) or the prediction (ridge, elastic net).
- Ensembles: the members' contributions weighted as the combiner weighs their outputs. Caruana
  averages probabilities (or values) and stacking adds log-odds, so a member explained on another
  scale is first carried onto the combiner's: its contributions are rescaled in proportion so that
  they add up to its output on that scale (exact where the scales agree, as for stacking's CatBoost
  and logistic members).

The calibration map and the decision threshold come after: a binary ensemble's served probability is
the calibrated combined output this explains. k-NN and the MLP have no exact method: asking for them
raises ``NoExplanation`` naming the family.
"""

from __future__ import annotations

import copy
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import ExtraTreesClassifier, ExtraTreesRegressor, RandomForestClassifier, RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import ElasticNet, LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from mlgate.modelling import models
from mlgate.modelling.features import InputGuard
from mlgate.modelling.task import Task, for_features, logit, sigmoid

LOG_ODDS, PROBABILITY, VALUE = "log-odds", "probability", "value"
FORESTS = (RandomForestClassifier, RandomForestRegressor, ExtraTreesClassifier, ExtraTreesRegressor)
_CATBOOST = (models.CatBoostClassifierModel, models.CatBoostRegressorModel)
_HIST_GRADIENT_BOOSTING = (models.HistGradientBoostingClassifierModel, models.HistGradientBoostingRegressorModel)
_LIGHTGBM = (models.LightGBMClassifierModel, models.LightGBMRegressorModel)


class NoExplanation(ValueError):
    """The model has no exact per-prediction explanation; the message names the family."""


@dataclass(frozen=True)
class Explanation:
    """Rows' contributions per raw input column, on one scale.

    ``contributions`` is (rows, columns) and ``base`` (rows,): for a multiclass model, those of the
    class each row is explained for (``explained_class``, positions in the model's classes: the
    predicted one unless asked otherwise)."""

    columns: list[str]
    contributions: np.ndarray
    base: np.ndarray
    scale: str  # log-odds | probability | value
    explained_class: np.ndarray | None = None

    @property
    def output(self) -> np.ndarray:
        """What the contributions add up to: the model's raw output on ``scale``."""
        return self.base + self.contributions.sum(axis=1)

    def top(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(column positions, contributions) of each row's ``k`` largest contributions by size,
        largest first; ties by column order, so the same row always lists the same columns."""
        k = min(k, len(self.columns))
        order = np.argsort(-np.abs(self.contributions), axis=1, kind="stable")[:, :k]
        return order, np.take_along_axis(self.contributions, order, axis=1)


# (rows, columns[, classes]) contributions, (rows[, classes]) base, the scale
_Explained = tuple[np.ndarray, np.ndarray, str]


def explain(model: Any, X: pd.DataFrame, task: Task, explained_class: np.ndarray | None = None) -> Explanation:
    """Explain ``model`` (a fitted family pipeline or mlgate's FinalModel) on raw input rows ``X``.

    Multiclass: each row is explained for ``explained_class`` (positions in the classes), else for
    the class the model predicts."""
    if task.scores_per_class and explained_class is None:
        explained_class = np.asarray(task.member_output(model, X)).argmax(axis=1)  # the predicted class
    columns, values, base, scale = _model_contributions(model, X, task)
    if values.ndim == 3:
        rows = np.arange(len(X))
        values, base = values[rows, :, explained_class], base[rows, explained_class]
    return Explanation(columns, values, base, scale, explained_class if task.scores_per_class else None)


def _model_contributions(model: Any, X: pd.DataFrame, task: Task) -> tuple[list[str], np.ndarray, np.ndarray, str]:
    members = getattr(model, "members_", None)
    if members is None:
        return _pipeline_contributions(model, X, task)
    if model.combiner is None:
        return _pipeline_contributions(members[0], X, task)
    if model.combiner["method"] == "caruana":  # a weighted average of probabilities or values
        target = PROBABILITY if task.is_classification else VALUE
        weights, intercept = model.combiner["weights"], 0.0
    elif task.scores_per_class:
        raise NoExplanation(
            "a multiclass stacking ensemble (a normalised product of its members' probabilities) has no exact "
            "per-prediction explanation; its permutation importance is in the evaluate report"
        )
    else:  # stacking: binary adds log-odds, regression values
        target = LOG_ODDS if task.is_classification else VALUE
        weights, intercept = model.combiner["coef"], float(model.combiner["intercept"])
    outputs, inputs = model.member_outputs(X), model.member_inputs(X)
    values, base = 0.0, intercept
    for m, (member, weight) in enumerate(zip(members, weights, strict=True)):
        if not weight:  # a member the combiner dropped is never explained
            continue
        columns, member_values, member_base, scale = _pipeline_contributions(member, X, task, inputs[m])
        on_target = logit(outputs[:, m]) if target == LOG_ODDS else outputs[:, m]
        values = values + weight * _onto(member_values, member_base, scale, target, on_target)
        base = base + weight * _base_onto(member_base, scale, target)
    return columns, values, base * np.ones(values.shape[:1] + values.shape[2:]), target


def _base_onto(base: np.ndarray, scale: str, target: str) -> np.ndarray:
    """A member's base value carried onto the combiner's scale."""
    if scale == target:
        return base
    if target == PROBABILITY:  # from log-odds: a class's logit under softmax, or binary's sigmoid
        return _softmax(base) if base.ndim == 2 else sigmoid(base)
    return logit(base)  # stacking (binary) over a forest's probability


def _onto(values: np.ndarray, base: np.ndarray, scale: str, target: str, output: np.ndarray) -> np.ndarray:
    """A member's contributions carried onto the combiner's scale, where they must add up to the
    member's ``output`` there: unchanged when the scales agree, else rescaled in proportion."""
    if scale == target:
        return values
    gap = output - _base_onto(base, scale, target)  # (rows[, classes])
    total = values.sum(axis=1)
    share = np.abs(values) / np.maximum(np.abs(values).sum(axis=1, keepdims=True), 1e-300)
    even = np.full_like(values, 1.0 / values.shape[1])
    # where the contributions cancel out (sum ~ 0) but the output moved, the gap is shared by their size
    spread = np.where(np.abs(values).sum(axis=1, keepdims=True) > 0, share, even)
    flat = np.abs(total) < 1e-12
    ratio = np.where(flat, 0.0, gap / np.where(flat, 1.0, total))
    return np.where(np.expand_dims(flat, 1), spread * np.expand_dims(gap, 1), values * np.expand_dims(ratio, 1))


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# --- one family pipeline ---------------------------------------------------------------------------


def _pipeline_contributions(
    pipeline: Pipeline, X: pd.DataFrame, task: Task, seen: pd.DataFrame | np.ndarray | None = None
) -> tuple[list[str], np.ndarray, np.ndarray, str]:
    """(raw columns, contributions per raw column, base, scale) of one fitted family pipeline, whose
    estimator is given ``seen`` for ``X`` (computed through the pipeline when not given)."""
    estimator, guard = pipeline[-1], pipeline[0]
    if not isinstance(guard, InputGuard):
        raise NoExplanation("explanations need a pipeline built by mlgate (it starts with the contract's input guard)")
    raw = list(guard.columns)  # the contract's features
    encoder = pipeline.named_steps.get("encode")
    seen = pipeline[:-1].transform(X) if seen is None else seen
    if encoder is None:
        sources = list(seen.columns)
        values, base, scale = _native_contributions(estimator, seen, task)
    else:
        sources = [str(encoder.feature_names_in_[i]) for i in _encoded_inputs(encoder)]
        values, base, scale = _encoded_contributions(estimator, seen, task)
    return raw, _by_raw_column(values, [_raw_column(s, pipeline, raw) for s in sources], raw), base, scale


def _native_contributions(estimator: Any, seen: pd.DataFrame, task: Task) -> _Explained:
    """The estimators that take the shared front's frame as it is (CatBoost, LightGBM, HistGradientBoosting)."""
    if isinstance(estimator, _CATBOOST):
        import catboost

        pool = catboost.Pool(estimator._prepare(seen), cat_features=estimator.categorical_)
        with models.exclusive("catboost"):
            shap = estimator.model_.get_feature_importance(pool, type="ShapValues", thread_count=1)
        if shap.ndim == 3:  # multiclass: (rows, classes, columns + 1)
            return np.transpose(shap[:, :, :-1], (0, 2, 1)), shap[:, :, -1], LOG_ODDS
        return shap[:, :-1], shap[:, -1], LOG_ODDS if task.is_classification else VALUE
    if isinstance(estimator, _LIGHTGBM):
        shap = np.asarray(estimator.model_.predict(estimator._prepare(seen), pred_contrib=True, num_threads=1))
        if task.scores_per_class:  # (rows, classes x (columns + 1)), one class's block after another
            shap = shap.reshape(len(seen), -1, seen.shape[1] + 1)
            return np.transpose(shap[:, :, :-1], (0, 2, 1)), shap[:, :, -1], LOG_ODDS
        return shap[:, :-1], shap[:, -1], LOG_ODDS if task.is_classification else VALUE
    if isinstance(estimator, _HIST_GRADIENT_BOOSTING):
        values, base = _hist_gradient_boosting_shap(estimator.model_, estimator._prepare(seen))
        if task.scores_per_class:
            return values, base, LOG_ODDS
        return values[:, :, 0], base[:, 0], LOG_ODDS if task.is_classification else VALUE
    raise NoExplanation(f"{type(estimator).__name__} has no exact per-prediction explanation")


def _encoded_contributions(estimator: Any, matrix: np.ndarray, task: Task) -> _Explained:
    """The estimators behind a ColumnTransformer (the forests, the linear models, k-NN, the MLP)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if isinstance(estimator, FORESTS):
        return _tree_shap(estimator, matrix, PROBABILITY if task.is_classification else VALUE)
    linear = estimator.model_ if isinstance(estimator, models.ElasticNetRegressor) else estimator
    if isinstance(linear, (LogisticRegression, Ridge, ElasticNet)):
        coef = np.atleast_2d(linear.coef_)  # (classes or 1, columns)
        intercept = np.atleast_1d(linear.intercept_)
        values = matrix[:, :, None] * coef.T[None, :, :]
        base = np.broadcast_to(intercept, (len(matrix), len(intercept)))
        if coef.shape[0] == 1:
            return values[:, :, 0], base[:, 0].copy(), LOG_ODDS if task.is_classification else VALUE
        return values, base.copy(), LOG_ODDS
    family = {"KNeighborsClassifier": "knn", "KNeighborsRegressor": "knn", "MLPClassifier": "mlp"}
    name = family.get(type(estimator).__name__, type(estimator).__name__)
    raise NoExplanation(f"the {name} family has no exact per-prediction explanation (trees, CatBoost and linear do)")


# shap's reading of a model's trees, kept while the model lives: building it costs more than
# explaining a few rows (a 300-tree forest: ~0.5 s against ~5 ms for one row)
_EXPLAINERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_EXPLAINERS_LOCK = threading.Lock()


def steps_per_row(model: Any) -> float:
    """About how many steps explaining one row takes: TreeSHAP's (nodes x depth) per forest tree and
    output (shap), (leaves x path features^2) per HistGradientBoosting tree; CatBoost's own TreeSHAP
    and the linear models' products are small beside them."""
    members = getattr(model, "members_", None) or [model]
    steps = 0.0
    for member in members:
        estimator = member[-1] if isinstance(member, Pipeline) else member
        if isinstance(estimator, FORESTS):
            outputs = len(getattr(estimator, "classes_", [0]))
            steps += outputs * sum(t.tree_.node_count * max(t.tree_.max_depth, 1) for t in estimator.estimators_)
        elif isinstance(estimator, _HIST_GRADIENT_BOOSTING):
            paths = _hist_gradient_boosting_paths(estimator.model_)[0]
            steps += sum(len(p.leaf_value) * p.slot_share.shape[1] ** 2 for p in paths)
    return steps


def _tree_explainer(model: Any) -> Any:
    import shap

    with _EXPLAINERS_LOCK:
        if model not in _EXPLAINERS:
            _EXPLAINERS[model] = shap.TreeExplainer(model)
        return _EXPLAINERS[model]


def _tree_shap(model: Any, matrix: np.ndarray, scale: str) -> _Explained:
    """Path-dependent TreeSHAP: exact for the model's trees, no background data."""
    explainer = _tree_explainer(model)
    values = explainer.shap_values(matrix, check_additivity=False)
    values = np.stack(values, axis=-1) if isinstance(values, list) else np.asarray(values)  # older shap: per class
    expected = np.asarray(explainer.expected_value, dtype=float).reshape(-1)
    if values.ndim == 3:  # a classifier's per-class values: (rows, columns, classes)
        if values.shape[2] == 2:  # binary: the positive class's
            return values[:, :, 1], np.full(len(matrix), expected[1]), scale
        return values, np.broadcast_to(expected, (len(matrix), len(expected))).copy(), scale
    return values, np.full(len(matrix), expected[0]), scale


# --- HistGradientBoosting: path-dependent TreeSHAP of our own ----------------------------------------
# shap reads HistGradientBoosting's native category splits as numeric thresholds (wrong values, no
# error), so its trees are explained here, with the same algorithm (Lundberg et al. 2020, Algorithm 2)
# written over every leaf at once: each leaf's value is shared among the distinct features on its
# path by the Shapley weights of the product game prod_j (z_j + o_j t), where z_j is the share of the
# training rows that follow the path at the feature's nodes and o_j whether the row does.

_LEAF_ROWS_CELLS = 250_000  # rows x leaves in one pass: 2 MB a coefficient, so the passes stay in cache


@dataclass(frozen=True)
class _Paths:
    """Every root-to-leaf path of one output's trees, padded to the longest: the nodes on it (to
    decide whether a row follows it), and its distinct features with their cover shares."""

    leaf_value: np.ndarray  # (leaves,)
    node_feature: np.ndarray  # (leaves, depth): the feature a node splits on (padding: 0)
    node_threshold: np.ndarray  # numeric splits: a value <= threshold goes left
    node_categorical: np.ndarray
    node_bitset: np.ndarray  # categorical splits: the row of raw_left_cat_bitsets
    node_missing_left: np.ndarray
    node_goes_left: np.ndarray  # the direction the path takes
    node_slot: np.ndarray  # which distinct feature of the path the node splits on
    node_tree: np.ndarray  # the predictor (tree) the node belongs to, for its bitsets
    node_real: np.ndarray  # False for the padding after a short path's last node
    slot_feature: np.ndarray  # (leaves, slots): the distinct features (padding: 0)
    slot_share: np.ndarray  # z: the share of the node's training rows that follow the path (padding: 1)
    slot_used: np.ndarray  # (leaves, slots) bool
    weights: np.ndarray  # (leaves, slots): Shapley weight of a coalition of k others, k = 0..slots-1
    expected: float  # the trees' cover-weighted mean output


def _paths_of(predictors: list) -> _Paths:
    rows: list[tuple] = []
    nodes_of = [predictor.nodes for predictor in predictors]
    for tree, predictor in enumerate(predictors):
        nodes = predictor.nodes
        pending = [(0, [])]
        while pending:
            index, path = pending.pop()
            node = nodes[index]
            if node["is_leaf"]:
                rows.append((float(node["value"]), path))
                continue
            for child, left in ((int(node["left"]), True), (int(node["right"]), False)):
                share = nodes[child]["count"] / node["count"]
                pending.append((child, [*path, (tree, index, left, share)]))
    depth = max(1, max(len(path) for _, path in rows))
    slots = max(1, max(len({nodes_of[t][i]["feature_idx"] for t, i, _, _ in path}) for _, path in rows))
    leaves = len(rows)
    node = {name: np.zeros((leaves, depth), dtype) for name, dtype in _NODE_FIELDS.items()}
    node["node_goes_left"][:] = True
    slot_feature = np.zeros((leaves, slots), np.intp)
    slot_share = np.ones((leaves, slots))
    slot_used = np.zeros((leaves, slots), bool)
    leaf_value = np.empty(leaves)
    for leaf, (value, path) in enumerate(rows):
        leaf_value[leaf] = value
        distinct: dict[int, int] = {}
        for position, (tree, index, left, share) in enumerate(path):
            split = nodes_of[tree][index]
            feature = int(split["feature_idx"])
            slot = distinct.setdefault(feature, len(distinct))
            slot_feature[leaf, slot], slot_used[leaf, slot] = feature, True
            slot_share[leaf, slot] *= share
            for name, field in _NODE_SOURCES.items():
                node[name][leaf, position] = split[field]
            node["node_goes_left"][leaf, position] = left
            node["node_real"][leaf, position] = True
            node["node_slot"][leaf, position] = slot
            node["node_tree"][leaf, position] = tree
    used = slot_used.sum(axis=1)
    weights = np.zeros((leaves, slots))
    for k in range(slots):  # k! (d - k - 1)! / d! for a path of d distinct features
        fine = k < used
        weights[fine, k] = np.exp(_log_factorial(k) + _log_factorial(used[fine] - k - 1) - _log_factorial(used[fine]))
    expected = float(np.sum(leaf_value * np.prod(np.where(slot_used, slot_share, 1.0), axis=1)))
    return _Paths(
        leaf_value,
        **node,
        slot_feature=slot_feature,
        slot_share=slot_share,
        slot_used=slot_used,
        weights=weights,
        expected=expected,
    )


_NODE_FIELDS = {
    "node_feature": np.intp,
    "node_threshold": np.float64,
    "node_categorical": bool,
    "node_bitset": np.intp,
    "node_missing_left": bool,
    "node_goes_left": bool,
    "node_slot": np.intp,
    "node_tree": np.intp,
    "node_real": bool,
}
_NODE_SOURCES = {
    "node_feature": "feature_idx",
    "node_threshold": "num_threshold",
    "node_categorical": "is_categorical",
    "node_bitset": "bitset_idx",
    "node_missing_left": "missing_go_to_left",
}


def _log_factorial(n: Any) -> Any:
    from scipy.special import gammaln

    return gammaln(np.asarray(n, dtype=float) + 1)


def _hist_gradient_boosting_paths(model: Any) -> tuple[list[_Paths], list[np.ndarray], np.ndarray, np.ndarray]:
    """Per output (a class of a multiclass model, else one): the paths, each tree's left-category
    bitsets; and the model's known-category bitsets with their feature map. Built once per model."""
    with _EXPLAINERS_LOCK:
        if model not in _EXPLAINERS:
            outputs = model.n_trees_per_iteration_
            per_output = [[iteration[k] for iteration in model._predictors] for k in range(outputs)]
            known, feature_map = model._bin_mapper.make_known_categories_bitsets()
            _EXPLAINERS[model] = (
                [_paths_of(trees) for trees in per_output],
                [[tree.raw_left_cat_bitsets for tree in trees] for trees in per_output],
                known,
                feature_map,
            )
        return _EXPLAINERS[model]


def _hist_gradient_boosting_shap(model: Any, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(rows, columns of ``X``, outputs) SHAP values and (rows, outputs) base values of a fitted
    HistGradientBoosting model on its raw output (log-odds, per-class logits, or the prediction)."""
    link = getattr(getattr(model, "_loss", None), "link", None)
    if link is not None and type(link).__name__ not in ("IdentityLink", "LogitLink", "MultinomialLogit"):
        raise NoExplanation(f"hist_gradient_boosting with loss {model.loss!r} has no explanation here")
    outputs_paths, bitsets, known, feature_map = _hist_gradient_boosting_paths(model)
    matrix = model._preprocess_X(X, reset=False)  # its own encoding: categorical codes first, then numerics
    categorical = np.asarray(model.is_categorical_ if model.is_categorical_ is not None else np.zeros(X.shape[1], bool))
    order = np.concatenate([np.flatnonzero(categorical), np.flatnonzero(~categorical)])
    values = np.zeros((len(X), X.shape[1], len(outputs_paths)))
    base = np.zeros((len(X), len(outputs_paths)))
    for k, paths in enumerate(outputs_paths):
        step = max(1, _LEAF_ROWS_CELLS // len(paths.leaf_value))
        for start in range(0, len(X), step):
            rows = matrix[start : start + step]
            phi = _leaf_shap(paths, _follows(paths, rows, bitsets[k], known, feature_map), X.shape[1])
            values[start : start + step, order, k] = phi
        base[:, k] = paths.expected + float(np.ravel(model._baseline_prediction)[k])
    return values, base


def _follows(
    paths: _Paths, matrix: np.ndarray, bitsets: list[np.ndarray], known: np.ndarray, feature_map
) -> np.ndarray:
    """(rows, leaves, slots): whether each row takes each path's way at every node on its feature,
    by HistGradientBoosting's own rules (missing values, and categories it never saw, go where the
    node sends missing values)."""
    value = matrix[:, paths.node_feature]  # (rows, leaves, depth)
    missing = np.isnan(value)
    left = value <= paths.node_threshold
    if paths.node_categorical.any():
        code = np.where(missing | (value < 0), 0, value).astype(np.intp)
        in_range = code < 256
        code = np.minimum(code, 255)
        word, bit = code // 32, (code % 32).astype(np.uint32)
        tree_bits = np.concatenate([b if len(b) else np.zeros((0, 8), np.uint32) for b in bitsets])
        offsets = np.cumsum([0] + [len(b) for b in bitsets])[:-1]
        rows_of = np.where(paths.node_categorical, offsets[paths.node_tree] + paths.node_bitset, 0)
        goes_left = (tree_bits[rows_of, word] >> bit) & 1 if len(tree_bits) else np.zeros_like(code)
        seen = (known[np.asarray(feature_map)[paths.node_feature], word] >> bit) & 1
        categorical_left = np.where(
            goes_left.astype(bool), True, np.where(seen.astype(bool), False, paths.node_missing_left)
        )
        categorical_left = np.where(in_range & (value >= 0), categorical_left, paths.node_missing_left)
        left = np.where(paths.node_categorical, categorical_left, left)
    left = np.where(missing, paths.node_missing_left, left)
    follows_node = (left == paths.node_goes_left) | ~paths.node_real
    follows = np.ones((len(matrix), *paths.slot_share.shape), bool)
    leaves = np.arange(paths.slot_share.shape[0])
    for position in range(paths.node_slot.shape[1]):
        slot = paths.node_slot[:, position]
        follows[:, leaves, slot] &= follows_node[:, :, position]
    return follows


def _leaf_shap(paths: _Paths, follows: np.ndarray, features: int) -> np.ndarray:
    """(rows, features) SHAP values from every leaf: leaf value x (o_i - z_i) x sum_k w_k e_k, where
    e_k is the t^k coefficient of the product over the path's other features of (z_j + o_j t)."""
    used, zero = paths.slot_used, paths.slot_share  # (leaves, slots); padding slots: z = 1, o = 0
    one = (follows & used).astype(float)
    rows, leaves, slots = one.shape
    product = np.zeros((slots + 1, rows, leaves))  # coefficient k of the whole product, per row and leaf
    product[0] = 1.0
    for j in range(slots):
        for k in range(j + 1, 0, -1):
            product[k] = product[k] * zero[:, j] + product[k - 1] * one[:, :, j]
        product[0] *= zero[:, j]
    weights = paths.weights.T  # (slots, leaves)
    off_path = np.einsum("knl,kl->nl", product[:slots], weights)  # o_i = 0: the sum is this over z_i
    phi = np.zeros((rows, leaves, slots))
    for i in range(slots):
        z, o = zero[:, i], one[:, :, i]
        total, carry = np.zeros((rows, leaves)), np.zeros((rows, leaves))
        for k in range(slots, 0, -1):  # o_i = 1: divide by (z_i + t) from the top
            carry = product[k] - z * carry
            total += weights[k - 1] * carry
        total = np.where(o > 0, total, off_path / z)
        phi[:, :, i] = np.where(used[:, i], paths.leaf_value * (o - z) * total, 0.0)
    onto = np.zeros((leaves * slots, features))
    onto[np.arange(onto.shape[0]), paths.slot_feature.ravel()] = 1.0
    return phi.reshape(rows, -1) @ onto


# --- from the columns an estimator sees back to the raw input columns ------------------------------


def _encoded_inputs(encoder: ColumnTransformer) -> list[int]:
    """For each column the ColumnTransformer outputs, the position of the input column it comes from."""
    inputs = list(encoder.feature_names_in_)
    sources: list[int] = []
    for name, transformer, selected in encoder.transformers_:
        if name == "remainder" or transformer == "drop" or len(selected) == 0:
            continue
        positions = [inputs.index(c) if isinstance(c, str) else int(c) for c in selected]
        sources += [positions[i] for i in _transformer_inputs(transformer, len(positions))]
    return sources


def _transformer_inputs(transformer: Any, width: int) -> list[int]:
    """For each output column of a fitted transformer, which of its ``width`` input columns it comes from."""
    if isinstance(transformer, Pipeline):
        sources = list(range(width))
        for _, step in transformer.steps:
            sources = [sources[i] for i in _transformer_inputs(step, len(sources))]
        return sources
    if isinstance(transformer, (StandardScaler, OrdinalEncoder)):
        return list(range(width))
    if isinstance(transformer, SimpleImputer):
        indicated = [] if transformer.indicator_ is None else list(transformer.indicator_.features_)
        return list(range(width)) + indicated
    if isinstance(transformer, OneHotEncoder):
        # each output's name from (input position, category): the positions, whatever the names hold
        probe = copy.copy(transformer)
        probe.feature_name_combiner = lambda feature, category: f"{feature}\x00"
        names = probe.get_feature_names_out([str(i) for i in range(width)])
        return [int(name.split("\x00", 1)[0]) for name in names]
    raise NoExplanation(f"cannot trace the columns {type(transformer).__name__} outputs back to its inputs")


def _raw_column(seen: str, pipeline: Pipeline, raw: list[str]) -> str:
    """The raw input column behind a column of the shared front's output (a date's part, a text's component)."""
    if seen in raw:
        return seen
    for step in ("datetime", "text"):
        derived = pipeline.named_steps.get(step)
        for column in derived.columns if derived is not None else ():
            if seen.startswith(f"{column}__"):
                return column
    raise NoExplanation(f"cannot trace the model's column {seen!r} back to an input column")


def _by_raw_column(values: np.ndarray, sources: list[str], raw: list[str]) -> np.ndarray:
    """Contributions summed per raw column (SHAP values add), in ``raw`` order; zero where the model
    never used a column (the filter dropped it)."""
    position = {c: i for i, c in enumerate(raw)}
    onto = np.zeros((len(sources), len(raw)))
    onto[np.arange(len(sources)), [position[s] for s in sources]] = 1.0
    return np.einsum("nf...,fr->nr...", values, onto) if values.ndim == 3 else values @ onto


def top_frame(explanation: Explanation, k: int, task: Task) -> pd.DataFrame:
    """Each row's ``k`` largest contributions as columns written beside its prediction:
    ``feature_1``, ``contribution_1``, ... (largest first), then ``base_value``, ``explanation_scale``
    and, for a multiclass model, ``explained_class`` (the label of the class it explains)."""
    positions, values = explanation.top(k)
    names = np.asarray(explanation.columns, dtype=object)
    frame = {}
    for i in range(positions.shape[1]):
        frame[f"feature_{i + 1}"] = names[positions[:, i]]
        frame[f"contribution_{i + 1}"] = values[:, i]
    frame["base_value"] = explanation.base
    frame["explanation_scale"] = np.full(len(values), explanation.scale, dtype=object)
    if explanation.explained_class is not None:
        frame["explained_class"] = task.decode(explanation.explained_class)
    return pd.DataFrame(frame)


def explainer(pipeline: Any, features: dict[str, Any] | None) -> Callable[[pd.DataFrame, int], pd.DataFrame]:
    """What ``mlgate score --explain`` and ``/invocations?explain=k`` call: raw rows and k in, the
    ``top_frame`` columns out, for a loaded mlgate model (its pipeline and ``features.json``)."""
    if pipeline is None or features is None:
        raise NoExplanation("explanations need a model trained by mlgate (its pipeline and features.json)")
    task = for_features(features)
    if not task.supervised:
        raise NoExplanation("a clustering model assigns segments; it has no per-prediction contributions")
    return lambda X, k: top_frame(explain(pipeline, X, task), k, task)
