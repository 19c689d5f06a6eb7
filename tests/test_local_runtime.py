"""The local runtime, with the fake Metabase as a real process: start, reuse, status, stop, restart."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import requests

from provisioner.config import Settings
from provisioner.db.roles import with_credentials
from provisioner.errors import ConfigError, DatabaseError, EnvironmentProblem
from provisioner.progress import RecordingProgress
from provisioner.runtime.local import APP_DATABASE, LocalRuntime
from provisioner.runtime.postgres import free_port
from provisioner.state import write_private
from tests.conftest import PgServer

REPO = Path(__file__).resolve().parent.parent
PYTHON = shlex.quote(sys.executable)
FAKE_COMMAND = f"{PYTHON} -m tests.fake_metabase --port {{port}} --state-file {{state_dir}}/fake-state.json"


@pytest.fixture
def settings(clean_environ: Path, pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    # The fake runs from the repository (tests is a package there), whatever the working directory.
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    # A remembered ephemeral port, not the default 3000 that concurrent test runs would race for.
    write_private(clean_environ / "run" / "metabase.port", f"{free_port()}\n")
    return Settings.load(
        {},
        home=clean_environ,
        database_url=pg_dsn,
        metabase_command=FAKE_COMMAND,
        health_timeout_s=30,
        stop_timeout_s=10,
    )


@pytest.fixture
def runtime(settings: Settings) -> Iterator[LocalRuntime]:
    runtime = LocalRuntime(settings)
    try:
        yield runtime
    finally:
        runtime.stop(RecordingProgress())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_start_runs_metabase_detached_with_pid_and_log_files(
    runtime: LocalRuntime, settings: Settings
) -> None:
    endpoints = runtime.start(RecordingProgress())

    assert requests.get(f"{endpoints.metabase_url}/api/health", timeout=5).json() == {"status": "ok"}
    pid = int((settings.home / "run" / "metabase.pid").read_text())
    assert _alive(pid) and os.getpgid(pid) == pid  # its own session: Ctrl-C on provision spares it
    assert (settings.home / "logs" / "metabase.log").exists()
    assert endpoints.metabase_url == f"http://127.0.0.1:{runtime.port()}"
    # An external warehouse is handed back as is; Metabase's own database sits next to it.
    assert endpoints.warehouse_dsn is not None
    assert endpoints.warehouse_dsn.get_secret_value() == settings.database_url.get_secret_value()
    with psycopg.connect(settings.database_url.get_secret_value()) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (APP_DATABASE,)).fetchone()
    assert found is not None


def test_start_again_reuses_the_running_process(runtime: LocalRuntime) -> None:
    runtime.start(RecordingProgress())
    pid = runtime.running_pid()
    progress = RecordingProgress()
    runtime.start(progress)
    assert runtime.running_pid() == pid
    assert f"already runs (pid {pid})" in progress.text


def test_status_then_stop_by_pid(runtime: LocalRuntime, settings: Settings) -> None:
    runtime.start(RecordingProgress())
    pid = runtime.running_pid()
    assert pid is not None

    status = runtime.status()
    metabase = next(s for s in status.services if s.name == "metabase")
    assert (metabase.state, metabase.health, metabase.detail) == ("running", "healthy", f"pid {pid}")
    assert status.metabase_url == f"http://127.0.0.1:{runtime.port()}"

    runtime.stop(RecordingProgress())
    assert not _alive(pid)
    assert not (settings.home / "run" / "metabase.pid").exists()
    stopped = next(s for s in runtime.status().services if s.name == "metabase")
    assert stopped.state == "stopped"


def test_restart_keeps_state_and_port(runtime: LocalRuntime) -> None:
    url = runtime.start(RecordingProgress()).metabase_url
    token = requests.get(f"{url}/api/session/properties", timeout=5).json()["setup-token"]
    setup = requests.post(
        f"{url}/api/setup",
        json={
            "token": token,
            "user": {"email": "ada@example.com", "password": "Str0ng-enough-pass", "first_name": "Ada"},
            "prefs": {"site_name": "Kept"},
        },
        timeout=5,
    )
    assert setup.status_code == 200
    runtime.stop(RecordingProgress())

    again = runtime.start(RecordingProgress()).metabase_url
    assert again == url
    assert requests.get(f"{again}/api/session/properties", timeout=5).json()["has-user-setup"] is True


def test_stale_pid_file_is_replaced(runtime: LocalRuntime, settings: Settings) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    pid_file = settings.home / "run" / "metabase.pid"
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{gone.pid}\n")

    assert runtime.running_pid() is None
    assert not pid_file.exists()
    runtime.start(RecordingProgress())
    assert runtime.running_pid() not in (None, gone.pid)


def test_pid_of_an_unrelated_process_is_not_ours(runtime: LocalRuntime, settings: Settings) -> None:
    pid_file = settings.home / "run" / "metabase.pid"
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{os.getpid()}\n")  # alive, but not a process group leader we started
    assert runtime.running_pid() is None


def test_metabase_that_exits_while_starting_names_its_log(settings: Settings) -> None:
    crashing = settings.model_copy(
        update={"metabase_command": f"{PYTHON} -c \"print('port {{port}} taken'); raise SystemExit(3)\""}
    )
    runtime = LocalRuntime(crashing)
    with pytest.raises(EnvironmentProblem) as caught:
        runtime.start(RecordingProgress())
    assert "exited while starting" in caught.value.message
    assert f"port {runtime.port()} taken" in caught.value.message
    assert str(settings.home / "logs" / "metabase.log") in (caught.value.hint or "")
    assert runtime.running_pid() is None


def test_stop_kills_a_process_that_ignores_sigterm(settings: Settings) -> None:
    ticks = iter(range(0, 1000, 5))
    runtime = LocalRuntime(settings, clock=lambda: float(next(ticks)), sleep=lambda _: None)
    # Ignored dispositions survive exec: the child ignores SIGTERM from its first instruction (no race).
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        pid = runtime._spawn(
            [sys.executable, "-c", "import time; time.sleep(60)"], dict(os.environ), RecordingProgress()
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
    progress = RecordingProgress()
    runtime.stop(progress)
    os.waitpid(pid, 0)  # returns only once SIGKILL ended it
    assert "ignored SIGTERM" in progress.text
    assert runtime.running_pid() is None


def test_command_with_an_unknown_placeholder_is_a_config_error(settings: Settings) -> None:
    runtime = LocalRuntime(settings.model_copy(update={"metabase_command": "metabase --dir {nowhere}"}))
    with pytest.raises(ConfigError, match="nowhere") as caught:
        runtime.command(3000)
    assert "{port}" in (caught.value.hint or "")


def test_jar_command_needs_an_existing_jar(settings: Settings, tmp_path: Path) -> None:
    without = settings.model_copy(update={"metabase_command": None})
    with pytest.raises(ConfigError, match="needs the Metabase jar"):
        LocalRuntime(without).command(3000)
    missing = without.model_copy(update={"metabase_jar": tmp_path / "nope.jar"})
    with pytest.raises(ConfigError, match="does not exist"):
        LocalRuntime(missing).command(3000)


def test_jar_command_uses_the_java_found(settings: Settings, tmp_path: Path) -> None:
    jar = tmp_path / "metabase.jar"
    jar.write_bytes(b"PK")

    class Java21:
        def run(
            self,
            args: list[str],
            *,
            timeout_s: float,
            env: dict[str, str] | None = None,
            on_line: object = None,
        ) -> subprocess.CompletedProcess[str]:
            return subprocess.CompletedProcess(args, 0, "", 'openjdk version "21.0.4" 2024-07-16\n')

    with_jar = settings.model_copy(update={"metabase_command": None, "metabase_jar": jar})
    command = LocalRuntime(with_jar, runner=Java21()).command(3000)
    assert command[1:] == ["-Xmx1536m", "-jar", str(jar)]


def test_environment_points_metabase_at_its_app_database(runtime: LocalRuntime, settings: Settings) -> None:
    from pydantic import SecretStr

    env = runtime._environment(3123, SecretStr("postgresql://owner:s3cret@127.0.0.1:5544/metabase_app"))
    assert env["MB_JETTY_HOST"] == "127.0.0.1" and env["MB_JETTY_PORT"] == "3123"
    assert (env["MB_DB_TYPE"], env["MB_DB_HOST"], env["MB_DB_PORT"]) == ("postgres", "127.0.0.1", "5544")
    assert (env["MB_DB_DBNAME"], env["MB_DB_USER"], env["MB_DB_PASS"]) == (APP_DATABASE, "owner", "s3cret")
    key = env["MB_ENCRYPTION_SECRET_KEY"]
    assert len(key) >= 32
    # Kept across starts: a new key would make the stored warehouse password unreadable.
    assert runtime._environment(3123, SecretStr("postgresql://o:p@h:1/d"))["MB_ENCRYPTION_SECRET_KEY"] == key


def test_signal_group_tolerates_a_vanished_process() -> None:
    from provisioner.runtime.local import _signal_group

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    _signal_group(gone.pid, signal.SIGTERM)  # no exception


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


def test_a_missing_jar_is_reported_before_postgresql_is_started_for_it(clean_environ: Path) -> None:
    settings = Settings.load({}, home=clean_environ, metabase_jar=clean_environ / "no-such.jar")
    with pytest.raises(ConfigError, match="does not exist"):
        LocalRuntime(settings).start(RecordingProgress())  # even without `check()` first
    assert not (clean_environ / "postgres").exists()
