"""The gate's fairness rule (params.yaml `gate.fairness`): a binary classifier's decisions compared
across the groups of named sensitive columns, with bootstrap intervals and production alongside.

Per group, Fairlearn's MetricFrame gives the selection rate, true and false positive rates and the
primary metric. Across the groups large enough to judge (``min_group_rows``; smaller ones are reported,
not judged) come the disparities Fairlearn defines: demographic parity (selection rates) and
equalized odds (the worse of the true and false positive rates), each as a difference (largest minus
smallest) and a ratio (smallest over largest). Their 95% intervals come from resampling the test rows
(one vectorised bootstrap of the group counts). Pure: no tracking, no files.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mlgate.modelling import metrics

DISPARITIES = (
    "demographic_parity_difference",
    "demographic_parity_ratio",
    "equalized_odds_difference",
    "equalized_odds_ratio",
)
PLAIN = {
    "demographic_parity_difference": "demographic parity difference (selection rates)",
    "demographic_parity_ratio": "demographic parity ratio (selection rates)",
    "equalized_odds_difference": "equalized odds difference (worse of TPR and FPR)",
    "equalized_odds_ratio": "equalized odds ratio (worse of TPR and FPR)",
}
JUDGED_ON = ("estimate", "interval")


@dataclass(frozen=True)
class FairnessRule:
    """Limits on the disparities between groups of each sensitive column (None: reported, not judged).

    ``sensitive`` maps a column to the bin edges that group a numeric one (age: [25, 40]), or to null
    for a column whose values are the groups; ``reported`` names columns the same way whose
    disparities are shown and not judged (a legitimate factor, say). ``judge_on: interval`` asks for
    the whole 95% interval within the limit (fair beyond reasonable doubt) instead of the estimate."""

    sensitive: dict[str, list[float] | None] = field(default_factory=dict)
    reported: dict[str, list[float] | None] = field(default_factory=dict)
    max_demographic_parity_difference: float | None = None
    min_demographic_parity_ratio: float | None = None
    max_equalized_odds_difference: float | None = None
    min_equalized_odds_ratio: float | None = None
    min_group_rows: int = 50
    judge_on: str = "estimate"

    def __post_init__(self) -> None:
        if self.judge_on not in JUDGED_ON:
            raise ValueError(f"gate.fairness.judge_on must be one of {JUDGED_ON}, got '{self.judge_on}'")
        if self.min_group_rows < 1:
            raise ValueError("gate.fairness.min_group_rows must be at least 1")
        both = sorted(set(self.sensitive) & set(self.reported))
        if both:
            raise ValueError(f"gate.fairness: {both} are both judged (sensitive) and reported: choose one")
        for column, edges in self.columns.items():
            if edges is not None and (not edges or list(edges) != sorted(set(edges))):
                raise ValueError(f"gate.fairness.sensitive.{column}: bin edges must be increasing numbers")

    @property
    def columns(self) -> dict[str, list[float] | None]:
        """Every column the rule looks at, the judged ones first."""
        return {**self.sensitive, **self.reported}

    @property
    def limits(self) -> dict[str, float]:
        """Each judged disparity and its limit (a ceiling for a difference, a floor for a ratio)."""
        given = {
            "demographic_parity_difference": self.max_demographic_parity_difference,
            "demographic_parity_ratio": self.min_demographic_parity_ratio,
            "equalized_odds_difference": self.max_equalized_odds_difference,
            "equalized_odds_ratio": self.min_equalized_odds_ratio,
        }
        return {name: limit for name, limit in given.items() if limit is not None}


@dataclass(frozen=True)
class GroupRates:
    """One group of a sensitive column on the test rows, as the candidate decides for it."""

    group: str
    rows: int
    judged: bool  # at least min_group_rows rows
    selection_rate: float
    true_positive_rate: float | None  # None: no positive row in the group
    false_positive_rate: float | None  # None: no negative row in the group
    metric: float | None  # the primary metric within the group (None where undefined)


@dataclass(frozen=True)
class Disparity:
    """One disparity across the judged groups: the candidate's estimate and 95% interval, and
    production's estimate on the same rows (None without one)."""

    name: str
    candidate: float | None  # None: fewer than two judged groups
    interval: tuple[float, float] | None
    champion: float | None = None
    limit: float | None = None
    verdict: str = "reported"  # pass | fail | reported


