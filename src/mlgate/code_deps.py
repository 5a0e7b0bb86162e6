"""Which of our own modules a module runs, directly or through others: the code an output depends on.

Found statically with `ast` over the package's source, imports inside functions included (the code
imports lazily, e.g. Evidently only where drift is computed), so nothing is imported to find it.
A package's `__init__.py` counts too: Python runs it before any module inside. `dvc.yaml`'s code
dependencies are checked against each stage's closure (tests/unit/test_dvc_yaml.py), and
`closure_digest` gives a hash of the code a result came from (e.g. for a study's identity).
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterator
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def module_file(module: str, package_dir: Path = PACKAGE_DIR) -> Path | None:
    """The source file of ``module`` (dotted, e.g. ``mlgate.stages.tune``), or None if it is not ours."""
    head, *rest = module.split(".")
    if head != package_dir.name:
        return None
    base = package_dir.joinpath(*rest)
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _packages_of(module: str) -> list[str]:
    """The packages Python imports before ``module``: mlgate.stages.tune → mlgate, mlgate.stages."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _absolute(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    parts = importer.split(".")
    base = parts if is_package else parts[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def direct_imports(module: str, package_dir: Path = PACKAGE_DIR) -> set[str]:
    """Our modules that ``module``'s source imports anywhere in its body (functions included)."""
    path = module_file(module, package_dir)
    if path is None:
        raise ValueError(f"{module}: not a module of {package_dir}")
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in _statements(tree.body):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, module, path.name == "__init__.py")
            # `from mlgate.stages import evaluate` imports a module; `from mlgate.modelling.data import DataSpec` a name
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if module_file(name, package_dir) is not None:
                found.add(name)
                found.update(p for p in _packages_of(name) if module_file(p, package_dir) is not None)
    return found


def _statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Every statement in ``body`` and in the statement blocks nested in it (functions, classes, branches,
    loops, handlers, cases). An import is a statement, so expressions, most of a tree's nodes, are
    skipped: a fraction of ``ast.walk``'s time, which a study's name pays before its search starts."""
    for node in body:
        yield node
        for block in ("body", "orelse", "finalbody"):
            yield from _statements(getattr(node, block, None) or [])
        for part in (*getattr(node, "handlers", ()), *getattr(node, "cases", ())):
            yield from _statements(part.body)


def closure(module: str, package_dir: Path = PACKAGE_DIR) -> tuple[str, ...]:
    """``module`` and every module of ours it imports, directly or not, with their packages; sorted."""
    seen: set[str] = set()
    pending = [module, *_packages_of(module)]
    while pending:
        current = pending.pop()
        if current in seen or module_file(current, package_dir) is None:
            continue
        seen.add(current)
        pending.extend(direct_imports(current, package_dir) - seen)
    return tuple(sorted(seen))


def closure_files(module: str, package_dir: Path = PACKAGE_DIR) -> list[Path]:
    """The source files of ``closure(module)``."""
    return [module_file(name, package_dir) for name in closure(module, package_dir)]


def closure_digest(module: str, package_dir: Path = PACKAGE_DIR) -> str:
    """sha256 over the names and bytes of ``module``'s closure: changes exactly when code it runs does
    (and not with where the project is checked out)."""
    digest = hashlib.sha256()
    for name in closure(module, package_dir):
        content = module_file(name, package_dir).read_bytes()
        digest.update(f"{name}\x1f{len(content)}\x1f".encode())
        digest.update(content)
    return digest.hexdigest()
