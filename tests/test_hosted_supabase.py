"""A Supabase-like database: the demo in its own schema, and nothing of it readable by the Data API roles.

Supabase creates the roles `anon` and `authenticated`, grants them USAGE on `public` and, through default
privileges, ALL on every table later created there (supabase/postgres,
migrations/db/init-scripts/00000000000000-initial-schema.sql; `for role postgres` in projects' dumps). The
module simulates exactly that in its own databases of the session's server. Roles are cluster-wide: the
module creates them once, tests run one after another, and the teardown removes them.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from datetime import date

import psycopg
import pytest
from psycopg import sql
from pydantic import SecretStr
from typer.testing import CliRunner

from provisioner.cli.app import app
from provisioner.db.hosted import DATA_API_ROLES, DEDICATED_SCHEMA
from provisioner.db.roles import with_credentials
from provisioner.db.schema import META_TABLE, TABLES, VIEWS
from provisioner.db.seed import SeedResult, find_demo_schema, seed_database, seed_status
from provisioner.doctor import check_data_api_exposure
from provisioner.errors import ConfigError
from tests.conftest import PgServer

AS_OF = date(2026, 3, 31)
SUPABASE_ROLES = (*DATA_API_ROLES, "service_role")
DEMO_OBJECTS = (*TABLES, *VIEWS, META_TABLE)
# What Supabase runs when it sets a project up, for the user who creates tables (`postgres`).
SUPABASE_DEFAULTS = """
GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON SEQUENCES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON FUNCTIONS TO anon, authenticated, service_role;
"""


class SupabaseLike:
    """The module's Supabase roles; `database()` makes a database with Supabase's grants and defaults."""

    def __init__(self, server: PgServer) -> None:
        self.server = server
        self.databases: list[str] = []

    def database(self) -> str:
        dsn = self.server.create_database("supa")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(SUPABASE_DEFAULTS)
        self.databases.append(dsn)
        return dsn


@pytest.fixture(scope="module")
def supabase(pg_server: PgServer) -> Iterator[SupabaseLike]:
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        existing = {r[0] for r in conn.execute("SELECT rolname FROM pg_roles").fetchall()}
        created = [role for role in SUPABASE_ROLES if role not in existing]
        for role in created:
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN NOINHERIT").format(sql.Identifier(role)))
    like = SupabaseLike(pg_server)
    try:
        yield like
    finally:
        for dsn in like.databases:
            with psycopg.connect(dsn, autocommit=True) as conn:
                for role in created:
                    conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
            for role in created:
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def _seed(dsn: str, **options: object) -> tuple[SeedResult, str]:
    """Seed as the owner with a reader role of this test's own; (result, the reader's DSN)."""
    role, password = f"reader_{uuid.uuid4().hex[:10]}", secrets.token_urlsafe(16)
    result = seed_database(dsn, as_of=AS_OF, reader_password=password, reader_role=role, **options)  # type: ignore[arg-type]
    return result, with_credentials(dsn, role, password)


def _readable_as(dsn: str, role: str, schema: str) -> list[str]:
    """The demo objects a SELECT as `role` succeeds on (what the Data API would serve it)."""
    readable = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
        for name in DEMO_OBJECTS:
            try:
                conn.execute(sql.SQL("SELECT 1 FROM {} LIMIT 1").format(sql.Identifier(schema, name)))
                readable.append(name)
            except (psycopg.errors.InsufficientPrivilege, psycopg.errors.UndefinedTable):
                pass
    return readable


def test_the_simulation_exposes_tables_created_in_public_as_supabase_does(supabase: SupabaseLike) -> None:
    dsn = supabase.database()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE customers (phone text)")
    assert _readable_as(dsn, "anon", "public") == ["customers"]


def test_seed_on_supabase_puts_the_demo_in_its_own_schema_that_anon_and_authenticated_cannot_read(
    supabase: SupabaseLike,
) -> None:
    dsn = supabase.database()

    result, reader_dsn = _seed(dsn)

    assert result.schema_name == DEDICATED_SCHEMA
    assert result.data_api is not None
    assert result.data_api.dedicated_schema is True
    assert result.data_api.readable == []
    assert f"its own schema {DEDICATED_SCHEMA}" in result.data_api.summary
    for role in DATA_API_ROLES:
        assert _readable_as(dsn, role, DEDICATED_SCHEMA) == []
    # Nothing of the demo landed in the exposed schema.
    with psycopg.connect(dsn) as conn:
        in_public = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename = ANY(%s)",
            (list(DEMO_OBJECTS),),
        ).fetchone()
    assert in_public == (0,)
    # Metabase's reader reads every demo object, and nothing outside the schema.
    with psycopg.connect(reader_dsn) as conn:
        for name in (*TABLES, *VIEWS):
            conn.execute(sql.SQL("SELECT 1 FROM {} LIMIT 1").format(sql.Identifier(DEDICATED_SCHEMA, name)))
        elsewhere = conn.execute(
            "SELECT count(*) FROM information_schema.role_table_grants "
            "WHERE grantee = current_user AND table_schema <> %s",
            (DEDICATED_SCHEMA,),
        ).fetchone()
    assert elsewhere == (0,)


def test_seed_into_public_on_supabase_revokes_the_66_grants_default_privileges_gave(
    supabase: SupabaseLike,
) -> None:
    dsn = supabase.database()

    result, reader_dsn = _seed(dsn, schema="public")

    assert result.schema_name == "public"
    assert result.data_api is not None and result.data_api.dedicated_schema is False
    # 24 tables, 8 views and provision_meta, each granted to anon and authenticated.
    assert result.data_api.revoked == 2 * 33
    assert result.data_api.readable == []
    assert "revoked the grants anon and authenticated had on 66" in result.data_api.summary
    for role in DATA_API_ROLES:
        assert _readable_as(dsn, role, "public") == []
    with psycopg.connect(reader_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM v_portfolio_overview").fetchone() is not None


def test_a_rebuild_revokes_again_and_a_rerun_has_nothing_to_revoke(supabase: SupabaseLike) -> None:
    dsn = supabase.database()
    _seed(dsn, schema="public")

    rebuilt, _ = _seed(dsn, reset=True)
    rerun, _ = _seed(dsn)

    # Reseeding finds the demo where it is (public), and the rebuilt objects got the default grants again.
    assert rebuilt.schema_name == rerun.schema_name == "public"
    assert rebuilt.data_api is not None and rebuilt.data_api.revoked == 66
    assert rerun.changed is False
    assert rerun.data_api is not None and rerun.data_api.revoked == 0 and rerun.data_api.readable == []
    assert _readable_as(dsn, "anon", "public") == []


def test_a_schema_anon_may_use_is_still_closed_by_revokes(supabase: SupabaseLike) -> None:
    dsn = supabase.database()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA api")
        conn.execute("GRANT USAGE ON SCHEMA api TO anon, authenticated")
        conn.execute("ALTER DEFAULT PRIVILEGES IN SCHEMA api GRANT SELECT ON TABLES TO anon, authenticated")

    result, _ = _seed(dsn, schema="api")

    assert result.data_api is not None and result.data_api.revoked == 66
    assert _readable_as(dsn, "anon", "api") == []
    assert _readable_as(dsn, "authenticated", "api") == []


def test_seed_cli_says_where_the_demo_went_and_what_anon_can_read(supabase: SupabaseLike) -> None:
    dsn = supabase.database()

    done = CliRunner().invoke(
        app, ["seed", "--database-url", dsn, "--schema", "demo", "--as-of", "2026-03-31"]
    )

    assert done.exit_code == 0, done.stderr
    assert "  schema: demo" in done.stdout
    assert (
        "Data API: Supabase-like roles anon and authenticated exist: the demo is in schema demo"
        in done.stdout
    )
    assert "they can read none of it" in done.stdout
    assert _readable_as(dsn, "anon", "demo") == []
    status = seed_status(dsn)
    assert status is not None and status.schema_name == "demo"
    assert "in schema demo" in status.summary


def test_the_demo_schema_is_found_where_it_was_seeded_last(pg_dsn: str) -> None:
    first, _ = _seed(pg_dsn)
    later, _ = _seed(pg_dsn, schema="warehouse")

    assert first.schema_name == "public" and first.data_api is None
    assert later.schema_name == "warehouse"
    assert find_demo_schema(pg_dsn) == "warehouse"
    # Without --schema a reseed goes where the demo was seeded last, not to a third place.
    again, _ = _seed(pg_dsn)
    assert again.schema_name == "warehouse" and again.changed is False


@pytest.mark.parametrize("name", ["Demo", "pg_demo", "information_schema", "a-b", ""])
def test_a_schema_name_that_cannot_hold_the_demo_is_refused_before_anything_is_written(
    pg_dsn: str, name: str
) -> None:
    with pytest.raises(ConfigError, match="cannot hold the demo"):
        _seed(pg_dsn, schema=name)
    assert seed_status(pg_dsn) is None


def test_doctor_flags_demo_objects_the_data_api_can_read_and_seed_closes_them(supabase: SupabaseLike) -> None:
    dsn = supabase.database()
    _seed(dsn, schema="public")
    closed = check_data_api_exposure(SecretStr(dsn))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("GRANT SELECT ON public.customers TO anon")  # someone opened it again

    opened = check_data_api_exposure(SecretStr(dsn))
    _seed(dsn)
    reclosed = check_data_api_exposure(SecretStr(dsn))

    assert closed is not None and closed.ok and "can read nothing of the demo" in closed.detail
    assert opened is not None and not opened.ok
    assert "anon: public.customers" in opened.detail and "exposed public schema" in opened.detail
    assert "provision seed" in (opened.hint or "") and f"--schema {DEDICATED_SCHEMA}" in (opened.hint or "")
    assert reclosed is not None and reclosed.ok


def test_doctor_has_no_data_api_line_where_nothing_is_granted_to_those_roles(pg_dsn: str) -> None:
    _seed(pg_dsn)
    assert check_data_api_exposure(SecretStr(pg_dsn)) is None
