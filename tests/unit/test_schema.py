from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from mlgate import config
from mlgate.cli import main
from mlgate.modelling import schema
from mlgate.modelling.data import DataSpec, check_contract

SOURCE = {"kind": "file", "path": "data/source/tiny.csv", "format": "csv"}


def _columns(frame: pd.DataFrame, target: str = "churn", task: str = "binary") -> dict:
    return schema.infer_contract(frame, target, task)["columns"]


def _load(text: str) -> DataSpec:
    return config.build(DataSpec, yaml.safe_load(text), "data")


def _round_trip(frame: pd.DataFrame, target: str, task: str | None = None) -> DataSpec:
    """Infer, render, load the text back and check the same frame against it."""
    task = task or schema.infer_task(frame[target])
    contract = schema.infer_contract(frame, target, task)
    chosen_class = schema.positive_class(frame[target]) if task == "binary" else None
    spec = _load(
        schema.render("tiny", SOURCE, target, task, chosen_class, contract, rows=len(frame), origin="tiny.csv")
    )
    result = check_contract(frame, spec)
    assert result.violations == []
    return spec


@pytest.mark.parametrize(
    "values, expected",
    [
        ([1, 5, 12, 60], "integer"),
        ([1.0, 2.0, np.nan, 4.0], "integer"),  # whole floats, as pandas reads an int column with gaps
        ([20.5, 35.0, 50.25, 70.0], "float"),
        ([np.nan, np.nan, np.nan, np.nan], "float"),  # nothing observed: what pandas reads an empty column as
        ([True, False, True, False], "boolean"),
        (["true", "false", None, "true"], "boolean"),
        ([1, "two", 3, "four"], "string"),  # numbers and words mixed
        (["1", "2", "3", "4"], "integer"),  # numeric strings are numbers, as check_contract treats them
        (["2024-01-05", "2024-02-10T08:30:00", "2024-03-01 12:00:00+02:00", None], "datetime"),
        (["2019", "2020", "2021", "2022"], "integer"),  # years alone are numbers, not dates
        (["A-1", "B-2", "C-3", "D-4"], "string"),  # a dash alone does not make a date
        (["basic", "plus", "pro", "basic"], "string"),
    ],
)
def test_column_type(values, expected):
    assert schema.column_type(pd.Series(values, dtype=object if expected != "float" else None)) == expected


def test_numeric_columns_get_observed_ranges_and_strings_their_categories(clean_frame):
    columns = _columns(clean_frame)

    assert columns["tenure"] == {"type": "integer", "min": 1, "max": 60}
    assert type(columns["tenure"]["min"]) is int
    assert columns["charges"] == {"type": "float", "min": 20.5, "max": 110.0}
    assert type(columns["charges"]["max"]) is float
    assert columns["plan"] == {"type": "string", "categories": ["basic", "plus", "pro"]}
    assert columns["churn"] == {"type": "string", "categories": ["No", "Yes"]}


def test_an_all_missing_column_is_float_and_may_be_all_missing(clean_frame):
    columns = _columns(clean_frame.assign(notes=np.nan))

    assert columns["notes"] == {"type": "float", "max_missing_share": 1.0}


def test_a_single_category_column_lists_that_category(clean_frame):
    assert _columns(clean_frame.assign(country="NL"))["country"] == {"type": "string", "categories": ["NL"]}


def test_many_distinct_strings_get_no_categories():
    frame = pd.DataFrame({"city": [f"city {i}" for i in range(40)], "churn": ["Yes", "No"] * 20})

    assert _columns(frame)["city"] == {"type": "string"}


def test_long_distinct_strings_are_text():
    reviews = [f"review number {i}: the service was slow but the staff were friendly" for i in range(6)]
    frame = pd.DataFrame({"review": reviews, "churn": ["Yes", "No"] * 3})

    assert _columns(frame)["review"] == {"type": "text"}


def test_a_unique_complete_column_named_like_an_id_is_an_id(clean_frame):
    frame = clean_frame.assign(
        customer_id=[f"C{i}" for i in range(6)],
        orderId=range(6),
        paid=range(6),  # unique, but "paid" is no id
        account_id=[1, 2, 3, 3, 4, 5],
    )  # named like one, but repeats
    columns = _columns(frame)

    assert columns["customer_id"] == {"type": "string", "role": "id"}
    assert columns["orderId"] == {"type": "integer", "role": "id"}
    assert "role" not in columns["paid"] and "role" not in columns["account_id"]
    unique_target = pd.DataFrame({"x": [1, 2, 3], "score_id": [0.5, 1.5, 2.5]})
    assert _columns(unique_target, target="score_id", task="regression")["score_id"] == {
        "type": "float",
        "min": 0.5,
        "max": 2.5,
    }


