"""Small typed records for tests: one gate report as gate.run builds it, for the renderers' tests."""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

from mlgate.gating.evidence import Comparison, Evidence, Measurements, SliceScore
from mlgate.gating.policy import CurrentBatchRule, GatePolicy, SliceLimits, decide
from mlgate.gating.report import (
    BatchComparison,
    CandidateVersion,
    ChampionVersion,
    Comparisons,
    DataSummary,
    FeatureImportance,
    GainInterval,
    GateReport,
    Importance,
    Lineage,
    ModelCardLink,
    ReportPaths,
    Training,
)
from mlgate.gating.shadow import ShadowEvidence
from mlgate.records import DriftSummary

NO_PRODUCTION = "no 'production' model yet"
SLICES = (
    SliceScore("contract", "Month-to-month", 700, 0.78, 0.80),
    SliceScore("contract", "One year", 300, 0.66, 0.62),
    SliceScore("contract", "Two year", 50, 0.60, 0.90),
)
POLICY = GatePolicy(
    metric="roc_auc",
    metric_floor=0.8,
    max_regression=0.005,
    current_batch=CurrentBatchRule(max_regression=0.02),
    slices={"contract": SliceLimits(min_metric=0.6, max_regression=0.05, min_rows=100)},
)
DRIFT_JSON = {
    "reference_rows": 4212,
    "current_rows": 1405,
    "columns_checked": 19,
    "drifted_count": 2,
    "drift_share": 0.105263,
    "max_drift_share": 0.3,
    "passed": True,
    "drifted_columns": ["tenure", "area"],
    "columns": {
        "tenure": {"method": "Wasserstein distance (normed)", "score": 0.25, "threshold": 0.1, "drifted": True},
        "plan": {"method": "Jensen-Shannon distance", "score": 0.01, "threshold": 0.1, "drifted": False},
        "area": {"method": "K-S p_value", "score": 1e-12, "threshold": 0.05, "drifted": True},
    },
    "engine": "evidently 0.7.23",
}


def drift(**fields: Any) -> DriftSummary:
    """reports/drift.json as the gate reads it: DRIFT_JSON with ``fields`` replaced (as JSON)."""
    return DriftSummary.from_json(DRIFT_JSON | fields)


DRIFT = drift()
MEASURED = Measurements(
    prediction_drift=0.012,
    target_drift=0.0004,
    calibration_error=0.031,
    brier=0.132,
    model_size_mb=0.02,
    latency_ms=8.7,
)
SHAP = Importance(
    name="shap_importance",
    method="mean |SHAP value| (CatBoost's TreeSHAP)",
    table="plots/shap_importance.csv",
    plot="runs:/abc/evaluate/shap_importance.png",
    image=None,
    top=(FeatureImportance("tenure", 0.61), FeatureImportance("contract", 0.42)),
)
NO_IMPORTANCE = Importance(None, None, "plots/importance.csv", None, None, ())
ON_TEST = Comparison(
    rows=1404,
    content_hash="feedfacecafebeef" * 4,
    candidate={"roc_auc": 0.85, "f1": 0.6},
    champion={"roc_auc": 0.84, "f1": 0.65},
    candidate_interval=(0.83, 0.87),
    champion_interval=(0.82, 0.86),
    gain_interval=(-0.002, 0.021),
    slices=SLICES,
)
ON_CURRENT = Comparison(
    rows=1300,
    content_hash="c0ffee" * 10 + "abcd",
    candidate={"roc_auc": 0.83, "f1": 0.61},
    champion={"roc_auc": 0.82, "f1": 0.63},
    candidate_interval=(0.80, 0.86),
    champion_interval=(0.79, 0.85),
    gain_interval=(-0.004, 0.025),
    slices=SLICES[:1],
)


def alone(batch: Comparison) -> Comparison:
    """``batch`` without production's side, as the gate scores it when there is no production model."""
    return replace(
        batch,
        champion=None,
        champion_interval=None,
        gain_interval=None,
        slices=tuple(replace(s, champion=None) for s in batch.slices),
        skipped=batch.skipped or NO_PRODUCTION,
    )


