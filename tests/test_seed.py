"""The seeded demo warehouse: structure, exact counts, the story, and snapshots agreeing with transactions.

All against the session's `seeded_database` (real PostgreSQL); nothing here writes to it except
inside transactions that are rolled back.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal

import psycopg
import pytest

from provisioner.db.schema import DATABASE_DIR, TABLES, VIEWS
from provisioner.db.seed import seed_status
from tests.db_fixtures import SeededDatabase, weekly_utilisation_mismatches


@pytest.fixture(scope="module")
def owner(seeded_database: SeededDatabase):
    with psycopg.connect(seeded_database.owner_dsn) as conn:
        yield conn


def _rows(conn: psycopg.Connection, query: str, params: tuple = ()) -> list[tuple]:
    return conn.execute(query, params).fetchall()  # type: ignore[arg-type]


def _one(conn: psycopg.Connection, query: str, params: tuple = ()):
    return conn.execute(query, params).fetchone()[0]  # type: ignore[arg-type,index]


# -- structure ------------------------------------------------------------------------------


def test_the_24_tables_and_8_views_exist_with_comments(owner) -> None:
    assert len(TABLES) == 24 and len(set(TABLES)) == 24
    assert len(VIEWS) == 8 and len(set(VIEWS)) == 8
    found = dict(
        _rows(
            owner,
            "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v')",
        )
    )
    assert {t: found.get(t) for t in TABLES} == dict.fromkeys(TABLES, "r")
    assert {v: found.get(v) for v in VIEWS} == dict.fromkeys(VIEWS, "v")
    uncommented = [
        name
        for name in (*TABLES, *VIEWS)
        if not _one(owner, "SELECT obj_description(%s::regclass, 'pg_class')", (name,))
    ]
    assert uncommented == []


def test_every_table_has_a_primary_key_and_the_foreign_keys_link_the_model(owner) -> None:
    without_pk = [
        t
        for t in TABLES
        if not _one(
            owner, "SELECT count(*) FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'p'", (t,)
        )
    ]
    assert without_pk == []
    fks = {
        (src, dst)
        for src, dst in _rows(
            owner,
            "SELECT conrelid::regclass::text, confrelid::regclass::text FROM pg_constraint "
            "WHERE contype = 'f'",
        )
    }
    expected = {
        ("asset_models", "oems"),
        ("accounts", "customers"),
        ("assets", "accounts"),
        ("assets", "asset_models"),
        ("payments", "repayment_schedule"),
        ("metric_values", "metric_definitions"),
        ("indicator_values", "indicator_definitions"),
        ("events", "event_definitions"),
        ("events", "assets"),
        ("pois", "oems"),
        ("pois", "customers"),
        ("pois", "assets"),
        ("poi_visits", "pois"),
        ("account_current_state", "accounts"),
        ("collection_actions", "accounts"),
    }
    assert expected <= fks


def test_a_poi_with_two_owners_is_rejected(owner) -> None:
    with pytest.raises(psycopg.errors.CheckViolation), owner.transaction(force_rollback=True):
        owner.execute(
            "INSERT INTO pois (id, name, poi_type, owner_type, asset_id, customer_id, latitude, longitude, "
            "radius_m, address) VALUES (999, 'x', 'base', 'asset', 1, 1, 51, 0, 100, 'x')"
        )


def test_an_event_without_a_recommendation_is_rejected(owner) -> None:
    with pytest.raises(psycopg.errors.CheckViolation), owner.transaction(force_rollback=True):
        owner.execute(
            "INSERT INTO events (id, event_definition_id, asset_id, account_id, opened_at, status, context) "
            """VALUES (999, 1, 1, 1, now(), 'open', '{"message": "m"}')"""
        )


def test_views_file_documents_every_view_in_its_header(owner) -> None:
    header = (DATABASE_DIR / "002_views.sql").read_text().split("CREATE VIEW", 1)[0]
    for view in VIEWS:
        assert f"-- {view}" in header
        columns = [
            r[0]
            for r in _rows(
                owner, "SELECT column_name FROM information_schema.columns WHERE table_name = %s", (view,)
            )
        ]
        undocumented = [c for c in columns if c not in header]
        assert undocumented == [], view


@pytest.mark.parametrize(
    ("view", "columns"),
    [
        (
            "v_portfolio_overview",
            {"account_id", "exposure", "risk_band", "oem_name", "asset_model", "is_current", "is_delinquent"},
        ),
        (
            "v_account_risk_dashboard",
            {"risk_band", "days_past_due", "overdue_amount", "last_payment_date", "indicator_score"},
        ),
        (
            "v_asset_telemetry_dashboard",
            {"reading_date", "utilisation_pct", "oem_name", "asset_serial", "latitude", "longitude"},
        ),
        (
            "v_open_events",
            {"severity", "event_type", "opened_at", "recommendation", "indicator_from", "indicator_to"},
        ),
        ("v_event_timeline", {"occurred_at", "source", "title", "account_number"}),
        (
            "v_indicator_trends",
            {"score_date", "score", "indicator_name", "asset_serial", "oem_name", "trend"},
        ),
        ("v_poi_summary", {"latitude", "longitude", "poi_type", "owner_type", "visit_count"}),
        ("v_collection_priority", {"priority_rank", "risk_band", "days_past_due", "recommended_action"}),
    ],
)
def test_each_view_returns_rows_with_the_columns_dashboards_need(owner, view: str, columns: set[str]) -> None:
    cur = owner.execute(f"SELECT * FROM {view}")
    names = {d.name for d in cur.description}
    assert columns <= names
    assert cur.fetchall()


# -- exact counts ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("SELECT count(*) FROM accounts", 15),
        ("SELECT count(*) FROM assets", 15),
        ("SELECT count(DISTINCT telemetry_pattern) FROM assets", 15),
        ("SELECT count(DISTINCT asset_id) FROM raw_telemetry", 15),
        ("SELECT count(*) FROM payments", 63),
        ("SELECT count(*) FROM metric_definitions", 14),
        ("SELECT count(*) FROM metric_values", 37),
        ("SELECT count(*) FROM indicator_definitions", 6),
        ("SELECT count(*) FROM indicator_values", 15),
        ("SELECT count(*) FROM event_definitions", 12),
        ("SELECT count(*) FROM events WHERE status = 'open'", 10),
        ("SELECT count(*) FROM pois", 15),
        ("SELECT count(DISTINCT poi_type) FROM pois", 3),
        ("SELECT count(DISTINCT owner_type) FROM pois", 3),
    ],
)
def test_exact_counts(owner, query: str, expected: int) -> None:
    assert _one(owner, query) == expected


def test_seed_status_reports_the_as_of_date_and_counts(seeded_database: SeededDatabase) -> None:
    status = seed_status(seeded_database.owner_dsn)
    assert status is not None
    assert status.as_of == seeded_database.as_of
    assert status.counts["payments"] == 63 and len(status.counts) == 24
    assert status.checksum == seeded_database.result.checksum


def test_seed_status_of_an_unseeded_database_is_none(pg_dsn: str) -> None:
    assert seed_status(pg_dsn) is None


# -- the story ------------------------------------------------------------------------------


def test_risk_bands_split_five_five_five(owner) -> None:
    bands = Counter(r[0] for r in _rows(owner, "SELECT risk_band FROM v_account_risk_dashboard"))
    assert bands == {"healthy": 5, "at_risk": 5, "delinquent": 5}


def test_collection_queue_ranks_delinquent_accounts_first_and_leaves_healthy_out(owner) -> None:
    queue = _rows(
        owner, "SELECT priority_rank, risk_band, days_past_due FROM v_collection_priority ORDER BY 1"
    )
    assert [r[0] for r in queue] == list(range(1, 11))
    assert [r[1] for r in queue] == ["delinquent"] * 5 + ["at_risk"] * 5
    delinquent_dpd = [r[2] for r in queue[:5]]
    assert delinquent_dpd == sorted(delinquent_dpd, reverse=True)


def test_every_open_event_carries_a_recommendation_and_its_evidence(owner) -> None:
    events = _rows(owner, "SELECT context FROM events WHERE status = 'open'")
    assert len(events) == 10
    for (context,) in events:
        assert context["recommendation"].strip()
        assert context["message"].strip()
        assert {"from", "to"} <= set(context["indicator"])
        assert {"value", "baseline", "comparison"} <= set(context["metric"])
    shown = _rows(owner, "SELECT recommendation FROM v_open_events")
    assert len(shown) == 10 and all(r[0] for r in shown)


def test_healthy_accounts_show_no_warning_signs(owner) -> None:
    rows = _rows(
        owner,
        "SELECT days_past_due, missed_instalments, open_events, indicator_change, indicator_score "
        "FROM v_account_risk_dashboard WHERE risk_band = 'healthy'",
    )
    assert len(rows) == 5
    for dpd, missed, open_events, change, score in rows:
        assert (dpd, missed, open_events) == (0, 0, 0)
        assert score >= 60 and change > -5


def test_delinquent_accounts_show_missed_payments_falling_scores_and_open_events(owner) -> None:
    rows = _rows(
        owner,
        "SELECT days_past_due, missed_instalments, open_events, indicator_change "
        "FROM v_account_risk_dashboard WHERE risk_band = 'delinquent'",
    )
    assert len(rows) == 5
    for dpd, missed, open_events, change in rows:
        assert dpd >= 30 and missed >= 1 and open_events >= 1 and change < 0
    critical = _one(
        owner, "SELECT count(*) FROM v_open_events WHERE risk_band = 'delinquent' AND severity = 'critical'"
    )
    assert critical >= 3


def test_at_risk_accounts_show_early_signs_only(owner) -> None:
    rows = _rows(
        owner,
        "SELECT days_past_due, indicator_change FROM v_account_risk_dashboard WHERE risk_band = 'at_risk'",
    )
    assert len(rows) == 5
    for dpd, change in rows:
        assert dpd < 30 and change < 0
    assert (
        _one(
            owner, "SELECT count(*) FROM v_open_events WHERE risk_band = 'at_risk' AND severity = 'critical'"
        )
        == 0
    )


def test_indicator_trends_show_two_dated_points_per_asset(owner) -> None:
    rows = _rows(owner, "SELECT asset_serial, score_date, is_latest FROM v_indicator_trends")
    assert len(rows) == 30
    per_asset = Counter(r[0] for r in rows)
    assert set(per_asset.values()) == {2}


# -- snapshots agree with the transactions --------------------------------------------------


def _expected_account_state(owner, account_id: int, as_of) -> dict[str, object]:
    """Days past due, arrears, balance and last payment recomputed in Python from the raw rows."""
    schedule = _rows(
        owner,
        "SELECT instalment_number, due_on, amount_due FROM repayment_schedule "
        "WHERE account_id = %s ORDER BY 1",
        (account_id,),
    )
    payments = _rows(
        owner,
        "SELECT instalment_number, paid_on, amount FROM payments WHERE account_id = %s ORDER BY paid_on, id",
        (account_id,),
    )
    financed = _one(owner, "SELECT financed_amount FROM accounts WHERE id = %s", (account_id,))
    paid = Counter()
    for number, paid_on, amount in payments:
        if paid_on <= as_of:
            paid[number] += amount
    past_due = [(due, amount - paid[n]) for n, due, amount in schedule if due < as_of and paid[n] < amount]
    total_due = sum(a for _, _, a in schedule)
    still_due = total_due - sum(paid.values())
    return {
        "days_past_due": (as_of - min(due for due, _ in past_due)).days if past_due else 0,
        "overdue_amount": sum((short for _, short in past_due), Decimal(0)),
        "missed_instalments": len(past_due),
        "balance_outstanding": still_due,
        # Payments repay principal pro rata, so the exposure stays below the financed amount.
        "principal_outstanding": (financed * still_due / total_due).quantize(Decimal("0.01"), ROUND_HALF_UP),
        "last_payment_on": max((on for _, on, _ in payments), default=None),
    }


def test_account_snapshots_agree_with_payments_and_schedule(owner, seeded_database: SeededDatabase) -> None:
    snapshots = _rows(
        owner,
        "SELECT account_id, days_past_due, overdue_amount, missed_instalments, balance_outstanding, "
        "principal_outstanding, last_payment_on, risk_band FROM account_current_state ORDER BY account_id",
    )
    assert len(snapshots) == 15
    for account_id, dpd, overdue, missed, balance, principal, last_paid, band in snapshots:
        expected = _expected_account_state(owner, account_id, seeded_database.as_of)
        actual = {
            "days_past_due": dpd,
            "overdue_amount": overdue,
            "missed_instalments": missed,
            "balance_outstanding": balance,
            "principal_outstanding": principal,
            "last_payment_on": last_paid,
        }
        assert actual == expected, account_id
        if dpd >= 30:
            assert band == "delinquent"
        elif dpd > 0:
            assert band == "at_risk"


def test_delinquency_history_today_matches_the_current_state(owner) -> None:
    mismatches = _rows(
        owner,
        "SELECT acs.account_id FROM account_current_state acs JOIN delinquency_history dh "
        "ON dh.account_id = acs.account_id AND dh.snapshot_on = acs.as_of "
        "WHERE dh.days_past_due <> acs.days_past_due OR dh.overdue_amount <> acs.overdue_amount",
    )
    assert mismatches == []
    assert _one(owner, "SELECT count(DISTINCT account_id) FROM delinquency_history") == 15


def test_customer_snapshots_sum_their_accounts(owner) -> None:
    mismatches = _rows(
        owner,
        "SELECT ccs.customer_id FROM customer_current_state ccs "
        "JOIN (SELECT a.customer_id, sum(acs.principal_outstanding) AS exposure, "
        "      max(acs.days_past_due) AS worst "
        "      FROM accounts a JOIN account_current_state acs ON acs.account_id = a.id GROUP BY 1) x "
        "ON x.customer_id = ccs.customer_id "
        "WHERE ccs.total_exposure <> x.exposure OR ccs.worst_days_past_due <> x.worst",
    )
    assert mismatches == []


def test_asset_snapshot_utilisation_matches_the_weekly_metric_values(owner) -> None:
    rows = _rows(
        owner,
        "SELECT s.asset_id, s.utilisation_7d_pct, mv.value FROM asset_current_state s "
        "JOIN metric_values mv ON mv.asset_id = s.asset_id "
        "JOIN metric_definitions md ON md.id = mv.metric_definition_id AND md.code = 'utilisation_pct'",
    )
    assert len(rows) == 15
    assert [(a, u) for a, u, _ in rows] == [(a, v) for a, _, v in rows]


def test_asset_that_stopped_reporting_was_last_seen_days_ago(owner, seeded_database: SeededDatabase) -> None:
    last_seen = _one(
        owner,
        "SELECT s.last_seen_at FROM asset_current_state s JOIN assets a ON a.id = s.asset_id "
        "WHERE a.telemetry_pattern = 'stopped_reporting'",
    )
    assert seeded_database.as_of - last_seen.date() == timedelta(days=4)


# -- the read-only role ---------------------------------------------------------------------


def test_reader_can_select_every_view_and_table(seeded_database: SeededDatabase) -> None:
    with psycopg.connect(seeded_database.reader_dsn) as conn:
        for name in (*VIEWS, *TABLES):
            conn.execute(f"SELECT * FROM {name} LIMIT 1")


def test_reader_cannot_write_create_or_read_the_ownership_table(seeded_database: SeededDatabase) -> None:
    with psycopg.connect(seeded_database.reader_dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("DELETE FROM payments")
        # Even with read-only transactions switched off, it holds no write or CREATE privilege.
        conn.execute("SET default_transaction_read_only = off")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM payments")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE accounts SET status = 'closed'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE sneaky (x int)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM provision_meta")
    with psycopg.connect(seeded_database.owner_dsn) as owner:
        assert _one(owner, "SELECT count(*) FROM payments") == 63


def test_collection_action_titles_read_as_sentences(owner) -> None:
    titles = [
        r[0]
        for r in owner.execute(
            "SELECT DISTINCT title FROM v_event_timeline WHERE source = 'collection_action'"
        ).fetchall()
    ]
    assert titles
    # "Phone call: promise to pay", "Reminder SMS: no answer": capital first, then lower case
    # except the acronym; never initcap's "Phone Call" or "Reminder Sms".
    sentence = re.compile(r"^[A-Z][a-z]+( ([a-z]+|SMS))*: [a-z]+( [a-z]+)*$")
    assert [t for t in titles if not sentence.match(t)] == []
    assert "Reminder SMS: no answer" in titles


def test_next_due_instalment_is_one_still_to_pay(owner) -> None:
    rows = owner.execute(
        """
        SELECT acs.account_id, acs.next_due_on, rs.amount_due,
               COALESCE((SELECT sum(p.amount) FROM payments p
                         WHERE p.account_id = rs.account_id AND p.instalment_number = rs.instalment_number
                           AND p.paid_on <= acs.as_of), 0) AS paid
        FROM account_current_state acs
        JOIN repayment_schedule rs ON rs.account_id = acs.account_id AND rs.due_on = acs.next_due_on
        """
    ).fetchall()
    assert len(rows) == 15
    assert [r[0] for r in rows if r[3] >= r[2]] == []
    # An account that paid the instalment due on the as-of date owes the following one next.
    paid_today = owner.execute(
        "SELECT count(*) FROM account_current_state WHERE last_payment_on = as_of AND next_due_on > as_of"
    ).fetchone()
    assert paid_today == (1,)


def test_exposure_is_below_the_financed_amount_once_instalments_are_paid(owner) -> None:
    rows = owner.execute(
        "SELECT account_number, exposure, financed_amount FROM v_portfolio_overview ORDER BY account_id"
    ).fetchall()
    assert len(rows) == 15
    # Instalments carry finance charges; the exposure a lender reports is the principal still owed.
    assert [number for number, exposure, financed in rows if not 0 < exposure < financed] == []


def test_weekly_utilisation_metrics_agree_with_the_telemetry_snapshot(owner) -> None:
    assert weekly_utilisation_mismatches(owner) == (25, [])


def test_an_events_metric_evidence_is_the_metric_value_shown_for_its_asset(owner) -> None:
    mismatches = owner.execute(
        """
        SELECT e.id
        FROM events e
        JOIN metric_definitions md ON md.code = e.context -> 'metric' ->> 'code'
        LEFT JOIN metric_values mv ON mv.metric_definition_id = md.id AND mv.asset_id = e.asset_id
        WHERE mv.value IS DISTINCT FROM (e.context -> 'metric' ->> 'value')::numeric
           OR mv.baseline_value IS DISTINCT FROM (e.context -> 'metric' ->> 'baseline')::numeric
        """
    ).fetchall()
    assert mismatches == []
    assert owner.execute("SELECT count(*) FROM events WHERE context -> 'metric' ? 'code'").fetchone() == (10,)


@pytest.mark.parametrize(
    ("view", "column"),
    [
        ("v_portfolio_overview", "exposure"),
        ("v_portfolio_overview", "is_current"),
        ("v_account_risk_dashboard", "dpd_30_days_ago"),
        ("v_account_risk_dashboard", "balance_outstanding"),
        ("v_asset_telemetry_dashboard", "utilisation_pct"),
        ("v_open_events", "severity_order"),
        ("v_collection_priority", "priority_rank"),
    ],
)
def test_columns_a_name_cannot_explain_carry_a_description_for_metabase(
    owner, view: str, column: str
) -> None:
    description = owner.execute(
        "SELECT col_description(a.attrelid, a.attnum) FROM pg_attribute a "
        "WHERE a.attrelid = %s::regclass AND a.attname = %s",
        (view, column),
    ).fetchone()
    assert description is not None and description[0]


@pytest.mark.parametrize("offset", ["soon", 10**9])
def test_a_bad_date_offset_in_a_seed_file_is_a_seed_data_error_with_a_hint(offset: object) -> None:
    from datetime import date

    from provisioner.db.seed_files import SeedDataError, _resolve_date

    with pytest.raises(SeedDataError) as caught:
        _resolve_date("paid_on", offset, None, date(2026, 1, 31), "payments.csv")
    assert "payments.csv: paid_on_offset_days" in caught.value.message
    assert caught.value.hint


def test_silent_telematics_alert_follows_the_first_missed_daily_report(owner) -> None:
    last_seen, opened_at = owner.execute(
        "SELECT s.last_seen_at, e.opened_at FROM events e "
        "JOIN event_definitions d ON d.id = e.event_definition_id AND d.code = 'telematics_silent' "
        "JOIN asset_current_state s ON s.asset_id = e.asset_id"
    ).fetchone()
    # Readings come once a day: the unit is silent only once the next one is overdue.
    assert opened_at - last_seen > timedelta(days=1)
