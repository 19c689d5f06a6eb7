"""Bad query-builder questions: each problem names the file, line and field, and what to do.

The first set is found offline, from the YAML alone; the second against the database's columns and types
(what plan checks against Metabase's metadata, and validate against PostgreSQL).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.errors import SpecError, SpecErrors
from provisioner.metabase.models import DatabaseMetadata
from provisioner.spec import load_paths
from provisioner.spec.question import compile_questions
from provisioner.translate import MetadataSchema

MODELS = """\
key: models
collection: Demo
questions:
  - key: orders
    type: model
    name: Orders
    query: {source: orders}
    metadata:
      amount: {display_name: Amount, semantic_type: currency}
"""
DASH = """\
key: sales
name: Sales
collection: Demo/Sales
filters:
  - {key: status, name: Status, type: category}
  - {key: min, name: Minimum, type: number}
cards:
  - key: by-month
    name: By month
    display: line
    query:
      source: {model: orders}
      filter: amount > 0
      summarize: [count, "sum(amount)"]
      group_by: [{column: ordered_at, unit: month}]
      order_by: [ordered_at]
    filters: {status: status}
    viz: {x: ordered_at, y: [count]}
  - key: joined
    name: Joined
    query:
      source: orders
      joins:
        - {source: customers, alias: C, on: "customer_id = C.customer_id"}
      expressions: {big: "amount > 100"}
      filter: ['C.name = "x"', big]
      columns: [status, amount]
      limit: 5
    filters: {amount: min}