def gate_report(
    *,
    champion: bool = True,
    policy: GatePolicy = POLICY,
    drift: DriftSummary = DRIFT,
    on_test: Comparison = ON_TEST,
    on_current: Comparison = ON_CURRENT,
    folder: str = "reports",
    fairness: tuple = (),
    **overrides: Any,
) -> GateReport:
    """A telco_churn candidate v4, judged by ``policy`` on ``drift``, the comparisons against production
    v3 (or none) and the ``fairness`` evidence, with its reports under ``folder``; ``overrides`` replace
    top-level fields (``data``: a dict of changes)."""
    if not champion:
        on_test, on_current = alone(on_test), alone(on_current)
    evidence = Evidence(
        metric="roc_auc",
        validation_passed=True,
        drift=drift,
        candidate_score=on_test.candidate["roc_auc"],
        champion_score=on_test.champion and on_test.champion["roc_auc"],
        test=on_test,
        current=on_current,
        measured=MEASURED,
        fairness=fairness,
    )
    decision = decide(policy, evidence)
    data = DataSummary("telco_churn", "binary", "churn", "Yes", None, "roc_auc", 19, 0.5)
    report = GateReport(
        passed=decision.passed,
        reasons=tuple(decision.reasons),
        metric="roc_auc",
        generated_at="2026-01-02T03:04:05+00:00",
        git_commit="0123456789abcdef0123",
        policy=policy,
        checks=decision.checks,
        test_rows=on_test.rows,
        test_hash=on_test.content_hash,
        drift=drift,
        measurements=MEASURED,
        gain_interval=GainInterval.of("roc_auc", on_test.gain_interval),
        comparison=Comparisons(
            test=BatchComparison.of(on_test, "roc_auc", "test split", on_test.rows),
            current=BatchComparison.of(on_current, "roc_auc", "held-out rows", 1405),
        ),
        paths=ReportPaths(f"{folder}/drift.html", f"{folder}/gate.json", f"{folder}/promotion.md"),
        model_card=ModelCardLink(f"{folder}/model_card.md", "runs:/abc/model_card/model_card.md", "model_card.md"),
        data=data,
        lineage=Lineage(
            source="data/source/telco_churn.csv.gz",
            kind="file",
            rows=7043,
            columns=20,
            content_hash="71a8f46c" * 8,
            dvc_md5="0a1b2c.dir",
            train_rows=4212,
            current_rows=1405,
            current_source="held-out rows",
            trained_at="2026-01-02T03:00:00+00:00",
        ),
        training=Training("catboost", {"depth": 6, "learning_rate": 0.1}, 42, 1.234, 20_000),
        importance=SHAP,
        candidate=CandidateVersion(
            name="telco_churn",
            version=4,
            run_id="abc",
            model_uri="runs:/abc/model",
            model_sha256="5e" * 32,
            family="catboost",
            metrics=on_test.candidate,
            run_link="http://ui/runs/abc",
            version_link="http://ui/models/telco_churn/4",
            tune_run_link="http://ui/runs/tune",
        ),
        champion=ChampionVersion(3, "def", on_test.champion, None, "http://ui/models/telco_churn/3")
        if champion
        else None,
    )
    if "data" in overrides:
        overrides["data"] = DataSummary(**asdict(data) | overrides["data"])
    return replace(report, **overrides)


# Live shadow evidence as `mlgate monitor` measures it: v4 (staging) shadowing v3 (production), a small gain.
SHADOW_EVIDENCE = ShadowEvidence(
    shadow_version=4,
    served_version=3,
    paired_rows=1000,
    agreement=0.95,
    labelled_rows=400,
    metric="roc_auc",
    served_metric=0.84,
    shadow_metric=0.85,
    change=0.01,
    interval=(-0.004, 0.024),
    window_from="2026-03-01T00:00:00+00:00",
    window_to="2026-03-01T11:00:00+00:00",
    generated_at="2026-03-01T11:30:00+00:00",
)
