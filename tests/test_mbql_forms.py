"""The normal form of MBQL: legacy and MBQL 5 read the same, what the tool writes reads back, ids <-> names."""

from __future__ import annotations

import json
from typing import Any

import pytest

from provisioner.mbql.legacy import LegacyError, to_legacy
from provisioner.mbql.normal import canonical, from_wire
from provisioner.metabase.models import DatabaseMetadata
from provisioner.spec.raw import RawError, decode, encode
from provisioner.translate import MetadataSchema, TranslateError, to_ids, to_names
from tests.paths import RECORDED

METADATA = DatabaseMetadata.model_validate(
    {
        "id": 2,
        "name": "Warehouse",
        "tables": [
            {
                "id": 10,
                "name": "orders",
                "schema": "public",
                "fields": [
                    {"id": 78, "name": "status", "base_type": "type/Text"},
                    {"id": 79, "name": "customer_id", "base_type": "type/Integer", "fk_target_field_id": 94},
                    {"id": 80, "name": "amount", "base_type": "type/Float"},
                    {"id": 81, "name": "ordered_at", "base_type": "type/Date"},
                ],
            },
            {
                "id": 12,
                "name": "customers",
                "schema": "public",
                "fields": [
                    {"id": 94, "name": "customer_id", "base_type": "type/Integer"},
                    {"id": 95, "name": "name", "base_type": "type/Text"},
                ],
            },
            {"id": 13, "name": "customers", "schema": "crm", "fields": [{"id": 96, "name": "name"}]},
        ],
    }
)
SCHEMA = MetadataSchema(METADATA)

# One question as the tool writes it (legacy, ids) ...
LEGACY = {
    "database": 2,
    "type": "query",
    "query": {
        "source-table": 10,
        "joins": [
            {
                "alias": "C",
                "strategy": "left-join",
                "condition": ["=", ["field", 79, None], ["field", 94, {"join-alias": "C"}]],
                "fields": "none",
                "source-table": 12,
            }
        ],
        "expressions": {"big": [">", ["field", 80, None], 100]},
        "filter": [
            "and",
            ["=", ["field", 78, None], "paid", "late"],
            ["contains", ["field", 95, {"join-alias": "C"}], "acme", {"case-sensitive": False}],
        ],
        "aggregation": [
            ["count"],
            ["aggregation-options", ["sum", ["field", 80, None]], {"display-name": "Total"}],
        ],
        "breakout": [["field", 81, {"temporal-unit": "month"}]],
        "order-by": [["desc", ["aggregation", 1]]],
        "limit": 10,
    },
}
# ... and as Metabase 65 gives it back: MBQL 5, uuids everywhere, types added to id refs.
MBQL5 = {
    "lib/type": "mbql/query",
    "database": 2,
    "lib.convert/converted?": True,
    "stages": [
        {
            "lib/type": "mbql.stage/mbql",
            "source-table": 10,
            "joins": [
                {
                    "lib/type": "mbql/join",
                    "lib/options": {"lib/uuid": "j"},
                    "alias": "C",
                    "strategy": "left-join",
                    "fields": "none",
                    "conditions": [
                        ["=", {"lib/uuid": "1"}, ["field", {"lib/uuid": "2", "base-type": "type/Integer", "effective-type": "type/Integer"}, 79],
                         ["field", {"lib/uuid": "3", "join-alias": "C", "base-type": "type/Integer"}, 94]]
                    ],
                    "stages": [{"lib/type": "mbql.stage/mbql", "source-table": 12}],
                }
            ],
            "expressions": [[">", {"lib/uuid": "4", "lib/expression-name": "big"}, ["field", {"lib/uuid": "5", "base-type": "type/Float"}, 80], 100]],
            "filters": [
                ["=", {"lib/uuid": "6"}, ["field", {"lib/uuid": "7", "base-type": "type/Text"}, 78], "paid", "late"],
                ["contains", {"lib/uuid": "8", "case-sensitive": False}, ["field", {"lib/uuid": "9", "join-alias": "C"}, 95], "acme"],
            ],
            "aggregation": [
                ["count", {"lib/uuid": "agg-0"}],
                ["sum", {"lib/uuid": "agg-1", "display-name": "Total"}, ["field", {"lib/uuid": "10", "base-type": "type/Float"}, 80]],
            ],
            "breakout": [["field", {"lib/uuid": "11", "temporal-unit": "month", "base-type": "type/Date"}, 81]],
            "order-by": [["desc", {"lib/uuid": "12"}, ["aggregation", {"lib/uuid": "13"}, "agg-1"]]],
            "limit": 10,
        }
    ],
}  # fmt: skip


