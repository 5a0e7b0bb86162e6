import copy
import json

import pytest

from mlgate import files
from mlgate.records import DriftSummary, TrainingRecord, TrainingRun, TunedRecipe
from mlgate.typed_json import RecordError

TRAIN_INFO = {
    "family": "caruana(catboost×2, linear)",
    "params": {},
    "method": "caruana",
    "members": [
        {"family": "catboost", "weight": 0.5, "trial": 3},
        {"family": "catboost", "weight": 0.25, "trial": 7},
        {"family": "linear", "weight": 0.25, "trial": 1},
    ],
    "calibration": "sigmoid",
    "threshold": {"objective": "f1", "threshold": 0.3528, "value": 0.638, "value_at_0.5": 0.59},
    "train_rows": 4225,
    "model_size_bytes": 1234567,
    "model_sha256": "5e" * 32,
    "data_hash": "9f86d081884c7d659a2feaa0c55ad015",
}

TRAIN_RUN = {
    "run_id": "0a1b2c3d4e5f",
    "tune_run_id": None,
    "experiment": "mlgate-telco",
    "model_uri": "models:/m-0123456789abcdef",
    "model_id": "m-0123456789abcdef",
    "model_sha256": "5e" * 32,
    "fit_seconds": 12.345,
    "tracking_s": 0.512,
    "save_s": 0.301,
}

DRIFT = {
    "reference_rows": 4225,
    "current_rows": 1409,
    "columns_checked": 2,
    "drifted_count": 1,
    "drift_share": 0.5,
    "max_drift_share": 0.3,
    "passed": False,
    "drifted_columns": ["tenure"],
    "columns": {
        "tenure": {"method": "Wasserstein distance (normed)", "score": 0.2345678901, "threshold": 0.1, "drifted": True},
        "contract": {"method": "Jensen-Shannon distance", "score": 0.002665702079, "threshold": 0.1, "drifted": False},
    },
    "engine": "evidently 0.7.23",
}


@pytest.fixture
def best_params(project_root):
    return project_root / "reports" / "best_params.json"


def test_the_committed_recipe_is_written_back_byte_for_byte(best_params):
    recipe = TunedRecipe.from_json(best_params)

    assert recipe.to_json() == best_params.read_text()
    assert recipe.finish.describe() == recipe.family and recipe.reproducible


def test_a_recipe_reads_the_same_from_a_path_and_from_its_parsed_json(best_params):
    assert TunedRecipe.from_json(best_params) == TunedRecipe.from_json(json.loads(best_params.read_text()))


@pytest.mark.parametrize(
    "record, payload",
    [(TrainingRecord, TRAIN_INFO), (TrainingRun, TRAIN_RUN), (DriftSummary, DRIFT)],
    ids=["train_info", "train_run", "drift"],
)
def test_records_write_what_the_stages_wrote_before(record, payload, tmp_path):
    """The stages wrote these files with ``files.write_json``: the record's bytes are the same."""
    written = tmp_path / "record.json"
    files.write_json(written, payload)

    assert record.from_json(written).to_json() == written.read_text()


def test_a_multiclass_recipe_keeps_its_skipped_steps_and_a_single_model_is_its_family(best_params):
    payload = json.loads(best_params.read_text())
    member = payload["finish"]["members"][0]
    payload["finish"] |= {"method": "single", "members": [member], "skipped": {"stacking": "binary only"}}
    payload["family"], payload["params"] = member["family"], member["params"]

    recipe = TunedRecipe.from_json(payload)

    assert json.loads(recipe.to_json()) == payload
    assert recipe.finish.describe() == "catboost" and recipe.finish.skipped == {"stacking": "binary only"}


def test_a_missing_field_is_named_with_the_file(best_params, tmp_path):
    payload = json.loads(best_params.read_text())
    del payload["finish"]["members"][1]["weight"]
    broken = tmp_path / "best_params.json"
    broken.write_text(json.dumps(payload))

    with pytest.raises(RecordError, match=r"best_params.json: missing field 'finish.members\[1\].weight'"):
        TunedRecipe.from_json(broken)


@pytest.mark.parametrize(
    "record, payload, field, value, message",
    [
        (TrainingRun, TRAIN_RUN, "run_id", 7, "field 'run_id' must be str, got 7"),
        (TrainingRun, TRAIN_RUN, "fit_seconds", "slow", "field 'fit_seconds' must be float, got 'slow'"),
        (TrainingRecord, TRAIN_INFO, "train_rows", True, "field 'train_rows' must be int, got True"),
    ],
)
def test_a_field_of_the_wrong_kind_is_named_with_the_file(record, payload, field, value, message, tmp_path):
    broken = tmp_path / "train.json"
    broken.write_text(json.dumps(payload | {field: value}))

    with pytest.raises(RecordError, match=f"train.json: {message}"):
        record.from_json(broken)


def test_a_training_record_holds_nothing_that_changes_when_the_same_model_is_trained_again():
    """train.json is a DVC dependency of evaluate, drift and gate: run ids and clock readings are the run's."""
    assert not {"run_id", "tune_run_id", "model_uri", "model_id", "fit_seconds"} & set(TRAIN_INFO)
    assert TrainingRecord.from_json(TRAIN_INFO).to_json() == files.dumps(TRAIN_INFO)


def test_the_run_of_another_model_is_refused_with_what_to_rerun(tmp_path):
    written = tmp_path / "train_run.json"
    files.write_json(written, TRAIN_RUN | {"model_sha256": "77" * 32})

    with pytest.raises(
        RecordError,
        match=r"train_run.json: names MLflow run 0a1b2c3d4e5f, which logged another model.*dvc repro --force train",
    ):
        TrainingRun.of(TrainingRecord.from_json(TRAIN_INFO), written)
    files.write_json(written, TRAIN_RUN)
    assert TrainingRun.of(TrainingRecord.from_json(TRAIN_INFO), written).run_id == "0a1b2c3d4e5f"


def test_a_drift_column_missing_its_score_is_named():
    payload = copy.deepcopy(DRIFT)
    del payload["columns"]["contract"]["score"]

    with pytest.raises(RecordError, match=r"DriftSummary: missing field 'columns.contract.score'"):
        DriftSummary.from_json(payload)


def test_a_file_that_is_no_json_is_named(tmp_path):
    broken = tmp_path / "drift.json"
    broken.write_text("{")

    with pytest.raises(RecordError, match="drift.json: not valid JSON"):
        DriftSummary.from_json(broken)


def test_drift_columns_rank_by_how_far_past_their_threshold_a_p_value_below_it():
    shifted = {"method": "K-S p_value", "score": 0.001, "threshold": 0.05, "drifted": True}
    summary = DriftSummary.from_json(DRIFT | {"columns": DRIFT["columns"] | {"shifted": shifted}})

    assert summary.columns["shifted"].is_p_value and not summary.columns["tenure"].is_p_value
    assert summary.columns["shifted"].severity == pytest.approx(50.0)
    assert [name for name, _ in summary.most_drifted(2)] == ["shifted", "tenure"]
