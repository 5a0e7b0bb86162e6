"""The `mlgate` command: one subcommand per pipeline stage (what dvc.yaml runs), plus promote."""

from __future__ import annotations

import functools
import importlib
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from mlgate import console
from mlgate.registry import CHAMPION_ALIAS

console.quiet_libraries()

STAGES = {
    "fingerprint": "Cheap summary of the source (file hash, SQL count, ETag); ingest reruns when it changes.",
    "ingest": "Read the declared source into data/raw/ (Parquet + meta.json with a content hash).",
    "validate": "Check data/raw/ against the data contract; fail naming file, column and rule.",
    "split": "Drop duplicate rows; seeded stratified train / test / current split.",
    "tune": "Optuna search over model families with k-fold CV; one nested MLflow run per trial.",
    "train": "Refit the best configuration on all of train; save and log the MLflow model.",
    "evaluate": "Test-set metrics and plots (DVC metrics/plots, MLflow run).",
    "drift": "Evidently data drift of the current batch against the training data.",
    "gate": "Register the candidate, compare with production, grant 'staging' if every check passes.",
}


def _run_stage(name: str, params_file: str) -> None:
    from mlgate import config
    from mlgate.errors import StageError

    try:
        params = config.read_params(params_file)
        importlib.import_module(f"mlgate.stages.{name}").run(params)
    except (StageError, config.ConfigError) as error:
        console.fail(name, str(error))
        sys.exit(1)
    except FileNotFoundError as error:
        console.fail(name, f"{error.filename}: not found; run the earlier stages first (`dvc repro {name}`)")
        sys.exit(1)


@click.group(help="mlgate: a tracked AutoML pipeline on MLflow and DVC, gated by the model registry.")
def main() -> None:
    pass


def _stage_command(name: str, summary: str) -> click.Command:
    @click.option("--params", "params_file", default="params.yaml", show_default=True, help="composed parameters")
    def command(params_file: str) -> None:
        _run_stage(name, params_file)

    return click.command(name=name, help=summary)(command)


for _name, _summary in STAGES.items():
    main.add_command(_stage_command(_name, _summary))


def _expected(value: str | None) -> int | None | str:
    """--expect-current: a version number, "none", or absent (no check)."""
    if value is None:
        return "any"
    if value.lower() == "none":
        return None
    if not value.isdigit():
        raise click.BadParameter(f"expected a version number or 'none', got {value!r}", param_hint="--expect-current")
    return int(value)


def _registry_command(name: str, action) -> None:
    from mlgate import config
    from mlgate.errors import StageError

    try:
        action()
    except (StageError, config.ConfigError) as error:
        console.fail(name, str(error))
        sys.exit(1)


def _model_and_ledger(model: str | None, params_file: str) -> tuple[str, str]:
    from mlgate import config, project

    params = config.read_params(params_file)
    return model or project.tracking(params).registered_model, project.paths(params).ledger


@main.command(
    help="Move an alias (default: production) to the version the gate passed; the old holder stays under 'previous'."
)
@click.option("--version", "version", type=int, default=None, help="registered model version")
@click.option(
    "--from-gate",
    "gate_file",
    type=click.Path(path_type=Path),
    default=None,
    help="take the version, and the production version to expect, from this gate.json (CI on merge)",
)
@click.option("--alias", default=CHAMPION_ALIAS, show_default=True)
@click.option(
    "--expect-current", default=None, help="the version you saw on the alias (or 'none'); refuse if it has moved since"
)
@click.option("--model", "model", default=None, help="registered model name (default: tracking.registered_model)")
@click.option("--reason", default="promoted after review", show_default=True)
@click.option("--params", "params_file", default="params.yaml", show_default=True)
def promote(
    version: int | None,
    gate_file: Path | None,
    alias: str,
    expect_current: str | None,
    model: str | None,
    reason: str,
    params_file: str,
) -> None:
    from mlgate.services import promote as promotion

    def act() -> None:
        from mlgate import config

        name, ledger = _model_and_ledger(model, params_file)
        if (version is None) == (gate_file is None):
            raise click.UsageError("give exactly one of --version or --from-gate")
        rule = promotion.shadow_rule(config.read_params(params_file))  # gate.shadow: live evidence first?
        if gate_file is None:
            promotion.promote(
                name, version, alias, reason, expected=_expected(expect_current), ledger=ledger, shadow_rule=rule
            )
            return
        report = promotion.from_gate_report(gate_file, name)
        promotion.promote(
            name,
            report.version,
            alias,
            reason,
            expected=report.champion,
            ledger=ledger,
            reviewed_digest=report.model_sha256,
            shadow_rule=rule,
        )

    _registry_command("promote", act)


