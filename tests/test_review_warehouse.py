"""The demo data as a sales engineer shows it: labels that read well, dates and figures that agree.

Against the session's `seeded_database` (real PostgreSQL), read-only.
"""

from __future__ import annotations

import re
from datetime import timedelta

import psycopg
import pytest

from tests.credentials import stored_section
from tests.db_fixtures import SeededDatabase


@pytest.fixture(scope="module")
def owner(seeded_database: SeededDatabase):
    with psycopg.connect(seeded_database.owner_dsn) as conn:
        yield conn


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


def test_unknown_option_in_the_url_is_a_database_error_without_the_password() -> None:
    from provisioner.db.connection import connect
    from provisioner.errors import DatabaseError

    with pytest.raises(DatabaseError) as caught:
        connect("postgresql://someone:sekret-pw-123@127.0.0.1:1/db?no_such_option=1")
    assert "no_such_option" in caught.value.message
    assert "sekret-pw-123" not in caught.value.message
    assert caught.value.hint


def test_root_without_useradd_is_an_environment_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    import pwd
    import subprocess

    from provisioner.errors import EnvironmentProblem
    from provisioner.runtime import postgres

    def no_such_user(name: str) -> None:
        raise KeyError(name)

    def useradd_fails(args: list[str], **kwargs: object) -> None:
        raise subprocess.CalledProcessError(9, args, stderr="useradd: cannot lock /etc/passwd\n")

    monkeypatch.setattr(postgres.os, "geteuid", lambda: 0)
    monkeypatch.setattr(pwd, "getpwnam", no_such_user)
    monkeypatch.setattr(postgres.subprocess, "run", useradd_fails)
    with pytest.raises(EnvironmentProblem) as caught:
        postgres._system_user()
    assert "cannot lock /etc/passwd" in caught.value.message
    assert "--database-url" in (caught.value.hint or "")


def test_exposure_is_below_the_financed_amount_once_instalments_are_paid(owner) -> None:
    rows = owner.execute(
        "SELECT account_number, exposure, financed_amount FROM v_portfolio_overview ORDER BY account_id"
    ).fetchall()
    assert len(rows) == 15
    # Instalments carry finance charges; the exposure a lender reports is the principal still owed.
    assert [number for number, exposure, financed in rows if not 0 < exposure < financed] == []


def test_weekly_utilisation_metrics_agree_with_the_telemetry_snapshot(owner) -> None:
    rows = owner.execute(
        """
        SELECT s.asset_id, md.code, mv.value, mv.baseline_value,
               s.utilisation_7d_pct, s.utilisation_prior_7d_pct
        FROM asset_current_state s
        JOIN metric_values mv ON mv.asset_id = s.asset_id
        JOIN metric_definitions md ON md.id = mv.metric_definition_id
        WHERE md.code IN ('utilisation_pct', 'utilisation_change_pct')
        """
    ).fetchall()
    assert len(rows) == 25
    wrong = []
    for asset_id, code, value, baseline, this_week, last_week in rows:
        if code == "utilisation_pct":
            expected = (this_week, last_week)
            actual = (value, baseline)
        else:
            expected = round((this_week / last_week - 1) * 100, 1)
            actual = value
        if actual != expected:
            wrong.append((asset_id, code, actual, expected))
    assert wrong == []


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


def test_db_status_text_shows_why_the_demo_data_is_unknown() -> None:
    import provisioner.cli.app  # noqa: F401  (the CLI package is imported through its root app)
    from provisioner.cli.db import _status_text
    from provisioner.runtime.warehouse import DbStatus

    status = DbStatus(running=True, pid=42, port=5433, data_dir="/x/data", detail="password not stored")
    text = _status_text(status)
    assert "demo data: unknown (password not stored)" in text
    assert "url: None" not in text and "not seeded" not in text
