"""Which warehouse and which login: resolve_warehouse, the reader credentials, metabase_connection."""

from __future__ import annotations

import stat
import uuid
from datetime import date
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from pydantic import SecretStr

from provisioner.config import Settings
from provisioner.connect import metabase_connection
from provisioner.db.roles import with_credentials
from provisioner.errors import DatabaseError
from provisioner.runtime.warehouse import DEMO_DATABASE, Warehouse, destroy_embedded, resolve_warehouse
from provisioner.seeding import seed
from provisioner.state import StateDir
from tests.credentials import store_credentials, stored_section

AS_OF = date(2026, 1, 31)


def _settings(home: Path, **values: str) -> Settings:
    return Settings.load({}, home=home, **values)


def _warehouse(
    dsn: str = "postgresql://owner:owner-pw@db.example.com:6543/demo?sslmode=require",
) -> Warehouse:
    return Warehouse(dsn=SecretStr(dsn), host="db.example.com", port=6543, dbname="demo", embedded=False)


def test_external_warehouse_is_parsed_without_connecting(clean_environ: Path) -> None:
    dsn = "postgresql://owner:owner-pw@db.invalid:6543/demo?sslmode=require"
    warehouse = resolve_warehouse(_settings(clean_environ, database_url=dsn))
    assert (warehouse.host, warehouse.port, warehouse.dbname, warehouse.embedded) == (
        "db.invalid",
        6543,
        "demo",
        False,
    )
    assert warehouse.dsn.get_secret_value() == dsn


def test_external_warehouse_defaults_to_port_5432(clean_environ: Path) -> None:
    warehouse = resolve_warehouse(_settings(clean_environ, database_url="postgresql://u:p@db.invalid/demo"))
    assert warehouse.port == 5432


def test_embedded_warehouse_not_running_without_start_is_an_error(clean_environ: Path) -> None:
    with pytest.raises(DatabaseError) as caught:
        resolve_warehouse(_settings(clean_environ), start=False)
    assert "provision db start" in (caught.value.hint or "")


def test_destroy_embedded_without_data_reports_nothing_deleted(clean_environ: Path) -> None:
    assert destroy_embedded(_settings(clean_environ)) is False
    assert DEMO_DATABASE == "asset_finance"


# -- metabase_connection precedence ---------------------------------------------------------


def test_reader_url_wins_over_stored_credentials(clean_environ: Path) -> None:
    store_credentials(clean_environ, reader={"user": "metabase_reader", "password": "stored-pw"})
    settings = _settings(clean_environ, reader_database_url="postgresql://ro:ro-pw@elsewhere:5432/demo")
    connection = metabase_connection(settings, _warehouse())
    assert connection.is_reader and connection.warning is None
    assert connection.dsn.get_secret_value() == "postgresql://ro:ro-pw@elsewhere:5432/demo"


def test_stored_reader_credentials_on_the_warehouse_location(clean_environ: Path) -> None:
    store_credentials(
        clean_environ,
        reader={
            "user": "metabase_reader",
            "password": "st@red/pw",
            "host": "db.example.com",
            "port": 6543,
            "dbname": "demo",
        },
    )
    connection = metabase_connection(_settings(clean_environ), _warehouse())
    assert connection.is_reader and connection.warning is None
    assert conninfo_to_dict(connection.dsn.get_secret_value()) == {
        "user": "metabase_reader",
        "password": "st@red/pw",
        "host": "db.example.com",
        "port": "6543",
        "dbname": "demo",
        "sslmode": "require",
    }


def test_credentials_stored_for_another_warehouse_are_not_used(clean_environ: Path) -> None:
    store_credentials(
        clean_environ,
        reader={"user": "metabase_reader", "password": "pw", "host": "other.example.com", "port": 5432},
    )
    connection = metabase_connection(_settings(clean_environ), _warehouse())
    assert connection.is_reader is False


def test_without_a_reader_metabase_gets_the_owner_dsn_and_a_warning(clean_environ: Path) -> None:
    connection = metabase_connection(_settings(clean_environ), _warehouse())
    assert connection.is_reader is False
    assert connection.dsn.get_secret_value() == _warehouse().dsn.get_secret_value()
    assert connection.warning and "can write" in connection.warning
    assert "owner-pw" not in connection.warning


# -- the seed core: reader credentials ------------------------------------------------------


