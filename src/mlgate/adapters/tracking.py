"""Everything mlgate asks of MLflow: the store, runs, lineage tags, models and the registry.

The only module (with the model code in pyfunc_model.py) that imports mlflow, so an MLflow upgrade
touches one file. Returns plain data, never MLflow entities.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import importlib
import json
import os
import pickle
import queue
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import psutil
import yaml

from mlgate import files
from mlgate.errors import StageError
from mlgate.modelling.provenance import TrainedRows
from mlgate.registry import PROVENANCE_DIR, TRAINED_ROWS_FILE

if TYPE_CHECKING:
    from mlflow import MlflowClient


class _Deferred:
    """A module imported on its first use. Importing this adapter costs no MLflow import (about a
    second): pure code that imports a stage for its plain helpers, and the unit tests, stay MLflow-free."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)


mlflow: Any = _Deferred("mlflow")
entities: Any = _Deferred("mlflow.entities")

PARENT_TAG = "mlflow.parentRunId"
STAGE_TAG = "mlgate.stage"
DIGEST_TAG = "mlgate.model.sha256"  # the artifact digest the gate recorded on a version
# on a tune run: the sha256 of the best_params.json it wrote, which holds no run id (train finds the run by it)
BEST_PARAMS_TAG = "mlgate.best_params_sha256"
TUNE_RUN_TAG = "mlgate.tune_run_id"  # on a train run: the tune run whose recipe it refit
ALLOW_UNVERIFIED_ENV = "MLGATE_ALLOW_UNVERIFIED_MODELS"
_PROJECT_MARKERS = ("dvc.yaml", "params.yaml")


def project_root(start: Path | None = None) -> Path:
    """The project folder, also when DVC runs a stage in a temporary copy (`dvc exp run --temp`).

    Without this, a relative default store would land in the throwaway copy and be lost.
    """
    here = (start or Path.cwd()).resolve()
    parts = here.parts
    if ".dvc" in parts and "exps" in parts:
        return Path(*parts[: parts.index(".dvc")])
    return here


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI if set, else ``sqlite:///<project>/mlflow.db`` (absolute)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"


# Read once: mlflow.set_registry_uri() writes MLFLOW_REGISTRY_URI into the environment, so reading
# it later would pin the registry to the first store this process touched.
_REGISTRY_URI = os.environ.get("MLFLOW_REGISTRY_URI")


def client() -> MlflowClient:
    uri, registry = _use_store()
    if uri.startswith("sqlite:") and uri not in _OPENED:
        with _store_lock(uri):
            _seed_store(Path(uri.removeprefix("sqlite:///")))
            made = mlflow.MlflowClient(tracking_uri=uri, registry_uri=registry)
            made.search_experiments(max_results=1)
        _OPENED.add(uri)
        return made
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=registry)


_OPENED: set[str] = set()  # SQLite stores this process has opened (and so created or migrated)


def _use_store() -> tuple[str, str]:
    """Point MLflow's own calls at the store ``tracking_uri`` names now: once set, MLflow's global URI wins
    over the environment, so a process that moved to another store would resolve ``models:/`` in the old one."""
    uri = tracking_uri()
    registry = _REGISTRY_URI or uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(registry)
    return uri, registry


@contextlib.contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """A lock on a SQLite store's file. MLflow creates and migrates a new store file on first use
    without one, and two processes doing so at once (`dvc repro` and `mlgate ui` on a fresh clone, a
    test watching a stage) break one's migration (alembic: "expected to match one row")."""
    import fcntl

    database = Path(uri.removeprefix("sqlite:///")).resolve()
    key = hashlib.sha256(str(database).encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"mlgate-store-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _seed_store(database: Path) -> None:
    """Start a new SQLite store as a copy of an empty, migrated one. MLflow runs its schema migrations on
    every new store, about 1.3 s: a fixed cost that every project, test and AutoML call pays, 5% of a
    30 s search. The copy goes in whole or not at all; if no template can be made, MLflow migrates as
    before."""
    if database.exists() or not database.parent.is_dir():
        return
    template = _store_template()
    if template is None:
        return
    partial = database.with_name(f".{database.name}.{os.getpid()}.partial")
    try:
        shutil.copyfile(template, partial)
        os.replace(partial, database)
    finally:
        partial.unlink(missing_ok=True)


def _template_folders() -> list[Path]:
    """Beside the interpreter first (a benchmark or CI job may give each run its own HOME), else the
    user's cache."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return [Path(sys.prefix) / "share" / "mlgate", cache / "mlgate"]


def _store_template() -> Path | None:
    """An empty store migrated by this MLflow version, made once. It holds no experiment: MLflow creates
    the default one when a copy is first opened, with that store's own artifact location."""
    name = f"mlflow-{mlflow.__version__}-empty-store.db"
    for folder in _template_folders():
        template = folder / name
        if template.exists():
            return template
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=folder) as scratch:
                made = Path(scratch) / name
                mlflow.MlflowClient(tracking_uri=f"sqlite:///{made}").search_experiments(max_results=1)
                with contextlib.closing(sqlite3.connect(made)) as db:
                    db.execute("DELETE FROM experiments WHERE experiment_id = 0")
                    db.commit()
                    db.execute("VACUUM")
                os.replace(made, template)  # atomic: a concurrent maker's copy is as good as ours
            return template
        except (OSError, sqlite3.Error):
            continue
    return None


def experiment_id(name: str) -> str:
    """Get or create the experiment; local artifacts go to ``<project>/mlruns`` whatever the cwd."""
    c = client()
    found = c.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if tracking_uri().startswith("sqlite:"):
        location = (project_root() / "mlruns").as_uri()
    try:
        return c.create_experiment(name, artifact_location=location)
    except mlflow.MlflowException:  # created meanwhile by a concurrent stage
        return c.get_experiment_by_name(name).experiment_id


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=project_root()
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, cwd=project_root()
        ).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# what lineage_tags may set: the code and data a run (and a model it logs) came from
LINEAGE_TAGS = (STAGE_TAG, "mlgate.data_hash", "mlgate.git_commit", "mlflow.source.git.commit", "mlgate.dvc_data_md5")


def lineage_tags(stage: str, data_hash: str, dvc_md5: str | None = None) -> dict[str, str]:
    commit = git_commit()
    tags = {
        STAGE_TAG: stage,
        "mlgate.data_hash": data_hash,
        "mlgate.git_commit": commit,
        "mlflow.source.git.commit": commit.removesuffix("-dirty"),
    }
    if dvc_md5:
        tags["mlgate.dvc_data_md5"] = dvc_md5
    return tags


