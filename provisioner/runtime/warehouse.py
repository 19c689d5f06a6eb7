"""Where the demo warehouse is: the user's PostgreSQL (--database-url) or the embedded server.

The embedded server keeps its data under `<home>/postgres/`, listens on 127.0.0.1 only, and its
superuser password is generated once and kept in the credentials file (section "postgres").
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel, SecretStr

from provisioner.db.seed import SeedStatus
from provisioner.dsn import parse_dsn
from provisioner.errors import DatabaseError
from provisioner.progress import NullProgress, Progress
from provisioner.redact import redact_dsn
from provisioner.runtime.postgres import HOST, SUPERUSER, EmbeddedPostgres, ServerInfo
from provisioner.state import PostgresLogin, StateDir

if TYPE_CHECKING:
    from provisioner.config import Settings

DEMO_DATABASE = "asset_finance"
# The first start runs initdb; later ones only wait for the server to accept connections.
_CONNECT_WAIT_S = 30.0


@dataclass(frozen=True)
class Warehouse:
    """The demo database: the owner DSN as seen from this machine, and its location."""

    dsn: SecretStr
    host: str
    port: int
    dbname: str
    embedded: bool
    started: bool = False  # the embedded server was started by this call


class DbStatus(BaseModel):
    """The embedded server: running or not, where, and what is seeded in it."""

    running: bool
    pid: int | None = None
    port: int | None = None
    data_dir: str
    dsn_redacted: str | None = None
    seeded: SeedStatus | None = None
    # Why `seeded` could not be read (e.g. the demo database does not exist yet).
    detail: str | None = None


def resolve_warehouse(
    settings: Settings,
    *,
    start: bool = True,
    port: int | None = None,
    progress: Progress | None = None,
) -> Warehouse:
    """The warehouse to seed: settings.database_url (not connected to), else the embedded server.

    With `start`, the embedded server is started (EnvironmentProblem if `port` is taken) and its
    demo database created if missing; without it nothing is changed (status and doctor only look).
    Raises DatabaseError when it is not running and `start` is False, or when it cannot be reached.
    """
    progress = progress or NullProgress()
    if start:
        # Before any server or database is touched: what the run stores afterwards must have a place.
        StateDir(settings.home).check_usable()
    if settings.database_url is not None:
        return _external(settings.database_url)
    server = _server(settings)
    running = server.running()
    if running is None and not start:
        # Checked before the password: only looking must never generate and store one.
        if not server.root.exists():
            raise DatabaseError(
                f"no demo warehouse in {settings.home}: no demo was started with this state directory",
                hint="run the command in the demo's folder (or one below it), set PROVISION_HOME to its "
                ".provision directory, or start one here with `provision demo` or `provision db start`",
            )
        raise DatabaseError(
            f"the embedded PostgreSQL of the demo in {settings.home} is not running",
            hint="start it with `provision db start` or `provision demo` (or pass --database-url to use "
            "your own PostgreSQL)",
        )
    password = _superuser_password(settings, server)
    started = False
    if running is None:
        started = True
        progress.step(f"Starting the embedded PostgreSQL ({server.root})")
        info = server.start(password, port)
        progress.info(f"PostgreSQL listens on {HOST}:{info.port}")
    else:
        info = server.start(password, port) if start else running  # start() checks a requested port
    if start:
        _ensure_demo_database(info, password, progress)
    return Warehouse(
        dsn=SecretStr(info.dsn(password, DEMO_DATABASE)),
        host=HOST,
        port=info.port,
        dbname=DEMO_DATABASE,
        embedded=True,
        started=started,
    )


def db_start(settings: Settings, port: int | None = None, progress: Progress | None = None) -> DbStatus:
    """Start (or reuse) the embedded server and return its status; EnvironmentProblem if the port is taken."""
    resolve_warehouse(_embedded_only(settings), start=True, port=port, progress=progress)
    return db_status(settings)


def db_stop(settings: Settings, progress: Progress | None = None) -> DbStatus:
    """Stop the embedded server (a no-op when stopped) and return its status; raises DatabaseError."""
    progress = progress or NullProgress()
    if _server(settings).stop():
        progress.info("stopped the embedded PostgreSQL")
    else:
        progress.info("the embedded PostgreSQL was not running")
    return db_status(settings)


def db_status(settings: Settings) -> DbStatus:
    """The embedded server's status, with what is seeded when it runs; never starts it."""
    from provisioner.db.seed import seed_status

    server = _server(settings)
    info = server.running()
    if info is None:
        return DbStatus(running=False, data_dir=str(server.data_dir))
    seeded, detail, dsn_redacted = None, None, None
    try:
        dsn = info.dsn(_superuser_password(settings, server), DEMO_DATABASE)
        dsn_redacted = redact_dsn(dsn)
        seeded = seed_status(dsn)
    except DatabaseError as exc:
        detail = exc.message  # status reports; it never fails because the demo is not there yet
    return DbStatus(
        running=True,
        pid=info.pid,
        port=info.port,
        data_dir=str(info.data_dir),
        dsn_redacted=dsn_redacted,
        seeded=seeded,
        detail=detail,
    )


