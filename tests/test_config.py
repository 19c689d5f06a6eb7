"""Settings: environment then flags, and errors that name what the user typed."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.config import Settings
from provisioner.errors import ConfigError
from tests.credentials import stored_section


def test_flags_override_the_environment(tmp_path: Path) -> None:
    env = {"METABASE_URL": "http://env:3000", "PROVISION_HOME": str(tmp_path / "h")}
    settings = Settings.load(env, cwd=tmp_path, metabase_url="http://flag:3000/", database_url=None)
    assert settings.metabase_url == "http://flag:3000"
    assert settings.home == tmp_path / "h"


def test_home_defaults_to_dot_provision_in_the_working_directory(tmp_path: Path) -> None:
    assert Settings.load({}, cwd=tmp_path).home == tmp_path / ".provision"


def test_each_named_demo_keeps_its_own_state(tmp_path: Path) -> None:
    assert Settings.load({}, cwd=tmp_path, stack_name="acme").home == tmp_path / ".provision-acme"
    assert Settings.load({"PROVISION_NAME": "acme"}, cwd=tmp_path).home == tmp_path / ".provision-acme"
    given = tmp_path / "elsewhere"
    assert Settings.load({"PROVISION_HOME": str(given)}, cwd=tmp_path, stack_name="acme").home == given


@pytest.mark.parametrize(
    ("overrides", "env", "named"),
    [
        ({"stack_name": "Bad Name"}, {}, "--name (or PROVISION_NAME)"),
        ({"metabase_url": "localhost:3000"}, {}, "--metabase-url (or METABASE_URL)"),
        ({}, {"DATABASE_URL": "mysql://u:secret-pw@h/d"}, "--database-url (or DATABASE_URL)"),
        ({}, {"METABASE_URL": "http://admin:secret-pw@mb:3000"}, "--metabase-url (or METABASE_URL)"),
    ],
)
def test_an_invalid_value_names_its_flag_and_never_echoes_it(overrides, env, named, tmp_path) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.load(env, cwd=tmp_path, **overrides)
    assert caught.value.message.startswith(named)
    assert "secret-pw" not in caught.value.message + (caught.value.hint or "")


def test_a_damaged_credentials_file_is_a_config_error_not_a_traceback(tmp_path: Path) -> None:
    from provisioner.state import StateDir

    state = StateDir(tmp_path)
    state.ensure()
    state.credentials_file.write_text('{"admin": {"password": "tru')
    with pytest.raises(ConfigError, match="is damaged") as caught:
        stored_section(state.root, "admin")
    assert "tru" not in caught.value.message
