"""Review of the dashboards area: failures a user can hit are ProvisionErrors, never tracebacks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
import responses

from provisioner import dashboards, sqlcheck
from provisioner.apply import execute
from provisioner.compare import Reader
from provisioner.config import Settings
from provisioner.desired import DesiredCard
from provisioner.errors import ConfigError, DatabaseError
from provisioner.metabase.client import MetabaseClient
from provisioner.metabase.models import DashboardCreate
from provisioner.plan import Action, Plan

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


@responses.activate
def test_a_failed_card_run_with_a_blank_error_is_reported_not_raised() -> None:
    card = DesiredCard(
        file_key="d",
        key="q",
        ident="d/q",
        name="Q",
        description=None,
        display="table",
        type="question",
        sql="SELECT 1",
        template_tags={},
        visualization_settings={"provisioner.key": "d/q"},
        collection_path=("C",),
        database_id=1,
    )
    plan = Plan(
        [
            Action("collection", "unchanged", "C", "C", id=3, desired=("C",)),
            Action("card", "update", "d/q", "Q", id=5, changes=["sql"], desired=card),
        ]
    )
    base = "http://mb.test"
    responses.put(f"{base}/api/card/5", json={"id": 5, "name": "Q"})
    # Metabase answers 202 even when the query fails; the message may be empty.
    responses.post(f"{base}/api/card/5/query", status=202, json={"status": "failed", "error": " \n"})
    with MetabaseClient(base, sleep=lambda _s: None) as client:
        result = execute(plan, client, Reader(), metabase_url=base)
    assert [(f.key, f.card_id, f.error) for f in result.failed_queries] == [("d/q", 5, "failed")]
    assert not result.ok


def test_export_names_a_personal_collection_as_such(fake_metabase: Any, tmp_path: Path) -> None:
    with MetabaseClient(fake_metabase.url, sleep=lambda _s: None) as client:
        client.use_session(fake_metabase.admin_session())
        personal = next(c for c in client.list_collections() if c.personal_owner_id is not None)
        assert isinstance(personal.id, int)
        made = client.create_dashboard(DashboardCreate(name="Mine", collection_id=personal.id))
        settings = Settings.load({}, cwd=tmp_path, metabase_url=fake_metabase.url)
        result = dashboards.export(settings, [str(made.id)], out_dir=tmp_path / "out", client=client)
    assert result.warnings[0] == "'Mine' is in a personal or archived collection; written under `Exported`"
    assert "collection: Exported\n" in (tmp_path / "out" / "mine.yaml").read_text()


def test_export_to_an_unwritable_out_is_a_config_error(fake_metabase: Any, tmp_path: Path) -> None:
    blocker = tmp_path / "taken"
    blocker.write_text("a file where the directory should go")
    with MetabaseClient(fake_metabase.url, sleep=lambda _s: None) as client:
        client.use_session(fake_metabase.admin_session())
        made = client.create_dashboard(DashboardCreate(name="Board", collection_id=None))
        settings = Settings.load({}, cwd=tmp_path, metabase_url=fake_metabase.url)
        with pytest.raises(ConfigError) as caught:
            dashboards.export(settings, [str(made.id)], out_dir=blocker, client=client)
    assert str(blocker) in caught.value.message and caught.value.hint
    assert blocker.read_text() == "a file where the directory should go"
