"""The tool as a user installs it: a wheel built from the sources, installed into a fresh virtualenv
outside the checkout, running `provision demo --runtime external` from an empty folder against the fake
Metabase (a process) and the test PostgreSQL. Nothing of the checkout is importable there.

The fresh virtualenv gets the wheel alone (`--no-deps`); its dependencies come from this test run's own
environment through a path file, so the test costs seconds and no download. `pip check` then proves the
wheel's declared dependencies are all met there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.resources import SHIPPED
from tests.conftest import PgServer

REPO = Path(__file__).resolve().parent.parent
# What a build needs from a checkout: the package, its metadata, and the files it ships.
SOURCES = ("pyproject.toml", "README.md", "provisioner", *SHIPPED)

pytestmark = pytest.mark.slow


def _copy_sources(into: Path) -> Path:
    """The build's sources, copied as a fresh clone holds them (links kept, caches left out)."""
    into.mkdir()
    for name in SOURCES:
        source = REPO / name
        if source.is_dir() and not source.is_symlink():
            shutil.copytree(
                source, into / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
            )
        else:
            shutil.copy2(source, into / name, follow_symlinks=False)
    return into


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel installed; returns its bin directory."""
    work = tmp_path_factory.mktemp("install")
    sources = _copy_sources(work / "src")
    wheels = work / "wheels"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(sources), "--no-deps", "-w", str(wheels)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    # The build says nothing about the project's metadata (setuptools once warned three times, 15 lines each).
    assert "project.license" not in built.stdout + built.stderr
    assert "Deprecat" not in built.stdout + built.stderr
    (wheel,) = wheels.glob("metabase_provisioner-*.whl")
    venv = work / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    _run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--quiet", str(wheel)]
    )
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).strip())
    # After the venv's own site-packages: the wheel's `provisioner` comes first, the dependencies from here.
    (site / "zz_test_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(python), "check"])
    return venv / "bin"


@pytest.fixture
def fake_metabase_process(tmp_path: Path) -> Iterator[str]:
    """The fake Metabase as its own process, run from the checkout; yields its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_metabase", "--port", "0",
         "--state-file", str(tmp_path / "fake.json")],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert process.stdout is not None
    url = process.stdout.readline().rsplit(" ", 1)[-1].strip()
    try:
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def _run(args: list[str], **kwargs: object) -> str:
    done = subprocess.run(args, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    return str(done.stdout)


def _user_environment(bin_dir: Path) -> dict[str, str]:
    """A user's shell: the venv on PATH, no test settings, nothing pointing at the checkout."""
    from provisioner.config import ENV_VARS

    env = {key: value for key, value in os.environ.items() if key not in ENV_VARS and key != "PYTHONPATH"}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return env


def test_the_installed_package_reads_its_own_files_not_the_checkouts(installed: Path, tmp_path: Path) -> None:
    probe = (
        "import json, provisioner\n"
        "from provisioner.resources import SHIPPED, shipped_path\n"
        "print(json.dumps({'package': provisioner.__file__, "
        "'files': {name: str(shipped_path(name)) for name in SHIPPED}, "
        "'exists': all(shipped_path(name).exists() for name in SHIPPED)}))"
    )
    found = json.loads(
        _run([str(installed / "python"), "-c", probe], cwd=tmp_path, env=_user_environment(installed))
    )
    venv = installed.parent
    assert Path(found["package"]).is_relative_to(venv)
    assert found["exists"] and all(Path(path).is_relative_to(venv) for path in found["files"].values())
    version = _run(
        [str(installed / "provision"), "--version"], cwd=tmp_path, env=_user_environment(installed)
    )
    assert version.startswith("provision (metabase-provisioner) ")


def test_the_installed_wheel_runs_the_demo_from_an_empty_folder(
    installed: Path, fake_metabase_process: str, pg_server: PgServer, tmp_path: Path
) -> None:
    empty = tmp_path / "anywhere"
    empty.mkdir()
    env = _user_environment(installed)
    database = pg_server.create_database("wheel")
    demo = subprocess.run(
        [str(installed / "provision"), "demo", "--runtime", "external", "--metabase-url",
         fake_metabase_process, "--database-url", database, "--json"],
        cwd=empty, env=env, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stderr
    result = json.loads(demo.stdout)
    assert result["ok"] is True and result["exit_code"] == 0
    assert len(result["dashboards"]) == 5 and result["failed_cards"] == []
    assert (empty / ".provision" / "demo.json").exists()

    # The same folder, no flags: the demo remembered its runtime, Metabase and database.
    status = subprocess.run(
        [str(installed / "provision"), "status", "--json"],
        cwd=empty, env=env, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert status.returncode == 0, status.stdout + status.stderr
    assert json.loads(status.stdout)["dashboards"]["in_sync"] is True
