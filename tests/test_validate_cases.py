"""Bad dashboard files: each problem is reported with the file, line, column and field, and what to do."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from provisioner.cli.app import app
from provisioner.dashboards import validate
from provisioner.errors import SpecErrors
from provisioner.spec import load_file, load_paths

# A valid file; each case below edits one part of it. Line numbers refer to the edited text.
GOOD = """\
key: demo
name: Demo
collection: Demo/Sub
filters:
  - {key: band, name: Band, type: category}
cards:
  - key: c1
    name: C1
    display: bar
    sql: SELECT band, 1 AS n FROM t WHERE true [[AND {{band}}]]
    tags: {band: {field: t.band}}
    filters: {band: band}
    viz: {x: band, y: [n]}
"""


def _write(tmp_path: Path, text: str, name: str = "dash.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_good_file_is_valid(tmp_path: Path) -> None:
    loaded = load_file(_write(tmp_path, GOOD), environ={})
    assert loaded.spec.key == "demo"


# (id, edited text, line, field, words the problem must contain)
CASES: list[tuple[str, str, int, str, str]] = [
    ("unknown_top_key", GOOD + "colour: red\n", 14, "colour", "unknown key `colour`"),
    (
        "unknown_card_key",
        GOOD.replace("    display: bar\n", "    dispaly: bar\n"),
        9,
        "cards[0].dispaly",
        "unknown key",
    ),
    (
        "unknown_filter_key",
        GOOD.replace("type: category}", "type: category, colour: x}"),
        5,
        "filters[0].colour",
        "unknown key",
    ),
    (
        "unknown_viz_key",
        GOOD.replace("viz: {x: band, y: [n]}", "viz: {x: band, z: [n]}"),
        13,
        "cards[0].viz.z",
        "allowed here: x, y",
    ),
    ("unknown_at_key", GOOD + "    at: {rows: 1}\n", 14, "cards[0].at.rows", "unknown key"),
    (
        "unknown_tag_key",
        GOOD.replace("{field: t.band}", "{feild: t.band}"),
        11,
        "cards[0].tags.band.feild",
        "unknown key",
    ),
    (
        "duplicate_top_key",
        GOOD.replace("name: Demo\n", "name: Demo\nname: Again\n"),
        3,
        "name",
        "duplicate key",
    ),
    (
        "duplicate_card_field",
        GOOD.replace("    name: C1\n", "    name: C1\n    name: C2\n"),
        9,
        "cards[0].name",
        "duplicate key",
    ),
    ("missing_name", GOOD.replace("name: Demo\n", ""), 1, "(file)", "required key `name`"),
    ("missing_card_name", GOOD.replace("    name: C1\n", ""), 7, "cards[0]", "required key `name`"),
    ("bad_key_pattern", GOOD.replace("key: demo", "key: Demo Board"), 1, "key", "lowercase"),
    ("bad_card_key_pattern", GOOD.replace("key: c1", "key: C 1"), 7, "cards[0].key", "lowercase"),
    ("bad_filter_type", GOOD.replace("type: category", "type: categry"), 5, "filters[0].type", "`categry`"),
    ("bad_display", GOOD.replace("display: bar", "display: barchart"), 9, "cards[0].display", "`barchart`"),
    (
        "sql_and_sql_file",
        GOOD.replace("    display: bar\n", "    display: bar\n    sql_file: q.sql\n"),
        7,
        "cards[0]",
        "exactly one of `sql`",
    ),
    (
        "sql_file_missing",
        GOOD.replace(
            "sql: SELECT band, 1 AS n FROM t WHERE true [[AND {{band}}]]", "sql_file: queries/none.sql"
        ),
        10,
        "cards[0].sql_file",
        "file not found",
    ),
    (
        "filter_wired_to_missing_tag",
        GOOD.replace("filters: {band: band}", "filters: {band: band, oem: band}"),
        12,
        "cards[0].filters.oem",
        "no template tag `{{oem}}`",
    ),
    (
        "wired_to_unknown_filter",
        GOOD.replace("filters: {band: band}", "filters: {band: bnad}"),
        12,
        "cards[0].filters.band",
        "no dashboard filter with key `bnad`",
    ),
    (
        "tag_spec_for_missing_tag",
        GOOD.replace("tags: {band: {field: t.band}}", "tags: {band: {field: t.band}, oem: {field: t.oem}}"),
        11,
        "cards[0].tags.oem",
        "no template tag `{{oem}}`",
    ),
    (
        "required_tag_unwired",
        GOOD.replace("WHERE true [[AND {{band}}]]", "WHERE n > {{limit}} [[AND {{band}}]]"),
        10,
        "cards[0].sql",
        "required template tag `{{limit}}` is not wired",
    ),
    (
        "filter_wired_to_no_card",
        GOOD.replace(
            "  - {key: band, name: Band, type: category}\n",
            "  - {key: band, name: Band, type: category}\n  - {key: oem, name: OEM, type: category}\n",
        ),
        6,
        "filters[1].key",
        "wired to no card",
    ),
    (
        "bad_field_format",
        GOOD.replace("{field: t.band}", "{field: band}"),
        11,
        "cards[0].tags.band.field",
        "`table.column`",
    ),
    (
        "range_filter_on_variable",
        GOOD.replace("type: category", "type: date/range").replace(
            "tags: {band: {field: t.band}}", "tags: {band: {type: date}}"
        ),
        12,
        "cards[0].filters.band",
        "cannot feed a date variable",
    ),
    (
        "field_and_type",
        GOOD.replace("{field: t.band}", "{field: t.band, type: text}"),
        11,
        "cards[0].tags.band",
        "not both",
    ),
    (
        "widget_mismatch",
        GOOD.replace("{field: t.band}", "{field: t.band, widget: number/=}"),
        11,
        "cards[0].tags.band.widget",
        "does not match filter",
    ),
    (
        "wider_than_grid",
        GOOD + "    at: {row: 0, col: 20, width: 8}\n",
        14,
        "cards[0].at.width",
        "24-column grid",
    ),
    ("col_out_of_grid", GOOD + "    at: {row: 0, col: 30}\n", 14, "cards[0].at.col", "less than 24"),
    ("zero_width", GOOD + "    at: {width: 0}\n", 14, "cards[0].at.width", "greater than or equal to 1"),
    (
        "negative_row",
        GOOD + "    at: {row: -1, col: 0}\n",
        14,
        "cards[0].at.row",
        "greater than or equal to 0",
    ),
    (
        "overlap",
        GOOD + "    at: {row: 0, col: 0, width: 12, height: 4}\n"
        "  - text: hello\n    at: {row: 2, col: 6, width: 12, height: 2}\n",
        16,
        "cards[1].at",
        "overlaps card `c1`",
    ),
    (
        "unknown_tab",
        GOOD.replace("cards:\n", "tabs: [One]\ncards:\n") + "    at: {tab: Two}\n",
        15,
        "cards[0].at.tab",
        "tab `Two` is not in `tabs:`",
    ),
    ("tab_without_tabs", GOOD + "    at: {tab: Two}\n", 14, "cards[0].at.tab", "no `tabs:`"),
    (
        "duplicate_filter_key",
        GOOD.replace(
            "  - {key: band, name: Band, type: category}\n",
            "  - {key: band, name: Band, type: category}\n  - {key: band, name: Band 2, type: category}\n",
        ),
        6,
        "filters[1].key",
        "duplicate filter key",
    ),
    (
        "duplicate_card_key",
        GOOD + GOOD[GOOD.index("  - key: c1") :].replace("name: C1", "name: Copy"),
        14,
        "cards[1].key",
        "duplicate card key",
    ),
    (
        "duplicate_tab",
        GOOD.replace("cards:\n", "tabs: [One, One]\ncards:\n"),
        6,
        "tabs[1]",
        "duplicate tab name",
    ),
    (
        "env_var_unset",
        GOOD.replace("collection: Demo/Sub", "collection: ${NOT_SET_ANYWHERE}/Sub"),
        3,
        "collection",
        "`NOT_SET_ANYWHERE` is not set",
    ),
    (
        "empty_collection_part",
        GOOD.replace("collection: Demo/Sub", "collection: Demo//Sub"),
        3,
        "collection",
        "empty part",
    ),
    ("no_cards", GOOD[: GOOD.index("cards:")] + "cards: []\n", 6, "cards", "at least 1"),
    (
        "text_card_extra_key",
        GOOD + "  - text: hi\n    colour: red\n",
        15,
        "cards[1].colour",
        "allowed here: text, at",
    ),
    (
        "filters_not_a_list",
        GOOD.replace("filters:\n  - {key: band, name: Band, type: category}\n", "filters: band\n"),
        4,
        "filters",
        "valid list",
    ),
    # `text` is both a card kind and a key: the path must keep it where it is a real key
    ("blank_text_card", GOOD + '  - text: ""\n', 14, "cards[1].text", "at least 1 character"),
    (
        "tag_named_text_bad_widget",
        GOOD.replace("{{band}}", "{{text}}")
        .replace("tags: {band: {field: t.band}}", "tags: {text: {field: t.band, widget: bogus}}")
        .replace("filters: {band: band}", "filters: {text: band}"),
        11,
        "cards[0].tags.text.widget",
        "`bogus` is not allowed",
    ),
    ("unknown_yaml_tag", GOOD.replace("name: C1", "name: !secret C1"), 8, "cards[0].name", "!secret"),
    ("bad_explicit_int", GOOD.replace("name: Demo", "name: !!int Demo"), 2, "name", "cannot read"),
    (
        "self_referring_alias",
        GOOD.replace("cards:\n", "cards: &loop\n") + "  - *loop\n",
        6,  # YAML keeps no mark of the alias itself: the line of its anchor, the path of its use
        "cards[1]",
        "refers to the mapping or list holding it",
    ),
    ("yaml_syntax", GOOD.replace("name: C1", "name: [C1"), 9, "(file)", "not valid YAML"),
    ("not_a_mapping", "- just\n- a list\n", 1, "(file)", "must be a mapping"),
]


@pytest.mark.parametrize(
    ("text", "line", "field", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_names_file_line_and_field(
    tmp_path: Path, text: str, line: int, field: str, words: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(SpecErrors) as caught:
        load_file(path, environ={})
    matching = [e for e in caught.value.errors if e.field == field and words in e.problem]
    report = "\n".join(e.message for e in caught.value.errors)
    assert matching, f"no error on {field} with {words!r} in:\n{report}"
    error = matching[0]
    assert error.path == path
    assert error.line == line, report
    assert error.message.startswith(f"{path}:{line}:")


def test_there_are_at_least_thirty_cases() -> None:
    assert len(CASES) >= 30


def test_every_error_of_every_file_is_reported_in_one_run(tmp_path: Path) -> None:
    first = _write(tmp_path, GOOD.replace("display: bar", "display: nope") + "colour: red\n", "a.yaml")
    second = _write(
        tmp_path,
        GOOD.replace("key: demo", "key: other").replace("filters: {band: band}", "filters: {x: band}"),
        "b.yaml",
    )
    with pytest.raises(SpecErrors) as caught:
        load_paths([tmp_path], environ={})
    where = {(e.path.name, e.field) for e in caught.value.errors}
    assert {("a.yaml", "cards[0].display"), ("a.yaml", "colour"), ("b.yaml", "cards[0].filters.x")} <= where
    assert first.exists() and second.exists()


def test_two_files_with_the_same_key_are_rejected(tmp_path: Path) -> None:
    _write(tmp_path, GOOD, "a.yaml")
    _write(tmp_path, GOOD.replace("name: Demo", "name: Copy"), "b.yaml")
    with pytest.raises(SpecErrors) as caught:
        load_paths([tmp_path], environ={})
    [error] = caught.value.errors
    assert (error.path.name, error.line, error.field) == ("b.yaml", 1, "key")
    assert "also used by" in error.problem


def test_environment_variables_fill_values_with_defaults(tmp_path: Path) -> None:
    text = GOOD.replace("collection: Demo/Sub", "collection: ${DEMO_COLLECTION:-Fallback}/${TEAM}")
    loaded = load_file(_write(tmp_path, text), environ={"TEAM": "Risk"})
    assert loaded.spec.collection_path == ("Fallback", "Risk")
    loaded = load_file(_write(tmp_path, text), environ={"TEAM": "Risk", "DEMO_COLLECTION": "Prod"})
    assert loaded.spec.collection_path == ("Prod", "Risk")


def test_sql_file_is_read_relative_to_the_yaml(tmp_path: Path) -> None:
    (tmp_path / "queries").mkdir()
    (tmp_path / "queries" / "q.sql").write_text("SELECT band, 1 AS n FROM t WHERE true [[AND {{band}}]]\n")
    text = GOOD.replace(
        "sql: SELECT band, 1 AS n FROM t WHERE true [[AND {{band}}]]", "sql_file: queries/q.sql"
    )
    loaded = load_file(_write(tmp_path, text), environ={})
    assert loaded.sql["c1"].startswith("SELECT band")


def test_cli_validate_reports_errors_on_stderr_with_exit_3(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD + "colour: red\n")
    result = CliRunner().invoke(app, ["dashboards", "validate", str(path)])
    assert result.exit_code == 3
    assert f"{path}:14:1: colour: unknown key `colour`" in result.stderr
    assert result.stdout == ""


def test_cli_validate_json_lists_each_error_with_line_and_field(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD.replace("display: bar", "display: nope"))
    result = CliRunner().invoke(app, ["dashboards", "validate", str(path), "--json"])
    assert result.exit_code == 3
    payload = json.loads(result.stdout)
    [error] = payload["errors"]
    assert (error["line"], error["column"], error["field"]) == (9, 14, "cards[0].display")


def test_cli_validate_accepts_the_shipped_dashboards() -> None:
    shipped = Path(__file__).resolve().parent.parent / "dashboards"
    result = CliRunner().invoke(app, ["dashboards", "validate", str(shipped), "--json"])
    assert result.exit_code == 0, result.stderr
    assert len(json.loads(result.stdout)["dashboards"]) == 6  # five dashboards and the models file


def test_an_unreadable_value_is_reported_once(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD.replace("name: Demo", "name: !vault Demo"))
    with pytest.raises(SpecErrors) as caught:
        load_file(path, environ={})
    assert [(e.line, e.field) for e in caught.value.errors] == [(2, "name")]
    assert "!vault" in caught.value.errors[0].problem and caught.value.errors[0].hint


def test_files_that_are_not_utf8_are_errors_naming_the_file(tmp_path: Path) -> None:
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(GOOD.replace("name: Demo", "name: Démo").encode("latin-1"))
    with pytest.raises(SpecErrors) as caught:
        load_file(latin1, environ={})
    [error] = caught.value.errors
    assert (error.path, error.field) == (latin1, "(file)") and "not UTF-8" in error.problem

    (tmp_path / "q.sql").write_bytes("SELECT 'é' AS band".encode("latin-1"))
    path = _write(
        tmp_path,
        GOOD.replace("sql: SELECT band, 1 AS n FROM t WHERE true [[AND {{band}}]]", "sql_file: q.sql"),
    )
    with pytest.raises(SpecErrors) as caught:
        load_file(path, environ={})
    assert [(e.line, e.field) for e in caught.value.errors if "not UTF-8" in e.problem] == [
        (10, "cards[0].sql_file")
    ]


# Query-builder questions checked against the real database (`validate --database-url`): a valid file, and
# edits of it that only the database's catalog, or PostgreSQL preparing the compiled SQL, can reject.
QUERY_GOOD = """\
key: qb
name: QB
collection: Demo/QB
filters:
  - {key: region, name: Region, type: category}