"""


def _files(tmp_path: Path, models: str = MODELS, dash: str = DASH) -> tuple[Path, Path]:
    (tmp_path / "models.yaml").write_text(models)
    (tmp_path / "dash.yaml").write_text(dash)
    return tmp_path / "models.yaml", tmp_path / "dash.yaml"


def test_the_good_files_are_valid(tmp_path: Path) -> None:
    loaded = load_paths([tmp_path]) if _files(tmp_path) else []
    compiled = compile_questions(loaded, None)
    assert compiled.errors == []
    assert set(compiled.questions) == {"models/orders", "sales/by-month", "sales/joined"}


def _edit(old: str, new: str) -> str:
    assert old in DASH, old
    return DASH.replace(old, new, 1)


# (id, dashboard text, line, field, words the problem must contain); models.yaml stays as it is.
CASES: list[tuple[str, str, int, str, str]] = [
    ("filter_syntax", _edit("filter: amount > 0", "filter: amount >"), 13, "cards[0].query.filter", "expected a value"),
    ("unknown_model", _edit("{model: orders}", "{model: nope}"), 12, "cards[0].query.source.model", "no model or question `nope`"),
    ("question_as_model", _edit("source: orders\n", "source: {model: by-month}\n"), 22, "cards[1].query.source.model", "is a question, not a model"),
    ("unknown_join_alias", _edit("'C.name = \"x\"'", "'D.name = \"x\"'"), 26, "cards[1].query.filter[0]", "`D` is not a join of this step"),
    ("order_by_not_grouped", _edit("order_by: [ordered_at]", "order_by: [amount]"), 16, "cards[0].query.order_by[0]", "neither a summary nor a grouping"),
    ("summary_of_nothing", _edit('summarize: [count, "sum(amount)"]', "summarize: [amount]"), 14, "cards[0].query.summarize[0]", "summarizes nothing"),
    ("aggregation_in_filter", _edit("filter: amount > 0", "filter: sum(amount) > 0"), 13, "cards[0].query.filter", "belongs under `summarize:`"),
    ("sql_and_query", _edit("    display: line\n", "    display: line\n    sql: SELECT 1\n"), 8, "cards[0]", "give exactly one of `sql`"),
    ("no_query_at_all", _edit("    query:\n      source: {model: orders}\n      filter: amount > 0\n      summarize: [count, \"sum(amount)\"]\n      group_by: [{column: ordered_at, unit: month}]\n      order_by: [ordered_at]\n", ""), 8, "cards[0]", "give exactly one of"),
    ("tags_on_query_card", _edit("    filters: {status: status}\n", "    filters: {status: status}\n    tags: {x: {type: text}}\n"), 8, "cards[0]", "`tags` type the {{variables}} of SQL"),
    ("metadata_on_question", _edit("    filters: {status: status}\n", "    filters: {status: status}\n    metadata: {x: {description: y}}\n"), 8, "cards[0]", "add `type: model`"),
    ("unknown_stage_key", _edit("      limit: 5", "      limt: 5"), 28, "cards[1].query.limt", "allowed here: source, joins"),
    ("unknown_join_key", _edit("alias: C, on:", "alais: C, on:"), 24, "cards[1].query.joins[0].alais", "unknown key `alais`"),
    ("join_without_on", _edit(', on: "customer_id = C.customer_id"', ""), 24, "cards[1].query.joins[0]", "required key `on` is missing"),
    ("bad_strategy", _edit("alias: C, on:", "alias: C, strategy: outer, on:"), 24, "cards[1].query.joins[0].strategy", "`outer` is not allowed"),
    ("bad_unit", _edit("unit: month", "unit: montth"), 15, "cards[0].query.group_by[0].unit", "`montth` is not allowed"),
    ("unit_and_bins", _edit("unit: month}", "unit: month, bins: 4}"), 15, "cards[0].query.group_by[0]", "at most one of `unit`, `bins`"),
    ("no_bins", _edit("{column: ordered_at, unit: month}", "{column: amount, bins: 0}"), 15, "cards[0].query.group_by[0]", "`bins` must be at least 1"),
    ("zero_limit", _edit("limit: 5", "limit: 0"), 28, "cards[1].query.limit", "greater than or equal to 1"),
    ("two_sources", _edit("{model: orders}", "{model: orders, table: orders}"), 12, "cards[0].query.source", "exactly one of `table`, `model` or `question`"),
    ("source_in_second_step", _edit("      order_by: [ordered_at]\n", "      order_by: [ordered_at]\n    - {source: orders}\n").replace("    query:\n      source: {model: orders}", "    query:\n    - source: {model: orders}", 1).replace("      filter: amount > 0\n      summarize", "      filter: amount > 0\n      summarize", 1), 17, "cards[0].query[1].source", "only the first step has a `source:`"),
    ("no_source", _edit("      source: {model: orders}\n", ""), 12, "cards[0].query", "the first step needs a `source:`"),
    ("fk_arrow_on_a_model", _edit("filter: amount > 0", 'filter: customer_id -> name = "x"'), 13, "cards[0].query.filter", "`->` follows a foreign key of the source table only"),
    ("wired_to_unknown_filter", _edit("filters: {status: status}", "filters: {status: stat}"), 17, "cards[0].filters.status", "no dashboard filter with key `stat`"),
    ("wired_to_custom_column", _edit("    filters: {amount: min}", "    filters: {big: min}"), 29, "cards[1].filters.big", "is a custom column"),
    ("wired_column_syntax", _edit("    filters: {amount: min}", "    filters: {'amount >': min}"), 29, "cards[1].filters.amount >", "expected a value"),
    ("bad_semantic_type", _edit("    filters: {status: status}\n", "    filters: {status: status}\n    type: model\n    metadata: {amount: {semantic_type: money}}\n").replace("display: line", "display: table", 1), 19, "cards[0].metadata.amount.semantic_type", "`money` is not a semantic type"),
    ("bad_fk_target", _edit("    filters: {amount: min}", "    filters: {amount: min}\n    type: model\n    metadata: {customer_id: {fk_target: customers}}"), 31, "cards[1].metadata.customer_id.fk_target", "must be `table.column`"),
    ("metric_with_two_summaries", _edit("    display: line\n", "    display: line\n    type: metric\n"), 13, "cards[0].query", "a metric has exactly one summary"),
    ("duplicate_card_key", _edit("  - key: joined", "  - key: by-month"), 19, "cards[1].key", "duplicate card key `by-month`"),
    ("two_joins_one_alias", _edit('on: "customer_id = C.customer_id"}', 'on: "customer_id = C.customer_id"}\n        - {source: customers, alias: C, on: "customer_id = C.customer_id"}'), 25, "cards[1].query.joins[1].alias", "two joins are named `C`"),
    ("filter_not_text", _edit("filter: amount > 0", "filter: 3"), 13, "cards[0].query.filter", "must be a list or a string"),
    ("group_by_syntax", _edit("{column: ordered_at, unit: month}", "'ordered_at +'"), 15, "cards[0].query.group_by[0]", "expected a value"),
    ("named_summary_typo", _edit('summarize: [count, "sum(amount)"]', "summarize: [{exp: count}]"), 14, "cards[0].query.summarize[0].exp", "unknown key `exp`"),
    ("column_not_a_column", _edit("columns: [status, amount]", "columns: [status, amount + 1]"), 27, "cards[1].query.columns[1]", "is not a column"),
    ("summary_name_empty", _edit('summarize: [count, "sum(amount)"]', "summarize: [{expr: count, name: ''}]"), 14, "cards[0].query.summarize[0].name", "at least 1 character"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "line", "field", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_question_names_file_line_and_field(
    tmp_path: Path, text: str, line: int, field: str, words: str
) -> None:
    _, dash = _files(tmp_path, dash=text)
    errors: list[SpecError]
    try:
        loaded = load_paths([tmp_path], environ={})
    except SpecErrors as caught:
        errors = caught.errors
    else:
        errors = compile_questions(loaded, None).errors
    report = "\n".join(e.message for e in errors)
    matching = [e for e in errors if e.field == field and words in e.problem]
    assert matching, f"no error on {field} with {words!r} in:\n{report}"
    assert matching[0].path == dash
    assert matching[0].line == line, report


def test_a_cycle_of_questions_is_named(tmp_path: Path) -> None:
    models = MODELS.replace("query: {source: orders}", "query: {source: {question: sales/by-month}}")
    _files(tmp_path, models=models)
    with pytest.raises(SpecErrors) as caught:
        load_paths([tmp_path], environ={})
    cycle = [e for e in caught.value.errors if "in a circle" in e.problem]
    assert cycle, caught.value.errors
    assert cycle[0].problem.endswith(
        (
            "sales/by-month -> models/orders -> sales/by-month",
            "models/orders -> sales/by-month -> models/orders",
        )
    )


def test_there_are_at_least_thirty_cases() -> None:
    assert len(CASES) >= 30


METADATA = DatabaseMetadata.model_validate(
    {
        "id": 1,
        "name": "W",
        "tables": [
            {
                "id": 1,
                "name": "orders",
                "schema": "public",
                "fields": [
                    {"id": 1, "name": "status", "base_type": "type/Text"},
                    {"id": 2, "name": "amount", "base_type": "type/Float"},
                    {"id": 3, "name": "ordered_at", "base_type": "type/Date"},
                    {"id": 4, "name": "customer_id", "base_type": "type/Integer", "fk_target_field_id": 11},
                ],
            },
            {
                "id": 2,
                "name": "customers",
                "schema": "public",
                "fields": [
                    {"id": 11, "name": "customer_id", "base_type": "type/Integer"},
                    {"id": 12, "name": "name", "base_type": "type/Text"},
                ],
            },
        ],
    }
)

# (id, dashboard text, line, field, words) found only against the database's columns and types.
SCHEMA_CASES: list[tuple[str, str, int, str, str]] = [
    ("unknown_table", _edit("source: orders\n", "source: ordres\n"), 22, "cards[1].query.source", "no table or view `ordres`"),
    ("unknown_column", _edit("filter: amount > 0", "filter: amout > 0"), 13, "cards[0].query.filter", "has no column `amout`"),
    ("sum_of_text", _edit('"sum(amount)"', '"sum(status)"'), 14, "cards[0].query.summarize[1]", "`sum` needs a number"),
    ("month_of_a_number", _edit("{column: ordered_at, unit: month}", "{column: amount, unit: month}").replace("order_by: [ordered_at]", "order_by: [count]"), 15, "cards[0].query.group_by[0].unit", "is not a date or time"),
    ("bins_of_text", _edit("{column: ordered_at, unit: month}", "{column: status, bins: 4}").replace("order_by: [ordered_at]", "order_by: [count]"), 15, "cards[0].query.group_by[0]", "is not a number"),
    ("number_filter_on_text", _edit("    filters: {amount: min}", "    filters: {status: min}"), 29, "cards[1].filters.status", "filter `min` of type `number` cannot filter `status`"),
    ("unknown_join_column", _edit("'C.name = \"x\"'", "'C.nam = \"x\"'"), 26, "cards[1].query.filter[0]", "join `C` has no column `nam`"),
    ("arrow_not_a_foreign_key", _edit("columns: [status, amount]", "columns: [status, amount -> name]"), 27, "cards[1].query.columns[1]", "`orders.amount` is not a foreign key"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "line", "field", "words"), [c[1:] for c in SCHEMA_CASES], ids=[c[0] for c in SCHEMA_CASES]
)
def test_against_the_database_a_bad_question_names_file_line_and_field(
    tmp_path: Path, text: str, line: int, field: str, words: str
) -> None:
    _, dash = _files(tmp_path, dash=text)
    loaded = load_paths([tmp_path], environ={})
    errors = compile_questions(loaded, MetadataSchema(METADATA)).errors
    report = "\n".join(e.message for e in errors)
    matching = [e for e in errors if e.field == field and words in e.problem]
    assert matching, f"no error on {field} with {words!r} in:\n{report}"
    assert matching[0].path == dash
    assert matching[0].line == line, report


def test_the_good_files_compile_against_the_database_with_columns_and_types(tmp_path: Path) -> None:
    _files(tmp_path)
    compiled = compile_questions(load_paths([tmp_path], environ={}), MetadataSchema(METADATA))
    assert compiled.errors == []
    by_month = compiled.questions["sales/by-month"]
    assert [(c.name, c.base_type) for c in by_month.columns or []] == [
        ("ordered_at", "type/Date"),
        ("count", "type/BigInteger"),
        ("sum", "type/Float"),
    ]
    assert by_month.wiring == {"status": ["field", {}, "status"]}
    joined = compiled.questions["sales/joined"]
    assert joined.query["stages"][0]["joins"][0]["stages"] == [{"source-table": "customers"}]
    assert joined.wiring == {"amount": ["field", {}, ["orders", "amount"]]}


def test_a_bare_count_inside_arithmetic_is_the_summary_and_a_quoted_one_a_column(tmp_path: Path) -> None:
    dash = DASH.replace(
        'summarize: [count, "sum(amount)"]', 'summarize: ["sum(amount) / count", "sum(`count`)"]'
    )
    _files(tmp_path, dash=dash)
    compiled = compile_questions(load_paths([tmp_path], environ={}), None)
    assert compiled.errors == []
    summaries = compiled.questions["sales/by-month"].query["stages"][0]["aggregation"]
    assert summaries[0] == ["/", {}, ["sum", {}, ["field", {}, "amount"]], ["count", {}]]
    assert summaries[1] == ["sum", {}, ["field", {}, "count"]]
