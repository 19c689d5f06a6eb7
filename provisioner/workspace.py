"""Where a run's settings come from besides its flags and environment: the project file and the demo.

Precedence, highest first: a flag; an environment variable; the project file's target chosen with
`--target` or PROVISION_TARGET; the demo the state directory remembers (without a target, and only for
the runtime it ran); the defaults. A flag or variable left empty counts as not given.

The project file, `provision.toml` (or `provision.yaml`), is found by walking up from the working
directory, as git and dbt find theirs; the state directory sits beside it. Without one, the nearest
`.provision` directory at or above the working directory is the state directory, else `./.provision`.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from provisioner.config import DEFAULT_STACK_NAME, ENV_VARS, Settings
from provisioner.errors import ConfigError
from provisioner.resources import demo_dashboards_dir
from provisioner.state import RememberedDemo, StateDir

PROJECT_FILES = ("provision.toml", "provision.yaml")
# The `${VAR}` a target's `database` fills in dashboard files.
DATABASE_VARIABLE = "PROVISION_DATABASE"
DEFAULT_DASHBOARDS = Path("dashboards")

EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
# A secret written into the project file, and the key that names its environment variable instead.
_SECRET_KEYS = {
    "api_key": "api_key_env",
    "metabase_api_key": "api_key_env",
    "password": "admin_password_env",
    "admin_password": "admin_password_env",
    "database_url": "database_url_env",
}


class Target(BaseModel):
    """One Metabase the dashboards go to; credentials are named by their environment variables."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metabase_url: str = Field(description="the Metabase's address")
    database: str | None = Field(
        default=None, description=f"its database the dashboards read: `${{{DATABASE_VARIABLE}}}` in them"
    )
    api_key_env: EnvName | None = None
    admin_email_env: EnvName | None = None
    admin_password_env: EnvName | None = None
    database_url_env: EnvName | None = None
    vars: dict[str, str] = Field(default_factory=dict, description="more `${VAR}` values")


class ProjectFile(BaseModel):
    """provision.toml: the dashboard paths (relative to the file) and the targets."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dashboards: list[Path] = Field(default_factory=list)
    targets: dict[str, Target] = Field(default_factory=dict)


def find_project_file(cwd: Path) -> Path | None:
    """The nearest provision.toml or provision.yaml at or above `cwd`; ConfigError if a folder has both."""
    for folder in (cwd, *cwd.parents):
        found = [folder / name for name in PROJECT_FILES if (folder / name).is_file()]
        if len(found) > 1:
            raise ConfigError(
                f"{folder} has both {PROJECT_FILES[0]} and {PROJECT_FILES[1]}",
                hint="keep one of them",
            )
        if found:
            return found[0]
    return None


def read_project_file(path: Path) -> ProjectFile:
    """The project file's content; ConfigError naming the file and the first problem (or a secret in it)."""
    try:
        text = path.read_text()
        raw = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except OSError as exc:
        raise ConfigError(f"{path} cannot be read: {exc.strerror}", hint="check its permissions") from exc
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(
            f"{path} is not valid {path.suffix[1:].upper()}: {str(exc).splitlines()[0]}",
            hint=f"compare it with the starter `provision init` writes ({PROJECT_FILES[0]})",
        ) from exc
    raw = {} if raw is None else raw
    for name, target in (raw.get("targets") or {}).items() if isinstance(raw, dict) else ():
        secret = next((key for key in _SECRET_KEYS if isinstance(target, dict) and key in target), None)
        if secret is not None:
            raise ConfigError(
                f"{path}: targets.{name}.{secret}: a secret never goes in the project file",
                hint=f'name the environment variable that holds it: {_SECRET_KEYS[secret]} = "VARIABLE"',
            )
    try:
        return ProjectFile.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the file"
        raise ConfigError(
            f"{path}: {where}: {first['msg']}",
            hint="see the commented starter `provision init` writes, or the README's project file section",
        ) from None


def state_home(cwd: Path, project_file: Path | None, stack_name: str = DEFAULT_STACK_NAME) -> Path:
    """The state directory: beside the project file, else the nearest one at or above `cwd`, else in it."""
    name = ".provision" if stack_name == DEFAULT_STACK_NAME else f".provision-{stack_name}"
    if project_file is not None:
        return project_file.parent / name
    found = next((folder / name for folder in (cwd, *cwd.parents) if (folder / name).is_dir()), None)
    return found or cwd / name


