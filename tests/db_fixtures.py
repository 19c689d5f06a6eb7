"""Fixtures for the seeded demo database: seeded once per session on the session's embedded server."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

import pytest

from provisioner.db.roles import with_credentials
from provisioner.db.seed import SeedResult, seed_database

if TYPE_CHECKING:
    import psycopg

    from tests.conftest import PgServer

# A fixed as-of date: every test sees the same dates and the same checksum.
SEEDED_AS_OF = date(2026, 3, 31)


@dataclass(frozen=True)
class SeededDatabase:
    """The seeded demo database: owner and read-only DSNs, its as-of date and name."""

    owner_dsn: str
    reader_dsn: str
    as_of: date
    dbname: str
    reader_role: str
    result: SeedResult


@pytest.fixture(scope="session")
def seeded_database(pg_server: PgServer) -> SeededDatabase:
    """The demo warehouse seeded once (24 tables, 8 views, read-only role with a known password).

    Treat it as read-only: other tests share it. The role name is unique, since roles are
    cluster-wide and other tests create their own.
    """
    owner_dsn = pg_server.create_database("seeded")
    role = f"reader_{uuid.uuid4().hex[:10]}"
    password = secrets.token_urlsafe(16)
    result = seed_database(owner_dsn, as_of=SEEDED_AS_OF, reader_password=password, reader_role=role)
    return SeededDatabase(
        owner_dsn=owner_dsn,
        reader_dsn=with_credentials(owner_dsn, role, password),
        as_of=SEEDED_AS_OF,
        dbname=owner_dsn.rsplit("/", 1)[1],
        reader_role=role,
        result=result,
    )


def weekly_utilisation_mismatches(conn: psycopg.Connection) -> tuple[int, list[tuple]]:
    """(how many utilisation metric values there are, those that disagree with the telemetry snapshot).

    `utilisation_pct` must be this week's and last week's utilisation of `asset_current_state`, and
    `utilisation_change_pct` their change in percent, to one decimal.
    """
    rows = conn.execute(
        """
        SELECT s.asset_id, md.code, mv.value, mv.baseline_value,
               s.utilisation_7d_pct, s.utilisation_prior_7d_pct
        FROM asset_current_state s
        JOIN metric_values mv ON mv.asset_id = s.asset_id
        JOIN metric_definitions md ON md.id = mv.metric_definition_id
        WHERE md.code IN ('utilisation_pct', 'utilisation_change_pct')
        """
    ).fetchall()
    wrong = []
    for asset_id, code, value, baseline, this_week, last_week in rows:
        if code == "utilisation_pct":
            expected, actual = (this_week, last_week), (value, baseline)
        else:
            expected, actual = round((this_week / last_week - 1) * 100, 1), value
        if actual != expected:
            wrong.append((asset_id, code, actual, expected))
    return len(rows), wrong
