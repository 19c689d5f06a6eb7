"""The demo: eight models on the eight views, five dashboards of query-builder questions on them; every
card answers on the seeded warehouse, every filter changes what a card shows, a re-apply writes nothing."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import psycopg
import pytest

from provisioner import dashboards
from provisioner.config import Settings
from provisioner.db import schema
from provisioner.metabase.client import MetabaseClient
from provisioner.spec import load_paths
from provisioner.spec.models import DashboardSpec, QueryCard, as_source
from tests.fake_metabase.fixtures import admin_http

DEMO = Path(__file__).resolve().parent.parent / "dashboards"


def _cards(loaded: list[Any]) -> list[QueryCard]:
    return [c for d in loaded if isinstance(d.spec, DashboardSpec) for c in d.spec.query_cards()]


def test_eight_models_one_per_view_and_five_dashboards_of_query_builder_questions() -> None:
    loaded = load_paths([DEMO], environ={})
    [models] = [d for d in loaded if not isinstance(d.spec, DashboardSpec)]
    assert all(q.type == "model" for q in models.spec.questions)
    assert {as_source(q.stages[0].source).table for q in models.spec.questions if q.stages[0].source} == set(
        schema.VIEWS
    )
    assert all(q.metadata for q in models.spec.questions), "every model describes its columns"
    boards = [d.spec for d in loaded if isinstance(d.spec, DashboardSpec)]
    assert sorted(b.name for b in boards) == [
        "Account Risk & Collections",
        "Asset Telemetry",
        "Events & Alerts",
        "Locations",
        "Portfolio Overview",
    ]
    cards = _cards(loaded)
    query_builder = [c for c in cards if c.query is not None]
    assert len(query_builder) == len(cards), "a SQL card needs a one-line reason in a comment"
    model_keys = {f"models/{q.key}" for q in models.spec.questions}
    assert all(as_source(c.stages[0].source or "").model in model_keys for c in query_builder)
    for board in boards:
        assert board.filters, board.key
        assert any(not isinstance(c, QueryCard) for c in board.cards), f"{board.key} has no text card"
        assert all(card.filters for card in board.query_cards()), f"{board.key} has a card wired to no filter"


@pytest.fixture
def demo(fake_metabase: Any, seeded_database: Any, tmp_path: Path) -> Any:
    session = fake_metabase.admin_session()
    fake_metabase.add_database(seeded_database.reader_dsn, name="Asset Finance Demo")
    client = MetabaseClient(fake_metabase.url, sleep=lambda _s: None)
    client.use_session(session)
    settings = Settings.load({}, cwd=tmp_path, metabase_url=fake_metabase.url)
    result = dashboards.apply(settings, [DEMO], client=client, environ={})
    assert result.failed_queries == [] and result.verify_problems == [], result.describe()
    yield fake_metabase, client, settings, result
    client.close()


def _run(http: Any, url: str, dashboard: dict[str, Any], values: dict[str, Any]) -> dict[str, list[Any]]:
    """Every card of a dashboard, run through its dashcard with these filter values (by filter slug)."""
    parameters = [
        {"id": p["id"], "type": p["type"], "value": values[p["slug"]]}
        for p in dashboard["parameters"]
        if p["slug"] in values
    ]
    out = {}
    for dashcard in dashboard["dashcards"]:
        if dashcard.get("card_id") is None:
            continue
        path = f"/api/dashboard/{dashboard['id']}/dashcard/{dashcard['id']}/card/{dashcard['card_id']}/query"
        body = http.post(url + path, json={"parameters": parameters}).json()
        assert body["status"] == "completed", (dashboard["name"], body.get("error"))
        out[str(dashcard["card_id"])] = body["data"]["rows"]
    return out


def _a_value(dsn: str, view: str, column: str) -> Any:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            f'SELECT "{column}" FROM {view} GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1'
        ).fetchone()
    assert row is not None
    return row[0]


def test_every_card_answers_and_every_filter_changes_a_card(demo: Any, seeded_database: Any) -> None:
    fake, _client, _settings, _result = demo
    http = admin_http(fake)
    dsn = seeded_database.reader_dsn
    as_of = seeded_database.as_of
    values = {
        "oem": [_a_value(dsn, "v_portfolio_overview", "oem_name")],
        "risk_band": ["delinquent"],
        "region": [_a_value(dsn, "v_portfolio_overview", "region")],
        "min_dpd": [30],
        "asset": [_a_value(dsn, "v_asset_telemetry_dashboard", "asset_serial")],
        "period": f"{as_of - dt.timedelta(days=6)}~{as_of}",
        "severity": ["critical"],
        "event_type": [_a_value(dsn, "v_open_events", "event_type")],
        "poi_type": [_a_value(dsn, "v_poi_summary", "poi_type")],
        "owner_type": [_a_value(dsn, "v_poi_summary", "owner_type")],
    }
    boards = [d for d in fake.dashboards() if not d.get("archived")]
    assert len(boards) == 5
    unchanged: list[str] = []
    for board in boards:
        plain = _run(http, fake.url, board, {})
        empty = [card for card, rows in plain.items() if not rows]
        assert empty == [], f"{board['name']}: cards without rows {empty}"
        for parameter in board["parameters"]:
            filtered = _run(http, fake.url, board, {parameter["slug"]: values[parameter["slug"]]})
            if filtered == plain:
                unchanged.append(f"{board['name']}: {parameter['slug']}")
    assert unchanged == []


def test_models_carry_their_metadata_into_metabase(demo: Any) -> None:
    fake, *_ = demo
    models = {c["name"]: c for c in fake.cards() if c["type"] == "model"}
    assert len(models) == 8
    portfolio = {c["name"]: c for c in models["Portfolio"]["result_metadata"]}
    assert portfolio["exposure"]["semantic_type"] == "type/Currency"
    assert portfolio["oem_name"]["display_name"] == "OEM"
    places = {c["name"]: c for c in models["Places"]["result_metadata"]}
    assert places["latitude"]["semantic_type"] == "type/Latitude"
    questions = [c for c in fake.cards() if c["type"] == "question"]
    assert questions and all(c["dashboard_id"] is not None for c in questions), "dashboard questions"


def test_demo_reapply_writes_nothing_and_plans_clean(demo: Any) -> None:
    fake, client, settings, _result = demo
    fake.clear_requests()
    again = dashboards.apply(settings, [DEMO], client=client, environ={})
    assert [r for r in fake.mutating_requests() if not r.path.startswith("/api/session")] == []
    assert set(again.summary().values()) == {0, again.summary()["unchanged"]}
    plan = dashboards.plan(settings, [DEMO], client=client, environ={})
    assert not plan.has_changes


def test_the_demo_plans_the_same_one_request_at_a_time_and_eight_at_once(demo: Any, tmp_path: Path) -> None:
    fake, _client, settings, _result = demo
    changed = tmp_path / "changed"
    changed.mkdir()
    for path in DEMO.glob("*.yaml"):  # one dashboard and one model renamed: a plan with changes
        text = (
            path.read_text()
            .replace("name: Locations", "name: Places")
            .replace("name: Portfolio\n", "name: Book\n")
        )
        (changed / path.name).write_text(text)
    clone = Settings.load({}, cwd=tmp_path / "clone", metabase_url=fake.url)
    for directory in (DEMO, changed):
        for where in (settings, clone):  # the remembered ids, and a fresh clone's full read
            plans = []
            for concurrency in (1, 8):
                with MetabaseClient(fake.url, concurrency=concurrency) as client:
                    client.use_session(fake.admin_session())
                    plans.append(dashboards.plan(where, [directory], client=client, environ={}))
            one, eight = plans
            assert one.to_dict() == eight.to_dict() and one.requests == eight.requests
            assert one.has_changes == (directory == changed)


def test_one_dashboard_file_reads_the_models_it_is_built_on(demo: Any) -> None:
    _fake, client, settings, _result = demo
    plan = dashboards.plan(settings, [DEMO / "5-locations.yaml"], client=client, environ={})
    assert not plan.has_changes
    keys = {a.key for a in plan.actions}
    assert "models/poi-summary" in keys and "locations" in keys


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


def test_every_demo_question_compiles_to_sql_that_prepares_on_the_seeded_warehouse(
    seeded_database: Any,
) -> None:
    result = dashboards.validate([DEMO], database_url=seeded_database.reader_dsn, environ={})
    assert result.sql_checked
    assert len(result.dashboards) == 6