@dataclass(frozen=True)
class DataInput:
    """A table a run read, as the MLflow UI's Dataset column shows it."""

    name: str  # train | test | current
    frame: Any  # the pandas DataFrame read: its schema and row count are recorded, not its rows
    path: str  # where the stage read it, relative to the project
    md5: str  # of the file's bytes: what DVC records for it, so the UI names the same data as dvc.lock
    target: str | None
    context: str  # training | testing | monitoring


def log_data_inputs(run_id: str, inputs: list[DataInput]) -> None:
    """Record the tables a run read (``mlflow.log_input``'s dataset entries) without hashing them again."""
    from mlflow.entities import DatasetInput, InputTag

    entries = []
    for data in inputs:
        # the integer-columns schema hint is about serving, not datasets; a local path resolves to
        # either of two identical local sources, which MLflow warns about
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            dataset, rows = (
                mlflow.data.from_pandas(frame, source=data.path, targets=data.target, name=data.name, digest=data.md5)
                for frame in (data.frame, _schema_rows(data.frame))
            )
            dataset.schema = rows.schema  # a cached property: MLflow would infer it from every value
            entity = dataset._to_mlflow_entity()  # what mlflow.log_input sends, for a run that is not active
        entries.append(DatasetInput(entity, tags=[InputTag("mlflow.data.context", data.context)]))
    client().log_inputs(run_id, datasets=entries)


def _schema_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The few rows of ``frame`` whose MLflow schema is the whole frame's: each column's first missing value
    and, in an object column, the first value of each Python type (a typed column's dtype decides alone).
    MLflow looks at every value: 6.6 s for a 210,600-row, 20-column split, 0.14 s through these rows."""
    if not len(frame):
        return frame
    positions = {0}
    for name in frame.columns:
        column = frame[name]
        missing = column.isna().to_numpy()
        if missing.any():
            positions.add(int(missing.argmax()))
        if column.dtype.kind != "O":  # as MLflow tells the columns whose values it looks into
            continue
        if pd.api.types.infer_dtype(column, skipna=True) in ("string", "bytes", "empty"):  # one type, fast
            positions.add(int((~missing).argmax()))
        else:
            positions.update(pd.Series(column.map(type).to_numpy()).drop_duplicates().index)
    return frame.iloc[sorted(positions)]


def log_split(run_id: str, name: str, frame: Any, path: str | Path, target: str | None, context: str) -> None:
    """Record that the run read the split file ``path`` (as ``frame``), named by the md5 of its bytes.

    That md5 is what dvc.lock records for the file once the stage has run; dvc.lock itself is not read,
    since during `dvc repro` it still holds the previous run's entry for the stage that is running.
    """
    log_data_inputs(run_id, [DataInput(name, frame, Path(path).as_posix(), files.md5(path), target, context)])


def create_run(experiment: str, run_name: str, tags: dict[str, str], parent_run_id: str | None = None) -> str:
    """A RUNNING run that records the process running it (``owner_tags``), so that a later run can
    prove it dead if this process is killed before it ends the run."""
    all_tags = dict(tags) | owner_tags()
    if parent_run_id:
        all_tags[PARENT_TAG] = parent_run_id
    return client().create_run(experiment_id(experiment), run_name=run_name, tags=all_tags).info.run_id


def finish_run(run_id: str, status: str = "FINISHED") -> None:
    client().set_terminated(run_id, status=status)


def run_exists(run_id: str) -> bool:
    try:
        client().get_run(run_id)
        return True
    except mlflow.MlflowException:
        return False


def log(
    run_id: str,
    *,
    params: dict[str, Any] | None = None,
    metrics: dict[str, float] | None = None,
    tags: dict[str, str] | None = None,
    step: int = 0,
) -> None:
    now = int(time.time() * 1000)
    client().log_batch(
        run_id,
        metrics=[entities.Metric(k, float(v), now, step) for k, v in (metrics or {}).items()],
        params=[entities.Param(k, str(v)) for k, v in (params or {}).items()],
        tags=[entities.RunTag(k, str(v)) for k, v in (tags or {}).items()],
    )


def log_artifact(run_id: str, path: str | Path, artifact_dir: str | None = None) -> None:
    client().log_artifact(run_id, str(path), artifact_dir)


def run_artifact_uri(run_id: str, artifact_path: str) -> str:
    """Where MLflow finds a run's artifact, wherever the artifact store is."""
    return f"runs:/{run_id}/{artifact_path}"


def run_started_at(run_id: str) -> str:
    """The run's start as an ISO-8601 UTC timestamp."""
    started = client().get_run(run_id).info.start_time / 1000
    return dt.datetime.fromtimestamp(started, dt.UTC).isoformat(timespec="seconds")


def _settle_mlmodel(model_dir: Path) -> None:
    """Keep out of the saved model's MLmodel what differs between two saves of the same model: the
    run, the LoggedModel and its store location, the creation time, the temporary files its artifacts
    were copied from, and the absolute path of the model code (MLflow loads the copy beside MLmodel by
    its file name). The logged copy in the store keeps them all. The same model then has the same
    bytes, which DVC hashes."""
    mlmodel = model_dir / "MLmodel"
    description = yaml.safe_load(mlmodel.read_text())
    for logged_only in ("utc_time_created", "model_uuid", "run_id", "artifact_path"):
        description.pop(logged_only, None)
    description["model_id"] = None
    flavor = description["flavors"]["python_function"]
    for artifact in flavor.get("artifacts", {}).values():
        artifact["uri"] = artifact["path"]
    if flavor.get("model_code_path"):
        flavor["model_code_path"] = Path(flavor["model_code_path"]).name
    mlmodel.write_text(yaml.safe_dump(description, default_flow_style=False))


class Preload:
    """MLflow and its SQL tracking store imported on a thread of its own (about 1.2 s, mostly SQLAlchemy's
    mappers and alembic), started when made: a caller that will open a run soon makes one before other
    work, so that the run exists before the first trial that needs it ends. ``cpu_s()`` is the thread's
    CPU, which is tracking's even though nothing waits for it."""

    def __init__(self) -> None:
        self._cpu_s = 0.0
        self._thread = threading.Thread(target=self._load, name="mlflow-preload", daemon=True)
        self._thread.start()

    def _load(self) -> None:
        started = time.thread_time()
        importlib.import_module("mlflow")
        importlib.import_module("mlflow.store.tracking.sqlalchemy_store")
        self._cpu_s = time.thread_time() - started

    def cpu_s(self) -> float:
        """The thread's CPU seconds, once it is done (it is long done by the time a search ends)."""
        self._thread.join()
        return self._cpu_s


def prepare_model_logging(pip_requirements: list[str]) -> None:
    """What ``log_model`` pays once per process, paid off the stage's path while it fits the model:
    MLflow's pyfunc and model imports (about 0.3 s), and its check of the requirements against the
    installed packages, which maps every installed distribution's files to its modules (0.5-0.8 s)."""
    importlib.import_module("mlflow.pyfunc")
    importlib.import_module("mlflow.models")
    importlib.import_module("mlflow.types.schema")
    importlib.import_module("mlflow.utils.requirements_utils").warn_dependency_requirement_mismatches(pip_requirements)


@dataclass(frozen=True)
class LoggedModelFiles:
    """A model logged to a run: its LoggedModel, and the seconds spent writing and checking its files
    locally (what a stage pays to have a model at all, apart from the tracking calls)."""

    model_uri: str  # models:/m-<id>
    model_id: str
    save_s: float


def log_model(
    run_id: str,
    local_dir: Path,
    *,
    code_path: Path,
    artifacts: dict[str, str],
    input_example,
    output_example,
    string_columns: list[str],
    optional_inputs: bool,
    pip_requirements: list[str],
) -> LoggedModelFiles:
    """Save the pyfunc model to ``local_dir`` once, check that it loads and gives ``output_example``
    for ``input_example``, and log the same files to the run as its LoggedModel.

    What ``mlflow.pyfunc.log_model`` does, without a second save and a second load: the model is
    created in the store first (so the saved MLmodel names it, as a logged one does), it takes the
    run's params, metrics and lineage tags, the run lists it among its outputs, and it ends READY, or FAILED when
    the save or the check fails. Numeric and datetime inputs are typed ``Any`` in the signature:
    MLflow refuses to cast int64 to a double column, and the model's input guard converts them
    itself, NaN included. With ``optional_inputs`` (contract missing_columns: impute) a column may
    be absent.
    """
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus
    from mlflow.models import Model, ModelSignature, infer_signature
    from mlflow.types.schema import AnyType, ColSpec, Schema

    inputs = Schema(
        [
            ColSpec("string" if c in string_columns else AnyType(), c, required=not optional_inputs)
            for c in input_example.columns
        ]
    )
    # MLflow hints that an integer column cannot hold a missing value: the inputs are typed Any above,
    # and an integer output (a cluster) is never missing
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"\s*Hint: Inferred schema contains integer", category=UserWarning)
        outputs = infer_signature(input_example, output_example).outputs
    store = client()
    run = store.get_run(run_id)
    logged = store.create_logged_model(
        run.info.experiment_id,
        name="model",
        source_run_id=run_id,
        params={key: str(value) for key, value in run.data.params.items()},
        tags={key: value for key, value in run.data.tags.items() if key in LINEAGE_TAGS},
    )
    try:
        store.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
        if run.data.metrics:
            now = int(time.time() * 1000)
            store.log_batch(
                run_id,
                metrics=[
                    entities.Metric(key, value, now, 0, run_id=run_id, model_id=logged.model_id)
                    for key, value in run.data.metrics.items()
                ],
            )
        saving = time.perf_counter()
        mlflow.pyfunc.save_model(
            str(local_dir),
            python_model=str(code_path),
            artifacts=artifacts,
            signature=ModelSignature(inputs=inputs, outputs=outputs),
            input_example=input_example,
            pip_requirements=pip_requirements,
            mlflow_model=Model(
                artifact_path=logged.artifact_location,
                model_uuid=logged.model_id,
                run_id=run_id,
                model_id=logged.model_id,
            ),
        )
        _check_saved_model(Path(local_dir), input_example, output_example)
        save_s = time.perf_counter() - saving
        store.log_model_artifacts(logged.model_id, str(local_dir))
    except BaseException:
        store.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
        raise
    store.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    _settle_mlmodel(Path(local_dir))
    return LoggedModelFiles(f"models:/{logged.model_id}", logged.model_id, round(save_s, 3))


