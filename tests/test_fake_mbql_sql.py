"""The fake's MBQL compiler run on the real test PostgreSQL: rows, column names and types as Metabase's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.conftest import PgServer
from tests.fake_metabase import sql as warehouse
from tests.fake_metabase.mbql_sql import (
    CardInfo,
    Compiled,
    FieldInfo,
    MbqlError,
    TableInfo,
    compile_query,
    result_columns,
)
from tests.paths import RECORDED

DATABASE_ID = 1

SCHEMA = """
create table customers (
  id integer primary key, name text, city text, latitude double precision, signed_up date
);
create table orders (
  id integer primary key, customer_id integer references customers (id), status text, amount integer,
  total numeric(10, 2), created_at timestamp, ordered_on date, note text
);
insert into customers values
  (1, 'Alice', 'Paris', 48.85, '2023-01-15'), (2, 'Bob', 'Lyon', 45.76, '2023-02-20'),
  (3, 'Chloé', 'Paris', 48.86, '2023-03-05'), (4, 'Dan', null, null, '2023-03-28');
insert into orders values
  (1, 1, 'completed', 10, 10.50, '2024-01-01 09:00', '2024-01-01', 'gift'),
  (2, 1, 'completed', 20, 20.25, '2024-01-06 10:00', '2024-01-06', null),
  (3, 2, 'returned', 5, 5.00, '2024-01-07 11:00', '2024-01-07', ''),
  (4, 3, 'completed', 40, 40.00, '2024-02-14 12:30', '2024-02-14', 'rush_50%'),
  (5, 2, 'pending', 25, 25.75, '2024-03-31 23:00', '2024-03-31', 'Gift wrap'),
  (6, null, 'pending', 15, null, '2024-04-01 08:00', '2024-04-01', null);
-- dates placed relative to today's Sunday-based week, month and year, so time-interval answers are fixed
create table events (label text, happened_on date);
insert into events
select label, (start + shift)::date from (values
  ('week-1', 'week', interval '-7 days'), ('week-1 saturday', 'week', interval '-1 day'),
  ('week0', 'week', interval '0 days'), ('week0 saturday', 'week', interval '6 days'),
  ('week+1', 'week', interval '7 days'),
  ('month-3', 'month', interval '-3 months'), ('month-2', 'month', interval '-2 months'),
  ('month-1', 'month', interval '-1 month'), ('month0', 'month', interval '0 days'),
  ('year-1', 'year', interval '-1 day'), ('year0', 'year', interval '0 days'),
  ('year+1', 'year', interval '1 year')
) as v(label, unit, shift)
cross join lateral (select case unit
  when 'week' then date_trunc('week', now() + interval '1 day') - interval '1 day'
  else date_trunc(unit, now()) end as start) as s;
"""

# Field ids the catalog gives the synced columns: table id * 100 + position.
CUSTOMERS, ORDERS, EVENTS = 1, 2, 3
C_ID, C_NAME, C_CITY, C_LATITUDE, C_SIGNED_UP = 101, 102, 103, 104, 105
O_ID, O_CUSTOMER_ID, O_STATUS, O_AMOUNT, O_TOTAL, O_CREATED_AT, O_ORDERED_ON, O_NOTE = range(201, 209)
E_LABEL, E_HAPPENED_ON = 301, 302


class Catalog:
    """The synced tables as the fake's sync describes them (`sql.introspect`), plus saved cards."""

    def __init__(self, details: dict) -> None:
        tables = {t["name"]: t for t in warehouse.introspect(details)}
        self.tables: dict[int, TableInfo] = {}
        self.fields: dict[int, FieldInfo] = {}
        self.cards: dict[int, CardInfo] = {}
        ids = {"customers": CUSTOMERS, "orders": ORDERS, "events": EVENTS}
        for name, table_id in ids.items():
            self.tables[table_id] = TableInfo(table_id, DATABASE_ID, "public", name, warehouse.humanize(name))
        for name, table_id in ids.items():
            for column in tables[name]["columns"]:
                target = column["fk_target"]
                self.fields[table_id * 100 + column["position"] + 1] = FieldInfo(
                    id=table_id * 100 + column["position"] + 1,
                    table_id=table_id,
                    name=column["name"],
                    base_type=column["base_type"],
                    effective_type=column["base_type"],
                    semantic_type=warehouse.semantic_type_for(column),
                    display_name=warehouse.humanize(column["name"]),
                    database_type=column["database_type"],
                    fk_target_field_id=C_ID if target == ["customers", "id"] else None,
                )

    def table(self, table_id: int) -> TableInfo | None:
        return self.tables.get(table_id)

    def fields_of(self, table_id: int) -> list[FieldInfo]:
        return sorted((f for f in self.fields.values() if f.table_id == table_id), key=lambda f: f.id)

    def field(self, field_id: int) -> FieldInfo | None:
        return self.fields.get(field_id)

    def card(self, card_id: int) -> CardInfo | None:
        return self.cards.get(card_id)

    def with_fingerprint(self, field_id: int, low: float, high: float) -> None:
        number = {"type": {"type/Number": {"min": low, "max": high}}}
        field = self.fields[field_id]
        self.fields[field_id] = FieldInfo(**{**field.__dict__, "fingerprint": number})


@pytest.fixture(scope="module")
def warehouse_dsn(pg_server: PgServer) -> str:
    """One database for the module (every test only reads it)."""
    dsn = pg_server.create_database("mbql")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SCHEMA)
    return dsn


@pytest.fixture
def catalog(warehouse_dsn: str) -> Catalog:
    return Catalog(psycopg.conninfo.conninfo_to_dict(warehouse_dsn))


