"""Query-builder questions and models end to end: apply, run, re-plan, drift, and the export round trip
to a second Metabase whose ids all differ (the test the design rests on)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests

from provisioner import dashboards
from provisioner.config import Settings
from provisioner.errors import SpecErrors
from provisioner.metabase.client import MetabaseClient
from provisioner.spec import load_paths
from tests.fake_metabase.fixtures import SMALL_WAREHOUSE_SQL
from tests.fake_metabase.server import FakeMetabase

MODELS = """\
key: models
collection: Shop
database: Warehouse
questions:
  - key: orders
    type: model
    name: Orders
    description: Every order, with its customer.
    query:
      source: orders
      joins:
        - {source: customers, alias: Customer, on: "customer_id = Customer.id", columns: [name]}
    metadata:
      amount: {display_name: Order amount, semantic_type: currency, description: What the customer pays}
      status: {semantic_type: category}
  - key: revenue
    type: metric
    name: Revenue
    description: Money in from orders that were not voided.
    query: {source: orders, filter: 'status != "void"', summarize: ["sum(amount)"], group_by: [{column: ordered_on, unit: month}]}
"""
SALES = """\
key: sales
name: Sales
collection: Shop/Sales
database: Warehouse
filters:
  - {key: status, name: Status, type: category}
cards:
  - key: paid-revenue
    name: Paid revenue
    display: scalar
    query:
      source: {model: orders}
      filter: status = "paid"
      summarize: ["sum(amount)"]
    filters: {status: status}
    viz: {y: sum}
  - key: by-status
    name: Orders by status
    display: bar
    query:
      source: {model: orders}
      summarize: [count, {expr: "sum(amount)", name: Revenue}]
      group_by: [status]
      order_by: [count desc, status]
    filters: {status: status}
    viz: {x: status, y: [count]}
  - key: by-month
    name: Revenue by month
    display: line
    query:
      source: orders
      filter: amount > 2
      summarize: ["sum(amount)"]
      group_by: [{column: ordered_on, unit: month}]
    filters: {status: status}
    viz: {x: ordered_on, y: [sum]}
  - key: big-customers
    name: Big customers
    display: table
    query:
      - source: orders
        joins:
          - {source: customers, alias: C, on: "customer_id = C.id", columns: none}
        expressions: {doubled: "amount * 2"}
        filter: 'status != "void"'
        summarize: ["sum(doubled)"]
        group_by: [C.name]
      - filter: sum > 10
        order_by: [C__name]
    filters: {status: status}
  - text: "**Point at** the paid revenue."
