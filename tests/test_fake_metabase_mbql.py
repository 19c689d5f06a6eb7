"""The fake Metabase's query-builder questions and models, pinned to Metabase 61-65 (see mbql.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.fake_metabase import FakeMetabase
from tests.fake_metabase.fixtures import admin_http
from tests.test_fake_metabase_content import Api, recorded

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.fixture
def api(fake_metabase: FakeMetabase, fake_admin: requests.Session, shared_fake_warehouse_dsn: str) -> Api:
    return Api(fake_metabase, fake_admin, fake_metabase.add_database(shared_fake_warehouse_dsn))


def table_id(api: Api, name: str) -> int:
    metadata = api.get(f"/database/{api.db_id}/metadata").json()
    return next(t["id"] for t in metadata["tables"] if t["name"] == name)


def legacy(api: Api, inner: dict) -> dict:
    return {"database": api.db_id, "type": "query", "query": inner}


def save(api: Api, query: dict, **extra: Any) -> requests.Response:
    body = {"name": "Q", "display": "table", "visualization_settings": {}, "dataset_query": query, **extra}
    return api.post("/card", body)


def saved(api: Api, query: dict, **extra: Any) -> dict:
    response = save(api, query, **extra)
    assert response.status_code == 200, response.text
    return response.json()


def without_uuids(value: Any) -> Any:
    """Return `value` with every `lib/uuid` replaced by "U" (after checking it is a uuid)."""
    if isinstance(value, dict):
        result = {}
        for key, item in value.items():
            if key == "lib/uuid":
                assert isinstance(item, str) and UUID.match(item), item
                result[key] = "U"
            else:
                result[key] = without_uuids(item)
        return result
    if isinstance(value, list):
        return [without_uuids(item) for item in value]
    return value


def uuids(value: Any) -> list[str]:
    """Return every `lib/uuid` in `value`, in document order."""
    if isinstance(value, dict):
        return [u for k, v in value.items() for u in ([v] if k == "lib/uuid" else uuids(v))]
    if isinstance(value, list):
        return [u for item in value for u in uuids(item)]
    return []


# ----------------------------------------------------------------- read: MBQL 5 as Metabase 65 returns it


def test_legacy_question_comes_back_as_mbql5_with_typed_refs_and_uuid_aggregation_refs(api: Api) -> None:
    orders = table_id(api, "orders")
    status, created = api.field_id("orders", "status"), api.field_id("orders", "created_at")
    query = legacy(
        api,
        {
            "source-table": orders,
            "filter": ["=", ["field", status, None], "paid"],
            "aggregation": [["count"],
                            ["aggregation-options",
                             ["sum", ["field", "amount", {"base-type": "type/Decimal"}]],
                             {"name": "total", "display-name": "Total"}]],
            "breakout": [["field", created, {"temporal-unit": "month"}]],
            "order-by": [["desc", ["aggregation", 1]]],
            "limit": 10,
        },
    )  # fmt: skip
    card = saved(api, query)
    stage = card["dataset_query"]["stages"][0]
    count_uuid = stage["aggregation"][0][1]["lib/uuid"]
    total_uuid = stage["aggregation"][1][1]["lib/uuid"]
    assert stage["order-by"][0][2][2] == total_uuid != count_uuid
    assert without_uuids(card["dataset_query"]) == {
        "lib/type": "mbql/query",
        "database": api.db_id,
        "lib.convert/converted?": True,
        "stages": [
            {
                "lib/type": "mbql.stage/mbql",
                "source-table": orders,
                "filters": [
                    ["=", {"lib/uuid": "U"},
                     ["field", {"lib/uuid": "U", "base-type": "type/Text", "effective-type": "type/Text"},
                      status],
                     "paid"],
                ],
                "aggregation": [
                    ["count", {"lib/uuid": "U"}],
                    ["sum", {"lib/uuid": "U", "name": "total", "display-name": "Total"},
                     ["field", {"lib/uuid": "U", "base-type": "type/Decimal"}, "amount"]],
                ],
                "breakout": [
                    ["field", {"lib/uuid": "U", "temporal-unit": "month",
                               "base-type": "type/DateTimeWithLocalTZ",
                               "effective-type": "type/DateTimeWithLocalTZ"}, created],
                ],
                "order-by": [["desc", {"lib/uuid": "U"}, ["aggregation", {"lib/uuid": "U"}, total_uuid]]],
                "limit": 10,
            }
        ],
    }  # fmt: skip
    assert len(set(uuids(card["dataset_query"]))) == len(uuids(card["dataset_query"]))
    assert card["query_type"] == "query" and card["table_id"] == orders and card["source_card_id"] is None


def test_legacy_query_string_keeps_server_added_base_types_and_aggregation_names(api: Api) -> None:
    status = api.field_id("orders", "status")
    inner = {
        "source-table": table_id(api, "orders"),
        "filter": ["and", ["=", ["field", status, None], "paid"], ["not-null", ["field", status, None]]],
        "aggregation": [["aggregation-options", ["count"], {"name": "n"}]],
    }
    card = saved(api, legacy(api, inner))
    assert json.loads(card["legacy_query"]) == legacy(
        api,
        {
            "source-table": inner["source-table"],
            "filter": ["and", ["=", ["field", status, {"base-type": "type/Text"}], "paid"],
                       ["not-null", ["field", status, {"base-type": "type/Text"}]]],
            "aggregation": [["aggregation-options", ["count"], {"name": "n"}]],
        },
    )  # fmt: skip


def test_top_level_and_filter_splits_into_a_filters_list(api: Api) -> None:
    status = api.field_id("orders", "status")
    inner = {
        "source-table": table_id(api, "orders"),
        "filter": ["and", ["=", ["field", status, None], "paid"], ["!=", ["field", status, None], "void"]],
    }
    filters = saved(api, legacy(api, inner))["dataset_query"]["stages"][0]["filters"]
    assert [f[0] for f in filters] == ["=", "!="]


def test_join_comes_back_like_recorded_card_27(api: Api) -> None:
    customer_id, customers_id = api.field_id("orders", "customer_id"), api.field_id("customers", "id")
    join = {
        "fields": "all",
        "alias": "Customers",
        "condition": [
            "=",
            ["field", customer_id, None],
            ["field", customers_id, {"join-alias": "Customers"}],
        ],
        "source-table": table_id(api, "customers"),
    }
    card = saved(api, legacy(api, {"source-table": table_id(api, "orders"), "joins": [join]}))
    mine = without_uuids(card["dataset_query"]["stages"][0]["joins"][0])
    theirs = without_uuids(recorded("card/27.json")["dataset_query"]["stages"][0]["joins"][0])  # type: ignore[index]
    assert set(mine) == set(theirs)
    assert mine["stages"] == [{"lib/type": "mbql.stage/mbql", "source-table": table_id(api, "customers")}]
    assert mine["lib/options"] == {"lib/uuid": "U"} and mine["lib/type"] == "mbql/join"
    assert mine["conditions"][0][3][1]["join-alias"] == "Customers"
    legacy_join = json.loads(card["legacy_query"])["query"]["joins"][0]
    assert legacy_join["condition"][1] == ["field", customer_id, {"base-type": "type/Integer"}]


def test_nested_question_on_a_card_reads_from_source_card_and_keeps_id_refs(api: Api) -> None:
    orders = table_id(api, "orders")
    base = saved(api, legacy(api, {"source-table": orders}))
    status = api.field_id("orders", "status")
    nested = saved(
        api,
        legacy(
            api, {"source-table": f"card__{base['id']}", "filter": ["=", ["field", status, None], "paid"]}
        ),
    )
    stage = nested["dataset_query"]["stages"][0]
    assert stage["source-card"] == base["id"] and "source-table" not in stage
    assert stage["filters"][0][2][2] == status  # an id ref to the source card's column stays an id ref
    assert nested["source_card_id"] == base["id"] and nested["table_id"] == orders
    assert json.loads(nested["legacy_query"])["query"]["source-table"] == f"card__{base['id']}"


def test_source_query_becomes_an_earlier_stage(api: Api) -> None:
    orders = table_id(api, "orders")
    status = api.field_id("orders", "status")
    inner = {
        "source-query": {"source-table": orders, "aggregation": [["count"]],
                         "breakout": [["field", status, None]]},
        "filter": [">", ["field", "count", {"base-type": "type/BigInteger"}], 1],
    }  # fmt: skip
    card = saved(api, legacy(api, inner))
    first, second = card["dataset_query"]["stages"]
    assert first["source-table"] == orders and first["aggregation"][0][0] == "count"
    assert second["filters"][0][2] == ["field", second["filters"][0][2][1], "count"]
    assert json.loads(card["legacy_query"])["query"]["source-query"]["source-table"] == orders


def test_expressions_become_a_list_named_in_their_options(api: Api) -> None:
    amount = api.field_id("orders", "amount")
    inner = {
        "source-table": table_id(api, "orders"),
        "expressions": {"doubled": ["*", ["field", amount, None], 2]},
        "fields": [["expression", "doubled"]],
    }
    stage = saved(api, legacy(api, inner))["dataset_query"]["stages"][0]
    assert (
        stage["expressions"][0][0] == "*" and stage["expressions"][0][1]["lib/expression-name"] == "doubled"
    )
    assert stage["fields"][0][0] == "expression" and stage["fields"][0][2] == "doubled"


def test_options_sent_are_kept_even_when_they_are_defaults(api: Api) -> None:
    status = api.field_id("orders", "status")
    inner = {
        "source-table": table_id(api, "orders"),
        "filter": ["contains", ["field", status, None], "pa", {"case-sensitive": True}],
    }
    card = saved(api, legacy(api, inner))
    condition = card["dataset_query"]["stages"][0]["filters"][0]
    assert condition[0] == "contains" and condition[1]["case-sensitive"] is True and condition[3] == "pa"
    assert json.loads(card["legacy_query"])["query"]["filter"][3] == {"case-sensitive": True}


# ----------------------------------------------------------------- uuids: minted once per save


def test_uuids_are_stable_across_reads_and_new_after_a_changed_query(api: Api) -> None:
    orders = table_id(api, "orders")
    card = saved(api, legacy(api, {"source-table": orders, "aggregation": [["count"]]}))
    path = f"/card/{card['id']}"
    assert api.get(path).json()["dataset_query"] == card["dataset_query"]
    assert api.get("/card").json()[0]["dataset_query"] == card["dataset_query"]
    same = api.put(path, {"dataset_query": legacy(api, {"source-table": orders, "aggregation": [["count"]]})})
    assert same.json()["dataset_query"] == card["dataset_query"]
    changed = api.put(path, {"dataset_query": legacy(api, {"source-table": orders, "aggregation": [["count"]],
                                                           "limit": 5})}).json()  # fmt: skip
    assert set(uuids(changed["dataset_query"])).isdisjoint(uuids(card["dataset_query"]))


def test_mbql5_sent_keeps_its_uuids_and_gets_the_missing_ones(api: Api) -> None:
    status = api.field_id("orders", "status")
    mine = "0a1b2c3d-0000-4000-8000-000000000001"
    query = {
        "lib/type": "mbql/query",
        "database": api.db_id,
        "stages": [
            {
                "lib/type": "mbql.stage/mbql",
                "source-table": table_id(api, "orders"),
                "filters": [["=", {"lib/uuid": mine}, ["field", {"base-type": "type/Text"}, status], "paid"]],
                "aggregation": [["count", {}]],
            }
        ],
    }
    card = saved(api, query)
    stage = card["dataset_query"]["stages"][0]
    assert stage["filters"][0][1]["lib/uuid"] == mine
    assert UUID.match(stage["filters"][0][2][1]["lib/uuid"]) and UUID.match(
        stage["aggregation"][0][1]["lib/uuid"]
    )
    assert json.loads(card["legacy_query"])["query"]["filter"] == [
        "=", ["field", status, {"base-type": "type/Text"}], "paid"]  # fmt: skip
    assert api.get(f"/card/{card['id']}").json()["dataset_query"] == card["dataset_query"]


def test_an_exported_mbql5_query_saves_back_unchanged(api: Api) -> None:
    status = api.field_id("orders", "status")
    inner = {"source-table": table_id(api, "orders"), "filter": ["=", ["field", status, None], "paid"],
             "aggregation": [["count"]], "order-by": [["asc", ["aggregation", 0]]]}  # fmt: skip
    exported = saved(api, legacy(api, inner))["dataset_query"]
    copy = saved(api, exported)
    assert copy["dataset_query"] == exported


def test_uuids_survive_the_state_file(tmp_path: Path, shared_fake_warehouse_dsn: str) -> None:
    state_file = tmp_path / "state.json"
    with FakeMetabase(state_file=state_file) as fake:
        api = Api(fake, admin_http(fake), fake.add_database(shared_fake_warehouse_dsn))
        card = saved(api, legacy(api, {"source-table": table_id(api, "orders"), "aggregation": [["count"]]}))
    with FakeMetabase(state_file=state_file) as again:
        fetched = admin_http(again).get(f"{again.url}/api/card/{card['id']}").json()
    assert fetched["dataset_query"] == card["dataset_query"]


# ----------------------------------------------------------------- write: what Metabase refuses


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"lib/type": "mbql/query", "type": "query", "database": 2, "stages": []},
         "MBQL 4 keys like :type, :query, or :native are not allowed in MBQL 5 queries with :lib/type"),
        ({"type": "query", "database": 2, "stages": [], "query": {}},
         "MBQL 5 :stages is not allowed in an MBQL 4 query with :type"),
        ({"database": 2, "query": {"source-table": 1}}, "Query must include :lib/type or :type"),
        ({"type": "query", "query": {"source-table": 1}}, "Query must include :database"),
    ],
    ids=["lib-type-with-type", "type-with-stages", "no-type", "no-database"],
)  # fmt: skip
def test_card_refuses_a_query_of_no_known_kind_with_a_plain_400(api: Api, query: dict, message: str) -> None:
    response = save(api, query)
    assert (response.status_code, response.text) == (400, message)
    assert response.headers["Content-Type"] == "text/plain" and api.fake.cards() == []


def test_aggregation_ref_out_of_range_is_a_400_on_save_and_a_500_ad_hoc(api: Api) -> None:
    inner = {"source-table": table_id(api, "orders"), "aggregation": [["count"]],
             "order-by": [["asc", ["aggregation", 3]]]}  # fmt: skip
    response = save(api, legacy(api, inner))
    expected = (
        "Error creating query from legacy query: "
        "Error converting :aggregation reference: no aggregation at index 3"
    )
    assert (response.status_code, response.text) == (400, expected)
    assert api.fake.cards() == []
    ad_hoc = api.post("/dataset", legacy(api, inner))
    assert ad_hoc.status_code == 500 and ad_hoc.json()["message"] == expected


@pytest.mark.parametrize(
    "bad",
    [
        ["wat", ["field", 1, None], 1],
        ["between", ["field", 1, None], 1],
        ["=", ["field", "status", None], "paid"],
    ],
    ids=["unknown-clause", "wrong-arity", "name-ref-without-base-type"],
)
def test_an_invalid_legacy_filter_is_cleaned_away_not_refused(api: Api, bad: list) -> None:
    status = api.field_id("orders", "status")
    good = ["=", ["field", status, None], "paid"]
    inner = {"source-table": table_id(api, "orders"), "filter": ["and", good, bad]}
    stage = saved(api, legacy(api, inner))["dataset_query"]["stages"][0]
    assert [f[0] for f in stage["filters"]] == ["="] and stage["filters"][0][2][2] == status


def test_cleaning_drops_an_emptied_list_and_refs_to_a_dropped_aggregation(api: Api) -> None:
    inner = {
        "source-table": table_id(api, "orders"),
        "filter": ["wat"],
        "aggregation": [["count"], ["sum"]],
        "order-by": [["asc", ["aggregation", 1]], ["desc", ["aggregation", 0]]],
    }
    card = saved(api, legacy(api, inner))
    stage = card["dataset_query"]["stages"][0]
    assert "filters" not in stage and [a[0] for a in stage["aggregation"]] == ["count"]
    assert [o[0] for o in stage["order-by"]] == ["desc"]
    assert json.loads(card["legacy_query"])["query"]["order-by"] == [["desc", ["aggregation", 0]]]


def test_missing_table_field_or_source_card_is_saved_and_fails_only_when_run(api: Api) -> None:
    assert save(api, legacy(api, {"source-table": 999_999})).status_code == 200
    missing_field = legacy(
        api, {"source-table": table_id(api, "orders"), "breakout": [["field", 999_999, None]]}
    )
    card = saved(api, missing_field)
    assert card["dataset_query"]["stages"][0]["breakout"][0][1].keys() == {"lib/uuid"}
    assert save(api, legacy(api, {"source-table": "card__999999"})).status_code == 200


def test_a_source_card_chain_back_to_the_card_is_refused(api: Api) -> None:
    first = saved(api, legacy(api, {"source-table": table_id(api, "orders")}))
    second = saved(api, legacy(api, {"source-table": f"card__{first['id']}"}))
    response = api.put(
        f"/card/{first['id']}", {"dataset_query": legacy(api, {"source-table": f"card__{second['id']}"})}
    )
    assert (response.status_code, response.text) == (400, "Cannot save card with cycles.")
    assert api.get(f"/card/{first['id']}").json()["dataset_query"]["stages"][0]["source-table"] == table_id(
        api, "orders"
    )


# ----------------------------------------------------------------- result_metadata and models


def column(name: str, **extra: Any) -> dict:
    return {"name": name, "display_name": name.title(), "base_type": "type/Text", **extra}


@pytest.mark.parametrize(
    "metadata",
    [[{"name": "x"}], [column("x", base_type="Text")], [column("x", **{"lib/type": "metadata/column"})],
     [column("x", **{"display-name": "X"})], "nope"],
    ids=["no-display-name", "bad-type", "lib-type", "kebab-key", "not-a-list"],
)  # fmt: skip
def test_result_metadata_is_validated(api: Api, metadata: Any) -> None:
    response = save(api, legacy(api, {"source-table": table_id(api, "orders")}), result_metadata=metadata)
    assert response.status_code == 400 and "result_metadata" in response.json()["errors"]


def test_result_metadata_sent_with_a_new_card_is_saved_as_sent(api: Api) -> None:
    metadata = [column("status", description="Order state", semantic_type="type/Category")]
    card = saved(
        api, legacy(api, {"source-table": table_id(api, "orders")}), type="model", result_metadata=metadata
    )
    assert card["result_metadata"] == metadata and card["type"] == "model"


def test_turning_a_question_into_a_model_shows_it_as_a_table(api: Api) -> None:
    card = saved(api, legacy(api, {"source-table": table_id(api, "orders")}), display="bar")
    updated = api.put(f"/card/{card['id']}", {"type": "model"}).json()
    assert (updated["type"], updated["display"]) == ("model", "table")
    listed = api.put(f"/card/{card['id']}", {"type": "model", "display": "list"}).json()
    assert listed["display"] == "list"


def test_metadata_sent_with_an_unchanged_query_replaces_the_saved_one(api: Api) -> None:
    query = legacy(api, {"source-table": table_id(api, "orders")})
    card = saved(api, query, type="model", result_metadata=[column("status")])
    edited = [column("status", display_name="State")]
    updated = api.put(f"/card/{card['id']}", {"dataset_query": query, "result_metadata": edited}).json()
    assert updated["result_metadata"] == edited


# ----------------------------------------------------------------- dashboard questions


def test_dashboard_question_is_placed_on_the_dashboard_in_its_collection(api: Api) -> None:
    collection = api.post("/collection", {"name": "Team"}).json()
    board = api.dashboard(collection_id=collection["id"])
    text = {"id": -1, "card_id": None, "row": 0, "col": 0, "size_x": 12, "size_y": 2,
            "visualization_settings": {"text": "hi"}}  # fmt: skip
    api.put(f"/dashboard/{board['id']}", {"dashcards": [text]})
    card = saved(api, legacy(api, {"source-table": table_id(api, "orders")}), display="scalar",
                 dashboard_id=board["id"])  # fmt: skip
    assert card["collection_id"] == collection["id"] and card["dashboard_id"] == board["id"]
    placed = [dc for dc in api.get(f"/dashboard/{board['id']}").json()["dashcards"] if dc["card_id"]]
    assert [(dc["card_id"], dc["row"], dc["col"], dc["size_x"], dc["size_y"]) for dc in placed] == [
        (card["id"], 0, 12, 6, 3)
    ]
    items = api.get(f"/collection/{collection['id']}/items").json()["data"]
    assert [i["model"] for i in items] == ["dashboard"]


def test_dashboard_question_goes_on_the_first_tab(api: Api) -> None:
    board = api.dashboard()
    tabs = [{"id": -1, "name": "One"}, {"id": -2, "name": "Two"}]
    board = api.put(f"/dashboard/{board['id']}", {"tabs": tabs, "dashcards": []}).json()
    card = saved(api, legacy(api, {"source-table": table_id(api, "orders")}), dashboard_id=board["id"])
    dashcard = api.get(f"/dashboard/{board['id']}").json()["dashcards"][0]
    assert dashcard["card_id"] == card["id"] and dashcard["dashboard_tab_id"] == board["tabs"][0]["id"]
    assert (dashcard["row"], dashcard["col"], dashcard["size_x"], dashcard["size_y"]) == (0, 0, 12, 9)


@pytest.mark.parametrize("extra", [{"type": "model"}, {"collection_position": 1}], ids=["model", "position"])
def test_only_a_plain_question_can_be_a_dashboard_question(api: Api, extra: dict) -> None:
    board = api.dashboard()
    response = save(
        api, legacy(api, {"source-table": table_id(api, "orders")}), dashboard_id=board["id"], **extra
    )
    assert (response.status_code, response.text) == (400, "Invalid dashboard-internal card")
    assert api.fake.cards() == []


def test_archiving_a_dashboard_question_removes_its_dashcard_and_restoring_places_it(api: Api) -> None:
    board = api.dashboard()
    card = saved(api, legacy(api, {"source-table": table_id(api, "orders")}), dashboard_id=board["id"])
    api.put(f"/card/{card['id']}", {"archived": True})
    assert api.fake.state.dashboards[board["id"]]["dashcards"] == []
    api.put(f"/card/{card['id']}", {"archived": False})
    assert [dc["card_id"] for dc in api.get(f"/dashboard/{board['id']}").json()["dashcards"]] == [card["id"]]


def test_dropping_its_dashcard_archives_a_dashboard_question_and_adding_it_back_restores_it(api: Api) -> None:
    board = api.dashboard()
    card = saved(api, legacy(api, {"source-table": table_id(api, "orders")}), dashboard_id=board["id"])
    api.put(f"/dashboard/{board['id']}", {"dashcards": []})
    fetched = api.get(f"/card/{card['id']}").json()
    assert (fetched["archived"], fetched["archived_directly"]) == (True, True)
    back = {"id": -1, "card_id": card["id"], "row": 0, "col": 0, "size_x": 4, "size_y": 4}
    assert api.put(f"/dashboard/{board['id']}", {"dashcards": [back]}).status_code == 200
    assert api.get(f"/card/{card['id']}").json()["archived"] is False


def test_dashboard_questions_follow_their_dashboard_to_the_trash_and_to_another_collection(api: Api) -> None:
    board = api.dashboard()
    card = saved(api, legacy(api, {"source-table": table_id(api, "orders")}), dashboard_id=board["id"])
    api.put(f"/dashboard/{board['id']}", {"archived": True})
    fetched = api.get(f"/card/{card['id']}").json()
    assert (fetched["archived"], fetched["archived_directly"]) == (True, False)
    api.put(f"/dashboard/{board['id']}", {"archived": False})
    assert api.get(f"/card/{card['id']}").json()["archived"] is False
    collection = api.post("/collection", {"name": "Elsewhere"}).json()
    api.put(f"/dashboard/{board['id']}", {"collection_id": collection["id"]})
    assert api.get(f"/card/{card['id']}").json()["collection_id"] == collection["id"]


def test_a_dashboard_question_cannot_be_moved_to_a_collection_by_hand(api: Api) -> None:
    board = api.dashboard()
    card = saved(api, legacy(api, {"source-table": table_id(api, "orders")}), dashboard_id=board["id"])
    collection = api.post("/collection", {"name": "Elsewhere"}).json()
    response = api.put(f"/card/{card['id']}", {"collection_id": collection["id"]})
    assert response.status_code == 400 and "Cannot manually set `collection_id`" in response.text


# ----------------------------------------------------------------- lost answers


def test_drop_after_commit_applies_and_saves_the_write_but_loses_the_answer(
    tmp_path: Path, fake_warehouse_dsn: str
) -> None:
    state_file = tmp_path / "state.json"
    with FakeMetabase(state_file=state_file) as fake:
        session = admin_http(fake)
        fake.inject_fault(at_mutation=1, kind="drop-after-commit")
        with pytest.raises(requests.ConnectionError):
            session.post(f"{fake.url}/api/dashboard", json={"name": "Kept"})
        assert [d["name"] for d in fake.dashboards()] == ["Kept"]
        assert session.post(f"{fake.url}/api/dashboard", json={"name": "Next"}).status_code == 200
    with FakeMetabase(state_file=state_file) as again:
        assert [d["name"] for d in again.dashboards()] == ["Kept", "Next"]


# ----------------------------------------------------------------- dashboard filters on query-builder cards


def dashcard_with_target(card_id: int, target: list) -> dict:
    mapping = {"parameter_id": "p1", "card_id": card_id, "target": target}
    return {"id": -1, "card_id": card_id, "row": 0, "col": 0, "size_x": 6, "size_y": 4,
            "parameter_mappings": [mapping]}  # fmt: skip


@pytest.mark.parametrize(
    ("target", "status"),
    [
        (["dimension", ["field", 999_999, None], {"stage-number": 0}], 200),
        (["dimension", ["field", "status", {"base-type": "type/Text"}], {"stage-number": 0}], 200),
        (["dimension", ["field", "status", None], {"stage-number": 0}], 400),
        (["dimension", ["field", "status", {"temporal-unit": "day"}]], 400),
    ],
    ids=["unknown-field-id", "name-with-base-type", "name-without-options", "name-without-base-type"],
)
def test_dashboard_field_targets_are_checked_for_shape_only(api: Api, target: list, status: int) -> None:
    card = saved(api, legacy(api, {"source-table": table_id(api, "orders")}))
    board = api.dashboard(parameters=[{"id": "p1", "name": "Status", "slug": "status", "type": "string/="}])
    response = api.put(f"/dashboard/{board['id']}", {"dashcards": [dashcard_with_target(card["id"], target)]})
    assert response.status_code == status, response.text


def test_a_mapping_may_name_another_card_than_its_dashcard(api: Api) -> None:
    shown = saved(api, legacy(api, {"source-table": table_id(api, "orders")}))
    other = saved(api, legacy(api, {"source-table": table_id(api, "customers")}))
    board = api.dashboard(parameters=[{"id": "p1", "name": "Status", "slug": "status", "type": "string/="}])
    dashcard = dashcard_with_target(
        shown["id"], ["dimension", ["field", api.field_id("orders", "status"), None]]
    )
    dashcard["parameter_mappings"][0]["card_id"] = other["id"]
    assert api.put(f"/dashboard/{board['id']}", {"dashcards": [dashcard]}).status_code == 200


def test_an_offset_aggregation_of_the_wrong_shape_is_refused(api: Api) -> None:
    amount = api.field_id("orders", "amount")
    inner = {
        "source-table": table_id(api, "orders"),
        "aggregation": [["offset", ["sum", ["field", amount, None]], -1]],
    }
    response = save(api, legacy(api, inner))
    assert response.status_code == 400
    assert response.text == "Error creating query from legacy query: Assert failed: (= (count clause) 4)"


# ----------------------------------------------------------------- running query-builder questions


def test_a_question_runs_on_postgresql_with_metabase_shaped_results(api: Api) -> None:
    status = api.field_id("orders", "status")
    inner = {
        "source-table": table_id(api, "orders"),
        "aggregation": [["count"]],
        "breakout": [["field", status, None]],
    }
    card = saved(api, legacy(api, inner))
    response = api.post(f"/card/{card['id']}/query")
    assert response.status_code == 202 and response.json()["status"] == "completed", response.text
    body = response.json()
    assert body["data"]["rows"] == [["open", 1], ["paid", 2], ["void", 1]] and body["row_count"] == 3
    assert [c["name"] for c in body["data"]["cols"]] == ["status", "count"]
    assert [c["name"] for c in card["result_metadata"]] == ["status", "count"]


def test_a_question_on_a_missing_table_fails_as_a_202(api: Api) -> None:
    card = saved(api, legacy(api, {"source-table": 999_999}))
    response = api.post(f"/card/{card['id']}/query")
    assert response.status_code == 202 and response.json()["status"] == "failed"
    assert card["result_metadata"] is None


def test_ad_hoc_mbql_runs_through_the_dataset_endpoint(api: Api) -> None:
    query = legacy(api, {"source-table": table_id(api, "customers"), "aggregation": [["count"]]})
    response = api.post("/dataset", query)
    assert response.status_code == 202 and response.json()["data"]["rows"] == [[2]]


def test_a_dashboard_filter_reaches_a_question_through_its_mapping(api: Api) -> None:
    status = api.field_id("orders", "status")
    card = saved(api, legacy(api, {"source-table": table_id(api, "orders"), "aggregation": [["count"]]}))
    board = api.dashboard(parameters=[{"id": "p1", "name": "Status", "slug": "status", "type": "string/="}])
    target = ["dimension", ["field", status, {"base-type": "type/Text"}], {"stage-number": 0}]
    board = api.put(
        f"/dashboard/{board['id']}", {"dashcards": [dashcard_with_target(card["id"], target)]}
    ).json()
    dashcard = board["dashcards"][0]
    path = f"/dashboard/{board['id']}/dashcard/{dashcard['id']}/card/{card['id']}/query"
    filtered = api.post(path, {"parameters": [{"id": "p1", "value": ["paid"]}]})
    assert filtered.status_code == 202 and filtered.json()["data"]["rows"] == [[2]], filtered.text
    unfiltered = api.post(path, {"parameters": []})
    assert unfiltered.json()["data"]["rows"] == [[4]]


def test_a_model_keeps_its_edited_column_names_when_its_query_changes(api: Api) -> None:
    orders = table_id(api, "orders")
    status = api.field_id("orders", "status")
    inner = {"source-table": orders, "fields": [["field", status, None]]}
    model = saved(api, legacy(api, inner), type="model")
    edited = [{**model["result_metadata"][0], "display_name": "State", "description": "Where it is"}]
    api.put(f"/card/{model['id']}", {"result_metadata": edited})
    amount = api.field_id("orders", "amount")
    changed = {**inner, "fields": [["field", status, None], ["field", amount, None]]}
    updated = api.put(f"/card/{model['id']}", {"dataset_query": legacy(api, changed)}).json()
    by_name = {c["name"]: c for c in updated["result_metadata"]}
    assert (by_name["status"]["display_name"], by_name["status"]["description"]) == ("State", "Where it is")
    assert by_name["amount"]["display_name"] == "Amount"
