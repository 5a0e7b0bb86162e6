"""train: refit what `tune` chose on all of train; save and log one MLflow model.

What tune chose (best_params.json `finish`) is the best trial or an ensemble of trials, with a
calibration map and a decision threshold: each member is refit on all of train, and the whole is one
``ensemble.FinalModel`` inside one pyfunc model. Reads the train split and paths.best_params (never
MLflow); writes paths.model (an MLflow pyfunc model directory that takes raw contract columns) and
paths.train_info (run ids, model URI, timings).

Neither output is byte-stable: the MLflow model directory holds its run id, a model uuid and its
creation time (MLmodel), train.json the run ids and fit time. Both change only when train runs, and
train runs only when its inputs change (best_params.json is byte-stable for the same search).
"""

from __future__ import annotations

import json
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from mlgate import config, console, files, project
from mlgate.adapters import tracking
from mlgate.modelling import models
from mlgate.modelling.data import DataSpec, target_vector
from mlgate.modelling.ensemble import FinalModel
from mlgate.modelling.features import FeatureSettings
from mlgate.registry import REFERENCE_DIR, REFERENCE_FILE

STAGE = "train"
REFERENCE_ROWS = 10_000
MODEL_CODE = Path(__file__).resolve().parent.parent / "modelling" / "pyfunc_model.py"
_REQUIREMENTS = ("mlflow", "scikit-learn", "catboost", "pandas", "numpy", "joblib", "pyarrow")


def fit(
    train: pd.DataFrame, spec: DataSpec, finished: dict[str, Any], settings: FeatureSettings, seed: int
) -> FinalModel:
    """The final model of ``finished`` (best_params.json `finish`), its members refit on ``train``."""
    members = [
        models.build(m["family"], m["params"], spec, settings, threads=2, seed=seed) for m in finished["members"]
    ]
    model = FinalModel(
        members,
        combiner=finished["combiner"],
        calibrator=finished["calibration"],
        threshold=finished["threshold"]["threshold"],
        task=spec.task,
    )
    model.fit(train[spec.features], target_vector(train, spec))
    for member in model.members_:
        models.serial_predictions(member)
    return model


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
    if spec.task == "binary":
        classes = sorted(train[spec.target].astype(str).unique())
        info["positive_class"] = str(spec.positive_class)
        info["negative_class"] = next(c for c in classes if c != str(spec.positive_class))
    if spec.task == "multiclass":
        info["classes"] = list(spec.classes)  # the order of predict_proba's columns
    return info


def output_columns(info: dict[str, Any]) -> list[str]:
    """The pyfunc model's output columns: `prediction`, then binary `probability`, multiclass one
    `probability_<class>` per class."""
    if info["task"] == "binary":
        return ["prediction", "probability"]
    if info["task"] == "multiclass":
        return ["prediction", *(f"probability_{c}" for c in info["classes"])]
    return ["prediction"]


def output_example(pipeline: FinalModel, example: pd.DataFrame, info: dict[str, Any]) -> pd.DataFrame:
    """What the pyfunc model returns for ``example``: the sample its MLflow signature is inferred from."""
    prediction, probability = models.predict(pipeline, example, info["task"])
    if info["task"] == "binary":
        return pd.DataFrame({"prediction": [info["positive_class"]] * len(example), "probability": probability})
    if info["task"] == "multiclass":
        labels = np.asarray(info["classes"], dtype=object)[prediction]
        return pd.DataFrame(dict(zip(output_columns(info), [labels, *probability.T], strict=True)))
    return pd.DataFrame({"prediction": prediction})


def requirements() -> list[str]:
    return [f"{name}=={metadata.version(name)}" for name in _REQUIREMENTS]