def test_missing_share_gets_headroom_and_the_target_none(mixed_frame):
    frame = mixed_frame(40, with_missing=True)  # 2 of 40 missing in charges and plan
    frame.loc[range(20), "tenure"] = np.nan  # half missing

    columns = _columns(frame)

    assert columns["charges"]["max_missing_share"] == 0.075  # 0.05 * 1.5
    assert columns["plan"]["max_missing_share"] == 0.075
    assert columns["tenure"]["max_missing_share"] == 0.75
    assert "max_missing_share" not in columns["churn"]


def test_row_and_class_floors_fail_a_batch_half_the_size():
    frame = pd.DataFrame({"x": range(4454), "churn": ["bad"] * 1254 + ["good"] * 3200})

    contract = schema.infer_contract(frame, "churn", "binary")

    assert (contract["min_rows"], contract["max_rows"], contract["min_class_count"]) == (2200, None, 627)
    assert "min_class_count" not in schema.infer_contract(frame, "x", "regression")


def test_task_is_inferred_from_the_target():
    assert schema.infer_task(pd.Series(["Yes", "No", "No"])) == "binary"
    assert schema.infer_task(pd.Series([0, 1, 1, 0])) == "binary"
    assert schema.infer_task(pd.Series([1.5, 2.0, 3.25])) == "regression"
    assert schema.infer_task(pd.Series(range(100))) == "regression"
    assert schema.infer_task(pd.Series(["basic", "plus", "pro"], name="plan")) == "multiclass"
    with pytest.raises(ValueError, match=r"target 'grade': 3 distinct value\(s\) .*--task multiclass"):
        schema.infer_task(pd.Series([1, 2, 3], name="grade"))


def test_positive_class_is_the_minority_unless_given(clean_frame):
    assert schema.positive_class(clean_frame["churn"]) == "Yes"
    assert schema.positive_class(clean_frame["churn"], "No") == "No"
    with pytest.raises(ValueError, match=r"positive class 'Maybe' does not occur in 'churn' \(classes: 'No', 'Yes'\)"):
        schema.positive_class(clean_frame["churn"], "Maybe")


@pytest.mark.parametrize(
    "change, task, message",
    [
        ({"churn": ["Yes", None, "No", "No", "No", "No"]}, "binary", "target 'churn' has 1 missing value"),
        (
            {"churn": ["Yes", "No", "Maybe", "No", "No", "No"]},
            "binary",
            "a binary target needs two classes; 'churn' has 3",
        ),
        ({}, "regression", "a regression target must be numeric; 'churn' holds"),
        ({}, "multiclass", "a multiclass target needs at least three classes; 'churn' has 2"),
        ({}, "ordinal", "task must be one of"),
    ],
)
def test_a_target_the_contract_would_reject_is_refused(clean_frame, change, task, message):
    with pytest.raises(ValueError, match=message):
        schema.infer_contract(clean_frame.assign(**change), "churn", task)


def test_render_round_trips_through_the_data_spec_and_the_frame_passes(mixed_frame):
    frame = mixed_frame(40, with_missing=True).assign(
        customer_id=[f"C{i:03d}" for i in range(40)],
        signed_up=pd.date_range("2024-01-01", periods=40, freq="D").strftime("%Y-%m-%d"),
        paperless=[True, False] * 20,
        notes=np.nan,
    )

    spec = _round_trip(frame, "churn")

    assert (spec.task, spec.positive_class, spec.metric) == ("binary", "Yes", "roc_auc")
    assert spec.features == ["tenure", "charges", "plan", "signed_up", "paperless", "notes"]
    assert spec.contract.columns["signed_up"].type == "datetime"
    assert spec.contract.columns["paperless"].categories == ["False", "True"]


def test_a_regression_round_trip(mixed_frame):
    spec = _round_trip(mixed_frame(40, "regression"), "spend")

    assert (spec.task, spec.positive_class, spec.metric) == ("regression", None, "rmse")


