"""`provision seed --scale N`: N blocks of the curated demo, each telling its story, generated lazily.

The database tests seed N = 3 once (two copied blocks, about 22,000 telemetry rows); the expected
numbers come from the rules of `db/seed_scale.py`, written out here, not from its code.
"""

from __future__ import annotations

import hashlib
import secrets
import tracemalloc
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from typer.testing import CliRunner

from provisioner.cli.app import app
from provisioner.db.schema import TABLES, VIEWS
from provisioner.db.seed import SeedResult, seed_database, seed_status
from provisioner.db.seed_scale import CuratedDemo, copied_rows, copied_telemetry, customer_name
from provisioner.errors import ConfigError, DatabaseError
from tests.db_fixtures import SEEDED_AS_OF, SeededDatabase, weekly_utilisation_mismatches

SCALE = 3
# Every row of the 24 tables at N = 1 and as of SEEDED_AS_OF, as PostgreSQL prints them: the curated
# demo before --scale existed. Changing seeds/ on purpose changes it (print _rows_digest and paste it).
CURATED_DIGEST = "234b49d93ed99f1cc1ef7bf456a45f695fd63f0e2c3bf9e67c68e0e5311d0824"


@dataclass(frozen=True)
class Scaled:
    dsn: str
    result: SeedResult


@pytest.fixture(scope="module")
def scaled(pg_server) -> Scaled:  # type: ignore[no-untyped-def]
    """The demo at SCALE, seeded once for this module; treat it as read-only."""
    dsn = pg_server.create_database("scaled")
    role = f"reader_{uuid.uuid4().hex[:10]}"
    result = seed_database(
        dsn, as_of=SEEDED_AS_OF, reader_password=secrets.token_urlsafe(16), reader_role=role, scale=SCALE
    )
    return Scaled(dsn, result)


@pytest.fixture(scope="module")
def db(scaled: Scaled):  # type: ignore[no-untyped-def]
    with psycopg.connect(scaled.dsn) as conn:
        yield conn


def _rows_digest(dsn: str) -> str:
    """A sha256 over every row of every demo table as PostgreSQL prints it (UTC, ISO dates), in order."""
    digest = hashlib.sha256()
    with psycopg.connect(dsn) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute("SET DateStyle = 'ISO, YMD'")
        for table in sorted(TABLES):
            query = sql.SQL("COPY (SELECT t::text FROM {} t ORDER BY 1) TO STDOUT").format(
                sql.Identifier(table)
            )
            with conn.cursor().copy(query) as copy:
                for block in copy:
                    digest.update(bytes(block))
            digest.update(f"--{table}\n".encode())
    return digest.hexdigest()


def _weeks(last_day: date, days: int) -> int:
    """How many weeks (Monday to Sunday) the `days` days up to `last_day` touch."""
    return len(
        {day - timedelta(days=day.weekday()) for day in (last_day - timedelta(n) for n in range(days))}
    )


# -- N = 1 is today's demo --------------------------------------------------------------------


def test_scale_one_is_the_curated_demo_row_for_row(seeded_database: SeededDatabase) -> None:
    assert seeded_database.result.scale == 1
    assert _rows_digest(seeded_database.owner_dsn) == CURATED_DIGEST


# -- the counts, from the rules ---------------------------------------------------------------


