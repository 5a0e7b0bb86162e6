"""The Dockerfile cannot be built here (no Docker daemon); what can be checked without building it is."""

from __future__ import annotations

import json
import re
import shlex

from tests.helpers import REPO


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) per instruction, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", (REPO / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_everything_the_image_copies_is_in_the_repository():
    copied = [shlex.split(args)[:-1] for instruction, args in dockerfile() if instruction == "COPY"]
    assert copied
    for sources in copied:
        for source in sources:
            assert (REPO / source).exists(), f"Dockerfile copies {source}, which is not in the repository"


def test_the_image_installs_the_locked_versions_with_the_makefiles_pip():
    runs = " ".join(args for instruction, args in dockerfile() if instruction == "RUN")
    assert "-c requirements.lock" in runs
    assert re.search(r'pip install "pip==([\d.]+)"', runs).group(1) == re.search(
        r'pip install --quiet "pip==([\d.]+)"', (REPO / "Makefile").read_text()
    ).group(1)


def test_its_command_is_a_valid_mlgate_serve_on_all_interfaces(monkeypatch):
    from click.testing import CliRunner

    from mlgate.cli import main
    from mlgate.services import serving

    [(_, cmd)] = [(i, a) for i, a in dockerfile() if i == "CMD"]
    shell = json.loads(cmd)
    assert shell[:2] == ["sh", "-c"] and shell[2].startswith("exec mlgate serve ")
    env = dict(re.findall(r"(MLGATE_\w+)=(\S+)", " ".join(a for i, a in dockerfile() if i == "ENV")))
    args = shlex.split(re.sub(r"\$(\w+)", lambda m: env[m.group(1)], shell[2].removeprefix("exec mlgate ")))
    started = []
    monkeypatch.setattr(serving, "serve", lambda settings, host, port: started.append((settings, host, port)))
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    [(settings, host, port)] = started
    assert (settings.model, settings.alias, host, port) == ("telco_churn", "production", "0.0.0.0", 8080)
    exposed = [a for i, a in dockerfile() if i == "EXPOSE"]
    assert exposed == [str(port)]
