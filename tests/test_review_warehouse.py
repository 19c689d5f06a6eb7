"""The demo data as a sales engineer shows it: labels that read well, dates and figures that agree.

Against the session's `seeded_database` (real PostgreSQL), read-only.
"""

from __future__ import annotations

import re

import psycopg
import pytest

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
