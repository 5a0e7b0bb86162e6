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

    files.write_text(out, config.compose(conf_dir, list(overrides)))
    click.echo(f"wrote {Path(out)} from {conf_dir}/" + (f" with {' '.join(overrides)}" if overrides else ""))