def _check_saved_model(model_dir: Path, input_example: pd.DataFrame, output_example: pd.DataFrame) -> None:
    """The saved files, loaded as serving loads them, must give what the fitted model gave for the
    input example: a model that pickles but does not load, or loads something else, stops here."""
    try:
        loaded = mlflow.pyfunc.load_model(str(model_dir)).predict(input_example)
        pd.testing.assert_frame_equal(
            pd.DataFrame(loaded).reset_index(drop=True),
            output_example.reset_index(drop=True),
            check_dtype=False,
            rtol=1e-9,
        )
    except Exception as error:
        raise StageError(
            f"{model_dir}: the saved model, loaded back, does not give the fitted model's output on its "
            f"input example; the logged model is marked FAILED ({' '.join(str(error).split())[:400]})"
        ) from error


@dataclass(frozen=True)
class TrialRecord:
    """One finished trial, as the study's child run should show it."""

    name: str
    params: dict[str, Any]
    metrics: dict[str, float]
    fold_metrics: dict[str, list[float]]
    tags: dict[str, str]
    status: str  # FINISHED | FAILED | KILLED
    start_ms: int
    end_ms: int
    children: tuple[TrialRecord, ...] = ()  # runs nested under this one (per-fold runs)
    run_id: str | None = None  # the RUNNING run made when the trial started (a distributed worker's); None: a new run
    artifacts: tuple[tuple[str, str], ...] = ()  # (local file, artifact folder) to log with the run


