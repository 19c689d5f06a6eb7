"""The fake's query-builder side: a legacy MBQL 4 query compiled to one PostgreSQL SELECT, plus the result
columns Metabase's query processor annotates (`data.cols`; also what a card saved from a run stores as
`result_metadata`).

Checked in Metabase's source (metabase/metabase via the search index, the newest versions it holds, v0.57+):

* `src/metabase/driver/sql/query_processor.clj`: `COUNT(*)`, `COUNT(DISTINCT x)`, `STDDEV_POP`, `VAR_POP`,
  `PERCENTILE_CONT(p) WITHIN GROUP`; `sum-where` is `SUM(CASE WHEN p THEN x ELSE 0.0 END)`, `count-where` the
  same over 1, `share` is `count-where / COUNT(*)`; cumulative aggregations are `SUM(<agg>) OVER (PARTITION BY
  <breakouts but the finest temporal one, or but the last> ORDER BY <the stage's sorts> ROWS UNBOUNDED
  PRECEDING)`, a plain aggregate without breakouts; division casts to float and guards each denominator with
  `NULLIF(x, 0.0)`; `!=` and negated string filters also keep NULLs; `LIKE` patterns escape `\\ % _` with
  `ESCAPE '\\'` (v0.59+), case-insensitive ones lowercase both sides; binning is
  `FLOOR((x - min) / width) * width + min`; SELECT lists breakouts, aggregations, then fields; a nested stage
  or card is aliased `source`; joins keep their order and alias.
* `driver/postgres.clj`: `date_trunc` for minute..year (cast back to `date` on date columns), `day`
  as `CAST(x AS date)` cast back to the column's type, extractions as `CAST(extract(u from x) AS integer)`,
  `day-of-week` as `extract(dow) + 1` (Sunday = 1, Metabase's default start of week), `week` as the truncation
  of `x + 1 day` minus a day (Postgres weeks start on Monday), `week-of-year` as the generic
  `CEIL(day-of-year(week(x)) / 7.0)`, `median` as percentile 0.5, `datetime-diff` per unit (`age()` for
  months and years, epoch seconds below a day), quarters in intervals as three months.
* `src/metabase/lib/aggregation.cljc`: names `count`, `cum_count`, `sum` (also cumulative), `avg`, `count`
  (distinct), `min`, `max`, `median`, `stddev`, `var`, `percentile`, `share`, `count-where`,
  `sum_where_<column>`; display names "Count", "Sum of X", "Average of X", "Distinct values of X",
  "Cumulative count", "Cumulative sum of X", "Standard deviation of X", "Variance of X", "Median of X",
  "<p>th percentile of X", "Share of rows matching condition", "Count of rows matching condition", "Sum of X
  matching condition"; count aggregations are `type/Quantity`. `lib/expression.cljc`: arithmetic is named
  `expression` and shown infix with `+ - × ÷`, bracketed when nested.
* `lib/metadata/result_metadata.cljc`, `query_processor/middleware/annotate.clj`: the driver's base
  type wins and is the effective type too (so types here are PostgreSQL's for the generated SQL, mapped with
  `sql.base_type_for`: `count` int8 -> `type/BigInteger`, `sum` of int4 int8, `avg` numeric ->
  `type/Decimal`, `cum_count` numeric); names are deduplicated `_2`, `_3`; `source` is `breakout`,
  `aggregation` or `fields` (expressions included); `field_ref` uses the field id when there is one; joined
  columns keep their field's name and show "Alias → Display", their SQL alias is `Alias__name`.
  `lib/card.cljc` `model-preserved-keys`: a model's description, display_name, semantic_type,
  fk_target_field_id, settings and visibility_type override the computed columns by name (not aggregations).
* `src/metabase/lib/stage.cljc`: a stage returns breakouts then aggregations, else its fields (by default the
  source's columns, then the expressions, then each join's `fields`; a join without `fields` adds none).
* `lib/temporal_bucket.cljc` ("Created At: Month", "Day of week"), `lib/filter/desugar.cljc` (`time-interval`,
  `relative-time-interval`, `during`, `is-empty`, multi-value `=`/`!=`/string filters, `in`, `inside`,
  `relative-datetime :current`).
* `query_processor/middleware/binning.clj`, `lib/binning/util.cljc`: bounds from the stage's filters on the
  column, else its fingerprint, else "Unable to bin Field without a min/max value (missing or incomplete
  fingerprint)"; default strategy 8 bins (`breakout-bins-num`), 10° for coordinates; `nicer-breakout` widths
  1, 1.25, 2, 2.5, 3, 5, 7.5, 10 × 10^n and bounds on multiples of the width.
* `cumulative_aggregations.clj` (Postgres has window functions: no post-processing), `auto_bucket_datetime*`
  (a temporal breakout without unit is bucketed by day), `add_implicit_clauses` (breakouts missing from
  `order-by` are sorted ascending after explicit sorts), `normalize_query.clj` ("Error normalizing query").
* Recorded cards 27/28 (v0.50.5, `tests/fixtures/metabase/recorded/card`): joined columns' names and display
  names; a question on a card sees id `field_ref`s without join alias, temporal columns with unit `default`;
  the keys a card stores in `result_metadata` (what `result_columns` returns; `compile_query` gives the fuller
  `data.cols` shape, with `source`, `table_id`, `database_type`, `lib/desired-column-alias`).

Not confirmed, chosen to be plausible: the wording of errors for unknown ids and clauses, the display name of
a default-binned column once resolved ("Amount: 8 bins"), and the `field_ref` of a binned column.

A field without a fingerprint cannot be binned, as in Metabase; `FieldInfo.fingerprint` (optional, in
Metabase's shape `{"type": {"type/Number": {"min": .., "max": ..}}}`) supplies the real bounds.
"""

from __future__ import annotations

import decimal
import json
import math
import re
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from tests.fake_metabase import sql as warehouse


class MbqlError(Exception):
    """A query Metabase would refuse or fail: `str(e)` is the message; `error_type` as in a failed 202
    body ("invalid-query", "missing-required-parameter", ...)."""

    def __init__(self, message: str, error_type: str = "invalid-query") -> None:
        super().__init__(message)
        self.error_type = error_type


@dataclass(frozen=True)
class FieldInfo:
    """One synced column; the optional `fingerprint` (Metabase's shape) is needed only for binning."""

    id: int
    table_id: int
    name: str
    base_type: str
    effective_type: str
    semantic_type: str | None
    display_name: str
    database_type: str
    fk_target_field_id: int | None
    fingerprint: dict | None = None


@dataclass(frozen=True)
class TableInfo:
    id: int
    db_id: int
    schema: str
    name: str
    display_name: str


@dataclass(frozen=True)
class CardInfo:
    """A saved question, model or metric used as a source (`source-table` "card__N")."""

    id: int
    database_id: int
    type: str
    query: dict
    result_metadata: list[dict] | None


class Catalog(Protocol):
    def table(self, table_id: int) -> TableInfo | None: ...

    def fields_of(self, table_id: int) -> list[FieldInfo]: ...

    def field(self, field_id: int) -> FieldInfo | None: ...

    def card(self, card_id: int) -> CardInfo | None: ...


@dataclass(frozen=True)
class Compiled:
    sql: str
    columns: list[dict]


def compile_query(query: dict, catalog: Catalog, parameters: list[dict] | None = None) -> Compiled:
    """Return the SQL and result columns of a legacy MBQL `dataset_query`; raises MbqlError like Metabase."""
    compiler = _Compiler(catalog, _database_id(query))
    inner = _inner_query(query)
    result = compiler.compile_inner(inner, parameters or [])
    return Compiled(sql=result.sql, columns=[dict(col.meta) for col in result.columns])


# The keys of a card's stored `result_metadata` columns, in the recorded order (fixture card/28.json).
_STORED_KEYS = (
    "description",
    "semantic_type",
    "coercion_strategy",
    "unit",
    "name",
    "settings",
    "fk_target_field_id",
    "field_ref",
    "effective_type",
    "id",
    "visibility_type",
    "display_name",
    "fingerprint",
    "base_type",
    "binning_info",
)


def result_columns(query: dict, catalog: Catalog) -> list[dict]:
    """Return the result columns as a saved card stores them (`result_metadata`); raises MbqlError."""
    stored = []
    for column in compile_query(query, catalog).columns:
        entry = {key: column[key] for key in _STORED_KEYS if key in column}
        entry.setdefault("fingerprint", None)
        stored.append(entry)
    return stored


# ----------------------------------------------------------------- types

_INTEGER_TYPES = ("int2", "int4", "int8")
_FLOAT_TYPES = ("float4", "float8")
_NUMBER_BASE_TYPES = frozenset(
    {"type/Integer", "type/BigInteger", "type/Float", "type/Decimal", "type/Number"}
)
_TEMPORAL_BASE_TYPES = frozenset(
    {
        "type/Date",
        "type/DateTime",
        "type/DateTimeWithLocalTZ",
        "type/DateTimeWithTZ",
        "type/DateTimeWithZoneOffset",
        "type/DateTimeWithZoneID",
        "type/Instant",
    }
)
_TEXT_BASE_TYPES = frozenset({"type/Text"})
_COORDINATE_TYPES = frozenset({"type/Latitude", "type/Longitude", "type/Coordinate"})
_TRUNCATION_UNITS = ("millisecond", "second", "minute", "hour", "day", "week", "month", "quarter", "year")
_EXTRACTION_UNITS = {
    "minute-of-hour": "minute",
    "hour-of-day": "hour",
    "day-of-month": "day",
    "day-of-year": "doy",
    "month-of-year": "month",
    "quarter-of-year": "quarter",
    "year-of-era": "year",
    "week-of-year-iso": "week",
    "second-of-minute": "second",
}
_TEMPORAL_UNITS = frozenset(
    {"default", *_TRUNCATION_UNITS, *_EXTRACTION_UNITS, "day-of-week", "week-of-year"}
)
_UNIT_DISPLAY = {
    "default": "Default period",
    "millisecond": "Millisecond",
    "second": "Second",
    "minute": "Minute",
    "hour": "Hour",
    "day": "Day",
    "week": "Week",
    "month": "Month",
    "quarter": "Quarter",
    "year": "Year",
    "minute-of-hour": "Minute of hour",
    "hour-of-day": "Hour of day",
    "day-of-week": "Day of week",
    "day-of-month": "Day of month",
    "day-of-year": "Day of year",
    "week-of-year": "Week of year",
    "month-of-year": "Month of year",
    "quarter-of-year": "Quarter of year",
}
# Metabase's settings `breakout-bins-num` and `breakout-bin-width` (their defaults).
_DEFAULT_BINS = 8
_DEFAULT_COORDINATE_BIN_WIDTH = 10.0
_PLEASING_NUMBERS = (1, 1.25, 2, 2.5, 3, 5, 7.5, 10)


def _promote(*pg_types: str) -> str:
    """Return the type PostgreSQL gives arithmetic over numbers of these types."""
    known = [t for t in pg_types if t not in ("unknown", "text")]
    if not known:
        return pg_types[0] if pg_types else "unknown"
    if any(t in _FLOAT_TYPES for t in known):
        return "float8"
    if "numeric" in known:
        return "numeric"
    if all(t in _INTEGER_TYPES for t in known):
        return max(known, key=_INTEGER_TYPES.index)
    return known[0]


def _base_type(pg_type: str) -> str:
    if pg_type == "unknown":
        return "type/*"
    return warehouse.base_type_for(pg_type)


