"""The fake Metabase's collections, cards, queries and dashboards, pinned to the contract and recordings."""

from __future__ import annotations

import json
import re

import pytest
import requests

from tests.fake_metabase import FakeMetabase
from tests.paths import RECORDED


def recorded(name: str) -> object:
    return json.loads((RECORDED / name).read_text())


class Api:
    """A logged-in admin client for the fake, with the warehouse registered."""

    def __init__(self, fake: FakeMetabase, session: requests.Session, db_id: int) -> None:
        self.fake, self.session, self.db_id = fake, session, db_id

    def url(self, path: str) -> str:
        return f"{self.fake.url}/api{path}"

    def get(self, path: str, **kw: object) -> requests.Response:
        return self.session.get(self.url(path), **kw)

    def post(self, path: str, body: object = None) -> requests.Response:
        return self.session.post(self.url(path), json=body)

    def put(self, path: str, body: object) -> requests.Response:
        return self.session.put(self.url(path), json=body)

    def delete(self, path: str) -> requests.Response:
        return self.session.delete(self.url(path))

    def field_id(self, table: str, column: str) -> int:
        metadata = self.get(f"/database/{self.db_id}/metadata").json()
        return next(
            f["id"]
            for t in metadata["tables"]
            if t["name"] == table
            for f in t["fields"]
            if f["name"] == column
        )

    def native(self, sql: str, tags: dict | None = None) -> dict:
        return {
            "type": "native",
            "database": self.db_id,
            "native": {"query": sql, "template-tags": tags or {}},
        }

    def card(self, sql: str = "select 1 as one", tags: dict | None = None, **extra: object) -> dict:
        body = {
            "name": "Q",
            "display": "table",
            "visualization_settings": {},
            "dataset_query": self.native(sql, tags),
        }
        body.update(extra)
        response = self.post("/card", body)
        assert response.status_code == 200, response.text
        return response.json()

    def dashboard(self, **extra: object) -> dict:
        response = self.post("/dashboard", {"name": "Board", **extra})
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
def api(fake_metabase: FakeMetabase, fake_admin: requests.Session, shared_fake_warehouse_dsn: str) -> Api:
    # Queries run read-only, so every test here can share one warehouse.
    return Api(fake_metabase, fake_admin, fake_metabase.add_database(shared_fake_warehouse_dsn))


def text_tag(name: str, **extra: object) -> dict:
    return {"id": f"id-{name}", "name": name, "display-name": name.title(), "type": "text", **extra}


def plain(response: requests.Response, status: int, text: str) -> bool:
    return (
        response.status_code == status
        and response.text == text
        and response.headers["Content-Type"] == "text/plain"
    )


# ----------------------------------------------------------------- collections


def test_collection_list_is_bare_with_the_recorded_shapes(api: Api) -> None:
    api.post("/collection", {"name": "Team"})
    listed = api.get("/collection").json()
    fixture = recorded("collection.json")
    assert isinstance(listed, list)
    assert listed[0]["id"] == "root" and set(listed[0]) == set(fixture[0])
    # Newest versions also hydrate parent_id into each listed collection.
    assert all(set(c) == set(fixture[1]) | {"parent_id"} for c in listed[1:])
    assert "Trash" not in [c["name"] for c in listed]
    archived = api.get("/collection", params={"archived": "true"}).json()
    assert [c["type"] for c in archived] == ["trash"]


@pytest.mark.parametrize(
    ("body", "key"),
    [({}, "name"), ({"name": "  "}, "name"), ({"name": "X", "description": ""}, "description"),
     ({"name": "X", "parent_id": "root"}, "parent_id")],
)  # fmt: skip
def test_collection_create_rejects_invalid_bodies(api: Api, body: dict, key: str) -> None:
    response = api.post("/collection", body)
    assert response.status_code == 400
    assert key in response.json()["errors"]


def test_collection_create_under_a_missing_parent_is_404(api: Api) -> None:
    assert plain(api.post("/collection", {"name": "X", "parent_id": 999}), 404, "Not found.")


def test_child_collection_location_and_ancestors(api: Api) -> None:
    parent = api.post("/collection", {"name": "Parent"}).json()
    child = api.post("/collection", {"name": "Child", "parent_id": parent["id"]}).json()
    assert parent["location"] == "/" and child["location"] == f"/{parent['id']}/"
    fetched = api.get(f"/collection/{child['id']}").json()
    assert [a["id"] for a in fetched["effective_ancestors"]] == ["root", parent["id"]]
    items = api.get(f"/collection/{parent['id']}/items").json()
    assert [(i["model"], i["id"]) for i in items["data"]] == [("collection", child["id"])]


def test_archiving_a_collection_archives_its_items_indirectly(api: Api) -> None:
    team = api.post("/collection", {"name": "Team"}).json()
    card = api.card(collection_id=team["id"])
    board = api.dashboard(collection_id=team["id"])
    archived = api.put(f"/collection/{team['id']}", {"archived": True}).json()
    assert archived["archived"] is True and archived["archived_directly"] is True
    card_now = api.get(f"/card/{card['id']}").json()
    assert card_now["archived"] is True and card_now["archived_directly"] is False
    assert api.get(f"/dashboard/{board['id']}").json()["archived_directly"] is False
    # Metabase counts with a window function: with no row at all, `total` is null, not 0.
    assert api.get(f"/collection/{team['id']}/items").json() == {
        "total": None,
        "data": [],
        "models": [
            "card",
            "collection",
            "dashboard",
            "dataset",
            "document",
            "metric",
            "pulse",
            "snippet",
            "timeline",
        ],
        "limit": None,
        "offset": None,
    }
    assert api.get(f"/collection/{team['id']}/items", params={"archived": "true"}).json()["total"] == 2
    # Omitting `archived` on PUT means "unarchived": the items come back too.
    restored = api.put(f"/collection/{team['id']}", {"name": "Team 2"}).json()
    assert restored["archived"] is False and restored["name"] == "Team 2"
    assert api.get(f"/card/{card['id']}").json()["archived"] is False