class TrialRecorder:
    """Writes trial runs as children of the study's parent run, off the trial's path.

    Trials only enqueue a small record. Where several trials run as threads of one process (the tune
    stage), a separate process writes them: the ~25 ms of CPU that MLflow's store spends per run lands
    on another core instead of competing with the trials for the GIL, and it still writes what was
    queued if the search is killed. That process is a fresh interpreter fed over a pipe, not a
    multiprocessing child: spawn re-runs the caller's script, which re-ran a whole ``automl.fit`` from a
    script without a ``__main__`` guard and failed it. A distributed worker runs one trial at a time and
    already holds MLflow, so it writes from a thread (``separate_process=False``): a second process would
    import MLflow again (about 5 s of CPU and 150 MB per worker) for nothing; the coordinator writes the
    runs of trials a killed worker finished but had not written (``tune._write_unrecorded``). The writer
    starts with the first record, so a search that records nothing (a coordinator whose workers log their
    own trials) starts none. The parent link is explicit (``mlflow.parentRunId``), so it holds whatever
    thread ran the trial. ``close()`` waits until every record is written.
    """

    def __init__(
        self,
        experiment: str,
        parent_run_id: str | Callable[[], str],
        base_tags: dict[str, str],
        separate_process: bool = True,
    ):
        self._experiment, self._parent, self._base_tags = experiment, parent_run_id, base_tags
        self._known: tuple[str, str, str, dict[str, str]] | None = None
        if isinstance(parent_run_id, str):  # a worker's: its MLflow warms up here, before its first trial's run
            self._known = (tracking_uri(), experiment_id(experiment), parent_run_id, base_tags)
        self._separate_process = separate_process
        self._records: queue.Queue[TrialRecord | None] = queue.Queue()
        self._writer: threading.Thread | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self.written = 0
        self.errors: list[str] = []
        self.cpu_s = 0.0  # the CPU the writer spent (its thread's, or its whole process's), once closed

    def record(self, trial: TrialRecord) -> None:
        if self._writer is None:
            self._start()
        self._records.put(trial)

    def _start(self) -> None:
        if self._separate_process:
            source_root = str(Path(__file__).resolve().parents[2])  # where this process imported mlgate from
            self._process = subprocess.Popen(
                [sys.executable, "-c", _WRITER_MAIN, source_root], stdin=subprocess.PIPE, stdout=subprocess.PIPE
            )
            target: Callable[[], None] = self._feed
        else:
            target = self._drain
        self._writer = threading.Thread(target=target, name="mlgate-trial-recorder", daemon=True)
        self._writer.start()

    def _arguments(self) -> tuple[str, str, str, dict[str, str]]:
        """The writer's arguments; a parent still being opened (``stage_run_behind``) is waited for, and the
        experiment looked up, on the writer's thread, off the search's path."""
        if self._known is not None:
            return self._known
        assert callable(self._parent)
        return tracking_uri(), experiment_id(self._experiment), self._parent(), self._base_tags

    def _drain(self) -> None:
        started = time.thread_time()
        try:
            write = _RunWriter(*self._arguments())
        except Exception as error:  # noqa: BLE001 - the stage reports untracked trials, it does not stop
            self.errors.append(f"{type(error).__name__}: {error}")
            write = None
        while (trial := self._records.get()) is not None:
            if write is not None:
                write(trial)
        if write is not None:
            self.written, self.errors = write.written, write.errors
        self.cpu_s = time.thread_time() - started

    def _feed(self) -> None:
        """Pickle the arguments, then each record, then None, into the writer process's stdin."""
        assert self._process is not None and self._process.stdin is not None
        pipe = self._process.stdin
        try:
            pickle.dump(self._arguments(), pipe)
            while True:
                trial = self._records.get()
                pickle.dump(trial, pipe)
                pipe.flush()
                if trial is None:
                    break
            pipe.close()
        except (BrokenPipeError, OSError):  # the writer died: close() reports it
            while self._records.get() is not None:
                pass
        except Exception as error:  # noqa: BLE001 - no parent or experiment: the trials go untracked
            self.errors.append(f"{type(error).__name__}: {error}")
            self._process.kill()
            with contextlib.suppress(OSError):
                pipe.close()
            while self._records.get() is not None:
                pass

    def close(self) -> None:
        if self._writer is None:
            return
        self._records.put(None)
        self._writer.join()
        if self._process is None:
            return
        assert self._process.stdout is not None
        try:
            self.written, errors, self.cpu_s = pickle.load(self._process.stdout)
            self.errors += errors
        except (EOFError, pickle.UnpicklingError):
            code = self._process.wait()
            if not self.errors:
                self.errors.append(f"the trial recorder stopped (exit code {code}) before writing every run")
        self._process.stdout.close()
        self._process.wait()


# Ctrl-C in the terminal reaches the recorder too: it ignores it from its first line, before the imports
# (a Ctrl-C while it still imported pandas ended it with the trials unwritten), and ends when the parent's
# records do.
_WRITER_MAIN = (
    "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "import sys; root = sys.argv[1]; root in sys.path or sys.path.insert(0, root); "
    f"from {__name__} import _write_piped_trials; _write_piped_trials()"
)


class _RunWriter:
    """Writes each record as a run under the parent (a new run, or the RUNNING one the trial made); counts
    what it wrote and keeps why any failed, so a tracking hiccup does not stop the search."""

    def __init__(self, uri: str, experiment: str, parent_run_id: str, base_tags: dict[str, str]):
        self.client = mlflow.MlflowClient(tracking_uri=uri)
        self.experiment, self.parent_run_id, self.base_tags = experiment, parent_run_id, base_tags
        self.written = 0
        self.errors: list[str] = []

    def __call__(self, trial: TrialRecord) -> None:
        try:
            self._write(trial, self.parent_run_id)
            self.written += 1
        except Exception as error:  # noqa: BLE001 - a tracking hiccup must not kill the search
            self.errors.append(f"{trial.name}: {error}" + (POOL_HINT if "QueuePool limit" in str(error) else ""))

    def _write(self, record: TrialRecord, parent: str) -> None:
        tags = {**self.base_tags, **record.tags, PARENT_TAG: parent}
        if record.run_id is None:
            run_id = self.client.create_run(
                self.experiment, start_time=record.start_ms, tags=tags, run_name=record.name
            ).info.run_id
            logged_tags = []
        else:
            run_id = record.run_id
            logged_tags = [entities.RunTag(k, v) for k, v in (tags | {"mlflow.runName": record.name}).items()]
        metrics = [entities.Metric(k, float(v), record.end_ms, 0) for k, v in record.metrics.items()]
        for key, values in record.fold_metrics.items():
            metrics += [entities.Metric(key, float(v), record.end_ms, step) for step, v in enumerate(values)]
        params = [entities.Param(k, str(v)) for k, v in record.params.items()]
        self.client.log_batch(run_id, metrics=metrics, params=params, tags=logged_tags)
        for local, folder in record.artifacts:
            self.client.log_artifact(run_id, local, folder)
        for child in record.children:
            self._write(child, run_id)
        self.client.set_terminated(run_id, status=record.status, end_time=record.end_ms)


def _write_piped_trials() -> None:
    """The recorder process: its arguments, then records, pickled on stdin until None; each is written as
    it comes. The end of stdin before None means the parent was killed: what it had sent is written all
    the same. Reports (written, errors, its CPU seconds) pickled on its stdout; anything MLflow prints goes to stderr.
    It ignores Ctrl-C (``_WRITER_MAIN``)."""
    report = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    source = sys.stdin.buffer
    write = _RunWriter(*pickle.load(source))
    while True:
        try:
            trial = pickle.load(source)
        except (EOFError, pickle.UnpicklingError):  # the pipe's end, torn mid-record: the parent is gone
            break
        if trial is None:
            break
        write(trial)
    with contextlib.suppress(BrokenPipeError):
        pickle.dump((write.written, write.errors, time.process_time()), report)
        report.flush()
    os._exit(0)  # every run is committed; skip interpreter teardown (~1 s the study would wait for)


