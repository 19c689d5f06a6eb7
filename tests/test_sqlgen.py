"""Query-builder questions written as PostgreSQL SQL: every clause family prepares on the seeded demo
database and returns exactly the columns Metabase names; what cannot work is an error at its line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from provisioner import dashboards
from provisioner.db import schema as demo_schema
from provisioner.db.catalog import PostgresSchema
from provisioner.db.connection import connect
from provisioner.errors import SpecErrors
from provisioner.mbql.columns import Column, is_numeric, is_temporal, is_text
from provisioner.mbql.normal import NormalQuery
from provisioner.mbql.sql import NativeSource, SqlGenError, to_sql
from provisioner.spec import load_paths
from provisioner.spec.question import Compiled, compile_questions
from provisioner.sqlcheck import Described, describe
from tests.db_fixtures import SeededDatabase

RISK_MODEL = {
    "key": "risk",
    "name": "Risk",
    "type": "model",
    "query": {"source": "v_portfolio_overview", "filter": "days_past_due > 0"},
}


@pytest.fixture(scope="module")
def catalog(seeded_database: SeededDatabase) -> PostgresSchema:
    with connect(seeded_database.reader_dsn) as conn:
        return PostgresSchema.read(conn)


@pytest.fixture
def reader(seeded_database: SeededDatabase) -> Iterator[psycopg.Connection]:
    """A connection in a READ ONLY transaction, as `validate` prepares statements."""
    with connect(seeded_database.reader_dsn) as conn:
        conn.pgconn.exec_(b"BEGIN TRANSACTION READ ONLY")
        yield conn


def _write(tmp_path: Path, questions: list[dict[str, Any]]) -> Path:
    path = tmp_path / "qb.yaml"
    document = {"key": "qb", "collection": "Demo/QB", "questions": questions}
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _compile(tmp_path: Path, query: Any, catalog: PostgresSchema, *others: dict[str, Any]) -> Compiled:
    path = _write(tmp_path, [*others, {"key": "q", "name": "Q", "query": query}])
    return compile_questions(load_paths([path], environ={}), catalog)


def _sql_of(compiled: Compiled, catalog: PostgresSchema, key: str = "qb/q") -> str:
    def card_query(source: str) -> NormalQuery | None:
        found = compiled.questions.get(source)
        return found.query if found is not None else None

    return to_sql(compiled.questions[key].query, catalog, card_query)


def _family(base_type: str) -> str:
    if is_numeric(base_type):
        return "number"
    if is_temporal(base_type):
        return "temporal"
    if is_text(base_type):
        return "text"
    return base_type


def _prepare(
    tmp_path: Path, query: Any, catalog: PostgresSchema, reader: psycopg.Connection, *others: dict[str, Any]
) -> tuple[Described, list[Column]]:
    compiled = _compile(tmp_path, query, catalog, *others)
    assert [e.message for e in compiled.errors] == []
    sql = _sql_of(compiled, catalog)
    found = describe(reader, sql)
    assert found.error is None, f"{found.error}\n{sql}"
    columns = compiled.questions["qb/q"].columns
    assert columns is not None
    return found, columns


def _assert_same_columns(found: Described, columns: list[Column]) -> None:
    assert found.columns == [c.name for c in columns]
    for name, described, named in zip(found.columns, found.base_types, columns, strict=True):
        if named.base_type != "type/*" and described != "type/*":
            assert _family(described) == _family(named.base_type), (name, described, named.base_type)


# -- the catalog -------------------------------------------------------------------------------


def test_catalog_has_every_demo_table_and_view_with_its_columns_in_order(catalog: PostgresSchema) -> None:
    names = (*demo_schema.TABLES, *demo_schema.VIEWS)
    assert len(demo_schema.TABLES) == 24 and len(demo_schema.VIEWS) == 8
    assert all(catalog.canonical_table(name) == name for name in names)
    columns = catalog.columns("accounts") or []
    assert [c.name for c in columns][:4] == ["id", "account_number", "customer_id", "product"]
    types = {c.name: c.base_type for c in columns}
    assert types == types | {
        "id": "type/Integer",
        "product": "type/Text",
        "financed_amount": "type/Decimal",
        "opened_on": "type/Date",
    }
    assert {c.name: c.base_type for c in catalog.columns("events") or []}["opened_at"] == (
        "type/DateTimeWithLocalTZ"
    )
    assert catalog.columns("public.v_portfolio_overview") == catalog.columns("v_portfolio_overview")


def test_catalog_follows_foreign_keys_and_prefers_single_column_keys(catalog: PostgresSchema) -> None:
    assert catalog.foreign_key("accounts", "customer_id") == ("customers", "id")
    # events.account_id is in a composite key to assets too: its own key to accounts wins
    assert catalog.foreign_key("events", "account_id") == ("accounts", "id")
    assert catalog.foreign_key("events", "asset_id") == ("assets", "id")
    assert catalog.foreign_key("accounts", "product") is None
    assert catalog.foreign_key("no_such_table", "id") is None


def test_catalog_names_a_table_held_by_two_schemas_with_its_schema(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TYPE mood AS ENUM ('ok', 'sad'); CREATE DOMAIN positive AS integer CHECK (VALUE > 0);"
            "CREATE TABLE oems (id integer PRIMARY KEY, name text);"
            "CREATE SCHEMA other; CREATE TABLE other.oems (id integer PRIMARY KEY);"
            "CREATE TABLE other.things (id bigint, oem_id integer REFERENCES public.oems (id), m mood,"
            " n positive, tags integer[], seen timestamp, at time);"
            "CREATE VIEW other.v_things AS SELECT id, m FROM other.things"
        )
    with connect(pg_dsn) as conn:
        catalog = PostgresSchema.read(conn)
    assert catalog.canonical_table("oems") == "public.oems"
    assert catalog.canonical_table("other.oems") == "other.oems"
    assert catalog.canonical_table("things") == "things"
    assert catalog.qualified_table("things") == ("other", "things")
    assert catalog.foreign_key("things", "oem_id") == ("public.oems", "id")
    assert [(c.name, c.base_type) for c in catalog.columns("things") or []] == [
        ("id", "type/BigInteger"),
        ("oem_id", "type/Integer"),
        ("m", "type/PostgresEnum"),
        ("n", "type/Integer"),
        ("tags", "type/*"),
        ("seen", "type/DateTime"),
        ("at", "type/Time"),
    ]
    assert [c.name for c in catalog.columns("v_things") or []] == ["id", "m"]
    assert (
        catalog.columns("pg_class") is None and catalog.canonical_table("information_schema.tables") is None
    )


# -- every clause family prepares and names its columns as Metabase does ----------------------

CLAUSES: dict[str, Any] = {
    "table_only": {"source": "accounts"},
    "columns_and_limit": {"source": "accounts", "columns": ["account_number", "term_months"], "limit": 5},
    "join_strategies": {
        "source": "accounts",
        "joins": [
            {"source": "customers", "alias": "C", "on": "customer_id = C.id"},
            {
                "source": "assets",
                "alias": "A",
                "on": "id = A.account_id",
                "strategy": "inner",
                "columns": ["serial_number"],
            },
            {
                "source": "asset_models",
                "alias": "M",
                "on": "A.asset_model_id = M.id",
                "strategy": "right",
                "columns": "none",
            },
            {
                "source": "oems",
                "alias": "O",
                "on": ["M.oem_id = O.id", "O.name is not null"],
                "strategy": "full",
                "columns": ["name", "country"],
            },
        ],
    },
    "implicit_join": {
        "source": "accounts",
        "columns": ["account_number"],
        "expressions": {"segment": "customer_id -> segment"},
    },
    "arithmetic_and_case": {
        "source": "accounts",
        "expressions": {
            "double": "financed_amount * 2 + 1",
            "per_month": "financed_amount / term_months",
            "negative": "-financed_amount",
            "length_word": 'case(term_months > 36, "long", term_months > 12, "medium", "short")',
            "first_due": "coalesce(first_due_on, opened_on)",
            "rounded": "round(interest_rate_pct) + abs(term_months) + ceil(1.5) + floor(2.5) + sqrt(4)",
            "power_log": "power(term_months, 2) + log(financed_amount) + exp(1)",
            "chained": "double - 1",
        },
    },
    "text_functions": {
        "source": "customers",
        "expressions": {
            "label": 'concat(name, " (", region, ")")',
            "shout": "upper(name)",
            "quiet": "lower(trim(ltrim(rtrim(name))))",
            "size": "length(name)",
            "start": "substring(name, 1, 3)",
            "swapped": 'replace(segment, "a", "o")',
            "digits": 'regex_match_first(contact_phone, "[0-9]+")',
            "first_word": 'split_part(name, " ", 1)',
            "mail_host": "host(contact_email)",
            "mail_domain": "domain(contact_email)",
            "mail_sub": "subdomain(contact_email)",
            "mail_path": "path(contact_email)",
            "as_text": "text(onboarded_on)",
            "as_number": "integer(float(length(name)))",
        },
    },
    "date_functions": {
        "source": "events",
        "expressions": {
            "later": 'datetime_add(opened_at, 3, "month")',
            "quarter_before": 'datetime_subtract(opened_at, 1, "quarter")',
            "days_open": 'datetime_diff(opened_at, resolved_at, "day")',
            "months_open": 'datetime_diff(opened_at, now(), "month")',
            "years_open": 'datetime_diff(opened_at, now(), "year")',
            "hours_open": 'datetime_diff(opened_at, now(), "hour")',
            "year": "get_year(opened_at)",
            "month": "month_name(get_month(opened_at))",
            "quarter": "quarter_name(get_quarter(opened_at))",
            "weekday": "day_name(get_day_of_week(opened_at))",
            "hour": "get_hour(opened_at) + get_minute(opened_at) + get_second(opened_at)",
            "week": "get_week(opened_at)",
            "iso_week": 'temporal_extract(opened_at, "week-of-year-iso")',
            "in_utc": 'convert_timezone(opened_at, "UTC")',
            "day": "date(opened_at)",
            "stamp": "datetime(opened_at)",
        },
    },
    "date_add_keeps_a_date": {
        "source": "accounts",
        "columns": ["id"],
        "expressions": {"due": 'datetime_add(opened_on, 30, "day")'},
    },
    "comparison_filters": {
        "source": "accounts",
        "filter": [
            "term_months = 36 or term_months != 12",
            "term_months < 100 and term_months <= 120 and term_months > 0 and term_months >= 1",
            'product in ("hire_purchase", "finance_lease") and product not in ("none")',
            "financed_amount between 1 and 10000000",
            'not (status = "closed" or status = "written_off")',
        ],
    },
    "null_and_empty_filters": {
        "source": "collection_actions",
        "filter": [
            "next_action_on is null or next_action_on is not null",
            "notes is not empty",
            "not (notes is empty)",
            "account_id is not empty",
        ],
    },
    "string_filters": {
        "source": "collection_actions",
        "filter": [
            'contains(notes, "call", case_sensitive: false)',
            'does_not_contain(notes, "50%_off")',
            'starts_with(created_by, "a") or ends_with(created_by, "z", case_sensitive: false)',
            "contains(notes, created_by)",
        ],
    },
    "date_filters": {
        "source": "events",
        "filter": [
            'time_interval(opened_at, -3, "month") or time_interval(opened_at, "current", "year")',
            'time_interval(opened_at, 2, "week", include_current: true)'
            ' or time_interval(opened_at, "last", "quarter")',
            'relative_time_interval(opened_at, -1, "month", -1, "year")'
            ' or during(opened_at, "2026-01-15", "month")',
            'opened_at > "2020-01-01"',
        ],
    },
    "boolean_and_location_filters": {
        "source": "raw_telemetry",
        "joins": [
            {"source": "metric_definitions", "alias": "D", "on": "D.higher_is_better", "columns": "none"}
        ],
        "filter": ["inside(latitude, longitude, 60, -10, 40, 10)", "D.higher_is_better = true"],
    },
    "summaries": {
        "source": "accounts",
        "summarize": [
            "count",
            "sum(financed_amount)",
            "avg(financed_amount)",
            "min(opened_on)",
            "max(product)",
            "distinct(customer_id)",
            "count_where(term_months > 36)",
            'sum_where(financed_amount, product = "hire_purchase")',
            "share(term_months > 36)",
            "median(financed_amount)",
            "percentile(financed_amount, 0.9)",
            "stddev(financed_amount)",
            "var(financed_amount)",
            "distinct_where(customer_id, term_months > 12)",
            "sum(financed_amount) / count()",
            "sum(term_months)",
            {"expr": "count(customer_id)", "name": "Customers"},
        ],
        "group_by": ["product"],
        "order_by": ["sum(financed_amount) desc", "product"],
    },
    "summary_without_grouping": {
        "source": "accounts",
        "summarize": ["count", "cum_count", "cum_sum(term_months)"],
    },
    "cumulative_over_a_month": {
        "source": "accounts",
        "summarize": ["cum_sum(financed_amount)", "cum_count"],
        "group_by": [{"column": "opened_on", "unit": "month"}],
    },
    "cumulative_partitioned": {
        "source": "accounts",
        "summarize": ["cum_count", "count"],
        "group_by": ["product", {"column": "opened_on", "unit": "year"}],
    },
    "binning": {
        "source": "assets",
        "joins": [{"source": "accounts", "alias": "Acc", "on": "account_id = Acc.id"}],
        "summarize": ["count"],
        "group_by": [
            {"column": "manufactured_year", "bins": 10},
            {"column": "Acc.financed_amount", "bins": "auto"},
            {"column": "Acc.interest_rate_pct", "bin_width": 0.5},
            {"column": "asset_model_id -> list_price", "bins": 4},
        ],
    },
    "group_by_custom_column_and_foreign_key": {
        "source": "accounts",
        "expressions": {"long": "term_months > 36"},
        "summarize": ["count"],
        "group_by": ["long", "customer_id -> region"],
    },
    "steps": [
        {
            "source": "accounts",
            "summarize": ["count", "sum(financed_amount)"],
            "group_by": ["product", {"column": "opened_on", "unit": "quarter"}],
        },
        {
            "filter": "count > 1",
            "expressions": {"avg_size": "sum / count"},
            "summarize": ["sum(count)", "max(avg_size)"],
            "group_by": ["product"],
            "order_by": ["sum(count) desc"],
            "limit": 3,
        },
        {"filter": "sum > 0", "order_by": ["product desc"]},
    ],
    "on_a_model": {"source": {"model": "risk"}, "summarize": ["sum(exposure)"], "group_by": ["region"]},
    "joined_to_a_model": {
        "source": "customers",
        "joins": [
            {
                "source": {"model": "risk"},
                "alias": "R",
                "on": "id = R.customer_id",
                "columns": ["exposure", "risk_band"],
            }
        ],
        "filter": 'R.risk_band = "delinquent"',
    },
}


@pytest.mark.parametrize("case", sorted(CLAUSES))
def test_each_clause_family_prepares_with_the_columns_metabase_names(
    case: str, tmp_path: Path, catalog: PostgresSchema, reader: psycopg.Connection
) -> None:
    found, columns = _prepare(tmp_path, CLAUSES[case], catalog, reader, RISK_MODEL)
    _assert_same_columns(found, columns)


TEMPORAL_UNITS = [
    "minute",
    "hour",
    "day",
    "week",
    "month",
    "quarter",
    "year",
    "minute-of-hour",
    "hour-of-day",
    "day-of-week",
    "day-of-month",
    "day-of-year",
    "week-of-year",
    "month-of-year",
    "quarter-of-year",
]


@pytest.mark.parametrize("unit", TEMPORAL_UNITS)
@pytest.mark.parametrize(("table", "column"), [("events", "opened_at"), ("accounts", "opened_on")])
def test_every_temporal_unit_groups_a_date_and_a_timestamp(
    unit: str, table: str, column: str, tmp_path: Path, catalog: PostgresSchema, reader: psycopg.Connection
) -> None:
    query = {"source": table, "summarize": ["count"], "group_by": [{"column": column, "unit": unit}]}
    found, columns = _prepare(tmp_path, query, catalog, reader)
    _assert_same_columns(found, columns)
    # a truncated date stays a date, a truncated timestamp a timestamp; an extracted part is an integer
    assert found.base_types[0] == columns[0].base_type


def test_summaries_are_named_and_numbered_as_metabase_names_them(
    tmp_path: Path, catalog: PostgresSchema, reader: psycopg.Connection
) -> None:
    found, _ = _prepare(tmp_path, CLAUSES["summaries"], catalog, reader)
    assert found.columns == [
        "product",
        "count",
        "sum",
        "avg",
        "min",
        "max",
        "count_2",
        "count-where",
        "sum_where_financed_amount",
        "share",
        "median",
        "percentile",
        "stddev",
        "var",
        "distinct_where",
        "expression",
        "sum_2",
        "count_3",
    ]


def test_joined_columns_are_named_alias_double_underscore_column(
    tmp_path: Path, catalog: PostgresSchema, reader: psycopg.Connection
) -> None:
    found, _ = _prepare(tmp_path, CLAUSES["join_strategies"], catalog, reader)
    assert "C__segment" in found.columns and "A__serial_number" in found.columns
    assert found.columns[-2:] == ["O__name", "O__country"]
    assert not any(name.startswith("M__") for name in found.columns)


def test_an_mbql_block_prepares_like_a_query(
    tmp_path: Path, catalog: PostgresSchema, reader: psycopg.Connection
) -> None:
    mbql = {
        "stages": [
            {
                "source-table": "accounts",
                "aggregation": [["count"]],
                "breakout": [["field", {"temporal-unit": "month"}, "accounts.opened_on"]],
            }
        ]
    }
    path = _write(tmp_path, [{"key": "q", "name": "Q", "mbql": mbql}])
    compiled = compile_questions(load_paths([path], environ={}), catalog)
    assert compiled.errors == []
    found = describe(reader, _sql_of(compiled, catalog))
    assert found.error is None and found.columns == ["opened_on", "count"]


def test_a_question_on_a_sql_question_reads_its_sql_as_a_subquery(
    catalog: PostgresSchema, reader: psycopg.Connection
) -> None:
    query = {
        "stages": [
            {
                "source-card": "qb/native",
                "aggregation": [["sum", {}, ["field", {}, "n"]]],
                "breakout": [["field", {"temporal-unit": "month"}, "day"]],
            }
        ]
    }
    native = NativeSource(
        "SELECT opened_on AS day, term_months AS n FROM accounts -- a comment\n;",
        [Column("day", "type/Date"), Column("n", "type/Integer")],
    )
    sql = to_sql(query, catalog, lambda key: native if key == "qb/native" else None)
    found = describe(reader, sql)
    assert found.error is None and found.columns == ["day", "sum"]
    assert found.base_types == ["type/Date", "type/BigInteger"]


def test_the_columns_of_a_sql_question_of_unknown_columns_pass_through(
    catalog: PostgresSchema, reader: psycopg.Connection
) -> None:
    query = {
        "stages": [{"source-card": "qb/native", "expressions": {"twice": ["*", {}, ["field", {}, "n"], 2]}}]
    }
    sql = to_sql(query, catalog, lambda key: "SELECT 1 AS n, 'a' AS label")
    found = describe(reader, sql)
    assert found.error is None and found.columns == ["n", "label", "twice"]


def test_a_bare_table_name_is_left_to_the_search_path_without_a_qualifying_schema(
    catalog: PostgresSchema,
) -> None:
    class Bare:
        def columns(self, table: str) -> list[Column] | None:
            return catalog.columns(table)

        def foreign_key(self, table: str, column: str) -> tuple[str, str] | None:
            return None

        def canonical_table(self, table: str) -> str | None:
            return table

    sql = to_sql({"stages": [{"source-table": "oems", "limit": 1}]}, Bare(), lambda key: None)
    assert 'FROM "oems" AS "source"' in sql


# -- what cannot be written as SQL is a clear error --------------------------------------------


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ({"stages": [{"source-card": "qb/missing"}]}, "no model or question `qb/missing`"),
        ({"stages": [{"source-table": "no_such_view"}]}, "no table or view `no_such_view`"),
        ({"stages": [{"source-table": 12}]}, "is an id"),
        (
            {"stages": [{"source-table": "accounts", "fields": [["field", {}, ["customers", "name"]]]}]},
            "neither reads nor joins",
        ),
        (
            {"stages": [{"source-table": "accounts", "fields": [["field", {}, ["accounts", "nope"]]]}]},
            "has no column `nope`",
        ),
        (
            {"stages": [{"source-table": "accounts", "fields": [["field", {"join-alias": "X"}, "id"]]}]},
            "no join named `X`",
        ),
        (
            {
                "stages": [
                    {
                        "source-table": "accounts",
                        "fields": [
                            ["field", {"source-field": ["accounts", "product"]}, ["customers", "name"]]
                        ],
                    }
                ]
            },
            "is not a foreign key",
        ),
        ({"stages": [{"source-table": "accounts", "aggregation": [["metric", {}, 3]]}]}, "saved metric"),
        ({"stages": [{"source-table": "accounts", "filters": [["segment", {}, 1]]}]}, "segment"),
        (
            {"stages": [{"source-table": "accounts", "expressions": {"x": ["frobnicate", {}, 1]}}]},
            "`frobnicate` cannot be written as SQL",
        ),
        (
            {
                "stages": [
                    {
                        "source-table": "accounts",
                        "breakout": [["field", {"temporal-unit": "fortnight"}, ["accounts", "opened_on"]]],
                    }
                ]
            },
            "unknown temporal unit `fortnight`",
        ),
        (
            {
                "stages": [
                    {
                        "source-table": "accounts",
                        "joins": [
                            {
                                "alias": "N",
                                "strategy": "left-join",
                                "fields": "all",
                                "conditions": [],
                                "stages": [{"source-card": "qb/native"}],
                            }
                        ],
                    }
                ]
            },
            "whose columns are unknown",
        ),
        ({"stages": [{"source-card": "qb/loop"}]}, "in a circle: qb/loop -> qb/loop"),
    ],
)
def test_what_cannot_be_written_as_sql_raises_a_clear_error(
    query: NormalQuery, words: str, catalog: PostgresSchema
) -> None:
    sources: dict[str, NormalQuery | str] = {
        "qb/native": "SELECT 1 AS n",
        "qb/loop": {"stages": [{"source-card": "qb/loop"}]},
    }
    with pytest.raises(SqlGenError, match=None) as caught:
        to_sql(query, catalog, sources.get)
    assert words in str(caught.value)


# -- validate: query-builder questions checked on the database, errors at file:line -----------

DASHBOARD = """\
key: qb
name: QB
collection: Demo/QB
cards:
  - key: native
    name: Native
    sql: SELECT region, count(*) AS accounts FROM v_portfolio_overview GROUP BY region
  - key: by_region
    name: By region
    display: bar
    query:
      source: {question: native}
      summarize: [sum(accounts)]
      group_by: [region]
    viz: {x: region, y: [sum]}
  - key: exposure
    name: Exposure
    display: line
    query:
      - source: v_portfolio_overview
        filter: days_past_due > 0
        summarize: [sum(exposure), count]
        group_by: [{column: as_of, unit: month}]
      - filter: count > 0
    viz: {x: as_of, y: [sum, count]}
