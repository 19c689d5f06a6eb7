"""Behind a real PgBouncer in transaction mode: what a pooler breaks, and the tool working through it.

A transaction-mode pooler (Supabase's on 6543, PgBouncer, Neon's) gives each transaction whichever
server connection is free: server-side prepared statements and anything set for a session do not
survive the transaction, or turn up in someone else's.
"""

from __future__ import annotations

import secrets
import time
import uuid
from datetime import date
from pathlib import Path

import psycopg
from pydantic import SecretStr

from provisioner.config import Settings
from provisioner.connect import connect_database
from provisioner.db.connection import connect
from provisioner.db.hosted import find_transaction_pooler
from provisioner.db.roles import with_credentials
from provisioner.db.seed import seed_database, seed_status
from provisioner.demo import run_demo
from provisioner.metabase.setup import DATABASE_NAME, POOLER_JDBC_OPTIONS, setup_metabase
from provisioner.progress import RecordingProgress
from provisioner.runtime.external import ExternalRuntime
from provisioner.seeding import seed
from tests.conftest import PgServer
from tests.fake_metabase.server import FakeMetabase
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


# --- the whole demo through the pooler -------------------------------------------------------------


def _short_sleep(seconds: float) -> None:
    time.sleep(min(seconds, 0.05))


def _demo_details(fake: FakeMetabase) -> dict:
    [database] = [d for d in fake.state.databases.values() if d["name"] == DATABASE_NAME]
    return dict(database["details"])


def test_the_demo_through_the_pooler_registers_metabase_for_it_and_reruns_without_a_write(
    fake_metabase: FakeMetabase, pg_dsn: str, pgbouncer: Bouncer, clean_environ: Path
) -> None:
    pooled = pgbouncer.dsn(pg_dsn)
    settings = Settings.load({}, home=clean_environ, metabase_url=fake_metabase.url, database_url=pooled)
    progress = RecordingProgress()

    cold = run_demo(settings, runtime=ExternalRuntime(settings), progress=progress, sleep=_short_sleep)

    assert cold.failed_cards == [] and cold.dashboards
    details = _demo_details(fake_metabase)
    # Metabase reaches the warehouse through the pooler too, with pgjdbc told never to prepare on the server.
    assert details["port"] == pgbouncer.port
    assert details["additional-options"] == POOLER_JDBC_OPTIONS
    assert any("behind a pooler in transaction mode" in m for kind, m in progress.lines if kind == "info")

    fake_metabase.clear_requests()
    again = run_demo(
        settings, runtime=ExternalRuntime(settings), progress=RecordingProgress(), sleep=_short_sleep
    )
    assert again.changed is False and fake_metabase.mutating_requests() == []


def test_leaving_the_pooler_clears_the_jdbc_option_once(
    fake_metabase: FakeMetabase, pg_dsn: str, pgbouncer: Bouncer, clean_environ: Path
) -> None:
    pooled = Settings.load(
        {}, home=clean_environ, metabase_url=fake_metabase.url, database_url=pgbouncer.dsn(pg_dsn)
    )
    direct = pooled.model_copy(update={"database_url": SecretStr(pg_dsn)})
    setup_metabase(pooled, progress=RecordingProgress())
    seed(pooled, as_of=AS_OF, reset=False, force=False, port=None)
    connect_database(pooled, progress=RecordingProgress(), sleep=_short_sleep)
    seed(direct, as_of=AS_OF, reset=False, force=False, port=None)  # the reader's login for this address

    moved = connect_database(direct, progress=RecordingProgress(), sleep=_short_sleep)
    fake_metabase.clear_requests()
    again = connect_database(direct, progress=RecordingProgress(), sleep=_short_sleep)

    assert moved.action == "updated" and moved.transaction_pooler is False
    assert _demo_details(fake_metabase).get("additional-options") is None
    assert again.action == "unchanged" and fake_metabase.mutating_requests() == []
