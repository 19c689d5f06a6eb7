"""The Metabase models: lenient reads of both query forms, exact writes, explicit nulls, version range."""

from __future__ import annotations

import json
from collections import OrderedDict

import pytest

from provisioner.errors import MetabaseError, MetabaseNotFound, MetabaseVersionError
from provisioner.metabase.models import (
    Card,
    CardCreate,
    CardUpdate,
    Collection,
    CollectionCreate,
    CollectionUpdate,
    Dashboard,
    DashboardCreate,
    DashboardUpdate,
    DashCard,
    Database,
    DatabaseMetadata,
    NativeDatasetQuery,
    NativeQuery,
    Parameter,
    QueryResult,
    SessionProperties,
    SetupUser,
    TemplateTag,
    unwrap_list,
)
from provisioner.metabase.versions import MAX_TESTED_MAJOR, MIN_SUPPORTED_MAJOR, check_version, parse_major
from tests.paths import RECORDED

TAGS = {
    "status": {
        "id": "a1",
        "name": "status",
        "display-name": "Status",
        "type": "text",
        "required": False,
        "default": "active",
    },
    "created": {
        "id": "b2",
        "name": "created",
        "display-name": "Created",
        "type": "dimension",
        "dimension": ["field", 78, None],
        "widget-type": "date/all-options",
    },
}
SQL = "select * from accounts where status = {{status}} [[and {{created}}]]"


def body(model: object) -> dict:
    return model.model_dump(mode="json", exclude_none=True)  # type: ignore[attr-defined]


def recorded(name: str) -> object:
    return json.loads((RECORDED / name).read_text())


# --- reading cards in both forms ---------------------------------------------------------------


def test_legacy_native_card_exposes_sql_and_tags() -> None:
    card = Card.model_validate(
        {
            "id": 1,
            "name": "c",
            "dataset_query": {
                "type": "native",
                "database": 2,
                "native": {"query": SQL, "template-tags": TAGS},
            },
        }
    )
    assert card.native_sql == SQL
    assert card.template_tags["status"].default == "active"
    assert card.template_tags["created"].widget_type == "date/all-options"
    assert card.template_tags["created"].dimension_field_id == 78


def test_mbql5_native_card_exposes_the_same_view() -> None:
    mbql5_tags = {
        **TAGS,
        "created": {**TAGS["created"], "dimension": ["field", {"base-type": "type/Date"}, 78]},
    }
    card = Card.model_validate(
        {
            "id": 1,
            "name": "c",
            "dataset_query": {
                "lib/type": "mbql/query",
                "database": 2,
                "stages": [{"lib/type": "mbql.stage/native", "native": SQL, "template-tags": mbql5_tags}],
            },
        }
    )
    assert card.native_sql == SQL
    assert set(card.template_tags) == {"status", "created"}
    assert card.template_tags["created"].dimension_field_id == 78


def test_legacy_query_string_is_preferred_when_present() -> None:
    legacy = {"type": "native", "database": 2, "native": {"query": SQL, "template-tags": TAGS}}
    card = Card.model_validate(
        {
            "id": 1,
            "name": "c",
            "legacy_query": json.dumps(legacy),
            "dataset_query": {"lib/type": "mbql/query", "stages": [{"native": "stale"}]},
        }
    )
    assert card.native_sql == SQL
    assert card.template_tags["created"].dimension == ["field", 78, None]


def test_an_unreadable_template_tag_is_a_metabase_error_naming_the_card() -> None:
    card = Card.model_validate(
        {
            "id": 9,
            "name": "Broken",
            "dataset_query": {
                "type": "native",
                "native": {"query": "{{x}}", "template-tags": {"x": {"name": "x"}}},
            },
        }
    )
    with pytest.raises(MetabaseError, match=r"card 9 .*'x'"):
        _ = card.template_tags


def test_recorded_mbql5_cards_without_template_tags_read_as_empty() -> None:
    card = Card.model_validate(recorded("card/30.json"))
    assert card.native_sql == "select 1;" and card.template_tags == {}
    query_builder = Card.model_validate(recorded("card/27.json"))
    assert query_builder.native_sql is None and query_builder.template_tags == {}


def test_every_recorded_fixture_parses_into_its_model() -> None:
    for path in sorted((RECORDED / "card").glob("*.json")):
        assert Card.model_validate(json.loads(path.read_text())).id == int(path.stem)
    dashboard = Dashboard.model_validate(recorded("dashboard/2.json"))
    assert dashboard.dashcards[0].card is not None and dashboard.dashcards[0].card.id == 27
    assert [Database.model_validate(d).engine for d in unwrap_list(recorded("database.json"))] == ["postgres"]
    assert DatabaseMetadata.model_validate(recorded("database/2/metadata.json")).tables
    assert [Collection.model_validate(c).id for c in recorded("collection.json")] == ["root", 2, 3]