def test_values_that_look_like_yaml_booleans_and_numbers_stay_strings():
    frame = pd.DataFrame(
        {"answer": ["Yes", "No", "1", "null", "on", "1.5"], "churn": ["Yes", "No", "No", "No", "No", "Yes"]}
    )

    spec = _round_trip(frame, "churn")

    assert spec.contract.columns["answer"].categories == ["1", "1.5", "No", "Yes", "null", "on"]
    assert spec.positive_class == "Yes"


def test_render_writes_a_header_and_one_line_per_column(clean_frame):
    contract = schema.infer_contract(clean_frame, "churn", "binary")

    text = schema.render("tiny", SOURCE, "churn", "binary", "Yes", contract, rows=6, origin="data/source/tiny.csv")

    assert text.startswith("# Inferred by `mlgate infer-schema` from data/source/tiny.csv (6 rows) on ")
    assert "    tenure: {type: integer, min: 1, max: 60}\n" in text
    assert "    churn: {type: string, categories: ['No', 'Yes']}\n" in text
    assert "positive_class: 'Yes'\n" in text


def test_draft_passes_on_what_check_contract_warns_about(mixed_frame):
    frame = mixed_frame(40)
    frame["refunded"] = (frame["churn"] == "Yes").astype(int)  # known only after the customer left

    result = schema.draft(frame, "tiny", SOURCE, "churn", origin="tiny.csv")

    assert (
        result.summary == "5 columns from 40 rows; 2 with categories, 3 with ranges, 0 with missing values; ids: none; "
        "personal data (review): none found"
    )
    assert "refunded: alone predicts 'churn' with ROC AUC 1.000" in " ".join(result.warnings)


def _invoke(*args: str):
    return CliRunner().invoke(main, ["infer-schema", *args])


def test_cli_writes_a_loadable_declaration(tmp_path, monkeypatch, clean_frame):
    monkeypatch.chdir(tmp_path)
    clean_frame.to_csv("tiny.csv", index=False)

    result = _invoke("tiny", "--source", "tiny.csv", "--target", "churn")

    assert result.exit_code == 0, result.output
    assert "wrote conf/data/tiny.yaml: 4 columns from 6 rows; 2 with categories, 2 with ranges" in result.output
    assert "review it, then `make params ARGS=data=tiny`" in result.output
    spec = _load(Path("conf/data/tiny.yaml").read_text())
    assert (spec.source.path, spec.source.format, spec.positive_class) == ("tiny.csv", "csv", "Yes")
    assert check_contract(clean_frame, spec).passed


def test_cli_refuses_to_replace_a_contract_without_force(tmp_path, monkeypatch, clean_frame):
    monkeypatch.chdir(tmp_path)
    clean_frame.to_parquet("tiny.parquet")
    assert _invoke("tiny", "--source", "tiny.parquet", "--target", "churn", "--positive-class", "No").exit_code == 0
    first = Path("conf/data/tiny.yaml").read_text()

    refused = _invoke("tiny")

    assert refused.exit_code == 1
    assert "conf/data/tiny.yaml already has a contract; pass --force to replace it" in refused.stderr
    assert Path("conf/data/tiny.yaml").read_text() == first

    replaced = _invoke("tiny", "--force")  # source, target and positive class from the file

    assert replaced.exit_code == 0, replaced.output
    spec = _load(Path("conf/data/tiny.yaml").read_text())
    assert (spec.source.format, spec.target, spec.positive_class) == ("parquet", "churn", "No")


def test_cli_fills_in_a_declaration_without_a_contract(tmp_path, monkeypatch, clean_frame):
    monkeypatch.chdir(tmp_path)
    clean_frame.to_csv("tiny.csv", index=False)
    Path("conf/data").mkdir(parents=True)
    Path("conf/data/tiny.yaml").write_text("source: {kind: file, path: tiny.csv}\ntarget: churn\n")

    result = _invoke("tiny")

    assert result.exit_code == 0, result.output
    assert _load(Path("conf/data/tiny.yaml").read_text()).task == "binary"


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--source", "tiny.csv", "--target", "plan_"],
            "target column 'plan_' not found (columns: tenure, charges, plan, churn)",
        ),
        (["--source", "tiny.csv"], "--target is required (no target declared in conf/data/tiny.yaml)"),
        (["--target", "churn"], "--source is required (no source declared in conf/data/tiny.yaml)"),
        (["--source", "absent.csv", "--target", "churn"], "absent.csv: source file not found"),
    ],
)
def test_cli_errors_name_the_problem_and_write_nothing(tmp_path, monkeypatch, clean_frame, args, message):
    monkeypatch.chdir(tmp_path)
    clean_frame.to_csv("tiny.csv", index=False)

    result = _invoke("tiny", *args)

    assert result.exit_code == 1
    assert f"infer-schema error: {message}" in result.stderr
    assert not Path("conf/data/tiny.yaml").exists()