@main.command(help="Give an alias (default: production) back to the version under 'previous'.")
@click.option("--alias", default=CHAMPION_ALIAS, show_default=True)
@click.option("--expect-current", default=None, help="the version you saw on the alias; refuse if it has moved since")
@click.option("--model", "model", default=None, help="registered model name (default: tracking.registered_model)")
@click.option("--reason", default="rolled back", show_default=True)
@click.option("--params", "params_file", default="params.yaml", show_default=True)
def rollback(alias: str, expect_current: str | None, model: str | None, reason: str, params_file: str) -> None:
    from mlgate.services import promote as promotion

    def act() -> None:
        name, ledger = _model_and_ledger(model, params_file)
        promotion.rollback(name, alias, reason, expected=_expected(expect_current), ledger=ledger)

    _registry_command("rollback", act)


@main.command(
    help="Record the artifact digest of a version gated before mlgate recorded digests, so "
    "serve, score and monitor load it verified; only after someone has checked its files."
)
@click.option("--version", "version", type=int, required=True, help="registered model version")
@click.option("--reason", required=True, help="who checked the version's files, and how")
@click.option("--model", "model", default=None, help="registered model name (default: tracking.registered_model)")
@click.option("--params", "params_file", default="params.yaml", show_default=True)
def seal(version: int, reason: str, model: str | None, params_file: str) -> None:
    from mlgate.services import promote as promotion

    def act() -> None:
        name = model or _model_and_ledger(None, params_file)[0]
        promotion.seal(name, version, reason)

    _registry_command("seal", act)


@main.command(help="Which version held each alias when: the promotion ledger, verified against the registry.")
@click.option("--alias", default=None, help="only this alias")
@click.option("--model", "model", default=None, help="registered model name (default: tracking.registered_model)")
@click.option("--params", "params_file", default="params.yaml", show_default=True)
def history(alias: str | None, model: str | None, params_file: str) -> None:
    from mlgate.services import promote as promotion

    def act() -> None:
        name, ledger = _model_and_ledger(model, params_file)
        moves, problems = promotion.history(name, ledger)
        shown = [m for m in moves if alias is None or m.get("alias") == alias]
        click.echo(f"{name}: {len(shown)} record(s) in {ledger}")
        for m in shown:  # printed from what the file says: a damaged record is shown, and reported below
            if m.get("action") == "erasure":
                touched = ", ".join(f"v{v.get('version')}" for v in m.get("versions", [])) or "no version"
                click.echo(
                    f"  {m.get('at', '?')}  erasure  {m.get('column', '?')} {str(m.get('subject', '?'))[:12]}: "
                    f"{touched}; source rows removed: {m.get('source_rows_removed')}, logged rows purged: "
                    f"{m.get('prediction_log_rows_purged')}  by {m.get('by', '?')}: "
                    f"{m.get('reason', '')} (commit {str(m.get('commit', '?'))[:10]})"
                )
                continue
            came_from = "none" if m.get("from_version") is None else f"v{m['from_version']}"
            click.echo(
                f"  {m.get('at', '?')}  {str(m.get('action', '?')):<8} {str(m.get('alias', '?')):<11} {came_from} → "
                f"v{m.get('to_version', '?')}  by {m.get('by', '?')}: {m.get('reason', '')} "
                f"(commit {str(m.get('commit', '?'))[:10]})"
            )
        for problem in problems:
            console.fail("history", problem)
        if problems:
            sys.exit(1)

    _registry_command("history", act)


def _mebibytes(context: click.Context, option: click.Parameter, megabytes: float) -> int:
    """The size flags are read in MiB; serving.ServeSettings holds bytes."""
    if not math.isfinite(megabytes):
        raise click.BadParameter("expected a finite number of MiB", context, option)
    return int(megabytes * 1024 * 1024)