POOL_HINT = (
    " (the tracking server's database pool is smaller than its concurrent requests: run it as "
    "deploy/mlflow-server.sh does, MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW=36)"
)


def close_run(run_id: str, reason: str, status: str = "KILLED") -> bool:
    """End ``run_id`` as ``status`` with ``reason`` (``mlgate.closed_reason``) if it is still RUNNING: a
    run whose process is known dead (a distributed trial that stopped beating). Whether it closed it."""
    c = client()
    if c.get_run(run_id).info.status != "RUNNING":
        return False
    c.set_tag(run_id, CLOSED_REASON_TAG, reason[:4000])
    c.set_terminated(run_id, status=status)
    return True


@contextlib.contextmanager
def trial_recorder(
    experiment: str, parent_run_id: str, base_tags: dict[str, str], separate_process: bool = True
) -> Iterator[TrialRecorder]:
    recorder = TrialRecorder(experiment, parent_run_id, base_tags, separate_process)
    try:
        yield recorder
    finally:
        recorder.close()


def child_runs(parent_run_id: str) -> list[dict[str, Any]]:
    runs = client().search_runs(
        [client().get_run(parent_run_id).info.experiment_id],
        filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}'",
        max_results=50_000,
    )
    return [
        {
            "run_id": r.info.run_id,
            "status": r.info.status,
            "params": r.data.params,
            "metrics": r.data.metrics,
            "tags": r.data.tags,
        }
        for r in runs
    ]