def test_moving_a_collection_moves_its_descendants(api: Api) -> None:
    a = api.post("/collection", {"name": "A"}).json()
    b = api.post("/collection", {"name": "B"}).json()
    child = api.post("/collection", {"name": "Child", "parent_id": a["id"]}).json()
    grandchild = api.post("/collection", {"name": "Grandchild", "parent_id": child["id"]}).json()
    moved = api.put(f"/collection/{child['id']}", {"parent_id": b["id"]}).json()
    assert moved["location"] == f"/{b['id']}/"
    assert api.get(f"/collection/{grandchild['id']}").json()["location"] == f"/{b['id']}/{child['id']}/"
    assert api.put(f"/collection/{b['id']}", {"parent_id": grandchild["id"]}).status_code == 400


def test_personal_collection_keeps_its_name(api: Api) -> None:
    personal = api.get("/user/current").json()["personal_collection_id"]
    assert api.put(f"/collection/{personal}", {"name": "Mine"}).status_code == 403
    assert api.put(f"/collection/{personal}", {"description": "notes"}).json()["description"] == "notes"


def test_collection_items_are_wrapped_filtered_and_shaped_like_the_recordings(api: Api) -> None:
    team = api.post("/collection", {"name": "Team"}).json()
    api.card(collection_id=team["id"])
    api.dashboard(collection_id=team["id"])
    everything = api.get(f"/collection/{team['id']}/items").json()
    assert set(everything) == {"total", "data", "models", "limit", "offset"} and everything["total"] == 2
    cards = api.get(f"/collection/{team['id']}/items", params={"models": "card"}).json()
    assert [i["model"] for i in cards["data"]] == ["card"] and cards["models"] == ["card"]
    both = api.get(f"/collection/{team['id']}/items", params=[("models", "card"), ("models", "dashboard")])
    assert sorted(i["model"] for i in both.json()["data"]) == ["card", "dashboard"]
    card_item = next(i for i in everything["data"] if i["model"] == "card")
    assert set(card_item) == set(recorded("collection/3/items.json")[0])
    board_item = next(i for i in everything["data"] if i["model"] == "dashboard")
    fixture_board = next(i for i in recorded("collection/root/items.json") if i["model"] == "dashboard")
    assert set(board_item) == set(fixture_board)


def test_root_items_hold_items_without_collection(api: Api) -> None:
    card = api.card()
    root = api.get("/collection/root/items", params={"models": "card"}).json()
    assert [i["id"] for i in root["data"]] == [card["id"]]


# ----------------------------------------------------------------- cards


def test_card_get_has_the_recorded_shape_and_mbql5_query(api: Api) -> None:
    created = api.card("select count(*) from orders")
    fetched = api.get(f"/card/{created['id']}").json()
    assert set(fetched) == set(recorded("card/29.json"))
    assert re.fullmatch(r"[A-Za-z0-9_-]{21}", fetched["entity_id"])
    query = fetched["dataset_query"]
    assert query["lib/type"] == "mbql/query" and query["database"] == api.db_id
    assert query["stages"] == [{"lib/type": "mbql.stage/native", "native": "select count(*) from orders"}]
    assert json.loads(fetched["legacy_query"]) == api.native("select count(*) from orders")
    assert fetched["collection"]["id"] == "root" and fetched["query_type"] == "native"
    assert fetched["creator"]["email"] == "admin@example.com"
    assert fetched["result_metadata"][0]["base_type"] == "type/BigInteger"


def test_card_template_tags_come_back_in_both_forms(api: Api) -> None:
    status_field = api.field_id("orders", "status")
    tags = {
        "status": {"id": "t1", "name": "status", "display-name": "Status", "type": "dimension",
                   "dimension": ["field", status_field, None], "widget-type": "string/="},
        "min": {"id": "t2", "name": "min", "display-name": "Min", "type": "number"},
    }  # fmt: skip
    card = api.card("select * from orders where {{status}} [[and amount >= {{min}}]]", tags)
    stage = card["dataset_query"]["stages"][0]
    ref = stage["template-tags"]["status"]["dimension"]
    assert ref[0] == "field" and ref[2] == status_field and "lib/uuid" in ref[1]
    legacy = json.loads(card["legacy_query"])
    assert legacy["native"]["template-tags"]["status"]["dimension"] == ["field", status_field, None]
    assert api.get(f"/card/{card['id']}").json()["dataset_query"] == card["dataset_query"]


def test_card_accepts_the_mbql5_form_and_stores_it_normalised(api: Api) -> None:
    mbql5 = {
        "lib/type": "mbql/query",
        "database": api.db_id,
        "stages": [{"lib/type": "mbql.stage/native", "native": "select 2 as two"}],
    }
    response = api.post(
        "/card", {"name": "Q", "display": "scalar", "visualization_settings": {}, "dataset_query": mbql5}
    )
    assert response.status_code == 200
    assert json.loads(response.json()["legacy_query"]) == api.native("select 2 as two")


