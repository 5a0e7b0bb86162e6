import copy

import pandas as pd
import pytest

from mlgate.stages.split import SplitParams, split

SHARES = SplitParams(test_size=0.2, current_size=0.2)


def _positive_share(frame: pd.DataFrame) -> float:
    return float((frame["churn"] == "Yes").mean())


def _row_keys(frame: pd.DataFrame) -> set[tuple]:
    return set(frame.itertuples(index=False, name=None))


def test_duplicates_are_dropped_and_counted(mixed_frame, binary_spec):
    unique = mixed_frame(60)
    with_duplicates = pd.concat([unique, unique.iloc[:5], unique.iloc[:2]], ignore_index=True)

    result = split(with_duplicates, binary_spec, SHARES, seed=0)

    parts = pd.concat([result.train, result.test, result.current], ignore_index=True)
    assert result.duplicates == 7
    assert len(parts) == 60
    assert not parts.duplicated().any()


def test_parts_have_the_requested_sizes(mixed_frame, binary_spec):
    result = split(mixed_frame(60), binary_spec, SHARES, seed=0)

    assert (len(result.train), len(result.test), len(result.current)) == (36, 12, 12)


def test_parts_are_disjoint(mixed_frame, binary_spec):
    result = split(mixed_frame(60), binary_spec, SHARES, seed=0)

    train, test, current = (_row_keys(p) for p in (result.train, result.test, result.current))
    assert not train & test
    assert not train & current
    assert not test & current


def test_stratification_keeps_class_shares(mixed_frame, binary_spec):
    frame = mixed_frame(60)

    result = split(frame, binary_spec, SHARES, seed=3)

    overall = _positive_share(frame)
    for part in (result.train, result.test, result.current):
        assert _positive_share(part) == pytest.approx(overall, abs=0.05)


def test_same_seed_gives_the_same_split(mixed_frame, binary_spec):
    frame = mixed_frame(60)

    first = split(frame, binary_spec, SHARES, seed=7)
    second = split(frame, binary_spec, SHARES, seed=7)

    pd.testing.assert_frame_equal(first.train, second.train)
    pd.testing.assert_frame_equal(first.test, second.test)
    pd.testing.assert_frame_equal(first.current, second.current)


def test_another_seed_gives_another_split(mixed_frame, binary_spec):
    frame = mixed_frame(60)

    assert _row_keys(split(frame, binary_spec, SHARES, seed=7).test) != _row_keys(
        split(frame, binary_spec, SHARES, seed=8).test
    )


def test_a_given_current_batch_is_used_as_is(mixed_frame, binary_spec):
    frame = mixed_frame(60)
    batch = mixed_frame(9, seed=99).assign(customer_id=range(9))

    result = split(frame, binary_spec, SHARES, seed=0, current=batch)

    assert (len(result.train), len(result.test), len(result.current)) == (48, 12, 9)
    assert list(result.current.columns) == list(result.train.columns)
    assert result.current["charges"].tolist() == batch["charges"].tolist()


def test_parts_are_conformed_to_the_contract(mixed_frame, binary_spec):
    result = split(mixed_frame(60).assign(customer_id=range(60)), binary_spec, SHARES, seed=0)

    assert list(result.train.columns) == ["tenure", "charges", "plan", "churn"]
    assert result.train["tenure"].dtype == "float64"


def test_input_frame_is_not_modified(mixed_frame, binary_spec):
    frame = mixed_frame(60)
    before = frame.copy()

    split(frame, binary_spec, SHARES, seed=0)

    pd.testing.assert_frame_equal(frame, before)


def test_regression_split_covers_the_target_range(mixed_frame, regression_spec):
    frame = mixed_frame(60, "regression")

    result = split(frame, regression_spec, SHARES, seed=0)

    assert (len(result.train), len(result.test), len(result.current)) == (36, 12, 12)
    median = frame["spend"].median()
    for part in (result.train, result.test, result.current):
        assert (part["spend"] < median).mean() == pytest.approx(0.5, abs=0.1)


@pytest.mark.parametrize("test_size, current_size", [(0.0, 0.2), (1.0, 0.0), (0.5, 0.5), (0.2, -0.1)])
def test_split_params_reject_impossible_shares(test_size, current_size):
    with pytest.raises(ValueError, match="split:"):
        SplitParams(test_size=test_size, current_size=current_size)


def test_a_task_without_a_target_splits_at_random_and_keeps_every_column(mixed_frame):
    from mlgate import config
    from mlgate.modelling.data import DataSpec

    frame = mixed_frame(60).drop(columns=["churn"])  # tenure, charges, plan
    spec = config.build(
        DataSpec,
        {
            "name": "segments",
            "task": "clustering",
            "target": None,
            "metric": "silhouette",
            "source": {"kind": "file", "path": "x.csv", "format": "csv"},
            "contract": {
                "columns": {"tenure": {"type": "integer"}, "charges": {"type": "float"}, "plan": {"type": "string"}}
            },
        },
        "data",
    )

    result = split(frame, spec, SHARES, seed=0)

    assert (len(result.train), len(result.test), len(result.current)) == (36, 12, 12)
    assert list(result.train.columns) == ["tenure", "charges", "plan"]


def _with_ids(data_section):
    from mlgate import config
    from mlgate.modelling.data import DataSpec

    section = copy.deepcopy(data_section)
    section["contract"]["columns"]["applicant"] = {"type": "string", "role": "id", "pii": "direct", "handling": "hash"}
    section["contract"]["columns"]["visit"] = {"type": "string", "role": "id"}  # kept clear: not erasable
    return config.build(DataSpec, section, "data")


def test_each_hashed_id_is_recorded_with_the_part_its_row_went_to(mixed_frame, data_section):
    """A duplicate dropped before the split counts where the row it repeats went; clear ids are not recorded."""
    spec = _with_ids(data_section)
    unique = mixed_frame(60)
    frame = pd.concat([unique, unique.iloc[:3]], ignore_index=True)
    frame["applicant"] = [f"h{i:03d}" for i in range(len(frame))]
    frame["visit"] = "v"
    frame.loc[10, "applicant"] = None

    result = split(frame, spec, SHARES, seed=0)

    assert spec.erasable_ids == ["applicant"]
    assert set(result.ids.columns) == {"column", "id", "part"} and set(result.ids["column"]) == {"applicant"}
    assert len(result.ids) == len(frame) - 1  # every applicant but the missing one, once
    part = dict(zip(result.ids["id"], result.ids["part"], strict=True))
    for name in ("train", "test", "current"):
        rows = getattr(result, name)
        owners = frame.loc[frame.drop(columns=["applicant", "visit"]).apply(tuple, axis=1).isin(_row_keys(rows))]
        assert {part[a] for a in owners["applicant"].dropna()} == {name}
    for repeat in range(3):  # the repeats of rows 0-2 went with them
        assert part[f"h{60 + repeat:03d}"] == part[f"h{repeat:03d}"]


def test_without_a_hashed_id_column_no_ids_are_recorded(mixed_frame, binary_spec):
    result = split(mixed_frame(40), binary_spec, SHARES, seed=0)
    assert result.ids.empty and list(result.ids.columns) == ["column", "id", "part"]