@dataclass(frozen=True)
class FairnessEvidence:
    """The fairness rule's evidence for one sensitive column."""

    column: str
    groups: tuple[GroupRates, ...]
    disparities: tuple[Disparity, ...]
    judged: bool = True  # False: a `reported` column


def groups_of(values: pd.Series, edges: list[float] | None) -> np.ndarray:
    """The group of each row as text: the value itself, or its bin ("<25", "25–40", "≥40")."""
    if edges is None:
        labels = values.astype("string")
        if pd.api.types.is_float_dtype(values) and np.all(np.mod(values.dropna(), 1) == 0):
            labels = values.astype("Int64").astype("string")
        return labels.fillna("(missing)").to_numpy(dtype=object)
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    names = [f"<{edges[0]:g}", *(f"{a:g}–{b:g}" for a, b in itertools.pairwise(edges)), f"≥{edges[-1]:g}"]
    bins = np.searchsorted(np.asarray(edges, dtype=float), numbers, side="right")
    return np.where(np.isnan(numbers), "(missing)", np.asarray(names, dtype=object)[bins])


def group_rates(
    metric: str, y: np.ndarray, decided: np.ndarray, scored: np.ndarray, groups: np.ndarray, min_rows: int
) -> tuple[GroupRates, ...]:
    """Per group (largest first): Fairlearn's selection rate, TPR and FPR of the 0/1 ``decided``, and
    the primary metric of ``scored`` (probabilities or predictions)."""
    from fairlearn.metrics import MetricFrame, count, false_positive_rate, selection_rate, true_positive_rate

    frame = MetricFrame(
        metrics={
            "rows": count,
            "selection_rate": selection_rate,
            "tpr": true_positive_rate,
            "fpr": false_positive_rate,
        },
        y_true=y,
        y_pred=decided,
        sensitive_features=pd.Series(groups, name="group"),
    ).by_group
    per_metric = {value: score for value, _, score in metrics.slice_scores(metric, y, scored, groups)}
    rows = []
    for group, found in frame.sort_values("rows", ascending=False, kind="stable").iterrows():
        members = groups == group
        rows.append(
            GroupRates(
                str(group),
                int(found["rows"]),
                int(found["rows"]) >= min_rows,
                round(float(found["selection_rate"]), 6),
                round(float(found["tpr"]), 6) if (y[members] == 1).any() else None,
                round(float(found["fpr"]), 6) if (y[members] == 0).any() else None,
                None if per_metric.get(str(group)) is None else round(per_metric[str(group)], 6),
            )
        )
    return tuple(rows)