cards:
  - key: by_region
    name: By region
    display: bar
    query:
      source: v_portfolio_overview
      joins:
        - {source: customers, alias: C, on: customer_id = C.id, columns: [segment]}
      filter: days_past_due > 0
      summarize: [count, sum(exposure)]
      group_by: [region, {column: as_of, unit: month}]
    filters: {region: region}
    viz: {x: region, y: [count, sum]}
"""

DATABASE_CASES: list[tuple[str, str, int, str, str]] = [
    (
        "unknown_source_table",
        QUERY_GOOD.replace("source: v_portfolio_overview", "source: v_portfolio"),
        11,
        "cards[0].query.source",
        "no table or view `v_portfolio` in the database",
    ),
    (
        "unknown_column_in_filter",
        QUERY_GOOD.replace("filter: days_past_due > 0", "filter: days_overdue > 0"),
        14,
        "cards[0].query.filter",
        "`v_portfolio_overview` has no column `days_overdue`",
    ),
    (
        "unknown_joined_column",
        QUERY_GOOD.replace("columns: [segment]", "columns: [segmant]"),
        13,
        "cards[0].query.joins[0].columns[0]",
        "join `C` has no column `segmant`",
    ),
    (
        "sum_of_text",
        QUERY_GOOD.replace("sum(exposure)", "sum(region)"),
        15,
        "cards[0].query.summarize[1]",
        "`sum` needs a number; the column is type/Text",
    ),
    (
        "month_of_a_number",
        QUERY_GOOD.replace("{column: as_of, unit: month}", "{column: days_past_due, unit: month}"),
        16,
        "cards[0].query.group_by[1].unit",
        "`days_past_due` is not a date or time (type/Integer); it has no `unit`",
    ),
    (
        "bins_of_text",
        QUERY_GOOD.replace("{column: as_of, unit: month}", "{column: region, bins: 10}"),
        16,
        "cards[0].query.group_by[1]",
        "`region` is not a number (type/Text); it cannot be binned",
    ),
    (
        "arrow_through_a_column_that_is_no_foreign_key",
        QUERY_GOOD.replace("filter: days_past_due > 0", "filter: customer_id -> name = 'Acme'"),
        14,
        "cards[0].query.filter",
        "`v_portfolio_overview.customer_id` is not a foreign key",
    ),
    (
        "date_filter_on_text",
        QUERY_GOOD.replace("filter: days_past_due > 0", "filter: 'time_interval(region, -30, \"day\")'"),
        14,
        "cards[0].query.filter",
        "`time_interval` works on dates; the column is text",
    ),
    (
        "text_compared_to_a_number",
        QUERY_GOOD.replace("filter: days_past_due > 0", "filter: [days_past_due > 0, region > 3]"),
        14,
        "cards[0].query.filter[1]",
        "compares a text column with the number 3",
    ),
    (
        "viz_column_not_returned",
        QUERY_GOOD.replace("y: [count, sum]", "y: [count, total]"),
        18,
        "cards[0].viz.y",
        "column `total` is not returned by the query (it returns: region, as_of, count, sum)",
    ),
    (
        "date_filter_wired_to_a_text_column",
        QUERY_GOOD.replace("type: category}", "type: date/all-options}"),
        17,
        "cards[0].filters.region",
        "filter `region` of type `date/all-options` cannot filter `region` (type/Text)",
    ),
    (
        "mbql_block_with_an_unknown_column",
        QUERY_GOOD[: QUERY_GOOD.index("    query:")]
        + "    mbql: {stages: [{source-table: v_portfolio_overview, aggregation: [[count]],"
        " breakout: [[field, v_portfolio_overview.regoin]]}]}\n"
        + QUERY_GOOD[QUERY_GOOD.index("    filters: {region") :],
        10,
        "cards[0].mbql",
        "no column `v_portfolio_overview.regoin` in the database",
    ),
]


def test_the_good_query_file_is_valid_on_the_database(tmp_path: Path, seeded_database: Any) -> None:
    path = _write(tmp_path, QUERY_GOOD)
    result = validate([path], database_url=seeded_database.reader_dsn, environ={})
    assert result.sql_checked


@pytest.mark.parametrize(
    ("text", "line", "field", "words"), [c[1:] for c in DATABASE_CASES], ids=[c[0] for c in DATABASE_CASES]
)
def test_bad_query_names_file_line_and_field_on_the_database(
    tmp_path: Path, seeded_database: Any, text: str, line: int, field: str, words: str
) -> None:
    path = _write(tmp_path, text)
    load_file(path, environ={})  # valid without the database: only its catalog or PostgreSQL can tell
    with pytest.raises(SpecErrors) as caught:
        validate([path], database_url=seeded_database.reader_dsn, environ={})
    matching = [e for e in caught.value.errors if e.field == field and words in e.problem]
    report = "\n".join(e.message for e in caught.value.errors)
    assert matching, f"no error on {field} with {words!r} in:\n{report}"
    error = matching[0]
    assert error.path == path
    assert error.line == line, report
    assert error.message.startswith(f"{path}:{line}:")


def test_there_are_at_least_eight_database_cases() -> None:
    assert len(DATABASE_CASES) >= 8