@pytest.mark.parametrize("missing", ["name", "display", "visualization_settings", "dataset_query"])
def test_card_create_requires_its_keys(api: Api, missing: str) -> None:
    body = {
        "name": "Q",
        "display": "table",
        "visualization_settings": {},
        "dataset_query": api.native("select 1"),
    }
    del body[missing]
    response = api.post("/card", body)
    assert response.status_code == 400
    assert missing in response.json()["errors"] and missing in response.json()["specific-errors"]


def test_card_create_rejects_blank_description_and_bad_collections(api: Api) -> None:
    base = {
        "name": "Q",
        "display": "table",
        "visualization_settings": {},
        "dataset_query": api.native("select 1"),
    }
    assert api.post("/card", {**base, "description": ""}).status_code == 400
    assert api.post("/card", {**base, "collection_id": "root"}).status_code == 400
    assert plain(api.post("/card", {**base, "collection_id": 999}), 404, "Not found.")
    assert (
        api.post("/card", {**base, "dataset_query": {**api.native("select 1"), "database": 999}}).status_code
        == 400
    )
    assert api.post("/card", {**base, "entity_id": ""}).status_code == 400
    assert api.fake.cards() == []


def test_card_ignores_a_client_entity_id(api: Api) -> None:
    card = api.card(entity_id="aaaaaaaaaaaaaaaaaaaaa")
    assert card["entity_id"] != "aaaaaaaaaaaaaaaaaaaaa"


@pytest.mark.parametrize(
    "tags",
    [
        {"status": {**text_tag("status"), "name": "other"}},
        {"status": {k: v for k, v in text_tag("status").items() if k != "display-name"}},
        {"status": {**text_tag("status"), "type": "dimension", "dimension": ["field", 1, None]}},
        {"status": {**text_tag("status"), "dimension": ["field", 1, None]}},
        {"status": {**text_tag("status"), "type": "dimension", "widget-type": "category",
                    "dimension": ["field", 99999, None]}},
        {"status": {**text_tag("status"), "type": "wat"}},
    ],
    ids=["key-not-name", "no-display-name", "no-widget-type", "dimension-on-text", "unknown-field",
         "bad-type"],
)  # fmt: skip
def test_card_create_validates_template_tags(api: Api, tags: dict) -> None:
    body = {"name": "Q", "display": "table", "visualization_settings": {},
            "dataset_query": api.native("select {{status}}", tags)}  # fmt: skip
    assert api.post("/card", body).status_code == 400
    assert api.fake.cards() == []


def test_card_field_filter_must_use_a_field_of_its_own_database(api: Api) -> None:
    sample_field = api.fake.state.databases[1]["tables"][0]["columns"][0]["id"]
    tag = {
        **text_tag("x"),
        "type": "dimension",
        "widget-type": "category",
        "dimension": ["field", sample_field, None],
    }
    body = {"name": "Q", "display": "table", "visualization_settings": {},
            "dataset_query": api.native("select 1 where {{x}}", {"x": tag})}  # fmt: skip
    assert api.post("/card", body).status_code == 400


def test_card_put_updates_partially_and_archives(api: Api) -> None:
    card = api.card(description="first")
    updated = api.put(f"/card/{card['id']}", {"name": "Renamed"}).json()
    assert (
        updated["name"] == "Renamed" and updated["description"] == "first" and updated["display"] == "table"
    )
    archived = api.put(f"/card/{card['id']}", {"archived": True}).json()
    assert archived["archived"] is True and archived["archived_directly"] is True
    assert api.get("/collection/root/items", params={"models": "card"}).json()["data"] == []
    # A directly trashed item is listed by the Trash only, not by its collection's archived view.
    assert api.get("/collection/root/items", params={"archived": "true"}).json()["data"] == []
    trash = api.get("/collection/trash/items", params={"archived": "true"}).json()
    assert [(i["model"], i["id"]) for i in trash["data"]] == [("card", card["id"])]
    assert api.put(f"/card/{card['id']}", {"description": ""}).json()["description"] == ""


def test_card_delete_is_204_then_404(api: Api) -> None:
    card = api.card()
    response = api.delete(f"/card/{card['id']}")
    assert response.status_code == 204 and response.content == b""
    assert plain(api.get(f"/card/{card['id']}"), 404, "Not found.")


def test_card_ids_may_be_entity_ids_but_not_garbage(api: Api) -> None:
    card = api.card()
    assert api.get(f"/card/{card['entity_id']}").json()["id"] == card["id"]
    assert api.get("/card/abc").status_code == 400


# ----------------------------------------------------------------- queries


def run(api: Api, card: dict, parameters: list | None = None) -> dict:
    response = api.post(f"/card/{card['id']}/query", {"parameters": parameters or []})
    assert response.status_code == 202
    return response.json()


def variable(name: str, value: object, kind: str = "category") -> dict:
    return {"type": kind, "target": ["variable", ["template-tag", name]], "value": value}


def test_query_runs_on_postgres_with_cols_and_rows(api: Api) -> None:
    result = run(api, api.card("select status, count(*) as n from orders group by 1 order by 1"))
    assert result["status"] == "completed" and result["row_count"] == 3
    assert result["data"]["rows"] == [["open", 1], ["paid", 2], ["void", 1]]
    assert [(c["name"], c["base_type"]) for c in result["data"]["cols"]] == [
        ("status", "type/Text"),
        ("n", "type/BigInteger"),
    ]