# --- writing -----------------------------------------------------------------------------------


def test_card_create_writes_the_legacy_form_with_kebab_keys() -> None:
    tags = {k: TemplateTag.model_validate(v) for k, v in TAGS.items()}
    card = CardCreate(
        name="Accounts",
        display="table",
        dataset_query=NativeDatasetQuery(database=2, native=NativeQuery(query=SQL, template_tags=tags)),
    )
    sent = body(card)
    assert sent["dataset_query"] == {
        "type": "native",
        "database": 2,
        "native": {
            "query": SQL,
            "template-tags": {
                "status": TAGS["status"],
                "created": TAGS["created"] | {"dimension": ["field", 78, None]},
            },
        },
    }
    assert "collection_id" not in sent and "description" not in sent


def test_explicit_null_survives_only_where_it_means_something() -> None:
    assert body(CardUpdate(collection_id=None))["collection_id"] is None  # moved to the root collection
    assert body(CardUpdate(name="x")) == {"name": "x"}
    assert body(CollectionCreate(name="Demo", parent_id=None)) == {"name": "Demo", "parent_id": None}
    assert body(CollectionUpdate(name="x", description=None)) == {"name": "x", "description": None}
    assert body(DashboardCreate(name="D", collection_id=None))["collection_id"] is None
    virtual = DashCard(id=-1, card_id=None, row=0, col=0, size_x=4, size_y=2)
    assert body(DashboardUpdate(dashcards=[virtual]))["dashcards"][0]["card_id"] is None
    assert "dashboard_tab_id" not in body(virtual)
    assert body(TemplateTag(name="s", display_name="S", type="text", default=None)) == {
        "name": "s",
        "display-name": "S",
        "type": "text",
    }


def test_read_dashboard_round_trips_into_an_update_without_hydrated_cards() -> None:
    dashboard = Dashboard.model_validate(recorded("dashboard/2.json"))
    sent = body(DashboardUpdate(dashcards=dashboard.dashcards, tabs=dashboard.tabs))
    first = sent["dashcards"][0]
    assert "card" not in first
    assert first == {
        "id": 32,
        "card_id": 27,
        "dashboard_tab_id": None,
        "row": 0,
        "col": 0,
        "size_x": 12,
        "size_y": 9,
        "parameter_mappings": [],
        "visualization_settings": {},
        "series": [],
    }


def test_old_ordered_cards_key_is_read_as_dashcards() -> None:
    dashcard = {"id": 1, "card_id": 2, "row": 0, "col": 0, "size_x": 4, "size_y": 4, "card": {}}
    dashboard = Dashboard.model_validate({"id": 3, "name": "old", "ordered_cards": [dashcard]})
    assert [d.card_id for d in dashboard.dashcards] == [2]
    assert dashboard.dashcards[0].card is None  # an empty hydrated card map is no card


def test_series_are_sent_as_card_ids() -> None:
    dashcard = DashCard.model_validate(
        {
            "id": 1,
            "card_id": 2,
            "row": 0,
            "col": 0,
            "size_x": 4,
            "size_y": 4,
            "series": [{"id": 9, "name": "x"}],
        }
    )
    assert body(dashcard)["series"] == [{"id": 9}]


def test_parameter_keeps_unknown_keys_on_round_trip() -> None:
    raw = {
        "id": "f1",
        "name": "Status",
        "slug": "status",
        "type": "string/=",
        "sectionId": "string",
        "values_query_type": "list",
        "filteringParameters": [],
    }
    assert body(Parameter.model_validate(raw)) == raw


def test_passwords_are_sent_but_never_shown() -> None:
    user = SetupUser(email="a@b.c", password="Pa55-word-ok")
    assert body(user)["password"] == "Pa55-word-ok"
    assert "Pa55-word-ok" not in repr(user) and "Pa55-word-ok" not in str(user)


# --- lists, metadata, properties, results ------------------------------------------------------


def test_unwrap_list_accepts_both_forms_and_rejects_others() -> None:
    assert unwrap_list([1]) == [1]
    assert unwrap_list({"data": [1], "total": 1}) == [1]
    with pytest.raises(ValueError):
        unwrap_list({"total": 1})


