"""The local state directory: private, and ignored by git wherever it is created."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError
from typer.testing import CliRunner

from provisioner.cli.app import app
from provisioner.config import Settings
from provisioner.demo import run_demo
from provisioner.errors import ConfigError, EnvironmentProblem
from provisioner.id_cache import IdCache
from provisioner.runtime.external import ExternalRuntime
from provisioner.state import LocalMetabaseSecrets, PostgresLogin, ReaderLogin, StateDir
from tests.credentials import store_credentials


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout


def test_state_written_in_a_dashboards_repository_never_shows_up_in_git(tmp_path: Path) -> None:
    repo = tmp_path / "analytics"
    repo.mkdir()
    _git(repo, "init", "--quiet")
    (repo / "sales.yaml").write_text("key: sales\n")
    state = StateDir(repo / ".provision")

    store_credentials(
        state.root, api_key={"key": "mb_secret", "metabase_url": "http://mb", "id": 1, "name": "k"}
    )
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


# -- credentials.json: the typed model ------------------------------------------------------------


def test_credentials_round_trip_in_a_private_file_with_the_secrets_in_clear(tmp_path: Path) -> None:
    state = StateDir(tmp_path / ".provision")
    with state.edit_credentials() as credentials:
        credentials.reader = ReaderLogin(user="metabase_reader", password=SecretStr("r-pw"), port=5432)
    assert stat.S_IMODE(state.credentials_file.stat().st_mode) == 0o600
    assert json.loads(state.credentials_file.read_text()) == {
        "reader": {"user": "metabase_reader", "password": "r-pw", "port": 5432}
    }
    reader = state.credentials().reader
    assert reader is not None and reader.password.get_secret_value() == "r-pw"
    assert "r-pw" not in repr(state.credentials())


def test_a_section_stored_meanwhile_is_kept_when_another_is_edited(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    store_credentials(tmp_path, postgres={"user": "postgres", "password": "pg-pw"})
    with state.edit_credentials() as credentials:
        credentials.metabase_local = LocalMetabaseSecrets(encryption_secret_key=SecretStr("k" * 16))
    assert set(json.loads(state.credentials_file.read_text())) == {"postgres", "metabase_local"}


def test_an_edit_that_changes_nothing_or_fails_writes_nothing(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    with state.edit_credentials():
        pass
    assert not state.credentials_file.exists()
    with pytest.raises(RuntimeError), state.edit_credentials() as credentials:
        credentials.postgres = PostgresLogin(user="postgres", password=SecretStr("pg-pw"))
        raise RuntimeError("the step failed")
    assert not state.credentials_file.exists()


def test_an_assignment_of_the_wrong_shape_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    with pytest.raises(ValidationError), state.edit_credentials() as credentials:
        credentials.reader = {"user": "metabase_reader"}  # type: ignore[assignment]
    assert not state.credentials_file.exists()


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        pytest.param('{"admin": {"password": "Secret-tru', "not JSON", id="truncated"),
        pytest.param("", "not JSON", id="empty"),
        pytest.param('["Secret-1"]', "the file", id="a-list-not-an-object"),
        pytest.param('{"admn": {"password": "Secret-1"}}', "admn", id="unknown-section"),
        pytest.param('{"reader": {"password": "Secret-1"}}', "reader.user", id="section-missing-a-field"),
        pytest.param(
            '{"reader": {"user": "r", "password": "Secret-1", "port": "Secret-2"}}',
            "reader.port",
            id="field-of-the-wrong-type",
        ),
        pytest.param('{"postgres": "Secret-1"}', "postgres", id="section-not-an-object"),
    ],
)
def test_a_damaged_credentials_file_is_one_clear_error_that_quotes_nothing_from_it(
    tmp_path: Path, content: str, problem: str
) -> None:
    state = StateDir(tmp_path)
    state.ensure()
    state.credentials_file.write_text(content)
    with pytest.raises(ConfigError) as caught:
        state.credentials()
    message = caught.value.message
    assert message.startswith(f"{state.credentials_file} is damaged") and problem in message
    assert "Secret" not in message and "\n" not in message
    assert caught.value.hint and caught.value.exit_code == 3
    with pytest.raises(ConfigError), state.edit_credentials():
        pass
    assert state.credentials_file.read_text() == content  # never overwritten
