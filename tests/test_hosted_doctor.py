"""`provision doctor` on a hosted warehouse: SSL on a remote host, and a pooler in transaction mode."""

from __future__ import annotations

import subprocess
from collections import namedtuple
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict
from pydantic import SecretStr

from provisioner.config import Settings
from provisioner.connect import connect_database
from provisioner.doctor import Check, check_warehouse_ssl, run_doctor
from provisioner.metabase.models import DatabaseCreate
from provisioner.metabase.setup import DATABASE_NAME, open_client, setup_metabase
from provisioner.progress import RecordingProgress
from provisioner.seeding import seed
from tests.fake_metabase.server import FakeMetabase
from tests.pgbouncer import Bouncer

Usage = namedtuple("Usage", "total used free")
PLENTY = Usage(500 * 2**30, 100 * 2**30, 400 * 2**30)


class NoDocker:
    """A machine without Docker: every command fails (the external runtime needs none)."""

    def run(self, args: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(args, 1, "", "")


@pytest.mark.parametrize(
    ("dsn", "ok"),
    [
        ("postgresql://u:pw@db.abcdefgh.supabase.co:5432/postgres", False),
        ("postgresql://u:pw@db.abcdefgh.supabase.co:5432/postgres?sslmode=prefer", False),
        ("postgresql://u:pw@db.abcdefgh.supabase.co:5432/postgres?sslmode=require", True),
        ("host=mydb.rds.amazonaws.com user=u sslmode=verify-full sslrootcert=ca.pem", True),
    ],
)
def test_a_remote_warehouse_must_insist_on_ssl(dsn: str, ok: bool) -> None:
    check = check_warehouse_ssl(SecretStr(dsn))

    assert check is not None and check.ok is ok
    if not ok:
        assert "sslmode=require" in (check.hint or "") and "pw" not in check.detail


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "/var/run/postgresql"])
def test_a_local_warehouse_needs_no_ssl_line(host: str) -> None:
    assert check_warehouse_ssl(SecretStr(f"host={host} user=u dbname=d")) is None


def _doctor(settings: Settings) -> dict[str, Check]:
    checks = run_doctor(settings, runtime_choice="external", runner=NoDocker(), disk_usage=lambda _: PLENTY)
    return {check.name: check for check in checks}


def test_doctor_says_when_metabase_is_registered_behind_a_pooler_without_its_jdbc_option(
    fake_metabase: FakeMetabase, pg_dsn: str, pgbouncer: Bouncer, clean_environ: Path
) -> None:
    pooled = pgbouncer.dsn(pg_dsn)
    settings = Settings.load({}, home=clean_environ, metabase_url=fake_metabase.url, database_url=pooled)
    setup_metabase(settings, progress=RecordingProgress())
    seed(settings, as_of=None, reset=False, force=False, port=None)
    # Registered by hand (or by an older tool) through the pooler, with pgjdbc's defaults.
    owner = conninfo_to_dict(pooled)
    details = {key: owner[key] for key in ("host", "dbname", "user", "password")}
    with open_client(settings, progress=RecordingProgress()).client as client:
        client.create_database(
            DatabaseCreate(name=DATABASE_NAME, details={**details, "port": pgbouncer.port})
        )

    before = _doctor(settings)
    connect_database(settings, progress=RecordingProgress())
    after = _doctor(settings)

    assert not before["pooler"].ok
    assert "prepareThreshold=0" in before["pooler"].detail and "provision metabase connect" in (
        before["pooler"].hint or ""
    )
    assert after["pooler"].ok and "Metabase connects with prepareThreshold=0" in after["pooler"].detail
    assert "warehouse ssl" not in after  # 127.0.0.1


def test_doctor_sees_no_pooler_on_a_direct_connection(
    fake_metabase: FakeMetabase, pg_dsn: str, clean_environ: Path
) -> None:
    settings = Settings.load({}, home=clean_environ, metabase_url=fake_metabase.url, database_url=pg_dsn)
    setup_metabase(settings, progress=RecordingProgress())
    seed(settings, as_of=None, reset=False, force=False, port=None)

    checks = _doctor(settings)

    assert checks["pooler"].ok and "no pooler in transaction mode" in checks["pooler"].detail
    assert "data api" not in checks  # not a Supabase-like database
