"""The project file (provision.toml or .yaml), its targets, `provision init`, where the state directory is.

Settings are loaded as the CLI loads them (`workspace.load_settings`), with an explicit environment and
working directory, so no test depends on the machine it runs on.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from provisioner.cli.app import app
from provisioner.errors import ConfigError
from provisioner.workspace import STARTER, init_project, load_settings, read_project_file

PROJECT = """\
dashboards = ["dashboards", "shared/models.yaml"]

[targets.dev]
metabase_url = "http://localhost:3000"

[targets.prod]
metabase_url = "https://metabase.example.com/"
database = "Warehouse"
api_key_env = "MB_PROD_KEY"
database_url_env = "DW_PROD_URL"

[targets.prod.vars]
TEAM = "Finance"
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """An analyst's repository with a project file; the working directory is a folder inside it."""
    root = tmp_path / "analytics"
    (root / "dashboards" / "finance").mkdir(parents=True)
    (root / "provision.toml").write_text(PROJECT)
    return root


def test_the_project_file_is_found_from_a_folder_below_and_holds_the_state_directory(repo: Path) -> None:
    settings = load_settings({}, repo / "dashboards" / "finance")
    assert settings.project_file == repo / "provision.toml"
    assert settings.home == repo / ".provision"
    # Its paths are relative to the file, shown relative to the working directory when below it.
    from_root = load_settings({}, repo)
    assert from_root.dashboards == (Path("dashboards"), Path("shared/models.yaml"))
    assert settings.dashboards == (repo / "dashboards", repo / "shared" / "models.yaml")


def test_a_target_gives_the_metabase_its_credentials_by_variable_name_and_the_yaml_values(repo: Path) -> None:
    environ = {"MB_PROD_KEY": "mb_key_123", "DW_PROD_URL": "postgresql://u:pw@dw:5432/prod"}
    settings = load_settings(environ, repo, target="prod")
    assert settings.target == "prod" and settings.runtime == "external"
    assert settings.metabase_url == "https://metabase.example.com"
    assert (
        settings.metabase_api_key is not None and settings.metabase_api_key.get_secret_value() == "mb_key_123"
    )
    assert settings.database_url is not None
    assert settings.variables == {"TEAM": "Finance", "PROVISION_DATABASE": "Warehouse"}
    # PROVISION_TARGET selects it too; a flag and the environment still win over the target.
    by_env = load_settings({**environ, "PROVISION_TARGET": "prod", "METABASE_URL": "http://mb.local"}, repo)
    assert by_env.target == "prod" and by_env.metabase_url == "http://mb.local"
    by_flag = load_settings(environ, repo, target="prod", metabase_url="http://other:3000")
    assert by_flag.metabase_url == "http://other:3000"


def test_a_variable_the_target_names_but_nobody_set_is_a_config_error(repo: Path) -> None:
    with pytest.raises(ConfigError, match="MB_PROD_KEY, which is not set") as caught:
        load_settings({}, repo, target="prod")
    assert "export MB_PROD_KEY" in (caught.value.hint or "")
    # validate needs no credentials: the same target loads for it.
    assert load_settings({}, repo, target="prod", target_credentials=False).metabase_api_key is None


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('[targets.prod]\nmetabase_url = "https://mb"\napi_key = "mb_secret"\n', "a secret never goes"),
        ('[targets.prod]\nmetabase_url = "https://mb"\ndatabase_url = "postgresql://u:pw@h/d"\n', "secret"),
        ('[targets.prod]\nmetabase_url = "https://mb"\nurl = "x"\n', "targets.prod.url"),
        ('dashboards = "dashboards"\n', "dashboards"),
        ("[targets.prod\n", "not valid TOML"),
    ],
    ids=["api-key", "database-url", "unknown-key", "paths-not-a-list", "toml-syntax"],
)
def test_a_bad_project_file_is_one_config_error_naming_the_file(
    tmp_path: Path, content: str, problem: str
) -> None:
    (tmp_path / "provision.toml").write_text(content)
    with pytest.raises(ConfigError, match=problem) as caught:
        load_settings({}, tmp_path)
    assert str(tmp_path / "provision.toml") in caught.value.message
    assert "mb_secret" not in caught.value.message and "pw@" not in caught.value.message


def test_an_unknown_target_or_a_target_without_a_project_file_says_what_exists(
    repo: Path, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="no target 'staging'") as caught:
        load_settings({}, repo, target="staging")
    assert caught.value.hint == "targets there: dev, prod"
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    with pytest.raises(ConfigError, match=r"no provision\.toml") as caught:
        load_settings({}, lonely, target="prod")
    assert "provision init" in (caught.value.hint or "")


