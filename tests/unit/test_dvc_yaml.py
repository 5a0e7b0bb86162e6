import re
import subprocess

import pytest
import yaml

from mlgate import code_deps, config
from mlgate.config import ConfigError
from tests.helpers import loaded_by_importing

INTERPOLATION = re.compile(r"\$\{([^}]+)\}")


@pytest.fixture(scope="module")
def dvc_text(project_root) -> str:
    return (project_root / "dvc.yaml").read_text()


@pytest.fixture(scope="module")
def committed_params(project_root) -> dict:
    return config.read_params(project_root / "params.yaml")


def _absent(params: dict, dotted_keys: list[str]) -> list[str]:
    absent = []
    for dotted in dotted_keys:
        try:
            config.section(params, dotted)
        except ConfigError:
            absent.append(dotted)
    return absent


def test_every_interpolation_names_a_param(dvc_text, committed_params):
    interpolated = sorted(set(INTERPOLATION.findall(dvc_text)))

    assert "paths.raw" in interpolated
    assert _absent(committed_params, interpolated) == []


def test_every_stage_param_exists(dvc_text, committed_params):
    stages = yaml.safe_load(dvc_text)["stages"]
    declared = [name for stage in stages.values() for name in stage.get("params", [])]

    assert all(isinstance(name, str) for name in declared)
    assert "data.metric" in declared
    assert _absent(committed_params, declared) == []


def test_each_stage_runs_the_subcommand_of_its_name(dvc_text):
    stages = yaml.safe_load(dvc_text)["stages"]

    assert {name: stage["cmd"] for name, stage in stages.items()} == {name: f"mlgate {name}" for name in stages}


def _stages(dvc_text: str) -> dict:
    return yaml.safe_load(dvc_text)["stages"]


def _code_deps(stage: dict) -> set[str]:
    return {dep for dep in stage.get("deps", []) if dep.startswith("src/")}


def test_each_stage_lists_every_module_of_ours_it_imports(dvc_text, project_root):
    # a stage that always runs (fingerprint) needs no code dependencies to rerun
    missing = {}
    for name, stage in _stages(dvc_text).items():
        if stage.get("always_changed"):
            continue
        imported = {
            f"src/{path.relative_to(project_root / 'src').as_posix()}"
            for path in code_deps.closure_files(f"mlgate.stages.{name}")
        }
        if imported - _code_deps(stage):
            missing[name] = sorted(imported - _code_deps(stage))

    assert missing == {}, "add these to dvc.yaml's deps:\n" + "\n".join(
        f"  {name}:\n" + "\n".join(f"      - {path}" for path in paths) for name, paths in missing.items()
    )


def test_every_code_dependency_is_a_file(dvc_text, project_root):
    listed = {dep for stage in _stages(dvc_text).values() for dep in _code_deps(stage)}

    assert "src/mlgate/modelling/metrics.py" in listed
    assert sorted(dep for dep in listed if not (project_root / dep).is_file()) == []


def test_the_model_is_a_dvc_artifact_of_type_model(project_root):
    from dvc.repo import Repo

    with Repo(str(project_root)) as repo:
        artifacts = repo.artifacts.read()["dvc.yaml"]

    assert artifacts["model"].type == "model"
    assert artifacts["model"].path == config.read_params(project_root / "params.yaml")["paths"]["model"]


def test_metrics_and_plots_are_committed_not_ignored(dvc_text, committed_params, project_root):
    # `dvc metrics diff main` and `dvc plots diff main` read these files from git
    resolved = yaml.safe_load(INTERPOLATION.sub(lambda m: str(config.section(committed_params, m.group(1))), dvc_text))
    metrics = [next(iter(entry)) for stage in resolved["stages"].values() for entry in stage.get("metrics", [])]
    plotted = [next(iter(entry)) for entry in resolved["plots"]]
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", *metrics, *plotted], cwd=project_root, capture_output=True, text=True
    ).stdout.split()

    assert metrics == ["metrics/test.json"] and "plots/roc.csv" in plotted
    assert ignored == []


def test_train_depends_on_the_model_code_it_copies_into_each_model(dvc_text):
    # the pyfunc model's code is copied into the model, not imported, so no import closure finds it
    assert "src/mlgate/adapters/pyfunc_model.py" in _code_deps(_stages(dvc_text)["train"])


def test_the_stage_every_dvc_repro_runs_loads_neither_pandas_nor_pyarrow():
    """`mlgate fingerprint` runs on each `dvc repro`, a no-op one too: pandas alone cost it 0.8 of its 0.9 s."""
    heavy = ("pandas", "pyarrow", "numpy", "mlflow")

    assert loaded_by_importing(["mlgate.cli", "mlgate.stages.fingerprint"], heavy) == []
