"""The package's layers, lowest first: a module imports only from its own layer or lower ones, and
no stage imports another stage. What each layer may hold is in its package docstring."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mlgate import code_deps

LAYERS = (
    (
        "mlgate",
        "mlgate.errors",
        "mlgate.config",
        "mlgate.console",
        "mlgate.files",
        "mlgate.code_deps",
        "mlgate.cores",
        "mlgate.registry",
        "mlgate.typed_json",
        "mlgate.records",
    ),
    ("mlgate.modelling",),
    ("mlgate.gating",),
    ("mlgate.adapters",),
    ("mlgate.project",),
    ("mlgate.reports",),
    ("mlgate.stages",),
    ("mlgate.services",),
    ("mlgate.cli",),
)


def _layer(module: str) -> int:
    matches = [
        (len(prefix), rank)
        for rank, prefixes in enumerate(LAYERS)
        for prefix in prefixes
        if module == prefix or (prefix != "mlgate" and module.startswith(prefix + "."))
    ]
    assert matches, f"{module} is in no layer: add it to LAYERS"
    return max(matches)[1]


def _modules() -> list[str]:
    root = code_deps.PACKAGE_DIR
    names = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


@pytest.mark.parametrize("module", _modules())
def test_a_module_imports_nothing_above_its_layer(module):
    upward = sorted(imported for imported in code_deps.direct_imports(module) if _layer(imported) > _layer(module))
    assert upward == [], f"{module} (layer {_layer(module)}) imports from higher layers: {upward}"


@pytest.mark.parametrize("module", [m for m in _modules() if m.startswith("mlgate.stages.")])
def test_no_stage_imports_another_stage(module):
    others = sorted(m for m in code_deps.direct_imports(module) if m.startswith("mlgate.stages.") and m != module)
    assert others == [], f"{module} imports other stages {others}: move what they share to a lower layer"


def test_importing_the_stages_and_services_pulls_in_neither_mlflow_nor_evidently():
    """MLflow (about a second) and Evidently (about three) load when a run first uses them, so pure
    code and the unit tier can import any stage for its plain helpers."""
    pure = ("mlgate.stages.", "mlgate.services.", "mlgate.adapters.tracking")
    modules = [m for m in _modules() if m.startswith(pure)]
    code = (
        f"import importlib, sys; [importlib.import_module(m) for m in {modules!r}]; "
        "print(sorted(m for m in ('mlflow', 'evidently') if m in sys.modules))"
    )

    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout

    assert loaded.strip() == "[]"