def test_seed_stores_a_reader_login_that_metabase_connection_uses(pg_dsn: str, clean_environ: Path) -> None:
    settings = _settings(clean_environ, database_url=pg_dsn)
    first = seed(settings, as_of=AS_OF, reset=False, force=False, port=None)
    state = StateDir(clean_environ)
    stored = stored_section(state.root, "reader")
    assert first.reader.password_set and stored is not None
    assert stat.S_IMODE(state.credentials_file.stat().st_mode) == 0o600
    seed(settings, as_of=AS_OF, reset=False, force=False, port=None)
    assert stored_section(state.root, "reader") == stored  # the password is generated once, then reused

    connection = metabase_connection(settings, resolve_warehouse(settings))
    assert connection.is_reader
    with psycopg.connect(connection.dsn.get_secret_value()) as conn:
        assert conn.execute("SELECT count(*) FROM v_open_events").fetchone() == (10,)


def test_seed_grants_the_reader_url_role_and_stores_nothing(
    pg_server, pg_dsn: str, clean_environ: Path
) -> None:
    role = f"theirs_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'their-pw-12'").format(sql.Identifier(role)))
    reader_dsn = with_credentials(pg_dsn, role, "their-pw-12")
    settings = _settings(clean_environ, database_url=pg_dsn, reader_database_url=reader_dsn)
    result = seed(settings, as_of=AS_OF, reset=False, force=False, port=None)
    assert result.reader.role == role and result.reader.fallback_warning is None
    assert stored_section(clean_environ, "reader") is None
    with psycopg.connect(reader_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM v_portfolio_overview").fetchone() == (15,)


def test_seed_warns_when_the_reader_url_role_does_not_exist(pg_dsn: str, clean_environ: Path) -> None:
    role = f"missing_{uuid.uuid4().hex[:10]}"
    settings = _settings(
        clean_environ, database_url=pg_dsn, reader_database_url=with_credentials(pg_dsn, role, "pw-123456")
    )
    result = seed(settings, as_of=AS_OF, reset=False, force=False, port=None)
    assert result.counts["events"] == 10
    assert result.reader.fallback_warning and "does not exist" in result.reader.fallback_warning
    assert f"CREATE ROLE {role} LOGIN" in (result.reader.dba_sql or "")


def test_looking_at_the_embedded_warehouse_changes_nothing(clean_environ: Path) -> None:
    settings = Settings.load({"PROVISION_HOME": str(clean_environ)})
    started = resolve_warehouse(settings, start=True)
    admin = started.dsn.get_secret_value().rsplit("/", 1)[0] + "/postgres"
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(DEMO_DATABASE)))

        looked = resolve_warehouse(settings, start=False)  # what status and doctor do

        assert looked.port == started.port
        with psycopg.connect(admin) as conn:
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DEMO_DATABASE]).fetchall()
        assert found == []
        resolve_warehouse(settings, start=True)  # what seed and demo do: created again
        with psycopg.connect(admin) as conn:
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DEMO_DATABASE]).fetchall()
        assert found == [(1,)]
    finally:
        destroy_embedded(settings)


def test_unknown_option_in_the_url_is_a_database_error_without_the_password() -> None:
    from provisioner.db.connection import connect
    from provisioner.errors import DatabaseError

    with pytest.raises(DatabaseError) as caught:
        connect("postgresql://someone:sekret-pw-123@127.0.0.1:1/db?no_such_option=1")
    assert "no_such_option" in caught.value.message
    assert "sekret-pw-123" not in caught.value.message
    assert caught.value.hint


def test_lost_superuser_password_is_explained_not_replaced(clean_environ) -> None:
    from provisioner.config import Settings
    from provisioner.errors import DatabaseError
    from provisioner.runtime.warehouse import db_status, resolve_warehouse
    from provisioner.state import StateDir

    settings = Settings.load({}, home=clean_environ)
    data_dir = StateDir(clean_environ).postgres_dir / "data"
    data_dir.mkdir(parents=True)
    (data_dir / "PG_VERSION").write_text("16\n")  # a cluster initialised with a password we lost
    with pytest.raises(DatabaseError) as caught:
        resolve_warehouse(settings)
    assert "password" in caught.value.message and "down --volumes" in (caught.value.hint or "")
    assert stored_section(clean_environ, "postgres") is None  # no made-up password stored
    assert db_status(settings).running is False
