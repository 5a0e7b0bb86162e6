"""gate: register the candidate, judge it against the declared policy, and grant `staging` or not.

Reads the validation, drift, test-metric and train reports, the importance tables, the model and the
train, test and current splits; writes paths.gate (each rule: observed, limit, verdict, evidence;
production vs candidate on the test set and on the current batch's labelled rows, leaving out the rows
production trained on: a retraining's new split of grown data mixes them in), paths.promotion
(Markdown for a pull request), paths.model_card (attached to the registered version) and the PNG
plots both embed, in paths.gate_plots (linked relative to each report). The reports and plots are staged and
moved into place together, after everything rendered. Registry changes are ordered so a failure
leaves no half-applied state: run artifacts and version tags first, the alias last.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlgate import config, console, files, project
from mlgate.adapters import tracking
from mlgate.gating import fairness, segments
from mlgate.gating.evidence import (
    Comparison,
    Evidence,
    Measurements,
    Output,
    compare,
    measure,
    rounded,
    single_row_latency_ms,
    usable_labels,
)
from mlgate.gating.policy import Decision, GatePolicy, check_fits, decide
from mlgate.gating.report import (
    BatchComparison,
    CandidateVersion,
    ChampionVersion,
    ClusterProfile,
    Comparisons,
    DataSummary,
    FeatureImportance,
    GainInterval,
    GateReport,
    Importance,
    Lineage,
    ModelCardLink,
    PersonalColumn,
    Plot,
    ReportPaths,
    Training,
)
from mlgate.modelling import evaluation, metrics, models
from mlgate.modelling.data import DataSpec, target_vector
from mlgate.modelling.provenance import TrainedRows
from mlgate.records import DriftSummary, SegmentationRecipe, TrainingRecord, TrainingRun
from mlgate.registry import CANDIDATE_ALIAS, CHAMPION_ALIAS
from mlgate.reports import evaluation_plots, model_card, promotion
from mlgate.reports.gate_plots import draw_plots
from mlgate.reports.model_card import MODEL_CARD_TAG

STAGE = "gate"


@dataclass(frozen=True)
class Inputs:
    """What the earlier stages wrote, all read before anything is registered."""

    training: TrainingRecord  # train.json: what the model is
    run: TrainingRun  # train_run.json: the train run that logged it
    validation_passed: bool
    drift: DriftSummary  # drift.json
    snapshot: dict[str, Any]  # what ingest's meta.json says of the raw data
    candidate_metrics: dict[str, float]  # metrics/test.json
    train: pd.DataFrame
    test: pd.DataFrame
    current: pd.DataFrame
    segmentation: SegmentationRecipe | None = None  # a clustering task's recipe: its stability, measured by tune


@dataclass(frozen=True)
class Scored:
    """The evidence the policy judges, and what the reports show beside it: production's test
    metrics (the candidate's own when it is the production version) and both models' test outputs."""

    evidence: Evidence
    champion_metrics: dict[str, float] | None
    test_outputs: dict[str, Output]  # on ``test_rows``
    test_rows: pd.DataFrame  # the test rows both were compared on: production's training rows left out


def run(params: dict[str, Any]) -> GateReport:
    """Register the candidate, score it (and production) as served, judge the evidence, publish the
    reports, then record the verdict on the version: the `staging` alias moves last."""
    spec, paths, names = project.data_spec(params), project.paths(params), project.tracking(params)
    policy = config.load(GatePolicy, "gate", params)
    check_fits(policy, spec)
    inputs = _read(paths, spec)

    candidate = tracking.register(names.registered_model, inputs.run.model_uri, inputs.run.run_id)
    digest = tracking.record_digest(candidate)  # what serve, score and the next gate check before unpickling
    champion = tracking.version_by_alias(names.registered_model, CHAMPION_ALIAS)
    model = tracking.load(paths.model)
    supervised = spec.learning_task.supervised
    scorer = _score if supervised else _score_segmentation
    scored = scorer(spec, policy, project.seed(params), model, inputs, candidate.version, champion)
    y_test = target_vector(scored.test_rows, spec) if supervised else None
    decision = decide(policy, scored.evidence)

    report = _report(params, policy, inputs, scored, decision, candidate, digest, champion)
    if inputs.segmentation is not None:
        report = replace(report, clusters=_clusters(paths.plots, inputs.segmentation))
    plots_dir = Path(paths.gate_plots)
    report = _publish(report, plots_dir, spec, paths.plots, y_test, scored.test_outputs)
    _record(report, candidate, inputs, spec.target, paths, scored.evidence.current)

    verdict = "PASSED → alias 'staging'" if report.passed else "REJECTED, no alias"
    console.say(STAGE, f"{candidate.name} v{candidate.version} ({inputs.training.family}): {verdict}")
    for check in report.checks:
        mark = {"pass": "pass", "fail": "FAIL", "skipped": "skip"}[check.verdict]
        console.say("", f"  {mark}  {check.name:<17} {check.detail}")
    console.say(
        "", f"  reports: {paths.promotion} · {paths.gate} · {paths.model_card} · {paths.drift_report} · {plots_dir}/"
    )
    return report


def _read(paths: project.Paths, spec: DataSpec) -> Inputs:
    training = TrainingRecord.from_json(paths.train_info)
    segmentation = None if spec.learning_task.supervised else SegmentationRecipe.from_json(paths.best_params)
    return Inputs(
        training=training,
        run=TrainingRun.of(training, paths.train_run),
        validation_passed=files.read_json(paths.validation)["passed"],
        drift=DriftSummary.from_json(paths.drift),
        snapshot=files.read_json(paths.raw_meta)["data"],
        candidate_metrics={k: v for k, v in files.read_json(paths.metrics).items() if k != "rows"},
        train=pd.read_parquet(paths.split_file("train")),
        test=pd.read_parquet(paths.split_file("test")),
        current=pd.read_parquet(paths.split_file("current")),
        segmentation=segmentation,
    )


def _score(
    spec: DataSpec,
    policy: GatePolicy,
    seed: int,
    model: tracking.LoadedModel,
    inputs: Inputs,
    candidate_version: int,
    champion: tracking.ModelVersion | None,
) -> Scored:
    """The candidate as served, and production, on the test set and on the current batch's labelled
    rows, both left without the rows production trained on; the measurements of the optional rules."""
    test, current = inputs.test, inputs.current
    candidate_output = evaluation.predictions(model, test, spec)
    current_output = evaluation.predictions(model, current, spec)
    labelled, unlabelled = usable_labels(current, spec, policy.current_batch.min_rows)
    frames = {"test": test, "current": None if unlabelled else current[labelled]}
    champion_outputs, not_compared, champion_error = _champion_outputs(champion, candidate_version, frames, spec)
    learnt = _learnt_rows(champion, candidate_version)
    unseen = {name: _unseen(learnt, frame) for name, frame in frames.items()}
    if champion_error is None and unseen["test"] is not None and not unseen["test"].any():
        champion_error = (
            f"production v{champion.version} trained on every one of the {len(test):,} test rows: none is left "
            "to compare the two on (split the data with another seed, or test on new rows)"
        )
        not_compared["test"], champion_outputs["test"], unseen["test"] = champion_error, None, None
    bootstrap = {"slice_columns": policy.slices, "resamples": policy.bootstrap_resamples, "seed": seed}
    on_test, test_rows, test_outputs, test_champion = _compare_unseen(
        spec, test, candidate_output, champion_outputs["test"], unseen["test"], not_compared["test"], bootstrap
    )
    if unlabelled:
        on_current = Comparison(rows=int(labelled.sum()), skipped=unlabelled)
    else:
        on_current = _compare_unseen(
            spec,
            frames["current"],
            tuple(None if a is None else a[labelled] for a in current_output),
            champion_outputs["current"],
            unseen["current"],
            not_compared["current"],
            bootstrap,
        )[0]
    judged_groups = (
        fairness.evidence(
            policy.fairness,
            spec.metric,
            test_rows,
            target_vector(test_rows, spec),
            test_outputs,
            test_champion,
            resamples=policy.bootstrap_resamples,
            seed=seed,
        )
        if policy.fairness.columns
        else ()
    )
    # the production version is the candidate itself: its test metrics are the candidate's
    champion_metrics = on_test.champion or (
        inputs.candidate_metrics if champion is not None and champion_error is None else None
    )
    measured = measure(
        spec,
        model,
        train=inputs.train,
        test=test,
        current=current,
        candidate_output=candidate_output,
        current_output=current_output,
        model_size_bytes=inputs.training.model_size_bytes,
    )
    evidence = Evidence(
        metric=spec.metric,
        validation_passed=inputs.validation_passed,
        drift=inputs.drift,
        candidate_score=_candidate_score(inputs, on_test, spec.metric),
        champion_score=None if champion_metrics is None else champion_metrics[spec.metric],
        champion_error=champion_error,
        test=on_test,
        current=on_current,
        measured=measured,
        task=spec.task,
        fairness=judged_groups,
    )
    plotted = {f"candidate v{candidate_version}": test_outputs}
    if test_champion is not None:
        plotted[f"production v{champion.version}"] = test_champion
    return Scored(evidence, champion_metrics, plotted, test_rows)


def _candidate_score(inputs: Inputs, on_test: Comparison, metric: str) -> float:
    """The candidate's test score the rules judge: evaluate's, on every test row; but a candidate that goes
    on from production's model (``models.CONTINUED``) holds production's trees, so it too is scored only on
    the test rows production never trained on."""
    continues = any(member["family"] == models.CONTINUED for member in inputs.training.members)
    if continues and on_test.champion_trained_rows and on_test.candidate is not None:
        return on_test.candidate[metric]
    return inputs.candidate_metrics[metric]


def _learnt_rows(champion: tracking.ModelVersion | None, candidate_version: int) -> TrainedRows | None:
    """The rows production trained on, as its train run logged them; None without another production
    version or when its run logged none (trained before mlgate logged them)."""
    if champion is None or champion.version == candidate_version or not champion.run_id:
        return None
    return tracking.trained_rows(champion.run_id)


def _unseen(learnt: TrainedRows | None, frame: pd.DataFrame | None) -> np.ndarray | None:
    """Per row of ``frame``: whether production never trained on it; None when that is not known."""
    if learnt is None or frame is None:
        return None
    held = learnt.holds(frame)
    return None if held is None else ~held


def _compare_unseen(
    spec: DataSpec,
    rows: pd.DataFrame,
    candidate: Output,
    champion: Output | None,
    unseen: np.ndarray | None,
    skipped: str | None,
    bootstrap: dict[str, Any],
) -> tuple[Comparison, pd.DataFrame, Output, Output | None]:
    """Both models compared on ``rows`` without those production trained on (``unseen``: None when that
    is not known), counted in the comparison; the rows and both outputs it was made on."""
    if unseen is not None and not unseen.all():
        rows = rows[unseen]
        candidate = tuple(None if a is None else a[unseen] for a in candidate)
        champion = None if champion is None else tuple(None if a is None else a[unseen] for a in champion)
    comparison = compare(spec, rows, candidate, champion, skipped=skipped, **bootstrap)
    if comparison.champion is not None:
        left_out = None if unseen is None else int((~unseen).sum())
        comparison = replace(comparison, champion_trained_rows=left_out)
    return comparison, rows, candidate, champion


def _score_segmentation(
    spec: DataSpec,
    policy: GatePolicy,
    seed: int,
    model: tracking.LoadedModel,
    inputs: Inputs,
    candidate_version: int,
    champion: tracking.ModelVersion | None,
) -> Scored:
    """A clustering task's evidence: both segmentations judged on the test rows in the candidate's
    encoding (``gating.segments``), the assignment's drift (the population stability index of the
    clusters' shares, current batch vs training rows) and the stability tune measured."""
    task = spec.learning_task
    features = inputs.test[spec.features]
    candidate = evaluation.predictions(model, inputs.test, spec)
    outputs, not_compared, champion_error = _champion_outputs(champion, candidate_version, {"test": inputs.test}, spec)
    champion_test = outputs["test"]
    on_test, agreement = segments.compare(
        spec.metric,
        inputs.test,
        model.pipeline.embed(features),
        candidate[0],
        None if champion_test is None else champion_test[0],
        skipped=not_compared["test"],
        resamples=policy.bootstrap_resamples,
        seed=seed,
    )
    # the production version is the candidate itself: its test metrics are the candidate's
    champion_metrics = on_test.champion or (
        inputs.candidate_metrics if champion is not None and champion_error is None else None
    )
    assigned_train = evaluation.predictions(model, inputs.train, spec)[0]
    assigned_current = evaluation.predictions(model, inputs.current, spec)[0]
    measured = Measurements(
        prediction_drift=metrics.population_stability(assigned_train, assigned_current, task.drift_bins),
        model_size_mb=inputs.training.model_size_bytes / 1e6,
        latency_ms=single_row_latency_ms(model.predict, features),
        smallest_cluster_share=(on_test.candidate or {}).get("smallest_share"),
        stability_ari=None if inputs.segmentation.stability is None else inputs.segmentation.stability["mean"],
        assignment_agreement=agreement,
    )
    evidence = Evidence(
        metric=spec.metric,
        validation_passed=inputs.validation_passed,
        drift=inputs.drift,
        candidate_score=inputs.candidate_metrics.get(spec.metric, float(np.nan)),
        champion_score=None if champion_metrics is None else champion_metrics.get(spec.metric),
        champion_error=champion_error,
        test=on_test,
        current=Comparison(skipped="a clustering task has no labels to score"),
        measured=measured,
        task=spec.task,
    )
    test_outputs = {f"candidate v{candidate_version}": candidate}
    if champion_test is not None:
        test_outputs[f"production v{champion.version}"] = champion_test
    return Scored(evidence, champion_metrics, test_outputs, inputs.test)


def _champion_outputs(
    champion: tracking.ModelVersion | None,
    candidate_version: int,
    frames: dict[str, pd.DataFrame | None],
    spec: DataSpec,
) -> tuple[dict[str, Output | None], dict[str, str | None], str | None]:
    """Production's output on the test set and on the current batch's labelled rows (None: not
    scored), why not for each, and the error that fails the champion rule (it could not score test)."""
    outputs: dict[str, Output | None] = dict.fromkeys(frames)
    if champion is None or champion.version == candidate_version:
        why = (
            f"no '{CHAMPION_ALIAS}' model yet"
            if champion is None
            else f"the candidate is the '{CHAMPION_ALIAS}' version"
        )
        return outputs, dict.fromkeys(frames, why), None
    reasons: dict[str, str | None] = dict.fromkeys(frames)
    model = None
    for name, frame in frames.items():
        if frame is None:
            continue
        try:
            model = tracking.load(champion.uri) if model is None else model
            outputs[name] = evaluation.predictions(model, frame, spec)
        except Exception as error:  # noqa: BLE001 - reported by the checks, not a crash
            where = "this test set" if name == "test" else "the current batch"
            reasons[name] = f"could not score production v{champion.version} on {where}: {error}"
    return outputs, reasons, reasons["test"]


def _report(
    params: dict[str, Any],
    policy: GatePolicy,
    inputs: Inputs,
    scored: Scored,
    decision: Decision,
    candidate: tracking.ModelVersion,
    digest: str,
    champion: tracking.ModelVersion | None,
) -> GateReport:
    """The verdict with its evidence, the lineage and the links a reviewer follows (the plots are
    added when they are drawn)."""
    spec, paths, names = project.data_spec(params), project.paths(params), project.tracking(params)
    training, run, evidence = inputs.training, inputs.run, scored.evidence
    current_source = spec.current_path or "held-out rows"
    return GateReport(
        passed=decision.passed,
        reasons=tuple(decision.reasons),
        metric=spec.metric,
        generated_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        git_commit=tracking.git_commit(),
        policy=policy,
        checks=decision.checks,
        test_rows=evidence.test.rows,
        test_hash=evidence.test.content_hash,
        drift=inputs.drift,
        measurements=Measurements(**{k: rounded(v) for k, v in asdict(evidence.measured).items()}),
        gain_interval=GainInterval.of(spec.metric, evidence.test.gain_interval),
        comparison=Comparisons(
            test=BatchComparison.of(evidence.test, spec.metric, "test split", len(inputs.test)),
            current=BatchComparison.of(evidence.current, spec.metric, current_source, len(inputs.current)),
        ),
        paths=ReportPaths(paths.drift_report, paths.gate, paths.promotion),
        model_card=ModelCardLink(
            path=paths.model_card,
            uri=tracking.run_artifact_uri(run.run_id, f"model_card/{Path(paths.model_card).name}"),
            link=os.path.relpath(paths.model_card, Path(paths.promotion).parent),
        ),
        data=DataSummary(
            name=spec.name,
            task=spec.task,
            target=spec.target,
            positive_class=spec.positive_class,
            classes=spec.classes,
            metric=spec.metric,
            features=len(spec.features),
            threshold=training.threshold["threshold"],
            personal=personal_columns(spec),
            pii_key_env=spec.contract.pii_key_env if spec.contract.personal.hash else None,
        ),
        lineage=_lineage(params, inputs, current_source),
        training=Training(
            training.family, training.params, project.seed(params), run.fit_seconds, training.model_size_bytes
        ),
        importance=_importance(paths.plots, spec.metric, run.run_id),
        candidate=_candidate(tracking.ui_base(names.ui_url), inputs, candidate, digest),
        champion=None if champion is None else _champion(tracking.ui_base(names.ui_url), champion, scored),
    )


def personal_columns(spec: DataSpec) -> tuple[PersonalColumn, ...]:
    """The contract's personal columns for the model card: names and handling, never values."""
    return tuple(
        PersonalColumn(name, column.pii, column.handling, column.reason)
        for name, column in spec.contract.columns.items()
        if column.pii not in (None, "none")
    )


def _lineage(params: dict[str, Any], inputs: Inputs, current_source: str) -> Lineage:
    """Where the rows came from: the snapshot ingest wrote, as DVC tracks it, and how it was split."""
    snapshot = inputs.snapshot
    return Lineage(
        source=snapshot["source"],
        kind=snapshot["kind"],
        rows=snapshot["rows"],
        columns=len(snapshot["columns"]),
        content_hash=snapshot["content_hash"],
        dvc_md5=project.lineage(params)[1],
        train_rows=len(inputs.train),
        current_rows=len(inputs.current),
        current_source=current_source,
        trained_at=tracking.run_started_at(inputs.run.run_id),
    )


def _candidate(ui_url: str, inputs: Inputs, candidate: tracking.ModelVersion, digest: str) -> CandidateVersion:
    run = inputs.run
    return CandidateVersion(
        name=candidate.name,
        version=candidate.version,
        run_id=run.run_id,
        model_uri=run.model_uri,
        model_sha256=digest,
        family=inputs.training.family,
        metrics=inputs.candidate_metrics,
        run_link=tracking.run_link(ui_url, run.run_id),
        version_link=tracking.version_link(ui_url, candidate.name, candidate.version),
        tune_run_link=run.tune_run_id and tracking.run_link(ui_url, run.tune_run_id),
    )


def _champion(ui_url: str, champion: tracking.ModelVersion, scored: Scored) -> ChampionVersion:
    return ChampionVersion(
        version=champion.version,
        run_id=champion.run_id,
        metrics=scored.champion_metrics,
        error=scored.evidence.champion_error,
        version_link=tracking.version_link(ui_url, champion.name, champion.version),
    )


def _importance(plots: str, metric: str, run_id: str) -> Importance:
    """What the model card shows: SHAP importance when evaluate computed it (every family but k-NN and
    the MLP, ensembles included; binary and regression), else permutation; nothing when evaluate wrote
    neither table."""
    if (Path(plots) / f"{evaluation.SHAP_IMPORTANCE}.csv").is_file():
        name = evaluation.SHAP_IMPORTANCE
        method = (
            "mean |SHAP value| per input column on test rows (exact TreeSHAP for the trees, coefficient x "
            "value for linear models, an ensemble's members weighted by its combiner)"
        )
    else:
        name = "importance"
        method = (
            f"permutation, the drop in test {metric} when one input column is shuffled "
            "(k-NN, the MLP, multiclass models, and models too large to explain in time)"
        )
    table = Path(plots) / f"{name}.csv"
    if not table.is_file():
        return Importance(None, None, table.as_posix(), None, None, ())
    top = pd.read_csv(table).head(10)
    return Importance(
        name=name,
        method=method,
        table=table.as_posix(),
        plot=tracking.run_artifact_uri(run_id, f"evaluate/{name}.png"),
        image=None,
        top=tuple(FeatureImportance(str(row.feature), round(float(row.importance), 6)) for row in top.itertuples()),
    )


def _clusters(plots: str, recipe: SegmentationRecipe) -> ClusterProfile:
    """What the reports show of a clustering model's clusters: evaluate's profile, tune's stability."""
    table = Path(plots) / "cluster_profile.csv"
    rows = json.loads(pd.read_csv(table).to_json(orient="records"))
    return ClusterProfile(table.as_posix(), tuple(rows), recipe.stability)


CLUSTER_PLOTS = {  # evaluate's tables the reports draw for a clustering model, with their titles
    "projection": "Clusters on the first two principal components (test)",
    "silhouette": "Silhouette per row, by cluster (test)",
}


def _publish(
    report: GateReport,
    plots_dir: Path,
    spec: DataSpec,
    evaluate_plots: str,
    y_test: np.ndarray | None,
    test_outputs: dict[str, Output],
) -> GateReport:
    """Draw the plots, then write them with gate.json, the promotion report and the model card, all
    staged first: a failure while drawing or writing leaves the previous outputs as they were. The
    report as written: with its plots and the importance plot beside the card."""
    with contextlib.ExitStack() as stack:
        staged = stack.enter_context(files.atomic_path(plots_dir))
        staged.mkdir()
        drawn = draw_plots(staged, report, y_test, test_outputs)
        plots = tuple(Plot(name, title, (plots_dir / f"{name}.png").as_posix()) for name, title in drawn.items())
        importance = report.importance
        if importance.name is not None:
            table = pd.read_csv(Path(evaluate_plots) / f"{importance.name}.csv")
            evaluation_plots.png(importance.name, table, spec, staged)
            importance = replace(importance, image=(plots_dir / f"{importance.name}.png").as_posix())
        report = replace(report, plots=plots, importance=importance)
        if report.clusters is not None:
            drawn_clusters = []
            for name, title in CLUSTER_PLOTS.items():
                evaluation_plots.png(name, pd.read_csv(Path(evaluate_plots) / f"{name}.csv"), spec, staged)
                drawn_clusters.append(Plot(name, title, (plots_dir / f"{name}.png").as_posix()))
            report = replace(report, clusters=replace(report.clusters, images=tuple(drawn_clusters)))
        for path, text in (
            (report.paths.promotion, promotion.markdown(report)),
            (report.model_card.path, model_card.render(report)),
        ):
            stack.enter_context(files.atomic_path(path)).write_text(text)
        files.write_json(report.paths.gate, report.to_json())  # the last write inside: if it fails, nothing moves
    return report


def _record(
    report: GateReport,
    candidate: tracking.ModelVersion,
    inputs: Inputs,
    target: str | None,
    paths: project.Paths,
    current: Comparison,
) -> None:
    """On the train run the reports as artifacts and the test split judged on as a dataset input, then the
    verdict as tags of the version, then the alias."""
    run_id = inputs.run.run_id
    # evaluate logged the same split there; MLflow keeps one entry a run per name and digest
    tracking.log_split(run_id, "test", inputs.test, paths.split_file("test"), target, "testing")
    for path in (paths.gate, paths.promotion, paths.drift, paths.drift_report, paths.validation):
        tracking.log_artifact(run_id, path, "gate")
    for png in sorted(Path(paths.gate_plots).glob("*.png")):  # with the importance plot beside the card
        tracking.log_artifact(run_id, png, "gate/plots")
    tracking.log_artifact(run_id, paths.model_card, "model_card")
    tags = {
        "mlgate.gate.passed": str(report.passed).lower(),
        "mlgate.gate.at": report.generated_at,
        "mlgate.gate.commit": report.git_commit,
        "mlgate.gate.metric": report.metric,
        "mlgate.data_hash": inputs.training.data_hash,
        MODEL_CARD_TAG: report.model_card.uri,
        tracking.DIGEST_TAG: report.candidate.model_sha256,
    }
    tags |= {f"mlgate.gate.{check.name}": f"{check.verdict}: {check.detail}" for check in report.checks}
    tracking.set_version_tags(candidate.name, candidate.version, tags)
    measured = {f"gate/{k}": v for k, v in asdict(report.measurements).items() if v is not None}
    scored_current = {f"current/{k}": v for k, v in (current.candidate or {}).items()}
    tracking.log(
        run_id,
        metrics={"gate/passed": float(report.passed), **measured, **scored_current},
        tags={"mlgate.registered_version": str(candidate.version)},
    )
    if report.passed:
        tracking.set_alias(candidate.name, CANDIDATE_ALIAS, candidate.version)
    elif CANDIDATE_ALIAS in candidate.aliases:
        tracking.delete_alias(candidate.name, CANDIDATE_ALIAS)
    # the registry change as a file DVC sees: the committed reports alone would leave a fresh clone, whose
    # store is empty, with gate up to date and no registered model
    registered = {"model": candidate.name, "version": int(candidate.version), "staging": report.passed}
    files.write_json(paths.registered, registered | {"run_id": run_id, "tracking_uri": tracking.tracking_uri()})