def test_every_table_holds_n_copies_of_the_curated_rows_and_shares_reference_data(
    db, scaled: Scaled, seeded_database: SeededDatabase
) -> None:
    curated = seeded_database.result.counts
    n = SCALE
    # A copied asset reports daily for 730 days; the one that stopped reporting misses its last 4.
    telemetry_per_block = 15 * 730 - 4
    expected = {
        "oems": 4,
        "asset_models": 8,
        "metric_definitions": 14,
        "indicator_definitions": 6,
        "event_definitions": 12,
        "customers": 12 * n,
        "accounts": 15 * n,
        "assets": 15 * n,
        # The 4 OEM identifiers are shared; the 69 of customers, accounts and assets are copied.
        "entity_identifiers": 73 + 69 * (n - 1),
        "repayment_schedule": 600 * n,
        "payments": 63 * n,
        "collection_actions": 17 * n,
        "metric_values": 37 * n,
        "indicator_values": 15 * n,
        "events": 10 * n,
        # The 4 OEM service centres are shared; bases and customer sites are copied.
        "pois": 15 + 11 * (n - 1),
        "poi_visits": 51 * n,
        "raw_telemetry": 206 + telemetry_per_block * (n - 1),
        "delinquency_history": curated["delinquency_history"] * n,
        "poi_visit_patterns": curated["poi_visit_patterns"] * n,
        "asset_current_state": 15 * n,
        "account_current_state": 15 * n,
        "customer_current_state": 12 * n,
        # Two metrics a week per asset: the curated fortnight, and two years for each copy (less the
        # silent asset's last 4 days).
        "metric_aggregates": curated["metric_aggregates"]
        + 2 * (14 * _weeks(SEEDED_AS_OF, 730) + _weeks(SEEDED_AS_OF - timedelta(days=4), 726)) * (n - 1),
    }
    assert scaled.result.counts == expected
    assert scaled.result.scale == n
    assert db.execute("SELECT count(*) FROM raw_telemetry").fetchone() == (expected["raw_telemetry"],)


# -- every block tells the story --------------------------------------------------------------


