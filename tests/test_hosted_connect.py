"""Registering a hosted warehouse in Metabase: its schema filter, pooler options and SSL, and the demo in a
schema of its own end to end through the fake Metabase.

Metabase's side, from its source: the postgres connection properties (driver/postgres.clj
`connection-properties`, `ssl-params`), the schema filter (driver/sync.clj `include-schema?`), what sync
reads (driver/postgres.clj `get-tables-sql`, `current-user-table-privileges`), `additional-options`
appended to the JDBC URL (sql_jdbc/common.clj), and uploaded secrets (secrets/models/secret.clj).
"""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest

from provisioner.config import Settings
from provisioner.connect import connect_database, metabase_connection
from provisioner.db.hosted import known_pooler, login_for_role, role_of_login
from provisioner.db.schema import TABLES, VIEWS
from provisioner.demo import run_demo
from provisioner.errors import ConfigError
from provisioner.metabase.setup import DATABASE_NAME, POOLER_JDBC_OPTIONS, postgres_details, setup_metabase
from provisioner.progress import RecordingProgress
from provisioner.runtime.external import ExternalRuntime
from provisioner.runtime.warehouse import resolve_warehouse
from provisioner.seeding import seed
from provisioner.state import StateDir
from tests.credentials import store_credentials
from tests.fake_metabase import sql as fake_sql
from tests.fake_metabase.server import FakeMetabase

PEM = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"


def _short_sleep(seconds: float) -> None:
    time.sleep(min(seconds, 0.05))


# --- what is sent ---------------------------------------------------------------------------------


def test_a_schema_limits_metabase_sync_to_it() -> None:
    details = postgres_details("postgresql://r:pw@db.example:5432/demo", schema="asset_finance").as_details()

    assert details["schema-filters-type"] == "inclusion"
    assert details["schema-filters-patterns"] == "asset_finance"
    everything = postgres_details("postgresql://r:pw@db.example:5432/demo").as_details()
    assert everything["schema-filters-type"] == "all" and "schema-filters-patterns" not in everything


@pytest.mark.parametrize("mode", ["disable", "allow", "prefer", None])
def test_an_sslmode_that_does_not_insist_registers_without_ssl(mode: str | None) -> None:
    query = f"?sslmode={mode}" if mode else ""
    details = postgres_details(f"postgresql://r:pw@db.example:5432/demo{query}").as_details()

    assert details["ssl"] is False and "ssl-mode" not in details and "ssl-root-cert-value" not in details


def test_sslmode_require_is_passed_as_metabase_ssl_mode() -> None:
    details = postgres_details("postgresql://r:pw@db.example:5432/demo?sslmode=require").as_details()

    assert (details["ssl"], details["ssl-mode"]) == (True, "require")
    assert "ssl-root-cert-options" not in details


@pytest.mark.parametrize("mode", ["verify-ca", "verify-full"])
def test_a_verifying_sslmode_uploads_the_root_certificate_named_by_the_dsn(tmp_path: Path, mode: str) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text(PEM)

    details = postgres_details(
        f"postgresql://r:pw@db.example:5432/demo?sslmode={mode}&sslrootcert={ca}"
    ).as_details()

    assert (details["ssl"], details["ssl-mode"]) == (True, mode)
    # Uploaded, not a path: Metabase may run in Docker or elsewhere, where the file is not.
    assert details["ssl-root-cert-options"] == "uploaded"
    assert details["ssl-root-cert-value"] == PEM
    assert "ssl-root-cert-path" not in details


@pytest.mark.parametrize(
    ("root_cert", "problem"),
    [
        ("system", "cannot be handed to Metabase"),
        ("{tmp}/missing.pem", "cannot read the root certificate"),
        ("{tmp}/not-pem.txt", "holds no PEM certificate"),
    ],
)
def test_a_root_certificate_metabase_cannot_be_given_is_a_config_error(
    tmp_path: Path, root_cert: str, problem: str
) -> None:
    (tmp_path / "not-pem.txt").write_text("hello")
    path = root_cert.format(tmp=tmp_path)

    with pytest.raises(ConfigError, match=problem) as caught:
        postgres_details(
            f"postgresql://r:Hidden-pw@db.example:5432/demo?sslmode=verify-full&sslrootcert={path}"
        )

    assert caught.value.hint and "sslrootcert" in caught.value.hint
    assert "Hidden-pw" not in caught.value.message + caught.value.hint


def test_behind_a_transaction_pooler_pgjdbc_never_prepares_on_the_server() -> None:
    details = postgres_details("postgresql://r:pw@db.example:6543/demo", transaction_pooler=True).as_details()

    assert details["additional-options"] == POOLER_JDBC_OPTIONS == "prepareThreshold=0"
    assert "additional-options" not in postgres_details("postgresql://r:pw@db.example:5432/demo").as_details()