@pytest.fixture(scope="module")
def connection(warehouse_dsn: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(warehouse_dsn) as conn:
        conn.read_only = True
        yield conn


def field(field_id: int, options: dict | None = None) -> list:
    return ["field", field_id, options]


def mbql(inner: dict) -> dict:
    return {"database": DATABASE_ID, "type": "query", "query": inner}


def run(connection: psycopg.Connection, compiled: Compiled) -> list[list[Any]]:
    """Return the rows of `compiled` as JSON values; fails if PostgreSQL's types differ from the columns'."""
    try:
        cursor = connection.execute(compiled.sql)
    finally:
        connection.rollback()
    assert cursor.description is not None
    reported = []
    for column in cursor.description:
        info = connection.adapters.types.get(column.type_code)
        reported.append(warehouse.base_type_for(info.name if info else "unknown"))
    assert reported == [c["base_type"] for c in compiled.columns], compiled.sql
    assert [c.name for c in cursor.description] == [c["lib/desired-column-alias"] for c in compiled.columns]
    return [[warehouse._json_value(v) for v in row] for row in cursor.fetchall()]


def rows_of(connection: psycopg.Connection, catalog: Catalog, inner: dict, **kwargs: Any) -> list[list[Any]]:
    return run(connection, compile_query(mbql(inner), catalog, **kwargs))


def ids_where(connection: psycopg.Connection, catalog: Catalog, condition: list) -> list[int]:
    inner = {
        "source-table": ORDERS,
        "fields": [field(O_ID)],
        "filter": condition,
        "order-by": [["asc", field(O_ID)]],
    }
    return [row[0] for row in rows_of(connection, catalog, inner)]


def pick(columns: list[dict], *keys: str) -> list[tuple]:
    return [tuple(c.get(k) for k in keys) for c in columns]


# ----------------------------------------------------------------- plain questions


def test_table_question_returns_every_field_with_its_metadata(
    connection: psycopg.Connection, catalog: Catalog
) -> None:
    compiled = compile_query(
        mbql({"source-table": CUSTOMERS, "order-by": [["desc", field(C_ID)]], "limit": 2}), catalog
    )
    assert run(connection, compiled) == [
        [4, "Dan", None, None, "2023-03-28T00:00:00Z"],
        [3, "Chloé", "Paris", 48.86, "2023-03-05T00:00:00Z"],
    ]
    assert pick(
        compiled.columns, "name", "display_name", "base_type", "semantic_type", "field_ref", "source"
    ) == [
        ("id", "ID", "type/Integer", "type/PK", ["field", C_ID, None], "fields"),
        ("name", "Name", "type/Text", "type/Name", ["field", C_NAME, None], "fields"),
        ("city", "City", "type/Text", "type/City", ["field", C_CITY, None], "fields"),
        ("latitude", "Latitude", "type/Float", "type/Latitude", ["field", C_LATITUDE, None], "fields"),
        ("signed_up", "Signed Up", "type/Date", None, ["field", C_SIGNED_UP, None], "fields"),
    ]
    assert compiled.columns[0]["id"] == C_ID and compiled.columns[0]["table_id"] == CUSTOMERS


def test_result_columns_have_the_keys_a_saved_card_stores(catalog: Catalog) -> None:
    recorded = json.loads((RECORDED / "card" / "28.json").read_text())["result_metadata"]
    query = mbql(
        {"source-table": ORDERS, "fields": [field(O_ID), field(O_CREATED_AT, {"temporal-unit": "default"})]}
    )
    stored = result_columns(query, catalog)
    assert [list(column) for column in stored] == [
        [k for k in recorded[0] if k != "unit"],
        list(recorded[2]),
    ]
    assert stored[1]["unit"] == "default" and stored[1]["field_ref"] == [
        "field",
        O_CREATED_AT,
        {"temporal-unit": "default"},
    ]


# ----------------------------------------------------------------- filters


def test_equals_with_several_values_matches_any(connection: psycopg.Connection, catalog: Catalog) -> None:
    assert ids_where(connection, catalog, ["=", field(O_STATUS), "returned", "pending"]) == [3, 5, 6]


def test_not_equals_keeps_rows_where_the_column_is_null(
    connection: psycopg.Connection, catalog: Catalog
) -> None:
    assert ids_where(connection, catalog, ["!=", field(O_CUSTOMER_ID), 1, 2]) == [4, 6]


def test_comparisons_and_between(connection: psycopg.Connection, catalog: Catalog) -> None:
    assert ids_where(connection, catalog, ["<", field(O_AMOUNT), 15]) == [1, 3]
    assert ids_where(connection, catalog, [">=", field(O_TOTAL), 25.75]) == [4, 5]
    assert ids_where(connection, catalog, ["between", field(O_AMOUNT), 15, 25]) == [2, 5, 6]


def test_null_and_empty_checks(connection: psycopg.Connection, catalog: Catalog) -> None:
    assert ids_where(connection, catalog, ["is-null", field(O_NOTE)]) == [2, 6]
    assert ids_where(connection, catalog, ["not-null", field(O_NOTE)]) == [1, 3, 4, 5]
    assert ids_where(connection, catalog, ["is-empty", field(O_NOTE)]) == [2, 3, 6]
    assert ids_where(connection, catalog, ["not-empty", field(O_NOTE)]) == [1, 4, 5]
    assert ids_where(connection, catalog, ["is-empty", field(O_TOTAL)]) == [6]


def test_string_filters_are_case_sensitive_unless_told(
    connection: psycopg.Connection, catalog: Catalog
) -> None:
    assert ids_where(connection, catalog, ["contains", field(O_NOTE), "gift"]) == [1]
    assert ids_where(connection, catalog, ["contains", field(O_NOTE), "GIFT", {"case-sensitive": False}]) == [
        1,
        5,
    ]
    assert ids_where(connection, catalog, ["starts-with", field(O_STATUS), "p"]) == [5, 6]
    assert ids_where(
        connection, catalog, ["ends-with", field(O_STATUS), "ED", {"case-sensitive": False}]
    ) == [
        1,
        2,
        3,
        4,
    ]


def test_does_not_contain_keeps_null_rows(connection: psycopg.Connection, catalog: Catalog) -> None:
    assert ids_where(connection, catalog, ["does-not-contain", field(O_NOTE), "ift"]) == [2, 3, 4, 6]


def test_like_metacharacters_in_a_value_match_literally(
    connection: psycopg.Connection, catalog: Catalog
) -> None:
    assert ids_where(connection, catalog, ["contains", field(O_NOTE), "_50%"]) == [4]
    assert ids_where(connection, catalog, ["contains", field(O_NOTE), "h%0"]) == []


def test_string_filters_with_several_values(connection: psycopg.Connection, catalog: Catalog) -> None:
    note = field(O_NOTE)
    assert ids_where(connection, catalog, ["contains", {"case-sensitive": False}, note, "gift", "rush"]) == [
        1,
        4,
        5,
    ]
    assert ids_where(connection, catalog, ["does-not-contain", {}, note, "gift", "rush"]) == [2, 3, 5, 6]
    assert ids_where(connection, catalog, ["not", ["starts-with", note, "gi"]]) == [2, 3, 4, 5, 6]


def test_and_or_not_combine(connection: psycopg.Connection, catalog: Catalog) -> None:
    condition = [
        "or",
        ["and", ["=", field(O_STATUS), "completed"], [">", field(O_AMOUNT), 15]],
        ["is-null", field(O_TOTAL)],
    ]
    assert ids_where(connection, catalog, condition) == [2, 4, 6]
    assert ids_where(connection, catalog, ["not", ["=", field(O_STATUS), "completed"]]) == [3, 5, 6]


def test_a_date_string_compares_with_the_day_of_a_datetime(
    connection: psycopg.Connection, catalog: Catalog
) -> None:
    assert ids_where(connection, catalog, ["=", field(O_CREATED_AT), "2024-01-06"]) == [2]
    assert ids_where(connection, catalog, ["between", field(O_CREATED_AT), "2024-01-06", "2024-02-14"]) == [
        2,
        3,
        4,
    ]
    assert ids_where(connection, catalog, ["<", field(O_CREATED_AT), "2024-01-06T09:30:00"]) == [1]


def event_labels(connection: psycopg.Connection, catalog: Catalog, condition: list) -> list[str]:
    inner = {
        "source-table": EVENTS,
        "fields": [field(E_LABEL)],
        "filter": condition,
        "order-by": [["asc", field(E_LABEL)]],
    }
    return [row[0] for row in rows_of(connection, catalog, inner)]


def test_time_interval_uses_whole_sunday_weeks(connection: psycopg.Connection, catalog: Catalog) -> None:
    happened = field(E_HAPPENED_ON)
    weeks = {"week-1", "week-1 saturday", "week0", "week0 saturday", "week+1"}
    expected = {
        "current": {"week0", "week0 saturday"},
        "last": {"week-1", "week-1 saturday"},
        "next": {"week+1"},
    }
    for when, labels in expected.items():
        found = set(event_labels(connection, catalog, ["time-interval", happened, when, "week"]))
        assert found & weeks == labels, when


def test_time_interval_over_several_units_excludes_the_current_one(
    connection: psycopg.Connection, catalog: Catalog
) -> None:
    happened = field(E_HAPPENED_ON)
    labels = event_labels(connection, catalog, ["time-interval", happened, -2, "month"])
    assert {"month-2", "month-1"} <= set(labels) and not {"month-3", "month0"} & set(labels)
    labels = event_labels(
        connection, catalog, ["time-interval", happened, -2, "month", {"include-current": True}]
    )
    assert {"month-2", "month-1", "month0"} <= set(labels) and "month-3" not in labels
    labels = event_labels(connection, catalog, ["time-interval", happened, 1, "year"])
    assert "year+1" in labels and "year0" not in labels
    assert "year-1" in event_labels(connection, catalog, ["time-interval", happened, "last", "year"])


def test_during_and_relative_time_interval(connection: psycopg.Connection, catalog: Catalog) -> None:
    assert ids_where(connection, catalog, ["during", field(O_CREATED_AT), "2024-01-15", "month"]) == [1, 2, 3]
    labels = event_labels(
        connection, catalog, ["relative-time-interval", field(E_HAPPENED_ON), -1, "month", -1, "month"]
    )
    assert "month-2" in labels and not {"month-1", "month-3", "month0"} & set(labels)


# ----------------------------------------------------------------- expressions


def test_expressions_compute_like_metabase(connection: psycopg.Connection, catalog: Catalog) -> None:
    expressions = {
        "double": ["*", field(O_AMOUNT), 2],
        "share": ["/", field(O_AMOUNT), 4],
        "net": ["-", ["coalesce", field(O_TOTAL), 0], 1],
        "size": [
            "case",
            [[[">", field(O_AMOUNT), 20], "big"], [[">", field(O_AMOUNT), 10], "medium"]],
            {"default": "small"},
        ],
        "label": ["concat", ["upper", field(O_STATUS)], "-", ["lower", "X"]],
        "rounded": ["round", ["/", field(O_TOTAL), 3]],
        "letters": ["length", ["trim", ["substring", field(O_STATUS), 1, 4]]],
        "days": ["datetime-diff", field(O_ORDERED_ON), "2024-04-01", "day"],
        "year": ["get-year", field(O_CREATED_AT)],
        "magnitude": ["abs", ["-", 0, ["ceil", ["floor", 2.5]]]],
    }
    inner = {
        "source-table": ORDERS,
        "expressions": expressions,
        "fields": [field(O_ID), *(["expression", name] for name in expressions)],
        "order-by": [["asc", field(O_ID)]],
        "limit": 2,
    }
    compiled = compile_query(mbql(inner), catalog)
    assert run(connection, compiled) == [
        [1, 20, 2.5, 9.5, "small", "COMPLETED-x", 4.0, 4, 91, 2024, 2],
        [2, 40, 5.0, 19.25, "medium", "COMPLETED-x", 7.0, 4, 86, 2024, 2],
    ]
    assert pick(compiled.columns[1:3], "name", "display_name", "field_ref", "source", "base_type") == [
        ("double", "double", ["expression", "double"], "fields", "type/Integer"),
        ("share", "share", ["expression", "share"], "fields", "type/Float"),
    ]


def test_expressions_are_returned_after_the_fields_by_default(catalog: Catalog) -> None:
    inner = {"source-table": CUSTOMERS, "expressions": {"shout": ["upper", field(C_NAME)]}}
    assert [c["name"] for c in compile_query(mbql(inner), catalog).columns] == [
        "id",
        "name",
        "city",
        "latitude",
        "signed_up",
        "shout",
    ]


def test_order_by_an_expression(connection: psycopg.Connection, catalog: Catalog) -> None:
    inner = {
        "source-table": ORDERS,
        "expressions": {"rest": ["-", 30, field(O_AMOUNT)]},
        "fields": [field(O_ID)],
        "order-by": [["asc", ["expression", "rest"]]],
        "limit": 3,
    }
    assert rows_of(connection, catalog, inner) == [[4], [5], [2]]


# ----------------------------------------------------------------- aggregations


def test_aggregation_names_types_and_display_names(connection: psycopg.Connection, catalog: Catalog) -> None:
    inner = {
        "source-table": ORDERS,
        "aggregation": [
            ["count"],
            ["sum", field(O_AMOUNT)],
            ["avg", field(O_AMOUNT)],
            ["distinct", field(O_STATUS)],
            ["min", field(O_TOTAL)],
            ["max", field(O_CREATED_AT)],
            ["count", field(O_TOTAL)],
            ["sum", field(O_TOTAL)],
        ],
    }
    compiled = compile_query(mbql(inner), catalog)
    assert run(connection, compiled) == [
        [6, 115, 19.166666666666668, 3, 5.0, "2024-04-01T08:00:00Z", 5, 101.5]
    ]
    assert pick(
        compiled.columns, "name", "display_name", "base_type", "semantic_type", "field_ref", "source"
    ) == [
        ("count", "Count", "type/BigInteger", "type/Quantity", ["aggregation", 0], "aggregation"),
        ("sum", "Sum of Amount", "type/BigInteger", None, ["aggregation", 1], "aggregation"),
        ("avg", "Average of Amount", "type/Decimal", None, ["aggregation", 2], "aggregation"),
        ("count_2", "Distinct values of Status", "type/BigInteger", None, ["aggregation", 3], "aggregation"),
        ("min", "Min of Total", "type/Decimal", None, ["aggregation", 4], "aggregation"),
        ("max", "Max of Created At", "type/DateTime", None, ["aggregation", 5], "aggregation"),
        ("count_3", "Count of Total", "type/BigInteger", "type/Quantity", ["aggregation", 6], "aggregation"),
        ("sum_2", "Sum of Total", "type/Decimal", None, ["aggregation", 7], "aggregation"),
    ]


def test_statistical_and_conditional_aggregations(connection: psycopg.Connection, catalog: Catalog) -> None:
    completed = ["=", field(O_STATUS), "completed"]
    inner = {
        "source-table": ORDERS,
        "aggregation": [
            ["median", field(O_AMOUNT)],
            ["percentile", field(O_AMOUNT), 0.9],
            ["stddev", field(O_AMOUNT)],
            ["var", field(O_AMOUNT)],
            ["count-where", completed],
            ["sum-where", field(O_AMOUNT), completed],
            ["share", completed],
        ],
    }
    compiled = compile_query(mbql(inner), catalog)
    [row] = run(connection, compiled)
    assert row[:2] == [17.5, 32.5]
    assert round(row[2], 6) == 11.334559 and round(row[3], 6) == 128.472222
    assert row[4:] == [3.0, 70.0, 0.5]
    assert pick(compiled.columns, "name", "display_name", "base_type") == [
        ("median", "Median of Amount", "type/Float"),
        ("percentile", "0.9th percentile of Amount", "type/Float"),
        ("stddev", "Standard deviation of Amount", "type/Decimal"),
        ("var", "Variance of Amount", "type/Decimal"),
        ("count-where", "Count of rows matching condition", "type/Decimal"),
        ("sum_where_amount", "Sum of Amount matching condition", "type/Decimal"),
        ("share", "Share of rows matching condition", "type/Decimal"),
    ]


def test_named_aggregations_and_arithmetic_over_aggregations(
    connection: psycopg.Connection, catalog: Catalog
) -> None:
    inner = {
        "source-table": ORDERS,
        "aggregation": [
            ["aggregation-options", ["sum", field(O_AMOUNT)], {"name": "revenue", "display-name": "Revenue"}],
            ["/", ["sum", field(O_AMOUNT)], ["count"]],
            ["+", ["count"], 1],
            ["aggregation-options", ["count"], {"name": "n"}],
        ],
    }
    compiled = compile_query(mbql(inner), catalog)
    assert run(connection, compiled) == [[115, 19.166666666666668, 7, 6]]
    assert pick(compiled.columns, "name", "display_name", "base_type") == [
        ("revenue", "Revenue", "type/BigInteger"),
        ("expression", "Sum of Amount ÷ Count", "type/Float"),
        ("expression_2", "Count + 1", "type/BigInteger"),
        ("n", "Count", "type/BigInteger"),
    ]


# ----------------------------------------------------------------- breakouts and ordering


def test_breakout_rows_are_sorted_by_the_breakout_without_order_by(
    connection: psycopg.Connection, catalog: Catalog
) -> None:
    compiled = compile_query(
        mbql({"source-table": ORDERS, "aggregation": [["count"]], "breakout": [field(O_STATUS)]}), catalog
    )
    assert run(connection, compiled) == [["completed", 3], ["pending", 2], ["returned", 1]]
    assert pick(compiled.columns, "name", "display_name", "source", "field_ref") == [
        ("status", "Status", "breakout", ["field", O_STATUS, None]),
        ("count", "Count", "aggregation", ["aggregation", 0]),
    ]


def test_order_by_an_aggregation_then_the_remaining_breakouts(
    connection: psycopg.Connection, catalog: Catalog
) -> None:
    inner = {
        "source-table": ORDERS,
        "aggregation": [["sum", field(O_AMOUNT)]],
        "breakout": [field(O_STATUS)],
        "order-by": [["desc", ["aggregation", 0]]],
        "limit": 2,
    }
    assert rows_of(connection, catalog, inner) == [["completed", 70], ["pending", 40]]


def test_month_breakout_of_a_datetime(connection: psycopg.Connection, catalog: Catalog) -> None:
    inner = {
        "source-table": ORDERS,
        "aggregation": [["count"]],
        "breakout": [field(O_CREATED_AT, {"temporal-unit": "month"})],
    }
    compiled = compile_query(mbql(inner), catalog)
    assert run(connection, compiled) == [
        ["2024-01-01T00:00:00Z", 3],
        ["2024-02-01T00:00:00Z", 1],
        ["2024-03-01T00:00:00Z", 1],
        ["2024-04-01T00:00:00Z", 1],
    ]
    assert pick(compiled.columns[:1], "name", "display_name", "unit", "base_type", "field_ref") == [
        (
            "created_at",
            "Created At: Month",
            "month",
            "type/DateTime",
            ["field", O_CREATED_AT, {"temporal-unit": "month"}],
        )
    ]


@pytest.mark.parametrize("field_id", [O_CREATED_AT, O_ORDERED_ON])
def test_weeks_start_on_sunday(connection: psycopg.Connection, catalog: Catalog, field_id: int) -> None:
    inner = {
        "source-table": ORDERS,
        "aggregation": [["count"]],
        "breakout": [field(field_id, {"temporal-unit": "week"})],
    }
    assert rows_of(connection, catalog, inner) == [
        ["2023-12-31T00:00:00Z", 2],
        ["2024-01-07T00:00:00Z", 1],
        ["2024-02-11T00:00:00Z", 1],
        ["2024-03-31T00:00:00Z", 2],
    ]


def test_day_of_week_counts_sunday_as_one(connection: psycopg.Connection, catalog: Catalog) -> None:
    inner = {
        "source-table": ORDERS,
        "aggregation": [["count"]],
        "breakout": [field(O_ORDERED_ON, {"temporal-unit": "day-of-week"})],
    }
    compiled = compile_query(mbql(inner), catalog)
    assert run(connection, compiled) == [[1, 2], [2, 2], [4, 1], [7, 1]]
    assert compiled.columns[0]["display_name"] == "Ordered On: Day of week"
    assert compiled.columns[0]["base_type"] == "type/Integer"


@pytest.mark.parametrize(
    ("unit", "values"),
    [
        ("hour-of-day", [8, 9, 10, 11, 12, 23]),
        ("day-of-month", [1, 1, 6, 7, 14, 31]),
        ("day-of-year", [1, 6, 7, 45, 91, 92]),
        ("week-of-year", [1, 6, 13, 13, 53, 53]),
        ("month-of-year", [1, 1, 1, 2, 3, 4]),
        ("quarter-of-year", [1, 1, 1, 1, 1, 2]),
        ("year", ["2024-01-01T00:00:00Z"] * 6),
        ("quarter", ["2024-01-01T00:00:00Z"] * 5 + ["2024-04-01T00:00:00Z"]),
        ("day", [f"2024-{d}T00:00:00Z" for d in ("01-01", "01-06", "01-07", "02-14", "03-31", "04-01")]),
        ("hour", [f"2024-{t}:00:00Z" for t in ("01-01T09", "01-06T10", "01-07T11", "02-14T12", "03-31T23",
                                                 "04-01T08")]),
        ("minute", [f"2024-{t}:00Z" for t in ("01-01T09:00", "01-06T10:00", "01-07T11:00", "02-14T12:30",
                                                "03-31T23:00", "04-01T08:00")]),
    ],
)  # fmt: skip
def test_temporal_units_bucket_like_metabase_on_postgres(
    connection: psycopg.Connection, catalog: Catalog, unit: str, values: list
) -> None:
    inner = {"source-table": ORDERS, "fields": [field(O_CREATED_AT, {"temporal-unit": unit})]}
    assert sorted(row[0] for row in rows_of(connection, catalog, inner)) == values


def test_an_unbucketed_datetime_breakout_is_bucketed_by_day(catalog: Catalog) -> None:
    compiled = compile_query(mbql({"source-table": ORDERS, "breakout": [field(O_CREATED_AT)]}), catalog)
    assert pick(compiled.columns, "unit", "display_name") == [("day", "Created At: Day")]


def test_cumulative_aggregations_run_over_the_breakout(
    connection: psycopg.Connection, catalog: Catalog
) -> None:
    inner = {
        "source-table": ORDERS,
        "aggregation": [["cum-count"], ["cum-sum", field(O_AMOUNT)], ["count"]],
        "breakout": [field(O_CREATED_AT, {"temporal-unit": "month"})],
    }
    compiled = compile_query(mbql(inner), catalog)
    assert run(connection, compiled) == [
        ["2024-01-01T00:00:00Z", 3, 35, 3],
        ["2024-02-01T00:00:00Z", 4, 75, 1],
        ["2024-03-01T00:00:00Z", 5, 100, 1],
        ["2024-04-01T00:00:00Z", 6, 115, 1],
    ]
    assert pick(compiled.columns[1:], "name", "display_name", "base_type") == [
        ("cum_count", "Cumulative count", "type/Decimal"),
        ("sum", "Cumulative sum of Amount", "type/Decimal"),
        ("count", "Count", "type/BigInteger"),
    ]


def test_cumulative_count_restarts_for_each_other_breakout(
    connection: psycopg.Connection, catalog: Catalog
) -> None:
    inner = {
        "source-table": ORDERS,
        "aggregation": [["cum-count"]],
        "breakout": [field(O_STATUS), field(O_CREATED_AT, {"temporal-unit": "month"})],
    }
    assert rows_of(connection, catalog, inner) == [
        ["completed", "2024-01-01T00:00:00Z", 2],
        ["completed", "2024-02-01T00:00:00Z", 3],
        ["pending", "2024-03-01T00:00:00Z", 1],
        ["pending", "2024-04-01T00:00:00Z", 2],
        ["returned", "2024-01-01T00:00:00Z", 1],
    ]


def test_cumulative_sum_without_breakout_is_a_sum(connection: psycopg.Connection, catalog: Catalog) -> None:
    assert rows_of(
        connection, catalog, {"source-table": ORDERS, "aggregation": [["cum-sum", field(O_AMOUNT)]]}
    ) == [[115]]


# ----------------------------------------------------------------- binning


def test_binning_by_number_of_bins_rounds_to_nice_widths(
    connection: psycopg.Connection, catalog: Catalog
) -> None:
    catalog.with_fingerprint(O_AMOUNT, 5.0, 40.0)
    inner = {
        "source-table": ORDERS,
        "aggregation": [["count"]],
        "breakout": [field(O_AMOUNT, {"binning": {"strategy": "num-bins", "num-bins": 4}})],
    }
    compiled = compile_query(mbql(inner), catalog)
    assert run(connection, compiled) == [[0.0, 1], [10.0, 2], [20.0, 2], [40.0, 1]]
    column = compiled.columns[0]
    assert column["display_name"] == "Amount: 4 bins"
    assert column["binning_info"] == {
        "binning_strategy": "num-bins",
        "strategy": "num-bins",
        "num_bins": 4,
        "bin_width": 10.0,
        "min_value": 0.0,
        "max_value": 40.0,
    }


def test_default_binning_uses_eight_bins(connection: psycopg.Connection, catalog: Catalog) -> None:
    catalog.with_fingerprint(O_AMOUNT, 5.0, 40.0)
    inner = {
        "source-table": ORDERS,
        "aggregation": [["count"]],
        "breakout": [field(O_AMOUNT, {"binning": {"strategy": "default"}})],
    }
    compiled = compile_query(mbql(inner), catalog)
    assert run(connection, compiled) == [[5.0, 1], [10.0, 1], [15.0, 1], [20.0, 1], [25.0, 1], [40.0, 1]]
    assert compiled.columns[0]["binning_info"]["bin_width"] == 5.0


def test_bin_width_and_bounds_from_the_stage_filters(
    connection: psycopg.Connection, catalog: Catalog
) -> None:
    inner = {
        "source-table": ORDERS,
        "filter": ["between", field(O_AMOUNT), 10, 30],
        "aggregation": [["count"]],
        "breakout": [field(O_AMOUNT, {"binning": {"strategy": "bin-width", "bin-width": 15}})],
    }
    compiled = compile_query(mbql(inner), catalog)
    assert run(connection, compiled) == [[0.0, 1], [15.0, 3]]
    assert compiled.columns[0]["display_name"] == "Amount: 15"


def test_binning_a_field_without_fingerprint_fails_like_metabase(catalog: Catalog) -> None:
    inner = {"source-table": ORDERS, "breakout": [field(O_TOTAL, {"binning": {"strategy": "default"}})]}
    with pytest.raises(MbqlError, match=r"Unable to bin Field without a min/max value") as failure:
        compile_query(mbql(inner), catalog)
    assert failure.value.error_type == "invalid-query"


# ----------------------------------------------------------------- joins


def test_left_join_with_all_fields_names_columns_like_metabase(
    connection: psycopg.Connection, catalog: Catalog
) -> None:
    inner = {
        "source-table": ORDERS,
        "fields": [field(O_ID), field(O_STATUS)],
        "joins": [
            {
                "source-table": CUSTOMERS,
                "alias": "Customers",
                "condition": ["=", field(O_CUSTOMER_ID), field(C_ID, {"join-alias": "Customers"})],
                "fields": "all",
            }
        ],
        "order-by": [["desc", field(O_ID)]],
        "limit": 2,
    }
    compiled = compile_query(mbql(inner), catalog)
    assert run(connection, compiled) == [
        [6, "pending", None, None, None, None, None],
        [5, "pending", 2, "Bob", "Lyon", 45.76, "2023-02-20T00:00:00Z"],
    ]
    assert pick(compiled.columns[1:4], "name", "display_name", "field_ref", "lib/desired-column-alias") == [
        ("status", "Status", ["field", O_STATUS, None], "status"),
        ("id_2", "Customers → ID", ["field", C_ID, {"join-alias": "Customers"}], "Customers__id"),
        ("name", "Customers → Name", ["field", C_NAME, {"join-alias": "Customers"}], "Customers__name"),
    ]


@pytest.mark.parametrize(
    ("strategy", "ids"),
    [("inner-join", [1, 2, 3, 4, 5]), ("left-join", [1, 2, 3, 4, 5, 6]),
     ("right-join", [None, 1, 2, 3, 4, 5]), ("full-join", [None, 1, 2, 3, 4, 5, 6])],
)  # fmt: skip
def test_join_strategies(connection: psycopg.Connection, catalog: Catalog, strategy: str, ids: list) -> None:
    inner = {
        "source-table": ORDERS,
        "fields": [field(O_ID)],
        "joins": [
            {
                "source-table": CUSTOMERS,
                "alias": "C",
                "strategy": strategy,
                "condition": ["=", field(O_CUSTOMER_ID), field(C_ID, {"join-alias": "C"})],
                "fields": "none",
            }
        ],
    }
    assert (
        sorted((row[0] for row in rows_of(connection, catalog, inner)), key=lambda v: (v is not None, v))
        == ids
    )


def test_breakout_and_filter_on_joined_columns(connection: psycopg.Connection, catalog: Catalog) -> None:
    city = field(C_CITY, {"join-alias": "Customers"})
    inner = {
        "source-table": ORDERS,
        "joins": [
            {
                "source-table": CUSTOMERS,
                "alias": "Customers",
                "condition": ["=", field(O_CUSTOMER_ID), field(C_ID, {"join-alias": "Customers"})],
            }
        ],
        "filter": ["not-null", city],
        "aggregation": [["sum", field(O_AMOUNT)]],
        "breakout": [city],
    }
    compiled = compile_query(mbql(inner), catalog)
    assert run(connection, compiled) == [["Lyon", 30], ["Paris", 70]]
    assert pick(compiled.columns[:1], "name", "display_name", "source") == [
        ("city", "Customers → City", "breakout")
    ]


def test_join_on_a_nested_query(connection: psycopg.Connection, catalog: Catalog) -> None:
    inner = {
        "source-table": CUSTOMERS,
        "fields": [field(C_NAME)],
        "joins": [
            {
                "source-query": {
                    "source-table": ORDERS,
                    "aggregation": [["count"]],
                    "breakout": [field(O_CUSTOMER_ID)],
                },
                "alias": "Counts",
                "condition": [
                    "=",
                    field(C_ID),
                    ["field", "customer_id", {"base-type": "type/Integer", "join-alias": "Counts"}],
                ],
                "fields": [["field", "count", {"base-type": "type/BigInteger", "join-alias": "Counts"}]],
            }
        ],
        "order-by": [["asc", field(C_ID)]],
    }
    compiled = compile_query(mbql(inner), catalog)
    assert run(connection, compiled) == [["Alice", 2], ["Bob", 2], ["Chloé", 1], ["Dan", None]]
    assert pick(compiled.columns, "name", "display_name", "lib/desired-column-alias") == [
        ("name", "Name", "name"),
        ("count", "Counts → Count", "Counts__count"),
    ]


def test_implicit_join_through_a_foreign_key(connection: psycopg.Connection, catalog: Catalog) -> None:
    inner = {
        "source-table": ORDERS,
        "aggregation": [["count"]],
        "breakout": [field(C_NAME, {"source-field": O_CUSTOMER_ID})],
    }
    compiled = compile_query(mbql(inner), catalog)
    assert run(connection, compiled) == [["Alice", 2], ["Bob", 2], ["Chloé", 1], [None, 1]]
    assert pick(compiled.columns[:1], "name", "display_name", "field_ref") == [
        ("name", "Customer → Name", ["field", C_NAME, {"source-field": O_CUSTOMER_ID}])
    ]


# ----------------------------------------------------------------- nested questions and cards


def test_a_second_stage_filters_the_aggregated_rows(connection: psycopg.Connection, catalog: Catalog) -> None:
    inner = {
        "source-query": {"source-table": ORDERS, "aggregation": [["count"]], "breakout": [field(O_STATUS)]},
        "filter": [">", ["field", "count", {"base-type": "type/BigInteger"}], 1],
    }
    compiled = compile_query(mbql(inner), catalog)
    assert run(connection, compiled) == [["completed", 3], ["pending", 2]]
    assert pick(compiled.columns, "name", "field_ref", "source") == [
        ("status", ["field", O_STATUS, None], "fields"),
        ("count", ["field", "count", {"base-type": "type/BigInteger"}], "fields"),
    ]


def test_a_later_stage_may_name_a_join_of_an_earlier_stage(
    connection: psycopg.Connection, catalog: Catalog
) -> None:
    customers = {
        "source-table": CUSTOMERS,
        "alias": "Customers",
        "condition": ["=", field(O_CUSTOMER_ID), field(C_ID, {"join-alias": "Customers"})],
        "fields": "all",
    }
    inner = {
        "source-query": {"source-table": ORDERS, "fields": [field(O_ID)], "joins": [customers]},
        "fields": [field(O_ID)],
        "filter": ["=", field(C_CITY, {"join-alias": "Customers"}), "Paris"],
        "order-by": [["asc", field(O_ID)]],
    }
    assert rows_of(connection, catalog, inner) == [[1], [2], [4]]


def test_a_question_on_a_saved_question(connection: psycopg.Connection, catalog: Catalog) -> None:
    catalog.cards[7] = CardInfo(
        7,
        DATABASE_ID,
        "question",
        mbql(
            {
                "source-table": ORDERS,
                "joins": [
                    {
                        "source-table": CUSTOMERS,
                        "alias": "Customers",
                        "condition": ["=", field(O_CUSTOMER_ID), field(C_ID, {"join-alias": "Customers"})],
                        "fields": [field(C_NAME, {"join-alias": "Customers"})],
                    }
                ],
                "fields": [field(O_ID), field(O_ORDERED_ON)],
            }
        ),
        None,
    )
    inner = {
        "source-table": "card__7",
        "filter": ["=", field(C_NAME), "Bob"],
        "order-by": [["asc", field(O_ID)]],
    }
    compiled = compile_query(mbql(inner), catalog)
    assert run(connection, compiled) == [
        [3, "2024-01-07T00:00:00Z", "Bob"],
        [5, "2024-03-31T00:00:00Z", "Bob"],
    ]
    assert pick(compiled.columns, "name", "display_name", "field_ref", "unit") == [
        ("id", "ID", ["field", O_ID, None], None),
        ("ordered_on", "Ordered On", ["field", O_ORDERED_ON, {"temporal-unit": "default"}], "default"),
        ("name", "Customers → Name", ["field", C_NAME, None], None),
    ]


def test_a_model_shows_its_edited_metadata_in_questions_built_on_it(
    connection: psycopg.Connection, catalog: Catalog
) -> None:
    model_query = mbql({"source-table": ORDERS, "fields": [field(O_ID), field(O_STATUS), field(O_AMOUNT)]})
    stored = compile_query(model_query, catalog).columns
    stored[1] = {
        **stored[1],
        "display_name": "Order state",
        "description": "Where the order is",
        "semantic_type": "type/Category",
    }
    catalog.cards[8] = CardInfo(8, DATABASE_ID, "model", model_query, stored)
    inner = {
        "source-table": "card__8",
        "aggregation": [["sum", field(O_AMOUNT)]],
        "breakout": [field(O_STATUS)],
    }
    compiled = compile_query(mbql(inner), catalog)
    assert run(connection, compiled) == [["completed", 70], ["pending", 40], ["returned", 5]]
    assert pick(compiled.columns, "name", "display_name", "description", "semantic_type") == [
        ("status", "Order state", "Where the order is", "type/Category"),
        ("sum", "Sum of Amount", None, None),
    ]


def test_a_native_card_as_a_source(connection: psycopg.Connection, catalog: Catalog) -> None:
    native = {
        "database": DATABASE_ID,
        "type": "native",
        "native": {"query": "select id, status from orders;", "template-tags": {}},
    }
    metadata = [
        {"name": "id", "display_name": "id", "base_type": "type/Integer"},
        {"name": "status", "display_name": "status", "base_type": "type/Text"},
    ]
    catalog.cards[9] = CardInfo(9, DATABASE_ID, "question", native, metadata)
    inner = {
        "source-table": "card__9",
        "aggregation": [["count"]],
        "breakout": [["field", "status", {"base-type": "type/Text"}]],
    }
    compiled = compile_query(mbql(inner), catalog)
    assert run(connection, compiled) == [["completed", 3], ["pending", 2], ["returned", 1]]
    assert compiled.columns[0]["field_ref"] == ["field", "status", {"base-type": "type/Text"}]


# ----------------------------------------------------------------- parameters


def dimension(ref: list, stage: int | None = 0) -> list:
    return ["dimension", ref, {"stage-number": stage}] if stage is not None else ["dimension", ref]


def test_parameters_filter_their_target_columns(connection: psycopg.Connection, catalog: Catalog) -> None:
    inner = {"source-table": ORDERS, "fields": [field(O_ID)], "order-by": [["asc", field(O_ID)]]}
    parameters = [
        {"type": "category", "value": ["completed", "pending"], "target": dimension(field(O_STATUS))},
        {"type": "number/between", "value": [10, 30], "target": dimension(field(O_AMOUNT))},
        {
            "type": "date/all-options",
            "value": "2024-01-01~2024-03-31",
            "target": dimension(field(O_CREATED_AT), None),
        },
        {"type": "string/contains", "value": None, "target": dimension(field(O_NOTE))},
    ]
    assert rows_of(connection, catalog, inner, parameters=parameters) == [[1], [2], [5]]


def test_string_parameters_ignore_case(connection: psycopg.Connection, catalog: Catalog) -> None:
    inner = {"source-table": ORDERS, "fields": [field(O_ID)], "order-by": [["asc", field(O_ID)]]}
    parameters = [{"type": "string/contains", "value": ["GIFT"], "target": dimension(field(O_NOTE))}]
    assert rows_of(connection, catalog, inner, parameters=parameters) == [[1], [5]]


def test_a_parameter_on_the_last_stage_of_a_nested_query(
    connection: psycopg.Connection, catalog: Catalog
) -> None:
    inner = {
        "source-query": {"source-table": ORDERS, "aggregation": [["count"]], "breakout": [field(O_STATUS)]}
    }
    parameters = [
        {
            "type": "number/>=",
            "value": [2],
            "target": dimension(["field", "count", {"base-type": "type/BigInteger"}], -1),
        }
    ]
    assert rows_of(connection, catalog, inner, parameters=parameters) == [["completed", 3], ["pending", 2]]


def test_a_parameter_may_target_an_mbql5_field_ref(connection: psycopg.Connection, catalog: Catalog) -> None:
    inner = {"source-table": ORDERS, "fields": [field(O_ID)], "order-by": [["asc", field(O_ID)]]}
    ref = ["field", {"lib/uuid": "00000000-0000-4000-8000-000000000000", "base-type": "type/Text"}, O_STATUS]
    parameters = [{"type": "string/=", "value": ["returned"], "target": dimension(ref)}]
    assert rows_of(connection, catalog, inner, parameters=parameters) == [[3]]


def test_a_parameter_on_a_column_the_stage_lacks_fails(catalog: Catalog) -> None:
    inner = {"source-table": CUSTOMERS}
    parameters = [{"type": "category", "value": "pending", "target": dimension(field(O_STATUS))}]
    with pytest.raises(MbqlError, match=r"Invalid parameter target"):
        compile_query(mbql(inner), catalog, parameters)


# ----------------------------------------------------------------- failures


def test_an_unknown_field_id_fails(catalog: Catalog) -> None:
    with pytest.raises(MbqlError, match=r"Failed to fetch :metadata/column 999") as failure:
        compile_query(mbql({"source-table": ORDERS, "filter": ["=", field(999), 1]}), catalog)
    assert failure.value.error_type == "invalid-query"


def test_an_unknown_table_fails(catalog: Catalog) -> None:
    with pytest.raises(MbqlError, match=r"Failed to fetch :metadata/table 42"):
        compile_query(mbql({"source-table": 42}), catalog)


def test_an_unknown_clause_fails(catalog: Catalog) -> None:
    with pytest.raises(MbqlError, match=r"Error normalizing query: .*unknown clause :regex-whatever"):
        compile_query(
            mbql({"source-table": ORDERS, "filter": ["regex-whatever", field(O_STATUS), "x"]}), catalog
        )


def test_a_clause_with_the_wrong_arity_fails(catalog: Catalog) -> None:
    with pytest.raises(MbqlError, match=r":between takes 3 arguments, got 2"):
        compile_query(mbql({"source-table": ORDERS, "filter": ["between", field(O_AMOUNT), 1]}), catalog)


def test_an_unknown_card_fails(catalog: Catalog) -> None:
    with pytest.raises(MbqlError, match=r"Card 404 does not exist"):
        compile_query(mbql({"source-table": "card__404"}), catalog)


def test_a_field_of_a_table_not_in_the_query_fails_like_postgres(catalog: Catalog) -> None:
    with pytest.raises(MbqlError, match=r'missing FROM-clause entry for table "customers"'):
        compile_query(mbql({"source-table": ORDERS, "fields": [field(C_NAME)]}), catalog)
