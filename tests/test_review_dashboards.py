"""Review of the dashboards area: failures a user can hit are ProvisionErrors, never tracebacks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from provisioner import dashboards, sqlcheck
from provisioner.errors import DatabaseError

DASHBOARD = """\
key: d
name: D
collection: C
filters:
  - {key: band, name: Band, type: category}
cards:
  - key: q
    name: Q
    sql: SELECT band FROM t WHERE true [[AND {{band}}]]
    tags: {band: {field: t.band}}
    filters: {band: band}
"""


def test_a_connection_lost_during_the_sql_check_is_a_database_error(
    pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (band text)")
    (tmp_path / "d.yaml").write_text(DASHBOARD)
    check_dashboard = sqlcheck._check_dashboard

    def server_goes_away(conn: psycopg.Connection, *args: Any) -> Any:
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [conn.info.backend_pid])
        return check_dashboard(conn, *args)

    monkeypatch.setattr(sqlcheck, "_check_dashboard", server_goes_away)
    with pytest.raises(DatabaseError) as caught:
        dashboards.validate([tmp_path], database_url=pg_dsn, environ={})
    password = psycopg.conninfo.conninfo_to_dict(pg_dsn)["password"]
    assert "checking the SQL" in caught.value.message
    assert password not in caught.value.message + (caught.value.hint or "")