@pytest.mark.parametrize(
    ("host", "port", "pooled"),
    [
        ("aws-0-eu-central-1.pooler.supabase.com", 6543, True),
        ("aws-0-eu-central-1.pooler.supabase.com", 5432, False),  # Supavisor's session mode
        ("db.abcdefgh.supabase.co", 6543, True),  # Supabase's dedicated PgBouncer
        ("db.abcdefgh.supabase.co", 5432, False),
        ("ep-cool-name-123456-pooler.eu-central-1.aws.neon.tech", 5432, True),
        ("ep-cool-name-123456.eu-central-1.aws.neon.tech", 5432, False),
        ("mydb.abc123.eu-west-1.rds.amazonaws.com", 5432, False),
    ],
)
def test_the_address_of_a_known_transaction_pooler_is_recognised_without_connecting(
    host: str, port: int, pooled: bool
) -> None:
    assert (known_pooler(host, port) is not None) is pooled


# --- the fake's sync honours the filter as Metabase's does ------------------------------------------


@pytest.mark.parametrize(
    ("kind", "patterns", "synced"),
    [
        ("inclusion", "a,b", {"a", "b"}),
        ("inclusion", "test*", {"test", "test_2"}),
        ("inclusion", "foo*,*bar", {"foo", "foobar", "xbar", "bar"}),
        ("inclusion", "foo  ,  ba*r  , baz", {"foo", "bar", "bazaar", "baz"}),
        ("inclusion", r"crazy\*schema", {"crazy*schema"}),
        ("exclusion", "a,test*", {"b", "foo", "foobar", "xbar", "bar", "baz", "bazaar", "public"}),
        ("all", "a", {"a", "b", "test", "test_2", "foo", "foobar", "xbar", "bar", "baz", "bazaar", "public"}),
        (
            "inclusion",
            "  ",
            {"a", "b", "test", "test_2", "foo", "foobar", "xbar", "bar", "baz", "bazaar", "public"},
        ),
    ],
)
def test_the_fakes_schema_filter_follows_metabases_patterns(
    kind: str, patterns: str, synced: set[str]
) -> None:
    schemas = {"a", "b", "test", "test_2", "foo", "foobar", "xbar", "bar", "baz", "bazaar", "public"}
    schemas |= {"crazy*schema", "crazyXschema"} if "crazy" in patterns else set()
    keeps = fake_sql.schema_filter({"schema-filters-type": kind, "schema-filters-patterns": patterns})

    assert {s for s in schemas if keeps(s)} == synced
    assert not keeps("metabase_cache_1a2b_7")