@dataclass(frozen=True)
class _Sql:
    """A compiled expression, its PostgreSQL type, and whether it is a literal."""

    text: str
    pg_type: str
    literal: bool = False
    value: Any = None


@dataclass(frozen=True)
class _Col:
    """A column a stage can use (`sql`) or returns (`alias` in SQL, `meta` in the results)."""

    sql: _Sql
    alias: str
    meta: dict
    field_id: int | None = None
    join_alias: str | None = None
    origin_join: str | None = None
    source_field: int | None = None
    expression: str | None = None
    fingerprint: dict | None = None
    unit: str | None = None
    binning: dict | None = None
    names: tuple[str, ...] = ()

    @property
    def base_type(self) -> str:
        return str(self.meta.get("base_type") or "type/*")


@dataclass
class _Result:
    sql: str
    columns: list[_Col]


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _number_text(value: float | int) -> str:
    if isinstance(value, bool):
        raise MbqlError(f"Error normalizing query: invalid number {value!r}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise MbqlError(f"Error normalizing query: invalid number {value!r}")
        return repr(value)
    return str(value)


def _clojure_number(value: Any) -> str:
    """Return a number as Clojure's `str` prints it (display names)."""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _literal(value: Any) -> _Sql:
    if value is None:
        return _Sql("NULL", "unknown", literal=True, value=None)
    if isinstance(value, bool):
        return _Sql("TRUE" if value else "FALSE", "bool", literal=True, value=value)
    if isinstance(value, int):
        return _Sql(str(value), "int4" if -(2**31) <= value < 2**31 else "int8", literal=True, value=value)
    if isinstance(value, float):
        return _Sql(_number_text(value), "numeric", literal=True, value=value)
    if isinstance(value, str):
        return _Sql(warehouse.quote_literal(value), "text", literal=True, value=value)
    raise MbqlError(f"Error normalizing query: invalid value {json.dumps(value)}")


def _fail_clause(clause: Any, problem: str) -> MbqlError:
    return MbqlError(f"Error normalizing query: Invalid {json.dumps(clause)}: {problem}")


def _check_arity(clause: list, low: int, high: int | None = -1) -> None:
    """Raise unless `clause` has `low` to `high` arguments (`high` -1: exactly `low`; None: unbounded)."""
    high = low if high == -1 else high
    count = len(clause) - 1
    if count < low or (high is not None and count > high):
        expected = str(low) if high == low else f"{low} to {high}" if high is not None else f"at least {low}"
        raise _fail_clause(clause, f":{clause[0]} takes {expected} arguments, got {count}")


def _clause_tag(clause: Any) -> str | None:
    if isinstance(clause, list) and clause and isinstance(clause[0], str):
        return clause[0].lower().replace("_", "-")
    return None


def _options(clause: list, index: int) -> dict:
    value = clause[index] if len(clause) > index else None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail_clause(clause, "options must be a map")
    return value


class _Unique:
    """Metabase's unique-name generator: repeats get `_2`, `_3` (compared case-insensitively)."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def __call__(self, name: str) -> str:
        candidate, n = name, 1
        while candidate.lower() in self.seen:
            n += 1
            candidate = f"{name}_{n}"
        self.seen.add(candidate.lower())
        return candidate


def _database_id(query: Any) -> int:
    if not isinstance(query, dict):
        raise MbqlError("Error normalizing query: dataset_query must be a map")
    database_id = query.get("database")
    if not isinstance(database_id, int) or isinstance(database_id, bool):
        raise MbqlError("Error normalizing query: database must be a positive integer")
    return database_id


def _inner_query(query: dict) -> dict:
    if query.get("type") != "query":
        raise MbqlError(
            "Error normalizing query: only query-builder (type query) queries compile to MBQL SQL"
        )
    inner = query.get("query")
    if not isinstance(inner, dict):
        raise MbqlError("Error normalizing query: query must be a map")
    return inner


def _strip_id(display_name: str) -> str:
    return re.sub(r"(?i)\s+id$", "", display_name).strip()


# ----------------------------------------------------------------- the compiler


_STAGE_KEYS = frozenset(
    {
        "source-table",
        "source-query",
        "fields",
        "joins",
        "filter",
        "expressions",
        "aggregation",
        "breakout",
        "order-by",
        "limit",
        "page",
        "source-metadata",
    }
)
_JOIN_KEYS = frozenset(
    {"source-table", "source-query", "alias", "condition", "strategy", "fields", "source-metadata"}
)
_JOIN_STRATEGIES = {
    "left-join": "LEFT JOIN",
    "right-join": "RIGHT JOIN",
    "inner-join": "INNER JOIN",
    "full-join": "FULL JOIN",
}


@dataclass
class _Scope:
    """The columns a stage's clauses can refer to."""

    source: list[_Col]
    table: TableInfo | None
    expressions: dict[str, _Col] = field(default_factory=dict)
    joins: dict[str, list[_Col]] = field(default_factory=dict)
    joined_fields: dict[str, list[_Col]] = field(default_factory=dict)
    implicit_joins: dict[int, str] = field(default_factory=dict)
    join_sql: list[str] = field(default_factory=list)


@dataclass
class _Breakout:
    col: _Col
    temporal: bool


@dataclass
class _Aggregation:
    sql: _Sql
    name: str
    display_name: str
    semantic_type: str | None
    cumulative: bool


_WINDOW = "\x00OVER\x00"


class _Compiler:
    def __init__(self, catalog: Catalog, database_id: int, card_stack: tuple[int, ...] = ()) -> None:
        self.catalog = catalog
        self.database_id = database_id
        self.card_stack = card_stack

    # ------------------------------------------------------------- stages and sources

    def compile_inner(self, inner: dict, parameters: list[dict]) -> _Result:
        stages = [inner]
        while isinstance(stages[0].get("source-query"), dict):
            stages.insert(0, stages[0]["source-query"])
        by_stage: dict[int, list[dict]] = {}
        for parameter in parameters:
            target = self._parameter_target(parameter, len(stages))
            if target is not None:
                by_stage.setdefault(target[0], []).append(parameter)
        return self._stage(inner, len(stages) - 1, by_stage)

    def _parameter_target(self, parameter: Any, stage_count: int) -> tuple[int, list] | None:
        if not isinstance(parameter, dict) or not warehouse._has_value(parameter.get("value")):
            return None
        target = parameter.get("target")
        if not isinstance(target, list) or len(target) < 2 or target[0] != "dimension":
            return None
        ref = _legacy_ref(target[1])
        if _clause_tag(ref) not in ("field", "expression"):
            return None
        if parameter.get("type") == "temporal-unit":
            raise MbqlError("The fake Metabase does not support temporal-unit parameters")
        options = target[2] if len(target) > 2 and isinstance(target[2], dict) else {}
        stage_number = options.get("stage-number", -1)
        if not isinstance(stage_number, int) or isinstance(stage_number, bool):
            raise MbqlError(f"Invalid parameter target {json.dumps(target)}: stage-number must be an integer")
        index = stage_number + stage_count if stage_number < 0 else stage_number
        if not 0 <= index < stage_count:
            raise MbqlError(
                f"Invalid parameter target {json.dumps(target)}: the query has no stage {stage_number}"
            )
        return index, ref

    def _stage(self, inner: dict, index: int, params: dict[int, list[dict]]) -> _Result:
        unknown = sorted(k for k in inner if k not in _STAGE_KEYS)
        if unknown:
            raise MbqlError(f"Error normalizing query: unknown key :{unknown[0]} in a query stage")
        from_sql, scope = self._source(inner, index, params)
        for join in _sequence(inner, "joins"):
            self._join(join, scope)
        expressions = inner.get("expressions") or {}
        if not isinstance(expressions, dict):
            raise MbqlError("Error normalizing query: expressions must be a map of name to expression")
        for name, definition in expressions.items():
            scope.expressions[name] = self._expression_col(name, definition, scope)
        where = []
        if inner.get("filter") is not None:
            where.append(self._filter(inner["filter"], scope))
        for parameter in params.get(index, []):
            where.append(self._parameter_filter(parameter, scope))
        breakouts = [self._breakout(ref, scope, inner) for ref in _sequence(inner, "breakout")]
        aggregation_clauses = _sequence(inner, "aggregation")
        if breakouts or aggregation_clauses:
            select, group_by, order_by, columns = self._summary(inner, scope, breakouts, aggregation_clauses)
        else:
            group_by = []
            columns = _unique_aliases(self._field_columns(inner, scope))
            select = [f"{col.sql.text} AS {_quote(col.alias)}" for col in columns]
            order_by = [self._plain_order(entry, scope) for entry in _sequence(inner, "order-by")]
        parts = ["SELECT " + ", ".join(select), "FROM " + from_sql, *scope.join_sql]
        if where:
            parts.append("WHERE " + " AND ".join(f"({w})" for w in where))
        if group_by:
            parts.append("GROUP BY " + ", ".join(group_by))
        if order_by:
            parts.append("ORDER BY " + ", ".join(order_by))
        parts.extend(_limit(inner))
        return _Result(sql=" ".join(parts), columns=_finish_columns(columns))

    def _source(self, inner: dict, index: int, params: dict[int, list[dict]]) -> tuple[str, _Scope]:
        has_query = "source-query" in inner
        has_table = "source-table" in inner
        if has_query == has_table:
            raise MbqlError(
                "Error normalizing query: a stage needs exactly one of source-table or source-query"
            )
        if has_query:
            if not isinstance(inner["source-query"], dict):
                raise MbqlError("Error normalizing query: source-query must be a map")
            previous = self._stage(inner["source-query"], index - 1, params)
            columns = [_from_previous(col, "source", card=None) for col in previous.columns]
            return f"({previous.sql}) {_quote('source')}", _Scope(columns, None)
        source = inner["source-table"]
        if isinstance(source, str) and source.startswith("card__") and source[6:].isdigit():
            sql_text, columns = self._card_source(int(source[6:]), "source")
            return f"({sql_text}) {_quote('source')}", _Scope(columns, None)
        table = self._table(source)
        qualifier = [table.schema, table.name]
        columns = [_field_col(f, qualifier) for f in self.catalog.fields_of(table.id)]
        return ".".join(_quote(part) for part in qualifier), _Scope(columns, table)

    def _table(self, table_id: Any) -> TableInfo:
        if not isinstance(table_id, int) or isinstance(table_id, bool):
            raise MbqlError(f"Error normalizing query: invalid source-table {json.dumps(table_id)}")
        table = self.catalog.table(table_id)
        if table is None or table.db_id != self.database_id:
            raise MbqlError(
                f"Failed to fetch :metadata/table {table_id}: either it does not exist, "
                "or it belongs to a different Database"
            )
        return table

    def _card_source(self, card_id: int, qualifier: str) -> tuple[str, list[_Col]]:
        card = self.catalog.card(card_id)
        if card is None or card.database_id != self.database_id:
            raise MbqlError(f"Card {card_id} does not exist, or belongs to a different Database.")
        if card_id in self.card_stack:
            raise MbqlError(f"Circular reference: card {card_id} uses itself as a source")
        if card.type == "metric":
            raise MbqlError("The fake Metabase does not use metrics as a query source")
        query = card.query
        if query.get("type") == "native":
            return self._native_card(card, qualifier)
        nested = _Compiler(self.catalog, self.database_id, (*self.card_stack, card_id))
        result = nested.compile_inner(_inner_query(query), [])
        columns = result.columns
        if card.type == "model":
            columns = _merge_model_metadata(columns, card.result_metadata or [])
        stored = {m.get("name"): m for m in card.result_metadata or [] if isinstance(m, dict)}
        return result.sql, [_from_previous(col, qualifier, card=card, stored=stored) for col in columns]

    def _native_card(self, card: CardInfo, qualifier: str) -> tuple[str, list[_Col]]:
        native = card.query.get("native") or {}
        if not card.result_metadata:
            raise MbqlError(f"Card {card.id} has no result metadata: run it once before using it as a source")
        try:
            text = warehouse.substitute(
                str(native.get("query") or ""), native.get("template-tags") or {}, {}, {}
            )
        except warehouse.QueryFailed as exc:
            raise MbqlError(str(exc), "missing-required-parameter") from exc
        columns = []
        for meta in card.result_metadata:
            name = str(meta["name"])
            base_type = str(meta.get("base_type") or "type/*")
            out = {
                "name": name,
                "display_name": meta.get("display_name") or name,
                "base_type": base_type,
                "effective_type": meta.get("effective_type") or base_type,
                "semantic_type": meta.get("semantic_type"),
                "field_ref": ["field", name, {"base-type": base_type}],
                "source": "fields",
            }
            if card.type == "model":
                for key in ("description", "fk_target_field_id", "settings", "visibility_type", "id"):
                    if key in meta:
                        out[key] = meta[key]
            pg = _pg_type_for_base(base_type)
            columns.append(
                _Col(
                    sql=_Sql(f"{_quote(qualifier)}.{_quote(name)}", pg),
                    alias=name,
                    meta=out,
                    fingerprint=meta.get("fingerprint"),
                    names=(name,),
                )
            )
        return _nestable(text), columns

    # ------------------------------------------------------------- joins

    def _join(self, join: Any, scope: _Scope) -> None:
        if not isinstance(join, dict):
            raise MbqlError("Error normalizing query: a join must be a map")
        unknown = sorted(k for k in join if k not in _JOIN_KEYS)
        if unknown:
            raise MbqlError(f"Error normalizing query: unknown key :{unknown[0]} in a join")
        alias = join.get("alias")
        if not isinstance(alias, str) or not alias:
            raise MbqlError("Error normalizing query: a join needs an alias")
        if alias in scope.joins:
            raise MbqlError(f"Error normalizing query: duplicate join alias {alias!r}")
        strategy = join.get("strategy") or "left-join"
        if strategy not in _JOIN_STRATEGIES:
            raise MbqlError(f"Error normalizing query: invalid join strategy {json.dumps(strategy)}")
        if ("source-table" in join) == ("source-query" in join):
            raise MbqlError(
                "Error normalizing query: a join needs exactly one of source-table or source-query"
            )
        source = join.get("source-table")
        if "source-query" in join:
            inner = join["source-query"]
            if not isinstance(inner, dict):
                raise MbqlError("Error normalizing query: a join's source-query must be a map")
            result = self.compile_inner(inner, [])
            target = f"({result.sql}) {_quote(alias)}"
            columns = [_joined(_from_previous(c, alias, card=None), alias) for c in result.columns]
        elif isinstance(source, str) and source.startswith("card__") and source[6:].isdigit():
            sql_text, card_cols = self._card_source(int(source[6:]), alias)
            target = f"({sql_text}) {_quote(alias)}"
            columns = [_joined(c, alias) for c in card_cols]
        else:
            table = self._table(source)
            target = f"{_quote(table.schema)}.{_quote(table.name)} {_quote(alias)}"
            columns = [_joined(_field_col(f, [alias]), alias) for f in self.catalog.fields_of(table.id)]
        scope.joins[alias] = columns
        condition = join.get("condition")
        if condition is None:
            raise MbqlError(f"Error normalizing query: join {alias!r} needs a condition")
        condition_sql = self._filter(condition, scope)
        scope.join_sql.append(f"{_JOIN_STRATEGIES[strategy]} {target} ON {condition_sql}")
        fields = join.get("fields", "none")
        if fields == "all":
            selected = columns
        elif fields in ("none", None):
            selected = []
        elif isinstance(fields, list):
            selected = [self._select_ref(ref, scope) for ref in fields]
        else:
            raise MbqlError(f"Error normalizing query: invalid join fields {json.dumps(fields)}")
        scope.joined_fields[alias] = selected

    def _implicit_join(self, fk_id: Any, scope: _Scope) -> tuple[str, FieldInfo, TableInfo]:
        if not isinstance(fk_id, int):
            raise MbqlError(f"Error normalizing query: invalid source-field {json.dumps(fk_id)}")
        fk = next((c for c in scope.source if c.field_id == fk_id), None)
        fk_field = self.catalog.field(fk_id)
        if fk is None or fk_field is None or fk_field.fk_target_field_id is None:
            raise MbqlError(
                f"Cannot use field {fk_id} as an implicit join: it is not a foreign key of this stage"
            )
        target_field = self.catalog.field(fk_field.fk_target_field_id)
        if target_field is None:
            raise MbqlError(f"Failed to fetch :metadata/column {fk_field.fk_target_field_id}")
        target_table = self._table(target_field.table_id)
        alias = scope.implicit_joins.get(fk_id)
        if alias is None:
            alias = f"{target_table.name}__via__{fk_field.name}"
            scope.implicit_joins[fk_id] = alias
            scope.join_sql.append(
                f"LEFT JOIN {_quote(target_table.schema)}.{_quote(target_table.name)} {_quote(alias)} "
                f"ON {fk.sql.text} = {_quote(alias)}.{_quote(target_field.name)}"
            )
        return alias, fk_field, target_table

    # ------------------------------------------------------------- references

    def _resolve(self, ref: Any, scope: _Scope) -> _Col:
        """Return the column a `field` or `expression` ref names (without its bucketing or binning)."""
        tag = _clause_tag(ref)
        if tag == "expression":
            _check_arity(ref, 1, 2)
            name = ref[1]
            if name not in scope.expressions:
                raise MbqlError(f"No expression named {json.dumps(name)}")
            return scope.expressions[name]
        if tag != "field":
            raise _fail_clause(ref, "expected a field or expression reference")
        _check_arity(ref, 1, 2)
        id_or_name = ref[1]
        options = _options(ref, 2)
        if options.get("source-field") is not None:
            return self._resolve_implicit(ref, options["source-field"], scope)
        join_alias = options.get("join-alias")
        if join_alias in scope.joins:
            pool = scope.joins[join_alias]
        elif join_alias is not None:
            # a ref to a join of an earlier stage, as older saved questions have them
            pool = [c for c in scope.source if c.origin_join == join_alias]
            if not pool:
                raise MbqlError(
                    f"Error normalizing query: no join named {json.dumps(join_alias)} in this stage"
                )
        else:
            pool = scope.source
        if isinstance(id_or_name, int) and not isinstance(id_or_name, bool):
            found = next((c for c in pool if c.field_id == id_or_name), None)
            if found is None:
                raise self._missing_field(id_or_name, scope)
            return found
        if isinstance(id_or_name, str):
            found = next((c for c in pool if c.alias == id_or_name), None) or next(
                (c for c in pool if id_or_name in c.names), None
            )
            if found is None:
                raise MbqlError(f'ERROR: column "{id_or_name}" does not exist')
            return found
        raise _fail_clause(ref, "a field is named by an id or a name")

    def _missing_field(self, field_id: int, scope: _Scope) -> MbqlError:
        info = self.catalog.field(field_id)
        if info is None:
            return MbqlError(
                f"Failed to fetch :metadata/column {field_id}: either it does not exist, "
                "or it belongs to a different Database"
            )
        table = self.catalog.table(info.table_id)
        if scope.table is None:
            return MbqlError(f"ERROR: column source.{info.name} does not exist")
        return MbqlError(
            f'ERROR: missing FROM-clause entry for table "{table.name if table else info.table_id}"'
        )

    def _resolve_implicit(self, ref: list, fk_id: Any, scope: _Scope) -> _Col:
        alias, fk_field, target_table = self._implicit_join(fk_id, scope)
        target = next(
            (f for f in self.catalog.fields_of(target_table.id) if f.id == ref[1] or f.name == ref[1]), None
        )
        if target is None:
            raise (
                self._missing_field(ref[1], scope)
                if isinstance(ref[1], int)
                else MbqlError(f"ERROR: column {alias}.{ref[1]} does not exist")
            )
        col = _field_col(target, [alias])
        meta = dict(col.meta)
        meta["display_name"] = f"{_strip_id(fk_field.display_name)} → {target.display_name}"
        meta["field_ref"] = ["field", target.id, {"source-field": fk_field.id}]
        return replace(col, alias=f"{alias}__{target.name}", meta=meta, source_field=fk_field.id)

    def _ref_col(
        self, ref: Any, scope: _Scope, inner: dict | None = None, *, bucket_default: bool = False
    ) -> _Col:
        """Return a referenced column with the ref's temporal bucketing or binning applied."""
        col = self._resolve(ref, scope)
        options = _options(ref, 2)
        unit = options.get("temporal-unit")
        binning = options.get("binning")
        if unit is None and bucket_default and col.base_type in _TEMPORAL_BASE_TYPES and col.unit is None:
            unit = "day"
        if unit is not None and binning is not None:
            raise _fail_clause(ref, "a column cannot be both bucketed and binned")
        if unit is not None:
            return self._bucketed(col, unit, ref)
        if binning is not None:
            return self._binned(col, binning, ref, scope, inner or {})
        return col

    def _bucketed(self, col: _Col, unit: Any, ref: Any) -> _Col:
        if unit not in _TEMPORAL_UNITS:
            raise _fail_clause(ref, f"invalid temporal-unit {json.dumps(unit)}")
        if col.base_type not in _TEMPORAL_BASE_TYPES and col.sql.pg_type not in (
            "date",
            "timestamp",
            "timestamptz",
        ):
            raise _fail_clause(ref, f"cannot bucket a {col.base_type} column by {unit}")
        bucketed = _temporal(unit, col.sql)
        meta = dict(col.meta)
        meta["base_type"] = _base_type(bucketed.pg_type) if unit != "default" else col.base_type
        meta["effective_type"] = meta["base_type"]
        if unit != "default":
            meta["display_name"] = f"{col.meta['display_name']}: {_UNIT_DISPLAY.get(unit, unit)}"
        meta["unit"] = unit
        meta["field_ref"] = _with_ref_options(col.meta.get("field_ref"), {"temporal-unit": unit})
        if unit in _EXTRACTION_UNITS or unit in ("day-of-week", "week-of-year"):
            meta["semantic_type"] = None
        return replace(col, sql=bucketed, meta=meta, unit=unit)

    def _binned(self, col: _Col, binning: Any, ref: Any, scope: _Scope, inner: dict) -> _Col:
        if not isinstance(binning, dict) or binning.get("strategy") not in (
            "default",
            "num-bins",
            "bin-width",
        ):
            raise _fail_clause(ref, "binning needs a strategy: default, num-bins or bin-width")
        if col.base_type not in _NUMBER_BASE_TYPES:
            raise _fail_clause(ref, f"cannot bin a {col.base_type} column")
        low, high = _bin_bounds(col, ref, inner.get("filter"))
        resolved = _resolve_binning(binning, col, low, high)
        width, minimum = resolved["bin-width"], resolved["min-value"]
        text = col.sql.text
        pg = col.sql.pg_type
        if minimum != 0:
            text = f"({text} - {_number_text(minimum)})"
            pg = _promote(pg, _literal(minimum).pg_type)
        text = f"(FLOOR(({text} / {_number_text(width)})) * {_number_text(width)})"
        pg = _promote(pg, _literal(width).pg_type)
        pg = "float8" if pg in _INTEGER_TYPES else pg
        if minimum != 0:
            text = f"({text} + {_number_text(minimum)})"
        meta = dict(col.meta)
        meta["base_type"] = meta["effective_type"] = _base_type(pg)
        strategy = resolved["strategy"]
        meta["display_name"] = f"{col.meta['display_name']}: {_binning_display(resolved, col)}"
        info = {"strategy": strategy, "min-value": minimum, "max-value": resolved["max-value"]}
        info["num-bins"], info["bin-width"] = resolved["num-bins"], width
        meta["binning_info"] = {
            "binning_strategy": strategy,
            "strategy": strategy,
            "num_bins": resolved["num-bins"],
            "bin_width": width,
            "min_value": minimum,
            "max_value": resolved["max-value"],
        }
        meta["field_ref"] = _with_ref_options(col.meta.get("field_ref"), {"binning": info})
        return replace(col, sql=_Sql(text, pg), meta=meta, binning=info)

    def _select_ref(self, ref: Any, scope: _Scope) -> _Col:
        col = self._ref_col(ref, scope)
        meta = dict(col.meta)
        meta["source"] = "fields"
        return replace(col, meta=meta)

    # ------------------------------------------------------------- fields, breakouts, aggregations

    def _field_columns(self, inner: dict, scope: _Scope) -> list[_Col]:
        explicit = inner.get("fields")
        if explicit is not None:
            if not isinstance(explicit, list):
                raise MbqlError("Error normalizing query: fields must be a sequence")
            columns = [self._select_ref(ref, scope) for ref in explicit]
        else:
            columns = [*scope.source, *scope.expressions.values()]
        for alias, selected in scope.joined_fields.items():
            for col in selected:
                if not any(c.join_alias == alias and c.alias == col.alias for c in columns):
                    columns.append(col)
        return columns

    def _expression_col(self, name: Any, definition: Any, scope: _Scope) -> _Col:
        if not isinstance(name, str) or not name:
            raise MbqlError("Error normalizing query: expression names must be non-blank strings")
        compiled = self._expr(definition, scope)
        base_type = _base_type(compiled.pg_type)
        meta = {
            "name": name,
            "display_name": name,
            "base_type": base_type,
            "effective_type": base_type,
            "semantic_type": None,
            "field_ref": ["expression", name],
            "source": "fields",
        }
        return _Col(sql=compiled, alias=name, meta=meta, expression=name, names=(name,))

    def _breakout(self, ref: Any, scope: _Scope, inner: dict) -> _Breakout:
        if _clause_tag(ref) not in ("field", "expression"):
            raise _fail_clause(ref, "a breakout must be a field or expression reference")
        col = self._ref_col(ref, scope, inner, bucket_default=True)
        meta = dict(col.meta)
        meta["source"] = "breakout"
        col = replace(col, meta=meta)
        return _Breakout(col=col, temporal=col.unit in _TRUNCATION_UNITS)

    def _summary(
        self, inner: dict, scope: _Scope, breakouts: list[_Breakout], clauses: list
    ) -> tuple[list[str], list[str], list[str], list[_Col]]:
        aggregations = [self._aggregation(clause, scope, bool(breakouts)) for clause in clauses]
        aliases = _Unique()
        columns: list[_Col] = []
        for breakout in breakouts:
            columns.append(replace(breakout.col, alias=aliases(breakout.col.alias)))
        agg_aliases = []
        for i, agg in enumerate(aggregations):
            alias = aliases(agg.name)
            agg_aliases.append(alias)
            meta = {
                "name": agg.name,
                "display_name": agg.display_name,
                "base_type": _base_type(agg.sql.pg_type),
                "effective_type": _base_type(agg.sql.pg_type),
                "semantic_type": agg.semantic_type,
                "field_ref": ["aggregation", i],
                "source": "aggregation",
            }
            columns.append(_Col(sql=agg.sql, alias=alias, meta=meta))
        orders = self._summary_orders(inner, scope, breakouts, columns, aggregations, agg_aliases)
        window = _window_spec(breakouts, orders)
        select = []
        for col in columns:
            text = col.sql.text.replace(_WINDOW, window)
            select.append(f"{text} AS {_quote(col.alias)}")
        group_by = [b.col.sql.text for b in breakouts]
        order_by = [f"{alias_sql} {direction}" for alias_sql, _expr, direction in orders]
        return select, group_by, order_by, columns

    def _summary_orders(
        self,
        inner: dict,
        scope: _Scope,
        breakouts: list[_Breakout],
        columns: list[_Col],
        aggregations: list[_Aggregation],
        agg_aliases: list[str],
    ) -> list[tuple[str, str | None, str]]:
        """Return (ORDER BY term, window ORDER BY term or None, direction): explicit, then implicit sorts."""
        orders: list[tuple[str, str | None, str]] = []
        ordered: set[int] = set()
        for entry in _sequence(inner, "order-by"):
            direction, ref = _order_entry(entry)
            if _clause_tag(ref) == "aggregation":
                _check_arity(ref, 1, 2)
                index = ref[1]
                if not isinstance(index, int) or not 0 <= index < len(aggregations):
                    raise _fail_clause(ref, f"no aggregation at index {index}")
                agg = aggregations[index]
                window_term = None if agg.cumulative or _WINDOW in agg.sql.text else agg.sql.text
                orders.append((_quote(agg_aliases[index]), window_term, direction))
                continue
            position = _matching_breakout(ref, breakouts, self, scope)
            if position is None:
                compiled = self._ref_col(ref, scope).sql.text
                orders.append((compiled, compiled, direction))
                continue
            ordered.add(position)
            orders.append((_quote(columns[position].alias), breakouts[position].col.sql.text, direction))
        for position, breakout in enumerate(breakouts):
            if position not in ordered:
                orders.append((_quote(columns[position].alias), breakout.col.sql.text, "ASC"))
        return orders

    def _aggregation(self, clause: Any, scope: _Scope, has_breakouts: bool) -> _Aggregation:
        tag = _clause_tag(clause)
        if tag == "aggregation-options":
            _check_arity(clause, 2)
            inner = self._aggregation(clause[1], scope, has_breakouts)
            options = _options(clause, 2)
            name = options.get("name") or inner.name
            display = options.get("display-name") or inner.display_name
            return replace(inner, name=str(name), display_name=str(display))
        compiled, display = self._aggregate_expr(clause, scope, has_breakouts, nested=False)
        name = self._aggregation_name(clause, scope)
        semantic = "type/Quantity" if tag in ("count", "cum-count") else None
        cumulative = tag in ("cum-count", "cum-sum") and has_breakouts
        return _Aggregation(compiled, name, display, semantic, cumulative)

    def _aggregation_name(self, clause: Any, scope: _Scope) -> str:
        tag = _clause_tag(clause)
        names = {
            "count": "count",
            "cum-count": "cum_count",
            "sum": "sum",
            "cum-sum": "sum",
            "avg": "avg",
            "distinct": "count",
            "min": "min",
            "max": "max",
            "median": "median",
            "stddev": "stddev",
            "var": "var",
            "percentile": "percentile",
            "share": "share",
            "count-where": "count-where",
        }
        if tag in names:
            return names[tag]
        if tag == "sum-where":
            return "sum_where_" + self._column_name(clause[1], scope)
        if tag in ("+", "-", "*", "/"):
            return "expression"
        if tag in ("case", "if"):
            return "case"
        raise _fail_clause(clause, "unknown aggregation")

    def _column_name(self, x: Any, scope: _Scope) -> str:
        if _clause_tag(x) in ("field", "expression"):
            return str(self._resolve(x, scope).meta["name"])
        return "expression"

    def _aggregate_expr(
        self, x: Any, scope: _Scope, has_breakouts: bool, *, nested: bool
    ) -> tuple[_Sql, str]:
        """Compile an aggregation (or arithmetic over aggregations); return its SQL and display name."""
        tag = _clause_tag(x)
        if tag is None:
            if isinstance(x, (int, float)) and not isinstance(x, bool):
                return _literal(x), _clojure_number(x)
            raise MbqlError(f"Error normalizing query: invalid aggregation {json.dumps(x)}")
        if tag in ("+", "-", "*", "/"):
            _check_arity(x, 2, None)
            parts = [self._aggregate_expr(arg, scope, has_breakouts, nested=True) for arg in x[1:]]
            compiled = _arithmetic(tag, [p[0] for p in parts])
            symbol = {"+": "+", "-": "-", "*": "×", "/": "÷"}[tag]
            display = f" {symbol} ".join(p[1] for p in parts)
            return compiled, f"({display})" if nested else display
        if tag == "aggregation-options":
            _check_arity(x, 2)
            compiled, display = self._aggregate_expr(x[1], scope, has_breakouts, nested=nested)
            return compiled, str(_options(x, 2).get("display-name") or display)
        return self._aggregate(x, scope, has_breakouts)

    def _aggregate(self, clause: list, scope: _Scope, has_breakouts: bool) -> tuple[_Sql, str]:
        tag = clause[0].lower()
        if tag in ("count", "cum-count"):
            _check_arity(clause, 0, 1)
            if len(clause) > 1 and clause[1] is not None:
                arg = self._expr(clause[1], scope)
                text, label = f"COUNT({arg.text})", self._display(clause[1], scope)
                display = f"Count of {label}" if tag == "count" else f"Cumulative count of {label}"
            else:
                text = "COUNT(*)"
                display = "Count" if tag == "count" else "Cumulative count"
            if tag == "cum-count" and has_breakouts:
                return _Sql(f"SUM({text}) OVER {_WINDOW}", "numeric"), display
            return _Sql(text, "int8"), display
        if tag in ("sum", "cum-sum", "avg", "min", "max", "distinct", "stddev", "var", "median"):
            _check_arity(clause, 1)
            arg = self._expr(clause[1], scope)
            label = self._display(clause[1], scope)
            display = {
                "sum": "Sum of {}",
                "cum-sum": "Cumulative sum of {}",
                "avg": "Average of {}",
                "min": "Min of {}",
                "max": "Max of {}",
                "distinct": "Distinct values of {}",
                "stddev": "Standard deviation of {}",
                "var": "Variance of {}",
                "median": "Median of {}",
            }[tag].format(label)
            if tag == "distinct":
                return _Sql(f"COUNT(DISTINCT {arg.text})", "int8"), display
            if tag == "median":
                return _percentile(arg, 0.5), display
            function = {"sum": "SUM", "cum-sum": "SUM", "avg": "AVG", "min": "MIN", "max": "MAX",
                        "stddev": "STDDEV_POP", "var": "VAR_POP"}[tag]  # fmt: skip
            compiled = _Sql(f"{function}({arg.text})", _aggregate_type(tag.removeprefix("cum-"), arg.pg_type))
            if tag == "cum-sum" and has_breakouts:
                return _Sql(
                    f"SUM({compiled.text}) OVER {_WINDOW}", _aggregate_type("sum", compiled.pg_type)
                ), display
            return compiled, display
        if tag == "percentile":
            _check_arity(clause, 2)
            p = clause[2]
            if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0 <= p <= 1:
                raise _fail_clause(clause, "percentile must be a number between 0 and 1")
            arg = self._expr(clause[1], scope)
            display = f"{_clojure_number(p)}th percentile of {self._display(clause[1], scope)}"
            return _percentile(arg, p), display
        if tag in ("count-where", "share"):
            _check_arity(clause, 1)
            predicate = self._filter(clause[1], scope)
            counted = f"SUM(CASE WHEN {predicate} THEN 1 ELSE 0.0 END)"
            if tag == "share":
                return _Sql(f"({counted} / COUNT(*))", "numeric"), "Share of rows matching condition"
            return _Sql(counted, "numeric"), "Count of rows matching condition"
        if tag == "sum-where":
            _check_arity(clause, 2)
            arg = self._expr(clause[1], scope)
            predicate = self._filter(clause[2], scope)
            case_type = _promote(arg.pg_type, "numeric")
            compiled = _Sql(
                f"SUM(CASE WHEN {predicate} THEN {arg.text} ELSE 0.0 END)", _aggregate_type("sum", case_type)
            )
            return compiled, f"Sum of {self._display(clause[1], scope)} matching condition"
        if tag in ("metric", "measure", "offset"):
            raise MbqlError(f"The fake Metabase does not support the :{tag} aggregation")
        raise _fail_clause(clause, f"unknown aggregation :{tag}")

    def _display(self, x: Any, scope: _Scope, *, nested: bool = False) -> str:
        """Return Lib's display name of an aggregation argument (infix arithmetic, bracketed when nested)."""
        tag = _clause_tag(x)
        if tag in ("field", "expression"):
            return str(self._ref_col(x, scope).meta["display_name"])
        if tag in ("+", "-", "*", "/"):
            symbol = {"+": "+", "-": "-", "*": "×", "/": "÷"}[tag]
            text = f" {symbol} ".join(self._display(a, scope, nested=True) for a in x[1:])
            return f"({text})" if nested else text
        if isinstance(x, str):
            return f'"{x}"'
        if isinstance(x, (int, float)):
            return _clojure_number(x)
        return str(tag or x)

    # ------------------------------------------------------------- sorting without a summary

    def _plain_order(self, entry: Any, scope: _Scope) -> str:
        direction, ref = _order_entry(entry)
        if _clause_tag(ref) == "aggregation":
            raise _fail_clause(ref, "an aggregation reference needs an aggregation in the stage")
        return f"{self._ref_col(ref, scope).sql.text} {direction}"

    # ------------------------------------------------------------- expressions

    def _expr(self, x: Any, scope: _Scope) -> _Sql:
        tag = _clause_tag(x)
        if tag is None:
            if isinstance(x, (list, dict)):
                raise MbqlError(f"Error normalizing query: invalid expression {json.dumps(x)}")
            return _literal(x)
        if tag in ("field", "expression"):
            return self._ref_col(x, scope).sql
        if tag == "value":
            _check_arity(x, 1, 2)
            return _literal(x[1])
        if tag in ("+", "-", "*", "/"):
            _check_arity(x, 2, None)
            if tag in ("+", "-") and any(_clause_tag(a) == "interval" for a in x[2:]):
                return self._interval_arithmetic(x, scope)
            return _arithmetic(tag, [self._expr(a, scope) for a in x[1:]])
        handler = _EXPRESSIONS.get(tag)
        if handler is not None:
            return handler(self, x, scope)
        if tag in _FILTER_TAGS:
            return _Sql(self._filter(x, scope), "bool")
        if tag in _AGGREGATION_TAGS:
            raise MbqlError(
                f"Error normalizing query: the aggregation :{tag} is not allowed in an expression"
            )
        raise _fail_clause(x, f"unknown clause :{tag}")

    def _interval_arithmetic(self, x: list, scope: _Scope) -> _Sql:
        base = self._expr(x[1], scope)
        for interval in x[2:]:
            if _clause_tag(interval) != "interval":
                raise _fail_clause(x, "all but the first argument must be intervals")
            _check_arity(interval, 2)
            amount = interval[1] if x[0] == "+" else -interval[1]
            base = _add_interval(base, amount, str(interval[2]))
        return base

    def _args(self, x: list, scope: _Scope) -> list[_Sql]:
        return [self._expr(a, scope) for a in x[1:]]

    # ------------------------------------------------------------- filters

    def _filter(self, clause: Any, scope: _Scope) -> str:
        tag = _clause_tag(clause)
        if tag in ("and", "or"):
            _check_arity(clause, 1, None)
            joined = f" {tag.upper()} ".join(f"({self._filter(c, scope)})" for c in clause[1:])
            return joined
        if tag == "not":
            _check_arity(clause, 1)
            inner = clause[1]
            if _clause_tag(inner) in ("contains", "starts-with", "ends-with"):
                subject = self._expr(_string_parts(inner)[0], scope)
                return f"(NOT ({self._filter(inner, scope)}) OR ({subject.text} IS NULL))"
            return f"NOT ({self._filter(inner, scope)})"
        if tag in ("=", "!=", "in", "not-in"):
            _check_arity(clause, 2, None)
            tag = {"in": "=", "not-in": "!="}.get(tag, tag)
            if len(clause) > 3:
                parts = [self._filter([tag, clause[1], value], scope) for value in clause[2:]]
                return (" OR " if tag == "=" else " AND ").join(f"({p})" for p in parts)
            return self._comparison(tag, clause[1], [clause[2]], scope)
        if tag in ("<", "<=", ">", ">="):
            _check_arity(clause, 2)
            return self._comparison(tag, clause[1], [clause[2]], scope)
        if tag == "between":
            _check_arity(clause, 3)
            return self._comparison(tag, clause[1], [clause[2], clause[3]], scope)
        if tag in ("is-null", "not-null"):
            _check_arity(clause, 1)
            subject = self._expr(clause[1], scope)
            return f"{subject.text} IS {'NOT ' if tag == 'not-null' else ''}NULL"
        if tag in ("is-empty", "not-empty"):
            _check_arity(clause, 1)
            subject = self._expr(clause[1], scope)
            emptyable = _base_type(subject.pg_type) in _TEXT_BASE_TYPES
            if tag == "is-empty":
                return (
                    f"({subject.text} IS NULL) OR ({subject.text} = '')"
                    if emptyable
                    else f"{subject.text} IS NULL"
                )
            if emptyable:
                return (
                    f"({subject.text} IS NOT NULL) AND (({subject.text} <> '') OR ({subject.text} IS NULL))"
                )
            return f"{subject.text} IS NOT NULL"
        if tag in ("contains", "starts-with", "ends-with", "does-not-contain"):
            return self._string_filter(clause, scope)
        if tag == "time-interval":
            return self._time_interval(clause, scope)
        if tag == "inside":
            _check_arity(clause, 6)
            lat, lon, lat_max, lon_min, lat_min, lon_max = clause[1:]
            return self._filter(
                ["and", ["between", lat, lat_min, lat_max], ["between", lon, lon_min, lon_max]], scope
            )
        if tag == "relative-time-interval":
            return self._relative_time_interval(clause, scope)
        if tag == "during":
            _check_arity(clause, 3)
            if not isinstance(clause[2], str) or clause[3] not in _TRUNCATION_UNITS:
                raise _fail_clause(clause, "during takes a column, an ISO date string and a unit")
            subject = self._resolve_for_filter(clause[1], scope)
            lower = _temporal(clause[3], _temporal_literal(clause[2]))
            upper = _add_interval(lower, 1, clause[3])
            return f"({subject.text} >= {lower.text}) AND ({subject.text} < {upper.text})"
        if tag in ("segment", "metric"):
            raise MbqlError(f"The fake Metabase does not support :{tag} references")
        if tag in ("field", "expression", "value") or tag in _EXPRESSIONS:
            compiled = self._expr(clause, scope)
            if compiled.pg_type != "bool":
                raise _fail_clause(clause, "a filter must be a boolean expression")
            return compiled.text
        raise _fail_clause(clause, f"unknown clause :{tag}" if tag else "a filter must be an MBQL clause")

    def _comparison(self, tag: str, subject_ref: Any, values: list, scope: _Scope) -> str:
        subject = self._expr(subject_ref, scope)
        if any(_clause_tag(v) == "relative-datetime" and v[1:] == ["current"] for v in values):
            # `[:relative-datetime :current]` takes the unit of the column it is compared with (desugar.cljc)
            unit = (
                _options(subject_ref, 2).get("temporal-unit") if _clause_tag(subject_ref) == "field" else None
            )
            values = [
                ["relative-datetime", 0, unit or "default"] if _clause_tag(v) == "relative-datetime" else v
                for v in values
            ]
        subject_base = _base_type(subject.pg_type)
        temporal = subject_base in _TEMPORAL_BASE_TYPES
        has_unit = _clause_tag(subject_ref) in ("field", "expression") and "temporal-unit" in _options(
            subject_ref, 2
        )
        if temporal and not has_unit and values and all(_is_date_string(v) for v in values):
            # Metabase's auto-bucketing: a temporal column compared with yyyy-MM-dd literals is by day.
            subject = _temporal("day", subject)
        compiled = [self._comparison_value(v, subject_base, scope) for v in values]
        if tag == "between":
            return f"{subject.text} BETWEEN {compiled[0].text} AND {compiled[1].text}"
        value = compiled[0]
        if tag == "=" and value.text == "NULL":
            return f"{subject.text} IS NULL"
        if tag == "!=":
            if value.text == "NULL":
                return f"{subject.text} IS NOT NULL"
            return f"({subject.text} <> {value.text}) OR ({subject.text} IS NULL)"
        return f"{subject.text} {tag} {value.text}"

    def _comparison_value(self, value: Any, subject_base: str, scope: _Scope) -> _Sql:
        if _clause_tag(value) == "value":
            value = value[1]
        if isinstance(value, str):
            if subject_base in _NUMBER_BASE_TYPES:
                try:
                    number = float(value) if re.search(r"[.eE]", value) else int(value)
                except ValueError as exc:
                    raise MbqlError(f"Error parsing number value {json.dumps(value)}") from exc
                return _literal(number)
            if subject_base in _TEMPORAL_BASE_TYPES:
                return _temporal_literal(value)
            return _literal(value)
        return self._expr(value, scope)

    def _string_filter(self, clause: list, scope: _Scope) -> str:
        tag = clause[0].lower()
        subject_ref, arguments, options = _string_parts(clause)
        if len(arguments) > 1:
            parts = [
                self._string_filter([tag, subject_ref, argument, options], scope) for argument in arguments
            ]
            return (" AND " if tag == "does-not-contain" else " OR ").join(f"({p})" for p in parts)
        subject = self._expr(subject_ref, scope)
        if tag == "does-not-contain":
            positive = self._string_filter(["contains", subject_ref, arguments[0], options], scope)
            return f"(NOT ({positive}) OR ({subject.text} IS NULL))"
        case_sensitive = options.get("case-sensitive", True)
        prefix = "%" if tag in ("contains", "ends-with") else ""
        suffix = "%" if tag in ("contains", "starts-with") else ""
        argument = arguments[0][1] if _clause_tag(arguments[0]) == "value" else arguments[0]
        subject_text = subject.text if case_sensitive else f"LOWER({subject.text})"
        if isinstance(argument, str):
            pattern = prefix + _escape_like(argument) + suffix
            if not case_sensitive:
                pattern = pattern.lower()
            return f"{subject_text} LIKE {warehouse.quote_literal(pattern)} ESCAPE '\\'"
        other = self._expr(argument, scope)
        pieces = [warehouse.quote_literal(prefix)] if prefix else []
        pieces.append(other.text)
        if suffix:
            pieces.append(warehouse.quote_literal(suffix))
        pattern_sql = f"CONCAT({', '.join(pieces)})"
        if not case_sensitive:
            pattern_sql = f"LOWER({pattern_sql})"
        return f"{subject_text} LIKE {pattern_sql}"

    def _time_interval(self, clause: list, scope: _Scope) -> str:
        _check_arity(clause, 3, 4)
        subject_ref, n, unit = clause[1], clause[2], clause[3]
        options = _options(clause, 4)
        if isinstance(n, str):
            n = {"current": 0, "last": -1, "next": 1}.get(n)
        if not isinstance(n, int) or isinstance(n, bool):
            raise _fail_clause(clause, "the interval must be an integer, current, last or next")
        if unit not in _TRUNCATION_UNITS:
            raise _fail_clause(clause, f"invalid unit {json.dumps(unit)}")
        subject = _temporal(unit, self._resolve_for_filter(subject_ref, scope))
        include_current = bool(options.get("include-current"))

        def relative(amount: int) -> str:
            return _relative_datetime(amount, unit).text

        if include_current and n < 0:
            return f"{subject.text} BETWEEN {relative(n)} AND {relative(0)}"
        if include_current and n > 0:
            return f"{subject.text} BETWEEN {relative(0)} AND {relative(n)}"
        if n in (-1, 0, 1):
            return f"{subject.text} = {relative(n)}"
        if n < -1:
            return f"{subject.text} BETWEEN {relative(n)} AND {relative(-1)}"
        return f"{subject.text} BETWEEN {relative(1)} AND {relative(n)}"

    def _relative_time_interval(self, clause: list, scope: _Scope) -> str:
        _check_arity(clause, 5)
        _, subject_ref, value, unit, offset_value, offset_unit = clause
        if not isinstance(value, int) or isinstance(value, bool) or unit not in _TRUNCATION_UNITS:
            raise _fail_clause(clause, "relative-time-interval takes an integer and a unit")
        subject = self._resolve_for_filter(subject_ref, scope)
        lower = _relative_datetime(value if value < 0 else 1, unit)
        upper = _relative_datetime(0 if value < 0 else value + 1, unit)
        lower = _add_interval(lower, offset_value, str(offset_unit))
        upper = _add_interval(upper, offset_value, str(offset_unit))
        return f"({subject.text} >= {lower.text}) AND ({subject.text} < {upper.text})"

    def _resolve_for_filter(self, ref: Any, scope: _Scope) -> _Sql:
        if _clause_tag(ref) in ("field", "expression"):
            col = self._resolve(ref, scope)
            if col.base_type not in _TEMPORAL_BASE_TYPES:
                raise _fail_clause(ref, "time-interval needs a date or datetime column")
            return col.sql
        return self._expr(ref, scope)

    def _parameter_filter(self, parameter: dict, scope: _Scope) -> str:
        ref = _legacy_ref(parameter["target"][1])
        try:
            col = self._ref_col(ref, scope)
        except MbqlError as exc:
            raise MbqlError(
                f"Invalid parameter target {json.dumps(parameter['target'])}: {exc}", "invalid-parameter"
            ) from exc
        target = _ParameterColumn("", "", str(col.meta.get("name")), col.base_type, col.sql.text)
        try:
            return warehouse._field_filter(
                target, str(parameter.get("type") or "category"), parameter["value"]
            )
        except warehouse.QueryFailed as exc:
            raise MbqlError(str(exc), "invalid-parameter") from exc


@dataclass
class _ParameterColumn(warehouse.FieldRef):
    """A stage column seen as the target of a field filter (`sql._field_filter`)."""

    expression: str = ""

    def sql(self) -> str:
        return self.expression


# ----------------------------------------------------------------- stage helpers


def _sequence(inner: dict, key: str) -> list:
    value = inner.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise MbqlError(f"Error normalizing query: {key} must be a sequence")
    return value


def _limit(inner: dict) -> list[str]:
    parts: list[str] = []
    limit = inner.get("limit")
    page = inner.get("page")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise MbqlError(
            f"Error normalizing query: limit must be a non-negative integer, got {json.dumps(limit)}"
        )
    if page is not None:
        items, number = (page.get("items"), page.get("page")) if isinstance(page, dict) else (None, None)
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (items, number)):
            raise MbqlError("Error normalizing query: page needs positive integers page and items")
        assert isinstance(items, int) and isinstance(number, int)
        parts.append(f"LIMIT {min(items, limit) if limit is not None else items}")
        parts.append(f"OFFSET {items * (number - 1)}")
    elif limit is not None:
        parts.append(f"LIMIT {limit}")
    return parts


