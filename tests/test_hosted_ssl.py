"""SSL as hosted PostgreSQL asks for it: `sslmode=require`, and `verify-full` against the provider's CA.

The embedded PostgreSQL is built without SSL, so a PgBouncer terminates it in front of the session's
server, with a certificate for localhost/127.0.0.1 signed by a test CA (openssl; the module skips without
it or pgbouncer) and `client_tls_sslmode = require`: every connection that works, the tool's and the fake
Metabase's, used SSL. Metabase's side: driver/postgres.clj `ssl-params` (ssl-mode becomes
pgjdbc's sslmode, the `ssl-root-cert` secret its sslrootcert) and api `test-connection-details` (SSL is
tried first when `ssl` is not set, and kept when it works).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from provisioner.cli.app import app
from provisioner.config import Settings
from provisioner.connect import connect_database
from provisioner.db.connection import connect
from provisioner.demo import run_demo
from provisioner.dsn import dsn_with
from provisioner.errors import DatabaseError, MetabaseError
from provisioner.metabase.setup import DATABASE_NAME, setup_metabase
from provisioner.progress import RecordingProgress
from provisioner.redact import redact_dsn
from provisioner.runtime.external import ExternalRuntime
from provisioner.seeding import seed
from tests.conftest import PgServer
from tests.fake_metabase.server import FakeMetabase
from tests.pgbouncer import Bouncer, ClientTls, running_pgbouncer

AS_OF = date(2026, 3, 31)


@dataclass(frozen=True)
class SslEndpoint:
    """The module's SSL-only endpoint to the session's server, the CA that signed it, and another CA."""

    server: PgServer
    bouncer: Bouncer
    ca_file: Path
    other_ca_file: Path

    def database(self) -> str:
        """A new empty database; its superuser DSN through the endpoint on `localhost` (no sslmode yet)."""
        direct = self.server.create_database("ssl")
        return dsn_with(self.bouncer.dsn(direct), host="localhost")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, text=True)


def _make_ca(directory: Path, name: str) -> None:
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
        "-keyout", f"{name}.key", "-out", f"{name}.pem", cwd=directory,
    )  # fmt: skip


def _make_server_certificate(directory: Path) -> None:
    (directory / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
        "-keyout", "server.key", "-out", "server.csr", cwd=directory,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "test-ca.pem", "-CAkey", "test-ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.crt", cwd=directory,
    )  # fmt: skip


@pytest.fixture(scope="module")
def ssl_server(pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SslEndpoint]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: no certificates for the SSL tests")
    certs = tmp_path_factory.mktemp("certs")
    _make_ca(certs, "test-ca")
    _make_ca(certs, "other-ca")
    _make_server_certificate(certs)
    tls = ClientTls(key_file=certs / "server.key", cert_file=certs / "server.crt")
    with running_pgbouncer(
        pg_server, tmp_path_factory.mktemp("pgbouncer-tls"), pool_mode="session", tls=tls
    ) as bouncer:
        yield SslEndpoint(pg_server, bouncer, certs / "test-ca.pem", certs / "other-ca.pem")


def _short_sleep(seconds: float) -> None:
    time.sleep(min(seconds, 0.05))


def _demo_details(fake: FakeMetabase) -> dict:
    [database] = [d for d in fake.state.databases.values() if d["name"] == DATABASE_NAME]
    return dict(database["details"])


def _settings(fake: FakeMetabase, home: Path, dsn: str) -> Settings:
    return Settings.load({}, home=home, metabase_url=fake.url, database_url=dsn)


def test_the_endpoint_refuses_connections_without_ssl(ssl_server: SslEndpoint) -> None:
    dsn = ssl_server.database()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(dsn, sslmode="disable").close()
    with psycopg.connect(dsn, sslmode="require") as conn:
        assert conn.pgconn.ssl_in_use


def test_the_demo_with_sslmode_require_runs_for_the_tool_and_metabase(
    ssl_server: SslEndpoint, fake_metabase: FakeMetabase, clean_environ: Path
) -> None:
    dsn = dsn_with(ssl_server.database(), sslmode="require")
    settings = _settings(fake_metabase, clean_environ, dsn)

    cold = run_demo(
        settings, runtime=ExternalRuntime(settings), progress=RecordingProgress(), sleep=_short_sleep
    )

    assert cold.failed_cards == [] and cold.dashboards
    details = _demo_details(fake_metabase)
    assert (details["ssl"], details["ssl-mode"]) == (True, "require")
    with connect(dsn) as conn:
        assert conn.pgconn.ssl_in_use
    fake_metabase.clear_requests()
    again = run_demo(
        settings, runtime=ExternalRuntime(settings), progress=RecordingProgress(), sleep=_short_sleep
    )
    assert again.changed is False and fake_metabase.mutating_requests() == []


def test_verify_full_against_the_providers_ca_runs_and_hands_metabase_the_certificate(
    ssl_server: SslEndpoint, fake_metabase: FakeMetabase, clean_environ: Path
) -> None:
    dsn = dsn_with(ssl_server.database(), sslmode="verify-full", sslrootcert=str(ssl_server.ca_file))
    settings = _settings(fake_metabase, clean_environ, dsn)

    cold = run_demo(
        settings, runtime=ExternalRuntime(settings), progress=RecordingProgress(), sleep=_short_sleep
    )

    assert cold.failed_cards == []
    details = _demo_details(fake_metabase)
    assert (details["ssl"], details["ssl-mode"], details["ssl-root-cert-options"]) == (
        True,
        "verify-full",
        "uploaded",
    )
    assert details["ssl-root-cert-value"] == ssl_server.ca_file.read_text()
    # Read back, the certificate is masked like a password.
    [listed] = [d for d in fake_metabase.databases() if d["name"] == DATABASE_NAME]
    assert listed["details"]["ssl-root-cert-value"] == "**MetabasePass**"
    fake_metabase.clear_requests()
    again = run_demo(
        settings, runtime=ExternalRuntime(settings), progress=RecordingProgress(), sleep=_short_sleep
    )
    assert again.changed is False and fake_metabase.mutating_requests() == []


def test_a_new_root_certificate_updates_the_registration_once(
    ssl_server: SslEndpoint, fake_metabase: FakeMetabase, clean_environ: Path, tmp_path: Path
) -> None:
    bundle = tmp_path / "bundle.pem"
    bundle.write_text(ssl_server.ca_file.read_text())
    dsn = dsn_with(ssl_server.database(), sslmode="verify-full", sslrootcert=str(bundle))
    settings = _settings(fake_metabase, clean_environ, dsn)
    setup_metabase(settings, progress=RecordingProgress())
    seed(settings, as_of=AS_OF, reset=False, force=False, port=None)
    connect_database(settings, progress=RecordingProgress(), sleep=_short_sleep)
    # The provider rotates: a bundle with the old CA and the new one.
    bundle.write_text(ssl_server.ca_file.read_text() + ssl_server.other_ca_file.read_text())

    progress = RecordingProgress()
    updated = connect_database(settings, progress=progress, sleep=_short_sleep)
    again = connect_database(settings, progress=RecordingProgress(), sleep=_short_sleep)

    assert updated.action == "updated" and again.action == "unchanged"
    assert any("password or root certificate changed" in m for _, m in progress.lines)
    assert _demo_details(fake_metabase)["ssl-root-cert-value"] == bundle.read_text()


def test_verify_full_against_another_ca_is_refused_by_the_tool_and_by_metabase(
    ssl_server: SslEndpoint, fake_metabase: FakeMetabase, clean_environ: Path
) -> None:
    database = ssl_server.database()
    wrong = dsn_with(database, sslmode="verify-full", sslrootcert=str(ssl_server.other_ca_file))
    right = dsn_with(database, sslmode="verify-full", sslrootcert=str(ssl_server.ca_file))
    password = psycopg.conninfo.conninfo_to_dict(database)["password"]

    with pytest.raises(DatabaseError) as refused:
        seed(_settings(fake_metabase, clean_environ, wrong), as_of=AS_OF, reset=False, force=False, port=None)
    assert "certificate verify failed" in refused.value.message
    assert "sslrootcert" in (refused.value.hint or "")
    assert password not in refused.value.message + (refused.value.hint or "")

    settings = _settings(fake_metabase, clean_environ, right)
    setup_metabase(settings, progress=RecordingProgress())
    seed(settings, as_of=AS_OF, reset=False, force=False, port=None)
    with pytest.raises(MetabaseError):
        connect_database(settings, progress=RecordingProgress(), sleep=_short_sleep, metabase_dsn=wrong)
    assert [d for d in fake_metabase.state.databases.values() if d["name"] == DATABASE_NAME] == []


def test_metabase_turning_ssl_on_by_itself_is_not_a_change(
    ssl_server: SslEndpoint, fake_metabase: FakeMetabase, clean_environ: Path
) -> None:
    dsn = dsn_with(ssl_server.database(), sslmode="prefer")
    settings = _settings(fake_metabase, clean_environ, dsn)
    setup_metabase(settings, progress=RecordingProgress())
    seed(settings, as_of=AS_OF, reset=False, force=False, port=None)

    first = connect_database(settings, progress=RecordingProgress(), sleep=_short_sleep)
    fake_metabase.clear_requests()
    again = connect_database(settings, progress=RecordingProgress(), sleep=_short_sleep)

    # Registered without ssl, Metabase found SSL working and kept it on (the server only speaks SSL).
    assert first.action == "created" and _demo_details(fake_metabase)["ssl"] is True
    assert again.action == "unchanged" and fake_metabase.mutating_requests() == []


def test_seed_over_ssl_prints_no_secret_of_the_dsn(ssl_server: SslEndpoint, clean_environ: Path) -> None:
    dsn = dsn_with(ssl_server.database(), sslmode="verify-full", sslrootcert=str(ssl_server.ca_file))
    password = psycopg.conninfo.conninfo_to_dict(dsn)["password"]

    done = CliRunner().invoke(app, ["seed", "--database-url", dsn, "--as-of", "2026-03-31"])
    as_json = CliRunner().invoke(app, ["seed", "--json", "--database-url", dsn, "--as-of", "2026-03-31"])

    assert done.exit_code == 0 and as_json.exit_code == 0, done.stderr + as_json.stderr
    for output in (done.stdout, done.stderr, as_json.stdout, as_json.stderr):
        assert password not in output


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://owner:Db-Secret-1@db.example:5432/demo?sslmode=verify-full&sslpassword=Key-Secret-2",
        "host=db.example password=Db-Secret-1 sslpassword=Key-Secret-2 sslmode=require",
        "postgresql://owner@db.example/demo?password=Db-Secret-1&sslpassword='Key-Secret-2'",
    ],
)
def test_a_dsn_is_printed_without_its_password_or_its_key_password(dsn: str) -> None:
    shown = redact_dsn(dsn)

    assert "Db-Secret-1" not in shown and "Key-Secret-2" not in shown
    assert "db.example" in shown