@pytest.mark.parametrize("body", [{"ignore_cache": "yes"}, {"collection_preview": 1}, {"dashboard_id": 0}])
def test_card_query_validates_its_body(api: Api, body: dict) -> None:
    # queries/api/card.clj POST /:card-id/query: ignore_cache :boolean, collection_preview, dashboard_id.
    response = api.post(f"/card/{api.card()['id']}/query", body)
    assert response.status_code == 400 and set(response.json()["errors"]) == set(body)


def test_raw_value_tags_are_quoted_literals(api: Api) -> None:
    card = api.card("select count(*) from customers where name = {{who}}", {"who": text_tag("who")})
    assert run(api, card, [variable("who", "Ann")])["data"]["rows"] == [[1]]
    injected = run(api, card, [variable("who", "x' or '1'='1")])
    assert injected["status"] == "completed" and injected["data"]["rows"] == [[0]]


def test_optional_clause_is_dropped_without_value_and_kept_with_one(api: Api) -> None:
    tags = {"min": {**text_tag("min"), "type": "number"}}
    card = api.card("select count(*) from orders where 1 = 1 [[and amount >= {{min}}]]", tags)
    assert run(api, card)["data"]["rows"] == [[4]]
    assert run(api, card, [variable("min", 6, "number/=")])["data"]["rows"] == [[2]]


def test_required_tag_without_value_fails_with_202(api: Api) -> None:
    card = api.card("select count(*) from orders where status = {{s}}", {"s": text_tag("s", required=True)})
    result = run(api, card)
    assert result["status"] == "failed" and "pick a value" in result["error"]


def test_tag_default_is_used_when_no_value_is_sent(api: Api) -> None:
    card = api.card("select count(*) from orders where status = {{s}}", {"s": text_tag("s", default="paid")})
    assert run(api, card)["data"]["rows"] == [[2]]


def test_field_filters_expand_to_column_conditions(api: Api) -> None:
    status = api.field_id("orders", "status")
    ordered = api.field_id("orders", "ordered_on")
    tags = {
        "status": {**text_tag("status"), "type": "dimension", "widget-type": "string/=",
                   "dimension": ["field", status, None]},
        "day": {**text_tag("day"), "type": "dimension", "widget-type": "date/all-options",
                "dimension": ["field", ordered, None]},
    }  # fmt: skip
    card = api.card("select count(*) from orders where {{status}} and {{day}}", tags)
    assert run(api, card)["data"]["rows"] == [[4]]

    def dim(name: str, value: object, kind: str) -> dict:
        return {"type": kind, "target": ["dimension", ["template-tag", name]], "value": value}

    assert run(api, card, [dim("status", ["paid", "open"], "string/=")])["data"]["rows"] == [[3]]
    assert run(api, card, [dim("day", "2024-01-01~2024-02-28", "date/range")])["data"]["rows"] == [[2]]
    assert run(api, card, [dim("day", "2024-03", "date/month-year")])["data"]["rows"] == [[1]]


def test_parameter_type_not_allowed_for_the_tag_fails_at_query_time(api: Api) -> None:
    card = api.card("select count(*) from orders where status = {{s}}", {"s": text_tag("s")})
    result = run(api, card, [variable("s", "paid", "date/all-options")])
    assert result["status"] == "failed" and "Invalid parameter type" in result["error"]


def test_sql_errors_are_202_failed_with_the_postgres_message(api: Api) -> None:
    result = run(api, api.card("select * from nope"))
    assert result["status"] == "failed" and 'relation "nope" does not exist' in result["error"]
    assert result["data"] == {"rows": [], "cols": []}


def test_queries_run_read_only(api: Api) -> None:
    response = api.post("/dataset", api.native("insert into orders (status) values ('x') returning id"))
    assert response.status_code == 202 and response.json()["status"] == "failed"
    assert "read-only" in response.json()["error"]


def test_dataset_runs_ad_hoc_sql(api: Api) -> None:
    response = api.post("/dataset", api.native("select 40 + 2 as answer"))
    assert response.status_code == 202 and response.json()["data"]["rows"] == [[42]]


# ----------------------------------------------------------------- dashboards


def test_dashboard_create_validates_like_metabase(api: Api) -> None:
    empty = api.post("/dashboard", {})
    assert empty.status_code == 400
    assert empty.json() == {
        "errors": {"name": "value must be a non-blank string."},
        "specific-errors": {"name": ["missing required key, received: nil"]},
    }
    for parameters in ("abc", [{"type": "string/="}], [{"id": "a"}], [{"id": "a", "type": "nope"}]):
        response = api.post("/dashboard", {"name": "B", "parameters": parameters})
        assert response.status_code == 400 and "parameters" in response.json()["errors"], parameters
    assert plain(api.post("/dashboard", {"name": "B", "collection_id": 999}), 404, "Not found.")


def test_dashboard_get_has_the_recorded_shape(api: Api) -> None:
    card = api.card()
    board = api.dashboard(parameters=[{"id": "p1", "name": "S", "slug": "s", "type": "string/="}])
    assert board["dashcards"] == [] and board["tabs"] == [] and board["width"] == "fixed"
    api.put(f"/dashboard/{board['id']}", {"dashcards": [{"id": -1, "card_id": card["id"], "row": 0, "col": 0,
                                                          "size_x": 6, "size_y": 3}]})  # fmt: skip
    fetched = api.get(f"/dashboard/{board['id']}").json()
    fixture = recorded("dashboard/2.json")
    assert set(fetched) == set(fixture)
    assert set(fetched["dashcards"][0]) == set(fixture["dashcards"][0])
    assert set(fetched["dashcards"][0]["card"]) == set(fixture["dashcards"][0]["card"])


