"""Settings: every knob the tool reads from flags or the environment, validated once.

Built explicitly per run (`Settings.load`), never a module global: tests pass their own
environment mapping.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from provisioner.errors import ConfigError

DEFAULT_METABASE_URL = "http://localhost:3000"
DEFAULT_STACK_NAME = "metabase-demo"
DEFAULT_CONCURRENCY = 8  # requests to Metabase in flight at once (observe.py, apply.py)

# Environment variable → Settings field.
ENV_VARS: dict[str, str] = {
    "METABASE_URL": "metabase_url",
    "DATABASE_URL": "database_url",
    "DATABASE_READER_URL": "reader_database_url",
    "METABASE_DATABASE_URL": "metabase_database_url",
    "METABASE_API_KEY": "metabase_api_key",
    "METABASE_ADMIN_EMAIL": "admin_email",
    "METABASE_ADMIN_PASSWORD": "admin_password",
    "METABASE_JAR": "metabase_jar",
    "PROVISION_HOME": "home",
    "METABASE_COMMAND": "metabase_command",
    "PROVISION_RUNTIME": "runtime",
    "PROVISION_NAME": "stack_name",
    "PROVISION_TARGET": "target",
    "PROVISION_CONCURRENCY": "concurrency",
}

# Settings field → its command-line flag, where it differs from `--field-name`; None: environment only.
_FLAGS: dict[str, str | None] = {
    "stack_name": "--name",
    "home": None,
    "metabase_api_key": None,
    "admin_email": None,
    "admin_password": None,
    "dashboards": None,
    "variables": None,
    "project_file": None,
}


class Settings(BaseModel):
    """What one run of the tool is pointed at; secrets stay `SecretStr` end to end."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    home: Path = Field(description="local state: embedded database, credentials, logs")
    metabase_url: str = DEFAULT_METABASE_URL
    database_url: SecretStr | None = None
    reader_database_url: SecretStr | None = None
    metabase_database_url: SecretStr | None = None
    metabase_api_key: SecretStr | None = None
    admin_email: str | None = None
    admin_password: SecretStr | None = None
    metabase_jar: Path | None = None
    http_timeout_s: float = 30.0
    health_timeout_s: float = 600.0
    sync_timeout_s: float = 300.0
    # Runtimes: how the demo's Metabase and warehouse are run (see provisioner.runtime).
    runtime: Literal["auto", "docker", "local", "external"] = "auto"
    stack_name: str = Field(default=DEFAULT_STACK_NAME, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    metabase_command: str | None = Field(
        default=None, description="starts Metabase instead of `java -jar`; placeholders {port}, {state_dir}"
    )
    stop_timeout_s: float = 30.0
    # Where they came from beyond flags and environment (provisioner.workspace): the project file's
    # target, or the demo this state directory remembers.
    target: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    project_file: Path | None = None
    dashboards: tuple[Path, ...] = Field(default=(), description="dashboard paths when none are given")
    variables: dict[str, str] = Field(default_factory=dict, description="`${VAR}` values of the target")
    concurrency: int = Field(default=DEFAULT_CONCURRENCY, ge=1, le=64)

    @field_validator("metabase_url")
    @classmethod
    def _url_has_scheme(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://, e.g. http://localhost:3000")
        if "@" in value.split("://", 1)[1].split("/", 1)[0]:
            # It would be printed in progress and errors; credentials have their own settings.
            raise ValueError(
                "must not contain a user or password; use METABASE_API_KEY or METABASE_ADMIN_EMAIL/PASSWORD"
            )
        return value

    @field_validator("database_url", "reader_database_url", "metabase_database_url")
    @classmethod
    def _dsn_is_postgres(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return value
        from psycopg.conninfo import conninfo_to_dict

        text = value.get_secret_value().strip()
        try:
            # libpq reads both forms: a postgresql:// URL, or key=value pairs (`host=h dbname=d`).
            parsed = conninfo_to_dict(text) if text else {}
        except Exception:
            parsed = {}
        if not parsed:
            # The value is never echoed: a string that does not parse may hide a password anywhere.
            raise ValueError(
                "is not a PostgreSQL connection string; use postgresql://user:pass@host:5432/db"
            ) from None
        return SecretStr(text)

    @classmethod
    def load(
        cls,
        environ: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        **overrides: Any,
    ) -> Settings:
        """Settings from the environment, then flags (`overrides`, None = not given).

        Raises ConfigError naming the variable or flag that is invalid.
        """
        environ = os.environ if environ is None else environ
        cwd = Path.cwd() if cwd is None else cwd
        values: dict[str, Any] = {}
        for var, field in ENV_VARS.items():
            if environ.get(var):
                values[field] = environ[var]
        values.update({k: v for k, v in overrides.items() if v is not None})
        # Each named demo keeps its own state (admin, API key, passwords), so demos side by side
        # never overwrite each other's credentials.
        name = values.get("stack_name") or DEFAULT_STACK_NAME
        values.setdefault(
            "home", cwd / (".provision" if name == DEFAULT_STACK_NAME else f".provision-{name}")
        )
        values["home"] = Path(values["home"]).expanduser().absolute()
        try:
            return cls(**values)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = str(first["loc"][0]) if first["loc"] else "settings"
            env = next((v for v, f in ENV_VARS.items() if f == field), None)
            flag = _FLAGS.get(field, "--" + field.replace("_", "-"))
            where = f"{flag} (or {env})" if flag and env else (flag or env or field)
            raise ConfigError(
                f"{where}: {first['msg']}",
                hint=f"check the value given by {where}",
            ) from exc