def _unique_aliases(columns: list[_Col]) -> list[_Col]:
    aliases = _Unique()
    return [replace(col, alias=aliases(col.alias)) for col in columns]


def _finish_columns(columns: list[_Col]) -> list[_Col]:
    """Deduplicate result names (`_2`, `_3`) and field refs, as Metabase's annotation does."""
    names = _Unique()
    finished = []
    for col in columns:
        meta = dict(col.meta)
        meta["name"] = names(str(meta["name"]))
        meta["lib/desired-column-alias"] = col.alias
        if col.sql.pg_type != "unknown":
            meta["database_type"] = col.sql.pg_type
        finished.append(replace(col, meta=meta, names=(col.alias, meta["name"])))
    refs = [json.dumps(col.meta.get("field_ref"), sort_keys=True) for col in finished]
    duplicated = {ref for ref in refs if refs.count(ref) > 1}
    for i, col in enumerate(finished):
        if refs[i] in duplicated:
            meta = dict(col.meta)
            meta["field_ref"] = ["field", meta["name"], {"base-type": meta.get("base_type")}]
            finished[i] = replace(col, meta=meta)
    return finished


def _field_col(info: FieldInfo, qualifier: list[str]) -> _Col:
    meta = {
        "name": info.name,
        "display_name": info.display_name,
        "base_type": info.base_type,
        "effective_type": info.base_type,
        "semantic_type": info.semantic_type,
        "database_type": info.database_type,
        "id": info.id,
        "table_id": info.table_id,
        "fk_target_field_id": info.fk_target_field_id,
        "field_ref": ["field", info.id, None],
        "source": "fields",
        "description": None,
        "coercion_strategy": None,
        "settings": None,
        "visibility_type": "normal",
        "fingerprint": info.fingerprint,
    }
    text = ".".join(_quote(part) for part in [*qualifier, info.name])
    return _Col(
        sql=_Sql(text, info.database_type),
        alias=info.name,
        meta=meta,
        field_id=info.id,
        fingerprint=info.fingerprint,
        names=(info.name,),
    )