"""


class Side:
    """One fake Metabase with the warehouse registered, logged in."""

    def __init__(self, fake: FakeMetabase, dsn: str, root: Path) -> None:
        self.fake = fake
        self.client = MetabaseClient(fake.url, sleep=lambda _s: None)
        self.client.use_session(fake.admin_session())
        self.http = requests.Session()
        self.http.headers["X-Metabase-Session"] = fake.admin_session()
        self.settings = Settings.load({}, cwd=root, metabase_url=fake.url)
        self.root = root

    def apply(self, directory: Path) -> dashboards.ApplyResult:
        return dashboards.apply(self.settings, [directory], client=self.client, environ={})

    def plan(self, directory: Path) -> dashboards.Plan:
        return dashboards.plan(self.settings, [directory], client=self.client, environ={})

    def run(self, card_id: int, parameters: list[dict[str, Any]] | None = None) -> list[list[Any]]:
        answer = self.http.post(
            f"{self.fake.url}/api/card/{card_id}/query", json={"parameters": parameters or []}
        )
        body = answer.json()
        assert body["status"] == "completed", body
        return [list(r) for r in body["data"]["rows"]]

    def dashboard(self, name: str) -> dict[str, Any]:
        return next(d for d in self.fake.dashboards() if d["name"] == name and not d.get("archived"))

    def answers(self, name: str, value: Any = None) -> dict[str, list[list[Any]]]:
        """Every card of the dashboard by name, run through its dashcard with the filter set (or not)."""
        dashboard = self.dashboard(name)
        out = {}
        for dashcard in dashboard["dashcards"]:
            if dashcard.get("card_id") is None:
                continue
            parameters = []
            if value is not None:
                parameters = [
                    {"id": p["id"], "type": p["type"], "value": [value]} for p in dashboard["parameters"]
                ]
            url = f"{self.fake.url}/api/dashboard/{dashboard['id']}/dashcard/{dashcard['id']}/card/{dashcard['card_id']}/query"
            body = self.http.post(url, json={"parameters": parameters}).json()
            assert body["status"] == "completed", body
            card = self.fake.state.cards[dashcard["card_id"]]
            out[card["name"]] = body["data"]["rows"]
        return out


@pytest.fixture
def warehouse(pg_dsn: str) -> str:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(SMALL_WAREHOUSE_SQL)
    return pg_dsn


@pytest.fixture
def side(warehouse: str, tmp_path: Path) -> Iterator[Side]:
    with FakeMetabase() as fake:
        fake.admin_session()
        fake.add_database(warehouse, name="Warehouse")
        made = Side(fake, warehouse, tmp_path / "a")
        yield made
        made.client.close()


def _yaml(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "0-models.yaml").write_text(MODELS)
    (directory / "sales.yaml").write_text(SALES)
    return directory


def test_query_builder_questions_apply_run_and_replan_clean(side: Side, tmp_path: Path) -> None:
    directory = _yaml(tmp_path / "yaml")
    result = side.apply(directory)
    assert result.ok, result.describe()
    cards = {c["name"]: c for c in side.fake.cards()}
    assert cards["Orders"]["type"] == "model" and cards["Orders"]["dashboard_id"] is None
    assert cards["Revenue"]["type"] == "metric" and cards["Revenue"]["dashboard_id"] is None
    sales = side.dashboard("Sales")
    assert {cards[n]["dashboard_id"] for n in ("Paid revenue", "Orders by status")} == {sales["id"]}
    assert side.run(cards["Paid revenue"]["id"]) == [[17.75]]
    assert side.run(cards["Orders by status"]["id"]) == [["paid", 2, 17.75], ["open", 1, 5], ["void", 1, 1]]
    assert side.run(cards["Revenue by month"]["id"]) == [
        ["2024-01-01T00:00:00Z", 10.5],
        ["2024-02-01T00:00:00Z", 5],
        ["2024-03-01T00:00:00Z", 7.25],
    ]
    assert side.run(cards["Big customers"]["id"]) == [["Ann", 31], ["Bob", 14.5]]
    metadata = {c["name"]: c for c in cards["Orders"]["result_metadata"]}
    assert metadata["amount"]["display_name"] == "Order amount"
    assert metadata["amount"]["semantic_type"] == "type/Currency"

    plan = side.plan(directory)
    assert not plan.has_changes, plan.describe()
    again = side.apply(directory)
    assert again.summary()["created"] == again.summary()["updated"] == 0


def test_a_dashboard_filter_on_columns_filters_every_query_builder_card(side: Side, tmp_path: Path) -> None:
    side.apply(_yaml(tmp_path / "yaml"))
    unfiltered = side.answers("Sales")
    paid = side.answers("Sales", "paid")
    assert paid["Orders by status"] == [["paid", 2, 17.75]]
    assert paid["Revenue by month"] == [["2024-01-01T00:00:00Z", 10.5], ["2024-03-01T00:00:00Z", 7.25]]
    assert all(
        paid[name] != unfiltered[name] for name in ("Orders by status", "Revenue by month", "Big customers")
    )


def test_a_ui_edit_is_a_change_that_names_the_clause(side: Side, tmp_path: Path) -> None:
    directory = _yaml(tmp_path / "yaml")
    side.apply(directory)
    card = next(c for c in side.fake.cards() if c["name"] == "Revenue by month")
    got = side.http.get(f"{side.fake.url}/api/card/{card['id']}").json()
    query = got["dataset_query"]
    query["stages"][0]["filters"][0][3] = 5  # amount > 5 instead of > 2, saved as the UI saves: MBQL 5
    assert side.http.put(f"{side.fake.url}/api/card/{card['id']}", json={"dataset_query": query}).ok
    [changed] = [a for a in side.plan(directory).actions if a.action == "update"]
    assert (changed.key, changed.changes) == ("sales/by-month", ["query.filter"])
    side.apply(directory)
    assert not side.plan(directory).has_changes


@pytest.mark.parametrize("version", ["v0.61.5", "v0.65.4"])
def test_plan_is_clean_after_apply_on_each_supported_version(
    warehouse: str, tmp_path: Path, version: str
) -> None:
    with FakeMetabase(version=version) as fake:
        fake.admin_session()
        fake.add_database(warehouse, name="Warehouse")
        side = Side(fake, warehouse, tmp_path / version)
        directory = _yaml(tmp_path / f"yaml-{version}")
        assert side.apply(directory).ok
        assert not side.plan(directory).has_changes
        side.client.close()


# -- The round trip: a dashboard built in the UI, exported, applied to a Metabase with other ids. ----


def _field(fake: FakeMetabase, db_id: int, table: str, column: str) -> int:
    database = fake.state.databases[db_id]
    for t in database["tables"]:
        if t["name"] == table:
            return next(f["id"] for f in t["columns"] if f["name"] == column)
    raise KeyError((table, column))


def _uuid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def _built_in_the_ui(side: Side, db_id: int) -> int:
    """A dashboard made as Metabase's 57+ UI makes it: MBQL 5 questions saved inside the dashboard, a
    model in the collection, a question on the model, a native question with a field filter, one
    filter wired to all of them, tabs, text; returns the dashboard id."""
    url, http, fake = side.fake.url, side.http, side.fake

    def field(table: str, column: str, n: int, **options: Any) -> list[Any]:
        return ["field", {"lib/uuid": _uuid(n), **options}, _field(fake, db_id, table, column)]

    collection = http.post(f"{url}/api/collection", json={"name": "Made in the UI", "parent_id": None}).json()
    dashboard = http.post(
        f"{url}/api/dashboard",
        json={
            "name": "UI Board",
            "collection_id": collection["id"],
            "parameters": [
                {
                    "id": "ab12cd34",
                    "name": "Status",
                    "slug": "status",
                    "type": "string/=",
                    "sectionId": "string",
                }
            ],
        },
    ).json()
    orders = next(t["id"] for t in fake.state.databases[db_id]["tables"] if t["name"] == "orders")

    def mbql(stage: dict[str, Any]) -> dict[str, Any]:
        return {
            "lib/type": "mbql/query",
            "database": db_id,
            "stages": [{"lib/type": "mbql.stage/mbql", **stage}],
        }

    model = http.post(
        f"{url}/api/card",
        json={
            "name": "Order facts",
            "type": "model",
            "display": "table",
            "collection_id": collection["id"],
            "visualization_settings": {},
            "dataset_query": mbql(
                {
                    "source-table": orders,
                    "filters": [["!=", {"lib/uuid": _uuid(1)}, field("orders", "status", 2), "void"]],
                }
            ),
        },
    ).json()
    by_status = http.post(
        f"{url}/api/card",
        json={
            "name": "Orders per status",
            "display": "bar",
            "dashboard_id": dashboard["id"],
            "visualization_settings": {"graph.dimensions": ["status"], "graph.metrics": ["count"]},
            "dataset_query": mbql(
                {
                    "source-table": orders,
                    "aggregation": [
                        ["count", {"lib/uuid": _uuid(3)}],
                        ["avg", {"lib/uuid": _uuid(4)}, field("orders", "amount", 5)],
                    ],
                    "breakout": [field("orders", "status", 6)],
                    "order-by": [
                        ["desc", {"lib/uuid": _uuid(7)}, ["aggregation", {"lib/uuid": _uuid(8)}, _uuid(3)]]
                    ],
                }
            ),
        },
    ).json()
    on_model = http.post(
        f"{url}/api/card",
        json={
            "name": "Big orders",
            "display": "table",
            "dashboard_id": dashboard["id"],
            "visualization_settings": {},
            "dataset_query": mbql(
                {
                    "source-card": model["id"],
                    "filters": [[">", {"lib/uuid": _uuid(9)}, field("orders", "amount", 10), 6]],
                    "fields": [field("orders", "id", 11), field("orders", "amount", 12)],
                    "order-by": [["asc", {"lib/uuid": _uuid(13)}, field("orders", "id", 14)]],
                }
            ),
        },
    ).json()
    odd = http.post(  # a clause the readable form has no words for: exported as a raw block
        f"{url}/api/card",
        json={
            "name": "Orders on a weekday",
            "display": "scalar",
            "dashboard_id": dashboard["id"],
            "visualization_settings": {},
            "dataset_query": mbql(
                {
                    "source-table": orders,
                    "aggregation": [["count", {"lib/uuid": _uuid(15)}]],
                    "filters": [
                        [
                            "!=",
                            {"lib/uuid": _uuid(16)},
                            field("orders", "ordered_on", 17, **{"temporal-unit": "day-of-week"}),
                            1,
                        ]
                    ],
                }
            ),
        },
    ).json()
    native = http.post(
        f"{url}/api/card",
        json={
            "name": "Paid total (SQL)",
            "display": "scalar",
            "dashboard_id": dashboard["id"],
            "visualization_settings": {},
            "dataset_query": {
                "type": "native",
                "database": db_id,
                "native": {
                    "query": "SELECT sum(amount) AS total FROM orders WHERE true [[AND {{status}}]]",
                    "template-tags": {
                        "status": {
                            "id": _uuid(18),
                            "name": "status",
                            "display-name": "Status",
                            "type": "dimension",
                            "dimension": ["field", _field(fake, db_id, "orders", "status"), None],
                            "widget-type": "string/=",
                        }
                    },
                },
            },
        },
    ).json()
    fresh = http.get(f"{url}/api/dashboard/{dashboard['id']}").json()
    placed = {dc["card_id"]: dc["id"] for dc in fresh["dashcards"]}

    def mapped(card_id: int, target: list[Any]) -> list[dict[str, Any]]:
        return [{"parameter_id": "ab12cd34", "card_id": card_id, "target": target}]

    status_ref = ["field", _field(fake, db_id, "orders", "status"), {"base-type": "type/Text"}]
    dashcards = [
        {"id": placed[by_status["id"]], "card_id": by_status["id"], "row": 0, "col": 0, "size_x": 12, "size_y": 6, "dashboard_tab_id": -1,
         "parameter_mappings": mapped(by_status["id"], ["dimension", status_ref, {"stage-number": 0}])},
        {"id": placed[on_model["id"]], "card_id": on_model["id"], "row": 0, "col": 12, "size_x": 12, "size_y": 6, "dashboard_tab_id": -1,
         "parameter_mappings": mapped(on_model["id"], ["dimension", status_ref, {"stage-number": 0}])},
        {"id": placed[odd["id"]], "card_id": odd["id"], "row": 6, "col": 0, "size_x": 6, "size_y": 3, "dashboard_tab_id": -1,
         "parameter_mappings": mapped(odd["id"], ["dimension", status_ref, {"stage-number": 0}])},
        {"id": placed[native["id"]], "card_id": native["id"], "row": 0, "col": 0, "size_x": 6, "size_y": 3, "dashboard_tab_id": -2,
         "parameter_mappings": mapped(native["id"], ["dimension", ["template-tag", "status"], {"stage-number": 0}])},
        {"id": -9, "card_id": None, "row": 3, "col": 0, "size_x": 24, "size_y": 2, "dashboard_tab_id": -2, "parameter_mappings": [],
         "visualization_settings": {"virtual_card": {"display": "text", "name": None, "dataset_query": {}, "visualization_settings": {}, "archived": False}, "text": "Made by hand"}},
    ]  # fmt: skip
    put = http.put(
        f"{url}/api/dashboard/{dashboard['id']}",
        json={"tabs": [{"id": -1, "name": "Numbers"}, {"id": -2, "name": "SQL"}], "dashcards": dashcards},
    )
    assert put.ok, put.text
    return int(dashboard["id"])


def _answers(side: Side) -> dict[str, Any]:
    return {value: side.answers("UI Board", value) for value in (None, "paid", "open")}


def test_a_dashboard_built_in_the_ui_moves_to_a_metabase_whose_ids_all_differ(
    warehouse: str, pg_server: Any, tmp_path: Path
) -> None:
    decoy = pg_server.create_database("decoy")  # registered first on B: B's table and field ids differ
    with psycopg.connect(decoy, autocommit=True) as conn:
        conn.execute("CREATE TABLE filler (a int, b int, c int, d int, e int, f int, g int)")
    with FakeMetabase() as fake_a, FakeMetabase() as fake_b:
        fake_a.admin_session()
        db_a = fake_a.add_database(warehouse, name="Warehouse")
        a = Side(fake_a, warehouse, tmp_path / "a")
        fake_b.admin_session()
        fake_b.add_database(decoy, name="Decoy")
        fake_b.add_database(warehouse, name="Warehouse")
        b = Side(fake_b, warehouse, tmp_path / "b")
        decoy_id = next(d["id"] for d in fake_b.databases() if d["name"] == "Decoy")
        for n in range(7):  # B's card, dashboard and collection ids differ too
            b.http.post(f"{fake_b.url}/api/collection", json={"name": f"Other {n}", "parent_id": None})
            b.http.post(f"{fake_b.url}/api/dashboard", json={"name": f"Other {n}"})
            b.http.post(
                f"{fake_b.url}/api/card",
                json={
                    "name": f"Other {n}",
                    "display": "table",
                    "visualization_settings": {},
                    "dataset_query": {
                        "type": "native",
                        "database": decoy_id,
                        "native": {"query": "SELECT 1"},
                    },
                },
            )
        board = _built_in_the_ui(a, db_a)

        exported = dashboards.export(a.settings, [str(board)], out_dir=tmp_path / "exported", client=a.client)
        text = (tmp_path / "exported" / "ui-board.yaml").read_text()
        assert exported.warnings == [], exported.warnings
        assert "database: Warehouse" in text
        assert "query:" in text and "mbql:" in text and "sql:" in text  # readable, raw and SQL all kept
        assert "questions:" in text and "type: model" in text  # the model the question is built on
        assert not any(str(n) in json.dumps(_ids_in(text)) for n in (board,))
        load_paths([tmp_path / "exported"], environ={})  # valid offline

        result = b.apply(tmp_path / "exported")
        assert result.ok, result.describe()
        assert not b.plan(tmp_path / "exported").has_changes
        ids_a = {c["name"]: c["id"] for c in fake_a.cards()}
        ids_b = {c["name"]: c["id"] for c in fake_b.cards() if not c["name"].startswith("Other")}
        assert set(ids_a) == set(ids_b) and all(ids_a[n] != ids_b[n] for n in ids_a)
        query_builder = {c["name"] for c in fake_b.cards() if c["query_type"] == "query"}
        assert query_builder == {"Order facts", "Orders per status", "Big orders", "Orders on a weekday"}
        assert _answers(a) == _answers(b)

        again = dashboards.export(b.settings, ["UI Board"], out_dir=tmp_path / "again", client=b.client)
        assert again.files and (tmp_path / "again" / "ui-board.yaml").read_text() == text
        a.client.close()
        b.client.close()


def _ids_in(text: str) -> list[Any]:
    """Every number that sits where an id would (`id:`, `card_id:`, `source-table:`) in exported YAML."""
    return [
        line
        for line in text.splitlines()
        if any(k in line for k in ("_id:", " id:", "source-table: 1", "card__"))
    ]


def test_viz_may_name_a_summary_by_its_name_and_a_missing_column_is_an_error(
    side: Side, tmp_path: Path
) -> None:
    directory = _yaml(tmp_path / "yaml")
    sales = directory / "sales.yaml"
    sales.write_text(SALES.replace("viz: {x: status, y: [count]}", "viz: {x: status, y: [Revenue]}"))
    assert side.apply(directory).ok
    card = next(c for c in side.fake.cards() if c["name"] == "Orders by status")
    assert card["visualization_settings"]["graph.metrics"] == ["sum"]
    assert not side.plan(directory).has_changes
    sales.write_text(SALES.replace("viz: {x: status, y: [count]}", "viz: {x: status, y: [revenue]}"))
    with pytest.raises(SpecErrors) as caught:
        side.plan(directory)
    [error] = caught.value.errors
    assert (error.path, error.line, error.field) == (sales, 26, "cards[1].viz.y")
    assert (
        "column `revenue` is not returned by the question (it returns: status, count, sum)" in error.problem
    )