NO_PARAMETER_ID = {"target": ["variable", ["template-tag", "s"]]}


def dashcard(id: int, card_id: int | None, **extra: object) -> dict:
    return {"id": id, "card_id": card_id, "row": 0, "col": 0, "size_x": 6, "size_y": 3, **extra}


def test_put_dashcards_is_a_full_replacement(api: Api) -> None:
    one, two = api.card(), api.card()
    board = api.dashboard()
    first = api.put(
        f"/dashboard/{board['id']}", {"dashcards": [dashcard(-1, one["id"]), dashcard(-2, two["id"])]}
    )
    ids = [dc["id"] for dc in first.json()["dashcards"]]
    assert len(ids) == 2 and all(i > 0 for i in ids)
    kept = next(dc for dc in first.json()["dashcards"] if dc["card_id"] == one["id"])
    second = api.put(
        f"/dashboard/{board['id']}",
        {"dashcards": [dashcard(kept["id"], one["id"], col=6), dashcard(-3, two["id"])]},
    ).json()
    assert len(second["dashcards"]) == 2
    assert kept["id"] in [dc["id"] for dc in second["dashcards"]]
    new = next(dc for dc in second["dashcards"] if dc["id"] != kept["id"])
    assert new["id"] not in ids  # the omitted dashcard was deleted, the new one got a fresh id
    assert (
        api.put(f"/dashboard/{board['id']}", {"name": "Renamed"}).json()["dashcards"] == second["dashcards"]
    )
    assert api.put(f"/dashboard/{board['id']}", {"dashcards": []}).json()["dashcards"] == []


def tabbed(api: Api, card: dict, board: dict) -> dict:
    body = {
        "tabs": [{"id": -1, "name": "One"}, {"id": -2, "name": "Two"}],
        "dashcards": [
            dashcard(-1, card["id"], dashboard_tab_id=-1),
            dashcard(-2, card["id"], dashboard_tab_id=-2),
        ],
    }
    response = api.put(f"/dashboard/{board['id']}", body)
    assert response.status_code == 200, response.text
    return response.json()


def test_put_tabs_remaps_negative_ids_in_tabs_and_dashcards(api: Api) -> None:
    updated = tabbed(api, api.card(), api.dashboard())
    tab_ids = [t["id"] for t in updated["tabs"]]
    assert all(t > 0 for t in tab_ids) and [t["name"] for t in updated["tabs"]] == ["One", "Two"]
    assert [t["position"] for t in updated["tabs"]] == [0, 1]
    assert sorted(dc["dashboard_tab_id"] for dc in updated["dashcards"]) == sorted(tab_ids)


def test_with_several_tabs_every_dashcard_needs_a_tab(api: Api) -> None:
    card, board = api.card(), api.dashboard()
    tabs = tabbed(api, card, board)["tabs"]
    body = {"tabs": tabs, "dashcards": [dashcard(-5, card["id"])]}
    untabbed = api.put(f"/dashboard/{board['id']}", body)
    assert plain(untabbed, 400, "This dashboard has tab, makes sure every card has a tab")
    assert len(api.get(f"/dashboard/{board['id']}").json()["dashcards"]) == 2


def test_with_a_single_tab_dashcards_without_tab_land_on_it(api: Api) -> None:
    card, board = api.card(), api.dashboard()
    body = {"tabs": [{"id": -1, "name": "Only"}], "dashcards": [dashcard(-1, card["id"])]}
    updated = api.put(f"/dashboard/{board['id']}", body).json()
    assert updated["dashcards"][0]["dashboard_tab_id"] == updated["tabs"][0]["id"]


def test_omitted_tab_is_deleted_with_its_dashcards(api: Api) -> None:
    card, board = api.card(), api.dashboard()
    first = tabbed(api, card, board)
    one = first["tabs"][0]
    kept = next(dc for dc in first["dashcards"] if dc["dashboard_tab_id"] == one["id"])
    body = {"tabs": [one], "dashcards": [kept]}
    updated = api.put(f"/dashboard/{board['id']}", body).json()
    assert [t["id"] for t in updated["tabs"]] == [one["id"]]
    assert [dc["id"] for dc in updated["dashcards"]] == [kept["id"]]


def test_tabs_without_dashcards_are_ignored_as_in_metabase(api: Api) -> None:
    card, board = api.card(), api.dashboard()
    before = tabbed(api, card, board)
    after = api.put(f"/dashboard/{board['id']}", {"tabs": [before["tabs"][0]]}).json()
    assert after["tabs"] == before["tabs"] and len(after["dashcards"]) == 2


def test_dashcards_without_tabs_delete_every_tab(api: Api) -> None:
    card, board = api.card(), api.dashboard()
    before = tabbed(api, card, board)
    dangling = api.put(f"/dashboard/{board['id']}", {"dashcards": before["dashcards"]})
    assert dangling.status_code == 500  # the dashcards still name the deleted tabs: a foreign-key failure
    assert api.get(f"/dashboard/{board['id']}").json()["tabs"] == before["tabs"]
    flat = [{**dc, "dashboard_tab_id": None} for dc in before["dashcards"]]
    after = api.put(f"/dashboard/{board['id']}", {"dashcards": flat}).json()
    assert after["tabs"] == [] and len(after["dashcards"]) == 2


