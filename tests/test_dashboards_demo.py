"""The five demo dashboards: valid against the seeded warehouse, every card returns rows, apply converges."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import psycopg
import pytest

from provisioner import dashboards, sqlcheck
from provisioner.config import Settings
from provisioner.db import schema
from provisioner.errors import SpecErrors
from provisioner.metabase.client import MetabaseClient
from provisioner.spec import load_paths
from provisioner.spec.models import QueryCard
from provisioner.spec.sql import resolve_tags

DEMO = Path(__file__).resolve().parent.parent / "dashboards"
VIEWS = set(schema.VIEWS)


def test_the_five_dashboards_use_all_eight_views() -> None:
    loaded = load_paths([DEMO], environ={})
    assert sorted(d.spec.name for d in loaded) == [
        "Account Risk & Collections",
        "Asset Telemetry",
        "Events & Alerts",
        "Locations",
        "Portfolio Overview",
    ]
    used = {view for d in loaded for sql in d.sql.values() for view in re.findall(r"\bv_[a-z_]+", sql)}
    assert used == VIEWS
    for d in loaded:
        assert d.spec.filters, d.spec.key
        assert any(not isinstance(c, QueryCard) for c in d.spec.cards), f"{d.spec.key} has no text card"
        for card in d.spec.query_cards():
            assert card.filters, f"{d.spec.key}/{card.key} is wired to no filter"


def test_every_demo_dashboard_validates_against_the_seeded_database(seeded_database: Any) -> None:
    result = dashboards.validate([DEMO], database_url=seeded_database.reader_dsn, environ={})
    assert result.sql_checked
    assert len(result.dashboards) == 5


def test_every_card_returns_rows_on_the_seeded_database(seeded_database: Any) -> None:
    loaded = load_paths([DEMO], environ={})
    empty: list[str] = []
    with psycopg.connect(seeded_database.reader_dsn) as conn:
        conn.read_only = True
        for d in loaded:
            for card in d.spec.query_cards():
                sql = d.sql[card.key]
                tags = {t.name: t for t in resolve_tags(d.spec, card, sql)}
                for keep_optional in (False, True):  # filters unset, and every optional clause active
                    rows = conn.execute(
                        sqlcheck.substitute(sql, tags, keep_optional=keep_optional)
                    ).fetchall()
                    if not rows:
                        empty.append(
                            f"{d.spec.key}/{card.key} (optional clauses {'on' if keep_optional else 'off'})"
                        )
    assert empty == []


def test_sql_check_reports_a_bad_query_and_a_missing_viz_column(seeded_database: Any, tmp_path: Path) -> None:
    text = (DEMO / "5-locations.yaml").read_text()
    broken = text.replace(
        "SELECT poi_type, sum(visit_count) AS visits\n      FROM v_poi_summary",
        "SELECT poi_type, sum(visit_count) AS visits\n      FROM v_poi_summry",
    )
    broken = broken.replace(
        "viz: {latitude: latitude, longitude: longitude}", "viz: {latitude: lat, longitude: longitude}"
    )
    broken = broken.replace(
        "poi_type: {field: v_poi_summary.poi_type}", "poi_type: {field: v_poi_summary.poi_kind}", 1
    )
    (tmp_path / "locations.yaml").write_text(broken)
    with pytest.raises(SpecErrors) as caught:
        dashboards.validate([tmp_path], database_url=seeded_database.reader_dsn, environ={})
    errors = caught.value.errors
    found = {(e.field, e.problem.split(":")[0]) for e in errors}
    assert ("cards[2].sql", "PostgreSQL rejects the SQL") in found
    assert any(e.field == "cards[1].viz.latitude" and "`lat`" in e.problem for e in errors)
    assert any(
        e.field == "cards[1].tags.poi_type.field" and "v_poi_summary.poi_kind" in e.problem for e in errors
    )
    assert all(e.path.name == "locations.yaml" and e.line > 0 for e in errors)


def test_demo_dashboards_apply_run_and_reapply_without_writes(
    fake_metabase: Any, seeded_database: Any, tmp_path: Path
) -> None:
    session = fake_metabase.admin_session()
    fake_metabase.add_database(seeded_database.reader_dsn, name="Asset Finance Demo")
    client = MetabaseClient(fake_metabase.url, sleep=lambda _s: None)
    client.use_session(session)
    settings = Settings.load({}, cwd=tmp_path, metabase_url=fake_metabase.url)
    result = dashboards.apply(settings, [DEMO], client=client, environ={})
    assert result.failed_queries == [] and result.verify_problems == []
    assert len(result.dashboard_urls) == 5
    collections = {c["name"] for c in fake_metabase.collections()}
    assert {"Asset Finance Demo", "Portfolio", "Risk", "Telemetry", "Events", "Locations"} <= collections
    fake_metabase.clear_requests()
    again = dashboards.apply(settings, [DEMO], client=client, environ={})
    assert [r for r in fake_metabase.mutating_requests() if not r.path.startswith("/api/session")] == []
    assert set(again.summary().values()) == {0, again.summary()["unchanged"]}
    plan = dashboards.plan(settings, [DEMO], client=client, environ={})
    cards = sum(len(d.spec.query_cards()) for d in load_paths([DEMO], environ={}))
    # databases + metadata + collections + 6 item lists + 5 dashboards: nothing per card
    assert not plan.has_changes and plan.requests <= 14 < cards
    client.close()


def test_demo_collection_follows_the_environment(
    fake_metabase: Any, seeded_database: Any, tmp_path: Path
) -> None:
    session = fake_metabase.admin_session()
    fake_metabase.add_database(seeded_database.reader_dsn, name="Asset Finance Demo")
    client = MetabaseClient(fake_metabase.url, sleep=lambda _s: None)
    client.use_session(session)
    settings = Settings.load({}, cwd=tmp_path, metabase_url=fake_metabase.url)
    plan = dashboards.plan(
        settings, [DEMO / "5-locations.yaml"], client=client, environ={"DEMO_COLLECTION": "Acme"}
    )
    created = [a.key for a in plan.actions if a.kind == "collection"]
    assert created == ["Acme", "Acme/Locations"]
    client.close()


def test_sql_check_catches_a_field_filter_on_an_aliased_table(seeded_database: Any, tmp_path: Path) -> None:
    # Metabase substitutes "table"."column" for a field filter: an alias in FROM breaks the card at run time.
    text = (DEMO / "5-locations.yaml").read_text()
    aliased = text.replace(
        "SELECT owner_type, sum(visit_count) AS visits\n      FROM v_poi_summary\n",
        "SELECT owner_type, sum(visit_count) AS visits\n      FROM v_poi_summary AS p\n",
    )
    assert aliased != text
    (tmp_path / "locations.yaml").write_text(aliased)
    with pytest.raises(SpecErrors) as caught:
        dashboards.validate([tmp_path], database_url=seeded_database.reader_dsn, environ={})
    [error] = caught.value.errors
    assert error.field == "cards[3].sql" and "inside a [[ ]] clause" in error.problem


def test_cli_validate_with_database_url_prepares_every_card(seeded_database: Any) -> None:
    from typer.testing import CliRunner

    from provisioner.cli.app import app

    result = CliRunner().invoke(
        app, ["dashboards", "validate", str(DEMO), "--database-url", seeded_database.reader_dsn, "--json"]
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["sql_checked"] is True
    assert seeded_database.reader_dsn.split("@")[0].split(":")[-1] not in result.stdout + result.stderr