def _joined(col: _Col, join_alias: str) -> _Col:
    meta = dict(col.meta)
    meta["display_name"] = f"{join_alias} → {col.meta['display_name']}"
    meta["source_alias"] = join_alias
    ref = meta.get("field_ref")
    if isinstance(ref, list) and ref and ref[0] == "field":
        meta["field_ref"] = _with_ref_options(ref, {"join-alias": join_alias})
    return replace(
        col,
        alias=f"{join_alias}__{col.alias}",
        meta=meta,
        join_alias=join_alias,
        names=(col.alias, *col.names),
    )


def _from_previous(col: _Col, qualifier: str, card: CardInfo | None, stored: dict | None = None) -> _Col:
    """Return a column of a previous stage or source card as the next stage sees it."""
    meta = {k: v for k, v in col.meta.items() if k not in ("source_alias", "lib/desired-column-alias")}
    meta["source"] = "fields"
    base_type = str(meta.get("base_type") or "type/*")
    if meta.get("id") is not None:
        options: dict | None = None
        if card is not None and base_type in _TEMPORAL_BASE_TYPES:
            # a question on a card sees its temporal columns with the `default` unit (recorded card/28)
            options = {"temporal-unit": "default"}
            meta["unit"] = meta.get("unit") or "default"
        meta["field_ref"] = ["field", meta["id"], options]
    else:
        meta["field_ref"] = ["field", col.alias, {"base-type": base_type}]
    fingerprint = col.fingerprint
    if stored and isinstance(stored.get(meta.get("name")), dict):
        fingerprint = stored[meta.get("name")].get("fingerprint") or fingerprint
    return _Col(
        sql=_Sql(f"{_quote(qualifier)}.{_quote(col.alias)}", col.sql.pg_type),
        alias=col.alias,
        meta=meta,
        field_id=meta.get("id"),
        fingerprint=fingerprint,
        unit=col.unit,
        origin_join=col.join_alias or col.origin_join,
        names=(col.alias, str(meta.get("name"))),
    )


