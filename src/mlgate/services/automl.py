"""mlgate's search as a library call: a frame in, a fitted model out, within a wall-clock budget.

``fit`` runs the pipeline's own stages (ingest, tune, train) in a scratch project under
``workdir``, tracked in an MLflow store there: every trial is a nested run, as under ``dvc repro``.
Everything the frame holds is training data (no test or current batch is split off; the caller
keeps its own). The contract is drafted from the frame (``mlgate infer-schema``'s rules) with
missing values allowed anywhere, since a benchmark's test rows were never checked against it.
The budget is split by ``search_seconds``: the final refit gets ``REFIT_SHARE``, start-up and logging
``FIXED_S``, a margin ``MARGIN_SHARE``, and the search the rest; the search goes on into the part of the
refit's share that the refit of its best trials would not need (``tune.RefitReserve``). What is left of
that share when the search ends (a last fold can end late) caps an ensemble's members by their refits on
every row, estimated from their folds' fit times; on a holdout (large frames) a member whose refit would not
fit it is kept as the search fitted it (``finish.refit: within_budget``). The refit runs on the cores other
processes leave free (``cores.free_cores``): OpenMP threads beyond them wait at every barrier. Under
``SHORT_BUDGET_S`` the search scores on 3 folds instead of conf/'s 5, for more trials, and writes its trial
runs from a thread instead of a process of its own (``tracking.trial_writer``): that process's ~200 MB were
a quarter of a 30 s run's peak. The families are ``FAMILIES``; the search starts from the zero-shot
portfolio (conf/portfolio/zero_shot.yaml, built by benchmarks/portfolio.py on the development suite), then
explores.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import yaml

from mlgate import config, files
from mlgate.adapters import tracking
from mlgate.modelling import schema
from mlgate.modelling.task import named

REFIT_SHARE = 0.12
# what a run's phases take beyond their plan on a busy machine, and what the caller's process does around
# fit (imports, reading the data, predicting: 1.8-2.7 s at 30 s): 0.05 left a 30 s run at 33.1 s once in 36
MARGIN_SHARE = 0.06
# measured on benchmarks/automl_suite at 30 s on 2 cores: 3.5-4 s of a run's process wall was neither the
# search nor the refit (the interpreter and imports, the store, choosing the ensemble, logging the model);
# about 1 s of it, MLflow's import and store before the search, now overlaps the search (tune's run is
# opened behind it)
FIXED_S = 3.0
# of FIXED_S, what fit spends before the search on a small frame (the contract, the scratch project, ingest);
# a large frame's extra seconds there come off the search (1,000,000 rows: about 10 s)
PRE_SEARCH_S = 1.0
SHORT_BUDGET_S = 300
FAMILIES = "[catboost,lightgbm,hist_gradient_boosting,linear,random_forest]"
# conf/ of the checkout mlgate is installed from (editable install); pass conf_dir otherwise
CHECKOUT_CONF = Path(__file__).resolve().parents[3] / "conf"


def search_seconds(budget_s: float) -> float:
    """The search's share of a wall budget. A fixed share (it was 65%) left a quarter of a 120 s budget
    unused: the fixed costs do not grow with the budget, the refit does."""
    return max(1.0, (1.0 - REFIT_SHARE - MARGIN_SHARE) * budget_s - FIXED_S)


@dataclass
class AutoMLModel:
    """The fitted final model and what the run measured (``summary``)."""

    model: Any
    task: str
    summary: dict[str, Any] = field(default_factory=dict)

    classes_: list[str] | None = None  # multiclass: the labels of predict_proba's columns, in order

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Binary: the positive class's probability; multiclass: (rows, classes), columns as ``classes_``."""
        return named(self.task).probability(self.model.predict_proba(X))

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Binary: 0/1 (1: the positive class); multiclass: the class labels; regression: the values."""
        prediction = self.model.predict(X)
        return prediction if self.classes_ is None else np.asarray(self.classes_, dtype=object)[prediction]


@contextlib.contextmanager
def inside(folder: Path) -> Iterator[None]:
    """Run in ``folder`` with its own MLflow store: the stages resolve paths against the cwd."""
    saved_cwd, saved_uri = Path.cwd(), os.environ.get("MLFLOW_TRACKING_URI")
    os.chdir(folder)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder / 'mlflow.db'}"
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        if saved_uri is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved_uri


def project_params(
    train: pd.DataFrame,
    target: str,
    task: str,
    *,
    budget_s: float,
    seed: int,
    source: Path,
    positive_class: str | None = None,
    name: str = "automl",
    overrides: list[str] | None = None,
    conf_dir: Path = CHECKOUT_CONF,
) -> dict[str, Any]:
    """params.yaml for a scratch project over ``source``: conf/'s defaults, the budget, a drafted contract."""
    contract = schema.infer_contract(train, target, task)
    contract |= {"min_rows": 1, "max_rows": None, "missing_columns": "impute", "max_missing_share": 1.0}
    for column in contract["columns"].values():
        column.pop("max_missing_share", None)
        column.pop("min", None)
        column.pop("max", None)
    params = yaml.safe_load(
        config.compose(
            conf_dir,
            overrides=[
                f"model={FAMILIES}",
                f"seed={seed}",
                "search.budget=time",  # a wall-clock budget, as its peers get
                f"search.timeout_s={search_seconds(budget_s):.1f}",
                "search.n_trials=10000",
                f"finish.refit_budget_s={REFIT_SHARE * budget_s:.1f}",
                "finish.refit=within_budget",  # on a holdout, keep what the search fitted past that
                "portfolio=zero_shot",  # configurations that did well across other datasets run first
                # fewer folds for more trials; trial runs written from a thread: ~200 MB less, as fast
                *(["search.cv_folds=3", "tracking.trial_writer=thread"] if budget_s < SHORT_BUDGET_S else []),
                *(overrides or []),
            ],
        )
    )
    params["data"] = {
        "name": name,
        "task": task,
        "target": target,
        "metric": named(task).default_metric,
        "source": {"kind": "file", "path": str(source), "format": "parquet"},
        "current_path": None,
        "contract": contract,
    }
    params["data"] |= schema.declared_labels(train[target], task, positive_class)
    params["tracking"] = {**params["tracking"], "experiment": f"mlgate-{name}", "registered_model": name}
    return params


