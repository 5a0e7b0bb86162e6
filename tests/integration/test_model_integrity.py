"""Model artifacts are checked against the digest the gate recorded before anything is unpickled:
a real logged pyfunc model in a real SQLite store, and a real pickle that would run a command."""

from __future__ import annotations

import json
import pickle
import shutil
import warnings
from pathlib import Path

import joblib
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier

from mlgate.adapters import pyfunc_model, tracking
from mlgate.errors import StageError

MODEL = "churn"
REPO = Path(__file__).resolve().parents[2]
FRAME = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0]})
OUTPUT = pd.DataFrame({"prediction": [1] * 4, "probability": [0.5] * 4})  # the prior classifier's, on FRAME


class RunsACommand:
    """Unpickling this writes ``marker``: what a replaced model file could do instead."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def _log_dummy(root: Path, run_id: str, output_example: pd.DataFrame = OUTPUT) -> tracking.LoggedModelFiles:
    """A prior-probability classifier logged as mlgate's pyfunc model, saved locally at root/local_model."""
    joblib.dump(DummyClassifier(strategy="prior").fit(FRAME, [0, 1, 0, 1]), root / "pipeline.joblib")
    (root / "features.json").write_text(json.dumps({"task": "binary", "positive_class": 1, "negative_class": 0}))
    return tracking.log_model(
        run_id,
        root / "local_model",
        code_path=Path(pyfunc_model.__file__),
        artifacts={"pipeline": str(root / "pipeline.joblib"), "features": str(root / "features.json")},
        input_example=FRAME,
        output_example=output_example,
        string_columns=[],
        optional_inputs=False,
        pip_requirements=["scikit-learn"],
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """One logged model registered twice: v1 gated (its digest recorded, alias production), v2 not."""
    root = tmp_path_factory.mktemp("integrity")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        patch.chdir(root)
        run_id = tracking.create_run("integrity", "train", {})
        logged = _log_dummy(root, run_id)
        gated = tracking.register(MODEL, logged.model_uri, run_id)
        tracking.set_version_tags(MODEL, gated.version, {tracking.DIGEST_TAG: tracking.record_digest(gated)})
        tracking.set_alias(MODEL, "production", gated.version)
        tracking.client().create_model_version(MODEL, logged.model_uri, run_id=run_id)
    return root


@pytest.fixture
def registry(store, monkeypatch) -> Path:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store / 'mlflow.db'}")
    monkeypatch.delenv(tracking.ALLOW_UNVERIFIED_ENV, raising=False)
    return store


@pytest.fixture
def tampered(registry, tmp_path) -> Path:
    """The store's pipeline pickle replaced by one that writes a marker when unpickled; restored after.
    Returns the marker's path; ``store`` next to it links to the replaced file's folder."""
    stored = next(p for p in (registry / "mlruns").rglob("pipeline.joblib"))
    original = stored.read_bytes()
    marker = tmp_path / "executed"
    stored.write_bytes(pickle.dumps(RunsACommand(marker)))
    (tmp_path / "store").symlink_to(stored.parent)
    yield marker
    stored.write_bytes(original)


def test_a_registered_version_loads_after_its_digest_checks_out(registry):
    for uri in (f"models:/{MODEL}/1", f"models:/{MODEL}@production"):
        assert tracking.load(uri).predict(FRAME)["probability"].tolist() == [0.5] * 4


def test_a_logged_model_loads_from_the_store_the_environment_names_after_the_process_used_another(
    registry, tmp_path, monkeypatch
):
    """MLflow's global URI, once set, wins over MLFLOW_TRACKING_URI: a process that had used another store
    looked the model's id up there ("Logged model with ID ... not found")."""
    logged_uri = tracking.client().get_model_version(MODEL, "2").source
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'other.db'}")
    tracking.client()  # this process now works with the other store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{registry / 'mlflow.db'}")

    assert logged_uri.startswith("models:/m-")
    assert tracking.load(logged_uri).predict(FRAME)["probability"].tolist() == [0.5] * 4