def load_settings(
    environ: Mapping[str, str],
    cwd: Path,
    *,
    use_target: bool = True,
    target_credentials: bool = True,
    **flags: Any,
) -> Settings:
    """Settings from the flags (None = not given), the environment, the project file and the remembered demo.

    `use_target` False: the demo's own commands, which never run on a target. `target_credentials` False:
    the target's credential variables are not read (validate needs none). Raises ConfigError (an invalid
    value, project file or target; a variable the target names is not set). A state directory that cannot
    be used is reported by the first step that writes to it (StateDir.ensure).
    """
    given = {key: value for key, value in flags.items() if value is not None}
    explicit = set(given) | {field for var, field in ENV_VARS.items() if environ.get(var)}
    project_file = find_project_file(cwd)
    project = read_project_file(project_file) if project_file is not None else None
    name = given.get("stack_name") or environ.get("PROVISION_NAME") or DEFAULT_STACK_NAME
    home_text = given.get("home") or environ.get("PROVISION_HOME")
    home = Path(home_text).expanduser().absolute() if home_text else state_home(cwd, project_file, name)
    fill: dict[str, Any] = {"home": home}
    target_name = (given.get("target") or environ.get("PROVISION_TARGET")) if use_target else None
    # The demo's record stands for one runtime on this machine: never for a target, nor another runtime.
    remembered = None if target_name else StateDir(home).remembered_demo()
    asked = given.get("runtime") or environ.get("PROVISION_RUNTIME") or "auto"
    if remembered is not None and asked not in ("auto", remembered.runtime):
        remembered = None
    if target_name:
        fill.update(_target_values(target_name, project_file, project, environ, target_credentials))
    elif remembered is not None:
        fill.update(_remembered_values(StateDir(home), remembered))
    if project is not None and project_file is not None:
        fill["project_file"] = project_file
        fill["dashboards"] = tuple(_shown(project_file.parent / path, cwd) for path in project.dashboards)
    if not fill.get("dashboards"):
        if (cwd / DEFAULT_DASHBOARDS).is_dir():
            fill["dashboards"] = (DEFAULT_DASHBOARDS,)
        elif remembered is not None:
            fill["dashboards"] = tuple(remembered.dashboards or [demo_dashboards_dir()])
    values = {**{key: value for key, value in fill.items() if key not in explicit}, **given}
    if not use_target:
        values.pop("target", None)
        environ = {var: value for var, value in environ.items() if var != "PROVISION_TARGET"}
    return Settings.load(environ, cwd=cwd, **values)


def no_dashboards_error(settings: Settings, cwd: Path) -> ConfigError:
    """The error for a dashboards command given no paths, saying where it looked and how to point it."""
    project = settings.project_file
    looked = [
        f"{project} names none" if project else f"no {PROJECT_FILES[0]} in {cwd} or above",
        f"no {DEFAULT_DASHBOARDS}/ in {cwd}",
        f"no demo in {settings.home}",
    ]
    return ConfigError(
        f"no dashboard files given, and none found: {'; '.join(looked)}",
        hint="give the files or folders (`provision dashboards plan path/to/dashboards`), or name them in "
        f"{PROJECT_FILES[0]} (`provision init` writes a starter)",
    )


def remember_demo(
    settings: Settings, *, runtime: str, metabase_url: str, dashboards: Sequence[Path] | None
) -> None:
    """Record how this demo runs, so later commands in its folder need no flags (StateDir.remember_demo)."""
    jar = settings.metabase_jar.absolute() if settings.metabase_jar is not None else None
    record = RememberedDemo.model_validate(
        {
            "runtime": runtime,
            "metabase_url": metabase_url,
            "metabase_jar": jar,
            "metabase_command": settings.metabase_command,
            "dashboards": [path.absolute() for path in dashboards] if dashboards is not None else None,
        }
    )
    StateDir(settings.home).remember_demo(record, settings.database_url)