def test_every_block_splits_five_five_five_like_the_curated_accounts(db) -> None:
    bands = db.execute("SELECT account_id, risk_band FROM account_current_state ORDER BY 1").fetchall()
    assert len(bands) == 15 * SCALE
    per_block = Counter(((account_id - 1) // 15, band) for account_id, band in bands)
    assert per_block == {(b, band): 5 for b in range(SCALE) for band in ("healthy", "at_risk", "delinquent")}
    curated = dict(bands[:15])
    assert [(a, band) for a, band in bands if band != curated[(a - 1) % 15 + 1]] == []


def test_a_copied_account_owes_what_its_original_owes_in_days_and_in_proportion(db) -> None:
    rows = db.execute(
        """
        SELECT s.account_id, s.days_past_due, s.missed_instalments, s.open_events, s.last_payment_on,
               s.next_due_on, s.overdue_amount, s.balance_outstanding, a.financed_amount
        FROM account_current_state s JOIN accounts a ON a.id = s.account_id ORDER BY 1
        """
    ).fetchall()
    originals = {r[0]: r for r in rows[:15]}
    for row in rows[15:]:
        original = originals[(row[0] - 1) % 15 + 1]
        assert row[1:6] == original[1:6], row[0]
        factor = row[8] / original[8]
        assert Decimal("0.8") <= factor <= Decimal("1.25")
        for copy_amount, original_amount in zip(row[6:8], original[6:8], strict=True):
            assert abs(copy_amount - original_amount * factor) <= Decimal("0.01") * 40, row[0]


def test_every_view_returns_rows_for_every_block(db) -> None:
    for view in VIEWS:
        assert db.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(view))).fetchone()[0] > 0
    queue = db.execute(
        "SELECT risk_band, count(*) FROM v_collection_priority GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert queue == [("at_risk", 5 * SCALE), ("delinquent", 5 * SCALE)]
    assert db.execute("SELECT count(*) FROM v_open_events").fetchone() == (10 * SCALE,)
    assert db.execute("SELECT count(*) FROM v_indicator_trends").fetchone() == (30 * SCALE,)


def test_each_copied_asset_reports_every_day_for_two_years(db) -> None:
    rows = db.execute(
        """
        SELECT s.telemetry_pattern, count(*), min(r.recorded_at), max(r.recorded_at)
        FROM raw_telemetry r JOIN assets s ON s.id = r.asset_id
        WHERE s.id > 15 GROUP BY s.id, s.telemetry_pattern
        """
    ).fetchall()
    assert len(rows) == 15 * (SCALE - 1)
    first = SEEDED_AS_OF - timedelta(days=729)
    for pattern, count, earliest, latest in rows:
        silent = pattern == "stopped_reporting"
        assert count == (726 if silent else 730), pattern
        assert earliest.date() == first
        assert latest.date() == SEEDED_AS_OF - timedelta(days=4 if silent else 0), pattern


def test_the_metric_values_of_every_copy_agree_with_its_telemetry(db) -> None:
    assert weekly_utilisation_mismatches(db) == (25 * SCALE, [])


def test_copies_have_identifiers_of_their_own_and_events_name_their_account(db) -> None:
    assert db.execute("SELECT count(DISTINCT telemetry_pattern), count(*) FROM assets").fetchone() == (
        15,
        15 * SCALE,
    )
    messages = db.execute(
        "SELECT a.account_number, e.context ->> 'message' "
        "FROM events e JOIN accounts a ON a.id = e.account_id WHERE e.context ->> 'message' LIKE '%AF-%'"
    ).fetchall()
    assert len(messages) == 4 * SCALE
    assert [m for number, m in messages if number not in m] == []
    names = db.execute("SELECT name FROM customers WHERE id > 12").fetchall()
    assert len({n for (n,) in names}) == 12 * (SCALE - 1)


def test_the_keys_and_indexes_are_the_curated_demos(db, seeded_database: SeededDatabase) -> None:
    """Built again after the load under the same names, foreign keys validated."""
    query = """
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid), convalidated FROM pg_constraint
        WHERE connamespace = 'public'::regnamespace
        UNION ALL
        SELECT tablename, indexname, indexdef, true FROM pg_indexes WHERE schemaname = 'public'
        ORDER BY 1, 2, 3
    """
    with psycopg.connect(seeded_database.owner_dsn) as curated:
        expected = curated.execute(query).fetchall()
    assert db.execute(query).fetchall() == expected
    assert any(name == "raw_telemetry_reading_date_idx" for _, name, _, _ in expected)


# -- determinism, laziness --------------------------------------------------------------------


def test_the_same_scale_seeds_the_same_rows(pg_dsn: str, scaled: Scaled) -> None:
    again = seed_database(pg_dsn, as_of=SEEDED_AS_OF, reader_password="pw-again-1234", scale=SCALE)
    assert again.checksum == scaled.result.checksum
    assert _rows_digest(pg_dsn) == _rows_digest(scaled.dsn)


def test_a_block_is_the_same_at_any_scale() -> None:
    demo = CuratedDemo.load(SEEDED_AS_OF)
    for table in ("customers", "payments", "pois"):
        two = list(copied_rows(demo, table, 2))
        assert two and list(copied_rows(demo, table, 3))[: len(two)] == two
    assert list(copied_telemetry(demo, 2)) == list(copied_telemetry(demo, 3))[:15]


def _peak_bytes(demo: CuratedDemo, scale: int) -> int:
    tracemalloc.start()
    try:
        readings = sum(chunk.count("\n") for chunk in copied_telemetry(demo, scale))
        rows = sum(1 for _ in copied_rows(demo, "repayment_schedule", scale))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert readings == (scale - 1) * (15 * 730 - 4) and rows == (scale - 1) * 600
    return peak


def test_copies_are_generated_one_asset_at_a_time() -> None:
    demo = CuratedDemo.load(SEEDED_AS_OF)
    # The largest scale costs nothing until rows are taken.
    first = next(copied_telemetry(demo, 10_000))
    assert first.count("\n") == 730
    # 4 blocks are 3 MB of COPY text; memory holds the template and one asset's chunk (55 kB) at a time.
    one, four = _peak_bytes(demo, 2), _peak_bytes(demo, 5)
    assert four < 1_500_000, four
    assert four < one * 1.1, (one, four)


def test_copied_customer_names_are_unique_across_many_blocks() -> None:
    segments = ("construction", "agriculture", "logistics", "mining", "utilities")
    names = [customer_name(i, segments[i % 5]) for i in range(13, 13 + 12 * 2_000)]
    assert len(set(names)) == len(names)


# -- the scale a demo keeps, and changing it ---------------------------------------------------


def test_reseed_keeps_the_scale_and_another_scale_rebuilds(pg_dsn: str) -> None:
    role = f"reader_{uuid.uuid4().hex[:10]}"
    first = seed_database(
        pg_dsn, as_of=SEEDED_AS_OF, reader_password="pw-scale-1234", reader_role=role, scale=2
    )
    kept = seed_database(pg_dsn, as_of=SEEDED_AS_OF, reader_password="pw-scale-1234", reader_role=role)
    assert (kept.changed, kept.scale, kept.checksum) == (False, 2, first.checksum)
    status = seed_status(pg_dsn)
    assert status is not None and status.scale == 2 and "at scale 2" in status.summary
    back = seed_database(
        pg_dsn, as_of=SEEDED_AS_OF, reader_password="pw-scale-1234", reader_role=role, scale=1
    )
    assert (back.changed, back.scale, back.counts["accounts"]) == (True, 1, 15)
    assert _rows_digest(pg_dsn) == CURATED_DIGEST


def test_a_damaged_demo_is_rebuilt_at_its_scale(pg_dsn: str) -> None:
    seed_database(pg_dsn, as_of=SEEDED_AS_OF, reader_password="pw-damage-123", scale=2)
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("DROP VIEW v_poi_summary")
    repaired = seed_database(pg_dsn, as_of=SEEDED_AS_OF, reader_password="pw-damage-123")
    assert (repaired.changed, repaired.scale, repaired.counts["accounts"]) == (True, 2, 30)


@pytest.mark.parametrize("value", [0, -1, 10_001, "1.5", "ten", "", "1e3"])
def test_a_scale_out_of_range_is_refused_before_connecting(value: object) -> None:
    with pytest.raises(ConfigError) as caught:
        seed_database(
            "postgresql://nobody@127.0.0.1:1/none", as_of=SEEDED_AS_OF, reader_password=None, scale=value
        )  # type: ignore[arg-type]
    assert "--scale must be a whole number from 1 to 10000" in caught.value.message
    assert caught.value.hint


@pytest.mark.parametrize("value", ["0", "-3", "2.5", "many", "20000"])
def test_seed_cli_refuses_a_bad_scale_with_one_line_and_writes_nothing(
    value: str, pg_dsn: str, clean_environ: Path
) -> None:
    for where in (["--database-url", pg_dsn], []):
        result = CliRunner().invoke(app, ["seed", *where, "--scale", value])
        assert result.exit_code == 3, result.stderr
        assert result.stdout == ""
        assert result.stderr.count("error: ") == 1 and "--scale" in result.stderr
        assert "hint: " in result.stderr and "Traceback" not in result.stderr
    assert not (clean_environ / "postgres").exists()
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)


