"""Plan comparisons without I/O: what Metabase may store differently is not a change; real edits are."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from provisioner.apply import dashcards_body
from provisioner.compare import Reader, card_differences, dashboard_differences
from provisioner.desired import DesiredCard, DesiredDashboard, desired_state
from provisioner.metabase.models import Card, Dashboard, DatabaseMetadata
from provisioner.observe import ActualState
from provisioner.plan import build_plan
from provisioner.spec import load_file
from provisioner.translate import MetadataSchema

YAML = """\
key: board
name: Board
collection: Top/Sub
filters:
  - {key: band, name: Band, type: category}
cards:
  - heading: Overview
  - key: by-band
    name: By band
    display: bar
    sql: SELECT band, count(*) AS n FROM t WHERE true [[AND {{band}}]] GROUP BY band
    tags: {band: {field: t.band}}
    filters: {band: band}
    viz: {x: band, y: [n]}
"""
METADATA = DatabaseMetadata.model_validate(
    {
        "id": 7,
        "name": "Warehouse",
        "tables": [
            {
                "id": 1,
                "name": "t",
                "schema": "public",
                "fields": [{"id": 11, "name": "band"}, {"id": 12, "name": "n"}],
            }
        ],
    }
)


@pytest.fixture
def desired(tmp_path: Path) -> tuple[DesiredDashboard, DesiredCard]:
    path = tmp_path / "board.yaml"
    path.write_text(YAML)
    state = desired_state([load_file(path, environ={})], {"board": 7}, {7: METADATA})
    assert state.errors == []
    [dashboard], [card] = state.dashboards, state.cards
    return dashboard, card


READER = Reader(schemas={7: MetadataSchema(METADATA)})


def _as_metabase_card(card: DesiredCard, card_id: int = 5) -> dict[str, Any]:
    tags = {
        k: v.model_dump(mode="json", by_alias=True, exclude_none=True) for k, v in card.template_tags.items()
    }
    return {
        "id": card_id,
        "name": card.name,
        "display": card.display,
        "collection_id": 3,
        "database_id": 7,
        "visualization_settings": copy.deepcopy(card.visualization_settings),
        "dataset_query": {
            "type": "native",
            "database": 7,
            "native": {"query": card.sql, "template-tags": tags},
        },
    }


def _as_metabase_dashboard(dashboard: DesiredDashboard, card: DesiredCard) -> dict[str, Any]:
    _, dashcards = dashcards_body(dashboard, None, {card.ident: 5})
    cards = []
    for i, d in enumerate(dashcards):
        body = d.model_dump(mode="json", exclude_none=True)
        body["id"] = i + 1
        body["card"] = _as_metabase_card(card) if d.card_id else {}
        cards.append(body)
    return {
        "id": 9,
        "name": dashboard.name,
        "collection_id": 3,
        "width": "fixed",
        "parameters": [p.model_dump(mode="json", exclude_none=True) for p in dashboard.parameters],
        "dashcards": cards,
        "tabs": [],
    }


def test_what_was_written_compares_equal(desired: tuple[DesiredDashboard, DesiredCard]) -> None:
    dashboard, card = desired
    assert card_differences(card, Card.model_validate(_as_metabase_card(card)), 3, READER) == []
    actual = Dashboard.model_validate(_as_metabase_dashboard(dashboard, card))
    assert dashboard_differences(dashboard, actual, 3, READER) == []


def test_the_mbql5_form_of_the_same_card_is_not_a_change(
    desired: tuple[DesiredDashboard, DesiredCard],
) -> None:
    _, card = desired
    raw = _as_metabase_card(card)
    legacy = raw.pop("dataset_query")
    tags = legacy["native"]["template-tags"]
    tags["band"]["dimension"] = ["field", {"base-type": "type/Text"}, 11]
    raw["dataset_query"] = {
        "lib/type": "mbql/query",
        "database": 7,
        "stages": [{"lib/type": "mbql.stage/native", "native": card.sql, "template-tags": tags}],
    }
    assert card_differences(card, Card.model_validate(raw), 3, READER) == []


def test_ui_edits_of_a_card_are_named(desired: tuple[DesiredDashboard, DesiredCard]) -> None:
    _, card = desired
    raw = _as_metabase_card(card)
    raw["name"] = "Edited"
    raw["dataset_query"]["native"]["query"] += " LIMIT 1"
    raw["visualization_settings"]["graph.metrics"] = ["other"]
    raw["collection_id"] = 4
    assert card_differences(card, Card.model_validate(raw), 3, READER) == [
        "name",
        "sql",
        "visualization_settings",
        "collection",
    ]


def test_text_card_scaffolding_and_target_options_are_not_changes(
    desired: tuple[DesiredDashboard, DesiredCard],
) -> None:
    dashboard, card = desired
    raw = _as_metabase_dashboard(dashboard, card)
    heading = next(d for d in raw["dashcards"] if not d["card"])
    heading["visualization_settings"]["virtual_card"] = {"display": "heading"}  # stored more sparsely
    query = next(d for d in raw["dashcards"] if d["card"])
    for mapping in query["parameter_mappings"]:
        mapping["target"].append({"stage-number": 0})  # newest servers add the stage
    assert dashboard_differences(dashboard, Dashboard.model_validate(raw), 3, READER) == []
    heading["visualization_settings"]["text"] = "Changed in the UI"
    assert dashboard_differences(dashboard, Dashboard.model_validate(raw), 3, READER) == ["cards"]


def test_dashboard_edits_are_named(desired: tuple[DesiredDashboard, DesiredCard]) -> None:
    dashboard, card = desired
    raw = _as_metabase_dashboard(dashboard, card)
    raw["name"] = "Renamed"
    raw["parameters"][0]["name"] = "Renamed filter"
    raw["dashcards"][0]["size_x"] = 12
    assert dashboard_differences(dashboard, Dashboard.model_validate(raw), 3, READER) == [
        "name",
        "filters",
        "cards",
    ]


def test_plan_creates_what_is_missing_and_keeps_what_matches(
    desired: tuple[DesiredDashboard, DesiredCard],
) -> None:
    dashboard, card = desired
    empty = build_plan([dashboard], [card], ActualState(), READER)
    assert [(a.kind, a.action) for a in empty.actions] == [
        ("collection", "create"),
        ("collection", "create"),
        ("card", "create"),
        ("dashboard", "create"),
    ]
    assert empty.has_changes
    assert json.loads(json.dumps(empty.to_dict()))["summary"] == {
        "create": 4,
        "update": 0,
        "archive": 0,
        "unchanged": 0,
    }
