"""The model card, rendered from a gate report alone."""

from dataclasses import replace

import pytest

from mlgate.gating.evidence import Comparison, Measurements
from mlgate.gating.policy import Check
from mlgate.gating.report import FeatureImportance, Importance
from mlgate.reports import model_card
from tests.factories import NO_IMPORTANCE, ON_CURRENT, ON_TEST, gate_report


def test_card_states_use_lineage_training_and_verdict():
    card = model_card.render(gate_report())

    assert card.startswith("# Model card: `telco_churn` version 4")
    assert "Gate verdict: **PASSED: granted `staging`**" in card
    assert "probability that `churn` is `Yes`" in card and "(19 feature columns)" in card
    assert "| source | `data/source/telco_churn.csv.gz` (file) |" in card
    assert f"7,043 rows × 20 columns, sha256 `{'71a8f46c' * 8}`" in card
    assert "| trained | 2026-01-02T03:00:00+00:00" in card
    assert "Family `catboost`, seed 42" in card and "| depth | 6 |" in card


def test_card_shows_metrics_slices_importance_and_drift():
    card = model_card.render(gate_report(champion=False))

    assert "| roc_auc | 0.8500 |" in card and "No production model to compare with." in card
    assert "expected calibration error 0.0310; Brier score 0.1320; median single-row latency 8.7 ms" in card
    assert "| contract | Two year | 50 | 0.6000 |  |  | not judged (< 100 rows) |" in card
    assert "mean |SHAP value|" in card and "| tenure | 0.6100 |" in card
    assert "`runs:/abc/evaluate/shap_importance.png`" in card
    assert (
        "2 of 19 columns drifted (share 0.11, limit 0.30; drifted: tenure, area); predictions PSI 0.0120, "
        "target PSI 0.0004." in card
    )


def test_card_limitations_name_small_slices_drifted_columns_and_the_missing_champion():
    limitations = model_card.render(gate_report(champion=False)).split("## Limitations")[1].split("##")[0]

    assert "contract=Two year (50 rows)" in limitations
    assert "already differs from training data in: tenure, area" in limitations
    assert "Not compared with a production model" in limitations


def test_card_of_a_rejected_regression_model_with_a_champion():
    report = gate_report(
        passed=False,
        reasons=("drift share 0.42 > 0.30",),
        data={"name": "diamonds", "task": "regression", "target": "price", "positive_class": None, "features": 9},
        measurements=Measurements(prediction_drift=0.9, model_size_mb=1.0, latency_ms=3.0),
    )

    card = model_card.render(report)

    assert "**REJECTED: not granted `staging`**" in card and "- drift share 0.42 > 0.30" in card
    assert "Predicts `price` (a number)" in card
    assert "| roc_auc | 0.8500 | 0.8400 | +0.0100 | [-0.0020, +0.0210] |" in card
    assert "calibration" not in card.split("## Test metrics")[1].split("##")[0]
    assert "Not compared with a production model" not in card


@pytest.mark.parametrize("value, signed, text", [(None, False, ""), (0.5, False, "0.5000"), (-0.02, True, "-0.0200")])
def test_number_formats_missing_values_as_blank(value, signed, text):
    assert model_card.number(value, signed) == text


def test_card_links_evaluates_importance_table_and_embeds_its_plot():
    importance = Importance(
        name="shap_importance",
        method="mean |SHAP value|",
        table="plots/shap_importance.csv",
        plot="runs:/abc/evaluate/shap_importance.png",
        image="reports/plots/shap_importance.png",
        top=(FeatureImportance("tenure", 0.61),),
    )
    card = model_card.render(gate_report(importance=importance))

    section = card.split("## Feature importance")[1].split("\n## ")[0]
    assert (
        "Global importance: mean |SHAP value|; plot on the train run: `runs:/abc/evaluate/shap_importance.png`; "
        "table: [`plots/shap_importance.csv`](../plots/shap_importance.csv)."
    ) in section
    assert "![Feature importance](plots/shap_importance.png)" in section and "| tenure | 0.6100 |" in section


def test_card_says_when_evaluate_wrote_no_importance():
    card = model_card.render(gate_report(importance=NO_IMPORTANCE))

    assert "Not available: evaluate wrote no importance table (`plots/importance.csv`)." in card
    assert "| feature | importance |" not in card


def test_card_shows_the_current_batch_scores_and_narrows_the_limitation():
    card = model_card.render(gate_report(champion=False))

    section = card.split("## Current batch")[1].split("\n## ")[0]
    assert "Current batch (held-out rows, 1,405 rows): 1,300 labelled rows, sha256 `c0ffeec0ffee`." in section
    assert "| roc_auc | 0.8300 |" in section and "Production not compared: no 'production' model yet." in section
    limitations = card.split("## Limitations")[1].split("##")[0]
    assert (
        "training rows and on the 1,300 labelled rows of the current batch (held-out rows); beyond those, how"
        in limitations
    )


def test_card_of_an_unlabelled_current_batch_says_so():
    unscored = Comparison(skipped="it has no `churn` column")

    card = model_card.render(gate_report(champion=False, on_current=unscored))

    assert "Current batch (held-out rows, 1,405 rows): not scored, it has no `churn` column." in card
    assert "training rows; how it does on later data is estimated only by the drift checks." in card


def test_card_marks_skipped_checks():
    skipped = Check("champion", True, None, 0.005, "no 'production' model yet", skipped=True)

    card = model_card.render(replace(gate_report(), checks=(skipped,)))

    assert "| champion | skipped | no 'production' model yet |" in card


def test_the_test_comparison_says_which_rows_production_trained_on_and_left_out():
    on_test = replace(ON_TEST, rows=1004, champion_trained_rows=400, candidate={"roc_auc": 0.851, "f1": 0.61})
    report = gate_report(on_test=on_test, candidate=replace(gate_report().candidate, metrics={"roc_auc": 0.9}))

    section = model_card.render(report).split("## Test metrics")[1].split("\n## ")[0]

    # both on the same 1,004 rows: the candidate's paired score, not its score on every test row
    assert "| roc_auc | 0.8510 | 0.8400 | +0.0110 |" in section
    assert "Production v3 trained on 400 of these rows (a new split of grown data mixes them in): both are " in section
    assert "compared on the other 1,004." in section


def test_a_production_version_without_a_record_of_its_rows_is_compared_on_every_row_and_said_so():
    card = model_card.render(gate_report(on_current=replace(ON_CURRENT, champion_trained_rows=None)))

    current = card.split("## Current batch")[1].split("\n## ")[0]
    assert "Production v3's training rows cannot be told apart here" in current
    assert "which favours it." in current
    assert "trained on" not in card.split("## Test metrics")[1].split("\n## ")[0]