@main.command(
    help="The right to erasure: which registered versions were trained or tested on a person's rows (by the "
    "contract's hashed id column), optionally those rows removed from a file source; recorded in the ledger."
)
@click.option("--id", "person", required=True, help="the id as it appears in the source (hashed, never written)")
@click.option("--column", default=None, help="the id column (default: the contract's only hashed id column)")
@click.option(
    "--remove-from-source",
    is_flag=True,
    help="rewrite the file source without that id's rows (the next `dvc repro` retrains without them)",
)
@click.option(
    "--retrain",
    is_flag=True,
    help="instead, open a branch erasure/<time> whose source lacks those rows, `dvc repro` run there, for review",
)
@click.option(
    "--prediction-log",
    "prediction_log",
    default=None,
    help="also purge that id's rows from this prediction log (`mlgate serve --prediction-log`: a directory or a URL)",
)
@click.option("--log-table", default=None, help="the prediction log's table, for a database URL")
@click.option("--reason", default="erasure request", show_default=True, help="recorded in the ledger")
@click.option("--model", "model", default=None, help="registered model name (default: tracking.registered_model)")
@click.option("--params", "params_file", default="params.yaml", show_default=True)
def forget(
    person: str,
    column: str | None,
    remove_from_source: bool,
    retrain: bool,
    prediction_log: str | None,
    log_table: str | None,
    reason: str,
    model: str | None,
    params_file: str,
) -> None:
    from mlgate import config, project
    from mlgate.errors import StageError
    from mlgate.services import erasure
    from mlgate.services import prediction_log as plog

    def act() -> None:
        if remove_from_source and retrain:
            raise StageError("--remove-from-source edits the source here, --retrain on a branch for review: choose one")
        name, ledger = _model_and_ledger(model, params_file)
        params = config.read_params(params_file)
        spec = project.data_spec(params)
        searched = erasure.id_column(spec, column)
        hashed = erasure.hashed(spec, person)
        in_source = erasure.source_rows(spec, searched, hashed)
        if (remove_from_source or retrain) and in_source.rows is None:
            raise StageError(f"--{'retrain' if retrain else 'remove-from-source'}: {in_source.advice}")
        found = erasure.search(name, searched, hashed)
        branch = erasure.open_retraining(params, spec, found, hashed) if retrain else None
        table = log_table or plog.DEFAULT_TABLE
        purged = None if prediction_log is None else plog.purge(prediction_log, searched, hashed, table)
        removing = in_source.rows if remove_from_source or retrain else None
        written = erasure.record(  # the request first, then the source
            name, ledger, found, removing, purged, reason, None if branch is None else branch["branch"]
        )
        if remove_from_source and removing:
            erasure.remove_from_source(spec, searched, hashed)
        click.echo(f"{name}: {searched} {found.subject[:12]} searched in {found.searched} version(s)")
        for touched in found.touched:
            held = f" ({', '.join(touched.aliases)})" if touched.aliases else ""
            click.echo(f"  v{touched.version}{held}: {' and '.join(touched.parts)} rows (run {touched.run_id[:8]})")
        if not found.touched:
            click.echo("  no version was trained or tested on this id's rows")
        if found.unrecorded:
            listed = ", ".join(f"v{v}" for v in found.unrecorded)
            click.echo(f"  unknown for {listed}: trained before mlgate logged the ids (treat them as touched)")
        if branch is not None:
            click.echo(
                f"  branch {branch['branch']}: {in_source.where} without its {removing} row(s), `dvc repro` run "
                f"there: gate {branch['gate']} (v{branch['candidate_version']}); {branch['next']}"
            )
        elif removing is not None:
            click.echo(
                f"  {in_source.where}: {removing} row(s) removed; `dvc repro` trains the next version without them"
            )
        elif in_source.rows is not None:
            click.echo(f"  {in_source.where}: {in_source.rows} row(s) hold this id; {in_source.advice}")
        else:
            click.echo(f"  {in_source.where}: {in_source.advice}")
        if purged is not None:
            click.echo(f"  {plog.describe(prediction_log, table)}: {purged} logged row(s) purged")
        click.echo(f"  recorded in {ledger} ({written['id'][:8]})")

    _registry_command("forget", act)


