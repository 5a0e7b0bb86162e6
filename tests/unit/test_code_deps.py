"""mlgate.code_deps: the modules of ours a module runs, found with ast (no import), and their digest."""

import shutil

import pytest

from mlgate import code_deps


@pytest.fixture
def package(tmp_path):
    """A tiny `mlgate` package: a stage importing at the top, inside a function, relatively, and
    through `from package import module`; one module nobody imports."""
    root = tmp_path / "a" / "mlgate"
    files = {
        "__init__.py": "",
        "stages/__init__.py": "",
        "stages/train.py": (
            "import os\nfrom mlgate import files\nfrom mlgate.data import Spec\n"
            "from . import helper\n\ndef run():\n    from mlgate.stages import other\n"
        ),
        "stages/helper.py": "",
        "stages/other.py": "import mlgate.metrics\n",
        "files.py": "import pandas\n",
        "data.py": "class Spec: ...\n",
        "metrics.py": "",
        "unused.py": "from mlgate import metrics\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_closure_follows_lazy_relative_and_package_imports(package):
    assert code_deps.closure("mlgate.stages.train", package) == (
        "mlgate",
        "mlgate.data",
        "mlgate.files",
        "mlgate.metrics",
        "mlgate.stages",
        "mlgate.stages.helper",
        "mlgate.stages.other",
        "mlgate.stages.train",
    )


@pytest.mark.parametrize(
    "body",
    [
        "class Loader:\n    def load(self):\n        import mlgate.metrics\n",
        "try:\n    pass\nexcept ImportError:\n    from mlgate import metrics\n",
        "try:\n    pass\nfinally:\n    from mlgate import metrics\n",
        "for _ in ():\n    pass\nelse:\n    from mlgate import metrics\n",
        "with open(__file__):\n    if True:\n        while False:\n            from mlgate import metrics\n",
        "match 1:\n    case 1:\n        from mlgate import metrics\n",
        "async def run():\n    async with x:\n        from mlgate import metrics\n",
    ],
    ids=["method", "handler", "finally", "loop-else", "nested-blocks", "match-case", "async"],
)
def test_an_import_in_any_statement_block_is_found(package, body):
    (package / "uses.py").write_text(body)
    assert "mlgate.metrics" in code_deps.direct_imports("mlgate.uses", package)


def test_digest_changes_with_imported_code_only(package):
    before = code_deps.closure_digest("mlgate.stages.train", package)
    (package / "unused.py").write_text("changed = True\n")
    unrelated = code_deps.closure_digest("mlgate.stages.train", package)
    (package / "metrics.py").write_text("def roc_auc(): ...\n")

    assert unrelated == before
    assert code_deps.closure_digest("mlgate.stages.train", package) != before


def test_digest_does_not_depend_on_where_the_project_is(package, tmp_path):
    moved = tmp_path / "b" / "mlgate"
    shutil.copytree(package, moved)

    assert code_deps.closure_digest("mlgate.stages.train", moved) == code_deps.closure_digest(
        "mlgate.stages.train", package
    )


def test_a_module_that_is_not_ours_is_refused(package):
    with pytest.raises(ValueError, match="pandas: not a module of"):
        code_deps.direct_imports("pandas", package)


def test_the_tune_stage_closure_covers_how_its_score_is_computed():
    assert {
        "mlgate.modelling.metrics",
        "mlgate.modelling.data",
        "mlgate.modelling.compiled",
        "mlgate.adapters.optuna_study",
    } <= set(code_deps.closure("mlgate.stages.tune"))