def test_dashcards_of_an_archived_dashboard_cannot_change(api: Api) -> None:
    card, board = api.card(), api.dashboard()
    api.put(f"/dashboard/{board['id']}", {"archived": True})
    response = api.put(
        f"/dashboard/{board['id']}", {"archived": False, "dashcards": [dashcard(-1, card["id"])]}
    )
    assert response.status_code == 404 and response.json()["error_code"] == "archived"
    assert api.get(f"/dashboard/{board['id']}").json()["archived"] is True


VARIABLE_MAPPING = {"parameter_id": "p", "target": ["variable", ["template-tag", "t"]]}
NEGATIVE_STAGE_MAPPING = {
    "parameter_id": "p",
    "target": ["dimension", ["template-tag", "t"], {"stage-number": -1}],
}


@pytest.mark.parametrize(
    "body",
    [
        {"dashcards": [{"id": -1, "card_id": None, "row": 0, "col": 0, "size_x": 0, "size_y": 1}]},
        {"dashcards": [{"id": -1, "card_id": None, "row": -1, "col": 0, "size_x": 1, "size_y": 1}]},
        {"dashcards": [{"id": -1, "card_id": None, "row": 0, "size_x": 1, "size_y": 1}]},
        {"dashcards": [dashcard(-1, None), dashcard(-1, None)]},
        {"tabs": [{"id": -1, "name": "A"}, {"id": -1, "name": "B"}]},
        {"tabs": [{"id": -1, "name": " "}]},
        {"dashcards": [dashcard(-1, None, parameter_mappings=[NO_PARAMETER_ID])]},
        {"dashcards": [dashcard(-1, None, parameter_mappings=[{"parameter_id": "p", "target": ["foo"]}])]},
        {"parameters": [{"id": "p"}]},
        # dashboards/write.clj UpdatedDashboardCard / UpdatedDashboardTab, parameters/schema.cljc mappings:
        {"dashcards": [dashcard(-1, None, visualization_settings=[])]},
        {"dashcards": [dashcard(-1, None, action_id=0)]},
        {"dashcards": [dashcard(-1, None, dashboard_tab_id="first")]},
        {"dashcards": [dashcard(-1, None, inline_parameters=[""])]},
        {"dashcards": [dashcard(-1, None, parameter_mappings=[{**VARIABLE_MAPPING, "card_id": None}])]},
        {"dashcards": [dashcard(-1, None, parameter_mappings=[NEGATIVE_STAGE_MAPPING])]},
        {"dashcards": [], "tabs": [{"id": -1, "name": "A", "position": None}]},
    ],
    ids=["size-0", "negative-row", "missing-col", "dup-dashcards", "dup-tabs", "blank-tab", "no-parameter-id",
         "bad-target", "parameter-without-type", "settings-not-map", "action-id-0", "tab-id-text",
         "blank-inline-parameter", "mapping-card-id-null", "negative-stage-number", "tab-position-null"],
)  # fmt: skip
def test_put_dashboard_rejects_invalid_bodies(api: Api, body: dict) -> None:
    board = api.dashboard()
    response = api.put(f"/dashboard/{board['id']}", body)
    assert response.status_code == 400
    assert api.get(f"/dashboard/{board['id']}").json()["dashcards"] == []


def test_put_dashboard_with_missing_or_archived_card_is_404_and_changes_nothing(api: Api) -> None:
    board = api.dashboard()
    assert plain(api.put(f"/dashboard/{board['id']}", {"dashcards": [dashcard(-1, 999)]}), 404, "Not found.")
    card = api.card()
    api.put(f"/card/{card['id']}", {"archived": True})
    archived = api.put(f"/dashboard/{board['id']}", {"name": "New", "dashcards": [dashcard(-1, card["id"])]})
    assert archived.status_code == 404
    assert api.get(f"/dashboard/{board['id']}").json()["name"] == "Board"


def test_virtual_cards_and_parameter_mappings_are_stored(api: Api) -> None:
    status = api.field_id("orders", "status")
    tags = {"status": {**text_tag("status"), "type": "dimension", "widget-type": "string/=",
                       "dimension": ["field", status, None]}}  # fmt: skip
    card = api.card("select count(*) from orders where {{status}}", tags)
    board = api.dashboard(parameters=[{"id": "p1", "name": "Status", "slug": "status", "type": "string/="}])
    heading = dashcard(
        -1, None, visualization_settings={"virtual_card": {"display": "heading"}, "text": "## Hi"}
    )
    mapping = {
        "parameter_id": "p1",
        "card_id": card["id"],
        "target": ["dimension", ["template-tag", "status"]],
    }
    mapped = dashcard(-2, card["id"], parameter_mappings=[mapping])
    result = api.put(f"/dashboard/{board['id']}", {"dashcards": [heading, mapped]}).json()
    virtual = next(dc for dc in result["dashcards"] if dc["card_id"] is None)
    assert virtual["card"] == {"query_average_duration": None}
    assert virtual["visualization_settings"]["text"] == "## Hi"
    assert str(status) in result["param_fields"]