def test_a_yaml_project_file_works_like_the_toml_one_and_both_in_one_folder_is_refused(
    tmp_path: Path,
) -> None:
    (tmp_path / "provision.yaml").write_text(
        "dashboards: [boards]\ntargets:\n  dev: {metabase_url: 'http://localhost:3000'}\n"
    )
    settings = load_settings({}, tmp_path, target="dev")
    assert settings.dashboards == (Path("boards"),) and settings.metabase_url == "http://localhost:3000"
    (tmp_path / "provision.toml").write_text("")
    with pytest.raises(ConfigError, match=r"both provision\.toml and provision\.yaml"):
        load_settings({}, tmp_path)


def test_the_demo_commands_never_run_on_a_target(repo: Path) -> None:
    settings = load_settings({"PROVISION_TARGET": "dev"}, repo, use_target=False)
    assert settings.target is None and settings.runtime == "auto"


def test_without_a_project_file_the_nearest_state_directory_above_is_used(tmp_path: Path) -> None:
    (tmp_path / ".provision").mkdir()
    below = tmp_path / "a" / "b"
    below.mkdir(parents=True)
    assert load_settings({}, below).home == tmp_path / ".provision"
    assert load_settings({}, below, stack_name="acme").home == below / ".provision-acme"
    assert load_settings({"PROVISION_HOME": str(below / "state")}, below).home == below / "state"


def test_init_writes_a_commented_starter_that_loads_and_never_overwrites(tmp_path: Path) -> None:
    path = init_project(tmp_path)
    assert path.read_text() == STARTER and STARTER.count("\n#") > 10
    project = read_project_file(path)
    assert set(project.targets) == {"dev", "prod"} and project.dashboards == [Path("dashboards")]
    assert "api_key_env" in tomllib.loads(STARTER)["targets"]["prod"]
    with pytest.raises(ConfigError, match="already exists"):
        init_project(tmp_path)
    path.write_text("# mine\n")
    init_project(tmp_path, force=True)
    assert path.read_text() == STARTER


def test_init_command_writes_here_and_prints_the_next_step(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["init"])
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "provision.toml").exists() and "--target dev" in result.stdout
    again = CliRunner().invoke(app, ["init", "--json"])
    assert again.exit_code == 3 and json.loads(again.stdout)["error"] == "config"


def test_plan_with_no_paths_and_nothing_found_says_where_it_looked(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["dashboards", "plan"])
    assert result.exit_code == 3
    assert "dashboards:0" not in result.stderr
    error = next(line for line in result.stderr.splitlines() if line.startswith("error: "))
    assert "no provision.toml" in error and f"no dashboards/ in {tmp_path}" in error and "no demo" in error
    assert "provision init" in result.stderr


def test_validate_uses_the_project_paths_and_the_target_variables(tmp_path: Path) -> None:
    (tmp_path / "provision.toml").write_text(
        'dashboards = ["boards"]\n[targets.dev]\nmetabase_url = "http://localhost:3000"\n'
        'database = "Warehouse (dev)"\n'
    )
    (tmp_path / "boards").mkdir()
    (tmp_path / "boards" / "one.yaml").write_text(
        "key: one\nname: One\ncollection: Team\ndatabase: ${PROVISION_DATABASE}\n"
        "cards:\n  - key: c1\n    name: C1\n    display: scalar\n    sql: SELECT 1 AS n\n"
    )
    unset = CliRunner().invoke(app, ["dashboards", "validate"])
    assert unset.exit_code == 3 and "PROVISION_DATABASE" in unset.stderr
    result = CliRunner().invoke(app, ["dashboards", "validate", "--target", "dev", "--json"])
    assert result.exit_code == 0, result.stderr
    assert [d["path"] for d in json.loads(result.stdout)["dashboards"]] == ["boards/one.yaml"]


def test_a_target_never_mixes_with_the_demo_this_folder_remembers(tmp_path: Path) -> None:
    from pydantic import SecretStr

    from provisioner.state import RememberedDemo, StateDir

    (tmp_path / "provision.toml").write_text('[targets.dev]\nmetabase_url = "http://dev.example.com"\n')
    demo = RememberedDemo(
        runtime="external", metabase_url="http://127.0.0.1:3999", dashboards=[tmp_path / "x"]
    )
    StateDir(tmp_path / ".provision").remember_demo(demo, SecretStr("postgresql://u:pw@127.0.0.1:5999/demo"))

    plain = load_settings({}, tmp_path)
    assert plain.runtime == "external" and plain.metabase_url == "http://127.0.0.1:3999"
    assert plain.database_url is not None and plain.dashboards == (tmp_path / "x",)
    targeted = load_settings({}, tmp_path, target="dev")
    assert targeted.metabase_url == "http://dev.example.com"
    assert targeted.database_url is None and targeted.dashboards == ()