@main.command(help="Serve a registered model over HTTP (MLflow scoring API, /metrics), following an alias.")
@click.option("--model", "model", default=None, help="registered model name (default: tracking.registered_model)")
@click.option("--alias", default=CHAMPION_ALIAS, show_default=True, help="alias to serve and follow")
@click.option("--model-uri", default=None, help="serve this MLflow model URI instead (no registry following)")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--poll-s", default=10.0, show_default=True, type=float, help="how often to check the alias")
@click.option(
    "--load-retry-s",
    default=5.0,
    show_default=True,
    type=float,
    help="a version that failed to load is tried again after this, then at doubling intervals up to 5 min",
)
@click.option(
    "--max-body-mb",
    "max_body_bytes",
    default=5.0,
    show_default=True,
    type=float,
    callback=_mebibytes,
    help="larger bodies get 413",
)
@click.option("--unknown-columns", type=click.Choice(["ignore", "reject"]), default="ignore", show_default=True)
@click.option(
    "--max-extra-columns",
    default=64,
    show_default=True,
    type=int,
    help="unknown columns a request may carry beyond the model's; more get 422",
)
@click.option(
    "--header-timeout-s",
    default=10.0,
    show_default=True,
    type=float,
    help="close a connection that has not sent a request's headers within this",
)
@click.option(
    "--body-timeout-s",
    default=30.0,
    show_default=True,
    type=float,
    help="a body that has not fully arrived within this gets 408",
)
@click.option(
    "--max-connections",
    default=1024,
    show_default=True,
    type=int,
    help="open connections at most; beyond them uvicorn answers 503",
)
@click.option(
    "--max-inflight-mb",
    "max_inflight_bytes",
    default=32.0,
    callback=_mebibytes,
    show_default=True,
    type=float,
    help="request bodies being parsed and answered at once; requests beyond it wait their turn",
)
@click.option(
    "--prediction-log",
    "--log-dir",
    "log_dir",
    default=None,
    help="log sampled requests and predictions (for `mlgate monitor`): a directory for Parquet files, "
    "or a SQLAlchemy URL (sqlite:///predictions.db, postgresql+psycopg://user@host/db)",
)
@click.option(
    "--log-table",
    default="mlgate_predictions",
    show_default=True,
    help="with a database URL: the table ([schema.]name), created if absent",
)
@click.option("--log-sample-rate", default=1.0, show_default=True, type=float)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=int,
    help="server processes on the port, each loading and following the model; /metrics sums them",
)
@click.option(
    "--max-batch-rows",
    default=512,
    show_default=True,
    type=int,
    help="requests that wait while the model is busy are predicted in one call of up to this many rows "
    "(an idle model answers at once); 1 turns it off",
)
@click.option(
    "--batch-wait-ms",
    default=2.0,
    show_default=True,
    type=float,
    help="under concurrent load, how long each model call waits for more requests to share it; 0: never",
)
@click.option(
    "--shadow",
    default=None,
    metavar="ALIAS",
    help="the version holding this alias (e.g. staging) also scores every request, off the request path: "
    "its outputs go to the prediction log and its latency, errors and disagreements to /metrics",
)
@click.option(
    "--shadow-sample-rate",
    default=1.0,
    show_default=True,
    type=float,
    help="the share of requests the shadow scores",
)
@click.option("--params", "params_file", default="params.yaml", show_default=True)
def serve(host: str, port: int, params_file: str, **service: Any) -> None:
    """Every option but where to listen and params.yaml is a field of serving.ServeSettings, built once
    here and checked there."""
    from mlgate import config, project
    from mlgate.services import serving

    try:
        if service["model"] is not None and service["model_uri"] is not None:
            raise ValueError("give --model (with --alias) or --model-uri, not both")
        if service["model"] is None and service["model_uri"] is None:
            service["model"] = project.tracking(config.read_params(params_file)).registered_model
        settings = serving.ServeSettings(**service)
    except (ValueError, config.ConfigError) as error:
        console.fail("serve", str(error))
        sys.exit(1)
    click.echo(
        f"serving {settings.model_uri or f'models:/{settings.model}@{settings.alias}'} on http://{host}:{port} "
        f"(POST /invocations, GET /health /ready /version /metrics)"
        + (f" with {settings.workers} worker processes" if settings.workers > 1 else "")
        + (f"; shadow: models:/{settings.model}@{settings.shadow}" if settings.shadow else "")
    )
    serving.serve(settings, host, port)