def test_credit_data_round_trips(project_root):
    candidates = [
        project_root / "data/source/credit_data.csv.gz",
        project_root.parent / "shared/datasets/credit_data.csv.gz",
    ]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        pytest.skip("credit_data.csv.gz is not available")

    spec = _round_trip(pd.read_csv(path), "Status")

    assert (spec.task, spec.positive_class) == ("binary", "bad")
    assert spec.contract.columns["Income"].max_missing_share is not None


def test_cli_refuses_to_write_over_a_directory(tmp_path, monkeypatch, clean_frame):
    monkeypatch.chdir(tmp_path)
    clean_frame.to_csv("tiny.csv", index=False)
    Path("conf/data/tiny.yaml").mkdir(parents=True)
    (Path("conf/data/tiny.yaml") / "notes.md").write_text("mine")

    result = _invoke("tiny", "--source", "tiny.csv", "--target", "churn")

    assert result.exit_code == 1
    assert "infer-schema error: conf/data/tiny.yaml is a directory, not a data declaration" in result.stderr
    assert (Path("conf/data/tiny.yaml") / "notes.md").read_text() == "mine"


def test_infinities_are_drafted_as_missing_values_and_named(clean_frame):
    frame = clean_frame.astype({"charges": object})
    frame.loc[[1, 4], "charges"] = [np.inf, "1e999"]  # a Parquet infinity; text read_csv leaves unparsed
    frame["tenure"] = frame["tenure"].astype(float)
    frame.loc[2, "tenure"] = -np.inf

    result = schema.draft(frame, "tiny", SOURCE, "churn", origin="tiny.csv")

    columns = yaml.safe_load(result.text)["contract"]["columns"]
    assert columns["tenure"] == {
        "type": "integer",
        "non_finite": "missing",
        "max_missing_share": 0.25,
        "min": 1,
        "max": 60,
    }
    assert columns["charges"] == {
        "type": "float",
        "non_finite": "missing",
        "max_missing_share": 0.5,
        "min": 20.5,
        "max": 110.0,
    }
    assert (
        "charges: 2 infinite or too large value(s); drafted as non_finite: missing (read as missing values); "
        "fix the source if they are errors"
    ) in result.warnings
    assert _round_trip(frame, "churn").contract.non_finite_policy("charges") == "missing"


def test_an_infinite_regression_target_is_refused_naming_the_rows(mixed_frame):
    frame = mixed_frame(40, "regression")
    frame.loc[[6, 9], "spend"] = [np.inf, 1e39]

    with pytest.raises(
        ValueError,
        match=r"target 'spend' has 2 infinite or too large value\(s\) \(beyond ±3.4e\+38\) "
        r"at row\(s\) 7, 10; no model can learn from them",
    ):
        schema.draft(frame, "tiny", SOURCE, "spend", task="regression", origin="tiny.csv")


def test_cli_drafts_a_clustering_declaration_without_a_target(tmp_path, monkeypatch, clean_frame):
    monkeypatch.chdir(tmp_path)
    clean_frame.to_csv("tiny.csv", index=False)

    result = _invoke("segments", "--source", "tiny.csv", "--task", "clustering")

    assert result.exit_code == 0, result.output
    spec = _load(Path("conf/data/segments.yaml").read_text())
    assert (spec.task, spec.target, spec.metric) == ("clustering", None, "silhouette")
    assert spec.features == list(clean_frame.columns)  # every column, the would-be target too
    assert check_contract(clean_frame, spec).passed
    refused = _invoke("segments2", "--source", "tiny.csv", "--task", "clustering", "--target", "churn")
    assert refused.exit_code == 1 and "a clustering task has no target; leave it out" in refused.output