def test_metadata_resolves_fields_both_ways() -> None:
    metadata = DatabaseMetadata.model_validate(recorded("database/2/metadata.json"))
    field = metadata.field_id("orders", "status")
    assert metadata.field_name(field) == ("orders", "status")
    skus = metadata.table("skus")
    assert metadata.field_id("inventory.skus", skus.fields[0].name) == skus.fields[0].id
    assert {"customers", "orders", "skus"} <= metadata.table_names


def test_metadata_lookup_names_what_is_missing() -> None:
    metadata = DatabaseMetadata.model_validate(recorded("database/2/metadata.json"))
    with pytest.raises(MetabaseNotFound, match="'nope'"):
        metadata.field_id("nope", "x")
    with pytest.raises(MetabaseNotFound, match="'colour'"):
        metadata.field_id("orders", "colour")
    with pytest.raises(MetabaseNotFound, match="99999"):
        metadata.field_name(99999)


def test_collection_parent_comes_from_location_when_parent_id_is_absent() -> None:
    assert Collection.model_validate({"id": 5, "name": "c", "location": "/3/4/"}).effective_parent_id == 4
    assert Collection.model_validate({"id": 5, "name": "c", "location": "/"}).effective_parent_id is None


def test_session_properties_read_kebab_keys_and_major() -> None:
    props = SessionProperties.model_validate(
        {"has-user-setup": True, "setup-token": "t", "version": {"tag": "v1.64.2.2"}, "engines": {}}
    )
    assert props.has_user_setup and props.setup_token == "t"
    assert parse_major(props.version_tag) == 64


def test_failed_query_result_is_readable() -> None:
    result = QueryResult.model_validate({"status": "failed", "error": {"message": "x"}, "data": {"rows": []}})
    assert not result.ok and "x" in (result.error or "")


# --- supported versions ------------------------------------------------------------------------


def test_versions_below_the_range_are_refused_with_the_range_named() -> None:
    with pytest.raises(MetabaseVersionError) as caught:
        check_version("v0.60.3")
    assert (
        "v0.60.3" in caught.value.message
        and f"{MIN_SUPPORTED_MAJOR}–{MAX_TESTED_MAJOR}" in caught.value.message
    )


def test_versions_above_the_range_warn_and_proceed() -> None:
    checked = check_version(f"v0.{MAX_TESTED_MAJOR + 1}.0")
    assert checked.supported and "newer than tested" in (checked.warning or "")
    assert check_version("v0.65.4").warning is None and check_version("v0.61.0").major == 61


def test_unparseable_versions_warn() -> None:
    assert parse_major("vUNKNOWN") is None
    assert "cannot read" in (check_version(None).warning or "")


def test_an_answer_is_kept_as_sent_apart_from_the_model_made_of_it() -> None:
    answer = json.loads((RECORDED / "dashboard/2.json").read_text())
    dashboard = Dashboard.model_validate(answer)
    assert dashboard.raw == answer
    card = next(d.card for d in dashboard.dashcards if d.card is not None)
    card.visualization_settings.setdefault("graph.dimensions", []).append("changed")
    answer["dashcards"][0]["size_x"] = -1
    kept = json.loads((RECORDED / "dashboard/2.json").read_text())
    assert dashboard.raw == kept  # neither the model nor the answer shares anything with what was kept
    assert card.raw == next(d["card"] for d in kept["dashcards"] if d.get("card"))
    # what is not plain JSON is still copied (deep-copied instead)
    unusual = Card.model_validate({**kept["dashcards"][0]["card"], "extra": OrderedDict(a=[1])})
    assert unusual.raw["extra"] == {"a": [1]}


def test_plain_copies_are_deep_and_keep_every_type() -> None:
    import datetime as dt
    from enum import StrEnum

    from provisioner.mbql.normal import copy_plain

    class Kind(StrEnum):
        MODEL = "model"

    shared = ["field", {"base-type": "type/Integer"}, ["orders", "id"]]
    value = {"a": [shared, shared], "b": (1, 2.5, True, None), "c": {7: "x"}}
    copied = copy_plain(value)
    assert copied == value and copied["a"][0] is not shared and copied["a"][0][2] is not shared[2]
    assert copied["a"][0] is copied["a"][1]  # shared stays shared, as with copy.deepcopy
    assert copied["b"][2] is True and isinstance(copied["b"], tuple)
    unusual = {"on": dt.date(2026, 1, 31), "kind": Kind.MODEL}  # what marshal cannot copy: deep-copied
    again = copy_plain(unusual)
    assert again == unusual and type(again["kind"]) is Kind and again is not unusual