def run(params: dict[str, Any]) -> dict[str, Any]:
    spec = project.data_spec(params)
    paths = project.paths(params)
    names = project.tracking(params)
    seed = project.seed(params)
    chosen = files.read_json(paths.best_params)
    train = pd.read_parquet(paths.split_file("train"))

    started = time.time()
    finished = chosen["finish"]
    pipeline = fit(train, spec, finished, config.load(FeatureSettings, "features", params), seed)
    fit_seconds = time.time() - started

    data_hash, dvc_md5 = project.lineage(params)
    # best_params.json names no run (so that an identical search leaves it byte for byte as it was):
    # the tune run that wrote these bytes is found by their digest
    tune_run_id = tracking.newest_run_tagged(
        names.experiment, tracking.BEST_PARAMS_TAG, tracking.file_digest(paths.best_params)
    )
    if tune_run_id is None:
        console.say(
            STAGE,
            f"warning: no tune run in experiment '{names.experiment}' wrote this {paths.best_params}; "
            f"the train run is not linked to one",
        )
    reproducible = chosen.get("budget", {}).get("reproducible", False)
    tags = (
        tracking.lineage_tags(STAGE, data_hash, dvc_md5)
        | {"mlgate.dataset": spec.name, "mlgate.reproducible": str(reproducible).lower()}
        | ({"mlgate.tune_run_id": tune_run_id} if tune_run_id else {})
    )
    closed = tracking.close_dead_runs(names.experiment)
    if closed:
        console.say(STAGE, tracking.closed_summary(closed))
    with tracking.stage_run(names.experiment, STAGE, tags) as run_id:  # ends KILLED on Ctrl-C, FAILED on an error
        members = {
            f"member{i}.{k}": v
            for i, m in enumerate(finished["members"])
            for k, v in {"family": m["family"], "weight": m["weight"], **m["params"]}.items()
        }
        tracking.log(
            run_id,
            params={
                "family": chosen["family"],
                "method": finished["method"],
                "calibration": (finished["calibration"] or {}).get("method", "none"),
                "threshold": finished["threshold"]["threshold"],
                **members,
                "seed": seed,
                "train_rows": len(train),
            },
            metrics={f"cv/{chosen['metric']}": chosen["cv_score"], "fit_seconds": fit_seconds},
        )
        tracking.log_artifact(run_id, "params.yaml", "config")
        tracking.log_artifact(run_id, paths.best_params, "finish")
        with tempfile.TemporaryDirectory() as scratch:
            # what `mlgate monitor` compares live traffic with, kept with the model it belongs to
            reference = Path(scratch) / REFERENCE_FILE
            sample = train if len(train) <= REFERENCE_ROWS else train.sample(REFERENCE_ROWS, random_state=seed)
            sample.to_parquet(reference, index=False)
            tracking.log_artifact(run_id, reference, REFERENCE_DIR)
        with tempfile.TemporaryDirectory() as scratch:
            pipeline_file = Path(scratch) / "pipeline.joblib"
            features_file = Path(scratch) / "features.json"
            joblib.dump(pipeline, pipeline_file)
            features = feature_info(train, spec) | ({"threshold": pipeline.threshold} if spec.task == "binary" else {})
            features_file.write_text(json.dumps(features, indent=2))
            example = train[features["order"]].head(5).reset_index(drop=True)
            with files.atomic_path(paths.model) as staged:
                logged = tracking.log_model(
                    run_id,
                    staged,
                    code_path=MODEL_CODE,
                    artifacts={"pipeline": str(pipeline_file), "features": str(features_file)},
                    input_example=example,
                    output_example=output_example(pipeline, example, features),
                    string_columns=features["categorical"] + features["text"],
                    optional_inputs=spec.contract.missing_columns == "impute",
                    pip_requirements=requirements(),
                )
        model_bytes = sum(f.stat().st_size for f in Path(paths.model).rglob("*") if f.is_file())
        tracking.log(run_id, metrics={"model_size_bytes": model_bytes})
    info = {
        "run_id": run_id,
        "tune_run_id": tune_run_id,
        "experiment": names.experiment,
        **logged,
        "family": chosen["family"],
        "params": chosen["params"],
        "method": finished["method"],
        "members": [{k: m[k] for k in ("family", "weight", "trial")} for m in finished["members"]],
        "calibration": (finished["calibration"] or {}).get("method", "none"),
        "threshold": finished["threshold"],
        "train_rows": len(train),
        "fit_seconds": round(fit_seconds, 3),
        "model_size_bytes": model_bytes,
        "data_hash": data_hash,
    }
    files.write_json(paths.train_info, info)
    console.say(
        STAGE,
        f"{chosen['family']} refit on {console.number(len(train))} rows in {fit_seconds:.1f}s "
        f"({model_bytes / 1e6:.1f} MB) → {paths.model}, MLflow run {run_id[:8]}",
    )
    return info
