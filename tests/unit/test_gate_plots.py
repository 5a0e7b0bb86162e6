"""The gate's PNG plots and the all-or-nothing write of its reports (matplotlib, no tracking store)."""

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from mlgate.reports import gate_plots
from mlgate.stages import gate
from mlgate.stages.gate import Comparison, CurrentBatchRule, GatePolicy, Measurements, SliceLimits, SliceScore, decide

PNG = b"\x89PNG\r\n\x1a\n"
SLICES = (
    SliceScore("contract", "Month-to-month", 700, 0.78, 0.80),
    SliceScore("contract", "One year", 300, 0.66, 0.62),
)


def _interval(low, high):
    return {"confidence": 0.95, "low": low, "high": high}


def _side(value, low, high):
    return {"metrics": {"roc_auc": value, "f1": 0.6}, "interval": _interval(low, high)}


def _result(tmp_path: Path, *, task: str = "binary", champion: bool = True) -> dict:
    """A gate result as run() builds it, with the reports under ``tmp_path``."""
    policy = GatePolicy(
        metric="roc_auc",
        max_regression=0.005,
        current_batch=CurrentBatchRule(max_regression=0.02),
        slices={"contract": SliceLimits(min_metric=0.6, max_regression=0.05, min_rows=100)},
    )
    batch = Comparison(
        rows=900,
        content_hash="cd" * 32,
        candidate={"roc_auc": 0.83},
        champion={"roc_auc": 0.82} if champion else None,
        gain_interval=(-0.01, 0.03) if champion else None,
        skipped=None if champion else "no 'production' model yet",
    )
    decision = decide(
        policy,
        validation_passed=True,
        drift={"drift_share": 0.1, "max_drift_share": 0.3, "drifted_columns": []},
        metric="roc_auc",
        candidate_score=0.85,
        champion_score=0.84 if champion else None,
        measured=Measurements(slices=SLICES),
        current=batch,
    )
    compared = {
        "metric": "roc_auc",
        "rows": 1400,
        "content_hash": "ab" * 32,
        "skipped": None,
        "gain": 0.01,
        "gain_interval": _interval(-0.002, 0.021),
        "candidate": _side(0.85, 0.83, 0.87),
        "champion": _side(0.84, 0.82, 0.86),
        "slices": [],
    }
    current = compared | {
        "rows": 900,
        "gain_interval": _interval(-0.01, 0.03),
        "candidate": _side(0.83, 0.80, 0.86),
        "champion": _side(0.82, 0.79, 0.85),
        "slices": [asdict(SLICES[0]) | {"gain": -0.02}],
    }
    if not champion:
        compared |= {"champion": None, "gain": None, "gain_interval": None, "skipped": "no 'production' model yet"}
        current |= {"champion": None, "gain": None, "gain_interval": None, "skipped": "no 'production' model yet"}
    reports = tmp_path / "reports"
    return {
        "passed": decision.passed,
        "reasons": decision.reasons,
        "metric": "roc_auc",
        "generated_at": "2026-01-02T03:04:05+00:00",
        "git_commit": "0123456789abcdef0123",
        "policy": asdict(policy),
        "checks": [c.as_dict() for c in decision.checks],
        "test_rows": 1400,
        "test_hash": "feedfacecafebeef" * 4,
        "drift": {
            "drifted_count": 1,
            "columns_checked": 3,
            "drift_share": 0.33,
            "max_drift_share": 0.3,
            "current_rows": 900,
            "reference_rows": 4000,
            "drifted_columns": ["tenure"],
            "columns": {
                "tenure": {"method": "Wasserstein distance (normed)", "score": 0.25, "threshold": 0.1, "drifted": True},
                "plan": {"method": "Jensen-Shannon distance", "score": 0.01, "threshold": 0.1, "drifted": False},
                "area": {"method": "K-S p_value", "score": 1e-12, "threshold": 0.05, "drifted": True},
            },
        },
        "measurements": {
            "prediction_drift": 0.01,
            "target_drift": None,
            "calibration_error": None,
            "brier": None,
            "model_size_mb": 0.02,
            "latency_ms": 5.0,
        },
        "gain_interval": {"metric": "roc_auc", "confidence": 0.95, "low": -0.002, "high": 0.021} if champion else None,
        "comparison": {
            "test": compared | {"source": "test split", "batch_rows": 1400},
            "current": current | {"source": "held-out rows", "batch_rows": 1000},
        },
        "paths": {
            "drift_report": "reports/drift.html",
            "gate": str(reports / "gate.json"),
            "promotion": str(reports / "promotion.md"),
        },
        "model_card": {
            "path": str(reports / "model_card.md"),
            "link": "model_card.md",
            "uri": "runs:/abc/model_card/model_card.md",
        },
        "data": {
            "name": "tiny",
            "task": task,
            "target": "churn",
            "positive_class": "Yes",
            "metric": "roc_auc",
            "features": 3,
        },
        "lineage": {
            "source": "data/source/tiny.csv",
            "kind": "file",
            "rows": 7000,
            "columns": 4,
            "content_hash": "71" * 32,
            "dvc_md5": None,
            "train_rows": 4000,
            "current_rows": 1000,
            "current_source": "held-out rows",
            "trained_at": "2026-01-02T03:00:00+00:00",
        },
        "training": {
            "family": "linear",
            "params": {"alpha": 1.0},
            "seed": 42,
            "fit_seconds": 0.5,
            "model_size_bytes": 20_000,
        },
        "importance": {
            "name": None,
            "method": None,
            "table": "plots/importance.csv",
            "plot": None,
            "image": None,
            "top": [],
        },
        "candidate": {
            "name": "tiny",
            "version": 4,
            "run_id": "abc",
            "family": "linear",
            "metrics": {"roc_auc": 0.85, "f1": 0.6},
            "run_link": "http://ui/runs/abc",
            "version_link": "http://ui/models/tiny/4",
            "tune_run_link": "http://ui/runs/t",
        },
        "champion": {
            "version": 3,
            "metrics": {"roc_auc": 0.84, "f1": 0.6},
            "error": None,
            "version_link": "http://ui/models/tiny/3",
        }
        if champion
        else None,
    }


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

    drawn = gate_plots.draw_plots(tmp_path, _result(tmp_path, task=task, champion=champion), y, outputs)

    assert set(drawn) == expected and all(drawn.values())
    for name in expected:
        data = (tmp_path / f"{name}.png").read_bytes()
        assert data.startswith(PNG) and len(data) < 120_000, name
    assert b"Matplotlib version" not in (tmp_path / "metric.png").read_bytes()


