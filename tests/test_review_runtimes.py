"""Review of the runtimes: failure paths that must end in a ProvisionError with a hint, never a traceback."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from provisioner.config import Settings
from provisioner.db.roles import with_credentials
from provisioner.errors import DatabaseError, EnvironmentProblem
from provisioner.progress import RecordingProgress
from provisioner.runtime.base import SubprocessRunner
from provisioner.runtime.local import APP_DATABASE, LocalRuntime
from tests.conftest import PgServer


def test_a_program_that_cannot_be_executed_is_an_environment_problem(tmp_path: Path) -> None:
    program = tmp_path / "java"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o644)  # present but not executable: PermissionError, not FileNotFoundError
    with pytest.raises(EnvironmentProblem) as caught:
        SubprocessRunner().run([str(program), "-version"], timeout_s=5)
    assert f"`{program}` cannot be run" in caught.value.message
    assert "--runtime" in (caught.value.hint or "")


def test_a_timeout_names_the_whole_command() -> None:
    args = [sys.executable, "-c", "import time; time.sleep(30)", "up", "--wait"]
    with pytest.raises(EnvironmentProblem) as caught:
        SubprocessRunner().run(args, timeout_s=0.2)
    # The sub-command (for compose it comes after the project, file and env-file options) is named.
    assert "up --wait" in caught.value.message and "did not finish within 0 s" in caught.value.message


@pytest.fixture
def plain_role_dsn(pg_server: PgServer) -> Iterator[str]:
    """A login role that may neither create databases nor drop others' (no CREATEDB, no superuser)."""
    role, password = f"rv_plain_{uuid.uuid4().hex[:8]}", "plain-pw-123"
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        conn.execute(f'DROP DATABASE IF EXISTS "{APP_DATABASE}" WITH (FORCE)')
    yield with_credentials(pg_server.dsn(), role, password)
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{APP_DATABASE}" WITH (FORCE)')
        conn.execute(f"DROP ROLE {role}")


def test_app_database_that_cannot_be_created_is_a_database_error(
    clean_environ: Path, plain_role_dsn: str
) -> None:
    runtime = LocalRuntime(Settings.load({}, home=clean_environ))
    with pytest.raises(DatabaseError, match="could not create Metabase's application database") as caught:
        runtime._ensure_app_database(plain_role_dsn, RecordingProgress())
    assert "CREATEDB" in (caught.value.hint or "")


def test_app_database_that_cannot_be_dropped_is_a_database_error(
    clean_environ: Path, plain_role_dsn: str, pg_server: PgServer
) -> None:
    # Created by the tool as the superuser: ours, but not the role's to drop.
    LocalRuntime(Settings.load({}, home=clean_environ))._ensure_app_database(
        pg_server.dsn(), RecordingProgress()
    )
    runtime = LocalRuntime(Settings.load({}, home=clean_environ))
    with pytest.raises(DatabaseError, match="could not drop Metabase's application database") as caught:
        runtime._drop_app_database(plain_role_dsn, RecordingProgress())
    assert "own" in (caught.value.hint or "")


def test_metabase_ignores_an_application_database_exported_for_another_metabase(
    clean_environ: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydantic import SecretStr

    # Metabase prefers MB_DB_CONNECTION_URI over MB_DB_HOST & co: inherited, it would win.
    monkeypatch.setenv("MB_DB_CONNECTION_URI", "postgres://elsewhere:5432/production_metabase")
    monkeypatch.setenv("MB_DB_FILE", "/srv/metabase/metabase.db")
    monkeypatch.setenv("MB_EMOJI_IN_LOGS", "false")  # other Metabase settings pass through
    runtime = LocalRuntime(Settings.load({}, home=clean_environ))
    env = runtime._environment(3123, SecretStr("postgresql://owner:pw@127.0.0.1:5544/metabase_app"))
    assert "MB_DB_CONNECTION_URI" not in env and "MB_DB_FILE" not in env
    assert (env["MB_DB_HOST"], env["MB_DB_PORT"], env["MB_DB_DBNAME"]) == ("127.0.0.1", "5544", APP_DATABASE)
    assert env["MB_EMOJI_IN_LOGS"] == "false"


@pytest.fixture
def no_app_database(pg_server: PgServer) -> Iterator[str]:
    """The superuser DSN of the session server, with no application database before or after."""
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{APP_DATABASE}" WITH (FORCE)')
    yield pg_server.dsn()
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{APP_DATABASE}" WITH (FORCE)')


def test_someone_elses_app_database_on_the_users_server_is_neither_used_nor_dropped(
    clean_environ: Path, no_app_database: str
) -> None:
    with psycopg.connect(no_app_database, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{APP_DATABASE}"')  # e.g. a real Metabase's, on a shared server
    runtime = LocalRuntime(Settings.load({}, home=clean_environ, database_url=no_app_database))

    with pytest.raises(DatabaseError, match="was not created by this tool") as caught:
        runtime._ensure_app_database(no_app_database, RecordingProgress())
    assert "--database-url" in (caught.value.hint or "")
    progress = RecordingProgress()
    runtime._drop_app_database(no_app_database, progress)
    assert "left alone" in progress.text
    with psycopg.connect(no_app_database) as conn:
        kept = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (APP_DATABASE,)).fetchone()
    assert kept is not None


def test_the_app_database_the_tool_created_is_reused_then_dropped(
    clean_environ: Path, no_app_database: str
) -> None:
    runtime = LocalRuntime(Settings.load({}, home=clean_environ, database_url=no_app_database))
    first = runtime._ensure_app_database(no_app_database, RecordingProgress())
    progress = RecordingProgress()
    again = runtime._ensure_app_database(no_app_database, progress)
    assert first.get_secret_value() == again.get_secret_value() and "created" not in progress.text

    runtime._drop_app_database(no_app_database, progress)
    with psycopg.connect(no_app_database) as conn:
        gone = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (APP_DATABASE,)).fetchone()
    assert gone is None and f"dropped Metabase's application database {APP_DATABASE}" in progress.text