_MODEL_KEYS = (
    "description",
    "display_name",
    "semantic_type",
    "fk_target_field_id",
    "settings",
    "visibility_type",
)


def _merge_model_metadata(columns: list[_Col], stored: list[dict]) -> list[_Col]:
    """Overlay a model's edited metadata on its computed columns, by name (aggregations keep their own)."""
    by_name = {m.get("name"): m for m in stored if isinstance(m, dict)}
    merged = []
    for col in columns:
        edited = by_name.get(col.meta.get("name"))
        if edited is None or col.meta.get("source") == "aggregation":
            merged.append(col)
            continue
        meta = dict(col.meta)
        for key in _MODEL_KEYS:
            if key in edited and not (key == "display_name" and not edited[key]):
                meta[key] = edited[key]
        merged.append(replace(col, meta=meta))
    return merged


_PG_FOR_BASE = {
    "type/Integer": "int4",
    "type/BigInteger": "int8",
    "type/Float": "float8",
    "type/Decimal": "numeric",
    "type/Text": "text",
    "type/Boolean": "bool",
    "type/Date": "date",
    "type/DateTime": "timestamp",
    "type/DateTimeWithLocalTZ": "timestamptz",
    "type/Time": "time",
    "type/UUID": "uuid",
}


def _pg_type_for_base(base_type: str) -> str:
    return _PG_FOR_BASE.get(base_type, "unknown")