def test_a_model_logged_with_other_package_versions_loads_with_a_warning_naming_them(store, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(store / "local_model", folder)
    (folder / "requirements.txt").write_text("scikit-learn==0.1.0\n")
    with pytest.warns(tracking.EnvironmentWarning, match=r"requires scikit-learn==0\.1\.0, this environment has"):
        loaded = tracking.load(str(folder))
    assert loaded.predict(FRAME)["probability"].tolist() == [0.5] * 4


def test_a_model_logged_in_this_environment_loads_without_an_environment_warning(store):
    with warnings.catch_warnings():
        warnings.simplefilter("error", tracking.EnvironmentWarning)
        assert tracking.load(str(store / "local_model")).predict(FRAME)["probability"].tolist() == [0.5] * 4


def test_the_model_is_saved_once_and_logged_as_the_runs_model_with_its_params_and_metrics(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    run_id = tracking.create_run("logging", "train", tracking.lineage_tags("train", "d" * 64))
    tracking.log(run_id, params={"family": "dummy"}, metrics={"fit_seconds": 0.5})
    logged = _log_dummy(tmp_path, run_id)

    store = tracking.client()
    model = store.get_logged_model(logged.model_id)
    assert logged.model_uri == f"models:/{model.model_id}" and str(model.status) == "READY"
    assert model.source_run_id == run_id and model.params == {"family": "dummy"}
    assert {m.key: m.value for m in model.metrics} == {"fit_seconds": 0.5}
    assert model.tags["mlgate.data_hash"] == "d" * 64
    assert [o.model_id for o in store.get_run(run_id).outputs.model_outputs] == [model.model_id]
    local = tmp_path / "local_model"
    stored = {a.path for a in store.list_logged_model_artifacts(model.model_id)}
    assert stored == {p.name for p in local.iterdir()}
    # the store's MLmodel names the run and the model; the local copy (what DVC hashes) names neither
    described = (local / "MLmodel").read_text()
    assert run_id not in described and model.model_id not in described and "utc_time_created" not in described
    assert tracking.load(logged.model_uri).predict(FRAME).equals(tracking.load(str(local)).predict(FRAME))


def test_a_saved_model_that_does_not_give_the_fitted_models_output_is_refused_and_marked_failed(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    run_id = tracking.create_run("logging", "train", {})
    other = OUTPUT.assign(probability=[0.9] * 4)
    with pytest.raises(
        StageError, match=r"local_model: the saved model, loaded back, does not give the fitted model's"
    ):
        _log_dummy(tmp_path, run_id, other)
    experiment = tracking.experiment_id("logging")
    (model,) = tracking.client().search_logged_models([experiment])
    assert str(model.status) == "FAILED"


def test_a_replaced_pickle_is_refused_before_anything_is_unpickled(tampered):
    with pytest.raises(StageError, match=r"v1: the artifacts in the store do not match the digest the gate recorded"):
        tracking.load(f"models:/{MODEL}@production")
    assert not tampered.exists()
    joblib.load(next((tampered.parent / "store").rglob("pipeline.joblib")))  # what loading would have done
    assert tampered.exists()


def test_serve_and_score_refuse_the_replaced_pickle(tampered, registry, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from mlgate.cli import main
    from mlgate.services import serving

    source = serving.RegistrySource(serving.ServeSettings(model=MODEL, alias="production"))
    with pytest.raises(StageError, match="do not match the digest"):
        source.load(source.current())
    FRAME.to_csv(tmp_path / "in.csv", index=False)
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    scored = CliRunner().invoke(main, ["score", "--input", "in.csv", "--output", "out.csv", "--model", MODEL])
    assert scored.exit_code == 1 and isinstance(scored.exception, SystemExit), scored.output
    assert "do not match the digest the gate recorded" in scored.output
    assert not tampered.exists() and not (tmp_path / "out.csv").exists()


def test_a_version_without_a_digest_is_refused_unless_explicitly_allowed(registry, monkeypatch):
    with pytest.raises(StageError, match=r"v2 has no recorded artifact digest .*MLGATE_ALLOW_UNVERIFIED_MODELS=1"):
        tracking.load(f"models:/{MODEL}/2")
    monkeypatch.setenv(tracking.ALLOW_UNVERIFIED_ENV, "1")
    with pytest.warns(UserWarning, match="loading it unverified"):
        assert tracking.load(f"models:/{MODEL}/2").predict(FRAME)["probability"].tolist() == [0.5] * 4


def test_a_digest_mismatch_is_refused_even_when_unverified_loads_are_allowed(tampered, monkeypatch):
    monkeypatch.setenv(tracking.ALLOW_UNVERIFIED_ENV, "1")
    with pytest.raises(StageError, match="do not match the digest"):
        tracking.load(f"models:/{MODEL}/1")
    assert not tampered.exists()


def test_regating_a_version_whose_files_changed_is_refused(tampered):
    with pytest.raises(StageError, match=r"v1: the artifacts in the store changed since the gate recorded"):
        tracking.record_digest(tracking.get_version(MODEL, 1))


def test_a_stage_uri_is_refused_with_the_forms_that_are_verified(registry):
    with pytest.raises(
        StageError, match=r"name a version number or an alias \(models:/churn/3, models:/churn@production\)"
    ):
        tracking.load(f"models:/{MODEL}/Production")


@pytest.mark.parametrize(
    "change",
    [
        lambda d: (d / "model.pkl").write_bytes(b"other"),
        lambda d: (d / "model.pkl").rename(d / "renamed.pkl"),
        lambda d: (d / "sub" / "extra.txt").write_text("x"),
        lambda d: (d / "sub" / "MLmodel").unlink(),
    ],
)
def test_the_artifact_digest_covers_every_file_its_path_and_content(tmp_path, change):
    (tmp_path / "sub").mkdir()
    (tmp_path / "model.pkl").write_bytes(b"weights")
    (tmp_path / "sub" / "MLmodel").write_text("flavors: {}")
    before = tracking.artifact_digest(tmp_path)
    assert tracking.artifact_digest(tmp_path) == before
    change(tmp_path)
    assert tracking.artifact_digest(tmp_path) != before


@pytest.mark.slow
def test_the_gate_records_the_digest_of_the_files_the_store_holds(built_project, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", built_project.env["MLFLOW_TRACKING_URI"])
    report = json.loads((built_project.root / "reports/gate.json").read_text())["candidate"]

    recorded = tracking.get_version(report["name"], report["version"]).tags[tracking.DIGEST_TAG]
    assert report["model_sha256"] == recorded == tracking.model_digest(report["name"], report["version"])
    assert tracking.load(f"models:/{report['name']}@staging").predict is not None


def test_a_version_gated_before_digests_loads_once_sealed_and_is_sealed_once(registry):
    from click.testing import CliRunner

    from mlgate import cli

    known = tracking.client().get_model_version(MODEL, "2")
    old = int(tracking.client().create_model_version(MODEL, known.source, run_id=known.run_id).version)
    with pytest.raises(StageError, match="no recorded artifact digest"):
        tracking.load(f"models:/{MODEL}/{old}")

    sealed = CliRunner().invoke(
        cli.main,
        ["seal", "--model", MODEL, "--version", str(old), "--reason", "files compared with the training run's by ana"],
    )
    assert sealed.exit_code == 0, sealed.output
    tags = tracking.get_version(MODEL, old).tags
    assert tags[tracking.DIGEST_TAG] == tracking.model_digest(MODEL, old)
    assert tags["mlgate.seal.reason"] == "files compared with the training run's by ana"
    assert tracking.load(f"models:/{MODEL}/{old}").predict(FRAME)["probability"].tolist() == [0.5] * 4

    again = CliRunner().invoke(cli.main, ["seal", "--model", MODEL, "--version", str(old), "--reason", "again"])
    assert again.exit_code == 1 and "already has an artifact digest" in again.output