def file_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def newest_run_tagged(experiment: str, key: str, value: str) -> str | None:
    """The id of the newest run of ``experiment`` tagged ``key`` = ``value``, or None."""
    runs = client().search_runs(
        [experiment_id(experiment)],
        filter_string=f"tags.`{key}` = '{value}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


# --- runs a killed process left RUNNING ---------------------------------------------------------

HOST_TAG, PID_TAG, PID_STARTED_TAG = "mlgate.host", "mlgate.pid", "mlgate.pid_started"
HEARTBEAT_TAG, CLOSED_REASON_TAG = "mlgate.heartbeat", "mlgate.closed_reason"
HEARTBEAT_S = 60.0
HEARTBEAT_GRACE_S = 900.0  # 15 missed beats: a busy store or a laptop's sleep is not death
DEAD, ALIVE, UNKNOWN = "dead", "alive", "unknown"


def owner_tags() -> dict[str, str]:
    """This process as a run records it: host, pid and the pid's start time (a pid is reused)."""
    return {
        HOST_TAG: socket.gethostname(),
        PID_TAG: str(os.getpid()),
        PID_STARTED_TAG: f"{psutil.Process().create_time():.3f}",
    }


def process_started(pid: int) -> float | None:
    """When process ``pid`` of this host started (epoch s); None when there is none (a zombie has
    exited, it only waits to be reaped); NaN when it exists but its start is hidden from us."""
    try:
        process = psutil.Process(pid)
        return None if process.status() == psutil.STATUS_ZOMBIE else process.create_time()
    except (psutil.NoSuchProcess, ValueError):
        return None
    except psutil.AccessDenied:
        return float("nan")


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def liveness(
    tags: dict[str, str],
    *,
    host: str,
    now: float,
    started: Callable[[int], float | None],
    grace_s: float = HEARTBEAT_GRACE_S,
) -> tuple[str, str]:
    """(DEAD | ALIVE | UNKNOWN, why) of the process that owns a RUNNING run with these tags.

    On this host the process table decides: the pid is gone, or now belongs to a process that
    started at another time. Elsewhere only a heartbeat older than ``grace_s`` proves death. A run
    without either record (an older mlgate, another tool) is UNKNOWN: it may be alive.
    ``started`` is ``process_started`` (a fake process table in tests).
    """
    pid, recorded, beat = (
        _number(tags.get(PID_TAG)),
        _number(tags.get(PID_STARTED_TAG)),
        _number(tags.get(HEARTBEAT_TAG)),
    )
    owner = tags.get(HOST_TAG)
    if owner == host and pid is not None and pid == int(pid) and pid > 0:
        now_started = started(int(pid))
        if now_started is None:
            return DEAD, f"process {int(pid)} on {host} is gone"
        if recorded is not None and abs(now_started - recorded) > 1.0:  # NaN (hidden) compares False: alive
            return DEAD, (
                f"process {int(pid)} on {host} is gone (the pid now belongs to a process started "
                f"{dt.datetime.fromtimestamp(now_started, dt.UTC).isoformat(timespec='seconds')})"
            )
        return ALIVE, f"process {int(pid)} on {host} is running"
    if beat is not None:
        age = now - beat
        if age > grace_s:
            return DEAD, f"no heartbeat from {owner or 'its host'} for {age:.0f}s (grace {grace_s:.0f}s)"
        return ALIVE, f"heartbeat from {owner or 'its host'} {age:.0f}s ago"
    return UNKNOWN, "no process record on this host and no heartbeat"


@dataclass(frozen=True)
class ClosedRun:
    """A run found RUNNING with its process dead, now KILLED."""

    run_id: str
    name: str
    reason: str
    nested: int  # RUNNING runs under it, closed with it


def close_dead_runs(
    experiment: str, *, grace_s: float = HEARTBEAT_GRACE_S, started: Callable[[int], float | None] = process_started
) -> list[ClosedRun]:
    """End as KILLED each RUNNING run of ``experiment`` whose process is provably dead (``liveness``),
    and the RUNNING runs nested under it (trials, folds) unless they are provably alive themselves;
    each tagged ``mlgate.closed_reason``. A run that may be alive (another user's stage on the same
    store) is never touched."""
    c = client()
    found = c.get_experiment_by_name(experiment)
    if found is None:
        return []
    running = c.search_runs([found.experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=50_000)
    children: dict[str, list] = {}
    for run in running:
        if PARENT_TAG in run.data.tags:
            children.setdefault(run.data.tags[PARENT_TAG], []).append(run)
    host, now = socket.gethostname(), time.time()
    closed, done = [], set()
    ids = {run.info.run_id for run in running}
    for run in sorted(running, key=lambda r: r.data.tags.get(PARENT_TAG) in ids):  # outermost first
        state, reason = liveness(run.data.tags, host=host, now=now, started=started, grace_s=grace_s)
        if state != DEAD or run.info.run_id in done or c.get_run(run.info.run_id).info.status != "RUNNING":
            continue  # alive, may be, closed under its parent, or ended since the search
        end_ms = int(1000 * (_number(run.data.tags.get(HEARTBEAT_TAG)) or now))  # last seen alive, if known
        nested, below = 0, list(children.get(run.info.run_id, []))
        while below:
            child = below.pop()
            if (
                child.info.run_id in done
                or liveness(child.data.tags, host=host, now=now, started=started, grace_s=grace_s)[0] == ALIVE
            ):
                continue
            _kill(c, child.info.run_id, f"its parent run {run.info.run_id} was closed: {reason}", end_ms)
            done.add(child.info.run_id)
            nested += 1
            below += children.get(child.info.run_id, [])
        _kill(c, run.info.run_id, reason, end_ms)
        done.add(run.info.run_id)
        closed.append(ClosedRun(run.info.run_id, run.info.run_name or "", reason, nested))
    return closed


def _kill(c: MlflowClient, run_id: str, reason: str, end_ms: int) -> None:
    c.set_tag(run_id, CLOSED_REASON_TAG, reason[:4000])
    c.set_terminated(run_id, status="KILLED", end_time=end_ms)


def closed_summary(closed: list[ClosedRun]) -> str:
    """One line for the console: what was closed and why."""
    nested = sum(run.nested for run in closed)
    listed = "; ".join(f"{run.name} {run.run_id[:8]} ({run.reason})" for run in closed)
    return f"closed {len(closed)} run{'s' if len(closed) != 1 else ''} left RUNNING by a killed process: {listed}" + (
        f", with {nested} nested run{'s' if nested != 1 else ''}" if nested else ""
    )


@contextlib.contextmanager
def heartbeat(run_id: str, every_s: float = HEARTBEAT_S) -> Iterator[None]:
    """Tag the run with the time (``mlgate.heartbeat``) every ``every_s`` while the block runs: how a
    run on another host whose process died is told from one still working."""
    stop = threading.Event()
    writer = mlflow.MlflowClient(tracking_uri=tracking_uri())

    def beat() -> None:
        while True:
            with contextlib.suppress(Exception):  # a missed beat is harmless; only a long silence counts
                writer.set_tag(run_id, HEARTBEAT_TAG, f"{time.time():.0f}")
            if stop.wait(every_s):
                return

    thread = threading.Thread(target=beat, name="mlgate-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@contextlib.contextmanager
def stage_run(experiment: str, run_name: str, tags: dict[str, str], every_s: float = HEARTBEAT_S) -> Iterator[str]:
    """A stage's run for the block: created with its owner record, a heartbeat while the block runs,
    and ended whatever happens: FINISHED, FAILED on an error, KILLED on Ctrl-C. Only a killed
    process leaves it RUNNING, and ``close_dead_runs`` can then prove that."""
    run_id = create_run(experiment, run_name, tags)
    status = "FAILED"
    try:
        with heartbeat(run_id, every_s):
            yield run_id
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        finish_run(run_id, status)


class RunBehind:
    """A stage run that a thread of its own opens while the stage goes on (``stage_run_behind``)."""

    def __init__(self) -> None:
        self._created = threading.Event()  # the run exists (or the thread stopped before it did)
        self._opened = threading.Event()  # the thread is done: the run set up, or ``failure`` set
        self._run_id: str | None = None
        self.failure: BaseException | None = None  # what stopped the thread, if an error did
        self.cpu_s = 0.0  # the CPU the thread spent, once it is done: the tracking the stage did not wait for

    @property
    def id(self) -> str:
        """The run's id, once the run exists (this waits for it); what stopped the thread, if anything did."""
        self._created.wait()
        if self._run_id is None:
            raise self.error() from self.failure
        return self._run_id

    def opened(self) -> str:
        """The run's id once the thread is done (its params and inputs logged too); what stopped it, if
        anything did."""
        self._opened.wait()
        if self.failure is not None:
            raise self.error() from self.failure
        assert self._run_id is not None
        return self._run_id

    def error(self) -> StageError:
        return StageError(
            f"MLflow tracking at {tracking_uri()} failed while opening the run: "
            f"{type(self.failure).__name__}: {self.failure}"
        )

    def _open(
        self, open_run: Callable[[], str], then: Callable[[str], None] | None, beat: contextlib.ExitStack, every_s
    ):
        started = time.thread_time()
        try:
            self._run_id = open_run()
            beat.enter_context(heartbeat(self._run_id, every_s))
            self._created.set()
            if then is not None:
                then(self._run_id)
        except BaseException as error:  # noqa: BLE001 - handed to the stage, which raises it
            self.failure = error
        finally:
            self.cpu_s = time.thread_time() - started
            self._created.set()
            self._opened.set()


@contextlib.contextmanager
def stage_run_behind(
    experiment: str,
    run_name: str,
    tags: dict[str, str],
    *,
    before: Callable[[], None] | None = None,
    then: Callable[[str], None] | None = None,
    every_s: float = HEARTBEAT_S,
) -> Iterator[RunBehind]:
    """``stage_run``, opened off the stage's path: a thread runs ``before`` (closing dead runs), creates the
    run, starts its heartbeat and runs ``then(run_id)`` (the run's params and inputs) while the block goes
    on. A stage's first MLflow call imports MLflow and its SQL store (about 1.2 s of CPU); a search
    started behind it would wait for that, 4% of a 30 s AutoML budget. The block asks for ``id`` only
    where it needs the run; it should check ``failure`` at its own pace, and the block's end raises it.
    The run ends as ``stage_run``'s does: FINISHED, FAILED on an error (the thread's too), KILLED on
    Ctrl-C."""
    opening, beat = RunBehind(), contextlib.ExitStack()

    def open_run() -> str:
        if before is not None:
            before()
        return create_run(experiment, run_name, tags)

    thread = threading.Thread(
        target=opening._open, args=(open_run, then, beat, every_s), name="mlgate-open-run", daemon=True
    )
    thread.start()
    status = "FAILED"
    try:
        yield opening
        thread.join()
        if opening.failure is not None:
            raise opening.error() from opening.failure
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        thread.join()
        beat.close()
        if opening._run_id is not None:
            finish_run(opening._run_id, status)


# --- registry ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: int
    run_id: str | None
    source: str
    aliases: tuple[str, ...]
    tags: dict[str, str]

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def _version(mv) -> ModelVersion:
    return ModelVersion(mv.name, int(mv.version), mv.run_id, mv.source, tuple(mv.aliases or ()), dict(mv.tags or {}))


def register(name: str, model_uri: str, run_id: str) -> ModelVersion:
    """The registered version of this run's model, creating it (and the registered model) if needed.

    Idempotent, so rerunning the gate on the same candidate does not add versions.
    """
    c = client()
    try:
        c.get_registered_model(name)
    except mlflow.MlflowException:
        with contextlib.suppress(mlflow.MlflowException):
            c.create_registered_model(name, description="Registered by mlgate's gate stage.")
    existing = [v for v in c.search_model_versions(f"name = '{name}' and run_id = '{run_id}'") if v.source == model_uri]
    if existing:
        return _version(max(existing, key=lambda v: int(v.version)))
    # a tracking server refuses a LoggedModel source (models:/m-<id>) unless the model_id names it too
    logged = model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None
    return _version(c.create_model_version(name, model_uri, run_id=run_id, model_id=logged))


def get_version(name: str, version: int) -> ModelVersion:
    return _version(client().get_model_version(name, str(version)))


def version_by_alias(name: str, alias: str) -> ModelVersion | None:
    try:
        return _version(client().get_model_version_by_alias(name, alias))
    except mlflow.MlflowException:
        return None


def set_version_tags(name: str, version: int, tags: dict[str, Any]) -> None:
    c = client()
    for key, value in tags.items():
        c.set_model_version_tag(name, str(version), key, str(value))


def set_alias(name: str, alias: str, version: int) -> None:
    client().set_registered_model_alias(name, alias, str(version))


def download_artifact(run_id: str, path: str, destination: str | Path) -> Path:
    return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path, dst_path=str(destination)))


def download_artifact_if_logged(run_id: str, path: str, destination: str | Path) -> Path | None:
    """``download_artifact``, or None when the run never logged ``path``."""
    folder = Path(path).parent.as_posix()
    if not any(f.path == path for f in client().list_artifacts(run_id, None if folder == "." else folder)):
        return None
    return download_artifact(run_id, path, destination)


def trained_rows(run_id: str) -> TrainedRows | None:
    """The rows a train run's model trained on, as it logged their digests; None if it logged none."""
    with tempfile.TemporaryDirectory() as scratch:
        logged = download_artifact_if_logged(run_id, f"{PROVENANCE_DIR}/{TRAINED_ROWS_FILE}", scratch)
        return None if logged is None else TrainedRows.load(logged)


def versions(name: str) -> list[ModelVersion]:
    """Every version of the registered model ``name``, oldest first (none when it is not registered)."""
    found = client().search_model_versions(f"name = '{name}'")
    return sorted((_version(v) for v in found), key=lambda v: v.version)


def run_metrics(run_id: str) -> dict[str, float]:
    return dict(client().get_run(run_id).data.metrics)


def run_tags(run_id: str) -> dict[str, str]:
    return dict(client().get_run(run_id).data.tags)


def model_tags(name: str) -> dict[str, str]:
    return dict(client().get_registered_model(name).tags or {})


def set_model_tag(name: str, key: str, value: str) -> None:
    client().set_registered_model_tag(name, key, value)


def delete_model_tag(name: str, key: str) -> None:
    with contextlib.suppress(mlflow.MlflowException):
        client().delete_registered_model_tag(name, key)


def lock_generations(prefix: str) -> dict[int, dict[str, str]]:
    """Every registered model named ``<prefix><n>`` (n an integer), as {n: its tags}."""
    found = client().search_registered_models(filter_string=f"name LIKE '{prefix}%'", max_results=1000)
    return {
        int(m.name[len(prefix) :]): dict(m.tags or {})
        for m in found
        if m.name.startswith(prefix) and m.name[len(prefix) :].isdigit()
    }


def try_lock(name: str, tags: dict[str, str]) -> bool:
    """Create the registered model ``name`` with ``tags``; False if it exists.

    Creating a registered model is the one registry write every MLflow store makes atomic (a unique
    key, model and tags in one transaction): an alias or tag update has no compare-and-set.
    """
    try:
        client().create_registered_model(name, tags=tags, description="A generation of mlgate's promotion lock.")
        return True
    except mlflow.MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return False


def set_lock_tag(name: str, key: str, value: str) -> bool:
    """Set a tag on the lock ``name``; False when that lock no longer exists."""
    try:
        client().set_registered_model_tag(name, key, value)
        return True
    except mlflow.MlflowException:
        return False


def delete_lock(name: str) -> None:
    with contextlib.suppress(mlflow.MlflowException):
        client().delete_registered_model(name)


def ui_base(configured: str) -> str:
    """Where people browse the runs: the tracking server itself when there is one (its UI is the
    server), else ``configured`` (tracking.ui_url, where `mlgate ui` serves the local store)."""
    uri = tracking_uri()
    return uri.rstrip("/") if uri.startswith(("http://", "https://")) else configured


def run_link(ui_url: str, run_id: str) -> str:
    exp = client().get_run(run_id).info.experiment_id
    return f"{ui_url.rstrip('/')}/#/experiments/{exp}/runs/{run_id}"


def experiment_link(ui_url: str, experiment: str) -> str:
    """The experiment in the UI's model-training view (runs, trials nested under tune): MLflow 3.17's
    UI opens an experiment on its GenAI trace overview unless the URL asks otherwise."""
    return f"{ui_url.rstrip('/')}/#/experiments/{experiment_id(experiment)}?workflowType=machine_learning"


def version_link(ui_url: str, name: str, version: int) -> str:
    return f"{ui_url.rstrip('/')}/#/models/{name}/versions/{version}"


@dataclass(frozen=True)
class LoadedModel:
    """A pyfunc model, plus the fitted scikit-learn pipeline and feature spec when it is one of ours.

    ``predict_unchecked`` skips MLflow's schema enforcement (about 1 ms a call) for our models,
    whose pipeline starts with the contract's own input guard; for others it is ``predict``.
    """

    predict: Any
    pipeline: Any
    features: dict[str, Any] | None = None
    predict_unchecked: Any = None
    input_columns: tuple[str, ...] = ()


def artifact_digest(folder: str | Path) -> str:
    """sha256 of the manifest of ``folder``: every file's path relative to it, sorted, with its sha256.

    Any added, removed, renamed or changed file changes it; files are hashed in blocks, so memory
    stays small whatever the model's size.
    """
    folder = Path(folder)
    manifest = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        with path.open("rb") as handle:
            manifest.append([path.relative_to(folder).as_posix(), hashlib.file_digest(handle, "sha256").hexdigest()])
    return hashlib.sha256(json.dumps(manifest).encode()).hexdigest()


def _download_version(name: str, version: int, destination: str | Path) -> Path:
    """The files the store holds for a registered version (what loading it would read)."""
    return Path(
        mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=str(destination))
    )


