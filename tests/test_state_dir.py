"""The local state directory: private, and ignored by git wherever it is created."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

from provisioner.id_cache import IdCache
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
