"""The layering rules of the house style, enforced."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "provisioner"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_cli_imports_typer() -> None:
    offenders = [
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if "cli" not in p.relative_to(PACKAGE).parts and "typer" in _imports(p)
    ]
    assert offenders == []


def test_nothing_imports_click() -> None:
    offenders = [str(p) for p in PACKAGE.rglob("*.py") if "click" in _imports(p)]
    assert offenders == []


def test_errors_module_imports_nothing_from_the_package() -> None:
    assert "provisioner" not in _imports(PACKAGE / "errors.py")
