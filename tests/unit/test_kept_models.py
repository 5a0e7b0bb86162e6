"""train's reading of the models tune kept unrefit (finish.refit): the file and the recipe must agree."""

from __future__ import annotations

import joblib
import pytest
from sklearn.linear_model import LinearRegression

from mlgate.errors import StageError
from mlgate.records import Finish, Member
from mlgate.stages.train import read_kept_models


def finished(*members: Member) -> Finish:
    return Finish(
        method="single" if len(members) == 1 else "caruana",
        combiner=None if len(members) == 1 else {"method": "caruana", "weights": [m.weight for m in members]},
        cv_score=0.5,
        scores={"single": 0.5},
        members=members,
        calibration=None,
        calibration_log_loss={},
        threshold={"objective": "none", "threshold": 0.5},
    )


def test_a_recipe_that_refits_every_member_reads_nothing(tmp_path):
    recipe = finished(Member(3, "linear", {}, 1.0))
    assert read_kept_models(str(tmp_path / "absent.joblib"), recipe) == {}


def test_the_kept_models_are_read_by_trial(tmp_path):
    path = tmp_path / "kept.joblib"
    joblib.dump({7: LinearRegression()}, path)
    kept = read_kept_models(str(path), finished(Member(3, "linear", {}, 0.5), Member(7, "linear", {}, 0.5, False)))
    assert list(kept) == [7]


def test_a_kept_file_of_another_tune_run_is_refused_naming_it_and_the_trial(tmp_path):
    path = tmp_path / "kept.joblib"
    joblib.dump({2: LinearRegression()}, path)
    with pytest.raises(StageError, match=r"kept.joblib: holds no model of trial 7, .*dvc repro --force tune"):
        read_kept_models(str(path), finished(Member(7, "linear", {}, 1.0, False)))
    with pytest.raises(StageError, match=r"gone.joblib: missing; best_params.json keeps trial 7"):
        read_kept_models(str(tmp_path / "gone.joblib"), finished(Member(7, "linear", {}, 1.0, False)))