def _nestable(native_sql: str) -> str:
    """Metabase's `make-nestable-sql*`: drop trailing semicolons and the comments after them."""
    trimmed = re.sub(r";([\s;]*(--.*\n?)*)*$", "", native_sql).rstrip()
    return trimmed + "\n" if re.search(r"--.*$", trimmed) else trimmed


def _with_ref_options(ref: Any, extra: dict) -> Any:
    tag = _clause_tag(ref)
    if tag not in ("field", "expression"):
        return ref
    options = dict(ref[2] or {}) if len(ref) > 2 and isinstance(ref[2], dict) else {}
    options.update(extra)
    return [ref[0], ref[1], options]


def _order_entry(entry: Any) -> tuple[str, Any]:
    if not isinstance(entry, list) or len(entry) != 2 or entry[0] not in ("asc", "desc"):
        raise MbqlError(f"Error normalizing query: invalid order-by clause {json.dumps(entry)}")
    return entry[0].upper(), entry[1]


def _identity(col: _Col) -> tuple:
    return (
        col.field_id,
        col.join_alias,
        col.source_field,
        col.expression,
        None if col.field_id else col.alias,
    )


def _matching_breakout(
    ref: Any, breakouts: list[_Breakout], compiler: _Compiler, scope: _Scope
) -> int | None:
    if _clause_tag(ref) not in ("field", "expression"):
        return None
    base = compiler._resolve(ref, scope)
    options = _options(ref, 2)
    for position, breakout in enumerate(breakouts):
        if _identity(breakout.col) != _identity(base):
            continue
        unit = options.get("temporal-unit")
        if unit is not None and unit != breakout.col.unit:
            continue
        if options.get("binning") is not None and breakout.col.binning is None:
            continue
        return position
    return None