def test_publish_writes_the_reports_and_plots_that_embed_each_other(tmp_path, binary_spec):
    result = _result(tmp_path)
    y, outputs = _test_outputs("binary", True)
    plots = tmp_path / "reports" / "plots"

    gate._publish(result, plots, binary_spec, str(tmp_path / "plots"), y, outputs)

    markdown = Path(result["paths"]["promotion"]).read_text()
    for name in ("metric", "roc", "drift", "slices"):
        assert (plots / f"{name}.png").read_bytes().startswith(PNG)
        assert f"](plots/{name}.png)" in markdown
    assert '"plots": [' in Path(result["paths"]["gate"]).read_text()
    card = Path(result["model_card"]["path"]).read_text()
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
    result = _result(tmp_path)
    result["importance"] = {
        "name": "importance",
        "method": "permutation",
        "table": table.as_posix(),
        "plot": "runs:/abc/evaluate/importance.png",
        "image": None,
        "top": [{"feature": "tenure", "importance": 0.05}],
    }
    y, outputs = _test_outputs("binary", True)

    gate._publish(result, tmp_path / "reports" / "plots", binary_spec, str(tmp_path / "plots"), y, outputs)

    card = Path(result["model_card"]["path"]).read_text()
    assert "![Feature importance](plots/importance.png)" in card
    assert "; table: [`" in card and "](../plots/importance.csv)." in card
    assert (tmp_path / "reports" / "plots" / "importance.png").read_bytes().startswith(PNG)
    assert "importance.png" not in Path(result["paths"]["promotion"]).read_text()


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

    def broken_card(result):
        raise RuntimeError("card failed")

    monkeypatch.setattr(gate.model_card, "render", broken_card)
    with pytest.raises(RuntimeError, match="card failed"):
        gate._publish(_result(tmp_path), reports / "plots", binary_spec, str(tmp_path / "plots"), y, outputs)

    assert {name: (reports / name).read_text() for name in before} == before
    assert sorted(p.name for p in reports.iterdir()) == ["gate.json", "model_card.md", "plots", "promotion.md"]
    assert [p.name for p in (reports / "plots").iterdir()] == ["metric.png"]


def test_drift_plot_survives_a_p_value_of_zero(tmp_path):
    drift = {
        "drifted_count": 2,
        "columns_checked": 2,
        "columns": {
            "a": {"method": "chi-square p_value", "score": 0.0, "threshold": 0.05, "drifted": True},
            "b": {"method": "K-S p_value", "score": 1e-300, "threshold": 0.05, "drifted": True},
        },
    }
    gate_plots._drift_plot(drift, tmp_path / "drift.png")
    assert (tmp_path / "drift.png").stat().st_size > 1000