def test_removed_add_card_endpoint_is_gone(api: Api) -> None:
    board = api.dashboard()
    response = api.post(f"/dashboard/{board['id']}/cards", {"cardId": 1})
    assert plain(response, 404, "API endpoint does not exist.")


def test_dashboard_delete_is_204(api: Api) -> None:
    board = api.dashboard()
    assert api.delete(f"/dashboard/{board['id']}").status_code == 204
    assert plain(api.get(f"/dashboard/{board['id']}"), 404, "Not found.")


def test_deleting_a_card_removes_its_dashcards(api: Api) -> None:
    card = api.card()
    board = api.dashboard()
    api.put(f"/dashboard/{board['id']}", {"dashcards": [dashcard(-1, card["id"])]})
    api.delete(f"/card/{card['id']}")
    assert api.get(f"/dashboard/{board['id']}").json()["dashcards"] == []


def test_dashcard_query_applies_dashboard_filters_through_the_mappings(api: Api) -> None:
    status = api.field_id("orders", "status")
    tags = {
        "status": {**text_tag("status"), "type": "dimension", "widget-type": "string/=",
                   "dimension": ["field", status, None]},
        "who": text_tag("who"),
    }  # fmt: skip
    card = api.card("select count(*) from orders where {{status}} [[and {{who}} = {{who}}]]", tags)
    board = api.dashboard(
        parameters=[
            {"id": "p1", "name": "Status", "slug": "status", "type": "string/="},
            {"id": "p2", "name": "When", "slug": "when", "type": "date/all-options"},
        ]
    )
    mappings = [
        {"parameter_id": "p1", "card_id": card["id"], "target": ["dimension", ["template-tag", "status"]]},
        {"parameter_id": "p2", "card_id": card["id"], "target": ["variable", ["template-tag", "who"]]},
    ]
    saved = api.put(
        f"/dashboard/{board['id']}", {"dashcards": [dashcard(-1, card["id"], parameter_mappings=mappings)]}
    )
    path = f"/dashboard/{board['id']}/dashcard/{saved.json()['dashcards'][0]['id']}/card/{card['id']}/query"
    filtered = api.post(path, {"parameters": [{"id": "p1", "type": "string/=", "value": ["paid"]}]})
    assert filtered.status_code == 202 and filtered.json()["data"]["rows"] == [[2]]
    assert api.post(path, {"parameters": []}).json()["data"]["rows"] == [[4]]
    # A date filter wired to a text variable is rejected when the query runs, as in Metabase.
    miswired = api.post(path, {"parameters": [{"id": "p2", "value": "2024-01-01"}]}).json()
    assert miswired["status"] == "failed" and "Invalid parameter type" in miswired["error"]
    assert api.post(path, {"parameters": [{"id": "nope", "value": 1}]}).status_code == 400


def test_a_body_not_declared_as_json_is_not_read(api: Api) -> None:
    response = api.session.post(api.url("/collection"), data=json.dumps({"name": "Team"}))
    assert response.status_code == 400 and "name" in response.json()["errors"]


def test_dashcards_of_trashed_cards_are_hidden_until_restored(api: Api) -> None:
    card, other = api.card(), api.card()
    board = api.dashboard()
    api.put(f"/dashboard/{board['id']}", {"dashcards": [dashcard(-1, card["id"]), dashcard(-2, other["id"])]})
    api.put(f"/card/{card['id']}", {"archived": True})
    shown = api.get(f"/dashboard/{board['id']}").json()["dashcards"]
    assert [dc["card_id"] for dc in shown] == [other["id"]]
    # Saving the visible layout leaves the hidden dashcard alone; restoring the card brings it back.
    api.put(f"/dashboard/{board['id']}", {"dashcards": shown})
    api.put(f"/card/{card['id']}", {"archived": False})
    assert sorted(dc["card_id"] for dc in api.get(f"/dashboard/{board['id']}").json()["dashcards"]) == sorted(
        [card["id"], other["id"]]
    )


def test_collection_items_page_only_with_limit_and_offset(api: Api) -> None:
    for name in ("b", "A", "c"):
        api.card(name=name)
    names = [i["name"] for i in api.get("/collection/root/items", params={"models": "card"}).json()["data"]]
    assert names == ["A", "b", "c"]
    page = api.get("/collection/root/items", params={"models": "card", "limit": 1, "offset": 1}).json()
    assert [i["name"] for i in page["data"]] == ["b"] and page["total"] == 3
    assert (page["limit"], page["offset"]) == (1, 1)
    assert len(api.get("/collection/root/items", params={"models": "card", "limit": 1}).json()["data"]) == 3


@pytest.mark.parametrize(
    ("tag", "column", "widget", "value", "count"),
    [
        ("amt", "amount", "number/between", [5, 8], 2),
        ("amt", "amount", "number/>=", [7.25], 2),
        ("st", "status", "string/contains", ["AI"], 2),
        ("st", "status", "string/does-not-contain", ["ai"], 2),
        ("st", "status", "string/starts-with", ["o"], 1),
        ("st", "status", "string/!=", ["paid", "void"], 1),
        ("day", "ordered_on", "date/relative", "past30years", 4),
        ("day", "ordered_on", "date/relative", "next3days", 0),
        ("day", "ordered_on", "date/single", "2024-02-20", 1),
        ("day", "ordered_on", "date/quarter-year", "Q1-2024", 3),
        ("day", "ordered_on", "date/range", "~2023-12-31", 1),
    ],
)
def test_field_filter_operators_run_on_postgres(
    api: Api, tag: str, column: str, widget: str, value: object, count: int
) -> None:
    field = api.field_id("orders", column)
    tags = {
        tag: {
            **text_tag(tag),
            "type": "dimension",
            "widget-type": widget,
            "dimension": ["field", field, None],
        }
    }
    card = api.card(f"select count(*) from orders where {{{{{tag}}}}}", tags)
    parameter = {"type": widget, "target": ["dimension", ["template-tag", tag]], "value": value}
    result = run(api, card, [parameter])
    assert result["status"] == "completed", result.get("error")
    assert result["data"]["rows"] == [[count]]