STARTER = """\
# provision.toml: settings of this dashboards repository. `provision` finds it from this folder and
# every folder below (as git and dbt do) and keeps its local state in .provision/ beside it.
# Secrets never go here: a target names the environment variables that hold them.

# The dashboard files and folders, relative to this file: what validate, plan and apply read when
# given no paths.
dashboards = ["dashboards"]

# The Metabases the dashboards go to. Choose one with `--target NAME` or PROVISION_TARGET=NAME;
# without a target, flags, the environment and the demo in .provision/ decide, as before.
[targets.dev]
metabase_url = "http://localhost:3000"
# The Metabase database the dashboards read; a dashboard file says `database: ${PROVISION_DATABASE}`.
# database = "Warehouse (dev)"
# api_key_env = "METABASE_DEV_API_KEY"

[targets.prod]
metabase_url = "https://metabase.example.com"
# database = "Warehouse"
api_key_env = "METABASE_PROD_API_KEY"   # an API key in the Administrators group (Admin > Settings > API keys)
# admin_email_env = "METABASE_PROD_EMAIL"       # or log in as an admin, instead of a key
# admin_password_env = "METABASE_PROD_PASSWORD"
# database_url_env = "WAREHOUSE_PROD_URL"       # the warehouse, for `dashboards validate --target prod`
# [targets.prod.vars]                           # more ${VAR} values for the dashboard files
# TEAM = "Finance"
"""


def init_project(cwd: Path, *, force: bool = False) -> Path:
    """Write the commented starter provision.toml in `cwd` and return its path.

    Raises ConfigError when a project file is already there (unless `force`) or it cannot be written.
    """
    path = cwd / PROJECT_FILES[0]
    existing = [cwd / name for name in PROJECT_FILES if (cwd / name).exists()]
    if existing and not force:
        raise ConfigError(f"{existing[0]} already exists", hint="edit it, or pass --force to replace it")
    try:
        path.write_text(STARTER)
    except OSError as exc:
        raise ConfigError(
            f"{path} cannot be written: {exc.strerror}", hint="check the folder's permissions"
        ) from exc
    return path


def _target_values(
    name: str,
    project_file: Path | None,
    project: ProjectFile | None,
    environ: Mapping[str, str],
    credentials: bool,
) -> dict[str, Any]:
    if project is None or project_file is None:
        raise ConfigError(
            f"--target {name} (or PROVISION_TARGET): no {PROJECT_FILES[0]} in this folder or above it",
            hint="run `provision init` to write one with targets, or drop --target",
        )
    target = project.targets.get(name)
    if target is None:
        known = ", ".join(sorted(project.targets)) or "none"
        raise ConfigError(f"no target {name!r} in {project_file}", hint=f"targets there: {known}")
    values: dict[str, Any] = {"runtime": "external", "metabase_url": target.metabase_url, "target": name}
    variables = dict(target.vars)
    if target.database is not None:
        variables[DATABASE_VARIABLE] = target.database
    values["variables"] = variables
    named = {
        "metabase_api_key": target.api_key_env,
        "admin_email": target.admin_email_env,
        "admin_password": target.admin_password_env,
        "database_url": target.database_url_env,
    }
    for field, variable in named.items():
        if variable is None or (not credentials and field != "database_url"):
            continue
        value = environ.get(variable)
        if not value:
            if field == "database_url":
                continue  # only `validate --database-url` and seeding use it; they say when it is missing
            raise ConfigError(
                f"target {name!r} reads {field.replace('_', ' ')} from {variable}, which is not set",
                hint=f"export {variable}=... (in CI, from a secret), or choose another --target",
            )
        values[field] = SecretStr(value) if field != "admin_email" else value
    return values


def _remembered_values(state: StateDir, remembered: RememberedDemo) -> dict[str, Any]:
    values: dict[str, Any] = {
        "runtime": remembered.runtime,
        "metabase_url": remembered.metabase_url,
        "metabase_jar": remembered.metabase_jar,
        "metabase_command": remembered.metabase_command,
    }
    try:
        database = state.credentials().demo_database
    except ConfigError:
        database = None  # a damaged credentials file is reported by the step that needs it
    if database is not None:
        values["database_url"] = database.url
    return {key: value for key, value in values.items() if value is not None}


def _shown(path: Path, cwd: Path) -> Path:
    """`path` relative to `cwd` when it lies below it (as messages show it), else absolute."""
    try:
        return path.relative_to(cwd)
    except ValueError:
        return Path(os.path.normpath(path))
