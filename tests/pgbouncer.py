"""A real PgBouncer in front of the session's embedded PostgreSQL: in transaction mode for the pooler tests,
terminating TLS for the SSL tests (the embedded server is built without SSL).

Debian's `pgbouncer` package; the tests skip with one line when it is not installed (CI installs it).
The config lives in a temporary directory: transaction pooling, clients authenticated by SCRAM against
a userlist holding the superuser, every other role's secret fetched with `auth_query` (so roles a test
creates log in too), and no support for prepared statements (PgBouncer before 1.21, or
`max_prepared_statements = 0` after: what Supabase's and most poolers' transaction mode gives).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest

from provisioner.dsn import dsn_with
from provisioner.runtime.postgres import free_port
from provisioner.wait import wait_until

if TYPE_CHECKING:
    from tests.conftest import PgServer

_SEARCH = (os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin")
_START_TIMEOUT_S = 20.0


def pgbouncer_binary() -> str | None:
    """Where the pgbouncer program is (Debian installs it in /usr/sbin), or None."""
    return shutil.which("pgbouncer", path=os.pathsep.join(_SEARCH))


@dataclass(frozen=True)
class Bouncer:
    """A running PgBouncer: its port, and DSNs rewritten to go through it."""

    port: int
    log_file: Path

    def dsn(self, direct_dsn: str) -> str:
        """`direct_dsn` (to the session's server) through the pooler."""
        return dsn_with(direct_dsn, host="127.0.0.1", port=self.port)


def _version(binary: str) -> tuple[int, int]:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"PgBouncer (\d+)\.(\d+)", out)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


@dataclass(frozen=True)
class ClientTls:
    """PgBouncer's TLS towards clients: its key and certificate; clients must use TLS."""

    key_file: Path
    cert_file: Path


def _config(
    server: PgServer,
    port: int,
    directory: Path,
    version: tuple[int, int],
    pool_mode: str,
    tls: ClientTls | None,
) -> str:
    no_prepared = "max_prepared_statements = 0\n" if version >= (1, 21) else ""
    client_tls = (
        "client_tls_sslmode = require\n"
        f"client_tls_key_file = {directory / tls.key_file.name}\n"
        f"client_tls_cert_file = {directory / tls.cert_file.name}\n"
        if tls is not None
        else ""
    )
    return (
        "[databases]\n"
        f"* = host=127.0.0.1 port={server.info.port}\n"
        "[pgbouncer]\n"
        "listen_addr = 127.0.0.1\n"
        f"listen_port = {port}\n"
        "unix_socket_dir =\n"
        f"pool_mode = {pool_mode}\n"
        f"{no_prepared}"
        f"{client_tls}"
        "default_pool_size = 4\n"
        "max_client_conn = 100\n"
        "auth_type = scram-sha-256\n"
        f"auth_file = {directory / 'userlist.txt'}\n"
        "auth_user = postgres\n"
        "auth_query = SELECT usename, passwd FROM pg_shadow WHERE usename = $1\n"
        f"logfile = {directory / 'pgbouncer.log'}\n"
        f"pidfile = {directory / 'pgbouncer.pid'}\n"
        "ignore_startup_parameters = extra_float_digits\n"
    )


@contextmanager
def running_pgbouncer(
    server: PgServer, directory: Path, *, pool_mode: str, tls: ClientTls | None = None
) -> Iterator[Bouncer]:
    """PgBouncer before `server`, its files in `directory`, for the duration of the block.

    Skips the test when pgbouncer is not installed.
    """
    binary = pgbouncer_binary()
    if binary is None:
        pytest.skip("pgbouncer is not installed (Debian: apt-get install pgbouncer)")
    port = free_port()
    if tls is not None:
        for file in (tls.key_file, tls.cert_file):
            shutil.copy(file, directory / file.name)
            (directory / file.name).chmod(0o600)
    (directory / "pgbouncer.ini").write_text(
        _config(server, port, directory, _version(binary), pool_mode, tls)
    )
    (directory / "userlist.txt").write_text(f'"postgres" "{server.password}"\n')
    # PgBouncer refuses to run as root: as root it runs as the user the embedded server runs as.
    user = server.info.data_dir.owner() if os.geteuid() == 0 else None
    if user is not None:
        for path in (directory, *directory.iterdir()):
            shutil.chown(path, user=user, group=user)
    process = subprocess.Popen(
        [binary, str(directory / "pgbouncer.ini")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        user=user,
        group=user,
        extra_groups=[] if user is not None else None,
    )
    bouncer = Bouncer(port=port, log_file=directory / "pgbouncer.log")

    def answering() -> bool | None:
        if process.poll() is not None:
            raise RuntimeError(f"pgbouncer exited with {process.returncode}: see {bouncer.log_file}")
        try:
            sslmode = "require" if tls is not None else "disable"
            with psycopg.connect(bouncer.dsn(server.dsn()), connect_timeout=2, sslmode=sslmode) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return None

    try:
        started = wait_until(
            answering, timeout_s=_START_TIMEOUT_S, poll_s=0.05, clock=time.monotonic, sleep=time.sleep
        )
        if started is None:
            raise RuntimeError(
                f"pgbouncer did not answer within {_START_TIMEOUT_S} s: see {bouncer.log_file}"
            )
        yield bouncer
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def pgbouncer(pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bouncer]:
    """PgBouncer in transaction mode before the session's server, started for the module, stopped after."""
    with running_pgbouncer(
        pg_server, tmp_path_factory.mktemp("pgbouncer"), pool_mode="transaction"
    ) as bouncer:
        yield bouncer