@main.command(
    help="Join a tune stage's study (search.workers on a PostgreSQL paths.study) from this or any machine and "
    "run its trials until it holds search.n_trials; each trial is a child run of the study's parent run."
)
@click.option("--study", default=None, help="the study to join (the tune stage prints it); default: params.yaml's")
@click.option(
    "--storage",
    envvar="MLGATE_STUDY",
    default=None,
    help="the study database (postgresql+psycopg://...); default: $MLGATE_STUDY, else params.yaml's paths.study",
)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="cores a trial may use [all]")
@click.option("--wait", "wait_s", type=float, default=60.0, show_default=True, help="seconds to wait for the study")
@click.option("--params", "params_file", default="params.yaml", show_default=True)
def worker(study: str | None, storage: str | None, threads: int | None, wait_s: float, params_file: str) -> None:
    import signal

    from mlgate import config
    from mlgate.errors import StageError
    from mlgate.stages import tune

    # `kill`, systemd's stop, a pod's end, the tune stage once the study is full: unwind as Ctrl-C does,
    # so the runs of the trials this worker finished are written before it exits
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        params = config.read_params(params_file) if study is None or Path(params_file).exists() else {}
        tune.work(params, study=study, storage=storage, threads=threads, wait_s=wait_s)
    except (StageError, config.ConfigError, ValueError) as error:
        console.fail("worker", str(error))
        sys.exit(1)
    except KeyboardInterrupt:
        console.fail("worker", "stopped: its finished trials are recorded; a trial it was running is retried")
        sys.exit(STOPPED)


STOPPED = 128 + 15  # the exit code of a worker stopped by SIGTERM or Ctrl-C (the shell's for SIGTERM)


@main.command(help="MLflow's UI on this project's store, opened on the experiment's training runs.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--params", "params_file", default="params.yaml", show_default=True)
def ui(host: str, port: int, params_file: str) -> None:
    import os

    from mlgate import config, project
    from mlgate.adapters import tracking

    names = project.tracking(config.read_params(params_file))
    server = tracking.ui_base("")
    if server:  # a tracking server is its own UI
        link = tracking.experiment_link(server, names.experiment)
        console.say(
            "ui", f"open {link} (the tracking server's UI: runs of '{names.experiment}', trials nested under tune)"
        )
        return
    link = tracking.experiment_link(f"http://{host}:{port}", names.experiment)
    console.say("ui", f"open {link} (runs of '{names.experiment}', trials nested under tune)")
    os.execv(
        sys.executable,
        [
            sys.executable,
            "-m",
            "mlflow",
            "ui",
            "--backend-store-uri",
            tracking.tracking_uri(),
            "--host",
            host,
            "--port",
            str(port),
            "--workers",
            "1",
        ],
    )


@main.command(
    help="Compare logged live traffic with the served version's training data and test metric; "
    "open a retraining branch when the policy (params.yaml `monitor:`) is breached."
)
@click.option("--labels", default=None, help="ground truth: CSV/Parquet with request_id, row and the target")
@click.option("--window-hours", type=float, default=None, help="override monitor.window_hours")
@click.option(
    "--prediction-log", default=None, help="override monitor.prediction_log (a directory or a SQLAlchemy URL)"
)
@click.option("--retrain/--no-retrain", default=None, help="override monitor.retrain")
@click.option(
    "--textfile",
    envvar="MLGATE_TEXTFILE",
    default=None,
    help="also write the gauges here (node_exporter's textfile collector) [env MLGATE_TEXTFILE]",
)
@click.option(
    "--push-gateway",
    envvar="MLGATE_PUSHGATEWAY",
    default=None,
    help="push the gauges to this Prometheus Pushgateway URL (job mlgate_monitor) [env MLGATE_PUSHGATEWAY]",
)
@click.option("--params", "params_file", default="params.yaml", show_default=True)
def monitor(
    labels: str | None,
    window_hours: float | None,
    prediction_log: str | None,
    retrain: bool | None,
    textfile: str | None,
    push_gateway: str | None,
    params_file: str,
) -> None:
    import dataclasses

    from mlgate import config
    from mlgate.errors import StageError
    from mlgate.services import monitor as monitoring_run

    try:
        params = config.read_params(params_file)
        policy = config.load(monitoring_run.MonitorPolicy, "monitor", params)
        changes = {
            k: v
            for k, v in (("labels", labels), ("window_hours", window_hours), ("prediction_log", prediction_log))
            if v is not None
        }
        policy = dataclasses.replace(policy, **changes)
        summary = monitoring_run.run(
            params,
            policy,
            retrain=policy.retrain if retrain is None else retrain,
            textfile=textfile or None,  # an empty variable is no file
            push_gateway=push_gateway or None,
        )
    except (StageError, config.ConfigError) as error:
        console.fail("monitor", str(error))
        sys.exit(1)
    sys.exit(2 if summary["breaches"] else 0)