def db_url(settings: Settings) -> str:
    """The owner DSN of the warehouse, password included (for `psql "$(provision db url)"`).

    Raises DatabaseError when the embedded server is not running.
    """
    return resolve_warehouse(settings, start=False).dsn.get_secret_value()


def destroy_embedded(settings: Settings, progress: Progress | None = None) -> bool:
    """Stop the embedded server and delete its data; False when there was nothing to delete."""
    progress = progress or NullProgress()
    server = _server(settings)
    if not server.root.exists():
        return False
    progress.info(f"deleting the embedded PostgreSQL data in {server.root}")
    server.destroy()
    # The roles died with the cluster: the stored reader password no longer logs in anywhere.
    with StateDir(settings.home).edit_credentials() as credentials:
        credentials.reader = None
    return True


def _embedded_only(settings: Settings) -> Settings:
    # `provision db ...` manages the embedded server even when DATABASE_URL points elsewhere.
    return settings.model_copy(update={"database_url": None})


def _server(settings: Settings) -> EmbeddedPostgres:
    return EmbeddedPostgres(StateDir(settings.home).postgres_dir)


def _superuser_password(settings: Settings, server: EmbeddedPostgres) -> str:
    state = StateDir(settings.home)
    stored = state.credentials().postgres
    if stored is not None:
        return stored.password.get_secret_value()
    if server.initialized:
        # A new password would not log in to this cluster, and storing one would hide the cause.
        raise DatabaseError(
            f"the embedded PostgreSQL in {server.root} was set up with a password that is no longer "
            f"in {state.credentials_file}",
            hint="`provision down --volumes` deletes it; `provision seed` then rebuilds the demo",
        )
    # Stored before initdb uses it, so a crash can never leave a cluster with an unknown password.
    password = secrets.token_urlsafe(24)
    with state.edit_credentials() as credentials:
        credentials.postgres = PostgresLogin(user=SUPERUSER, password=SecretStr(password))
    return password


def _ensure_demo_database(info: ServerInfo, password: str, progress: Progress) -> None:
    from psycopg import sql

    from provisioner.db.connection import connect

    with connect(info.dsn(password, "postgres"), wait_s=_CONNECT_WAIT_S, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DEMO_DATABASE,)).fetchone()
        if exists is None:
            progress.info(f"creating database {DEMO_DATABASE}")
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DEMO_DATABASE)))


def _external(dsn: SecretStr) -> Warehouse:
    parts = parse_dsn(dsn.get_secret_value(), what="--database-url (or DATABASE_URL)")
    # libpq's defaults: the database is named after the user, the user after the login.
    dbname = parts.dbname or parts.user or "postgres"
    return Warehouse(dsn=dsn, host=parts.host, port=parts.port, dbname=dbname, embedded=False)
