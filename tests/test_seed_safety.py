"""Seeding is idempotent, all-or-nothing, and never clobbers objects it does not own."""

from __future__ import annotations

import hashlib
import uuid
from datetime import date

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

import provisioner.db.seed as seed_module
from provisioner.db.roles import with_credentials
from provisioner.db.schema import META_TABLE, TABLES, VIEWS
from provisioner.db.seed import seed_database
from provisioner.errors import DatabaseError, OwnershipError
from provisioner.progress import RecordingProgress

AS_OF = date(2026, 1, 15)


def _role() -> str:
    return f"reader_{uuid.uuid4().hex[:10]}"


def _rows_checksum(dsn: str) -> str:
    """Every row of every demo table, fetched and hashed here (independent of the tool's checksum)."""
    digest = hashlib.sha256()
    with psycopg.connect(dsn) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        for table in TABLES:
            cur = conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(table)))
            rows = sorted(repr(row) for row in cur.fetchall())
            digest.update(f"{table}:{len(rows)}\n".encode())
            for row in rows:
                digest.update(row.encode() + b"\n")
    return digest.hexdigest()


def _demo_objects(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND relname = ANY(%s)",
            ([*TABLES, *VIEWS, META_TABLE],),
        ).fetchall()
    return sorted(r[0] for r in rows)


def test_reseed_leaves_identical_data_and_reports_no_change(pg_dsn: str) -> None:
    role = _role()
    first = seed_database(pg_dsn, as_of=AS_OF, reader_password="pw-one-1234", reader_role=role)
    before = _rows_checksum(pg_dsn)
    second = seed_database(pg_dsn, as_of=AS_OF, reader_password="pw-one-1234", reader_role=role)
    assert first.changed is True
    assert second.changed is False
    assert second.checksum == first.checksum
    assert _rows_checksum(pg_dsn) == before


def test_reset_rebuilds_to_the_same_data(pg_dsn: str) -> None:
    role = _role()
    first = seed_database(pg_dsn, as_of=AS_OF, reader_password="pw-two-1234", reader_role=role)
    before = _rows_checksum(pg_dsn)
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("DELETE FROM collection_actions")  # damage that only a rebuild repairs
    rebuilt = seed_database(pg_dsn, as_of=AS_OF, reset=True, reader_password="pw-two-1234", reader_role=role)
    assert rebuilt.changed is True
    assert rebuilt.checksum == first.checksum
    assert _rows_checksum(pg_dsn) == before


def test_manual_edits_are_repaired_by_a_plain_reseed(pg_dsn: str) -> None:
    role = _role()
    first = seed_database(pg_dsn, as_of=AS_OF, reader_password="pw-three-123", reader_role=role)
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("UPDATE payments SET amount = amount + 1 WHERE id = 1")
    again = seed_database(pg_dsn, as_of=AS_OF, reader_password="pw-three-123", reader_role=role)
    assert again.changed is True
    assert again.checksum == first.checksum


def test_another_as_of_date_shifts_every_date_by_the_same_days(pg_dsn: str) -> None:
    role = _role()
    seed_database(pg_dsn, as_of=AS_OF, reader_password="pw-four-1234", reader_role=role)
    query = "SELECT min(paid_on), max(paid_on), max(opened_at) FROM payments, events"
    with psycopg.connect(pg_dsn) as conn:
        before = conn.execute(query).fetchone()
    later = date(2026, 2, 25)
    result = seed_database(pg_dsn, as_of=later, reader_password="pw-four-1234", reader_role=role)
    with psycopg.connect(pg_dsn) as conn:
        after = conn.execute(query).fetchone()
    shift = later - AS_OF
    assert result.changed is True and result.as_of == later
    assert after == tuple(value + shift for value in before)