def model_digest(name: str, version: int) -> str:
    """The artifact digest of a registered version, from the files the store holds now."""
    with tempfile.TemporaryDirectory(prefix="mlgate-digest-") as scratch:
        return artifact_digest(_download_version(name, version, scratch))


def record_digest(held: ModelVersion) -> str:
    """The artifact digest to record on ``held`` (the gate's candidate), from the files the store holds.

    A version that already has one (the gate ran on it before) must still match it: re-gating must
    not bless files changed since.
    """
    digest = model_digest(held.name, held.version)
    recorded = held.tags.get(DIGEST_TAG)
    if recorded is not None and recorded != digest:
        raise StageError(
            f"{held.name} v{held.version}: the artifacts in the store changed since the gate recorded "
            f"their digest ({DIGEST_TAG}={recorded[:16]}, now {digest[:16]}); find out who changed them, "
            f"then train and gate a fresh candidate"
        )
    return digest


def _registry_version(uri: str) -> ModelVersion | None:
    """The registered version ``uri`` names (models:/name/N or models:/name@alias), else None.

    A LoggedModel (models:/m-<id>), a run or a path names exact artifacts, not a registry entry.
    """
    if not uri.startswith("models:/"):
        return None
    rest = uri.removeprefix("models:/").rstrip("/")
    if "@" in rest:
        name, alias = rest.split("@", 1)
        held = version_by_alias(name, alias)
        if held is None:
            raise StageError(f"{uri}: registered model '{name}' has no version with alias '{alias}'")
        return held
    if "/" not in rest:
        return None
    name, version = rest.split("/", 1)
    if not version.isdigit():
        raise StageError(
            f"{uri}: name a version number or an alias (models:/{name}/3, models:/{name}@production); "
            f"registry stages are deprecated and not verified"
        )
    try:
        return get_version(name, int(version))
    except mlflow.MlflowException as error:
        raise StageError(f"{uri}: no such registered version ({error.message})") from None


