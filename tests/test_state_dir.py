"""The local state directory: private, and ignored by git wherever it is created."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from provisioner.cli.app import app
from provisioner.config import Settings
from provisioner.demo import run_demo
from provisioner.errors import EnvironmentProblem
from provisioner.id_cache import IdCache
from provisioner.runtime.external import ExternalRuntime
from provisioner.state import StateDir


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout


def test_state_written_in_a_dashboards_repository_never_shows_up_in_git(tmp_path: Path) -> None:
    repo = tmp_path / "analytics"
    repo.mkdir()
    _git(repo, "init", "--quiet")
    (repo / "sales.yaml").write_text("key: sales\n")
    state = StateDir(repo / ".provision")

    state.save_credential("api_key", {"key": "mb_secret", "metabase_url": "http://mb"})
    IdCache.of(state.root).remember("http://mb", {"sales": 7}, set())

    assert _git(repo, "status", "--porcelain", "--untracked-files=all").splitlines() == ["?? sales.yaml"]
    assert stat.S_IMODE(state.root.stat().st_mode) == 0o700
    assert stat.S_IMODE(state.credentials_file.stat().st_mode) == 0o600


def test_an_existing_gitignore_in_the_state_directory_is_left_as_it_is(tmp_path: Path) -> None:
    state = StateDir(tmp_path / ".provision")
    state.root.mkdir()
    (state.root / ".gitignore").write_text("credentials.json\n")
    state.ensure()
    assert (state.root / ".gitignore").read_text() == "credentials.json\n"


def test_a_second_command_on_the_same_demo_is_refused_naming_the_first(tmp_path: Path) -> None:
    state = StateDir(tmp_path / ".provision")
    with state.exclusive("demo"):
        with pytest.raises(EnvironmentProblem) as caught, state.exclusive("down"):
            pass
        assert f"`provision demo` (pid {os.getpid()}) is already running" in caught.value.message
        assert caught.value.exit_code == 6
    with state.exclusive("down"):  # released: the next command runs
        pass


def test_demo_and_down_take_the_lock_before_touching_anything(tmp_path: Path, monkeypatch) -> None:
    home = tmp_path / ".provision"
    # Nothing answers at these addresses: had the demo gone past the lock, it would fail differently.
    settings = Settings.load(
        {}, home=home, metabase_url="http://127.0.0.1:9", database_url="postgresql://u:p@127.0.0.1:9/x"
    )
    with StateDir(home).exclusive("up"):
        with pytest.raises(EnvironmentProblem, match="`provision up`"):
            run_demo(settings, runtime=ExternalRuntime(settings))
        monkeypatch.setenv("PROVISION_HOME", str(home))
        result = CliRunner().invoke(app, ["down", "--runtime", "external"])
    assert result.exit_code == 6
    assert "`provision up`" in result.stderr and "already running" in result.stderr
