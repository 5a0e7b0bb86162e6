"""train: refit what `tune` chose on all of train; save and log one MLflow model.

What tune chose (best_params.json `finish`) is the best trial or an ensemble of trials, with a
calibration map and a decision threshold: each member is refit on all of train, and the whole is one
``ensemble.FinalModel`` inside one pyfunc model; a clustering task's recipe is a segmentation, refit
behind the contract's input guard (``clustering.GuardedSegmenter``). Reads the train split and paths.best_params (never
MLflow); writes paths.model (an MLflow pyfunc model directory that takes raw contract columns),
paths.train_info (what the model is) and paths.train_run (the MLflow run that logged it, fit time). The
run also keeps the digests of the rows the model trained on (``modelling.provenance``), which a later
gate leaves out when it compares its candidate with this version. The run is opened, and what it read
logged, while the recipe is refit (``tracking.stage_run_behind``): the refit does not wait for MLflow.

The same recipe and data give the same bytes of paths.model and paths.train_info, the two that
evaluate, drift and gate depend on: ``models.settle_bytes`` clears what differs between two fits of
the same recipe, and the MLmodel keeps no creation time, uuid or temporary path. So a train rerun that
changes nothing (a refactor, a comment) reruns nothing downstream. What does change with every run
(run ids, fit time) is in paths.train_run, which the later stages read but do not depend on.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.base import clone
from threadpoolctl import threadpool_limits

from mlgate import config, console, files, project
from mlgate.adapters import tracking
from mlgate.cores import free_cores
from mlgate.errors import StageError
from mlgate.modelling import clustering, models
from mlgate.modelling.data import DataSpec, target_vector
from mlgate.modelling.ensemble import FinalModel
from mlgate.modelling.features import FeatureSettings, InputGuard
from mlgate.modelling.provenance import TrainedRows
from mlgate.modelling.task import for_features
from mlgate.records import Finish, SegmentationRecipe, TrainingRecord, TrainingRun, TunedRecipe
from mlgate.registry import (
    ERASURE_DIR,
    ERASURE_FILE,
    PROVENANCE_DIR,
    REFERENCE_DIR,
    REFERENCE_FILE,
    TRAINED_ROWS_FILE,
)

STAGE = "train"
REFERENCE_ROWS = 10_000
REFIT_THREADS = 2  # a reproducible recipe refits on this many threads whatever the machine, so its bytes do not move
MODEL_CODE = Path(__file__).resolve().parents[1] / "adapters" / "pyfunc_model.py"  # copied into each model
_REQUIREMENTS = ("mlflow", "scikit-learn", "catboost", "lightgbm", "pandas", "numpy", "joblib", "pyarrow")


@dataclass(frozen=True)
class GoingOn:
    """Production's CatBoost model that a continuation member (``models.CONTINUED``) goes on training, and
    per train row whether it trained on it."""

    pipeline: Any
    trained: np.ndarray


def fit(
    train: pd.DataFrame,
    spec: DataSpec,
    finished: Finish,
    settings: FeatureSettings,
    seed: int,
    kept: dict[int, Any] | None = None,
    going_on: GoingOn | None = None,
    threads: int = REFIT_THREADS,
) -> FinalModel:
    """The final model of ``finished`` (the recipe's `finish`), its members refit on ``train`` with
    ``threads`` each, except those it keeps unrefit, taken from ``kept`` (tune's paths.kept_models, by
    trial); a continuation member goes on from ``going_on``'s model on the train rows that model never saw."""
    X, y = train[spec.features], target_vector(train, spec)
    fitted = [None if m.refit else (kept or {})[m.trial] for m in finished.members]
    members = []
    for index, member in enumerate(finished.members):
        if member.family != models.CONTINUED:
            members.append(models.build(member.family, member.params, spec, settings, threads=threads, seed=seed))
            continue
        if going_on is None:
            raise StageError(f"member {index} ({models.CONTINUED}) goes on from production's model, which is not given")
        members.append(clone(going_on.pipeline))
        if member.refit:
            new = ~going_on.trained
            fitted[index] = models.continued(going_on.pipeline, X[new], y[new], member.params, threads=threads)
    model = FinalModel(
        members,
        combiner=finished.combiner,
        calibrator=finished.calibration,
        threshold=finished.threshold["threshold"],
        task=spec.task,
    )
    with threadpool_limits(limits=threads):  # BLAS too (the linear family): no more threads than asked
        model.fit(X, y, fitted=fitted)
    for member in model.members_:
        models.serial_predictions(member)
    return models.settle_bytes(model)


def fit_segmentation(
    train: pd.DataFrame, spec: DataSpec, recipe: SegmentationRecipe, seed: int
) -> clustering.GuardedSegmenter:
    """The recipe's segmentation fitted on ``train``'s feature columns, behind the contract's guard."""
    segmenter = clustering.Segmenter(
        recipe.family, recipe.params, spec.numeric_features, spec.categorical_features, seed
    )
    return clustering.GuardedSegmenter(InputGuard.from_spec(spec), segmenter).fit(train[spec.features])


def feature_info(train: pd.DataFrame, spec: DataSpec) -> dict[str, Any]:
    """What serving needs beside the pipeline: column roles, class labels, and the contract's limits
    (ranges, columns that may not be missing) that it counts and enforces per request."""
    columns = spec.contract.columns
    default_limit = spec.contract.max_missing_share
    info: dict[str, Any] = {
        "task": spec.task,
        "numeric": spec.numeric_features,
        "categorical": spec.categorical_features,
        "datetime": spec.datetime_features,
        "text": spec.text_features,
        "order": spec.features,
        "missing_columns": spec.contract.missing_columns,
        "ranges": {
            c: [columns[c].min, columns[c].max]
            for c in spec.numeric_features
            if columns[c].min is not None or columns[c].max is not None
        },
        "not_null": [
            c
            for c in spec.features
            if (columns[c].max_missing_share if columns[c].max_missing_share is not None else default_limit) == 0
        ],
    }
    policy = spec.contract.personal
    if policy.drop or policy.hash:  # what serving and scoring drop and hash in requests before anything else
        info["personal"] = policy.as_dict()
    return info | ({} if spec.target is None else spec.learning_task.label_features(train[spec.target]))


def output_example(pipeline: Any, example: pd.DataFrame, info: dict[str, Any]) -> pd.DataFrame:
    """What the pyfunc model returns for ``example``: the sample its MLflow signature is inferred from."""
    task = for_features(info)
    return task.output_frame(*task.outputs(pipeline, example))


def requirements() -> list[str]:
    return [f"{name}=={metadata.version(name)}" for name in _REQUIREMENTS]


@dataclass(frozen=True)
class Refit:
    """What a recipe refit gives the run that logs it: the model, the run's params and metrics, and the
    model in a line."""

    model: Any
    params: dict[str, Any]
    metrics: dict[str, float]
    described: str


def refit(
    params: dict[str, Any], spec: DataSpec, recipe: TunedRecipe | SegmentationRecipe, train: pd.DataFrame
) -> Refit:
    """The recipe refit on all of train: the finished (ensembled, calibrated) model of a supervised task,
    or a clustering task's segmentation behind the contract's input guard."""
    seed = project.seed(params)
    if isinstance(recipe, SegmentationRecipe):
        model = fit_segmentation(train, spec, recipe, seed)
        stability = {"stability_ari_mean": recipe.stability["mean"]} if recipe.stability else {}
        return Refit(
            model,
            {"family": recipe.family, **recipe.params, "seed": seed, "train_rows": len(train)},
            {f"train/{recipe.metric}": recipe.score} | stability,
            f"{recipe.family} ({model.segmenter.n_clusters_} clusters)",
        )
    kept = read_kept_models(project.paths(params).kept_models, recipe.finish)
    going_on = production_going_on(project.tracking(params).registered_model, recipe, train)
    # a recipe a clock shaped refits on the cores other processes leave free; a reproducible one on a fixed count
    threads = REFIT_THREADS if recipe.reproducible else free_cores()
    features = config.load(FeatureSettings, "features", params)
    model = fit(train, spec, recipe.finish, features, seed, kept, going_on, threads)
    members = recipe.finish.members
    unrefit = sum(not m.refit for m in members)
    described = (
        recipe.family
        if not unrefit
        else (
            f"{recipe.family}: {unrefit} of {len(members)} member(s) kept as the search fitted them (finish.refit), "
            + ("none" if unrefit == len(members) else "the rest")
        )
    )
    return Refit(model, _run_params(recipe, seed, len(train)), {f"cv/{recipe.metric}": recipe.cv_score}, described)


def production_going_on(model_name: str, recipe: TunedRecipe, train: pd.DataFrame) -> GoingOn | None:
    """The production version's CatBoost model a continuation member goes on from, as the recipe names it
    (study.warm_start.continuation), with the train rows it trained on told apart; None when no member is
    one. The version is loaded only once its artifact digest checks out (``tracking.load``)."""
    if not any(m.family == models.CONTINUED for m in recipe.finish.members):
        return None
    named = recipe.study.get("warm_start", {}).get("continuation")
    if named is None:
        raise StageError(f"best_params.json: a {models.CONTINUED} member but no study.warm_start.continuation")
    version = tracking.get_version(model_name, named["version"])
    loaded = tracking.load(version.uri)
    trained = tracking.trained_rows(version.run_id) if version.run_id else None
    told = None if trained is None else trained.holds(train)
    if told is None:
        raise StageError(
            f"{model_name} v{version.version}: the rows it trained on are not on record for this train split"
        )
    return GoingOn(loaded.pipeline.members_[named["member"]], told)


def read_kept_models(path: str, finished: Finish) -> dict[int, Any]:
    """The fitted models tune kept for the members train does not refit; an error naming the file and
    the trial when one is missing (a recipe and a kept file of two different tune runs)."""
    wanted = [m.trial for m in finished.members if not m.refit]
    if not wanted:
        return {}
    try:
        kept = joblib.load(path)
    except FileNotFoundError as error:
        raise StageError(f"{path}: missing; best_params.json keeps trial {wanted[0]}'s model unrefit") from error
    missing = [trial for trial in wanted if trial not in kept]
    if missing:
        raise StageError(
            f"{path}: holds no model of trial {missing[0]}, which best_params.json keeps unrefit "
            f"(the two come from different tune runs); rerun tune: dvc repro --force tune"
        )
    return kept


def run(params: dict[str, Any]) -> TrainingRun:
    """Refit the tuned recipe on all of train and log it as the one MLflow model that evaluate, gate and
    serving use, linked to the tune run whose recipe it refits; the run that logged it. A clustering
    task's recipe is a segmentation (``fit_segmentation``): its model answers a cluster per row."""
    spec, paths, names = project.data_spec(params), project.paths(params), project.tracking(params)
    seed = project.seed(params)
    recipe_type = TunedRecipe if spec.learning_task.supervised else SegmentationRecipe
    recipe = recipe_type.from_json(paths.best_params)
    train = pd.read_parquet(paths.split_file("train"))

    data_hash, dvc_md5 = project.lineage(params)
    tags = tracking.lineage_tags(STAGE, data_hash, dvc_md5) | {
        "mlgate.dataset": spec.name,
        "mlgate.reproducible": str(recipe.reproducible).lower(),
    }
    linked: dict[str, str | None] = {}

    def describe(run_id: str) -> None:
        linked["tune_run"] = _tune_run(names.experiment, paths.best_params)
        if linked["tune_run"]:
            tracking.log(run_id, tags={tracking.TUNE_RUN_TAG: linked["tune_run"]})
        _log_inputs(run_id, train, spec, paths, seed)
        tracking.prepare_model_logging(requirements())

    # the run is opened, and what it read logged, behind the refit; it ends KILLED on Ctrl-C, FAILED on an error
    with tracking.stage_run_behind(
        names.experiment, STAGE, tags, before=lambda: _close_dead_runs(names.experiment), then=describe
    ) as opening:
        started = time.time()
        refitted = refit(params, spec, recipe, train)
        fit_seconds = time.time() - started
        run_id = opening.opened()
        logged, save_s = _log_model_run(run_id, refitted, fit_seconds, train, spec, paths.model)
        model_bytes = sum(f.stat().st_size for f in Path(paths.model).rglob("*") if f.is_file())
        record = training_record(recipe, len(train), model_bytes, tracking.artifact_digest(paths.model), data_hash)
        tracking.log(run_id, metrics={"model_size_bytes": model_bytes})
    tracking_s = time.time() - started - fit_seconds - save_s  # the run's end included
    tracked = TrainingRun(
        run_id=run_id,
        tune_run_id=linked["tune_run"],
        experiment=names.experiment,
        model_uri=logged.model_uri,
        model_id=logged.model_id,
        model_sha256=record.model_sha256,
        fit_seconds=round(fit_seconds, 3),
        tracking_s=round(tracking_s, 3),
        save_s=round(save_s, 3),
    )
    files.write_text(paths.train_info, record.to_json())
    files.write_text(paths.train_run, tracked.to_json())
    console.say(
        STAGE,
        f"{refitted.described} refit on {console.number(len(train))} rows in {fit_seconds:.1f}s "
        f"({model_bytes / 1e6:.1f} MB, sha256 {record.model_sha256[:12]}) → {paths.model}, MLflow run {run_id[:8]}",
    )
    return tracked


def training_record(
    recipe: TunedRecipe | SegmentationRecipe, rows: int, model_bytes: int, model_sha256: str, data_hash: str
) -> TrainingRecord:
    """paths.train_info: what the model is (from the recipe), its size and digest, and the data it saw.
    A segmentation is one model, with neither calibration nor a threshold."""
    if isinstance(recipe, SegmentationRecipe):
        method, calibration, threshold = "single", "none", {"objective": "none", "threshold": 0.5}
        members: tuple[dict[str, Any], ...] = ({"family": recipe.family, "weight": 1.0, "trial": recipe.trial},)
    else:
        finished = recipe.finish
        method, calibration, threshold = finished.method, finished.calibration_method, finished.threshold
        members = tuple(
            {"family": m.family, "weight": m.weight, "trial": m.trial, "refit": m.refit} for m in finished.members
        )
    return TrainingRecord(
        family=recipe.family,
        params=recipe.params,
        method=method,
        members=members,
        calibration=calibration,
        threshold=threshold,
        train_rows=rows,
        model_size_bytes=model_bytes,
        model_sha256=model_sha256,
        data_hash=data_hash,
    )


def _tune_run(experiment: str, best_params: str) -> str | None:
    """The tune run that wrote the recipe's bytes: the recipe names no run (so that an identical search
    leaves it byte for byte as it was), the run is tagged with the bytes' digest."""
    tune_run_id = tracking.newest_run_tagged(experiment, tracking.BEST_PARAMS_TAG, tracking.file_digest(best_params))
    if tune_run_id is None:
        console.say(
            STAGE,
            f"warning: no tune run in experiment '{experiment}' wrote this {best_params}; "
            f"the train run is not linked to one",
        )
    return tune_run_id


def _run_params(recipe: TunedRecipe, seed: int, rows: int) -> dict[str, Any]:
    """The train run's params: the final model's method, calibration and threshold, and each member's
    family, weight and params."""
    finished = recipe.finish
    members = {
        f"member{i}.{k}": v
        for i, m in enumerate(finished.members)
        for k, v in {"family": m.family, "weight": m.weight, "refit": m.refit, **m.params}.items()
    }
    return {
        "family": recipe.family,
        "method": finished.method,
        "calibration": finished.calibration_method,
        "threshold": finished.threshold["threshold"],
        **members,
        "seed": seed,
        "train_rows": rows,
    }


def _close_dead_runs(experiment: str) -> None:
    closed = tracking.close_dead_runs(experiment)
    if closed:
        console.say(STAGE, tracking.closed_summary(closed))


def _log_inputs(run_id: str, train: pd.DataFrame, spec: DataSpec, paths: project.Paths, seed: int) -> None:
    """What the train run read and keeps beside the model: the config and the recipe file, the train
    split, the reference sample, the hashed ids and the trained rows' digests."""
    tracking.log_artifact(run_id, "params.yaml", "config")
    tracking.log_artifact(run_id, paths.best_params, "finish")
    tracking.log_split(run_id, "train", train, paths.split_file("train"), spec.target, "training")
    _log_reference(run_id, train.drop(columns=spec.sensitive), seed)
    _log_ids(run_id, paths.split_ids)
    _log_trained_rows(run_id, train, spec)


def _log_model_run(
    run_id: str, refitted: Refit, fit_seconds: float, train: pd.DataFrame, spec: DataSpec, path: str
) -> tuple[tracking.LoggedModelFiles, float]:
    """The refit's choices and cost, and the model, published at ``path``: the logged model, and the
    seconds spent writing and checking the model's files (the rest was tracking calls)."""
    tracking.log(run_id, params=refitted.params, metrics=refitted.metrics | {"fit_seconds": fit_seconds})
    return _log_model(run_id, refitted.model, train, spec, path)


def _log_reference(run_id: str, train: pd.DataFrame, seed: int) -> None:
    """A sample of train beside the model: what `mlgate monitor` compares live traffic with."""
    with tempfile.TemporaryDirectory() as scratch:
        reference = Path(scratch) / REFERENCE_FILE
        sample = train if len(train) <= REFERENCE_ROWS else train.sample(REFERENCE_ROWS, random_state=seed)
        sample.to_parquet(reference, index=False)
        tracking.log_artifact(run_id, reference, REFERENCE_DIR)


def _log_ids(run_id: str, path: Path) -> None:
    """The hashed ids of the rows the model is trained and tested on, beside it: what `mlgate forget`
    searches to say which versions learnt from, or were judged on, a person's rows. None without an
    id column declared `handling: hash`."""
    ids = pd.read_parquet(path)
    seen = ids[ids["part"].isin(["train", "test"])]
    if seen.empty:
        return
    with tempfile.TemporaryDirectory() as scratch:
        held = Path(scratch) / ERASURE_FILE
        seen.to_parquet(held, index=False)
        tracking.log_artifact(run_id, held, ERASURE_DIR)


def _log_trained_rows(run_id: str, train: pd.DataFrame, spec: DataSpec) -> None:
    """The digests of the rows the model learnt from, beside it: a later gate leaves them out when it
    compares a candidate with this version on a split of grown data (``provenance``)."""
    learnt_from = tuple(spec.features) + ((spec.target,) if spec.target else ())
    with tempfile.TemporaryDirectory() as scratch:
        held = Path(scratch) / TRAINED_ROWS_FILE
        TrainedRows.of(train, learnt_from).save(held)
        tracking.log_artifact(run_id, held, PROVENANCE_DIR)


def _log_model(
    run_id: str, pipeline: Any, train: pd.DataFrame, spec: DataSpec, path: str
) -> tuple[tracking.LoggedModelFiles, float]:
    """Log the pyfunc model (the pipeline and what serving needs beside it) to the run and publish it at
    ``path``; the logged model, and the seconds spent writing and checking its files."""
    writing = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        pipeline_file = Path(scratch) / "pipeline.joblib"
        features_file = Path(scratch) / "features.json"
        joblib.dump(pipeline, pipeline_file)
        features = feature_info(train, spec)
        if spec.learning_task.decides_by_threshold:
            features["threshold"] = pipeline.threshold
        features_file.write_text(json.dumps(features, indent=2))
        example = train[features["order"]].head(5).reset_index(drop=True)
        outputs = output_example(pipeline, example, features)
        written_s = time.perf_counter() - writing
        with files.atomic_path(path) as staged:
            logged = tracking.log_model(
                run_id,
                staged,
                code_path=MODEL_CODE,
                artifacts={"pipeline": str(pipeline_file), "features": str(features_file)},
                input_example=example,
                output_example=outputs,
                string_columns=features["categorical"] + features["text"],
                optional_inputs=spec.contract.missing_columns == "impute",
                pip_requirements=requirements(),
            )
            publishing = time.perf_counter()
        return logged, written_s + logged.save_s + time.perf_counter() - publishing