def _window_spec(breakouts: list[_Breakout], orders: list[tuple[str, str | None, str]]) -> str:
    """The OVER (...) of cumulative aggregations: partition by all breakouts but the finest temporal one."""
    temporal = [i for i, b in enumerate(breakouts) if b.temporal]
    if temporal:
        finest = min(temporal, key=lambda i: _TRUNCATION_UNITS.index(str(breakouts[i].col.unit)))
        partition = [b.col.sql.text for i, b in enumerate(breakouts) if i != finest]
    else:
        partition = [b.col.sql.text for b in breakouts[:-1]]
    parts = []
    if partition:
        parts.append("PARTITION BY " + ", ".join(partition))
    order_terms = [f"{expr} {direction}" for _, expr, direction in orders if expr is not None]
    if order_terms:
        parts.append("ORDER BY " + ", ".join(order_terms))
    parts.append("ROWS UNBOUNDED PRECEDING")
    return "(" + " ".join(parts) + ")"


# ----------------------------------------------------------------- SQL building blocks


def _aggregate_type(tag: str, pg_type: str) -> str:
    """Return PostgreSQL's result type of an aggregate function over `pg_type`."""
    if tag in ("min", "max"):
        return pg_type
    if tag == "sum":
        return {
            "int2": "int8",
            "int4": "int8",
            "int8": "numeric",
            "float4": "float4",
            "float8": "float8",
        }.get(pg_type, "numeric")
    if pg_type in _FLOAT_TYPES:
        return "float8"
    return "numeric"


def _percentile(arg: _Sql, p: float | int) -> _Sql:
    return _Sql(f"PERCENTILE_CONT({_number_text(p)}) WITHIN GROUP (ORDER BY {arg.text})", "float8")


def _arithmetic(tag: str, parts: list[_Sql]) -> _Sql:
    if tag != "/":
        return _Sql("(" + f" {tag} ".join(p.text for p in parts) + ")", _promote(*(p.pg_type for p in parts)))
    floats = []
    for part in parts:
        if part.literal and isinstance(part.value, (int, float)) and not isinstance(part.value, bool):
            floats.append(
                _Sql(_number_text(float(part.value)), "numeric", literal=True, value=float(part.value))
            )
        elif part.pg_type in _FLOAT_TYPES:
            floats.append(part)
        else:
            floats.append(_Sql(f"CAST({part.text} AS DOUBLE PRECISION)", "float8"))
    numerator, denominators = floats[0], floats[1:]
    terms = [numerator.text]
    for denominator in denominators:
        if denominator.literal and denominator.value == 0:
            terms.append("NULL")
        elif denominator.literal:
            terms.append(denominator.text)
        else:
            terms.append(f"NULLIF({denominator.text}, 0.0)")
    pg = "numeric" if all(p.literal for p in floats) else "float8"
    return _Sql("(" + " / ".join(terms) + ")", pg)


def _to_timestamp(expr: _Sql) -> _Sql:
    if expr.pg_type in ("timestamp", "timestamptz", "date"):
        return expr
    return _Sql(f"CAST({expr.text} AS timestamp)", "timestamp")


def _date_trunc(unit: str, expr: _Sql) -> _Sql:
    if expr.pg_type == "date":
        return _Sql(f"CAST(date_trunc('{unit}', {expr.text}) AS date)", "date")
    stamp = _to_timestamp(expr)
    return _Sql(f"date_trunc('{unit}', {stamp.text})", stamp.pg_type)


def _extract(unit: str, expr: _Sql) -> str:
    return f"CAST(extract({unit} from {_to_timestamp(expr).text}) AS integer)"


_INTERVAL_UNITS = frozenset(
    {"millisecond", "second", "minute", "hour", "day", "week", "month", "quarter", "year"}
)


def _add_interval(expr: _Sql, amount: Any, unit: str) -> _Sql:
    if unit not in _INTERVAL_UNITS:
        raise MbqlError(f"Error normalizing query: invalid interval unit {json.dumps(unit)}")
    if not isinstance(amount, (int, float)) or isinstance(amount, bool):
        raise MbqlError(f"Error normalizing query: invalid interval amount {json.dumps(amount)}")
    if unit == "quarter":
        amount, unit = amount * 3, "month"
    interval = f"INTERVAL '{_number_text(amount)} {unit}'"
    if expr.pg_type == "date":
        return _Sql(f"CAST(({expr.text} + {interval}) AS date)", "date")
    stamp = _to_timestamp(expr)
    return _Sql(f"({stamp.text} + {interval})", stamp.pg_type)


def _temporal(unit: str, expr: _Sql) -> _Sql:
    """Metabase's Postgres bucketing of `expr` by `unit` (weeks start on Sunday)."""
    if unit == "default":
        return expr
    if unit in ("millisecond", "second", "minute", "hour", "month", "quarter", "year"):
        return _date_trunc(unit, expr)
    if unit == "day":
        as_date = f"CAST({expr.text} AS date)"
        if expr.pg_type in ("timestamp", "timestamptz"):
            return _Sql(f"CAST({as_date} AS {expr.pg_type})", expr.pg_type)
        return _Sql(as_date, "date")
    if unit == "week":
        return _add_interval(_date_trunc("week", _add_interval(expr, 1, "day")), -1, "day")
    if unit == "day-of-week":
        return _Sql(f"({_extract('dow', expr)} + 1)", "int4")
    if unit == "week-of-year":
        return _Sql(f"CEIL(({_extract('doy', _temporal('week', expr))} / 7.0))", "numeric")
    if unit in _EXTRACTION_UNITS:
        return _Sql(_extract(_EXTRACTION_UNITS[unit], expr), "int4")
    raise MbqlError(f"Error normalizing query: invalid temporal unit {json.dumps(unit)}")


def _relative_datetime(amount: int, unit: str) -> _Sql:
    now = _Sql("NOW()", "timestamptz")
    return _temporal(unit, now if amount == 0 else _add_interval(now, amount, unit))


_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}(:\d{2}(\.\d+)?)?)(Z|[+-]\d{2}(:?\d{2})?)?$")


def _is_date_string(value: Any) -> bool:
    if _clause_tag(value) == "value":
        value = value[1]
    return isinstance(value, str) and bool(_DATE_RE.match(value))


def _temporal_literal(value: str) -> _Sql:
    if _DATE_RE.match(value):
        return _Sql(f"date {warehouse.quote_literal(value)}", "date", literal=True, value=value)
    match = _DATETIME_RE.match(value)
    if not match:
        raise MbqlError(f"Error normalizing query: invalid date or datetime {json.dumps(value)}")
    text = f"{match.group(1)} {match.group(2)}"
    if match.group(5):
        zone = "+00:00" if match.group(5) == "Z" else match.group(5)
        return _Sql(
            f"timestamp with time zone {warehouse.quote_literal(text + zone)}", "timestamptz", literal=True
        )
    return _Sql(f"timestamp {warehouse.quote_literal(text)}", "timestamp", literal=True)


def _legacy_ref(ref: Any) -> Any:
    """Return a parameter target's ref in legacy form (MBQL 5 has options second: `["field", {..}, 78]`)."""
    if _clause_tag(ref) in ("field", "expression") and len(ref) == 3 and isinstance(ref[1], dict):
        options = {k: v for k, v in ref[1].items() if k != "lib/uuid"}
        return [ref[0], ref[2], options or None]
    return ref


def _string_parts(clause: list) -> tuple[Any, list, dict]:
    """Return (column, values, options) of a string filter: `[op col v opts]` or `[op opts col v1 v2 ...]`."""
    if len(clause) > 1 and isinstance(clause[1], dict):
        _check_arity(clause, 3, None)
        return clause[2], list(clause[3:]), clause[1]
    _check_arity(clause, 2, 3)
    return clause[1], [clause[2]], _options(clause, 3)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%")


# ----------------------------------------------------------------- binning


def _same_column(ref: Any, other: Any) -> bool:
    if _clause_tag(ref) != _clause_tag(other) or not isinstance(other, list) or len(other) < 2:
        return False
    return bool(
        ref[1] == other[1] and _options(ref, 2).get("join-alias") == _options(other, 2).get("join-alias")
    )


