import re

import pytest
import yaml

from mlgate import config
from mlgate.config import ConfigError

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
