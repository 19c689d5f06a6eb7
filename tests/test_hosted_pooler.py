"""Behind a real PgBouncer in transaction mode: what a pooler breaks, and the tool working through it.

A transaction-mode pooler (Supabase's on 6543, PgBouncer, Neon's) gives each transaction whichever
server connection is free: server-side prepared statements and anything set for a session do not
survive the transaction, or turn up in someone else's.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import date

import psycopg

from provisioner.db.connection import connect
from provisioner.db.hosted import find_transaction_pooler
from provisioner.db.roles import with_credentials
from provisioner.db.seed import seed_database, seed_status
from tests.conftest import PgServer
from tests.pgbouncer import Bouncer

AS_OF = date(2026, 3, 31)


def _seed(dsn: str, **options: object) -> str:
    """Seed `dsn` with a reader of this test's own; the reader's DSN (same host and port)."""
    role, password = f"reader_{uuid.uuid4().hex[:10]}", secrets.token_urlsafe(16)
    seed_database(dsn, as_of=AS_OF, reader_password=password, reader_role=role, **options)  # type: ignore[arg-type]
    return with_credentials(dsn, role, password)


def test_the_pooler_runs_two_clients_on_one_server_process(pg_dsn: str, pgbouncer: Bouncer) -> None:
    pooled = pgbouncer.dsn(pg_dsn)
    with psycopg.connect(pooled, autocommit=True) as a, psycopg.connect(pooled, autocommit=True) as b:
        first = a.execute("SELECT pg_backend_pid()").fetchone()
        second = b.execute("SELECT pg_backend_pid()").fetchone()
    assert first == second


def test_repeated_queries_of_two_clients_through_the_pooler_never_collide(
    pg_dsn: str, pgbouncer: Bouncer
) -> None:
    pooled = pgbouncer.dsn(pg_dsn)
    # psycopg prepares a query on the server after five runs: named `_pg3_0` on each connection, so the
    # second client's preparation lands on the server process holding the first one's.
    with connect(pooled, autocommit=True) as a, connect(pooled, autocommit=True) as b:
        for _ in range(8):
            for conn in (a, b):
                assert conn.execute("SELECT %s::int + 1", (1,)).fetchone() == (2,)


def test_seed_through_the_pooler_rebuilds_and_reruns(pg_dsn: str, pgbouncer: Bouncer) -> None:
    pooled = pgbouncer.dsn(pg_dsn)

    _seed(pooled)
    rebuilt_reader = _seed(pooled, reset=True)
    _seed(pooled, schema="elsewhere")

    status = seed_status(pooled)
    assert status is not None and status.schema_name == "elsewhere"
    assert sum(status.counts.values()) > 0
    with connect(rebuilt_reader) as conn:
        assert conn.execute("SELECT count(*) FROM public.accounts").fetchone() == (15,)


def test_seeding_leaves_no_session_state_on_the_pooled_server_process(
    pg_server: PgServer, pg_dsn: str, pgbouncer: Bouncer
) -> None:
    pooled = pgbouncer.dsn(pg_dsn)
    with psycopg.connect(pg_dsn) as direct:
        defaults = direct.execute(
            "SELECT current_setting('TimeZone'), current_setting('search_path')"
        ).fetchone()

    _seed(pooled, schema="warehouse")

    # Whichever server process the seed ran on, the next client finds it as PostgreSQL set it up.
    with psycopg.connect(pooled, autocommit=True) as after:
        for _ in range(4):
            seen = after.execute(
                "SELECT current_setting('TimeZone'), current_setting('search_path')"
            ).fetchone()
            assert seen == defaults
            locks = after.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone()
            assert locks == (0,)


def test_the_probe_tells_a_transaction_pooler_from_postgresql_itself(pg_dsn: str, pgbouncer: Bouncer) -> None:
    pooled = find_transaction_pooler(pgbouncer.dsn(pg_dsn))
    direct = find_transaction_pooler(pg_dsn)

    assert pooled.transaction_mode is True and "one server process" in pooled.evidence
    assert direct.transaction_mode is False
