"""The gate's PNG plots and the all-or-nothing write of its reports (matplotlib, no tracking store)."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mlgate.gating.report import FeatureImportance, Importance
from mlgate.reports import gate_plots
from mlgate.stages import gate
from tests.factories import NO_IMPORTANCE, drift, gate_report

PNG = b"\x89PNG\r\n\x1a\n"


def _report(tmp_path: Path, *, task: str = "binary", champion: bool = True):
    """A gate report with its reports under ``tmp_path`` and no importance table to draw."""
    return gate_report(
        champion=champion, folder=(tmp_path / "reports").as_posix(), importance=NO_IMPORTANCE, data={"task": task}
    )


def _test_outputs(task: str, champion: bool):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400) if task == "binary" else rng.normal(100, 20, 400)
    outputs = {}
    for label, noise in (("candidate v4", 0.3), ("production v3", 0.45))[: 2 if champion else 1]:
        if task == "binary":
            probability = np.clip(0.5 * y + 0.25 + rng.normal(0, noise, len(y)), 0, 1)
            outputs[label] = ((probability > 0.5).astype(int), probability)
        else:
            outputs[label] = (y + rng.normal(0, 50 * noise, len(y)), None)
    return y, outputs


@pytest.mark.parametrize(
    "task, champion, expected",
    [
        ("binary", True, {"metric", "roc", "drift", "slices"}),
        ("binary", False, {"metric", "roc", "drift", "slices"}),
        ("regression", True, {"metric", "residuals", "drift", "slices"}),
    ],
)
def test_each_plot_is_a_small_png(tmp_path, task, champion, expected):
    y, outputs = _test_outputs(task, champion)

    drawn = gate_plots.draw_plots(tmp_path, _report(tmp_path, task=task, champion=champion), y, outputs)

    assert set(drawn) == expected and all(drawn.values())
    for name in expected:
        data = (tmp_path / f"{name}.png").read_bytes()
        assert data.startswith(PNG) and len(data) < 120_000, name
    assert b"Matplotlib version" not in (tmp_path / "metric.png").read_bytes()


def test_publish_writes_the_reports_and_plots_that_embed_each_other(tmp_path, binary_spec):
    y, outputs = _test_outputs("binary", True)
    plots = tmp_path / "reports" / "plots"

    report = gate._publish(_report(tmp_path), plots, binary_spec, str(tmp_path / "plots"), y, outputs)

    markdown = Path(report.paths.promotion).read_text()
    for name in ("metric", "roc", "drift", "slices"):
        assert (plots / f"{name}.png").read_bytes().startswith(PNG)
        assert f"](plots/{name}.png)" in markdown
    assert '"plots": [' in Path(report.paths.gate).read_text()
    assert [plot.name for plot in report.plots] == ["metric", "roc", "drift", "slices"]
    card = Path(report.model_card.path).read_text()
    assert "Not available: evaluate wrote no importance table (`plots/importance.csv`)." in card
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == [
        "gate.json",
        "model_card.md",
        "plots",
        "promotion.md",
    ]


def test_publish_embeds_evaluates_importance_plot_in_the_model_card(tmp_path, binary_spec):
    table = tmp_path / "plots" / "importance.csv"
    table.parent.mkdir()
    table.write_text("feature,importance,std\ntenure,0.05,0.01\nplan,0.01,0.005\n")
    importance = Importance(
        "importance",
        "permutation",
        table.as_posix(),
        "runs:/abc/evaluate/importance.png",
        None,
        (FeatureImportance("tenure", 0.05),),
    )
    y, outputs = _test_outputs("binary", True)

    report = gate._publish(
        replace(_report(tmp_path), importance=importance),
        tmp_path / "reports" / "plots",
        binary_spec,
        str(tmp_path / "plots"),
        y,
        outputs,
    )

    card = Path(report.model_card.path).read_text()
    assert "![Feature importance](plots/importance.png)" in card
    assert "; table: [`" in card and "](../plots/importance.csv)." in card
    assert (tmp_path / "reports" / "plots" / "importance.png").read_bytes().startswith(PNG)
    assert "importance.png" not in Path(report.paths.promotion).read_text()


def test_a_failing_publish_leaves_the_previous_reports_and_plots(tmp_path, binary_spec, monkeypatch):
    reports = tmp_path / "reports"
    (reports / "plots").mkdir(parents=True)
    before = {
        "gate.json": "{}\n",
        "promotion.md": "old report\n",
        "model_card.md": "old card\n",
        "plots/metric.png": "old plot",
    }
    for name, text in before.items():
        (reports / name).write_text(text)
    y, outputs = _test_outputs("binary", True)

    def broken_card(report):
        raise RuntimeError("card failed")

    monkeypatch.setattr(gate.model_card, "render", broken_card)
    with pytest.raises(RuntimeError, match="card failed"):
        gate._publish(_report(tmp_path), reports / "plots", binary_spec, str(tmp_path / "plots"), y, outputs)

    assert {name: (reports / name).read_text() for name in before} == before
    assert sorted(p.name for p in reports.iterdir()) == ["gate.json", "model_card.md", "plots", "promotion.md"]
    assert [p.name for p in (reports / "plots").iterdir()] == ["metric.png"]


def test_drift_plot_survives_a_p_value_of_zero(tmp_path):
    columns = {
        "a": {"method": "chi-square p_value", "score": 0.0, "threshold": 0.05, "drifted": True},
        "b": {"method": "K-S p_value", "score": 1e-300, "threshold": 0.05, "drifted": True},
    }
    gate_plots._drift_plot(drift(drifted_count=2, columns_checked=2, columns=columns), tmp_path / "drift.png")
    assert (tmp_path / "drift.png").stat().st_size > 1000