def test_the_fakes_sync_reads_only_what_the_user_may_select_in_the_schemas_it_filters(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA shop; CREATE TABLE shop.orders (id int primary key); ")
        conn.execute("CREATE TABLE shop.secrets (id int); CREATE TABLE public.notes (id int)")
        conn.execute("CREATE TABLE shop.lines (id int, order_id int REFERENCES shop.orders)")
        role = "fake_sync_" + str(abs(hash(pg_dsn)) % 10**8)
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'pw-{role}'")
        conn.execute(f"GRANT USAGE ON SCHEMA shop TO {role}")
        conn.execute(f"GRANT SELECT ON shop.orders, shop.lines, public.notes TO {role}")
    info = psycopg.conninfo.conninfo_to_dict(pg_dsn)
    details = {"host": "127.0.0.1", "port": int(info["port"]), "dbname": info["dbname"], "user": role}
    details["password"] = f"pw-{role}"
    try:
        everything = fake_sql.introspect(details)
        only_shop = fake_sql.introspect(
            {**details, "schema-filters-type": "inclusion", "schema-filters-patterns": "shop"}
        )
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")

    assert {(t["schema"], t["name"]) for t in everything} == {
        ("shop", "orders"),
        ("shop", "lines"),
        ("public", "notes"),
    }
    assert {(t["schema"], t["name"]) for t in only_shop} == {("shop", "orders"), ("shop", "lines")}
    lines = next(t for t in only_shop if t["name"] == "lines")
    assert next(c for c in lines["columns"] if c["name"] == "order_id")["fk_target"] == ["orders", "id"]


# --- the demo in its own schema, end to end -----------------------------------------------------------


@pytest.fixture
def external(fake_metabase: FakeMetabase, pg_dsn: str, clean_environ: Path) -> Settings:
    return Settings.load({}, home=clean_environ, metabase_url=fake_metabase.url, database_url=pg_dsn)


def _source_table(query: dict) -> object:
    """The source table of a query-builder query, MBQL 5 (stages) or legacy."""
    stages = query.get("stages") or [query.get("query") or {}]
    return stages[0].get("source-table")


def _demo_database(fake: FakeMetabase) -> dict:
    [database] = [d for d in fake.state.databases.values() if d["name"] == DATABASE_NAME]
    return database


def test_the_demo_seeded_in_its_own_schema_syncs_only_it_and_every_card_runs(
    external: Settings, fake_metabase: FakeMetabase, pg_dsn: str
) -> None:
    seeded = seed(external, as_of=None, reset=False, force=False, port=None, schema="asset_finance")
    # A same-named view in public that Metabase's role may read: without the schema filter it would be
    # synced too, and the bare name `v_portfolio_overview` the dashboards use would be ambiguous.
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE VIEW public.v_portfolio_overview AS SELECT 1 AS decoy")
        conn.execute(f"GRANT SELECT ON public.v_portfolio_overview TO {seeded.reader.role}")

    cold = run_demo(
        external, runtime=ExternalRuntime(external), progress=RecordingProgress(), sleep=_short_sleep
    )

    assert cold.failed_cards == [] and cold.dashboards
    database = _demo_database(fake_metabase)
    assert database["details"]["schema-filters-type"] == "inclusion"
    assert database["details"]["schema-filters-patterns"] == "asset_finance"
    synced = {(t["schema"], t["name"]) for t in database["tables"]}
    assert synced == {("asset_finance", name) for name in (*TABLES, *VIEWS)}
    # Every question reads the demo's schema.
    table_schemas = {t["id"]: t["schema"] for t in database["tables"]}
    sources = [_source_table(card["dataset_query"]) for card in fake_metabase.cards()]
    assert {table_schemas[s] for s in sources if isinstance(s, int)} == {"asset_finance"}

    fake_metabase.clear_requests()
    again = run_demo(
        external, runtime=ExternalRuntime(external), progress=RecordingProgress(), sleep=_short_sleep
    )
    assert again.changed is False and fake_metabase.mutating_requests() == []


def test_the_reader_names_the_views_bare_in_the_demos_schema(external: Settings) -> None:
    seed(external, as_of=None, reset=False, force=False, port=None, schema="asset_finance")
    reader = StateDir(external.home).credentials().reader
    assert reader is not None
    dsn = psycopg.conninfo.make_conninfo(
        external.database_url.get_secret_value() if external.database_url else "",
        user=reader.user,
        password=reader.password.get_secret_value(),
    )

    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT count(*) FROM v_account_risk_dashboard").fetchone()

    assert rows is not None and rows[0] == 15


def test_moving_the_demo_to_another_schema_updates_the_filter_once(
    external: Settings, fake_metabase: FakeMetabase
) -> None:
    setup_metabase(external, progress=RecordingProgress())
    seed(external, as_of=None, reset=False, force=False, port=None)
    first = connect_database(external, progress=RecordingProgress(), sleep=_short_sleep)
    seed(external, as_of=None, reset=False, force=False, port=None, schema="moved")

    moved = connect_database(external, progress=RecordingProgress(), sleep=_short_sleep)
    fake_metabase.clear_requests()
    again = connect_database(external, progress=RecordingProgress(), sleep=_short_sleep)

    assert first.schema_name == "public" and first.action == "created"
    assert moved.schema_name == "moved" and moved.action == "updated"
    assert again.action == "unchanged" and fake_metabase.mutating_requests() == []
    database = _demo_database(fake_metabase)
    assert database["details"]["schema-filters-patterns"] == "moved"
    assert {t["schema"] for t in database["tables"]} == {"moved"}


# --- Supabase's shared pooler names the project in the user ------------------------------------------

SUPAVISOR = "postgresql://postgres.abcdefghijkl:pw@aws-0-eu-central-1.pooler.supabase.com:6543/postgres"


def test_on_supabases_shared_pooler_a_role_logs_in_with_the_project_ref() -> None:
    assert login_for_role(SUPAVISOR, "metabase_reader") == "metabase_reader.abcdefghijkl"
    assert role_of_login(SUPAVISOR.replace("postgres.", "metabase_reader.", 1)) == "metabase_reader"
    direct = "postgresql://postgres:pw@db.abcdefghijkl.supabase.co:5432/postgres"
    assert login_for_role(direct, "metabase_reader") == "metabase_reader"
    assert role_of_login(direct) == "postgres"


def test_metabase_logs_in_as_the_reader_of_the_project_through_supabases_pooler(clean_environ: Path) -> None:
    settings = Settings.load({}, home=clean_environ, database_url=SUPAVISOR)
    store_credentials(
        clean_environ,
        reader={
            "user": "metabase_reader",
            "password": "Reader-pw-1",
            "host": "aws-0-eu-central-1.pooler.supabase.com",
            "port": 6543,
            "dbname": "postgres",
        },
    )

    connection = metabase_connection(settings, resolve_warehouse(settings, start=False))

    parts = psycopg.conninfo.conninfo_to_dict(connection.dsn.get_secret_value())
    assert (parts["user"], parts["password"], parts["port"]) == (
        "metabase_reader.abcdefghijkl",
        "Reader-pw-1",
        "6543",
    )