def fit(
    train: pd.DataFrame,
    target: str,
    task: str,
    *,
    budget_s: float,
    seed: int,
    workdir: Path,
    positive_class: str | None = None,
    overrides: list[str] | None = None,
    conf_dir: Path = CHECKOUT_CONF,
) -> AutoMLModel:
    """Search, ensemble and refit on ``train`` within about ``budget_s`` seconds of wall time."""
    from mlgate.stages import ingest, tune
    from mlgate.stages import train as train_stage

    started = time.time()
    # the tune run opens behind the search; MLflow's imports, made now beside the ingest (one core is free), let
    # it exist before the first trial ends (a quick one waits for it otherwise)
    preloading = tracking.Preload()
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    source = workdir / "data" / "source" / "train.parquet"
    source.parent.mkdir(parents=True, exist_ok=True)
    train.to_parquet(source, index=False)
    params = project_params(
        train,
        target,
        task,
        budget_s=budget_s,
        seed=seed,
        source=source,
        positive_class=positive_class,
        overrides=overrides,
        conf_dir=conf_dir,
    )
    with inside(workdir):
        files.write_text("params.yaml", yaml.safe_dump(params, sort_keys=False))
        ingest.run(params)
        paths = Path(params["paths"]["split"])
        paths.mkdir(parents=True, exist_ok=True)
        pd.read_parquet(Path(params["paths"]["raw"]) / "data.parquet").to_parquet(paths / "train.parquet", index=False)
        pd.DataFrame({"column": [], "id": [], "part": []}).to_parquet(
            paths / "ids.parquet", index=False
        )  # no id column
        late_s = time.time() - started - PRE_SEARCH_S
        if late_s > 0:
            params["search"]["timeout_s"] = round(max(1.0, params["search"]["timeout_s"] - late_s), 1)
            files.write_text("params.yaml", yaml.safe_dump(params, sort_keys=False))
        tune_started = time.time()
        tuned = tune.run(params)
        train_started = time.time()
        trained = train_stage.run(params)
        train_ended = time.time()
        model = joblib.load(Path(params["paths"]["model"]) / "artifacts" / "pipeline.joblib")
    summary = {
        "chosen": tuned.recipe.family,
        "method": tuned.recipe.finish.method,
        "cv_score": tuned.recipe.cv_score,
        "trials": sum(tuned.recipe.trials.values()),
        "trials_complete": tuned.recipe.trials["complete"],
        "validation": tuned.recipe.validation["method"],
        "tracking_s": round(tuned.tracking_s + trained.tracking_s, 3),  # waited on MLflow: tune's and train's
        "train_tracking_s": trained.tracking_s,
        "save_s": trained.save_s,  # writing and checking the model's files: not tracking
        "tracking_behind_cpu_s": round(tuned.tracking_behind_cpu_s + preloading.cpu_s(), 3),
        "refit_s": trained.fit_seconds,
        "kept_unrefit": sum(not m.refit for m in tuned.recipe.finish.members),
        "search_timeout_s": params["search"]["timeout_s"],
        # where the wall went: before tune (the contract, ingest), tune (its search and finish in it), train
        # (its refit and save in it), and after (loading the model)
        "pre_search_s": round(tune_started - started, 2),
        "tune_s": round(train_started - tune_started, 2),
        "search_s": tuned.search_s,
        "finish_s": tuned.finish_s,
        "train_s": round(train_ended - train_started, 2),
        "refit_reserve_lent_s": tuned.lent_s,
        "wall_s": round(time.time() - started, 2),
        "tune_run_id": tuned.run_id,
    }
    return AutoMLModel(model, task, summary, params["data"].get("classes"))