def verify_digest(held: ModelVersion, folder: str | Path) -> None:
    """Refuse ``folder`` (``held``'s downloaded artifacts) unless it matches the digest the gate recorded."""
    recorded = held.tags.get(DIGEST_TAG)
    if recorded is None:
        if os.environ.get(ALLOW_UNVERIFIED_ENV) == "1":
            warnings.warn(
                f"{held.name} v{held.version} has no recorded artifact digest; loading it unverified "
                f"because {ALLOW_UNVERIFIED_ENV}=1",
                stacklevel=2,
            )
            return
        raise StageError(
            f"{held.name} v{held.version} has no recorded artifact digest (version tag {DIGEST_TAG}), "
            f"so its pickled code cannot be checked before it runs. Versions gated by this mlgate have "
            f"one: run the pipeline to gate a fresh candidate; or, once someone has checked its files, "
            f"`mlgate seal --version {held.version} --reason ...` records their digest; or, if you trust "
            f"every writer of the registry and the artifact store, set {ALLOW_UNVERIFIED_ENV}=1 to load "
            f"it unverified"
        )
    actual = artifact_digest(folder)
    if actual != recorded:
        raise StageError(
            f"{held.name} v{held.version}: the artifacts in the store do not match the digest the gate "
            f"recorded ({DIGEST_TAG}={recorded[:16]}, now {actual[:16]}); refusing to load it, since "
            f"loading runs its pickled code. The files were changed after the gate: find out who "
            f"changed them, then gate a fresh candidate"
        )


def load(uri: str) -> LoadedModel:
    """Load a pyfunc model. A registered version is downloaded, checked against the artifact digest
    the gate recorded and only then loaded (unpickled) from those same files; any other URI is
    loaded as given."""
    held = _registry_version(uri)
    if held is None:
        return _loaded(_load_pyfunc(uri))
    with tempfile.TemporaryDirectory(prefix="mlgate-model-") as scratch:
        folder = _download_version(held.name, held.version, scratch)
        verify_digest(held, folder)
        return _loaded(_load_pyfunc(str(folder)))


def _load_pyfunc(location: str) -> Any:
    """``mlflow.pyfunc.load_model`` with its environment check done here for a local folder: MLflow's first
    maps every installed package to its modules, about 0.9 s of CPU in each process that loads a model (a
    stage, a server, its shadow), where the pinned requirements mlgate logs need one lookup each."""
    folder = Path(location)
    if not (folder / "MLmodel").is_file():
        _use_store()
        return mlflow.pyfunc.load_model(location)  # a remote URI: MLflow downloads and checks it
    requirements = folder / "requirements.txt"
    lines = requirements.read_text().splitlines() if requirements.is_file() else []
    env_file = folder / "python_env.yaml"
    python = (yaml.safe_load(env_file.read_text()) or {}).get("python") if env_file.is_file() else None
    for problem in environment_mismatches(lines, python):
        warnings.warn(f"{folder}: {problem}", EnvironmentWarning, stacklevel=3)
    return mlflow.pyfunc.load_model(str(folder), suppress_warnings=True)


class EnvironmentWarning(UserWarning):
    """A model was logged with packages (or a Python) other than those of the process loading it."""


def environment_mismatches(requirements: list[str], python: str | None) -> list[str]:
    """What in this environment differs from a model's requirements.txt lines and its Python version, as
    MLflow checks them: a package missing or outside its specifier, a different Python major.minor."""
    from importlib import metadata

    from packaging.requirements import InvalidRequirement, Requirement

    problems = []
    for line in requirements:
        text = line.split("#", 1)[0].strip()
        if not text or text.startswith("-"):
            continue
        try:
            requirement = Requirement(text)
        except InvalidRequirement:  # a path or URL: nothing to compare
            continue
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        try:
            installed = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            problems.append(f"the model requires {text}, which is not installed")
            continue
        if requirement.specifier and not requirement.specifier.contains(installed, prereleases=True):
            problems.append(f"the model requires {text}, this environment has {requirement.name} {installed}")
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    if python is not None and ".".join(str(python).split(".")[:2]) != running:
        problems.append(f"the model was logged with Python {python}, this is Python {running}")
    return problems


def _loaded(model) -> LoadedModel:
    try:
        inner = model.unwrap_python_model()  # ours is a PythonModel; other flavors (sklearn, ...) are not
    except (AttributeError, mlflow.MlflowException):
        inner = None
    features = getattr(inner, "features", None)
    schema = model.metadata.get_input_schema() if model.metadata is not None else None
    columns = tuple(schema.input_names()) if schema is not None and schema.has_input_names() else ()
    unchecked = (lambda frame: inner.predict(None, frame)) if features is not None else model.predict
    return LoadedModel(
        predict=model.predict,
        pipeline=getattr(inner, "pipeline", None),
        features=features,
        predict_unchecked=unchecked,
        input_columns=columns,
    )


def delete_alias(name: str, alias: str) -> None:
    client().delete_registered_model_alias(name, alias)