def test_failure_mid_seed_leaves_nothing_behind(pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(conn: psycopg.Connection) -> None:
        raise DatabaseError("injected failure while deriving snapshots")

    monkeypatch.setattr(seed_module, "_derive_tables", broken)
    role = _role()
    with pytest.raises(DatabaseError, match="injected"):
        seed_database(pg_dsn, as_of=AS_OF, reader_password="pw-five-1234", reader_role=role)
    assert _demo_objects(pg_dsn) == []
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is None


def test_failed_rebuild_keeps_the_previous_data(pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    role = _role()
    first = seed_database(pg_dsn, as_of=AS_OF, reader_password="pw-six-12345", reader_role=role)
    before = _rows_checksum(pg_dsn)

    def broken(conn: psycopg.Connection, as_of: date, progress: object, scale: int) -> None:
        conn.execute("INSERT INTO oems (id, name, country) VALUES (1, 'duplicate', 'x'), (1, 'again', 'y')")

    monkeypatch.setattr(seed_module, "_load_seed_files", broken)
    with pytest.raises(DatabaseError) as caught:
        seed_database(
            pg_dsn, as_of=date(2026, 2, 1), reset=True, reader_password="pw-six-12345", reader_role=role
        )
    assert "nothing was written" in (caught.value.hint or "")
    assert _rows_checksum(pg_dsn) == before
    assert seed_module.seed_status(pg_dsn).as_of == first.as_of  # type: ignore[union-attr]


def test_refuses_to_replace_a_same_named_table_it_does_not_own(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("CREATE TABLE customers (their_column text)")
        conn.execute("INSERT INTO customers VALUES ('precious')")
        conn.execute("CREATE VIEW v_open_events AS SELECT 1 AS x")
    with pytest.raises(OwnershipError) as caught:
        seed_database(pg_dsn, as_of=AS_OF, reader_password="pw-seven-123", reader_role=_role())
    assert "customers" in caught.value.message and "v_open_events" in caught.value.message
    assert "--force" in (caught.value.hint or "")
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT their_column FROM customers").fetchall() == [("precious",)]
        assert conn.execute("SELECT to_regclass('oems')").fetchone() == (None,)


def test_force_replaces_foreign_same_named_objects(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("CREATE TABLE customers (their_column text)")
    progress = RecordingProgress()
    result = seed_database(
        pg_dsn,
        as_of=AS_OF,
        force=True,
        reader_password="pw-eight-123",
        reader_role=_role(),
        progress=progress,
    )
    assert result.counts["customers"] == 12
    assert any(kind == "warn" and "customers" in text for kind, text in progress.lines)
    # Now it is ours: a plain reseed needs no --force.
    assert (
        seed_database(pg_dsn, as_of=AS_OF, reader_password="pw-eight-123", reader_role=_role()).changed
        is False
    )


def test_a_foreign_provision_meta_does_not_count_as_ownership(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("CREATE TABLE provision_meta (note text)")
    with pytest.raises(OwnershipError, match="provision_meta"):
        seed_database(pg_dsn, as_of=AS_OF, reader_password="pw-nine-1234", reader_role=_role())


def test_rebuild_refuses_to_drop_objects_that_depend_on_the_demo(pg_dsn: str) -> None:
    role = _role()
    seed_database(pg_dsn, as_of=AS_OF, reader_password="pw-ten-12345", reader_role=role)
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("CREATE VIEW their_report AS SELECT id FROM oems")
    with pytest.raises(OwnershipError, match="depend"):
        seed_database(pg_dsn, as_of=AS_OF, reset=True, reader_password="pw-ten-12345", reader_role=role)
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM their_report").fetchone() == (4,)


# -- the reader role where the seeding user may not create roles ----------------------------


def _limited_owner(pg_server, dsn: str) -> str:
    """A login that owns the database (may create tables) but may not create roles; its DSN."""
    user, password = f"owner_{uuid.uuid4().hex[:10]}", "owner-pw-1234"
    dbname = dsn.rsplit("/", 1)[1]
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(user), sql.Literal(password))
        )
        conn.execute(
            sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(dbname), sql.Identifier(user))
        )
    return with_credentials(dsn, user, password)


def test_without_createrole_seed_warns_once_and_reports_the_dba_sql(pg_server, pg_dsn: str) -> None:
    owner_dsn = _limited_owner(pg_server, pg_dsn)
    role = _role()
    progress = RecordingProgress()
    result = seed_database(
        owner_dsn, as_of=AS_OF, reader_password="never-used-1", reader_role=role, progress=progress
    )
    assert result.counts["payments"] == 63
    warnings = [text for kind, text in progress.lines if kind == "warn"]
    assert len(warnings) == 1 and role in warnings[0]
    assert result.reader.fallback_warning == warnings[0]
    assert result.reader.password_set is False and result.reader.created is False
    dba_sql = result.reader.dba_sql or ""
    assert f"CREATE ROLE {role} LOGIN" in dba_sql
    assert "GRANT SELECT ON" in dba_sql and "public.v_open_events" in dba_sql
    assert "never-used-1" not in dba_sql
    # The SQL really works when a DBA runs it (with a password of their choosing).
    with psycopg.connect(pg_server.dsn(pg_dsn.rsplit("/", 1)[1]), autocommit=True) as admin:
        admin.execute(dba_sql.replace("choose-a-password", "dba-chosen-pw"))
    reader = with_credentials(pg_dsn, role, "dba-chosen-pw")
    with psycopg.connect(reader) as conn:
        assert conn.execute("SELECT count(*) FROM v_collection_priority").fetchone() == (10,)


def test_existing_foreign_role_keeps_its_password_but_gets_read_access(pg_server, pg_dsn: str) -> None:
    role = _role()
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'theirs-123'").format(sql.Identifier(role)))
    result = seed_database(pg_dsn, as_of=AS_OF, reader_password="ours-12345", reader_role=role)
    assert result.reader.password_set is False and result.reader.fallback_warning
    with psycopg.connect(with_credentials(pg_dsn, role, "theirs-123")) as conn:
        assert conn.execute("SELECT count(*) FROM v_open_events").fetchone() == (10,)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(with_credentials(pg_dsn, role, "ours-12345")).close()


def test_reader_password_with_url_special_characters_logs_in(pg_dsn: str) -> None:
    role, password = _role(), "p@ss:w/rd?#%'\""
    result = seed_database(pg_dsn, as_of=AS_OF, reader_password=password, reader_role=role)
    assert result.reader.password_set
    dsn = with_credentials(pg_dsn, role, password)
    assert conninfo_to_dict(dsn)["password"] == password
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM accounts").fetchone() == (15,)


def test_public_create_on_the_schema_is_reported_not_silently_kept(pg_server, pg_dsn: str) -> None:
    dbname = pg_dsn.rsplit("/", 1)[1]
    with psycopg.connect(pg_server.dsn(dbname), autocommit=True) as conn:
        conn.execute("GRANT CREATE ON SCHEMA public TO PUBLIC")  # what PostgreSQL 13/14 ship with
    progress = RecordingProgress()
    result = seed_database(
        pg_dsn, as_of=AS_OF, reader_password="pw-eleven-12", reader_role=_role(), progress=progress
    )
    assert (
        result.reader.schema_warning
        and "REVOKE CREATE ON SCHEMA public FROM PUBLIC" in result.reader.schema_warning
    )
    assert ("warn", result.reader.schema_warning) in progress.lines
    assert result.reader.fallback_warning is None


def test_default_schema_privileges_raise_no_schema_warning(pg_dsn: str) -> None:
    result = seed_database(pg_dsn, as_of=AS_OF, reader_password="pw-twelve-12", reader_role=_role())
    assert result.reader.schema_warning is None
