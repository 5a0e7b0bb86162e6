"""The benchmarks run in the venv `make run` installs: no test extras (pytest, hypothesis, filelock)."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import TINY_BUDGET

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = sorted((REPO / "benchmarks").glob("*.py"))
TEST_ONLY = {"tests", "pytest", "hypothesis", "filelock", "xdist"}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_benchmark_imports_nothing_from_the_test_extras(script):
    assert imported_roots(script) & TEST_ONLY == set()


def test_the_benchmarks_tiny_budget_is_the_tests():
    tree = ast.parse((REPO / "benchmarks/tiny_model.py").read_text())
    budget = next(
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "TINY_BUDGET"
    )

    assert budget == TINY_BUDGET


def test_the_benchmarks_copy_the_project_without_pytest(tmp_path):
    # sys.modules["pytest"] = None makes any `import pytest` fail, as in a venv without the test extras
    script = (
        "import sys; from pathlib import Path; sys.modules['pytest'] = None; sys.path.insert(0, sys.argv[1]); "
        "import tiny_model; tiny_model.copy_project(Path(sys.argv[2]), dict(__import__('os').environ))"
    )
    subprocess.run(
        [sys.executable, "-c", script, str(REPO / "benchmarks"), str(tmp_path)],
        check=True,
        capture_output=True,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"},
    )

    assert (tmp_path / "dvc.yaml").is_file() and not (tmp_path / "tests").exists()
    assert "n_trials: 5" in (tmp_path / "params.yaml").read_text()