def _disparities(selection: np.ndarray, tpr: np.ndarray, fpr: np.ndarray) -> dict[str, np.ndarray]:
    """The four disparities over the last axis (groups); a rate that is NaN (a group without
    positives or negatives) counts for neither spread."""

    def spread(rates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN row: NaN, which the caller drops
            high, low = np.nanmax(rates, axis=-1), np.nanmin(rates, axis=-1)
            return high - low, np.where(high > 0, low / high, 1.0)

    dp_difference, dp_ratio = spread(selection)
    tpr_difference, tpr_ratio = spread(tpr)
    fpr_difference, fpr_ratio = spread(fpr)
    return {
        "demographic_parity_difference": dp_difference,
        "demographic_parity_ratio": dp_ratio,
        "equalized_odds_difference": np.fmax(tpr_difference, fpr_difference),
        "equalized_odds_ratio": np.fmin(tpr_ratio, fpr_ratio),
    }


def _rates(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Selection rate, TPR and FPR per group from counts shaped (..., group, y, decided)."""
    rows, chosen = cells.sum(axis=(-2, -1)), cells[..., :, 1].sum(axis=-1)
    positives, negatives = cells[..., 1, :].sum(axis=-1), cells[..., 0, :].sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return chosen / rows, cells[..., 1, 1] / positives, cells[..., 0, 1] / negatives


def disparities(
    y: np.ndarray, decided: np.ndarray, groups: np.ndarray, judged: list[str], *, resamples: int, seed: int
) -> dict[str, tuple[float | None, tuple[float, float] | None]]:
    """Each disparity across the ``judged`` groups: the estimate and its 95% bootstrap interval.

    Resampling the rows with replacement only changes how many fall in each (group, target, decision)
    cell, and those counts are multinomial with the observed shares: drawn directly, the bootstrap
    costs resamples × 4 × groups numbers, whatever the number of rows."""
    if len(judged) < 2:
        return {name: (None, None) for name in DISPARITIES}
    inside = np.isin(groups, judged)
    codes = pd.Categorical(groups[inside], categories=judged).codes
    cell = (codes * 2 + (y[inside] == 1)) * 2 + (decided[inside] == 1)
    counts = np.bincount(cell, minlength=4 * len(judged)).astype(float)
    once = _disparities(*_rates(counts.reshape(1, len(judged), 2, 2)))
    drawn = np.random.default_rng(seed).multinomial(int(counts.sum()), counts / counts.sum(), size=resamples)
    spread = _disparities(*_rates(drawn.reshape(resamples, len(judged), 2, 2).astype(float)))
    out = {}
    for name in DISPARITIES:
        draws = spread[name][np.isfinite(spread[name])]
        interval = (
            None
            if not len(draws)
            else (round(float(np.quantile(draws, 0.025)), 6), round(float(np.quantile(draws, 0.975)), 6))
        )
        out[name] = (None if not np.isfinite(once[name][0]) else round(float(once[name][0]), 6), interval)
    return out


def evidence(
    rule: FairnessRule,
    metric: str,
    frame: pd.DataFrame,
    y: np.ndarray,
    candidate: tuple[np.ndarray, np.ndarray | None],
    champion: tuple[np.ndarray, np.ndarray | None] | None,
    *,
    resamples: int,
    seed: int,
) -> tuple[FairnessEvidence, ...]:
    """The rule's evidence on labelled rows ``frame`` (``y`` its 0/1 target) from each model's
    (prediction, probability) output; production's disparities on the same groups, when given."""
    scored_index = 1 if metrics.METRICS[metric].uses_probability else 0
    found = []
    for column, edges in rule.columns.items():
        groups = groups_of(frame[column], edges)
        table = group_rates(metric, y, candidate[0], candidate[scored_index], groups, rule.min_group_rows)
        judged = [g.group for g in table if g.judged]
        mine = disparities(y, candidate[0], groups, judged, resamples=resamples, seed=seed)
        theirs = None if champion is None else disparities(y, champion[0], groups, judged, resamples=0, seed=seed)
        found.append(
            FairnessEvidence(
                column,
                table,
                tuple(
                    Disparity(name, *mine[name], champion=None if theirs is None else theirs[name][0])
                    for name in DISPARITIES
                ),
                column in rule.sensitive,
            )
        )
    return tuple(found)


def judged(rule: FairnessRule, found: tuple[FairnessEvidence, ...]) -> tuple[tuple[FairnessEvidence, ...], list[str]]:
    """Each disparity against its limit (on the estimate, or the whole interval under judge_on:
    interval); the evidence with verdicts, and a sentence per failure. A limit on a column with fewer
    than two judged groups fails: fairness could not be shown."""
    failures, out = [], []
    for column in found:
        marked = []
        for disparity in column.disparities:
            limit = rule.limits.get(disparity.name) if column.judged else None
            if limit is None:
                marked.append(disparity)
                continue
            ok, shown = _within(disparity, limit, rule.judge_on)
            if not ok:
                failures.append(f"{column.column}: {PLAIN[disparity.name]} {shown} (limit {limit})")
            marked.append(
                Disparity(
                    disparity.name,
                    disparity.candidate,
                    disparity.interval,
                    disparity.champion,
                    limit,
                    "pass" if ok else "fail",
                )
            )
        out.append(FairnessEvidence(column.column, column.groups, tuple(marked), column.judged))
    return tuple(out), failures


def _within(disparity: Disparity, limit: float, judge_on: str) -> tuple[bool, str]:
    if disparity.candidate is None:
        return False, "not measured: fewer than two groups with enough rows"
    ceiling = disparity.name.endswith("difference")
    if judge_on == "interval" and disparity.interval is not None:
        bound = disparity.interval[1] if ceiling else disparity.interval[0]
        shown = f"{disparity.candidate:.4f}, 95% CI [{disparity.interval[0]:.4f}, {disparity.interval[1]:.4f}]"
    else:
        bound = disparity.candidate
        shown = f"{disparity.candidate:.4f}"
    return (bound <= limit + 1e-12) if ceiling else (bound >= limit - 1e-12), shown
