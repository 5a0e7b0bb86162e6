"""The `mlgate` command: one subcommand per pipeline stage (what dvc.yaml runs), plus promote."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import click

from mlgate import console

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
    from mlgate.project import StageError

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


@main.command(help="Move an alias (default: production) to a registered version that passed the gate.")
@click.option("--version", "version", type=int, required=True, help="registered model version")
@click.option("--alias", default="production", show_default=True)
@click.option("--model", "model", default=None, help="registered model name (default: tracking.registered_model)")
@click.option("--reason", default="promoted after review", show_default=True)
@click.option("--params", "params_file", default="params.yaml", show_default=True)
def promote(version: int, alias: str, model: str | None, reason: str, params_file: str) -> None:
    from mlgate import config, project
    from mlgate import promote as promotion
    from mlgate.project import StageError

    try:
        name = model or project.tracking(config.read_params(params_file)).registered_model
        promotion.promote(name, version, alias, reason)
    except (StageError, config.ConfigError) as error:
        console.fail("promote", str(error))
        sys.exit(1)


@main.command(help="Compose conf/ into params.yaml with Hydra, as `dvc exp run -S` does.")
@click.argument("overrides", nargs=-1)
@click.option("--conf", "conf_dir", default="conf", show_default=True)
@click.option("--out", "out", default="params.yaml", show_default=True)
def params(overrides: tuple[str, ...], conf_dir: str, out: str) -> None:
    from mlgate import config, files

    try:
        composed = config.compose(conf_dir, list(overrides))
    except Exception as error:  # Hydra's composition errors name the key and say how to fix it
        console.fail("params", f"{conf_dir}/: {type(error).__name__}: {error}")
        sys.exit(1)
    files.write_text(out, composed)
    click.echo(f"wrote {Path(out)} from {conf_dir}/" + (f" with {' '.join(overrides)}" if overrides else ""))


@main.command("infer-schema", help="Infer conf/data/NAME.yaml (source, target, data contract) from the data, "
                                   "for you to review and commit.")
@click.argument("name")
@click.option("--source", "source_path", default=None,
              help="CSV or Parquet file (.parquet/.pq); default: the source in conf/data/NAME.yaml")
@click.option("--target", default=None, help="target column (default: the one in conf/data/NAME.yaml)")
@click.option("--task", type=click.Choice(["binary", "regression"]), default=None, help="default: inferred from the target")
@click.option("--positive-class", "given_positive_class", default=None, help="binary: default the minority class")
@click.option("--conf", "conf_dir", default="conf", show_default=True)
@click.option("--force", is_flag=True, help="replace a file that already has a contract")
def infer_schema(name: str, source_path: str | None, target: str | None, task: str | None,
                 given_positive_class: str | None, conf_dir: str, force: bool) -> None:
    import yaml

    from mlgate import config, files, schema, sources
    from mlgate.data import SourceSpec
    from mlgate.project import StageError

    out = Path(conf_dir) / "data" / f"{name}.yaml"
    try:
        existing = (yaml.safe_load(out.read_text()) or {}) if out.is_file() else {}
        if not isinstance(existing, dict):
            raise ValueError(f"{out}: expected a mapping at the top level")
        if existing.get("contract") and not force:
            raise ValueError(f"{out} already has a contract; pass --force to replace it")
        if source_path:
            suffix = Path(source_path).suffix.lower()
            source = {"kind": "file", "path": source_path, "format": "parquet" if suffix in (".parquet", ".pq") else "csv"}
        elif existing.get("source"):
            source = existing["source"]
        else:
            raise ValueError(f"--source is required (no source declared in {out})")
        target = target or existing.get("target")
        if not target:
            raise ValueError(f"--target is required (no target declared in {out})")
        if target == existing.get("target"):   # the declared task and positive class belong to the declared target
            task = task or existing.get("task")
            given_positive_class = given_positive_class or existing.get("positive_class")
        spec = config.build(SourceSpec, source, "data.source")
        frame = sources.read(spec, "--source" if source_path else "data.source")
        result = schema.draft(frame, name, source, target, task=task, given_positive_class=given_positive_class,
                              origin=sources.location(spec))
    except (StageError, ValueError, yaml.YAMLError) as error:
        console.fail("infer-schema", str(error))
        sys.exit(1)
    files.write_text(out, result.text)
    click.echo(f"wrote {out}: {result.summary}")
    for warning in result.warnings:
        click.echo(f"  warning: {warning}")
    click.echo(f"review it, then `make params ARGS=data={name}`")
