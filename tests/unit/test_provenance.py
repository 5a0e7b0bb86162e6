"""Row provenance: the digests a train run keeps of its rows, and how a later split's rows are told apart."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlgate.modelling.provenance import TrainedRows, row_digests

COLUMNS = ("tenure", "contract", "charges", "churn")


def _rows(count: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "tenure": rng.integers(0, 72, count).astype(float),
            "contract": pd.Categorical(rng.choice(["Month-to-month", "One year", "Two year"], count)),
            "churn": rng.choice(["Yes", "No"], count),
            "charges": rng.normal(60, 20, count),
        }
    )


def test_a_rows_digest_is_its_values_whatever_its_position_index_or_encoding():
    frame = _rows(50)
    recoded = frame.assign(contract=frame["contract"].astype(object)).iloc[::-1].set_index(np.arange(100, 150))

    assert np.array_equal(row_digests(frame, COLUMNS)[::-1], row_digests(recoded, COLUMNS))
    changed = frame.copy()
    changed.loc[3, "tenure"] += 1
    assert (row_digests(frame, COLUMNS) != row_digests(changed, COLUMNS)).tolist() == [i == 3 for i in range(50)]


def test_a_new_split_of_grown_data_has_its_trained_rows_told_apart():
    first = _rows(400)
    trained = first.sample(frac=0.8, random_state=1)
    grown = pd.concat([first, _rows(200, seed=7)], ignore_index=True)
    new_test = grown.sample(frac=0.25, random_state=2)

    held = TrainedRows.of(trained, COLUMNS).holds(new_test)

    expected = new_test.index.isin(trained.index)  # the grown frame keeps the first rows' index
    assert held.tolist() == expected.tolist()
    assert 0 < held.sum() < len(new_test)


def test_rows_lacking_a_digested_column_cannot_be_told_apart():
    trained = TrainedRows.of(_rows(20), COLUMNS)

    assert trained.holds(_rows(20).drop(columns="contract")) is None
    assert trained.holds(_rows(20).assign(note="new")).all()  # a column it never saw does not matter


def test_trained_rows_are_kept_distinct_and_survive_a_save_and_load(tmp_path):
    frame = _rows(30)
    trained = TrainedRows.of(pd.concat([frame, frame]), COLUMNS)
    trained.save(tmp_path / "train_rows.npz")

    loaded = TrainedRows.load(tmp_path / "train_rows.npz")

    assert loaded.columns == COLUMNS and len(loaded.digests) == 30
    assert np.array_equal(loaded.digests, trained.digests) and loaded.digests.dtype == np.uint64
    assert (tmp_path / "train_rows.npz").exists() and not (tmp_path / "train_rows.npz.npz").exists()


def test_a_missing_value_has_a_digest_of_its_own():
    frame = pd.DataFrame(
        {"tenure": [1.0, np.nan, 1.0], "contract": ["a", "a", None], "charges": 2.0, "churn": ["Yes", "Yes", "Yes"]}
    )

    digests = row_digests(frame, COLUMNS)

    assert len(set(digests.tolist())) == 3
    assert TrainedRows.of(frame.iloc[[1]], COLUMNS).holds(frame).tolist() == [False, True, False]
