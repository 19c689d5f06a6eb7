"""The layering rules of the house style, enforced: pyproject.toml's import-linter contracts, and no cycle."""

from __future__ import annotations

import ast
import copy
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grimp
import pytest
from importlinter.application.use_cases import read_user_options
from importlinter.configuration import configure
from importlinter.contracts.acyclic_siblings import AcyclicSiblingsContract
from importlinter.contracts.forbidden import ForbiddenContract
from importlinter.contracts.layers import LayersContract
from importlinter.contracts.protected import ProtectedContract
from importlinter.domain.contract import Contract

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "provisioner"
_CONTRACT_TYPES: dict[str, type[Contract]] = {
    "protected": ProtectedContract,
    "layers": LayersContract,
    "forbidden": ForbiddenContract,
    "acyclic_siblings": AcyclicSiblingsContract,
}
# Import cycles still present, each with the module pair that closes it (none: spec <-> layout went
# when layout moved into the spec package).
KNOWN_CYCLES: set[tuple[str, str]] = set()

configure()  # import-linter's option readers and graph builder, as its command line sets them up


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("provisioner", include_external_packages=True, cache_dir=None)


def _contracts() -> Iterator[tuple[str, Contract]]:
    options = read_user_options(str(ROOT / "pyproject.toml"))
    for contract_options in options.contracts_options:
        contract_type = _CONTRACT_TYPES[contract_options["type"]]
        contract = contract_type(
            name=contract_options["name"],
            session_options=options.session_options,
            contract_options=contract_options,
        )
        yield contract_options["name"], contract


def _broken(graph: grimp.ImportGraph) -> set[str]:
    """The names of the contracts `graph` breaks (each checked on its own copy, as lint-imports does)."""
    return {
        name
        for name, contract in _contracts()
        if not contract.check(copy.deepcopy(graph), verbose=False).kept
    }


def test_lint_imports_keeps_every_contract() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run(
        [str(lint_imports), "--no-cache", "--no-logo"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-2000:]
    assert "0 broken" in done.stdout


def test_the_package_keeps_every_contract(graph: grimp.ImportGraph) -> None:
    assert _broken(graph) == set()


ADAPTERS_BELOW_CORE = "The adapters and the base never import the core"
LAYERS = "The CLI over the adapters over the base"
CLI_ON_TOP = "The CLI sits on top: only the entry point imports it"
TYPER_IN_CLI = "Only the CLI imports typer"
NO_CYCLES = "No import cycles between the modules of a package"


@pytest.mark.parametrize(
    ("importer", "imported", "contracts"),
    [
        # demo imports seeding, which imports db.seed: this import also closes a cycle.
        pytest.param(
            "provisioner.db.seed",
            "provisioner.demo",
            {ADAPTERS_BELOW_CORE, NO_CYCLES},
            id="adapter-imports-the-core",
        ),
        pytest.param(
            "provisioner.metabase.client",
            "provisioner.future_core",  # a core module no contract names (not written yet)
            {ADAPTERS_BELOW_CORE},
            id="adapter-imports-a-new-core-module",
        ),
        pytest.param(
            "provisioner.state", "provisioner.spec", {ADAPTERS_BELOW_CORE}, id="base-imports-the-core"
        ),
        pytest.param(
            "provisioner.config",
            "provisioner.db.connection",
            {LAYERS},
            id="base-imports-an-adapter",
        ),
        pytest.param("provisioner.errors", "provisioner.redact", {LAYERS}, id="errors-imports-the-package"),
        # The CLI imports (through its commands) every layer: importing it from below closes a cycle.
        pytest.param(
            "provisioner.spec", "provisioner.cli.output", {CLI_ON_TOP, NO_CYCLES}, id="core-imports-the-cli"
        ),
        pytest.param(
            "provisioner.metabase.versions",
            "provisioner.cli.output",
            {CLI_ON_TOP, LAYERS, ADAPTERS_BELOW_CORE, NO_CYCLES},
            id="adapter-imports-the-cli",
        ),
        pytest.param("provisioner.doctor", "typer", {TYPER_IN_CLI}, id="core-imports-typer"),
        pytest.param(
            "provisioner.runtime.base",
            "provisioner.runtime.local",
            {NO_CYCLES},
            id="protocol-imports-a-runtime",
        ),
    ],
)
def test_a_forbidden_import_breaks_its_contract(
    graph: grimp.ImportGraph, importer: str, imported: str, contracts: set[str]
) -> None:
    planted = copy.deepcopy(graph)
    planted.add_import(importer=importer, imported=imported)
    assert _broken(planted) == contracts


def test_the_core_may_import_any_adapter_and_a_new_core_module_the_base(graph: grimp.ImportGraph) -> None:
    planted = copy.deepcopy(graph)
    planted.add_import(importer="provisioner.demo", imported="provisioner.runtime.compose")
    planted.add_import(importer="provisioner.future_core", imported="provisioner.metabase.models")
    planted.add_import(importer="provisioner.future_core", imported="provisioner.errors")
    assert _broken(planted) == set()


def _cycles(graph: grimp.ImportGraph) -> set[tuple[str, str]]:
    """Each direct import that closes a cycle, as a sorted module pair."""
    internal = {m for m in graph.modules if m.startswith("provisioner")}
    return {
        (min(module, imported), max(module, imported))
        for module in internal
        for imported in graph.find_modules_directly_imported_by(module) & internal
        if graph.chain_exists(importer=imported, imported=module)
    }


def test_no_import_cycle_inside_the_package(graph: grimp.ImportGraph) -> None:
    assert _cycles(graph) == KNOWN_CYCLES


def test_the_cycle_check_finds_a_cycle_through_other_modules(graph: grimp.ImportGraph) -> None:
    planted = copy.deepcopy(graph)
    # stack imports runtime.base, which imports config: config -> stack closes a cycle of three.
    planted.add_import(importer="provisioner.config", imported="provisioner.stack")
    assert ("provisioner.config", "provisioner.stack") in _cycles(planted)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_nothing_imports_click() -> None:
    # Not a contract: import-linter refuses a protected module that nothing imports.
    offenders = [str(p) for p in PACKAGE.rglob("*.py") if "click" in _imports(p)]
    assert offenders == []


def test_every_cli_module_imports_on_its_own() -> None:
    modules = sorted(p.stem for p in (PACKAGE / "cli").glob("*.py") if p.stem != "__init__")
    code = "; ".join(f"import provisioner.cli.{m}" for m in modules)
    for module in modules:  # each first, in a fresh interpreter: no import cycle through cli.app
        first = f"import provisioner.cli.{module}; {code}"
        done = subprocess.run([sys.executable, "-c", first], capture_output=True, text=True)
        assert done.returncode == 0, f"{module}: {done.stderr[-400:]}"