"""


def _validate(tmp_path: Path, text: str, seeded: SeededDatabase) -> list[Any]:
    (tmp_path / "qb.yaml").write_text(text)
    try:
        dashboards.validate([tmp_path], database_url=seeded.reader_dsn, environ={})
    except SpecErrors as errors:
        return [(e.line, e.field, e.problem) for e in errors.errors]
    return []


def test_validate_accepts_query_builder_questions_on_tables_models_and_sql_questions(
    tmp_path: Path, seeded_database: SeededDatabase
) -> None:
    assert _validate(tmp_path, DASHBOARD, seeded_database) == []


def test_validate_reports_a_viz_column_the_query_does_not_return(
    tmp_path: Path, seeded_database: SeededDatabase
) -> None:
    text = DASHBOARD.replace("viz: {x: as_of, y: [sum, count]}", "viz: {x: as_of, y: [total, count]}")
    [(line, field, problem)] = _validate(tmp_path, text, seeded_database)
    assert (line, field) == (25, "cards[2].viz.y")
    assert problem == "column `total` is not returned by the query (it returns: as_of, sum, count)"


def test_validate_reports_a_viz_column_missing_from_a_question_on_a_sql_question(
    tmp_path: Path, seeded_database: SeededDatabase
) -> None:
    text = DASHBOARD.replace("viz: {x: region, y: [sum]}", "viz: {x: region, y: [accounts]}")
    [(line, field, problem)] = _validate(tmp_path, text, seeded_database)
    assert (line, field) == (15, "cards[1].viz.y") and "it returns: region, sum" in problem


@pytest.mark.parametrize(
    ("old", "new", "line", "field", "words"),
    [
        (
            "filter: days_past_due > 0",
            "filter: dayz_past_due > 0",
            21,
            "cards[2].query[0].filter",
            "has no column `dayz_past_due`",
        ),
        (
            "summarize: [sum(exposure), count]",
            "summarize: [sum(region), count]",
            22,
            "cards[2].query[0].summarize[0]",
            "`sum` needs a number; the column is type/Text",
        ),
        (
            "group_by: [{column: as_of, unit: month}]",
            "group_by: [{column: days_past_due, unit: month}]",
            23,
            "cards[2].query[0].group_by[0].unit",
            "is not a date or time (type/Integer)",
        ),
        (
            "filter: days_past_due > 0",
            "filter: 'time_interval(region, -3, \"month\")'",
            21,
            "cards[2].query[0].filter",
            "`time_interval` works on dates; the column is text",
        ),
        (
            "source: v_portfolio_overview",
            "source: v_portfolio",
            20,
            "cards[2].query[0].source",
            "no table or view `v_portfolio`",
        ),
    ],
)
def test_validate_reports_query_problems_at_their_line(
    old: str, new: str, line: int, field: str, words: str, tmp_path: Path, seeded_database: SeededDatabase
) -> None:
    errors = _validate(tmp_path, DASHBOARD.replace(old, new), seeded_database)
    assert any((e[0], e[1]) == (line, field) and words in e[2] for e in errors), errors


def test_a_question_on_a_broken_sql_question_reports_only_the_broken_sql(
    tmp_path: Path, seeded_database: SeededDatabase
) -> None:
    text = DASHBOARD.replace("FROM v_portfolio_overview GROUP BY", "FROM v_portfolio_overvue GROUP BY")
    errors = _validate(tmp_path, text, seeded_database)
    assert [(line, field) for line, field, _ in errors] == [(7, "cards[0].sql")]


def test_a_step_postgresql_rejects_is_reported_at_that_step(
    tmp_path: Path, seeded_database: SeededDatabase
) -> None:
    text = DASHBOARD.replace("      - filter: count > 0\n", "      - filter: 'lower(count) = \"1\"'\n")
    [(line, field, problem)] = _validate(tmp_path, text, seeded_database)
    assert (line, field) == (24, "cards[2].query[1].filter")
    assert "function lower(bigint) does not exist" in problem


def test_a_question_on_a_query_postgresql_rejects_reports_only_that_query(
    tmp_path: Path, seeded_database: SeededDatabase
) -> None:
    text = DASHBOARD.replace("filter: days_past_due > 0", "filter: region > 0") + (
        "  - key: on_exposure\n"
        "    name: On exposure\n"
        "    query: {source: {question: exposure}, summarize: [max(sum)]}\n"
    )
    errors = _validate(tmp_path, text, seeded_database)
    assert [(line, field) for line, field, _ in errors] == [(21, "cards[2].query[0].filter")]
