"""Everything mlgate asks of Optuna: search spaces from conf/model/, samplers, pruners, the study loop.

The only module that imports optuna. Callers give an ``evaluate(family, params, report)`` function
and get plain ``TrialOutcome`` records back, one per trial, including pruned and failed ones.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna

optuna.logging.set_verbosity(optuna.logging.WARNING)

SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "none")


@dataclass(frozen=True)
class ParamSpec:
    type: str                         # float | int | categorical
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()


@dataclass(frozen=True)
class FamilySpace:
    family: str
    fixed: dict[str, Any]
    space: dict[str, ParamSpec]
    first_trial: dict[str, Any]


@dataclass(frozen=True)
class SearchSettings:
    sampler: str
    pruner: str
    n_trials: int
    timeout_s: float
    cv_folds: int
    n_jobs: int

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(f"search.sampler must be one of {SAMPLERS}, got '{self.sampler}'")
        if self.pruner not in PRUNERS:
            raise ValueError(f"search.pruner must be one of {PRUNERS}, got '{self.pruner}'")
        if self.n_trials < 1 or self.cv_folds < 2 or self.n_jobs < 1 or self.timeout_s <= 0:
            raise ValueError("search: n_trials >= 1, cv_folds >= 2, n_jobs >= 1 and timeout_s > 0 are required")


@dataclass(frozen=True)
class TrialOutcome:
    number: int
    family: str
    params: dict[str, Any]            # the full constructor configuration: fixed + searched
    score: float | None               # mean over the folds that ran
    fold_scores: tuple[float, ...]
    state: str                        # COMPLETE | PRUNED | FAIL
    start: float                      # epoch seconds
    end: float
    error: str | None = None


class Pruned(Exception):
    """Raised by ``report`` when the pruner stops a trial."""


def parse_spaces(model_section: dict[str, Any]) -> list[FamilySpace]:
    """conf/model/<family>.yaml entries (composed under params.yaml `model:`) as FamilySpace objects."""
    if not model_section:
        raise ValueError("params.yaml: 'model' selects no family; choose at least one in conf/config.yaml")
    spaces = []
    for family, entry in model_section.items():
        entry = entry or {}
        unknown = set(entry) - {"fixed", "space", "first_trial"}
        if unknown:
            raise ValueError(f"model.{family}: unknown key(s) {sorted(unknown)}; expected fixed, space, first_trial")
        space = {name: _param_spec(f"model.{family}.space.{name}", spec) for name, spec in (entry.get("space") or {}).items()}
        first = dict(entry.get("first_trial") or {})
        stray = set(first) - set(space)
        if stray:
            raise ValueError(f"model.{family}.first_trial: {sorted(stray)} not in model.{family}.space")
        spaces.append(FamilySpace(family, dict(entry.get("fixed") or {}), space, first))
    return spaces


def _param_spec(where: str, spec: dict[str, Any]) -> ParamSpec:
    kind = spec.get("type") if isinstance(spec, dict) else None
    if kind in ("float", "int"):
        if "low" not in spec or "high" not in spec or spec["low"] > spec["high"]:
            raise ValueError(f"{where}: a {kind} parameter needs low <= high")
        if spec.get("log") and spec["low"] <= 0:
            raise ValueError(f"{where}: a log-scale parameter needs low > 0, got {spec['low']}")
        return ParamSpec(kind, spec["low"], spec["high"], bool(spec.get("log", False)))
    if kind == "categorical":
        choices = tuple(spec.get("choices") or ())
        if not choices:
            raise ValueError(f"{where}: a categorical parameter needs a non-empty 'choices' list")
        return ParamSpec(kind, choices=choices)
    raise ValueError(f"{where}: 'type' must be float, int or categorical, got {spec!r}")


def _suggest(trial: optuna.Trial, name: str, spec: ParamSpec) -> Any:
    if spec.type == "float":
        return trial.suggest_float(name, spec.low, spec.high, log=spec.log)
    if spec.type == "int":
        return trial.suggest_int(name, int(spec.low), int(spec.high), log=spec.log)
    return trial.suggest_categorical(name, list(spec.choices))


def _sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=8)


def _pruner(name: str) -> optuna.pruners.BasePruner:
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    return optuna.pruners.NopPruner()


Evaluate = Callable[[str, dict[str, Any], Callable[[int, float], None]], tuple[float, list[float]]]


def optimize(spaces: list[FamilySpace], evaluate: Evaluate, settings: SearchSettings, *, maximize: bool,
             seed: int, on_trial: Callable[[TrialOutcome], None]) -> list[TrialOutcome]:
    """Run the study; ``on_trial`` sees every trial as it ends (from the thread that ran it)."""
    by_name = {s.family: s for s in spaces}
    study = optuna.create_study(direction="maximize" if maximize else "minimize",
                                sampler=_sampler(settings.sampler, seed), pruner=_pruner(settings.pruner))
    for space in spaces:  # a known-good point per family before any exploration
        if space.first_trial or not space.space:
            study.enqueue_trial({"family": space.family, **{f"{space.family}.{k}": v for k, v in space.first_trial.items()}})
    outcomes: list[TrialOutcome] = []

    def objective(trial: optuna.Trial) -> float:
        start = time.time()
        family = trial.suggest_categorical("family", list(by_name))
        params: dict[str, Any] = {}
        folds: list[float] = []

        def report(step: int, value: float) -> None:
            folds.append(value)
            trial.report(sum(folds) / len(folds), step)
            if trial.should_prune():
                raise Pruned

        state, error, score = "COMPLETE", None, None
        try:
            space = by_name[family]
            params = {**space.fixed, **{k: _suggest(trial, f"{family}.{k}", s) for k, s in space.space.items()}}
            score, fold_scores = evaluate(family, params, report)
            folds[:] = fold_scores
            if not math.isfinite(score):
                raise ValueError(f"the cross-validated score is {score}")
            return score
        except Pruned:
            state = "PRUNED"
            raise optuna.TrialPruned() from None
        except Exception as exc:
            state, error, score = "FAIL", f"{type(exc).__name__}: {exc}", None
            raise
        finally:
            finite = [f for f in folds if math.isfinite(f)]
            mean = score if score is not None else (sum(finite) / len(finite) if finite else None)
            outcome = TrialOutcome(trial.number, family, params, mean, tuple(folds), state, start, time.time(), error)
            outcomes.append(outcome)
            on_trial(outcome)

    study.optimize(objective, n_trials=settings.n_trials, timeout=settings.timeout_s,
                   n_jobs=settings.n_jobs, catch=(Exception,))
    return sorted(outcomes, key=lambda o: o.number)
