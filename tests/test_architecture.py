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


def test_every_cli_module_imports_on_its_own() -> None:
    import subprocess
    import sys

    modules = sorted(p.stem for p in (PACKAGE / "cli").glob("*.py") if p.stem != "__init__")
    code = "; ".join(f"import provisioner.cli.{m}" for m in modules)
    for module in modules:  # each first, in a fresh interpreter: no import cycle through cli.app
        first = f"import provisioner.cli.{module}; {code}"
        done = subprocess.run([sys.executable, "-c", first], capture_output=True, text=True)
        assert done.returncode == 0, f"{module}: {done.stderr[-400:]}"
