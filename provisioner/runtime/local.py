"""The local runtime: the embedded PostgreSQL plus Metabase as a supervised process, no Docker.

Metabase runs from its jar on Java 21+ (or from `settings.metabase_command`, which is also how
the tests run the fake Metabase as a real process). It is started detached in its own session,
its pid in `run/metabase.pid`, its output in `logs/metabase.log`, and stopped by that pid.
Its application database is `metabase_app` on the same PostgreSQL server as the warehouse.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import time
from typing import TYPE_CHECKING

from pydantic import SecretStr

from provisioner.dsn import dsn_with, parse_dsn
from provisioner.errors import (
    ConfigError,
    DatabaseError,
    EnvironmentProblem,
    MetabaseError,
    ProvisionError,
)
from provisioner.progress import Progress
from provisioner.redact import redact, redact_dsn
from provisioner.runtime.base import CommandRunner, Endpoints, RuntimeStatus, ServiceStatus, SubprocessRunner
from provisioner.runtime.postgres import HOST, free_port, port_is_free
from provisioner.state import LocalMetabaseSecrets, StateDir, write_private
from provisioner.wait import Clock, Sleep, wait_until

if TYPE_CHECKING:
    import psycopg

    from provisioner.config import Settings

APP_DATABASE = "metabase_app"
# Set on the application database we create: on the user's server (--database-url) a database of
# that name without it belongs to someone else, and is neither used nor dropped.
APP_DATABASE_MARKER = "metabase-provisioner: application database of the demo's Metabase"
DEFAULT_PORT = 3000
_POLL_S = 0.25  # first start of the jar takes a minute; the fake, a fraction of a second
_STOP_POLL_S = 0.2
_LOG_TAIL_LINES = 5


class LocalRuntime:
    """Embedded PostgreSQL and a Metabase process on this machine."""

    name = "local"

    def __init__(
        self,
        settings: Settings,
        *,
        runner: CommandRunner | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> None:
        self.settings = settings
        self.runner = runner or SubprocessRunner()
        self.state = StateDir(settings.home)
        self.pid_file = self.state.run_dir / "metabase.pid"
        self.port_file = self.state.run_dir / "metabase.port"
        self.log_file = self.state.logs_dir / "metabase.log"
        self.work_dir = self.state.root / "metabase"
        self._clock = clock
        self._sleep = sleep

    # -- lifecycle --------------------------------------------------------------------------

    def check(self) -> None:
        """Raise ConfigError or EnvironmentProblem when Metabase cannot be started (no jar, no Java, a bad
        command), unless it runs already."""
        if self.running_pid() is None:
            self.command(DEFAULT_PORT)

    def start(self, progress: Progress) -> Endpoints:
        """Endpoints once PostgreSQL runs and Metabase answers healthy; reuses a running Metabase.

        Raises EnvironmentProblem (no Java, port taken, Metabase exited: the hint names the log),
        ConfigError (no jar or command), DatabaseError (application database).
        """
        from provisioner.runtime.warehouse import resolve_warehouse

        pid = self.running_pid()
        spawned = pid is None
        # The command first: a missing jar or Java is reported before PostgreSQL is started for it.
        port = self._choose_port() if pid is None else self.port()
        command = self.command(port) if pid is None else None
        warehouse = resolve_warehouse(self.settings, start=True, progress=progress)
        try:
            if pid is not None:
                progress.info(f"Metabase already runs (pid {pid}) on port {port}")
            else:
                assert command is not None
                app_db = self._ensure_app_database(warehouse.dsn.get_secret_value(), progress)
                pid = self._spawn(command, self._environment(port, app_db), progress)
            url = f"http://{HOST}:{port}"
            self._wait_healthy(url, pid, progress)
        except ProvisionError as exc:
            if warehouse.started:
                exc.hint = (f"{exc.hint}; " if exc.hint else "") + (
                    "the embedded PostgreSQL started for it still runs: `provision down` stops it"
                )
            raise
        return Endpoints(
            metabase_url=url,
            warehouse_dsn=None if warehouse.embedded else warehouse.dsn,
            started=spawned or warehouse.started,
        )

    def stop(self, progress: Progress) -> None:
        """Stop Metabase by its pid (SIGTERM, SIGKILL after stop_timeout_s), then the embedded PostgreSQL."""
        self._stop_metabase(progress)
        if self.settings.database_url is None:
            from provisioner.runtime.postgres import EmbeddedPostgres

            if EmbeddedPostgres(self.state.postgres_dir).stop():
                progress.info("stopped the embedded PostgreSQL")

    def destroy(self, progress: Progress) -> None:
        """Stop everything and delete local data: the embedded server, or metabase_app on an external one."""
        self._stop_metabase(progress)
        if self.settings.database_url is None:
            from provisioner.runtime.warehouse import destroy_embedded

            destroy_embedded(self.settings, progress)
        else:
            self._drop_app_database(self.settings.database_url.get_secret_value(), progress)
        shutil.rmtree(self.work_dir, ignore_errors=True)
        with self.state.edit_credentials() as credentials:
            credentials.metabase_local = None

    def status(self) -> RuntimeStatus:
        """The warehouse server and the Metabase process: running or not, and Metabase's health."""
        services = [self._warehouse_status()]
        pid = self.running_pid()
        url = f"http://{HOST}:{self.port()}" if self.port_file.exists() else None
        if pid is None:
            services.append(ServiceStatus(name="metabase", state="stopped"))
        else:
            health = self._health(url) if url else "unknown"
            services.append(
                ServiceStatus(name="metabase", state="running", health=health, detail=f"pid {pid}")
            )
        return RuntimeStatus(
            runtime=self.name,
            services=services,
            detail="embedded PostgreSQL and a Metabase process",
            metabase_url=url,
            log_file=str(self.log_file),
            warehouse_dsn=self._warehouse_dsn() if services[0].state == "running" else None,
        )

    def _warehouse_dsn(self) -> SecretStr | None:
        from provisioner.runtime.warehouse import resolve_warehouse

        try:
            return resolve_warehouse(self.settings, start=False).dsn
        except ProvisionError:
            return None

    # -- the Metabase process -------------------------------------------------------------

    def running_pid(self) -> int | None:
        """The pid of the Metabase we started, if it still runs; removes a stale pid file."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            self.pid_file.unlink(missing_ok=True)
            return None
        if _is_our_process(pid):
            return pid
        self.pid_file.unlink(missing_ok=True)
        return None

    def port(self) -> int:
        """The port Metabase was given (remembered across restarts), DEFAULT_PORT before the first start."""
        try:
            return int(self.port_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return DEFAULT_PORT

    def command(self, port: int) -> list[str]:
        """The argument list that starts Metabase; raises ConfigError or EnvironmentProblem."""
        if self.settings.metabase_command:
            placeholders = {
                "port": str(port),
                # Metabase's own working directory: `destroy` (demo --fresh) deletes it.
                "state_dir": str(self.work_dir),
                "host": HOST,
                "log_file": str(self.log_file),
            }
            try:
                return [part.format_map(placeholders) for part in shlex.split(self.settings.metabase_command)]
            except KeyError as exc:
                raise ConfigError(
                    "--metabase-command (or METABASE_COMMAND) names an unknown placeholder "
                    f"{{{exc.args[0]}}}",
                    hint="placeholders allowed: {port}, {state_dir}, {host}, {log_file}",
                ) from exc
            except (ValueError, IndexError) as exc:
                raise ConfigError(
                    f"--metabase-command (or METABASE_COMMAND) is invalid: {exc}",
                    hint="placeholders allowed: {port}, {state_dir}, {host}, {log_file}",
                ) from exc
        jar = self.settings.metabase_jar
        if jar is None:
            raise ConfigError(
                "the local runtime needs the Metabase jar",
                hint="download https://downloads.metabase.com/v0.65.4.x/metabase.jar and pass "
                "--metabase-jar PATH (or set METABASE_JAR), or use --runtime docker",
            )
        if not jar.is_file():
            raise ConfigError(
                f"--metabase-jar (or METABASE_JAR): {jar} does not exist",
                hint="pass the path of a downloaded metabase.jar",
            )
        from provisioner.runtime.java import find_java

        java = find_java(self.runner)
        # The heap cap keeps Metabase from claiming a quarter of the machine's memory.
        return [java.path, "-Xmx1536m", "-jar", str(jar)]

    def _environment(self, port: int, app_db: SecretStr) -> dict[str, str]:
        parts = parse_dsn(app_db.get_secret_value())
        # An MB_DB_CONNECTION_URI (or MB_DB_FILE) exported for another Metabase would win over the
        # MB_DB_* set below and point this one at that application database.
        env = {key: value for key, value in os.environ.items() if not key.startswith("MB_DB_")}
        env.update(
            MB_JETTY_HOST=HOST,
            MB_JETTY_PORT=str(port),
            MB_DB_TYPE="postgres",
            MB_DB_HOST=parts.host,
            MB_DB_PORT=str(parts.port),
            MB_DB_DBNAME=APP_DATABASE,
            MB_DB_USER=parts.user or "",
            MB_DB_PASS=parts.password.get_secret_value() if parts.password else "",
            MB_ENCRYPTION_SECRET_KEY=self._encryption_key(),
            MB_PLUGINS_DIR=str(self.work_dir / "plugins"),
            MB_CHECK_FOR_UPDATES="false",
            MB_ANON_TRACKING_ENABLED="false",
            MB_LOAD_SAMPLE_CONTENT="false",
        )
        return env

    def _encryption_key(self) -> str:
        # Generated once and kept: a new key would make the stored warehouse password unreadable.
        stored = self.state.credentials().metabase_local
        if stored is not None:
            return stored.encryption_secret_key.get_secret_value()
        key = secrets.token_urlsafe(48)
        with self.state.edit_credentials() as credentials:
            credentials.metabase_local = LocalMetabaseSecrets(encryption_secret_key=SecretStr(key))
        return key

    def _spawn(self, command: list[str], env: dict[str, str], progress: Progress) -> int:
        self.work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.state.logs_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        progress.info(f"starting Metabase: {shlex.join(command[:4])}; log: {self.log_file}")
        # Private: Metabase may log connection details.
        fd = os.open(self.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "ab") as log:
            try:
                # Its own session: Ctrl-C on `provision` does not kill it, and stop() signals the group.
                process = subprocess.Popen(
                    command,
                    cwd=self.work_dir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                raise EnvironmentProblem(
                    f"could not start Metabase ({command[0]}): {exc.strerror or exc}",
                    hint="check --metabase-jar / --metabase-command and that the program exists",
                ) from exc
        write_private(self.pid_file, f"{process.pid}\n")
        return process.pid

    def _wait_healthy(self, url: str, pid: int, progress: Progress) -> None:
        polls = 0

        def healthy() -> bool | None:
            nonlocal polls
            if not _is_our_process(pid):
                self.pid_file.unlink(missing_ok=True)
                raise EnvironmentProblem(
                    f"Metabase exited while starting: {self._log_tail()}",
                    hint=f"see its log: {self.log_file}",
                )
            if self._health(url) == "healthy":
                return True
            if polls == 0:
                progress.info("waiting for Metabase to finish starting (a minute or two on first start)")
            polls += 1
            return None

        timeout_s = self.settings.health_timeout_s
        if not wait_until(healthy, timeout_s=timeout_s, poll_s=_POLL_S, clock=self._clock, sleep=self._sleep):
            raise EnvironmentProblem(
                f"Metabase did not become healthy within {timeout_s:.0f} s",
                hint=f"see its log: {self.log_file}; it is still running (pid {pid}): "
                "`provision up` waits again, `provision down` stops it",
            )
        progress.info(f"Metabase is healthy at {url}")

    def _health(self, url: str) -> str:
        from provisioner.metabase.client import MetabaseClient

        try:
            with MetabaseClient(url, timeout_s=2, retries=0) as client:
                return "healthy" if client.health().ok else "starting"
        except MetabaseError:
            return "unreachable"

    def _stop_metabase(self, progress: Progress) -> None:
        pid = self.running_pid()
        if pid is None:
            return
        progress.info(f"stopping Metabase (pid {pid})")
        _signal_group(pid, signal.SIGTERM)
        timeout_s = self.settings.stop_timeout_s

        def exited() -> bool | None:
            return None if _is_our_process(pid) else True

        if not wait_until(
            exited, timeout_s=timeout_s, poll_s=_STOP_POLL_S, clock=self._clock, sleep=self._sleep
        ):
            progress.warn(f"Metabase (pid {pid}) ignored SIGTERM for {timeout_s:.0f} s")
            _signal_group(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)

    def _choose_port(self) -> int:
        if self.port_file.exists():
            port = self.port()
            if not port_is_free(port):
                raise EnvironmentProblem(
                    f"port {port}, where this demo's Metabase runs, is taken by another program",
                    hint=f"stop that program, or delete {self.port_file} to let the demo pick a new port",
                )
            return port
        port = DEFAULT_PORT if port_is_free(DEFAULT_PORT) else free_port()
        write_private(self.port_file, f"{port}\n")
        return port

    def _log_tail(self) -> str:
        try:
            lines = self.log_file.read_text(errors="replace").strip().splitlines()[-_LOG_TAIL_LINES:]
        except FileNotFoundError:
            return "no output"
        return redact(" | ".join(lines)) if lines else "no output"

    # -- the application database -----------------------------------------------------------

    def _ensure_app_database(self, warehouse_dsn: str, progress: Progress) -> SecretStr:
        """The application database's DSN on the warehouse server, created (and marked ours) if missing.

        Raises DatabaseError when it cannot be created, or when on the user's server it exists
        without our mark (someone else's database of that name).
        """
        import psycopg
        from psycopg import sql

        from provisioner.db.connection import connect, first_line

        with connect(_with_database(warehouse_dsn, "postgres"), autocommit=True, wait_s=30) as conn:
            try:
                exists, ours = _app_database_state(conn)
                if not exists:
                    conn.execute(f'CREATE DATABASE "{APP_DATABASE}"')
                    conn.execute(
                        sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                            sql.Identifier(APP_DATABASE), sql.Literal(APP_DATABASE_MARKER)
                        )
                    )
                    progress.info(f"created Metabase's application database {APP_DATABASE}")
                elif not ours and self.settings.database_url is not None:
                    raise DatabaseError(
                        f"the database {APP_DATABASE} on {redact_dsn(warehouse_dsn)} was not created by "
                        "this tool; the demo's Metabase will not use it as its application database",
                        hint=f"if it is a leftover of this demo, drop it ({APP_DATABASE}); otherwise omit "
                        "--database-url to run the demo on the embedded PostgreSQL",
                    )
            except psycopg.Error as exc:
                raise DatabaseError(
                    f"could not create Metabase's application database {APP_DATABASE}: {first_line(exc)}",
                    hint="the warehouse's user needs CREATEDB; or omit --database-url (embedded server)",
                ) from exc
        return SecretStr(_with_database(warehouse_dsn, APP_DATABASE))

    def _drop_app_database(self, warehouse_dsn: str, progress: Progress) -> None:
        import psycopg

        from provisioner.db.connection import connect, first_line

        with connect(_with_database(warehouse_dsn, "postgres"), autocommit=True) as conn:
            try:
                exists, ours = _app_database_state(conn)
                if exists and not ours:
                    progress.warn(f"the database {APP_DATABASE} was not created by this tool: left alone")
                    return
                conn.execute(f'DROP DATABASE IF EXISTS "{APP_DATABASE}" WITH (FORCE)')
            except psycopg.Error as exc:
                raise DatabaseError(
                    f"could not drop Metabase's application database {APP_DATABASE}: {first_line(exc)}",
                    hint=f"the warehouse's user must own {APP_DATABASE}; drop it as its owner, "
                    "then run the command again",
                ) from exc
        if exists:
            progress.info(f"dropped Metabase's application database {APP_DATABASE}")

    def _warehouse_status(self) -> ServiceStatus:
        if self.settings.database_url is not None:
            return ServiceStatus(
                name="warehouse", state="running", detail="external PostgreSQL (--database-url)"
            )
        from provisioner.runtime.postgres import EmbeddedPostgres

        info = EmbeddedPostgres(self.state.postgres_dir).running()
        if info is None:
            return ServiceStatus(name="warehouse", state="stopped", detail="embedded PostgreSQL")
        return ServiceStatus(
            name="warehouse", state="running", detail=f"embedded PostgreSQL, pid {info.pid}, port {info.port}"
        )


def _app_database_state(conn: psycopg.Connection) -> tuple[bool, bool]:
    """(exists, created by this tool) for the application database."""
    row = conn.execute(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", (APP_DATABASE,)
    ).fetchone()
    return (False, False) if row is None else (True, row[0] == APP_DATABASE_MARKER)


def _with_database(dsn: str, database: str) -> str:
    return dsn_with(dsn, dbname=database)


def _is_our_process(pid: int) -> bool:
    """True when `pid` runs and leads its own process group, as the Metabase we start does."""
    # Reap it first if it is our own exited child: a zombie still answers signal 0.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
        # A recycled pid is almost never a process-group leader; ours is (start_new_session).
        return os.getpgid(pid) == pid
    except ProcessLookupError:
        return False
    except PermissionError:
        return False


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