@pytest.mark.parametrize(
    "parameters", [[{"type": "category"}], [{"id": "p"}], [{"id": "p", "type": "nope"}], "x"]
)
def test_card_parameters_need_id_and_a_known_type(api: Api, parameters: object) -> None:
    body = {
        "name": "Q",
        "display": "table",
        "visualization_settings": {},
        "dataset_query": api.native("select 1"),
    }
    response = api.post("/card", {**body, "parameters": parameters})
    assert response.status_code == 400 and "parameters" in response.json()["errors"]


@pytest.mark.parametrize(
    "extra",
    [
        {"name": None},
        {"slug": 5},
        {"sectionId": ""},
        {"values_query_type": "dropdown"},
        {"values_source_type": "list"},
        {"filteringParameters": [""]},
        {"values_source_config": []},
    ],
)
def test_parameter_optional_keys_follow_the_parameter_schema(api: Api, extra: dict) -> None:
    # parameters/schema.cljc ::parameter: name/slug are `:string` (null invalid), sectionId non-blank, enums.
    valid = {"id": "p1", "type": "string/=", "name": "Status", "slug": "status", "sectionId": "string"}
    board = api.dashboard()
    assert api.put(f"/dashboard/{board['id']}", {"parameters": [valid]}).status_code == 200
    response = api.put(f"/dashboard/{board['id']}", {"parameters": [{**valid, **extra}]})
    assert response.status_code == 400 and "parameters" in response.json()["errors"]
    created = api.post("/dashboard", {"name": "D", "parameters": [{**valid, **extra}]})
    assert created.status_code == 400 and "parameters" in created.json()["errors"]


def test_dashboard_collection_must_be_a_real_id(api: Api) -> None:
    assert api.post("/dashboard", {"name": "B", "collection_id": "root"}).status_code == 400
    board = api.dashboard()
    assert api.put(f"/dashboard/{board['id']}", {"collection_id": "root"}).status_code == 400
    assert plain(api.put(f"/dashboard/{board['id']}", {"collection_id": 999}), 404, "Not found.")


def test_a_dashboard_question_cannot_be_placed_on_another_dashboard(api: Api) -> None:
    home, other = api.dashboard(), api.dashboard()
    question = api.card(dashboard_id=home["id"])
    assert question["dashboard_id"] == home["id"]
    response = api.put(f"/dashboard/{other['id']}", {"dashcards": [dashcard(-1, question["id"])]})
    assert plain(response, 400, "Invalid Request.")
    assert (
        api.put(f"/dashboard/{home['id']}", {"dashcards": [dashcard(-1, question["id"])]}).status_code == 200
    )


def test_new_dashcard_series_must_not_be_archived(api: Api) -> None:
    # dashboards/write.clj create-dashcards!: check-not-archived on the card AND every series card.
    main, extra = api.card(), api.card()
    api.put(f"/card/{extra['id']}", {"archived": True})
    board = api.dashboard()
    response = api.put(f"/dashboard/{board['id']}", {"dashcards": [dashcard(-1, main["id"], series=[extra])]})
    assert response.status_code == 404 and response.json()["error_code"] == "archived"
    assert api.get(f"/dashboard/{board['id']}").json()["dashcards"] == []


def test_a_card_already_on_the_dashboard_stays_when_it_became_another_dashboards_question(api: Api) -> None:
    # assert-dashcards-are-not-internal-to-other-dashboards grandfathers cards the dashboard shows already.
    board, other = api.dashboard(), api.dashboard()
    card = api.card()
    placed = api.put(f"/dashboard/{board['id']}", {"dashcards": [dashcard(-1, card["id"])]}).json()
    api.fake.state.cards[card["id"]]["dashboard_id"] = other["id"]
    kept = dashcard(placed["dashcards"][0]["id"], card["id"], row=3)
    assert api.put(f"/dashboard/{board['id']}", {"dashcards": [kept]}).status_code == 200
    again = api.put(f"/dashboard/{board['id']}", {"dashcards": [kept, dashcard(-1, card["id"])]})
    assert again.status_code == 200
    fresh = api.dashboard()
    assert plain(api.put(f"/dashboard/{fresh['id']}", {"dashcards": [dashcard(-1, card["id"])]}), 400,
                 "Invalid Request.")  # fmt: skip


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/card/999", {"name": ""}),
        ("/dashboard/999", {"width": "wide"}),
        ("/collection/999", {"description": ""}),
        ("/database/999", {"name": ""}),
    ],
)
def test_an_invalid_body_is_a_400_before_the_object_is_looked_up(api: Api, path: str, body: dict) -> None:
    # api/macros.clj decode-and-validate-params runs before the handler, so a bad body beats a missing id.
    response = api.put(path, body)
    assert response.status_code == 400 and set(response.json()["errors"]) == set(body)
    assert plain(api.put(path, {}), 404, "Not found.")