@dataclass(frozen=True)
class ModelChoice:
    """Which model a command loads: ``model_uri`` as given, or the version of ``model`` (default:
    params.yaml tracking.registered_model) under ``alias``."""

    model: str | None
    alias: str
    model_uri: str | None

    def uri(self, params_file: str) -> str:
        from mlgate import config, project
        from mlgate.adapters import tracking
        from mlgate.errors import StageError

        if self.model_uri is not None:
            return self.model_uri
        model = self.model or project.tracking(config.read_params(params_file)).registered_model
        held = tracking.version_by_alias(model, self.alias)
        if held is None:
            raise StageError(f"registered model '{model}' has no version with alias '{self.alias}'")
        return held.uri


@main.command(help="Batch-score a CSV or Parquet file with a registered model, chunk by chunk.")
@click.option("--input", "input_path", required=True, type=click.Path(path_type=Path), help=".csv, .csv.gz or .parquet")
@click.option(
    "--output", "output_path", required=True, type=click.Path(path_type=Path), help=".csv, .csv.gz or .parquet"
)
@click.option("--model", "model", default=None, help="registered model name (default: tracking.registered_model)")
@click.option("--alias", default=CHAMPION_ALIAS, show_default=True)
@click.option("--model-uri", default=None, help="score with this MLflow model URI instead")
@click.option("--keep-columns", default="", help="input columns to copy into the output, comma-separated (e.g. an id)")
@click.option("--chunk-rows", default=100_000, show_default=True, type=int)
@click.option(
    "--explain",
    "explain_top",
    default=0,
    type=click.IntRange(min=0),
    help="also write each row's K largest feature contributions (SHAP), its base value and their scale",
)
@click.option("--params", "params_file", default="params.yaml", show_default=True)
def score(
    input_path: Path,
    output_path: Path,
    keep_columns: str,
    chunk_rows: int,
    explain_top: int,
    params_file: str,
    **choice: Any,
) -> None:
    """--model, --alias and --model-uri are a ModelChoice, built once here."""
    from tqdm import tqdm

    from mlgate import config
    from mlgate.adapters import tracking
    from mlgate.errors import StageError
    from mlgate.modelling import explain
    from mlgate.modelling.personal import PersonalData
    from mlgate.services import scoring

    try:
        model_uri = ModelChoice(**choice).uri(params_file)
        loaded = tracking.load(model_uri)
        keep = tuple(c for c in keep_columns.split(",") if c)
        explained = None
        if explain_top:
            contributions = explain.explainer(loaded.pipeline, loaded.features)
            explained = functools.partial(contributions, k=explain_top)
        with tqdm(
            total=scoring.total_rows(input_path) if input_path.is_file() else None, unit="rows", disable=None
        ) as bar:
            rows = scoring.score(
                loaded.predict_unchecked,
                input_path,
                output_path,
                chunk_rows=chunk_rows,
                keep_columns=keep,
                progress=bar.update,
                finite_columns=tuple((loaded.features or {}).get("numeric", ())),
                personal=PersonalData.from_dict((loaded.features or {}).get("personal")),
                explain=explained,
            )
    except (StageError, config.ConfigError, ValueError) as error:
        console.fail("score", str(error))
        sys.exit(1)
    console.say("score", f"{console.number(rows)} rows scored with {model_uri} → {output_path}")