def test_legacy_and_mbql5_of_one_question_have_one_normal_form() -> None:
    assert from_wire(LEGACY) == from_wire(MBQL5)


def test_what_the_tool_writes_reads_back_to_the_same_normal_form() -> None:
    normal = from_wire(MBQL5)
    assert normal is not None
    written = to_legacy(normal, 2, lambda _stage, _name, _alias: "type/*")
    assert written == LEGACY
    assert from_wire(written) == normal


def test_ids_to_names_and_back() -> None:
    normal = from_wire(MBQL5)
    assert normal is not None
    named = to_names(normal, SCHEMA, {})
    stage = named["stages"][0]
    assert stage["source-table"] == "orders"
    assert stage["breakout"] == [["field", {"temporal-unit": "month"}, ["orders", "ordered_at"]]]
    assert stage["joins"][0]["stages"] == [{"source-table": "public.customers"}]  # two schemas have one
    assert to_ids(named, SCHEMA, {}) == normal


def test_a_card_source_reads_its_columns_by_name_however_metabase_refers_to_them() -> None:
    by_id = {
        "lib/type": "mbql/query",
        "database": 2,
        "stages": [
            {
                "lib/type": "mbql.stage/mbql",
                "source-card": 27,
                "filters": [
                    ["=", {"lib/uuid": "a"}, ["field", {"lib/uuid": "b", "base-type": "type/Text"}, 78], "x"]
                ],
            }
        ],
    }
    by_name = json.loads(
        json.dumps(by_id).replace('"base-type": "type/Text"}, 78]', '"base-type": "type/Text"}, "status"]')
    )
    for wire in (by_id, by_name):
        normal = from_wire(wire)
        assert normal is not None
        named = to_names(normal, SCHEMA, {27: "models/orders"})
        assert named["stages"][0] == {
            "source-card": "models/orders",
            "filters": [["=", {}, ["field", {}, "status"], "x"]],
        }


@pytest.mark.parametrize("card", ["27.json", "28.json", "33.json"])
def test_recorded_query_builder_cards_read_the_same_in_both_forms(card: str) -> None:
    recorded: dict[str, Any] = json.loads((RECORDED / "card" / card).read_text())
    assert from_wire(recorded["dataset_query"]) == from_wire(json.loads(recorded["legacy_query"]))


def test_unknown_ids_and_names_are_errors_not_guesses() -> None:
    with pytest.raises(TranslateError, match="field id 999"):
        to_names({"stages": [{"source-table": 10, "fields": [["field", {}, 999]]}]}, SCHEMA, {})
    with pytest.raises(TranslateError, match=r"no column `orders\.nope`"):
        to_ids(
            {"stages": [{"source-table": "orders", "fields": [["field", {}, ["orders", "nope"]]]}]},
            SCHEMA,
            {},
        )
    with pytest.raises(TranslateError, match="has no id in this Metabase yet"):
        to_ids({"stages": [{"source-card": "models/x"}]}, SCHEMA, {})


def test_an_option_legacy_mbql_has_no_place_for_is_refused() -> None:
    with pytest.raises(LegacyError, match="`between` with options"):
        to_legacy(
            {"stages": [{"source-table": 10, "filters": [["between", {"odd": 1}, 1, 2, 3]]}]},
            2,
            lambda *_: "",
        )


def test_the_raw_block_round_trips_and_names_what_is_malformed() -> None:
    normal = to_names(from_wire(MBQL5) or {}, SCHEMA, {})
    block = encode(normal)
    assert block["stages"][0]["breakout"] == [["field", {"temporal-unit": "month"}, "orders.ordered_at"]]
    assert decode(json.loads(json.dumps(block))) == canonical(normal)
    with pytest.raises(RawError) as caught:
        decode({"stages": [{"source-table": "orders", "filters": [{"not": "a clause"}]}]})
    assert caught.value.path == "stages[0].filters[0]"
    with pytest.raises(RawError, match="first step has `source-table` or `source-card`"):
        decode({"stages": [{"limit": 3}]})
