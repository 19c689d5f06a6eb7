"""`validate --database-url` on SQL questions: prepared on the seeded warehouse, never run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from provisioner import dashboards, sqlcheck
from provisioner.cli.app import app
from provisioner.errors import DatabaseError, SpecErrors

PLACES = """\
key: places
name: Places
collection: Demo
filters:
  - {key: poi_type, name: POI type, type: category}
cards:
  - key: poi-map
    name: Points of interest
    display: pin map
    sql: |
      SELECT poi_name, latitude, longitude FROM v_poi_summary WHERE true [[AND {{poi_type}}]]
    tags: {poi_type: {field: v_poi_summary.poi_type}}
    filters: {poi_type: poi_type}
    viz: {latitude: latitude, longitude: longitude}
  - key: visits
    name: Visits by type
    display: bar
    sql: |
      SELECT poi_type, sum(visit_count) AS visits
      FROM v_poi_summary
      WHERE true [[AND {{poi_type}}]]
      GROUP BY poi_type
    tags: {poi_type: {field: v_poi_summary.poi_type}}
    filters: {poi_type: poi_type}
    viz: {x: poi_type, y: [visits]}
"""


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "places.yaml").write_text(text)
    return tmp_path


def test_sql_questions_prepare_on_the_warehouse(seeded_database: Any, tmp_path: Path) -> None:
    result = dashboards.validate(
        [_write(tmp_path, PLACES)], database_url=seeded_database.reader_dsn, environ={}
    )
    assert result.sql_checked


def test_a_bad_query_a_missing_viz_column_and_an_unknown_field_are_named(
    seeded_database: Any, tmp_path: Path
) -> None:
    broken = (
        PLACES.replace("FROM v_poi_summary\n", "FROM v_poi_summry\n")
        .replace("viz: {latitude: latitude,", "viz: {latitude: lat,")
        .replace(
            "tags: {poi_type: {field: v_poi_summary.poi_type}}",
            "tags: {poi_type: {field: v_poi_summary.poi_kind}}",
            1,
        )
    )
    with pytest.raises(SpecErrors) as caught:
        dashboards.validate([_write(tmp_path, broken)], database_url=seeded_database.reader_dsn, environ={})
    errors = caught.value.errors
    found = {(e.field, e.problem.split(":")[0]) for e in errors}
    assert ("cards[1].sql", "PostgreSQL rejects the SQL") in found
    assert any(e.field == "cards[0].viz.latitude" and "`lat`" in e.problem for e in errors)
    assert any(
        e.field == "cards[0].tags.poi_type.field" and "v_poi_summary.poi_kind" in e.problem for e in errors
    )
    assert all(e.path.name == "places.yaml" and e.line > 0 for e in errors)


def test_a_field_filter_on_an_aliased_table_is_caught(seeded_database: Any, tmp_path: Path) -> None:
    # Metabase substitutes "table"."column" for a field filter: an alias in FROM breaks the card at run time.
    aliased = PLACES.replace("      FROM v_poi_summary\n", "      FROM v_poi_summary AS p\n")
    with pytest.raises(SpecErrors) as caught:
        dashboards.validate([_write(tmp_path, aliased)], database_url=seeded_database.reader_dsn, environ={})
    [error] = caught.value.errors
    assert error.field == "cards[1].sql" and "inside a [[ ]] clause" in error.problem


def test_cli_validate_with_database_url_prepares_every_card(seeded_database: Any, tmp_path: Path) -> None:
    directory = _write(tmp_path, PLACES)
    result = CliRunner().invoke(
        app,
        ["dashboards", "validate", str(directory), "--database-url", seeded_database.reader_dsn, "--json"],
    )
    assert result.exit_code == 0, result.stderr


LOST = """\
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
    (tmp_path / "d.yaml").write_text(LOST)
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