@main.command(help="Compose conf/ into params.yaml with Hydra, as `dvc exp run -S` does.")
@click.argument("overrides", nargs=-1)
@click.option("--conf", "conf_dir", default="conf", show_default=True)
@click.option("--out", "out", default="params.yaml", show_default=True)
def params(overrides: tuple[str, ...], conf_dir: str, out: str) -> None:
    from mlgate import config, files

    try:
        composed = config.compose(
            conf_dir, list(overrides), warn=lambda message: console.say("params", f"warning: {message}")
        )
    except config.ConfigError as error:
        console.fail("params", str(error))
        sys.exit(1)
    except Exception as error:  # Hydra's composition errors name the key and say how to fix it
        console.fail("params", f"{conf_dir}/: {type(error).__name__}: {error}")
        sys.exit(1)
    files.write_text(out, composed)
    click.echo(f"wrote {Path(out)} from {conf_dir}/" + (f" with {' '.join(overrides)}" if overrides else ""))


@main.command(
    "infer-schema",
    help="Infer conf/data/NAME.yaml (source, target, data contract) from the data, for you to review and commit.",
)
@click.argument("name")
@click.option(
    "--source",
    "source_path",
    default=None,
    help="CSV or Parquet file (.parquet/.pq); default: the source in conf/data/NAME.yaml",
)
@click.option("--target", default=None, help="target column (default: the one in conf/data/NAME.yaml)")
@click.option(
    "--task",
    type=click.Choice(["binary", "multiclass", "regression", "clustering"]),
    default=None,
    help="default: inferred from the target; clustering: no target, every column a feature",
)
@click.option("--positive-class", "given_positive_class", default=None, help="binary: default the minority class")
@click.option("--conf", "conf_dir", default="conf", show_default=True)
@click.option("--force", is_flag=True, help="replace a file that already has a contract")
def infer_schema(
    name: str,
    source_path: str | None,
    target: str | None,
    task: str | None,
    given_positive_class: str | None,
    conf_dir: str,
    force: bool,
) -> None:
    import yaml

    from mlgate import config, files
    from mlgate.adapters import sources
    from mlgate.errors import StageError
    from mlgate.modelling import schema
    from mlgate.modelling.source import SourceSpec

    out = Path(conf_dir) / "data" / f"{name}.yaml"
    try:
        if out.exists() and not out.is_file():
            raise ValueError(f"{out} is a directory, not a data declaration; move it or choose another NAME")
        existing = (yaml.safe_load(out.read_text()) or {}) if out.is_file() else {}
        if not isinstance(existing, dict):
            raise ValueError(f"{out}: expected a mapping at the top level")
        if existing.get("contract") and not force:
            raise ValueError(f"{out} already has a contract; pass --force to replace it")
        if source_path:
            suffix = Path(source_path).suffix.lower()
            source = {
                "kind": "file",
                "path": source_path,
                "format": "parquet" if suffix in (".parquet", ".pq") else "csv",
            }
        elif existing.get("source"):
            source = existing["source"]
        else:
            raise ValueError(f"--source is required (no source declared in {out})")
        if task == "clustering" or (task is None and not target and existing.get("task") == "clustering"):
            if target:
                raise ValueError("--target: a clustering task has no target; leave it out")
            task = "clustering"
        else:
            target = target or existing.get("target")
            if not target:
                raise ValueError(f"--target is required (no target declared in {out}), or --task clustering")
        if target == existing.get("target"):  # the declared task and positive class belong to the declared target
            task = task or existing.get("task")
            given_positive_class = given_positive_class or existing.get("positive_class")
        spec = config.build(SourceSpec, source, "data.source")
        frame = sources.read(spec, "--source" if source_path else "data.source")
        result = schema.draft(
            frame,
            name,
            source,
            target,
            task=task,
            given_positive_class=given_positive_class,
            origin=sources.location(spec),
        )
    except (StageError, ValueError, yaml.YAMLError) as error:
        console.fail("infer-schema", str(error))
        sys.exit(1)
    files.write_text(out, result.text)
    click.echo(f"wrote {out}: {result.summary}")
    for warning in result.warnings:
        click.echo(f"  warning: {warning}")
    click.echo(f"review it, then `make params ARGS=data={name}`")


if __name__ == "__main__":  # `python -m mlgate.cli`: how the tune stage starts its workers
    main()