def _bin_bounds(col: _Col, ref: Any, stage_filter: Any) -> tuple[float, float]:
    """Return binning bounds: the stage's filters on the column, else its fingerprint (`extract-bounds`)."""
    clauses = []
    if _clause_tag(stage_filter) == "and":
        clauses = list(stage_filter[1:])
    elif stage_filter is not None:
        clauses = [stage_filter]
    user_mins: list[float] = []
    user_maxes: list[float] = []
    for clause in clauses:
        tag = _clause_tag(clause)
        if (
            tag not in ("between", ">", ">=", "<", "<=")
            or len(clause) < 3
            or not _same_column(ref, clause[1])
        ):
            continue
        values = [v for v in clause[2:] if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if len(values) != len(clause) - 2:
            continue
        if tag in ("between", ">", ">="):
            user_mins.append(values[0])
        if tag in ("between", "<", "<="):
            user_maxes.append(values[-1])
    number = ((col.fingerprint or {}).get("type") or {}).get("type/Number") or {}
    low = max(user_mins) if user_mins else number.get("min")
    high = min(user_maxes) if user_maxes else number.get("max")
    if not isinstance(low, (int, float)) or not isinstance(high, (int, float)):
        raise MbqlError("Unable to bin Field without a min/max value (missing or incomplete fingerprint)")
    return float(low), float(high)


def _round_to_5(value: float) -> float:
    return float(
        decimal.Decimal(repr(value)).quantize(decimal.Decimal("0.00001"), rounding=decimal.ROUND_HALF_UP)
    )


def _calculate_bin_width(low: float, high: float, bins: int) -> float:
    width = _round_to_5((high - low) / bins)
    return 1.0 if width == 0 else width


def _calculate_num_bins(low: float, high: float, width: float) -> int:
    return max(math.ceil((high - low) / width), 1)


def _order_of_magnitude(value: float) -> int:
    return 0 if value == 0 else math.floor(math.log(abs(value)) / math.log(10))


def _nicer_bin_width(low: float, high: float, bins: int) -> float:
    minimum = _calculate_bin_width(low, high, bins)
    scale = math.pow(10, _order_of_magnitude(minimum))
    return next((p * scale for p in _PLEASING_NUMBERS if p * scale >= minimum), minimum)


def _nicer_step(strategy: str, options: dict) -> dict:
    width = (
        _nicer_bin_width(options["min-value"], options["max-value"], options["num-bins"])
        if strategy == "num-bins"
        else options["bin-width"]
    )
    low = math.floor(options["min-value"] / width) * width
    high = math.ceil(options["max-value"] / width) * width
    bins = options["num-bins"] if strategy == "num-bins" else _calculate_num_bins(low, high, width)
    return {"min-value": float(low), "max-value": float(high), "num-bins": bins, "bin-width": width}


def _resolve_binning(binning: dict, col: _Col, low: float, high: float) -> dict:
    """Metabase's `resolve-options` then `nicer-breakout` (a fixed point within 10 steps, else unchanged)."""
    strategy = binning["strategy"]
    if strategy == "default":
        if col.meta.get("semantic_type") in _COORDINATE_TYPES:
            strategy, binning = "bin-width", {"bin-width": _DEFAULT_COORDINATE_BIN_WIDTH}
        else:
            strategy, binning = "num-bins", {"num-bins": _DEFAULT_BINS}
    if strategy == "num-bins":
        bins = binning.get("num-bins")
        if not isinstance(bins, int) or isinstance(bins, bool) or bins < 1:
            raise MbqlError("Error normalizing query: num-bins must be a positive integer")
        options = {
            "min-value": low,
            "max-value": high,
            "num-bins": bins,
            "bin-width": _calculate_bin_width(low, high, bins),
        }
    else:
        width = binning.get("bin-width")
        if not isinstance(width, (int, float)) or isinstance(width, bool) or width <= 0:
            raise MbqlError("Error normalizing query: bin-width must be a positive number")
        options = {
            "min-value": low,
            "max-value": high,
            "num-bins": _calculate_num_bins(low, high, width),
            "bin-width": width,
        }
    current = options
    for _ in range(10):
        following = _nicer_step(strategy, current)
        if following == current:
            return {"strategy": strategy, **current}
        current = following
    return {"strategy": strategy, **options}


def _binning_display(resolved: dict, col: _Col) -> str:
    if resolved["strategy"] == "num-bins":
        bins = resolved["num-bins"]
        return f"{bins} bin" if bins == 1 else f"{bins} bins"
    width = resolved["bin-width"]
    text = str(int(width)) if float(width).is_integer() else repr(width)
    return text + ("°" if col.meta.get("semantic_type") in _COORDINATE_TYPES else "")


# ----------------------------------------------------------------- expression clauses


def _unary_number(function: str) -> Any:
    def compile_clause(compiler: _Compiler, x: list, scope: _Scope) -> _Sql:
        _check_arity(x, 1)
        arg = compiler._expr(x[1], scope)
        if function == "ABS":
            pg = arg.pg_type
        elif function in ("ROUND", "CEIL", "FLOOR", "SQRT", "EXP"):
            pg = "numeric" if arg.pg_type == "numeric" else "float8"
        else:
            pg = "float8"
        return _Sql(f"{function}({arg.text})", pg)

    return compile_clause


def _text_function(function: str, low: int, high: int | None, pg_type: str = "text") -> Any:
    def compile_clause(compiler: _Compiler, x: list, scope: _Scope) -> _Sql:
        _check_arity(x, low, high)
        args = compiler._args(x, scope)
        return _Sql(f"{function}({', '.join(a.text for a in args)})", pg_type)

    return compile_clause


def _coalesce(compiler: _Compiler, x: list, scope: _Scope) -> _Sql:
    _check_arity(x, 2, None)
    args = compiler._args(x, scope)
    return _Sql(f"COALESCE({', '.join(a.text for a in args)})", _common_type(args))


def _common_type(args: list[_Sql]) -> str:
    types = [a.pg_type for a in args if a.pg_type != "unknown"]
    if not types:
        return "unknown"
    if all(t in (*_INTEGER_TYPES, *_FLOAT_TYPES, "numeric") for t in types):
        return _promote(*types)
    return types[0]


def _case(compiler: _Compiler, x: list, scope: _Scope) -> _Sql:
    _check_arity(x, 1, 2)
    branches = x[1]
    if not isinstance(branches, list) or not branches:
        raise _fail_clause(x, "case needs a sequence of [condition, value] pairs")
    whens = []
    values = []
    for branch in branches:
        if not isinstance(branch, list) or len(branch) != 2:
            raise _fail_clause(x, "each case branch is a [condition, value] pair")
        value = compiler._expr(branch[1], scope)
        values.append(value)
        whens.append(f"WHEN {compiler._filter(branch[0], scope)} THEN {value.text}")
    options = _options(x, 2)
    text = "CASE " + " ".join(whens)
    if options.get("default") is not None:
        default = compiler._expr(options["default"], scope)
        values.append(default)
        text += f" ELSE {default.text}"
    return _Sql(text + " END", _common_type(values))


def _concat(compiler: _Compiler, x: list, scope: _Scope) -> _Sql:
    _check_arity(x, 1, None)
    args = compiler._args(x, scope)
    return _Sql(f"CONCAT({', '.join(a.text for a in args)})", "text")


def _power(compiler: _Compiler, x: list, scope: _Scope) -> _Sql:
    _check_arity(x, 2)
    base, exponent = compiler._args(x, scope)
    types = (base.pg_type, exponent.pg_type)
    pg = "numeric" if "numeric" in types and not any(t in _FLOAT_TYPES for t in types) else "float8"
    return _Sql(f"POWER({base.text}, {exponent.text})", pg)


def _log(compiler: _Compiler, x: list, scope: _Scope) -> _Sql:
    _check_arity(x, 1)
    arg = compiler._expr(x[1], scope)
    return _Sql(f"LOG(10, {arg.text})", "numeric")


def _now(compiler: _Compiler, x: list, scope: _Scope) -> _Sql:
    _check_arity(x, 0)
    return _Sql("NOW()", "timestamptz")


_GET_UNITS = {
    "get-year": "year-of-era",
    "get-quarter": "quarter-of-year",
    "get-month": "month-of-year",
    "get-day": "day-of-month",
    "get-day-of-week": "day-of-week",
    "get-hour": "hour-of-day",
    "get-minute": "minute-of-hour",
    "get-second": "second-of-minute",
}


def _temporal_operand(compiler: _Compiler, x: Any, scope: _Scope, clause: list) -> _Sql:
    operand = compiler._expr(x, scope)
    if operand.pg_type not in ("date", "timestamp", "timestamptz"):
        if operand.literal and isinstance(operand.value, str):
            return _temporal_literal(operand.value)
        raise _fail_clause(clause, "needs a date or datetime argument")
    return operand


def _get_component(compiler: _Compiler, x: list, scope: _Scope) -> _Sql:
    tag = x[0].lower()
    if tag == "get-week":
        _check_arity(x, 1, 2)
        mode = x[2] if len(x) > 2 else "iso"
        if mode not in ("iso", None):
            raise MbqlError(f"The fake Metabase does not support get-week mode {json.dumps(mode)}")
        return _temporal("week-of-year-iso", _temporal_operand(compiler, x[1], scope, x))
    _check_arity(x, 1)
    return _temporal(_GET_UNITS[tag], _temporal_operand(compiler, x[1], scope, x))


def _temporal_extract(compiler: _Compiler, x: list, scope: _Scope) -> _Sql:
    _check_arity(x, 2, 3)
    unit = x[2]
    if unit not in (*_EXTRACTION_UNITS, "day-of-week"):
        raise _fail_clause(x, f"invalid extraction unit {json.dumps(unit)}")
    return _temporal(str(unit), _temporal_operand(compiler, x[1], scope, x))


def _datetime_add(compiler: _Compiler, x: list, scope: _Scope) -> _Sql:
    _check_arity(x, 3)
    operand = _temporal_operand(compiler, x[1], scope, x)
    amount = x[2] if x[0].lower() == "datetime-add" else -x[2] if isinstance(x[2], (int, float)) else x[2]
    return _add_interval(operand, amount, str(x[3]))


def _relative(compiler: _Compiler, x: list, scope: _Scope) -> _Sql:
    _check_arity(x, 1, 2)
    amount = {"current": 0}.get(x[1], x[1]) if isinstance(x[1], str) else x[1]
    unit = x[2] if len(x) > 2 else "default"
    if (
        not isinstance(amount, int)
        or unit not in (*_TRUNCATION_UNITS, "default")
        or (unit == "default" and amount)
    ):
        raise _fail_clause(x, "relative-datetime takes an integer and a unit")
    return _relative_datetime(amount, unit)


def _absolute(compiler: _Compiler, x: list, scope: _Scope) -> _Sql:
    _check_arity(x, 2)
    if not isinstance(x[1], str) or x[2] not in _TEMPORAL_UNITS:
        raise _fail_clause(x, "absolute-datetime takes an ISO date string and a unit")
    return _temporal(x[2], _temporal_literal(x[1]))


def _datetime_diff(compiler: _Compiler, x: list, scope: _Scope) -> _Sql:
    _check_arity(x, 3)
    left, right = (compiler._expr(arg, scope) for arg in x[1:3])
    left, right = (
        _temporal_literal(o.value) if o.literal and isinstance(o.value, str) else o for o in (left, right)
    )
    for operand in (left, right):
        if operand.pg_type not in ("date", "timestamp", "timestamptz"):
            raise MbqlError(
                f'datetimeDiff only allows datetime, timestamp, or date types. Found "{operand.pg_type}"'
            )
    unit = x[3]
    day_diff = f"(CAST({right.text} AS DATE) - CAST({left.text} AS DATE))"
    age = f"age({_date_trunc('day', right).text}, {_date_trunc('day', left).text})"
    months = f"CAST((extract(month from {age}) + (extract(year from {age}) * 12)) AS integer)"
    seconds = (
        f"CAST(trunc((extract(epoch from {_to_timestamp(right).text}) - "
        f"extract(epoch from {_to_timestamp(left).text}))) AS integer)"
    )
    texts = {
        "year": f"CAST(extract(year from {age}) AS integer)",
        "quarter": f"({months} / 3)",
        "month": months,
        "week": f"({day_diff} / 7)",
        "day": day_diff,
        "hour": f"({seconds} / 3600)",
        "minute": f"({seconds} / 60)",
        "second": seconds,
    }
    if unit not in texts:
        raise _fail_clause(x, f"invalid datetime-diff unit {json.dumps(unit)}")
    return _Sql(texts[unit], "int4")


_EXPRESSIONS: dict[str, Any] = {
    "abs": _unary_number("ABS"),
    "round": _unary_number("ROUND"),
    "ceil": _unary_number("CEIL"),
    "floor": _unary_number("FLOOR"),
    "sqrt": _unary_number("SQRT"),
    "exp": _unary_number("EXP"),
    "power": _power,
    "log": _log,
    "coalesce": _coalesce,
    "case": _case,
    "if": _case,
    "concat": _concat,
    "lower": _text_function("LOWER", 1, 1),
    "upper": _text_function("UPPER", 1, 1),
    "trim": _text_function("TRIM", 1, 1),
    "ltrim": _text_function("LTRIM", 1, 1),
    "rtrim": _text_function("RTRIM", 1, 1),
    "length": _text_function("LENGTH", 1, 1, "int4"),
    "substring": _text_function("SUBSTRING", 2, 3),
    "replace": _text_function("REPLACE", 3, 3),
    "now": _now,
    "datetime-diff": _datetime_diff,
    "datetime-add": _datetime_add,
    "datetime-subtract": _datetime_add,
    "temporal-extract": _temporal_extract,
    "get-week": _get_component,
    "relative-datetime": _relative,
    "absolute-datetime": _absolute,
    **{tag: _get_component for tag in _GET_UNITS},
}
_FILTER_TAGS = frozenset(
    {"and", "or", "not", "=", "!=", "<", "<=", ">", ">=", "between", "is-null", "not-null", "is-empty",
     "not-empty", "contains", "does-not-contain", "starts-with", "ends-with", "time-interval", "inside"}
)  # fmt: skip
_AGGREGATION_TAGS = frozenset(
    {"count", "cum-count", "sum", "cum-sum", "avg", "distinct", "min", "max", "median", "percentile",
     "stddev", "var", "share", "count-where", "sum-where", "aggregation-options", "metric"}
)  # fmt: skip