def test_seed_cli_reports_the_scale(pg_dsn: str) -> None:
    result = CliRunner().invoke(
        app, ["seed", "--database-url", pg_dsn, "--as-of", "2026-01-31", "--scale", "2"]
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("Seeded the demo warehouse as of 2026-01-31 at scale 2: 24 tables")
    assert "generating and loading 2 blocks" in result.stderr


def test_a_row_that_breaks_a_key_fails_the_seed_when_keys_are_built_and_writes_nothing(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import provisioner.db.seed_scale as seed_scale

    real = seed_scale.copied_rows

    def twice_the_first_customer(demo: CuratedDemo, table: str, scale: int):  # type: ignore[no-untyped-def]
        rows = list(real(demo, table, scale))
        return rows + rows[:1] if table == "customers" else rows

    monkeypatch.setattr(seed_scale, "copied_rows", twice_the_first_customer)
    with pytest.raises(DatabaseError) as caught:
        seed_database(pg_dsn, as_of=SEEDED_AS_OF, reader_password="pw-broken-123", scale=2)
    assert "building their keys" in caught.value.message and "customers" in caught.value.message
    assert "nothing was written" in (caught.value.hint or "")
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)


# -- what the benchmark times -----------------------------------------------------------------


def test_every_demo_card_and_model_runs_as_sql_within_metabases_row_limits(db) -> None:
    from provisioner.spec import load_paths
    from provisioner.sqlcheck import BARE_ROWS_LIMIT, SUMMARIZED_ROWS_LIMIT, questions_sql

    loaded = load_paths([Path(__file__).resolve().parent.parent / "dashboards"], environ={})
    cards = questions_sql(loaded, db)
    db.rollback()
    assert Counter(c.type for c in cards) == {"model": 8, "question": 27}
    limits = {c.key: c.row_limit for c in cards}
    assert limits["models/asset-telemetry"] == BARE_ROWS_LIMIT
    assert limits["asset-telemetry/utilisation-over-time"] == SUMMARIZED_ROWS_LIMIT
    empty = [c.key for c in cards if not db.execute(f"SELECT * FROM ({c.sql}) AS card LIMIT 1").fetchall()]
    assert empty == []


def test_the_benchmark_reports_its_figures_as_rows_another_report_can_include(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util
    import sys

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "seed_bench.py"
    spec = importlib.util.spec_from_file_location("seed_bench", path)
    assert spec is not None and spec.loader is not None
    bench_module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "seed_bench", bench_module)  # dataclasses look their module up
    spec.loader.exec_module(bench_module)
    split = {"healthy": 500, "at_risk": 500, "delinquent": 500}
    bench = bench_module.SeedBench(
        seeds=[bench_module.SeedRun(100, 8.0, 1_500_000, 1_083_860, 2.5, 1.0, 53.2, split)],
        copy=bench_module.CopyComparison(100, 1_083_654, 77.0, 0.6, 1.6, 1.2),
        cards_scale=100,
        cards=[bench_module.CardTiming("asset-telemetry/utilisation-over-time", "Average", 412.0, 730)],
    )
    rows = bench_module.table_rows(bench)
    assert [measure for measure, _, _ in rows] == [
        "`seed --scale 100`",
        "telemetry load vs plain `COPY FROM STDIN` (N = 100)",
        "slowest demo card (N = 100)",
    ]
    assert "188 k rows/s" in rows[0][1] and "split 500/500/500" in rows[0][1]
    assert rows[1][1].startswith("75 %") and rows[1][2] == "≥ 70 %"
    assert "412 ms" in rows[2][1]
    assert "| `seed --scale 100` |" in bench_module.markdown(bench)
    assert bench_module.to_json(bench)["copy"]["throughput_pct"] == 75.0


# -- hosted: a schema of its own, a transaction pooler --------------------------------------------


def test_scale_in_a_schema_of_its_own_builds_its_keys_there(pg_dsn: str) -> None:
    result = seed_database(
        pg_dsn, as_of=SEEDED_AS_OF, reader_password="pw-schema-123", schema="fleet", scale=2
    )
    assert (result.schema_name, result.scale, result.counts["accounts"]) == ("fleet", 2, 30)
    with psycopg.connect(pg_dsn) as conn:
        keys = conn.execute(
            "SELECT count(*) FROM pg_constraint WHERE connamespace = 'fleet'::regnamespace AND contype = 'f'"
        ).fetchone()
        public = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
    assert keys is not None and keys[0] > 20
    assert public == (0,)


def test_scale_through_a_transaction_pooler(pg_dsn: str, pgbouncer) -> None:  # type: ignore[no-untyped-def]
    pooled = pgbouncer.dsn(pg_dsn)
    first = seed_database(pooled, as_of=SEEDED_AS_OF, reader_password="pw-pooled-123", scale=2)
    again = seed_database(pooled, as_of=SEEDED_AS_OF, reader_password="pw-pooled-123")
    assert (first.scale, first.counts["accounts"]) == (2, 30)
    assert (again.changed, again.scale, again.checksum) == (False, 2, first.checksum)
